//! The containers as last seen: one writer (the watcher's events), read by the reconciler.
//! A relist is buffered and swapped in whole at `InitDone`, so planning never sees half a list.
//! Each container's labels are parsed once and the parse kept until the container or the
//! label settings change: a wake-up parses only what changed (issue 17).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::core::container::ContainerInfo;
use crate::core::labelled::{LabelSettings, Labelled};
use crate::core::labels::LabelContext;
use crate::docker::WatchEvent;

#[derive(Debug, Default)]
pub struct ContainerStore {
    containers: BTreeMap<String, Arc<ContainerInfo>>,
    relisting: Option<BTreeMap<String, Arc<ContainerInfo>>>,
    /// True once a first full list is in: before that nothing may be removed.
    listed: bool,
    /// Counts the changes that took a container away (a removal, a relist without it).
    departures: u64,
    /// Parses made under `parsed_under`, by container id; an entry holds the container as it
    /// was parsed, and goes when that container changes or leaves.
    parsed: HashMap<String, Arc<Labelled>>,
    parsed_under: Option<LabelSettings>,
    /// Every container with its parse, made at the first snapshot after a change and shared
    /// until the next: a wake-up that nothing changed copies and parses nothing.
    snapshot: Option<Snapshot>,
    /// The containers changed, come or gone since `snapshot` was made: the next one patches it
    /// (sorting 1,000 containers by name again was a tenth of a whole pass). `None`: made
    /// whole (the first, after a relist, under new label settings).
    dirty: Option<BTreeSet<String>>,
}

/// The containers as of one moment, each with its parse, sorted by name then id.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub all: Arc<[Arc<Labelled>]>,
    /// Those that ask for certdock (well or badly): all the plan looks at. The same `Arc` as
    /// in the previous snapshot when none of them changed, came or went, so a change to other
    /// containers is seen to change nothing certdock cares about.
    pub asking: Arc<[Arc<Labelled>]>,
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
                self.departures += u64::from(gone);
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
                if self.containers.keys().any(|id| !list.contains_key(id)) {
                    self.departures += 1;
                }
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

    /// Changes whenever a container left (removed, or missing from a relist): what is kept
    /// per container elsewhere needs a sweep only then.
    pub fn departures(&self) -> u64 {
        self.departures
    }

    /// Whether container `id` is there now.
    pub fn contains(&self, id: &str) -> bool {
        self.containers.contains_key(id)
    }

    /// Every container as last seen with its labels parsed under `ctx`, sorted by name
    /// then id (the order the plan takes them in).
    pub fn snapshot(&mut self, ctx: &LabelContext<'_>) -> Snapshot {
        if !self.parsed_under.as_ref().is_some_and(|s| s.matches(ctx)) {
            self.parsed.clear();
            self.parsed_under = Some(LabelSettings::of(ctx));
            self.dirty = None;
        }
        let list = match (self.dirty.take(), &self.snapshot) {
            (Some(dirty), Some(s)) if dirty.is_empty() => {
                let s = s.clone();
                self.dirty = Some(dirty);
                return s;
            }
            (Some(dirty), Some(s)) => {
                let mut list: Vec<Arc<Labelled>> = s
                    .all
                    .iter()
                    .filter(|l| !dirty.contains(&l.container.id))
                    .cloned()
                    .collect();
                for id in dirty {
                    if let Some(l) = self.parse(&id, ctx) {
                        let at = list.partition_point(|x| by_name(x) < by_name(&l));
                        list.insert(at, l);
                    }
                }
                list
            }
            _ => {
                let ids: Vec<String> = self.containers.keys().cloned().collect();
                let mut list: Vec<Arc<Labelled>> =
                    ids.iter().filter_map(|id| self.parse(id, ctx)).collect();
                list.sort_by(|a, b| by_name(a).cmp(&by_name(b)));
                list
            }
        };
        self.dirty = Some(BTreeSet::new());
        let previous = self.snapshot.take().map(|s| s.asking);
        let asking: Vec<Arc<Labelled>> = list.iter().filter(|l| l.asks()).cloned().collect();
        let asking = match previous {
            Some(prev)
                if prev.len() == asking.len()
                    && prev.iter().zip(&asking).all(|(a, b)| Arc::ptr_eq(a, b)) =>
            {
                prev
            }
            _ => asking.into(),
        };
        let snapshot = Snapshot {
            all: list.into(),
            asking,
        };
        self.snapshot = Some(snapshot.clone());
        snapshot
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

/// The order of a snapshot: by name, then id.
fn by_name(l: &Labelled) -> (&str, &str) {
    (&l.container.name, &l.container.id)
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

    fn ids(list: &[Arc<Labelled>]) -> Vec<&str> {
        list.iter().map(|l| l.container.id.as_str()).collect()
    }

    #[test]
    fn a_relist_replaces_the_world_only_when_done() {
        let (names, ttls) = (NamePolicy::default(), TtlPolicy::default());
        let ctx = ctx("certdock", &names, &ttls);
        let mut s = ContainerStore::default();
        s.apply(WatchEvent::Upsert(c("old")));
        assert!(!s.listed());
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(c("new")));
        assert_eq!(
            ids(&s.snapshot(&ctx).all),
            vec!["old"],
            "half a list is never visible"
        );
        assert!(s.apply(WatchEvent::InitDone));
        assert!(s.listed());
        assert_eq!(ids(&s.snapshot(&ctx).all), vec!["new"]);
    }

    #[test]
    fn labels_are_parsed_again_only_for_what_changed() {
        let (names, ttls) = (NamePolicy::default(), TtlPolicy::default());
        let ctx = ctx("certdock", &names, &ttls);
        let mut s = ContainerStore::default();
        s.apply(WatchEvent::Upsert(labelled("a", "a.internal")));
        s.apply(WatchEvent::Upsert(labelled("b", "b.internal")));
        let first = s.snapshot(&ctx).all;
        assert!(first.iter().all(|l| matches!(l.spec, Ok(Some(_)))));
        assert!(
            Arc::ptr_eq(&first, &s.snapshot(&ctx).all),
            "nothing changed: the same list"
        );

        // A container without labels changes the list but not what asks for certdock.
        let asking = s.snapshot(&ctx).asking;
        assert!(s.apply(WatchEvent::Upsert(c("other"))));
        let with_other = s.snapshot(&ctx);
        assert_eq!(with_other.all.len(), 3);
        assert!(
            Arc::ptr_eq(&asking, &with_other.asking),
            "the same asking list"
        );

        // The same container again changes nothing; another one's change re-parses it alone.
        assert!(!s.apply(WatchEvent::Upsert(labelled("a", "a.internal"))));
        assert!(s.apply(WatchEvent::Upsert(labelled("b", "bad name!"))));
        assert!(s.apply(WatchEvent::Remove("other".into())));
        let second = s.snapshot(&ctx).all;
        assert!(!Arc::ptr_eq(&asking, &s.snapshot(&ctx).asking), "b changed");
        assert!(Arc::ptr_eq(&first[0], &second[0]), "a kept its parse");
        assert!(
            second[1].spec.is_err(),
            "b parsed again: {:?}",
            second[1].spec
        );

        // A relist with the same containers keeps every parse.
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(labelled("a", "a.internal")));
        s.apply(WatchEvent::InitApply(labelled("b", "bad name!")));
        s.apply(WatchEvent::InitDone);
        let third = s.snapshot(&ctx).all;
        assert!(Arc::ptr_eq(&second[0], &third[0]) && Arc::ptr_eq(&second[1], &third[1]));
        assert!(
            Arc::ptr_eq(&third[0].container, &s.containers["a"]),
            "one copy of each container, shared by the store and its parse"
        );

        // Other label settings make every parse stale: under another prefix nothing asks.
        let other = LabelContext {
            prefix: "other",
            ..ctx
        };
        let fourth = s.snapshot(&other);
        assert!(fourth.all.iter().all(|l| matches!(l.spec, Ok(None))));
        assert!(fourth.asking.is_empty());
        assert!(matches!(s.snapshot(&ctx).all[0].spec, Ok(Some(_))));

        assert!(s.apply(WatchEvent::Remove("a".into())));
        assert_eq!(ids(&s.snapshot(&ctx).all), vec!["b"]);
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
        /// one, re-sorted in place) is the one a store builds whole from the same containers.
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
                for l in got.all.iter() {
                    whole.apply(WatchEvent::Upsert((*l.container).clone()));
                }
                let want = whole.snapshot(&ctx);
                proptest::prop_assert_eq!(ids(&got.all), ids(&want.all));
                proptest::prop_assert_eq!(ids(&got.asking), ids(&want.asking));
                proptest::prop_assert!(got.all.iter().zip(want.all.iter()).all(|(a, b)| a == b));
                // Whatever was removed is gone, whatever is there is in the list once.
                proptest::prop_assert_eq!(got.all.len(), patched.containers.len());
            }
        }
    }

    #[test]
    fn departures_count_containers_gone_and_nothing_else() {
        let mut s = ContainerStore::default();
        s.apply(WatchEvent::Upsert(c("a")));
        s.apply(WatchEvent::Upsert(c("b")));
        assert_eq!(s.departures(), 0);
        s.apply(WatchEvent::Upsert(c("a")));
        s.apply(WatchEvent::Remove("never-seen".into()));
        assert_eq!(s.departures(), 0, "a change and an unknown id");
        s.apply(WatchEvent::Remove("a".into()));
        assert_eq!(s.departures(), 1);
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(c("b")));
        s.apply(WatchEvent::InitApply(c("new")));
        s.apply(WatchEvent::InitDone);
        assert_eq!(s.departures(), 1, "a relist that lost nobody");
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(c("new")));
        s.apply(WatchEvent::InitDone);
        assert_eq!(s.departures(), 2, "b missing from the relist");
    }
}
