//! The containers as last seen: one writer (the watcher's events), read by the reconciler.
//! A relist is buffered and swapped in whole at `InitDone`, so planning never sees half a list.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::core::container::ContainerInfo;
use crate::docker::WatchEvent;

#[derive(Debug, Default)]
pub struct ContainerStore {
    containers: BTreeMap<String, ContainerInfo>,
    relisting: Option<BTreeMap<String, ContainerInfo>>,
    /// True once a first full list is in: before that nothing may be removed.
    listed: bool,
    /// `containers` as one slice, made at the first snapshot after a change and shared until
    /// the next: a wake-up that nothing changed copies nothing.
    snapshot: OnceLock<Arc<[ContainerInfo]>>,
}

impl ContainerStore {
    /// Applies one event. Returns true when the visible world changed.
    pub fn apply(&mut self, event: WatchEvent) -> bool {
        let changed = self.apply_event(event);
        if changed {
            self.snapshot = OnceLock::new();
        }
        changed
    }

    fn apply_event(&mut self, event: WatchEvent) -> bool {
        match event {
            WatchEvent::Upsert(c) => {
                if let Some(buf) = self.relisting.as_mut() {
                    buf.insert(c.id.clone(), c.clone());
                }
                self.containers.insert(c.id.clone(), c.clone()) != Some(c)
            }
            WatchEvent::Remove(id) => {
                if let Some(buf) = self.relisting.as_mut() {
                    buf.remove(&id);
                }
                self.containers.remove(&id).is_some()
            }
            WatchEvent::InitStart => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            WatchEvent::InitApply(c) => {
                if let Some(buf) = self.relisting.as_mut() {
                    buf.insert(c.id.clone(), c);
                }
                false
            }
            WatchEvent::InitDone => {
                let Some(list) = self.relisting.take() else {
                    return false;
                };
                let changed = list != self.containers || !self.listed;
                self.containers = list;
                self.listed = true;
                changed
            }
        }
    }

    pub fn listed(&self) -> bool {
        self.listed
    }

    /// Every container as last seen, sorted by id.
    pub fn snapshot(&self) -> Arc<[ContainerInfo]> {
        self.snapshot
            .get_or_init(|| self.containers.values().cloned().collect())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::container::ContainerState;

    fn c(id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: id.into(),
            labels: Default::default(),
            state: ContainerState::Running,
            networks: vec![],
        }
    }

    #[test]
    fn a_relist_replaces_the_world_only_when_done() {
        let mut s = ContainerStore::default();
        s.apply(WatchEvent::Upsert(c("old")));
        assert!(!s.listed());
        s.apply(WatchEvent::InitStart);
        s.apply(WatchEvent::InitApply(c("new")));
        assert_eq!(s.snapshot().len(), 1);
        assert_eq!(s.snapshot()[0].id, "old", "half a list is never visible");
        assert!(s.apply(WatchEvent::InitDone));
        assert!(s.listed());
        assert_eq!(
            s.snapshot()
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            vec!["new"]
        );
    }
}
