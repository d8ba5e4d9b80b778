//! What `certdock status` shows, derived from the plan and the holdings.
//!
//! A pass first lists its rows borrowed ([`StatusRow`]): a row is everything its entry is
//! made of. Their hash tells an unchanged status, and the entries (a dozen allocations each)
//! are built only when it changed: building and hashing 1,000 of them on every pass was a fifth
//! of a whole pass at 1,000 identities (issue 17).

use std::hash::Hash;
use std::time::SystemTime;

use time::OffsetDateTime;

use super::holdings::{Held, Holdings};
use crate::core::authz::{AllowList, GroupName};
use crate::core::names::{San, Usage};
use crate::core::plan::{Desired, DesiredSet, Failure, Identity, Plan, Refusal, Scope, Step};
use crate::proxy::traefik::allow_middleware;
use crate::store::status::StatusEntry;

/// One line of the status, borrowed. Every field of its [`StatusEntry`] is a function of these.
#[derive(Hash)]
pub enum StatusRow<'a> {
    /// A certificate, once per container using it (once with no container for certdock's own).
    Cert {
        id: &'a Identity,
        container: Option<&'a str>,
        sans: &'a [San],
        usage: Usage,
        groups: &'a std::collections::BTreeSet<GroupName>,
        allow: Option<&'a AllowList>,
        /// Serial, not after, renewal time of the held certificate.
        held: Option<(&'a str, SystemTime, SystemTime)>,
        error: Option<&'a str>,
    },
    /// A `usage=none` container: (name, container name).
    TrustOnly(&'a str, &'a str),
    Refused(&'a Refusal),
}

/// The rows of the status, in the order `status.json` lists them. The holdings are read in
/// step with the identities (sorted alike), not searched per identity.
pub fn status_rows<'a>(plan: &'a Plan, holdings: &'a Holdings) -> Vec<StatusRow<'a>> {
    let mut out = Vec::with_capacity(plan.desired.len() + plan.trust_only.len());
    let mut held = Step::new(&holdings.held);
    let mut failures = Step::new(&holdings.failures);
    let mut errors = Step::new(&holdings.delivery_errors);
    for (id, d) in plan.desired.iter() {
        let of = (held.at(id), failures.at(id), errors.at(id));
        cert_rows(id, d, of, &mut out);
    }
    for (name, container) in &plan.trust_only {
        out.push(StatusRow::TrustOnly(name, container));
    }
    out.extend(plan.refused.iter().map(StatusRow::Refused));
    out
}

/// The rows of [`status_rows`] that a plan made from a part may show otherwise (see
/// [`Scope`]), in the same order; found without a walk over every identity.
pub fn status_rows_in<'a>(
    (desired, trust_only, refused): (&'a DesiredSet, &'a [(String, String)], &'a [Refusal]),
    holdings: &'a Holdings,
    scope: &Scope,
) -> Vec<StatusRow<'a>> {
    let mut out = Vec::new();
    for id in &scope.names {
        if let Some((id, d)) = desired.get_key_value(id) {
            let h = holdings;
            let of = (
                h.held.get(id),
                h.failures.get(id),
                h.delivery_errors.get(id),
            );
            cert_rows(id, d, of, &mut out);
        }
    }
    for (name, container) in trust_only {
        if scope.container_names.contains(container) {
            out.push(StatusRow::TrustOnly(name, container));
        }
    }
    let refused = refused.iter();
    out.extend(
        refused
            .filter(|r| scope.containers.contains(&r.container_id))
            .map(StatusRow::Refused),
    );
    out
}

/// What the holdings say of one identity: its certificate, its last failure, its delivery error.
type HeldOf<'a> = (Option<&'a Held>, Option<&'a Failure>, Option<&'a String>);

/// An identity's rows: one per container using it (one with no container for certdock's own).
fn cert_rows<'a>(
    id: &'a Identity,
    d: &'a Desired,
    (held, failure, delivery_error): HeldOf<'a>,
    out: &mut Vec<StatusRow<'a>>,
) {
    let held = held.map(|h| (h.serial.as_str(), h.not_after, h.renew_at));
    let error = failure
        .map(|f| f.error.as_str())
        .or_else(|| delivery_error.map(String::as_str));
    let row = |container| StatusRow::Cert {
        id,
        container,
        sans: &d.spec.sans,
        usage: d.spec.usage,
        groups: &d.spec.groups,
        allow: d.allow.as_ref(),
        held,
        error,
    };
    if d.containers.is_empty() {
        out.push(row(None));
    }
    for m in &d.containers {
        out.push(row(Some(m.0.name.as_str())));
    }
}

/// A hash of the rows, to tell an unchanged status without building it. A collision would
/// leave `status.json` one change behind until the next; foldhash rather than SipHash because
/// nothing rides on resisting one, and it hashes the rows of 1,000 identities in a third of the
/// time.
pub fn digest_of(rows: &[StatusRow<'_>]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(rows)
}

impl StatusRow<'_> {
    pub fn entry(&self) -> StatusEntry {
        match *self {
            StatusRow::Cert {
                id,
                container,
                sans,
                usage,
                groups,
                allow,
                held,
                error,
            } => StatusEntry {
                name: id.status_name(),
                container: container.map(str::to_string),
                sans: sans.to_vec(),
                usage: Some(usage),
                serial: held.map(|(serial, _, _)| serial.to_string()),
                not_after: held.map(|(_, not_after, _)| OffsetDateTime::from(not_after)),
                next_renewal: held.map(|(_, _, renew_at)| OffsetDateTime::from(renew_at)),
                error: error.map(str::to_string),
                groups: groups.iter().map(ToString::to_string).collect(),
                allow: allow.map(ToString::to_string),
                middleware: allow.map(|_| format!("{}@file", allow_middleware(&id.status_name()))),
                revoked_at: None,
            },
            StatusRow::TrustOnly(name, container) => StatusEntry {
                name: name.to_string(),
                container: Some(container.to_string()),
                usage: Some(Usage::NONE),
                ..StatusEntry::default()
            },
            StatusRow::Refused(r) => StatusEntry {
                name: r.name.clone().unwrap_or_else(|| r.container_name.clone()),
                container: Some(r.container_name.clone()),
                usage: None,
                error: Some(r.error.clone()),
                ..StatusEntry::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::core::container::{ContainerInfo, ContainerState};
    use crate::core::names::CertName;
    use crate::core::plan::{CertSpecLite, Desired, Failure, Member};

    fn member(name: &str) -> Member {
        Member(Arc::new(ContainerInfo {
            id: format!("id-{name}"),
            name: name.into(),
            labels: BTreeMap::new(),
            state: ContainerState::Running,
            networks: Vec::new(),
        }))
    }

    fn plan(containers: &[&str]) -> Plan {
        let spec = CertSpecLite {
            sans: vec![San::parse("web.internal").unwrap()],
            groups: Default::default(),
            usage: Usage::SERVER,
            ttl: Duration::from_secs(3600),
        };
        let desired = Desired {
            spec,
            publish: true,
            traefik_hosts: false,
            allow: None,
            containers: containers.iter().map(|c| member(c)).collect(),
        };
        let id = Identity::Named(CertName::parse("web").unwrap());
        Plan {
            desired: [(id, Arc::new(desired))].into_iter().collect(),
            trust_only: vec![("ca-only".into(), "reader".into())],
            ..Plan::default()
        }
    }

    #[test]
    fn the_digest_changes_with_every_shown_change_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let mut holdings = Holdings::load(dir.path()).unwrap();
        let digest = |p: &Plan, h: &Holdings| digest_of(&status_rows(p, h));
        let one = plan(&["web-1"]);
        let before = digest(&one, &holdings);
        assert_eq!(before, digest(&plan(&["web-1"]), &holdings), "same rows");
        assert_ne!(before, digest(&plan(&["web-1", "web-2"]), &holdings));

        let id = one.desired.keys().next().unwrap().clone();
        holdings.failures.insert(
            id.clone(),
            Failure {
                attempts: 1,
                retry_at: SystemTime::UNIX_EPOCH,
                error: "CA unreachable".into(),
            },
        );
        assert_ne!(before, digest(&one, &holdings), "an error shows");

        let entries: Vec<StatusEntry> = status_rows(&one, &holdings)
            .iter()
            .map(StatusRow::entry)
            .collect();
        assert_eq!(entries.len(), 2);
        let web = &entries[0];
        assert_eq!(
            (web.name.as_str(), web.container.as_deref()),
            ("web", Some("web-1"))
        );
        assert_eq!(web.error.as_deref(), Some("CA unreachable"));
        assert_eq!(web.usage, Some(Usage::SERVER));
        assert_eq!(web.serial, None);
        let reader = &entries[1];
        assert_eq!(
            (reader.name.as_str(), reader.usage),
            ("ca-only", Some(Usage::NONE))
        );
    }

    #[test]
    fn the_rows_of_a_scope_are_the_whole_rows_of_its_identities_and_containers() {
        let dir = tempfile::tempdir().unwrap();
        let mut holdings = Holdings::load(dir.path()).unwrap();
        let mut p = plan(&["web-1", "web-2"]);
        let web = p.desired.keys().next().unwrap().clone();
        let api = Identity::Named(CertName::parse("api").unwrap());
        let w = p.desired[&web].clone();
        p.desired.insert(api.clone(), w);
        p.refused = vec![Refusal {
            container_id: "id-bad".into(),
            container_name: "bad".into(),
            name: None,
            error: "label certdock.ttl=banana".into(),
        }];
        holdings
            .delivery_errors
            .insert(web.clone(), "copy failed".into());
        let rows = (&p.desired, &p.trust_only[..], &p.refused[..]);
        let everything = Scope {
            names: [web.clone(), api.clone()].into(),
            containers: ["id-bad".to_string()].into(),
            container_names: ["reader".to_string()].into(),
        };
        let all = status_rows(&p, &holdings);
        assert_eq!(all.len(), 6);
        let entries = |r: &[StatusRow<'_>]| r.iter().map(StatusRow::entry).collect::<Vec<_>>();
        assert_eq!(
            entries(&status_rows_in(rows, &holdings, &everything)),
            entries(&all)
        );
        assert_eq!(
            all[2].entry().error.as_deref(),
            Some("copy failed"),
            "web's, in step"
        );

        let only_web = Scope {
            names: [web.clone()].into(),
            ..Scope::default()
        };
        let web_rows = entries(&status_rows_in(rows, &holdings, &only_web));
        assert_eq!(web_rows, entries(&all[2..4]));
    }
}
