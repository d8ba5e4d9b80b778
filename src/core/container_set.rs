//! The containers a plan reads, as one value that versions share (issue 17).
//!
//! The store hands the plan a new version of its containers after every change, and a plan
//! made from a part compares the version it last planned with the one now. In persistent maps
//! (`imbl`'s B-trees, whose nodes are shared between versions and copied on write) a version is
//! made by changing only what changed (O(log n) per container), kept or handed on without a
//! copy, and compared with an earlier one by walking only the nodes they do not share: a
//! wake-up costs what changed, not what exists.

use std::sync::Arc;

use imbl::{OrdMap, ordmap::DiffItem};

use super::container::ContainerInfo;
use super::labelled::Labelled;
use super::names::CertName;

/// A container's place in the order the plan takes containers in: by name, then id. Held as
/// the container's own `Arc`: 8 bytes in the map's nodes, not two copied strings' 48, since a
/// whole plan walks every node (and the keys are compared only while a version is changed).
#[derive(Debug, Clone)]
struct Key(Arc<ContainerInfo>);

impl Key {
    fn of(l: &Labelled) -> Key {
        Key(l.container.clone())
    }

    fn order(&self) -> (&str, &str) {
        (&self.0.name, &self.0.id)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

/// Containers by name then id, with an index by id and one by the certificate name each asks
/// for (its members, see [`ContainerSet::members`]). Ids are unique: a container inserted under
/// an id already in replaces that one.
#[derive(Debug, Clone, Default)]
pub struct ContainerSet {
    by_key: OrdMap<Key, Arc<Labelled>>,
    by_id: OrdMap<String, Key>,
    /// Each name's members, sorted: a name has one or a few, and a `Vec` of one costs 8 bytes
    /// where a set of its own would cost a node (≈ 150).
    by_name: OrdMap<CertName, Vec<Key>>,
}

/// One difference between two versions: the container before and after (`None`: not there).
pub type Change<'a> = (Option<&'a Arc<Labelled>>, Option<&'a Arc<Labelled>>);

impl ContainerSet {
    /// Adds `l`, in place of the container with its id if there is one.
    pub fn insert(&mut self, l: Arc<Labelled>) {
        self.remove(&l.container.id);
        let key = Key::of(&l);
        if let Some(name) = l.cert_name() {
            let members = self.by_name.entry(name.clone()).or_default();
            let at = members.partition_point(|m| *m < key);
            members.insert(at, key.clone());
        }
        self.by_id.insert(l.container.id.clone(), key.clone());
        self.by_key.insert(key, l);
    }

    /// Takes container `id` out; a set without it is left as it was (the same version).
    pub fn remove(&mut self, id: &str) -> Option<Arc<Labelled>> {
        let key = self.by_id.remove(id)?;
        let l = self.by_key.remove(&key)?;
        if let Some(name) = l.cert_name()
            && let Some(members) = self.by_name.get_mut(name)
        {
            members.retain(|m| *m != key);
            if members.is_empty() {
                self.by_name.remove(name);
            }
        }
        Some(l)
    }

    /// Container `id`, when it is here.
    pub fn get(&self, id: &str) -> Option<&Arc<Labelled>> {
        self.by_id.get(id).and_then(|k| self.by_key.get(k))
    }

    /// Every container, by name then id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Labelled>> {
        self.by_key.values()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The containers whose valid labels ask a certificate named `name`, by name then id.
    pub fn members<'a>(&'a self, name: &CertName) -> impl Iterator<Item = &'a Arc<Labelled>> {
        self.by_name
            .get(name)
            .into_iter()
            .flat_map(|keys| keys.iter().filter_map(|k| self.by_key.get(k)))
    }

    /// True when `other` is this very version (no change made since one was copied from the
    /// other): O(1).
    pub fn same_version(&self, other: &ContainerSet) -> bool {
        self.by_key.ptr_eq(&other.by_key)
    }

    /// The containers that differ from this version to `after`, by name then id: both versions
    /// of a changed one, the one version of one come or gone. Nodes the two share are skipped,
    /// and a container kept is the same `Arc`, compared by pointer (`Labelled` is `Eq`).
    pub fn changes<'a>(&'a self, after: &'a ContainerSet) -> impl Iterator<Item = Change<'a>> {
        self.by_key.diff(&after.by_key).map(|d| match d {
            DiffItem::Add(_, l) => (None, Some(l)),
            DiffItem::Remove(_, l) => (Some(l), None),
            DiffItem::Update { old, new } => (Some(old.1), Some(new.1)),
        })
    }
}

impl Extend<Arc<Labelled>> for ContainerSet {
    fn extend<I: IntoIterator<Item = Arc<Labelled>>>(&mut self, iter: I) {
        for l in iter {
            self.insert(l);
        }
    }
}

impl FromIterator<Arc<Labelled>> for ContainerSet {
    fn from_iter<I: IntoIterator<Item = Arc<Labelled>>>(iter: I) -> Self {
        let mut set = ContainerSet::default();
        set.extend(iter);
        set
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::container::{ContainerInfo, ContainerState};
    use crate::core::labels::LabelContext;
    use crate::core::policy::{NamePolicy, TtlPolicy};

    fn parsed(id: &str, name: &str, cert: &str) -> Arc<Labelled> {
        let labels = if cert.is_empty() {
            BTreeMap::new()
        } else {
            BTreeMap::from([
                ("certdock.enable".to_string(), "true".to_string()),
                ("certdock.name".to_string(), cert.to_string()),
                ("certdock.sans".to_string(), cert.to_string()),
            ])
        };
        let c = ContainerInfo {
            id: id.into(),
            name: name.into(),
            labels,
            state: ContainerState::Running,
            networks: vec![],
        };
        let (names, ttls) = (NamePolicy::default(), TtlPolicy::default());
        let ctx = LabelContext {
            prefix: "certdock",
            names: &names,
            ttls: &ttls,
            proxy_network_configured: false,
            forward_auth: false,
        };
        Arc::new(Labelled::parse(Arc::new(c), &ctx))
    }

    fn ids<'a>(it: impl Iterator<Item = &'a Arc<Labelled>>) -> Vec<&'a str> {
        it.map(|l| l.container.id.as_str()).collect()
    }

    fn name(n: &str) -> CertName {
        CertName::parse(n).unwrap()
    }

    #[test]
    fn ordered_by_name_then_id_and_indexed_by_id_and_certificate() {
        let set: ContainerSet = [
            parsed("3", "b", "web.internal"),
            parsed("2", "b", "web.internal"),
            parsed("1", "c", "api.internal"),
            parsed("4", "a", ""),
        ]
        .into_iter()
        .collect();
        assert_eq!(ids(set.iter()), ["4", "2", "3", "1"]);
        assert_eq!(ids(set.members(&name("web.internal"))), ["2", "3"]);
        assert_eq!(ids(set.members(&name("none.internal"))), Vec::<&str>::new());
        assert_eq!(set.get("1").unwrap().container.name, "c");
        assert!(set.get("5").is_none());
    }

    #[test]
    fn a_container_replaced_or_removed_leaves_no_trace_in_the_indexes() {
        let mut set: ContainerSet = [parsed("1", "a", "web.internal")].into_iter().collect();
        // Renamed and asking another certificate: one container, under its new place.
        set.insert(parsed("1", "z", "api.internal"));
        assert_eq!(set.len(), 1);
        assert_eq!(ids(set.members(&name("web.internal"))), Vec::<&str>::new());
        assert_eq!(ids(set.members(&name("api.internal"))), ["1"]);
        let before = set.clone();
        assert!(set.remove("nobody").is_none());
        assert!(
            set.same_version(&before),
            "removing nothing makes no new version"
        );
        assert_eq!(set.remove("1").unwrap().container.name, "z");
        assert!(set.is_empty() && set.by_id.is_empty() && set.by_name.is_empty());
    }

    #[test]
    fn changes_name_what_differs_and_nothing_shared() {
        let many: ContainerSet = (0..2000)
            .map(|i| parsed(&format!("{i:04}"), &format!("n{i:04}"), "web.internal"))
            .collect();
        let mut after = many.clone();
        assert!(after.same_version(&many));
        assert_eq!(many.changes(&after).count(), 0);
        after.remove("0007");
        after.insert(parsed("0500", "n0500", "api.internal"));
        after.insert(parsed("x", "n1000x", ""));
        let changes: Vec<_> = many
            .changes(&after)
            .map(|(b, a)| {
                (
                    b.map(|l| l.container.id.as_str()),
                    a.map(|l| l.container.id.as_str()),
                )
            })
            .collect();
        assert_eq!(
            changes,
            [
                (Some("0007"), None),
                (Some("0500"), Some("0500")),
                (None, Some("x")),
            ]
        );
        assert!(!after.same_version(&many));
    }

    proptest::proptest! {
        /// A version patched from a large one (sharing most nodes with it) differs from it in
        /// exactly what a comparison of the two as plain lists finds, and its indexes agree
        /// with its containers.
        #[test]
        fn changes_are_what_a_plain_comparison_finds(
            ops in proptest::collection::vec((0usize..600, 0usize..600, 0u8..4), 0..40),
        ) {
            let base: ContainerSet = (0..500)
                .map(|i| parsed(&format!("{i:03}"), &format!("n{i:03}"), &format!("c{}.internal", i % 7)))
                .collect();
            let mut after = base.clone();
            for (id, name, what) in ops {
                let id = format!("{id:03}");
                match what {
                    0 => {
                        after.remove(&id);
                    }
                    1 => after.insert(parsed(&id, &format!("n{name:03}"), "")),
                    _ => after.insert(parsed(&id, &format!("n{name:03}"), &format!("c{}.internal", name % 3))),
                }
            }
            let plain = |s: &ContainerSet| -> BTreeMap<(String, String), Arc<Labelled>> {
                s.iter()
                    .map(|l| ((l.container.name.clone(), l.container.id.clone()), l.clone()))
                    .collect()
            };
            let (b, a) = (plain(&base), plain(&after));
            let mut want = Vec::new();
            for k in b.keys().chain(a.keys()).collect::<std::collections::BTreeSet<_>>() {
                match (b.get(k), a.get(k)) {
                    (Some(x), Some(y)) if x == y => {}
                    (x, y) => want.push((x.map(|l| l.container.id.clone()), y.map(|l| l.container.id.clone()))),
                }
            }
            let got: Vec<_> = base
                .changes(&after)
                .map(|(x, y)| (x.map(|l| l.container.id.clone()), y.map(|l| l.container.id.clone())))
                .collect();
            proptest::prop_assert_eq!(got, want);
            for l in after.iter() {
                proptest::prop_assert!(std::ptr::eq(after.get(&l.container.id).unwrap(), l));
                if let Some(n) = l.cert_name() {
                    proptest::prop_assert!(after.members(n).any(|m| std::ptr::eq(m, l)));
                }
            }
            let indexed: usize = after.by_name.values().map(|m| m.len()).sum();
            proptest::prop_assert_eq!(indexed, after.iter().filter(|l| l.cert_name().is_some()).count());
            proptest::prop_assert_eq!(after.by_id.len(), after.len());
        }
    }
}
