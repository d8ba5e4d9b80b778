//! What was delivered where, persisted under `STATE/managed/` so a restart neither redelivers
//! nor re-signals what is already in place.
//!
//! In memory it is kept in the form the plan reads (by [`Identity`], with times), and every
//! change goes through a method that notes the key it changed: a pass that changed nothing
//! neither serialises nor writes anything (issue 17). On disk, `ledger.json` keeps the format
//! every earlier release wrote ([`LedgerFile`]), and the changes since it was written are
//! appended to `ledger.journal` (one line per changed key, with its value now; fsynced), so a
//! pass that delivered one certificate writes one line, not the whole ledger (issue 17: at
//! 5,000 identities the whole file was ~3 ms of every pass with a delivery). Once the journal
//! holds as many changes as the ledger has entries, `ledger.json` is written whole again and
//! the journal emptied: a crash between the two leaves a journal whose changes, applied again,
//! give the same values (each line holds a key's value, and the last ones are in it too). A state directory of an earlier release (no journal) reads as before,
//! and such a release reading this one's sees `ledger.json` as of its last compaction (what
//! it lacks is delivered again).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::core::plan::Identity;
use crate::store::atomic::{Mode, write_atomic};
use crate::store::journal::Journal;

/// The ledger as stored: keyed by identity file keys, times in Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LedgerFile {
    /// Container id → version copied into it.
    copied: BTreeMap<String, String>,
    /// Identity file key → version published under the output directory.
    published: BTreeMap<String, String>,
    /// Identity file key → Unix seconds when it stopped being wanted.
    orphaned_since: BTreeMap<String, u64>,
}

/// One line of `ledger.journal`: a key and its value now (`None`: removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Change {
    /// Container id, version copied into it.
    Copied(String, Option<String>),
    /// Identity file key, version published.
    Published(String, Option<String>),
    /// Identity file key, Unix seconds since it is unwanted.
    Orphaned(String, Option<u64>),
}

/// The keys changed since the last save.
#[derive(Debug, Default)]
struct Dirty {
    copied: BTreeSet<String>,
    published: BTreeSet<Identity>,
    orphaned: BTreeSet<Identity>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.copied.is_empty() && self.published.is_empty() && self.orphaned.is_empty()
    }
}

/// The delivery bookkeeping (see the module docs).
#[derive(Default)]
pub struct DeliveryLedger {
    copied: BTreeMap<String, String>,
    published: BTreeMap<Identity, String>,
    orphaned_since: BTreeMap<Identity, SystemTime>,
    dirty: Dirty,
    /// Open once a change was saved or read from it.
    journal: Option<Journal<Change>>,
    /// Changes in the journal (written since `ledger.json`).
    journaled: usize,
}

impl std::fmt::Debug for DeliveryLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryLedger")
            .field("copied", &self.copied)
            .field("published", &self.published)
            .field("orphaned_since", &self.orphaned_since)
            .field("dirty", &self.dirty)
            .field("journaled", &self.journaled)
            .finish_non_exhaustive()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn at_secs(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// `ledger.journal` beside `ledger.json`.
fn journal_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("journal")
}

impl DeliveryLedger {
    /// Reads `path` and the changes journaled since; a missing file is an empty ledger, an
    /// unreadable one too (logged: the deliveries it recorded are redone). Keys no identity
    /// has are dropped.
    pub fn load(path: &Path) -> Self {
        let file: LedgerFile = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring an unreadable delivery ledger; deliveries will be redone");
                LedgerFile::default()
            }),
            Err(_) => LedgerFile::default(),
        };
        fn by_id<V>((k, v): (String, V)) -> Option<(Identity, V)> {
            Some((Identity::from_file_key(&k)?, v))
        }
        let mut ledger = Self {
            copied: file.copied,
            published: file.published.into_iter().filter_map(by_id).collect(),
            orphaned_since: file
                .orphaned_since
                .into_iter()
                .filter_map(by_id)
                .map(|(id, secs)| (id, at_secs(secs)))
                .collect(),
            ..Self::default()
        };
        let journal = journal_path(path);
        if journal.exists() {
            match Journal::<Change>::open(&journal) {
                Ok((j, changes)) => {
                    ledger.journaled = changes.len();
                    changes.into_iter().for_each(|c| ledger.apply(c));
                    ledger.journal = Some(j);
                }
                Err(e) => {
                    tracing::warn!(error = %e, journal = %journal.display(), "ignoring an unreadable delivery journal; deliveries it recorded will be redone")
                }
            }
        }
        ledger
    }

    fn apply(&mut self, change: Change) {
        fn set<K: Ord, V>(map: &mut BTreeMap<K, V>, k: K, v: Option<V>) {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        match change {
            Change::Copied(id, v) => set(&mut self.copied, id, v),
            Change::Published(key, v) => {
                if let Some(id) = Identity::from_file_key(&key) {
                    set(&mut self.published, id, v);
                }
            }
            Change::Orphaned(key, secs) => {
                if let Some(id) = Identity::from_file_key(&key) {
                    set(&mut self.orphaned_since, id, secs.map(at_secs));
                }
            }
        }
    }

    /// Writes what changed since the last save (see the module docs): appended to the journal
    /// (fsynced), and once the journal holds as many changes as the ledger has entries, the
    /// whole ledger to `path` (0600, atomically) and the journal emptied. Nothing when nothing
    /// changed.
    pub fn save(&mut self, path: &Path) -> io::Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let changes = self.changes();
        // Appended first, also when the whole ledger is written next: a crash before the
        // journal is emptied then leaves these last values at its end, not older ones.
        let journal = match &mut self.journal {
            Some(j) => j,
            None => self
                .journal
                .insert(Journal::open_unread(&journal_path(path))?),
        };
        journal.append(&changes)?;
        self.journaled += changes.len();
        self.dirty = Dirty::default();
        let entries = self.copied.len() + self.published.len() + self.orphaned_since.len();
        if self.journaled >= entries.max(MIN_JOURNAL) {
            self.write_whole(path)?;
        }
        Ok(())
    }

    /// The changed keys with their values now.
    fn changes(&self) -> Vec<Change> {
        let d = &self.dirty;
        let copied = d
            .copied
            .iter()
            .map(|id| Change::Copied(id.clone(), self.copied.get(id).cloned()));
        let published = d
            .published
            .iter()
            .map(|id| Change::Published(id.file_key(), self.published.get(id).cloned()));
        let orphaned = d.orphaned.iter().map(|id| {
            let since = self.orphaned_since.get(id).map(|t| unix_secs(*t));
            Change::Orphaned(id.file_key(), since)
        });
        copied.chain(published).chain(orphaned).collect()
    }

    /// `ledger.json` with everything, then an empty journal (both atomic renames).
    fn write_whole(&mut self, path: &Path) -> io::Result<()> {
        let file = LedgerFile {
            copied: self.copied.clone(),
            published: self
                .published
                .iter()
                .map(|(id, v)| (id.file_key(), v.clone()))
                .collect(),
            orphaned_since: self
                .orphaned_since
                .iter()
                .map(|(id, t)| (id.file_key(), unix_secs(*t)))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        write_atomic(path, &json, Mode::Secret)?;
        if let Some(j) = &mut self.journal {
            // Read to its end first (what it hands back is applied already): a compaction keeps
            // what its reader has not read, such as the records after a torn line.
            j.refresh()?;
            j.compact(&[])?;
        }
        self.journaled = 0;
        Ok(())
    }

    /// Container id → version copied into it.
    pub fn copied(&self) -> &BTreeMap<String, String> {
        &self.copied
    }

    /// Versions now copied into containers, by container id.
    pub fn note_copied(&mut self, copies: impl IntoIterator<Item = (String, String)>) {
        for (container, version) in copies {
            if self.copied.get(&container) != Some(&version) {
                self.dirty.copied.insert(container.clone());
                self.copied.insert(container, version);
            }
        }
    }

    /// Container `id` is gone: what was copied into it is forgotten.
    pub fn forget_copied(&mut self, id: &str) {
        if self.copied.remove(id).is_some() {
            self.dirty.copied.insert(id.to_owned());
        }
    }

    /// Forgets the copies of containers that are gone.
    pub fn retain_copied(&mut self, mut live: impl FnMut(&str) -> bool) {
        let dirty = &mut self.dirty.copied;
        self.copied.retain(|id, _| {
            let keep = live(id);
            if !keep {
                dirty.insert(id.clone());
            }
            keep
        });
    }

    /// Identity → version published under the output directory.
    pub fn published(&self) -> &BTreeMap<Identity, String> {
        &self.published
    }

    pub fn note_published(&mut self, id: &Identity, version: String) {
        if self.published.get(id) != Some(&version) {
            self.published.insert(id.clone(), version);
            self.dirty.published.insert(id.clone());
        }
    }

    /// The files of `id` under the output directory are gone or no longer ours.
    pub fn unpublished(&mut self, id: &Identity) {
        if self.published.remove(id).is_some() {
            self.dirty.published.insert(id.clone());
        }
    }

    /// Identity → when it stopped being wanted.
    pub fn orphaned_since(&self) -> &BTreeMap<Identity, SystemTime> {
        &self.orphaned_since
    }

    /// No container wants `id` since `now` (kept in whole seconds, as stored).
    pub fn orphaned(&mut self, id: &Identity, now: SystemTime) {
        let since = at_secs(unix_secs(now));
        if self.orphaned_since.insert(id.clone(), since) != Some(since) {
            self.dirty.orphaned.insert(id.clone());
        }
    }

    /// Identities some container wants again are no longer orphans.
    pub fn wanted(&mut self, mut wanted: impl FnMut(&Identity) -> bool) {
        let dirty = &mut self.dirty.orphaned;
        self.orphaned_since.retain(|id, _| {
            let orphan = !wanted(id);
            if !orphan {
                dirty.insert(id.clone());
            }
            orphan
        });
    }

    /// `id` was forgotten: neither published nor orphaned.
    pub fn forget(&mut self, id: &Identity) {
        self.unpublished(id);
        if self.orphaned_since.remove(id).is_some() {
            self.dirty.orphaned.insert(id.clone());
        }
    }
}

/// The journal is written whole into `ledger.json` only past this many changes (or as many as
/// the ledger has entries, if more): a small ledger is not rewritten after every few passes.
const MIN_JOURNAL: usize = 256;

#[cfg(test)]
#[path = "delivery_ledger_tests.rs"]
mod tests;
