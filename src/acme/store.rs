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

impl Maps {
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
}

impl Store {
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join("acme");
        std::fs::create_dir_all(&dir)?;
        let (journal, records) = Journal::open(&dir.join("journal.log"))?;
        let mut maps = Maps::default();
        for r in records {
            maps.apply(r);
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
        let mut g = self.lock()?;
        g.0.append(&batch.records)?;
        for r in batch.records {
            g.1.apply(r);
        }
        Ok(())
    }

    /// Reads and, if `f` returns a batch, writes it under the same lock: a check-then-act that
    /// no concurrent request can interleave (two finalizes of one order, two key changes).
    pub fn update<T>(&self, f: impl FnOnce(&Snapshot<'_>) -> (Option<Batch>, T)) -> io::Result<T> {
        let mut g = self.lock()?;
        let (batch, out) = f(&Snapshot(&g.1));
        if let Some(batch) = batch {
            g.0.append(&batch.records)?;
            for r in batch.records {
                g.1.apply(r);
            }
        }
        Ok(out)
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
        let store = Store::open(dir.path()).unwrap();
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
        let store = Store::open(dir.path()).unwrap();
        store
            .read(|s| {
                assert_eq!(s.account_by_thumbprint("tp"), Some(&acct));
                assert_eq!(s.order("o1"), Some(&done));
                assert_eq!(s.order_by_serial("0a").map(|o| o.id.as_str()), Some("o1"));
            })
            .unwrap();
    }
}
