//! What `certdock status` shows, derived from the plan and the holdings.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::holdings::Holdings;
use crate::core::plan::{Identity, Plan};
use crate::store::status::StatusEntry;

fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    let t = OffsetDateTime::from(t);
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).ok()
}

pub fn status_entries(plan: &Plan, holdings: &Holdings) -> Vec<StatusEntry> {
    let mut out = Vec::new();
    for (id, d) in &plan.desired {
        let held = holdings.held.get(id);
        let error = holdings
            .failures
            .get(id)
            .map(|f| f.error.clone())
            .or_else(|| holdings.delivery_errors.get(id).cloned());
        let name = match id {
            Identity::Named(n) => n.to_string(),
            Identity::TraefikClient => "traefik-client".into(),
        };
        let entry = |container: Option<String>| StatusEntry {
            name: name.clone(),
            container,
            sans: d.spec.sans.iter().map(ToString::to_string).collect(),
            usage: d.spec.usage.to_string(),
            serial: held.map(|h| h.serial.clone()),
            not_after: held.and_then(|h| rfc3339(h.not_after)),
            next_renewal: held.and_then(|h| rfc3339(h.renew_at)),
            error: error.clone(),
        };
        if d.containers.is_empty() {
            out.push(entry(None));
        }
        for (_, cname) in &d.containers {
            out.push(entry(Some(cname.clone())));
        }
    }
    for r in &plan.refused {
        out.push(StatusEntry {
            name: r.name.clone().unwrap_or_else(|| r.container_name.clone()),
            container: Some(r.container_name.clone()),
            sans: Vec::new(),
            usage: String::new(),
            serial: None,
            not_after: None,
            next_renewal: None,
            error: Some(r.error.clone()),
        });
    }
    out
}
