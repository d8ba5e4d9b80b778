//! What the CA has issued and revoked: an append-only journal plus an in-memory index.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::journal::{Compaction, CompactionBase, Journal};
use super::requester::Requester;
use crate::core::authz::GroupName;
use crate::core::names::{San, Usage};
use crate::core::policy::NameRule;

/// One issued certificate. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub serial: String,
    pub name: String,
    pub sans: Vec<San>,
    pub usage: Usage,
    /// Groups bound to the certificate (`certdock.groups`); absent in records of releases
    /// before groups existed, which had none.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<GroupName>,
    pub not_before: i64,
    pub not_after: i64,
    /// Who asked; stored as the free text earlier releases wrote (see [`Requester`]).
    pub requester: Requester,
    /// Present only on an enrolled agent's identity: the names it may sign for with this
    /// certificate (empty: any name the CA policy allows). Carried over on renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_scope: Option<Vec<NameRule>>,
}

#[cfg(test)]
impl IssuedRecord {
    /// A record for tests: `web`, server usage, valid from 0 to 100.
    pub(crate) fn sample(serial: &str, requester: Requester) -> Self {
        IssuedRecord {
            serial: serial.into(),
            name: "web".into(),
            sans: vec![San::parse("web").expect("literal")],
            usage: Usage::SERVER,
            groups: BTreeSet::new(),
            not_before: 0,
            not_after: 100,
            requester,
            agent_scope: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Issued(IssuedRecord),
    Revoked { serial: String, at: i64 },
}

/// Records written by [`Inventory::write_issued`] and not indexed yet, waiting for their fsync.
pub struct Written(Vec<Record>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub record: IssuedRecord,
    pub revoked_at: Option<i64>,
}

/// How long a record is kept after its certificate expired. Until then a revocation of its
/// serial still reaches the certificates renewed from it; after it, compaction drops the record
/// (revoking a whole identity, `revoke --name`, reaches every live certificate at any time).
pub const KEEP_EXPIRED_SECS: i64 = 24 * 3600;

/// A journal is compacted once it holds this many records more than twice what is kept.
const COMPACT_SLACK: usize = 10_000;

/// The inventory of one state directory.
pub struct Inventory {
    journal: Journal<Record>,
    by_serial: HashMap<String, Entry>,
    /// Records in the journal file, kept or not: what compaction would save.
    in_file: usize,
    /// Records of certificates expired before this (Unix seconds) are not indexed.
    drop_before: i64,
    /// Bumped whenever a revocation takes effect in the index (or the index is rebuilt): an
    /// unchanged value means the set of revoked serials is unchanged.
    revocations: u64,
}

impl Inventory {
    /// Every record of the state directory's journal, however old.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        Self::open_live(state_dir, i64::MIN)
    }

    /// The records still worth keeping at `now` (see [`KEEP_EXPIRED_SECS`]); the journal is
    /// read one record at a time, so a long history costs neither memory nor start-up.
    pub fn open_live(state_dir: &Path, now: i64) -> io::Result<Self> {
        let mut inv = Self {
            // Opened to create it; read by `reload`. Reserving: an issuance's fsync writes
            // its record's block, not the inode too.
            journal: Journal::open_unread_reserving(&state_dir.join("inventory.log"))?,
            by_serial: HashMap::new(),
            in_file: 0,
            drop_before: now.saturating_sub(KEEP_EXPIRED_SECS),
            revocations: 0,
        };
        inv.reload()?;
        Ok(inv)
    }

    fn reload(&mut self) -> io::Result<()> {
        self.by_serial.clear();
        self.in_file = 0;
        let path = self.journal.path().to_path_buf();
        let (by_serial, in_file, drop_before) =
            (&mut self.by_serial, &mut self.in_file, self.drop_before);
        // Applied record by record: a long journal is never whole in memory.
        self.journal = Journal::open_each_reserving(&path, |r| {
            apply_one(by_serial, in_file, drop_before, r);
        })?;
        self.revocations += 1;
        Ok(())
    }

    /// Indexes records this process wrote. `read_past`: the journal will not hand them back
    /// (see [`Journal::append_unsynced`]), so they are counted in the file now; otherwise
    /// `in_file` counts them when [`Inventory::refresh`] reads them back.
    fn apply(&mut self, records: Vec<Record>, read_past: bool) {
        let mut uncounted = 0;
        let in_file = if read_past {
            &mut self.in_file
        } else {
            &mut uncounted
        };
        for r in records {
            if apply_one(&mut self.by_serial, in_file, self.drop_before, r) {
                self.revocations += 1;
            }
        }
    }

    /// Catches up with records other processes appended (e.g. `certdock revoke` while `run` runs).
    pub fn refresh(&mut self) -> io::Result<()> {
        let (by_serial, in_file, drop_before, revocations) = (
            &mut self.by_serial,
            &mut self.in_file,
            self.drop_before,
            &mut self.revocations,
        );
        if self.journal.refresh_each(|r| {
            if apply_one(by_serial, in_file, drop_before, r) {
                *revocations += 1;
            }
        })? {
            Ok(())
        } else {
            // Replaced (compacted by another process, or a restored state directory).
            self.reload()
        }
    }

    /// Whether the journal (as of the last refresh) holds so many records of long-expired
    /// certificates that [`Inventory::compact`] is worth its write.
    pub fn compaction_due(&self, now: i64) -> bool {
        let cutoff = now.saturating_sub(KEEP_EXPIRED_SECS);
        self.in_file > COMPACT_SLACK
            && self.in_file
                > 2 * self
                    .by_serial
                    .values()
                    .filter(|e| e.record.not_after >= cutoff)
                    .count()
                    + COMPACT_SLACK
    }

    /// The first half of a compaction (see [`Journal::compaction_base`]): what is kept at
    /// `now` (certificates not expired for longer than [`KEEP_EXPIRED_SECS`], each with its
    /// revocation), to be written by [`Compaction::write`] without this inventory's lock, while
    /// issuance goes on; the caller takes it back with the state lock for the second half.
    pub fn compaction_records(&mut self, now: i64) -> io::Result<(Vec<Record>, CompactionBase)> {
        self.refresh()?;
        self.drop_before = self.drop_before.max(now.saturating_sub(KEEP_EXPIRED_SECS));
        let cutoff = self.drop_before;
        self.by_serial.retain(|_, e| e.record.not_after >= cutoff);
        let mut kept: Vec<&Entry> = self.by_serial.values().collect();
        // Issue order survives compaction (oldest first), as a reader of the journal expects.
        kept.sort_by(|a, b| {
            (a.record.not_before, &a.record.serial).cmp(&(b.record.not_before, &b.record.serial))
        });
        let mut records = Vec::with_capacity(kept.len() + 16);
        for e in kept {
            records.push(Record::Issued(e.record.clone()));
            if let Some(at) = e.revoked_at {
                records.push(Record::Revoked {
                    serial: e.record.serial.clone(),
                    at,
                });
            }
        }
        Ok((records, self.journal.compaction_base()))
    }

    /// The second half, the state lock held: what was appended since is carried over and the
    /// new journal renamed into place. Returns (records before, records after).
    pub fn finish_compaction(&mut self, c: Compaction, kept: usize) -> io::Result<(usize, usize)> {
        let before = self.in_file;
        let carried = self.journal.finish_compaction(c)?;
        self.in_file = kept;
        for r in carried {
            apply_one(&mut self.by_serial, &mut self.in_file, self.drop_before, r);
        }
        Ok((before, self.in_file))
    }

    /// Both halves at once, for a caller that holds the state lock throughout.
    pub fn compact(&mut self, now: i64) -> io::Result<(usize, usize)> {
        let (records, base) = self.compaction_records(now)?;
        let c = Compaction::write(base, &records)?;
        self.finish_compaction(c, records.len())
    }

    /// Writes issued records without waiting for the disk (the group commit, `ca::commit`,
    /// batches many into one fsync). The caller fsyncs the returned file (holding the state
    /// lock, not this inventory), then calls [`Inventory::apply_issued`].
    ///
    /// The records join the index here already when the journal will not hand them back (see
    /// [`Journal::append_unsynced`]): a compaction starting before the fsync must find them in
    /// the index, since it carries over only what lies past what was read. Otherwise a
    /// `refresh` reads them back. Either way they may be in the index before they are durable:
    /// harmless, since nobody holds those certificates yet.
    pub fn write_issued(
        &mut self,
        records: Vec<IssuedRecord>,
    ) -> io::Result<(std::sync::Arc<std::fs::File>, Written)> {
        let records: Vec<Record> = records.into_iter().map(Record::Issued).collect();
        let (sync, read_past) = self.journal.append_unsynced(&records)?;
        if read_past {
            self.apply(records, true);
            return Ok((sync, Written(Vec::new())));
        }
        Ok((sync, Written(records)))
    }

    /// After the caller's fsync of [`Inventory::write_issued`]: the records not indexed yet
    /// join the index.
    pub fn apply_issued(&mut self, written: Written) {
        self.apply(written.0, false);
    }

    /// Durably records a revocation. Returns false when the serial is unknown.
    pub fn record_revoked(&mut self, serial: &str, at: i64) -> io::Result<bool> {
        if !self.by_serial.contains_key(serial) {
            return Ok(false);
        }
        let rec = Record::Revoked {
            serial: serial.to_string(),
            at,
        };
        let read_past = self.journal.append(std::slice::from_ref(&rec))?;
        self.apply(vec![rec], read_past);
        Ok(true)
    }

    /// Durably records the revocation of every serial in `serials` (one journal append), all
    /// known ones; the unknown are left out. Returns the serials recorded.
    pub fn record_revoked_all(&mut self, serials: &[String], at: i64) -> io::Result<Vec<String>> {
        let known: Vec<String> = serials
            .iter()
            .filter(|s| self.by_serial.contains_key(*s))
            .cloned()
            .collect();
        if known.is_empty() {
            return Ok(known);
        }
        let recs: Vec<Record> = known
            .iter()
            .map(|serial| Record::Revoked {
                serial: serial.clone(),
                at,
            })
            .collect();
        let read_past = self.journal.append(&recs)?;
        self.apply(recs, read_past);
        Ok(known)
    }

    /// The live (unrevoked, unexpired at `now`) certificates renewed from `serial`, directly or
    /// through other renewals (revoked or not): what must fall with it. The lineage is the
    /// requester of a renewal over mTLS (`renew:<serial>`), recorded since the first release.
    pub fn live_renewals_of(&self, serial: &str, now: i64) -> Vec<String> {
        let mut children: HashMap<&str, Vec<&Entry>> = HashMap::new();
        for e in self.by_serial.values() {
            if let Requester::Renewal(parent) = &e.record.requester {
                children.entry(parent.as_str()).or_default().push(e);
            }
        }
        let mut live = BTreeSet::new();
        let mut seen = BTreeSet::from([serial]);
        let mut next = vec![serial];
        while let Some(s) = next.pop() {
            for e in children.get(s).into_iter().flatten() {
                let child = e.record.serial.as_str();
                if seen.insert(child) {
                    next.push(child);
                    if e.revoked_at.is_none() && e.record.not_after > now {
                        live.insert(child.to_string());
                    }
                }
            }
        }
        live.into_iter().collect()
    }

    /// The live (unrevoked, unexpired at `now`) certificates of the identity `name`.
    pub fn live_of_name(&self, name: &str, now: i64) -> Vec<String> {
        let mut serials: Vec<String> = self
            .by_serial
            .values()
            .filter(|e| e.record.name == name && e.revoked_at.is_none() && e.record.not_after > now)
            .map(|e| e.record.serial.clone())
            .collect();
        serials.sort();
        serials
    }

    pub fn get(&self, serial: &str) -> Option<&Entry> {
        self.by_serial.get(serial)
    }

    pub fn contains(&self, serial: &str) -> bool {
        self.by_serial.contains_key(serial)
    }

    pub fn len(&self) -> usize {
        self.by_serial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_serial.is_empty()
    }

    /// Revoked certificates that have not yet expired: what the CRL must list.
    pub fn revoked_unexpired(&self, now: i64) -> BTreeMap<String, i64> {
        self.by_serial
            .values()
            .filter_map(|e| {
                e.revoked_at
                    .filter(|_| e.record.not_after > now)
                    .map(|at| (e.record.serial.clone(), at))
            })
            .collect()
    }

    /// Changes whenever a revocation took effect since (see the field): what a cache of the
    /// revoked serials is keyed by.
    pub fn revocations(&self) -> u64 {
        self.revocations
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.by_serial.values()
    }
}

/// Adds one journal record to the index; records of certificates expired before `drop_before`
/// are only counted. Returns whether a revocation took effect.
fn apply_one(
    by_serial: &mut HashMap<String, Entry>,
    in_file: &mut usize,
    drop_before: i64,
    r: Record,
) -> bool {
    *in_file += 1;
    match r {
        Record::Issued(rec) => {
            if rec.not_after < drop_before {
                return false;
            }
            // Idempotent: a record read back from the file after the writer's own apply (or
            // the other way round) keeps any revocation already seen.
            by_serial.entry(rec.serial.clone()).or_insert(Entry {
                record: rec,
                revoked_at: None,
            });
            false
        }
        Record::Revoked { serial, at } => match by_serial.get_mut(&serial) {
            Some(e) if e.revoked_at.is_none() => {
                e.revoked_at = Some(at);
                true
            }
            _ => false,
        },
    }
}

#[cfg(test)]
#[path = "inventory_tests.rs"]
mod tests;
