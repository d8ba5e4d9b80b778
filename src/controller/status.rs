//! What `certdock status` shows, derived from the plan and the holdings.

use time::OffsetDateTime;

use super::holdings::Holdings;
use crate::core::names::Usage;
use crate::core::plan::Plan;
use crate::proxy::traefik::allow_middleware;
use crate::store::status::StatusEntry;

pub fn status_entries(plan: &Plan, holdings: &Holdings) -> Vec<StatusEntry> {
    let mut out = Vec::new();
    for (id, d) in &plan.desired {
        let held = holdings.held.get(id);
        let error = holdings
            .failures
            .get(id)
            .map(|f| f.error.clone())
            .or_else(|| holdings.delivery_errors.get(id).cloned());
        let entry = |container: Option<String>| StatusEntry {
            name: id.status_name(),
            container,
            sans: d.spec.sans.clone(),
            usage: Some(d.spec.usage),
            serial: held.map(|h| h.serial.clone()),
            not_after: held.map(|h| OffsetDateTime::from(h.not_after)),
            next_renewal: held.map(|h| OffsetDateTime::from(h.renew_at)),
            error: error.clone(),
            groups: d.spec.groups.iter().map(ToString::to_string).collect(),
            allow: d.allow.as_ref().map(ToString::to_string),
            middleware: d
                .allow
                .as_ref()
                .map(|_| format!("{}@file", allow_middleware(&id.status_name()))),
            revoked_at: None,
        };
        if d.containers.is_empty() {
            out.push(entry(None));
        }
        for (_, cname) in &d.containers {
            out.push(entry(Some(cname.clone())));
        }
    }
    for (name, container) in &plan.trust_only {
        out.push(StatusEntry {
            name: name.clone(),
            container: Some(container.clone()),
            sans: Vec::new(),
            usage: Some(Usage::NONE),
            serial: None,
            not_after: None,
            next_renewal: None,
            error: None,
            groups: Vec::new(),
            allow: None,
            middleware: None,
            revoked_at: None,
        });
    }
    for r in &plan.refused {
        out.push(StatusEntry {
            name: r.name.clone().unwrap_or_else(|| r.container_name.clone()),
            container: Some(r.container_name.clone()),
            sans: Vec::new(),
            usage: None,
            serial: None,
            not_after: None,
            next_renewal: None,
            error: Some(r.error.clone()),
            groups: Vec::new(),
            allow: None,
            middleware: None,
            revoked_at: None,
        });
    }
    out
}
