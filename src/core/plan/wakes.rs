//! When each identity's plan next changes with the clock alone, kept between plans (issue 17:
//! a renewal coming due is planned from its identity, not by planning every identity again).
//!
//! Why this is enough: with the same containers, holdings, CA bundle and settings, the clock
//! enters a plan only through each identity's own times (its certificate's renewal and expiry,
//! its retry after a failure, its removal after the orphan grace), and [`super::plan`] lists,
//! for each identity, the earliest of them still ahead ([`super::Plan::wakes`]). Until that
//! time the identity's part of the plan is what it was; at it, only that identity need be
//! planned again. A clock set back is not covered: the caller plans everything then.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::Identity;

/// Each identity's next wake-up, searchable by identity (to replace it when the identity is
/// planned again) and by time (to find the identities whose time came). By identity in a hash
/// map: a whole pass builds this for every identity, and a hash map is built without sorting
/// the names (measured alone: 0.08 ms at 1,000 identities, 0.43 ms at 5,000, with its drop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WakeIndex {
    by_id: HashMap<Identity, SystemTime, foldhash::fast::RandomState>,
    by_time: BTreeSet<(SystemTime, Identity)>,
}

impl WakeIndex {
    /// The index of a whole plan's wake-ups.
    pub fn of(wakes: &[(Identity, SystemTime)]) -> WakeIndex {
        let mut index = WakeIndex {
            by_id: HashMap::with_capacity_and_hasher(wakes.len(), Default::default()),
            by_time: BTreeSet::new(),
        };
        for (id, t) in wakes {
            // At most one per identity in a plan; were there more, the earliest counts.
            let kept = index.by_id.entry(id.clone()).or_insert(*t);
            *kept = (*kept).min(*t);
        }
        let mut by_time: Vec<(SystemTime, Identity)> =
            index.by_id.iter().map(|(id, t)| (*t, id.clone())).collect();
        by_time.sort_unstable();
        index.by_time = by_time.into_iter().collect();
        index
    }

    /// The earliest wake-up, if any identity has one.
    pub fn next(&self) -> Option<SystemTime> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// The identities whose wake-up is `now` or earlier, earliest first.
    pub fn due(&self, now: SystemTime) -> impl Iterator<Item = &Identity> {
        self.by_time
            .iter()
            .take_while(move |(t, _)| *t <= now)
            .map(|(_, id)| id)
    }

    /// `planned` were planned again and said `wakes`: their old wake-ups go, these come.
    pub fn replace<'a>(
        &mut self,
        planned: impl IntoIterator<Item = &'a Identity>,
        wakes: &'a [(Identity, SystemTime)],
    ) {
        let gone = planned.into_iter().chain(wakes.iter().map(|(id, _)| id));
        for id in gone {
            if let Some(t) = self.by_id.remove(id) {
                self.by_time.remove(&(t, id.clone()));
            }
        }
        for (id, t) in wakes {
            if let Some(old) = self.by_id.get(id) {
                if old <= t {
                    continue;
                }
                self.by_time.remove(&(*old, id.clone()));
            }
            self.by_id.insert(id.clone(), *t);
            self.by_time.insert((*t, id.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::names::CertName;

    fn id(n: &str) -> Identity {
        Identity::Named(CertName::parse(n).unwrap())
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn the_due_are_those_whose_time_came_and_a_replan_moves_them() {
        let mut w = WakeIndex::of(&[
            (id("b"), t(20)),
            (id("a"), t(30)),
            (Identity::TraefikClient, t(10)),
        ]);
        assert_eq!(w.next(), Some(t(10)));
        assert_eq!(w.due(t(5)).count(), 0);
        let due: Vec<_> = w.due(t(20)).cloned().collect();
        assert_eq!(due, [Identity::TraefikClient, id("b")]);

        // b planned again (renewed: later), the traefik client planned again with no wake-up,
        // a not planned: it keeps its time.
        w.replace([&id("b"), &Identity::TraefikClient], &[(id("b"), t(50))]);
        assert_eq!(w.next(), Some(t(30)));
        assert_eq!(w.due(t(49)).cloned().collect::<Vec<_>>(), [id("a")]);
        assert_eq!(w.by_id.len(), 2);
        assert_eq!(
            w.by_time.iter().cloned().collect::<Vec<_>>(),
            [(t(30), id("a")), (t(50), id("b"))],
            "earliest first"
        );

        // A wake-up of an identity not named as planned replaces its old one too.
        w.replace([], &[(id("a"), t(40))]);
        assert_eq!(w.due(t(45)).cloned().collect::<Vec<_>>(), [id("a")]);
        w.replace([&id("a"), &id("b")], &[]);
        assert!(w.by_id.is_empty() && w.by_time.is_empty());
        assert_eq!(w.next(), None);
    }

    #[test]
    fn of_two_times_for_one_identity_the_earliest_counts() {
        let w = WakeIndex::of(&[(id("a"), t(30)), (id("a"), t(20))]);
        assert_eq!((w.by_id.len(), w.by_time.len()), (1, 1));
        assert_eq!(w.next(), Some(t(20)));
        let w = WakeIndex::of(&[(id("a"), t(20)), (id("a"), t(30))]);
        assert_eq!(w.due(t(25)).count(), 1);
        assert_eq!((w.by_id.len(), w.by_time.len()), (1, 1));
    }
}
