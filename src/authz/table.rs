//! The allow lists in force on this host, published by the controller (which reads the labels)
//! and read by the forward-auth endpoint on every request. Replaced whole, never edited.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::core::authz::AllowList;

/// Server identity (`certdock.name`) → who may call it.
#[derive(Debug, Default)]
pub struct AllowTable {
    lists: RwLock<Arc<BTreeMap<String, AllowList>>>,
}

impl AllowTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every list at once; a server that lost its label loses its list with it.
    pub fn publish(&self, lists: BTreeMap<String, AllowList>) {
        let lists = Arc::new(lists);
        match self.lists.write() {
            Ok(mut g) => *g = lists,
            // A writer panicked mid-swap of an `Arc`: the value is whole, replace it.
            Err(p) => *p.into_inner() = lists,
        }
    }

    /// Every list as published last; cheap (one `Arc`), for one request to look into.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, AllowList>> {
        self.lists
            .read()
            .map_or_else(|p| p.into_inner().clone(), |g| g.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_replaces_every_list() {
        let t = AllowTable::new();
        t.publish(BTreeMap::from([
            ("api".to_string(), AllowList::parse("web").unwrap()),
            ("db".to_string(), AllowList::parse("api").unwrap()),
        ]));
        assert_eq!(t.snapshot()["api"].to_string(), "web");
        t.publish(BTreeMap::from([(
            "api".to_string(),
            AllowList::parse("group:ops").unwrap(),
        )]));
        assert_eq!(t.snapshot()["api"].to_string(), "group:ops");
        assert!(!t.snapshot().contains_key("db"));
    }
}
