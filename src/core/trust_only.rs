//! `certdock.usage=none`: containers that get no certificate, only `ca.pem`, redelivered when
//! the CA bundle changes (a rollover), so they keep trusting what certdock's peers present.

use std::collections::BTreeMap;

use super::container::{ContainerInfo, ContainerState};
use super::labels::CertSpec;
use super::plan::Copy;

/// The labels a `usage=none` container may not carry (with a value that asks for a certificate).
pub const REFUSED_LABELS: [&str; 4] = ["delivery", "groups", "allow", "sans"];

/// Why `label=value` is refused on a `usage=none` container, if it is.
pub fn refusal(label: &str, value: &str) -> Option<&'static str> {
    Some(match label {
        "delivery" if value.trim().eq_ignore_ascii_case("container") => return None,
        "delivery" => {
            "usage `none` delivers only ca.pem into the container (`container` delivery); volume users read OUT/ca.pem"
        }
        "groups" => "usage `none` has no certificate to bind groups to",
        "allow" => "usage `none` has no certificate, so no server to guard",
        "sans" => "usage `none` has no certificate to name",
        _ => return None,
    })
}

/// The version of a trust-only delivery: a digest of the CA bundle (`ca_version`).
/// Returns the copies due: every accepted trust-only container whose delivered version differs.
pub fn copies(
    accepted: &[(&ContainerInfo, &CertSpec)],
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
            first: !copied.contains_key(&c.id),
        })
        .collect()
}

/// (name, container name) of every accepted trust-only container.
pub fn members(accepted: &[(&ContainerInfo, &CertSpec)]) -> Vec<(String, String)> {
    accepted
        .iter()
        .filter(|(_, spec)| !spec.usage.wants_certificate())
        .map(|(c, spec)| (spec.name.to_string(), c.name.clone()))
        .collect()
}
