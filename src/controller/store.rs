//! The containers as last seen: one writer (the watcher's events), read by the reconciler.
//! A relist is buffered and swapped in whole at `InitDone`, so planning never sees half a list.
//! Each container's labels are parsed once and the parse kept until the container or the
//! label settings change: a wake-up parses only what changed (issue 17).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::core::container::ContainerInfo;
use crate::core::container_set::ContainerSet;
use crate::core::labelled::{LabelSettings, Labelled};
use crate::core::labels::LabelContext;
use crate::docker::WatchEvent;

#[derive(Debug, Default)]
pub struct ContainerStore {
    containers: BTreeMap<String, Arc<ContainerInfo>>,
    relisting: Option<BTreeMap<String, Arc<ContainerInfo>>>,
    /// True once a first full list is in: before that nothing may be removed.
    listed: bool,
    /// The containers that left (removed, or missing from a relist) since the last
    /// [`ContainerStore::take_departed`].
    departed: Vec<String>,
    /// Parses made under `parsed_under`, by container id; an entry holds the container as it
    /// was parsed, and goes when that container changes or leaves.
    parsed: HashMap<String, Arc<Labelled>>,
    parsed_under: Option<LabelSettings>,
    /// Those that ask for certdock, each with its parse, as of the last snapshot: a version
    /// patched by the changes since, and shared with every snapshot handed out (a wake-up
    /// that nothing changed copies and parses nothing).
    asking: Option<ContainerSet>,
    /// The containers changed, come or gone since `asking` was made: the next snapshot
    /// patches it with these alone. `None`: made whole (the first, after a relist, under new
    /// label settings).
    dirty: Option<BTreeSet<String>>,
}

impl ContainerStore {
    /// Applies one event. Returns true when the visible world changed.
    pub fn apply(&mut self, event: WatchEvent) -> bool {
        let touched = match &event {
            WatchEvent::Upsert(c) => Some(c.id.clone()),
            WatchEvent::Remove(id) => Some(id.clone()),
            _ => None,
        };
        let changed = self.apply_event(event);
        if changed {
            match (touched, self.dirty.as_mut()) {
                (Some(id), Some(dirty)) => {
                    dirty.insert(id);
                }
                _ => self.dirty = None,
            }
        }
        changed
    }

    fn apply_event(&mut self, event: WatchEvent) -> bool {
        match event {
            WatchEvent::Upsert(c) => {
                let c = Arc::new(c);
                if let Some(buf) = self.relisting.as_mut() {
                    buf.insert(c.id.clone(), c.clone());
                }
                if self.containers.get(&c.id) == Some(&c) {
                    return false;
                }
                self.parsed.remove(&c.id);
                self.containers.insert(c.id.clone(), c);
                true
            }
            WatchEvent::Remove(id) => {
                if let Some(buf) = self.relisting.as_mut() {
                    buf.remove(&id);
                }
                self.parsed.remove(&id);
                let gone = self.containers.remove(&id).is_some();
                if gone {
                    self.departed.push(id);
                }
                gone
            }
            WatchEvent::InitStart => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            WatchEvent::InitApply(c) => {
                if let Some(buf) = self.relisting.as_mut() {
                    buf.insert(c.id.clone(), Arc::new(c));
                }
                false
            }
            WatchEvent::InitDone => {
                let Some(mut list) = self.relisting.take() else {
                    return false;
                };
                // What did not change keeps the `Arc` its parse refers to (held once).
                for (id, c) in &mut list {
                    if let Some(old) = self.containers.get(id)
                        && old == c
                    {
                        *c = old.clone();
                    }
                }
                let changed = list != self.containers || !self.listed;
                self.departed.extend(
                    self.containers
                        .keys()
                        .filter(|id| !list.contains_key(*id))
                        .cloned(),
                );
                self.containers = list;
                self.listed = true;
                let containers = &self.containers;
                self.parsed
                    .retain(|id, l| containers.get(id) == Some(&l.container));
                changed
            }
        }
    }

    pub fn listed(&self) -> bool {
        self.listed
    }

    /// The containers that left (removed, or missing from a relist) since the last call:
    /// what is kept per container elsewhere is forgotten for these alone.
    pub fn take_departed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.departed)
    }

    /// Whether container `id` is there now.
    pub fn contains(&self, id: &str) -> bool {
        self.containers.contains_key(id)
    }

    /// The containers that ask for certdock (well or badly) as last seen, each with its
    /// labels parsed under `ctx`: all the plan looks at. The same version as the last
    /// snapshot's ([`ContainerSet::same_version`]) when none of them changed, came or went, so
    /// a change to other containers is seen to change nothing certdock cares about.
    pub fn snapshot(&mut self, ctx: &LabelContext<'_>) -> ContainerSet {
        if !self.parsed_under.as_ref().is_some_and(|s| s.matches(ctx)) {
            self.parsed.clear();
            self.parsed_under = Some(LabelSettings::of(ctx));
            self.dirty = None;
        }
        let asking = match (self.dirty.take(), self.asking.take()) {
            (Some(dirty), Some(mut asking)) => {
                for id in dirty {
                    asking.remove(&id);
                    if let Some(l) = self.parse(&id, ctx).filter(|l| l.asks()) {
                        asking.insert(l);
                    }
                }
                asking
            }
            _ => {
                let ids: Vec<String> = self.containers.keys().cloned().collect();
                ids.iter()
                    .filter_map(|id| self.parse(id, ctx))
                    .filter(|l| l.asks())
                    .collect()
            }
        };
        self.dirty = Some(BTreeSet::new());
        self.asking = Some(asking.clone());
        asking
    }

    /// The parse of container `id` as it is now (made if missing); `None` when it is gone.
    fn parse(&mut self, id: &str, ctx: &LabelContext<'_>) -> Option<Arc<Labelled>> {
        let c = self.containers.get(id)?;
        if let Some(l) = self.parsed.get(id) {
            return Some(l.clone());
        }
        let l = Arc::new(Labelled::parse(c.clone(), ctx));
        self.parsed.insert(id.to_string(), l.clone());
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::container::ContainerState;
    use crate::core::policy::{NamePolicy, TtlPolicy};

    fn c(id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: id.into(),
            labels: Default::default(),
            state: ContainerState::Running,
            networks: vec![],
        }
    }

    fn labelled(id: &str, sans: &str) -> ContainerInfo {
        let mut c = c(id);
        c.labels = [("certdock.enable", "true"), ("certdock.sans", sans)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c
    }

    fn ctx<'a>(prefix: &'a str, names: &'a NamePolicy, ttls: &'a TtlPolicy) -> LabelContext<'a> {
        LabelContext {
            prefix,
            names,
            ttls,
            proxy_network_configured: false,
            forward_auth: false,
        }
    }

    fn ids(set: &ContainerSet) -> Vec<&str> {
        set.iter().map(|l| l.container.id.as_str()).collect()
    }

    #[test]
    fn a_relist_replaces_the_world_only_when_done() {
        let (names, ttls) = (NamePolicy::default(), TtlPolicy::default());
        let ctx = ctx("certdock", &names, &ttls);
        let mut s = ContainerStore::default();
        s.apply(WatchEvent::Upsert(labelled("old", "old.internal")));
        assert!(!s.listed());
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(labelled("new", "new.internal")));
        assert_eq!(
            ids(&s.snapshot(&ctx)),
            vec!["old"],
            "half a list is never visible"
        );
        assert!(s.apply(WatchEvent::InitDone));
        assert!(s.listed());
        assert_eq!(ids(&s.snapshot(&ctx)), vec!["new"]);
    }

    #[test]
    fn labels_are_parsed_again_only_for_what_changed() {
        let (names, ttls) = (NamePolicy::default(), TtlPolicy::default());
        let ctx = ctx("certdock", &names, &ttls);
        let mut s = ContainerStore::default();
        s.apply(WatchEvent::Upsert(labelled("a", "a.internal")));
        s.apply(WatchEvent::Upsert(labelled("b", "b.internal")));
        let first = s.snapshot(&ctx);
        assert!(first.iter().all(|l| matches!(l.spec, Ok(Some(_)))));
        assert!(
            first.same_version(&s.snapshot(&ctx)),
            "nothing changed: the same version"
        );

        // A container without labels is not among those asking, and changes nothing there.
        assert!(s.apply(WatchEvent::Upsert(c("other"))));
        let with_other = s.snapshot(&ctx);
        assert_eq!(ids(&with_other), ["a", "b"]);
        assert!(first.same_version(&with_other), "the same version");

        // The same container again changes nothing; another one's change re-parses it alone.
        assert!(!s.apply(WatchEvent::Upsert(labelled("a", "a.internal"))));
        assert!(s.apply(WatchEvent::Upsert(labelled("b", "bad name!"))));
        assert!(s.apply(WatchEvent::Remove("other".into())));
        let second = s.snapshot(&ctx);
        assert!(!first.same_version(&second), "b changed");
        assert!(
            Arc::ptr_eq(first.get("a").unwrap(), second.get("a").unwrap()),
            "a kept its parse"
        );
        let b = second.get("b").unwrap();
        assert!(b.spec.is_err(), "b parsed again: {:?}", b.spec);

        // A relist with the same containers keeps every parse.
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(labelled("a", "a.internal")));
        s.apply(WatchEvent::InitApply(labelled("b", "bad name!")));
        s.apply(WatchEvent::InitDone);
        let third = s.snapshot(&ctx);
        assert!(
            second
                .iter()
                .zip(third.iter())
                .all(|(x, y)| Arc::ptr_eq(x, y))
        );
        assert!(
            Arc::ptr_eq(&third.get("a").unwrap().container, &s.containers["a"]),
            "one copy of each container, shared by the store and its parse"
        );

        // Other label settings make every parse stale: under another prefix nothing asks.
        let other = LabelContext {
            prefix: "other",
            ..ctx
        };
        assert!(s.snapshot(&other).is_empty());
        assert!(matches!(
            s.snapshot(&ctx).get("a").unwrap().spec,
            Ok(Some(_))
        ));

        assert!(s.apply(WatchEvent::Remove("a".into())));
        assert_eq!(ids(&s.snapshot(&ctx)), vec!["b"]);
    }

    /// A container named `name` (renames reorder the list), with or without labels.
    fn some(id: u8, name: u8, asks: bool) -> ContainerInfo {
        let mut c = if asks {
            labelled(&format!("id{id}"), &format!("n{name}.internal"))
        } else {
            c(&format!("id{id}"))
        };
        c.name = format!("n{name}");
        c
    }

    proptest::proptest! {
        /// The snapshot a store patches after events (the containers changed since the last
        /// one, taken out and put in again) is the one a store builds whole from the same
        /// containers.
        #[test]
        fn a_patched_snapshot_is_the_snapshot_made_whole(
            steps in proptest::collection::vec(
                proptest::collection::vec((0u8..12, 0u8..6, proptest::bool::ANY, proptest::bool::ANY), 0..5),
                1..8,
            ),
        ) {
            let (names, ttls) = (NamePolicy::default(), TtlPolicy::default());
            let ctx = ctx("certdock", &names, &ttls);
            let mut patched = ContainerStore::default();
            for events in steps {
                for (id, name, asks, remove) in events {
                    patched.apply(if remove {
                        WatchEvent::Remove(format!("id{id}"))
                    } else {
                        WatchEvent::Upsert(some(id, name, asks))
                    });
                }
                let got = patched.snapshot(&ctx);
                let mut whole = ContainerStore::default();
                for c in patched.containers.values() {
                    whole.apply(WatchEvent::Upsert((**c).clone()));
                }
                let want = whole.snapshot(&ctx);
                proptest::prop_assert_eq!(ids(&got), ids(&want));
                proptest::prop_assert!(got.iter().zip(want.iter()).all(|(a, b)| a == b));
                // Whatever was removed is gone, whatever asks is there once.
                let asking = patched.containers.values().filter(|c| !c.labels.is_empty()).count();
                proptest::prop_assert_eq!(got.len(), asking);
            }
        }
    }

    #[test]
    fn departed_are_the_containers_gone_and_nothing_else() {
        let mut s = ContainerStore::default();
        s.apply(WatchEvent::Upsert(c("a")));
        s.apply(WatchEvent::Upsert(c("b")));
        s.apply(WatchEvent::Upsert(c("c")));
        assert!(s.take_departed().is_empty());
        s.apply(WatchEvent::Upsert(c("a")));
        s.apply(WatchEvent::Remove("never-seen".into()));
        assert!(s.take_departed().is_empty(), "a change and an unknown id");
        s.apply(WatchEvent::Remove("a".into()));
        assert_eq!(s.take_departed(), ["a"]);
        assert!(s.take_departed().is_empty(), "taken once");
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(c("b")));
        s.apply(WatchEvent::InitApply(c("c")));
        s.apply(WatchEvent::InitApply(c("new")));
        s.apply(WatchEvent::InitDone);
        assert!(s.take_departed().is_empty(), "a relist that lost nobody");
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(c("new")));
        s.apply(WatchEvent::InitDone);
        assert_eq!(s.take_departed(), ["b", "c"], "missing from the relist");
    }
}
