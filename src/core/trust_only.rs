//! `certdock.usage=none`: containers that get no certificate, only `ca.pem`, redelivered when
//! the CA bundle changes (a rollover), so they keep trusting what certdock's peers present.

use std::collections::BTreeMap;

use super::container::{ContainerInfo, ContainerState};
use super::labels::CertSpec;
use super::plan::Copy;

/// The version of a trust-only delivery: a digest of the CA bundle (`ca_version`).
/// Returns the copies due: every accepted trust-only container whose delivered version differs.
pub fn copies(
    accepted: &[(ContainerInfo, CertSpec)],
    copied: &BTreeMap<String, String>,
    ca_version: &str,
) -> Vec<Copy> {
    accepted
        .iter()
        .filter(|(_, spec)| !spec.usage.wants_certificate())
        .filter(|(c, _)| copied.get(&c.id).map(String::as_str) != Some(ca_version))
        .map(|(c, spec)| Copy {
            container_id: c.id.clone(),
            container_name: c.name.clone(),
            path: spec.path.clone(),
            owner: spec.owner,
            reload: spec.reload,
            running: c.state == ContainerState::Running,
        })
        .collect()
}
