//! When a plan that had nothing to do still holds: after a change of running states only
//! ([`idle_plan_holds`]), and after a few other changes, by planning again only the identities
//! and containers they touch ([`idle_plan_still_holds`]; issue 17: a wake-up that grows with
//! what changed, not with what exists).
//!
//! Why the second is the whole plan's answer: [`plan`] decides each identity from its members (the
//! containers asking for its name, refused among themselves by name then id) and its own
//! holdings, and each container's trust copy, attach and refusal from that container alone. So
//! when the last plan had nothing to do, the new one can differ only for the identities a
//! changed container names (before or after the change) and for the changed containers
//! themselves. Those are planned again, with every member of those identities; if that plan
//! has nothing to do either and says the same of them (desired certificates, refusals,
//! trust-only rows: all a status shows), the whole plan is still the last one.
//! `idle_tests` checks this against the whole plan for random worlds and changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::{Desired, Identity, Refusal, World, plan};
use crate::core::labelled::Labelled;
use crate::core::names::CertName;

/// Whether a plan that had nothing to do, made from `before`, is also the plan of `after`
/// (the same holdings and clock). True when the containers differ at most in their running
/// states: [`plan`] reads a state only to describe a delivery it makes ([`super::Copy::running`], the
/// reloads after a publish), and a plan with nothing to do describes none; which deliveries
/// are due depends on versions, never on states. So a labelled container's stop or start
/// (the commonest Docker event about one) needs no new plan (issue 17). Anything else that
/// differs (labels, name, networks, a container come or gone) answers false.
pub fn idle_plan_holds(before: &[Arc<Labelled>], after: &[Arc<Labelled>]) -> bool {
    before.len() == after.len()
        && before
            .iter()
            .zip(after)
            .all(|(a, b)| Arc::ptr_eq(a, b) || same_but_state(a, b))
}

/// The same container with the same labels, names and networks: at most its state differs.
fn same_but_state(a: &Labelled, b: &Labelled) -> bool {
    let (x, y) = (&*a.container, &*b.container);
    x.id == y.id
        && x.name == y.name
        && x.networks == y.networks
        && x.labels == y.labels
        && a.spec == b.spec
}

/// More changed containers than this, and planning everything again is as cheap.
const MAX_CHANGED: usize = 16;

/// What an idle plan said that its status shows, kept to compare a re-planned part against.
#[derive(Debug, Clone)]
pub struct IdleOutcome {
    pub desired: Arc<BTreeMap<Identity, Desired>>,
    pub refused: Vec<Refusal>,
    /// (name, container name) of `usage=none` containers.
    pub trust_only: Vec<(String, String)>,
}

/// Whether the idle plan made from `before` (which said `last`) is still the plan of `world`
/// (the same holdings, CA bundle and settings; `world.containers` are the containers now,
/// sorted by name then id as the store hands them out). `Some(next_wake)` of the re-planned
/// part when it is; `None` when it may not be (too many changes, or the part has something to
/// do or says something else), and the caller plans everything.
pub fn idle_plan_still_holds(
    world: &World<'_>,
    before: &[Arc<Labelled>],
    last: &IdleOutcome,
) -> Option<Option<SystemTime>> {
    let changed = changed(before, world.containers)?;
    let touched: BTreeSet<&CertName> = changed.iter().filter_map(|l| name_of(l)).collect();
    let names: BTreeSet<Identity> = touched
        .iter()
        .map(|n| Identity::Named((*n).clone()))
        .collect();
    let ids: BTreeSet<&str> = changed.iter().map(|l| l.container.id.as_str()).collect();
    let part: Vec<Arc<Labelled>> = world
        .containers
        .iter()
        .filter(|l| {
            ids.contains(l.container.id.as_str()) || name_of(l).is_some_and(|n| touched.contains(n))
        })
        .cloned()
        .collect();
    let part_names: BTreeSet<&str> = part
        .iter()
        .map(|l| &**l)
        .chain(changed.iter().copied())
        .map(|l| l.container.name.as_str())
        .collect();
    let all_ids: BTreeSet<&str> = part
        .iter()
        .map(|l| l.container.id.as_str())
        .chain(ids.iter().copied())
        .collect();
    let (current, failures) = (
        restrict(world.current, &names),
        restrict(world.failures, &names),
    );
    let (published, orphaned_since) = (
        restrict(world.published, &names),
        restrict(world.orphaned_since, &names),
    );
    let copied: BTreeMap<String, String> = all_ids
        .iter()
        .filter_map(|id| world.copied.get(*id).map(|v| ((*id).to_owned(), v.clone())))
        .collect();
    let p = plan(&World {
        containers: &part,
        traefik_client: None,
        current: &current,
        failures: &failures,
        copied: &copied,
        published: &published,
        orphaned_since: &orphaned_since,
        ..*world
    });
    let same_desired = names
        .iter()
        .all(|id| p.desired.get(id) == last.desired.get(id));
    let refused_then: Vec<&Refusal> = last
        .refused
        .iter()
        .filter(|r| all_ids.contains(r.container_id.as_str()))
        .collect();
    let trust_then: Vec<&(String, String)> = last
        .trust_only
        .iter()
        .filter(|(_, container)| part_names.contains(container.as_str()))
        .collect();
    let holds = p.is_idle()
        && same_desired
        && p.refused.iter().eq(refused_then)
        && p.trust_only.iter().eq(trust_then);
    holds.then_some(p.next_wake)
}

/// The name a container asks a certificate for, when its labels are valid and want one.
fn name_of(l: &Labelled) -> Option<&CertName> {
    match &l.spec {
        Ok(Some(spec)) if spec.usage.wants_certificate() => Some(&spec.name),
        _ => None,
    }
}

fn restrict<V: Clone>(
    map: &BTreeMap<Identity, V>,
    keys: &BTreeSet<Identity>,
) -> BTreeMap<Identity, V> {
    keys.iter()
        .filter_map(|k| map.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

/// The containers that differ between `before` and `after` in more than their running state
/// (both versions of a changed one, and those come or gone); `None` when more than
/// [`MAX_CHANGED`] do. Both lists are in the store's order (name, then id).
fn changed<'a>(
    before: &'a [Arc<Labelled>],
    after: &'a [Arc<Labelled>],
) -> Option<Vec<&'a Labelled>> {
    let key = |l: &'a Labelled| (l.container.name.as_str(), l.container.id.as_str());
    let (mut b, mut a) = (before.iter().peekable(), after.iter().peekable());
    let mut out = Vec::new();
    loop {
        let next = match (b.peek(), a.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) if key(x) == key(y) => {
                let (x, y) = (b.next()?, a.next()?);
                if !Arc::ptr_eq(x, y) && !same_but_state(x, y) {
                    out.extend([&**x, &**y]);
                }
                continue;
            }
            (Some(x), Some(y)) if key(x) < key(y) => b.next()?,
            (Some(_), None) => b.next()?,
            _ => a.next()?,
        };
        out.push(&**next);
        if out.len() > 2 * MAX_CHANGED {
            return None;
        }
    }
    (out.len() <= 2 * MAX_CHANGED).then_some(out)
}

#[cfg(test)]
#[path = "idle_tests.rs"]
mod tests;
