//! What the CA has issued and revoked: the inventory, its group-committed writes, the CRL, and
//! the check of a presented client certificate (with its verification cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use time::OffsetDateTime;
use tokio::sync::watch;

use super::CaError;
use super::authority::Authority;
use super::commit::{Committer, Durable};
use super::crl::{RevokedEntry, build_crl};
use super::facts::CertFacts;
use super::locks::lock;
use super::pem::parse_cert;
use crate::store::inventory::{Inventory, IssuedRecord};
use crate::store::journal::Compaction;
use crate::store::lock::StateLock;

/// Bound on the verification cache (about 1.5 KiB an entry); past it the cache starts over
/// (it is only a cache).
const VERIFIED_CACHE: usize = 1024;

pub struct Ledger {
    state_dir: PathBuf,
    inventory: Arc<Mutex<Inventory>>,
    /// The inventory writer (see [`super::commit`]), started by the first issuance.
    commit: OnceLock<Committer>,
    /// Client certificates (DER) whose signature by a current intermediate was already checked,
    /// with what they say: a keep-alive agent presents the same certificate on every request,
    /// and the check is an ECDSA verification, dearer than the signature the request then asks
    /// for. Only the signature and the parse are remembered; revocation and expiry are looked
    /// at on every request.
    verified: Mutex<HashMap<Box<[u8]>, Arc<CertFacts>>>,
    /// Bumped after every revocation this process records, so holders of a certificate (the
    /// API's own) look at once rather than at their next periodic check.
    revocations: watch::Sender<u64>,
    /// The serials revoked, as of an inventory revocation count (see [`Ledger::revoked_serials`]).
    revoked: Mutex<Option<(u64, RevokedSerials)>>,
}

/// Every serial the CA has revoked (hex, without leading zeros, as numbers compare). The same
/// `Arc` while no revocation took effect, so a holder tells "nothing new" by pointer.
pub type RevokedSerials = Arc<std::collections::BTreeSet<String>>;

/// A hex serial in the form [`RevokedSerials`] holds: without leading zeros, so that a serial
/// written with its sign byte (a CRL's) and one without (the inventory's) compare equal.
pub fn bare_serial(hex: &str) -> &str {
    hex.trim_start_matches('0')
}

impl Ledger {
    /// The inventory as kept at `now`: records of certificates long expired are not loaded.
    pub fn open(state_dir: &Path, now: OffsetDateTime) -> Result<Self, CaError> {
        let inventory = Inventory::open_live(state_dir, now.unix_timestamp())
            .map_err(|e| CaError::io(state_dir, e))?;
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            inventory: Arc::new(Mutex::new(inventory)),
            commit: OnceLock::new(),
            verified: Mutex::default(),
            revocations: watch::Sender::new(0),
            revoked: Mutex::default(),
        })
    }

    /// Queues `record` for the inventory writer; the certificate may be handed out only once
    /// the returned [`Durable`] has resolved.
    pub fn record(&self, record: IssuedRecord) -> Durable {
        self.commit
            .get_or_init(|| Committer::start(self.state_dir.clone(), self.inventory.clone()))
            .submit(record)
    }

    /// Compacts the inventory journal when it holds mostly long-expired records (see
    /// [`Inventory::compact`]), so that disk, memory and start-up follow the live certificates,
    /// not every certificate ever issued. Issuance waits only for the rewrite itself.
    pub fn compact_if_due(&self, now: OffsetDateTime) -> Result<(), CaError> {
        let now = now.unix_timestamp();
        if !self.with_inventory(|inv| inv.compaction_due(now))? {
            return Ok(());
        }
        let io = |e| CaError::io(&self.state_dir, e);
        let started = std::time::Instant::now();
        tracing::info!("compacting the inventory");
        // First half without any lock held while writing: issuance goes on.
        let (records, base) = lock(&self.inventory, "inventory")?
            .compaction_records(now)
            .map_err(io)?;
        let prepared = Compaction::write(base, &records).map_err(io)?;
        // Second half: no other process appends, and this process's writer waits (it takes
        // the state lock, then the inventory), while the tail is carried over and renamed.
        let _lock = StateLock::exclusive(&self.state_dir).map_err(io)?;
        let (before, after) = lock(&self.inventory, "inventory")?
            .finish_compaction(prepared, records.len())
            .map_err(io)?;
        tracing::info!(
            records_before = before,
            records_after = after,
            ms = started.elapsed().as_millis() as u64,
            "compacted the inventory"
        );
        Ok(())
    }

    /// Every serial revoked so far (expired ones until compaction drops them), the inventory
    /// caught up first: the controller asks on every pass, and gets the same `Arc` back, with
    /// no walk over the inventory, until a revocation takes effect.
    pub fn revoked_serials(&self) -> Result<RevokedSerials, CaError> {
        self.with_inventory(|inv| {
            let count = inv.revocations();
            let mut cached = lock(&self.revoked, "revoked serials")?;
            if let Some((seen, set)) = &*cached
                && *seen == count
            {
                return Ok(set.clone());
            }
            let set: RevokedSerials = Arc::new(
                inv.entries()
                    .filter(|e| e.revoked_at.is_some())
                    .map(|e| bare_serial(&e.record.serial).to_string())
                    .collect(),
            );
            *cached = Some((count, set.clone()));
            Ok(set)
        })?
    }

    /// Runs `f` on the inventory, refreshed first (another process may have appended).
    pub fn with_inventory<T>(&self, f: impl FnOnce(&mut Inventory) -> T) -> Result<T, CaError> {
        let mut inv = lock(&self.inventory, "inventory")?;
        inv.refresh().map_err(|e| CaError::io(&self.state_dir, e))?;
        Ok(f(&mut inv))
    }

    /// The inventory record of a presented certificate, when `ca` issued it (signature checked
    /// by the TLS layer or here), it is unexpired and not revoked. The record is looked up (and
    /// the journal caught up first) on every call: a revocation counts from the next request.
    pub fn verify_presented(
        &self,
        ca: &Authority,
        der: &[u8],
        now: OffsetDateTime,
    ) -> Result<(IssuedRecord, Arc<CertFacts>), CaError> {
        let facts = match self.verified_facts(der) {
            Some(facts) => facts,
            None => self.verify_signature(ca, der)?,
        };
        let serial = &facts.serial;
        let record = self.with_inventory(|inv| match inv.get(serial) {
            None => Err(CaError::UnknownCertificate {
                serial: serial.clone(),
            }),
            Some(e) if e.revoked_at.is_some() => Err(CaError::Revoked {
                serial: serial.clone(),
            }),
            Some(e) => Ok(e.record.clone()),
        })??;
        if record.not_after <= now.unix_timestamp() || facts.not_after <= now {
            return Err(CaError::UnknownCertificate {
                serial: facts.serial.clone(),
            });
        }
        Ok((record, facts))
    }

    /// The facts of a certificate whose signature was already checked (a keep-alive client
    /// presents the same one on every request): no parse, no digest, no ECDSA verification.
    fn verified_facts(&self, der: &[u8]) -> Option<Arc<CertFacts>> {
        self.verified.lock().ok()?.get(der).cloned()
    }

    /// Parses `der` and checks that a current intermediate signed it; remembers it if so.
    fn verify_signature(&self, ca: &Authority, der: &[u8]) -> Result<Arc<CertFacts>, CaError> {
        let cert = parse_cert("client certificate", der)?;
        let facts = CertFacts::from_parsed(&cert, der);
        for inter in ca.intermediates() {
            let parsed = parse_cert("intermediate", &inter.der)?;
            if cert.verify_signature(Some(parsed.public_key())).is_ok() {
                let facts = Arc::new(facts);
                // A poisoned cache is only a slower path, never a refusal.
                if let Ok(mut v) = self.verified.lock() {
                    if v.len() >= VERIFIED_CACHE {
                        v.clear();
                    }
                    v.insert(der.into(), facts.clone());
                }
                return Ok(facts);
            }
        }
        Err(CaError::UnknownCertificate {
            serial: facts.serial,
        })
    }

    /// After an intermediate left the bundle, what it signed must be checked again.
    pub fn forget_verified(&self) {
        if let Ok(mut v) = self.verified.lock() {
            v.clear();
        }
    }

    /// Revokes a serial (already normalised) and every live certificate renewed from it,
    /// durably, in one journal append under the state lock. Returns the serials revoked, the
    /// one asked first.
    pub fn revoke(&self, serial: &str, now: OffsetDateTime) -> Result<Vec<String>, CaError> {
        self.revoke_where(now, |inv, at| {
            if !inv.contains(serial) {
                return Err(CaError::UnknownCertificate {
                    serial: serial.to_string(),
                });
            }
            let mut all = vec![serial.to_string()];
            all.extend(inv.live_renewals_of(serial, at));
            Ok(all)
        })
    }

    /// Revokes every live certificate of the identity `name` (and what was renewed from
    /// them), like [`Ledger::revoke`]. Refused when the identity has no live certificate.
    pub fn revoke_name(&self, name: &str, now: OffsetDateTime) -> Result<Vec<String>, CaError> {
        self.revoke_where(now, |inv, at| {
            let mut all = inv.live_of_name(name, at);
            if all.is_empty() {
                return Err(CaError::NoLiveCertificate {
                    name: name.chars().take(64).collect(),
                });
            }
            let renewals: Vec<String> = all
                .iter()
                .flat_map(|s| inv.live_renewals_of(s, at))
                .collect();
            for s in renewals {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
            Ok(all)
        })
    }

    fn revoke_where(
        &self,
        now: OffsetDateTime,
        which: impl FnOnce(&Inventory, i64) -> Result<Vec<String>, CaError>,
    ) -> Result<Vec<String>, CaError> {
        let _lock =
            StateLock::exclusive(&self.state_dir).map_err(|e| CaError::io(&self.state_dir, e))?;
        let at = now.unix_timestamp();
        let revoked = self.with_inventory(|inv| {
            let serials = which(inv, at)?;
            inv.record_revoked_all(&serials, at)
                .map_err(|e| CaError::io(&self.state_dir, e))
        })??;
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
        Ok(revoked)
    }

    /// Changes after every revocation recorded by this process.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The CRL (DER) of every revoked, unexpired certificate, signed by `ca`'s intermediate.
    pub fn crl(&self, ca: &Authority, now: OffsetDateTime) -> Result<Vec<u8>, CaError> {
        let revoked = self.with_inventory(|inv| inv.revoked_unexpired(now.unix_timestamp()))?;
        let entries: Vec<RevokedEntry<'_>> = revoked
            .iter()
            .map(|(s, at)| RevokedEntry {
                serial_hex: s,
                revoked_at: OffsetDateTime::from_unix_timestamp(*at).unwrap_or(now),
            })
            .collect();
        build_crl(ca, &entries, now.unix_timestamp().max(1) as u64, now)
    }
}
