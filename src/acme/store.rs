//! ACME objects in `STATE/acme/journal.log` (the shared [`Journal`]); the last record of an object wins.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::model::{Account, Authz, Order, Status};
use crate::store::journal::Journal;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Account(Account),
    Order(Order),
    Authz(Authz),
}

#[derive(Default)]
struct Maps {
    accounts: HashMap<String, Account>,
    by_thumbprint: HashMap<String, String>,
    orders: HashMap<String, Order>,
    authzs: HashMap<String, Authz>,
}

/// How long an order that never produced a certificate is kept after it expired.
pub const FORGET_AFTER: i64 = 7 * 24 * 3600;

impl Maps {
    fn forget_stale(&mut self, now: i64) {
        let stale: Vec<String> = self
            .orders
            .values()
            .filter(|o| o.cert.is_none() && o.expires + FORGET_AFTER < now)
            .map(|o| o.id.clone())
            .collect();
        for id in stale {
            if let Some(o) = self.orders.remove(&id) {
                for z in o.authzs {
                    self.authzs.remove(&z);
                }
            }
        }
    }

    /// Every live object as one record each: what a compacted journal holds.
    fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        out.extend(self.accounts.values().cloned().map(Record::Account));
        out.extend(self.authzs.values().cloned().map(Record::Authz));
        out.extend(self.orders.values().cloned().map(Record::Order));
        out
    }

    fn apply(&mut self, r: Record) {
        match r {
            Record::Account(a) => {
                if let Some(old) = self.accounts.get(&a.id) {
                    self.by_thumbprint.remove(&old.thumbprint);
                }
                self.by_thumbprint
                    .insert(a.thumbprint.clone(), a.id.clone());
                self.accounts.insert(a.id.clone(), a);
            }
            Record::Order(o) => {
                self.orders.insert(o.id.clone(), o);
            }
            Record::Authz(z) => {
                self.authzs.insert(z.id.clone(), z);
            }
        }
    }
}

/// The ACME objects, in memory and durable. Only the serving process writes this journal (the
/// CLI never does), so no state lock is taken; a write is fsynced before it is acknowledged.
pub struct Store {
    inner: Mutex<(Journal<Record>, Maps)>,
}

/// What a writer passes to [`Store::write`]: the objects to record in one fsync.
#[derive(Default)]
pub struct Batch {
    records: Vec<Record>,
}

impl Batch {
    pub fn account(mut self, a: Account) -> Self {
        self.records.push(Record::Account(a));
        self
    }
    pub fn order(mut self, o: Order) -> Self {
        self.records.push(Record::Order(o));
        self
    }
    pub fn authz(mut self, z: Authz) -> Self {
        self.records.push(Record::Authz(z));
        self
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Appends `batch` to the journal (fsynced when `durable`), then makes it visible in `maps`.
/// After an append that did not find the journal where this store last left it (only after a
/// crash tore its last record: this process is the journal's one writer), it reads past what
/// is there, so that the next append need not look again. What it reads is this store's own
/// records, already applied, and the torn one, sealed.
fn commit(
    journal: &mut Journal<Record>,
    maps: &mut Maps,
    batch: Batch,
    durable: bool,
) -> io::Result<()> {
    let past = if durable {
        journal.append(&batch.records)?
    } else {
        journal.append_unsynced(&batch.records)?.1
    };
    if !past {
        journal.refresh_each(|_| {})?;
    }
    for r in batch.records {
        maps.apply(r);
    }
    Ok(())
}

impl Store {
    /// Opens the journal and, when superseded records outnumber live objects, compacts it to
    /// the live objects, leaving out orders (and their authorizations) that expired more than
    /// [`FORGET_AFTER`] seconds before `now` without a certificate.
    pub fn open(state_dir: &Path, now: i64) -> io::Result<Self> {
        let dir = state_dir.join("acme");
        std::fs::create_dir_all(&dir)?;
        // Reserving (zeroed room after the records, as the inventory's): an append then does
        // not grow the file, so its fsync writes the data block alone, not the inode too. An
        // earlier release's journal (no reserve) reads the same and gets one at its next append.
        let mut records = Vec::new();
        let mut journal =
            Journal::open_each_reserving(&dir.join("journal.log"), |r| records.push(r))?;
        let written = records.len();
        let mut maps = Maps::default();
        for r in records {
            maps.apply(r);
        }
        maps.forget_stale(now);
        let live = maps.records();
        if written > 2 * live.len() + 64 {
            journal.compact(&live)?;
        }
        Ok(Self {
            inner: Mutex::new((journal, maps)),
        })
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, (Journal<Record>, Maps)>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("ACME store lock poisoned"))
    }

    /// Records `batch` durably, then makes it visible.
    pub fn write(&self, batch: Batch) -> io::Result<()> {
        self.update(|_| (Some(batch), ()))
    }

    /// Reads and, if `f` returns a batch, writes it under the same lock: a check-then-act that
    /// no concurrent request can interleave (two finalizes of one order, two key changes).
    pub fn update<T>(&self, f: impl FnOnce(&Snapshot<'_>) -> (Option<Batch>, T)) -> io::Result<T> {
        self.update_with(true, f)
    }

    /// [`Store::update`] for a transient state (a challenge being validated, an order being
    /// finalized): the batch is written to the journal and visible at once, but not fsynced.
    /// It survives the process being killed (the bytes are in the kernel when this returns),
    /// and the next durable write of the journal, or [`Store::sync`], makes it durable (one
    /// fsync covers every earlier byte). Nothing may be acknowledged to a client on it alone.
    pub fn update_staged<T>(
        &self,
        f: impl FnOnce(&Snapshot<'_>) -> (Option<Batch>, T),
    ) -> io::Result<T> {
        self.update_with(false, f)
    }

    fn update_with<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&Snapshot<'_>) -> (Option<Batch>, T),
    ) -> io::Result<T> {
        let mut g = self.lock()?;
        let (journal, maps) = &mut *g;
        let (batch, out) = f(&Snapshot(maps));
        if let Some(batch) = batch {
            commit(journal, maps, batch, durable)?;
        }
        Ok(out)
    }

    /// Makes every record written so far durable (blocking: the disk).
    pub fn sync(&self) -> io::Result<()> {
        self.lock()?.0.sync()
    }

    pub fn read<T>(&self, f: impl FnOnce(&Snapshot<'_>) -> T) -> io::Result<T> {
        let g = self.lock()?;
        Ok(f(&Snapshot(&g.1)))
    }

    /// Orders caught by a crash between "processing" and "valid": see [`super::issue::recover`].
    pub fn processing_orders(&self) -> io::Result<Vec<Order>> {
        self.read(|s| {
            s.0.orders
                .values()
                .filter(|o| o.finalized == Some(Status::Processing))
                .cloned()
                .collect()
        })
    }
}

impl Store {
    /// Authorizations with a challenge still `processing` (see [`super::issue::recover`]).
    pub fn processing_authzs(&self) -> io::Result<Vec<super::model::Authz>> {
        self.read(|s| {
            s.0.authzs
                .values()
                .filter(|z| z.challenges.iter().any(|c| c.status == Status::Processing))
                .cloned()
                .collect()
        })
    }
}

/// A consistent view of the objects while the store is locked.
pub struct Snapshot<'a>(&'a Maps);

impl Snapshot<'_> {
    pub fn account(&self, id: &str) -> Option<&Account> {
        self.0.accounts.get(id)
    }
    pub fn account_by_thumbprint(&self, tp: &str) -> Option<&Account> {
        self.0
            .by_thumbprint
            .get(tp)
            .and_then(|id| self.0.accounts.get(id))
    }
    pub fn order(&self, id: &str) -> Option<&Order> {
        self.0.orders.get(id)
    }
    pub fn authz(&self, id: &str) -> Option<&Authz> {
        self.0.authzs.get(id)
    }
    pub fn orders_of(&self, account: &str) -> Vec<&Order> {
        self.0
            .orders
            .values()
            .filter(|o| o.account == account)
            .collect()
    }
    pub fn order_by_serial(&self, serial: &str) -> Option<&Order> {
        self.0
            .orders
            .values()
            .find(|o| o.cert.as_ref().is_some_and(|c| c.serial == serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::model::{AccountStatus, Identifier, OrderCert};

    fn order(id: &str) -> Order {
        Order {
            id: id.into(),
            account: "a1".into(),
            identifiers: vec![Identifier {
                kind: "dns".into(),
                value: "web.internal".into(),
            }],
            authzs: vec![],
            expires: 10,
            ttl_secs: None,
            finalized: None,
            cert: None,
            error: None,
        }
    }

    #[test]
    fn objects_survive_a_reopen_and_the_last_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let acct = Account {
            id: "a1".into(),
            jwk: crate::acme::jws::RawJwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some("x".into()),
                y: None,
                n: None,
                e: None,
            },
            thumbprint: "tp".into(),
            contact: vec![],
            status: AccountStatus::Valid,
            created_at: 1,
            eab_kid: None,
        };
        store
            .write(Batch::default().account(acct.clone()).order(order("o1")))
            .unwrap();
        let mut done = order("o1");
        done.finalized = Some(Status::Valid);
        done.cert = Some(OrderCert {
            serial: "0a".into(),
            chain_pem: "PEM".into(),
        });
        store.write(Batch::default().order(done.clone())).unwrap();
        drop(store);
        let store = Store::open(dir.path(), 0).unwrap();
        store
            .read(|s| {
                assert_eq!(s.account_by_thumbprint("tp"), Some(&acct));
                assert_eq!(s.order("o1"), Some(&done));
                assert_eq!(s.order_by_serial("0a").map(|o| o.id.as_str()), Some("o1"));
            })
            .unwrap();
    }

    #[test]
    fn a_staged_record_is_visible_at_once_and_in_the_journal_without_an_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let first = store
            .update_staged(|s| {
                let fresh = s.order("o1").is_none();
                (fresh.then(|| Batch::default().order(order("o1"))), fresh)
            })
            .unwrap();
        let second = store
            .update_staged(|s| {
                let fresh = s.order("o1").is_none();
                (fresh.then(|| Batch::default().order(order("o1"))), fresh)
            })
            .unwrap();
        assert!(first && !second, "the first claim is seen by the second");
        store.sync().unwrap();
        // Dropped without a durable write: the record is in the file all the same.
        drop(store);
        let store = Store::open(dir.path(), 0).unwrap();
        assert!(store.read(|s| s.order("o1").is_some()).unwrap());
    }

    #[test]
    fn after_a_torn_last_record_new_records_follow_it_and_all_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        store.write(Batch::default().order(order("o1"))).unwrap();
        drop(store);
        // A crash mid-append: half a record, no newline, before the reserve.
        let log = dir.path().join("acme/journal.log");
        let mut bytes = std::fs::read(&log).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        bytes.truncate(end);
        bytes.extend_from_slice(br#"{"record":"order","id":"torn"#);
        std::fs::write(&log, bytes).unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        for id in ["o2", "o3"] {
            store.write(Batch::default().order(order(id))).unwrap();
        }
        store
            .update_staged(|_| (Some(Batch::default().order(order("o4"))), ()))
            .unwrap();
        drop(store);
        let store = Store::open(dir.path(), 0).unwrap();
        store
            .read(|s| {
                for id in ["o1", "o2", "o3", "o4"] {
                    assert!(s.order(id).is_some(), "{id}");
                }
                assert!(s.order("torn").is_none());
            })
            .unwrap();
    }

    #[test]
    fn reopening_compacts_superseded_records_and_forgets_long_expired_orders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        for _ in 0..100 {
            store.write(Batch::default().order(order("kept"))).unwrap();
        }
        let mut done = order("valid");
        done.cert = Some(OrderCert {
            serial: "0b".into(),
            chain_pem: "PEM".into(),
        });
        store
            .write(Batch::default().order(order("stale")).order(done))
            .unwrap();
        drop(store);
        let log = dir.path().join("acme/journal.log");
        // Records only, not the zeroed reserve after them.
        let lines = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('\0'))
                .count()
        };
        assert_eq!(lines(&log), 102);
        // 102 records for 3 objects: compacted to one record each.
        let store = Store::open(dir.path(), 10).unwrap();
        store
            .read(|s| assert!(s.order("kept").is_some() && s.order("stale").is_some()))
            .unwrap();
        drop(store);
        assert_eq!(lines(&log), 3, "compacted to the live objects");
        // A week after they expired, orders without a certificate are forgotten.
        let store = Store::open(dir.path(), 10 + FORGET_AFTER + 1).unwrap();
        store
            .read(|s| {
                assert!(s.order("stale").is_none());
                assert!(s.order("kept").is_none());
                assert!(
                    s.order("valid").is_some(),
                    "an order with a certificate stays"
                );
            })
            .unwrap();
    }
}
