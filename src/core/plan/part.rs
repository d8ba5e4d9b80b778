//! Planning after a plan that had nothing to do: after a change of running states only, that
//! plan still holds ([`idle_plan_holds`]); after a few other changes, only the identities and
//! containers they touch are planned again ([`plan_after_idle`]; issue 17: a wake-up that grows
//! with what changed, not with what exists).
//!
//! Why the part gives the whole plan: [`plan`] decides each identity from its members (the
//! containers asking for its name, refused among themselves by name then id) and its own
//! holdings, and each container's trust copy, attach and refusal from that container alone. So
//! after a plan with nothing to do, the next one can differ only for the identities a changed
//! container names (before or after the change), for the changed containers themselves, and
//! for the identities whose own wake-up the clock reached ([`super::WakeIndex`]), as long as
//! nothing else changed their holdings (the CA bundle and settings are the same, the clock
//! went forward). Those are planned again, with every member of those identities: if that
//! part has nothing to do and says the same of them (desired certificates, refusals,
//! trust-only rows: all a status shows), the whole plan is still the last one;
//! otherwise the whole plan is the part's work with the last plan's rows for the rest.
//! Such a plan has nothing to do but its own work: the next plan is made from it the same way,
//! with what carrying that work out may have changed ([`CarriedOut`]) planned again too.
//! `part_tests` checks every answer against the whole plan for random worlds, over several
//! rounds of changes, clock steps and carried-out plans (some of whose deliveries fail).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::{DesiredSet, Identity, Plan, Refusal, World, plan};
use crate::core::container_set::ContainerSet;
use crate::core::labelled::Labelled;
use crate::core::names::CertName;

/// Whether a plan that had nothing to do, made from `before`, is also the plan of `after`
/// (the same holdings and clock). True when the containers differ at most in their running
/// states: [`plan`] reads a state only to describe a delivery it makes ([`super::Copy::running`], the
/// reloads after a publish), and a plan with nothing to do describes none; which deliveries
/// are due depends on versions, never on states. So a labelled container's stop or start
/// (the commonest Docker event about one) needs no new plan (issue 17). Anything else that
/// differs (labels, name, networks, a container come or gone) answers false.
pub fn idle_plan_holds(before: &ContainerSet, after: &ContainerSet) -> bool {
    before.same_version(after)
        || before
            .changes(after)
            .all(|c| matches!(c, (Some(a), Some(b)) if same_but_state(a, b)))
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

/// How many changed containers (or identities whose wake-up came) a part may plan among
/// `asking` containers: more, and planning everything again is about as cheap. At least 16;
/// a sixteenth of them beyond that (a whole pass costs ≈ 1 µs per identity, a part several per
/// changed container), so that a burst (`docker compose up` of a few dozen services) on a large
/// host is still planned from what it touches.
fn max_changed(asking: usize) -> usize {
    16.max(asking / 16)
}

/// What a plan said that its status shows, kept to compare a re-planned part against.
#[derive(Debug, Clone)]
pub struct IdleOutcome {
    pub desired: DesiredSet,
    pub refused: Vec<Refusal>,
    /// (name, container name) of `usage=none` containers.
    pub trust_only: Vec<(String, String)>,
}

impl IdleOutcome {
    /// What `p` says that its status shows.
    pub fn of(p: &Plan) -> IdleOutcome {
        IdleOutcome {
            desired: p.desired.clone(),
            refused: p.refused.clone(),
            trust_only: p.trust_only.clone(),
        }
    }
}

/// What carrying out a plan may change in the holdings (held, published, copied, failures,
/// orphans) and the containers' networks: the identities and containers a plan made after it
/// must plan again, whether or not a container changed (a failed copy is due again).
#[derive(Debug, Clone, Default)]
pub struct CarriedOut {
    names: BTreeSet<CertName>,
    /// certdock's own client certificate was issued, published or removed.
    client: bool,
    containers: BTreeSet<String>,
}

impl CarriedOut {
    pub fn of(p: &Plan) -> CarriedOut {
        let mut out = CarriedOut::default();
        let ids = p.work.iter().map(|w| &w.id);
        for id in ids.chain(&p.newly_orphaned).chain(&p.remove) {
            match id {
                Identity::Named(n) => {
                    out.names.insert(n.clone());
                }
                Identity::TraefikClient => out.client = true,
            }
        }
        let copies = p.work.iter().flat_map(|w| &w.copies).chain(&p.trust_copies);
        out.containers = copies
            .map(|c| &c.container_id)
            .chain(p.attaches.iter().map(|a| &a.container_id))
            .cloned()
            .collect();
        out
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.client && self.containers.is_empty()
    }
}

/// What the changes since a plan come to (see [`plan_after_idle`]).
#[derive(Debug)]
pub enum AfterIdle {
    /// The last plan still holds, with nothing to do; the part planned again (these
    /// identities) wants to be woken at these times.
    Holds {
        planned: BTreeSet<Identity>,
        wakes: Vec<(Identity, SystemTime)>,
    },
    /// The whole plan, made by planning only the part: its work, attaches, copies, orphans
    /// and `wakes` are the part's (the rest has none; the rest's wake-ups are the last
    /// plan's), its desired certificates, refusals and trust-only rows the last plan's with
    /// the part's in place of what the part said then; with what the part covers.
    Changed(Box<PartPlan>),
}

/// The whole plan made from a part (see [`AfterIdle::Changed`]).
#[derive(Debug)]
pub struct PartPlan {
    pub plan: Plan,
    pub scope: Scope,
}

/// What a part covers: the rows of the whole plan that may differ from the last plan's are
/// these identities' and these containers' (see [`AfterIdle::Changed`]).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub names: BTreeSet<Identity>,
    /// Container ids (refusals).
    pub containers: BTreeSet<String>,
    /// Container names (trust-only rows).
    pub container_names: BTreeSet<String>,
}

/// The plan of `world` after a plan made from `before` that said `last` and had nothing to do
/// but `since` (see the module docs), by planning only what changed since, `since`, and the
/// identities `due` (those whose wake-up came: see [`super::WakeIndex`]; every other identity's
/// wake-up is still ahead of `world.now`). `world` has the holdings now, which differ from that
/// plan's only where `since` was carried out, and `world.containers` are the containers now, a
/// later version of `before`: what changed is found in what the two versions do not share,
/// each member of a touched identity through the index by name, so the part costs what
/// changed, not what exists. `None` when more than [`max_changed`] containers changed or
/// identities are due: the caller plans everything.
pub fn plan_after_idle(
    world: &World<'_>,
    before: &ContainerSet,
    since: &CarriedOut,
    due: &[Identity],
    last: &IdleOutcome,
) -> Option<AfterIdle> {
    let now = world.containers;
    let limit = max_changed(now.len());
    if due.len() > limit {
        return None;
    }
    let changed = changed(before, now, limit)?;
    let ids: BTreeSet<&str> = changed
        .iter()
        .map(|l| l.container.id.as_str())
        .chain(since.containers.iter().map(String::as_str))
        .collect();
    // Every identity a container of the part asks for is in the part, with all its members.
    let mut touched: BTreeSet<&CertName> = changed
        .iter()
        .filter_map(|l| l.cert_name())
        .chain(&since.names)
        .chain(due.iter().filter_map(|id| match id {
            Identity::Named(n) => Some(n),
            Identity::TraefikClient => None,
        }))
        .collect();
    touched.extend(
        since
            .containers
            .iter()
            .filter_map(|id| now.get(id)?.cert_name()),
    );
    // certdock's own client certificate has no members: it is in the part when its wake-up
    // came or a pass made from a part carried something out for it.
    let client = world
        .traefik_client
        .filter(|_| since.client || due.contains(&Identity::TraefikClient));
    let names: BTreeSet<Identity> = touched
        .iter()
        .map(|n| Identity::Named((*n).clone()))
        .chain(client.map(|_| Identity::TraefikClient))
        .collect();
    let part: ContainerSet = touched
        .iter()
        .flat_map(|n| now.members(n))
        .chain(ids.iter().filter_map(|id| now.get(id)))
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
        traefik_client: client,
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
    let in_part = |r: &Refusal| all_ids.contains(r.container_id.as_str());
    let refused_then = last.refused.iter().filter(|r| in_part(r));
    let trust_in_part = |(_, container): &(String, String)| part_names.contains(container.as_str());
    let trust_then = last.trust_only.iter().filter(|t| trust_in_part(t));
    if p.is_idle()
        && same_desired
        && p.refused.iter().eq(refused_then)
        && p.trust_only.iter().eq(trust_then)
    {
        return Some(AfterIdle::Holds {
            planned: names,
            wakes: p.wakes,
        });
    }
    // The whole plan's lists are in the containers' order (name, then id): the rest's, kept
    // in order, and the part's, merged in.
    let desired = if same_desired {
        last.desired.clone()
    } else {
        let mut all = last.desired.clone();
        for id in &names {
            match p.desired.get(id) {
                Some(d) => all.insert(id.clone(), d.clone()),
                None => all.remove(id),
            };
        }
        all
    };
    let refused = merged(&last.refused, in_part, &p.refused, |r| {
        (r.container_name.clone(), r.container_id.clone())
    });
    let trust_only = merged(&last.trust_only, trust_in_part, &p.trust_only, |t| {
        t.1.clone()
    });
    let scope = Scope {
        containers: all_ids.iter().map(|id| (*id).to_owned()).collect(),
        container_names: part_names.iter().map(|n| (*n).to_owned()).collect(),
        names,
    };
    let plan = Plan {
        desired,
        refused,
        trust_only,
        ..p
    };
    Some(AfterIdle::Changed(Box::new(PartPlan { plan, scope })))
}

/// The rows of `last` outside the part with the part's rows, in the order of `key` (the
/// containers' order, as the whole plan lists them).
fn merged<T: Clone, K: Ord>(
    last: &[T],
    in_part: impl Fn(&T) -> bool,
    part: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut all: Vec<T> = last.iter().filter(|r| !in_part(r)).cloned().collect();
    all.extend(part.iter().cloned());
    all.sort_by_cached_key(key);
    all
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
/// (both versions of a changed one, and those come or gone); `None` when more than `limit` do.
fn changed<'a>(
    before: &'a ContainerSet,
    after: &'a ContainerSet,
    limit: usize,
) -> Option<Vec<&'a Labelled>> {
    let mut out = Vec::new();
    for (b, a) in before.changes(after) {
        if let (Some(x), Some(y)) = (b, a)
            && same_but_state(x, y)
        {
            continue;
        }
        out.extend(b.into_iter().chain(a).map(|l| &**l));
        if out.len() > 2 * limit {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
#[path = "part_tests.rs"]
mod tests;
