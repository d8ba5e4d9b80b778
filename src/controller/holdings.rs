//! What the controller holds: the current certificate of every identity (with its key), and
//! what was delivered where. Persisted under `STATE/managed/` so a restart neither reissues
//! nor redelivers (nor re-signals) what is already in place.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::delivery_ledger::DeliveryLedger;
use super::outputs::OutputDirs;
use crate::ca::facts::{CertFacts, Signer};
use crate::ca::issue::Issued;
use crate::ca::keys::SecretPem;
use crate::ca::pem::certs_from_pem;
use crate::core::authz::GroupName;
use crate::core::names::{San, Usage};
use crate::core::plan::{Current, Failure, Identity};
use crate::core::renew::{jitter_from_serial, reissue_after_rollover, renew_issued_at};
use crate::delivery::bundle::Bundle;
use crate::store::atomic::{Mode, create_dir, write_atomic};

/// One held certificate: the delivery bundle and its parsed facts.
#[derive(Debug, Clone)]
pub struct Held {
    pub serial: String,
    pub cert_pem: String,
    pub key: SecretPem,
    pub sans: Vec<San>,
    pub groups: BTreeSet<GroupName>,
    pub usage: Usage,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub renew_at: SystemTime,
    /// The chain above the leaf: the same for every certificate one intermediate signed, so
    /// held once for all of them (see [`Holdings`]'s `chains`; 1,000 copies were ~2 MiB).
    chain: Arc<HeldChain>,
}

/// The intermediates above a leaf, as delivered (PEM) and parsed once (DER; empty when
/// unreadable: not trusted).
#[derive(Debug, PartialEq, Eq)]
struct HeldChain {
    pem: String,
    der: Vec<CertificateDer<'static>>,
}

/// The CA bundle trusted now, read once per pass: what every held certificate's chain is
/// checked against, what versions deliveries, and who signs since when (rollovers).
#[derive(Debug, Clone)]
pub struct TrustedBundle {
    /// The first 12 hex digits of the bundle's SHA-256, part of every delivery version.
    digest: String,
    certs: Vec<CertificateDer<'static>>,
    signer: Option<Signer>,
    /// Certificates issued before a rollover are re-issued spread over this after it.
    rollover_spread: Duration,
}

impl TrustedBundle {
    pub fn new(ca_pem: &str, rollover_spread: Duration) -> Self {
        let certs = certs_from_pem("bundle", ca_pem).unwrap_or_default();
        Self {
            digest: bundle_digest(ca_pem),
            signer: Signer::of_bundle(&certs),
            certs,
            rollover_spread,
        }
    }

    /// What deliveries compare: changes with the certificate and with the CA bundle.
    pub fn version(&self, serial: &str) -> String {
        format!("{serial}-{}", self.digest)
    }
}

impl Held {
    pub fn from_issued(issued: &Issued) -> Option<Held> {
        Held::parse(issued.key.clone(), &issued.cert_pem, &issued.chain_pem).ok()
    }

    /// Reads a leaf's facts ([`CertFacts`], the one parser); renewal follows the one schedule
    /// ([`renew_issued_at`]) with a jitter from the serial, stable across restarts yet spread
    /// across certificates.
    pub fn parse(key: SecretPem, cert_pem: &str, chain_pem: &str) -> Result<Held, String> {
        let facts = CertFacts::from_pem("certificate", cert_pem).map_err(|e| e.to_string())?;
        let not_before = SystemTime::from(facts.not_before);
        let not_after = SystemTime::from(facts.not_after);
        Ok(Held {
            renew_at: renew_issued_at(not_before, not_after, jitter_from_serial(&facts.serial)),
            serial: facts.serial,
            cert_pem: cert_pem.to_string(),
            key,
            sans: facts.sans,
            groups: facts.groups,
            usage: facts.usage,
            not_before,
            not_after,
            chain: Arc::new(HeldChain {
                pem: chain_pem.to_string(),
                der: certs_from_pem("chain", chain_pem).unwrap_or_default(),
            }),
        })
    }

    /// The chain above the leaf, PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain.pem
    }

    /// The plan's view against `bundle`, the CA bundle trusted now (which versions the delivery
    /// too). A certificate issued before a CA rollover is due within the bundle's rollover spread.
    pub fn current(&self, bundle: &TrustedBundle) -> Current {
        let issuer = self.chain.der.first();
        // The issuing intermediate must still be trusted; a cross-certificate after it may
        // leave the bundle (the overlap ended) without making the leaf untrustworthy.
        let chain_trusted = issuer.is_some_and(|c| bundle.certs.contains(c));
        let rolled_at = bundle
            .signer
            .as_ref()
            .zip(issuer)
            .and_then(|(signer, issuer)| {
                signer.rolled_over_since(issuer, OffsetDateTime::from(self.not_before))
            });
        let renew_at = match rolled_at {
            Some(rolled_at) => reissue_after_rollover(
                rolled_at.into(),
                bundle.rollover_spread,
                jitter_from_serial(&self.serial),
                self.renew_at,
            ),
            None => self.renew_at,
        };
        Current {
            version: bundle.version(&self.serial),
            sans: self.sans.clone(),
            groups: self.groups.clone(),
            usage: self.usage,
            not_before: self.not_before,
            not_after: self.not_after,
            renew_at,
            issuer_trusted: chain_trusted,
        }
    }

    pub fn bundle(&self, ca_pem: &str) -> Bundle {
        Bundle {
            version: self.serial.clone(),
            cert_pem: self.cert_pem.clone(),
            key: self.key.clone(),
            chain_pem: self.chain.pem.clone(),
            ca_pem: ca_pem.to_string(),
        }
    }
}

/// A delivery's version: the serial plus a digest of the CA bundle, so a CA rollover
/// redelivers `ca.pem` everywhere even when the leaf stays.
pub fn version(serial: &str, ca_pem: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes());
    format!("{serial}-{}", hex::encode(&digest.as_ref()[..6]))
}

/// Everything held, in memory, with its persistence.
pub struct Holdings {
    dir: PathBuf,
    pub held: BTreeMap<Identity, Held>,
    pub ledger: DeliveryLedger,
    pub failures: BTreeMap<Identity, Failure>,
    /// The last failed delivery per identity (cleared by the next success), for `status`.
    pub delivery_errors: BTreeMap<Identity, String>,
    /// (container id, error) refusals already logged.
    pub refusals_logged: std::collections::BTreeSet<(String, String)>,
    /// The plan's view of `held` (see [`Holdings::refresh_currents`]), kept between passes: a wake-up
    /// recomputes only what was stored since, or everything when the CA bundle changed.
    currents: BTreeMap<Identity, Current>,
    /// What `currents` was computed against: the bundle's digest and the rollover spread.
    currents_for: Option<(String, Duration)>,
    /// Identities stored since `currents` was brought up to date.
    stale: BTreeSet<Identity>,
    /// The distinct chains of the held certificates (one or two: the intermediate, and the
    /// next one during a rollover), each held once.
    chains: Chains,
    /// Bumped whenever a certificate is stored or forgotten (see [`Holdings::generation`]).
    generation: u64,
}

/// Interns [`HeldChain`]s: a held certificate whose chain equals one already held points to it.
#[derive(Debug, Default)]
struct Chains(Vec<Arc<HeldChain>>);

impl Chains {
    fn share(&mut self, mut held: Held) -> Held {
        // Chains no held certificate uses any more are dropped first (the list stays tiny).
        self.0.retain(|c| Arc::strong_count(c) > 1);
        match self.0.iter().find(|c| ***c == *held.chain) {
            Some(same) => held.chain = same.clone(),
            None => self.0.push(held.chain.clone()),
        }
        held
    }
}

/// The first 12 hex digits of a CA bundle's SHA-256: part of every delivery version.
fn bundle_digest(ca_pem: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes());
    hex::encode(&digest.as_ref()[..6])
}

/// The delivery ledger's file under `STATE/managed/`.
const LEDGER: &str = "ledger.json";

const BEGIN_CERT: &str = "-----BEGIN CERTIFICATE-----";

impl Holdings {
    /// Loads `STATE/managed/`; unreadable entries are logged and dropped (they will be reissued).
    pub fn load(state_dir: &Path) -> io::Result<Holdings> {
        let dir = state_dir.join("managed");
        create_dir(&dir, 0o700)?;
        let mut held = BTreeMap::new();
        let mut chains = Chains::default();
        for entry in std::fs::read_dir(&dir)?.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write cut short by a crash (`store::atomic`): the file it was replacing is
                // whole; the half-written copy is nobody's. This process has written nothing yet.
                tracing::info!(file = %entry.path().display(), "removing a temporary file left by a crash");
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(key) = name.strip_suffix(".pem") else {
                continue;
            };
            let Some(id) = Identity::from_file_key(key) else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path())?;
            match split_managed(&text)
                .and_then(|(k, c, ch)| Held::parse(SecretPem::new(k), &c, &ch))
            {
                Ok(h) => {
                    held.insert(id, chains.share(h));
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "ignoring an unreadable managed certificate; it will be reissued")
                }
            }
        }
        let ledger = DeliveryLedger::load(&dir.join(LEDGER));
        Ok(Holdings {
            dir,
            held,
            ledger,
            failures: BTreeMap::new(),
            delivery_errors: BTreeMap::new(),
            refusals_logged: Default::default(),
            currents: BTreeMap::new(),
            currents_for: None,
            stale: BTreeSet::new(),
            chains,
            generation: 0,
        })
    }

    /// Stores a new certificate with its key in ONE file, written atomically: on disk a key can
    /// never sit beside the wrong certificate.
    pub fn store(&mut self, id: &Identity, held: Held) -> io::Result<()> {
        let text = format!(
            "{}{}{}",
            held.key.secret_pem(),
            held.cert_pem,
            held.chain.pem
        );
        write_atomic(
            &self.dir.join(format!("{}.pem", id.file_key())),
            text.as_bytes(),
            Mode::Secret,
        )?;
        let held = self.chains.share(held);
        self.held.insert(id.clone(), held);
        self.stale.insert(id.clone());
        self.generation += 1;
        Ok(())
    }

    /// Brings the plan's view of every held certificate up to date with the CA bundle `ca_pem`:
    /// recomputed whole only when the bundle (or the spread) changed, otherwise only for what
    /// was stored since. The bundle is parsed only then: a digest tells it unchanged (parsing
    /// it on every pass was a tenth of a whole pass at 1,000 identities).
    pub fn refresh_currents(&mut self, ca_pem: &str, rollover_spread: Duration) {
        let key = (bundle_digest(ca_pem), rollover_spread);
        if self.currents_for.as_ref() != Some(&key) {
            self.stale = self.held.keys().cloned().collect();
            self.currents.clear();
            self.currents_for = Some(key);
        }
        if self.stale.is_empty() {
            return;
        }
        let bundle = TrustedBundle::new(ca_pem, rollover_spread);
        for id in std::mem::take(&mut self.stale) {
            if let Some(h) = self.held.get(&id) {
                self.currents.insert(id, h.current(&bundle));
            }
        }
    }

    /// Makes a held certificate due now (it was revoked): the plan's view of it is recomputed.
    pub fn due_now(&mut self, id: &Identity, now: SystemTime) {
        if let Some(h) = self.held.get_mut(id) {
            h.renew_at = now;
            self.stale.insert(id.clone());
        }
    }

    /// Some held certificate changed since the last [`Holdings::refresh_currents`].
    pub fn currents_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// The plan's view of every held certificate, as of the last [`Holdings::refresh_currents`].
    pub fn currents(&self) -> &BTreeMap<Identity, Current> {
        &self.currents
    }

    /// Changes whenever the set of held certificates changed since (`held` is changed only
    /// through [`Holdings::store`] and [`Holdings::forget`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn forget(&mut self, id: &Identity) -> io::Result<()> {
        self.generation += 1;
        self.held.remove(id);
        self.currents.remove(id);
        self.stale.remove(id);
        let key = id.file_key();
        self.ledger.forget(id);
        self.failures.remove(id);
        match std::fs::remove_file(self.dir.join(format!("{key}.pem"))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Forgets publications whose files on disk are no longer exactly ours (deleted, altered),
    /// so the next plan publishes them again.
    pub fn forget_altered_publications(&mut self, dirs: &OutputDirs) {
        let mut stale = Vec::new();
        for id in self.ledger.published().keys() {
            let Some(held) = self.held.get(id) else {
                continue;
            };
            let dir = dirs.published_dir(id);
            let intact = std::fs::read_to_string(dir.join("cert.pem"))
                .is_ok_and(|c| c == held.cert_pem)
                && std::fs::read_to_string(dir.join("key.pem"))
                    .is_ok_and(|k| k == held.key.secret_pem());
            if !intact {
                tracing::warn!(cert = %id, dir = %dir.display(), "published files were changed or removed; writing them again");
                stale.push(id.clone());
            }
        }
        for id in &stale {
            self.ledger.unpublished(id);
        }
    }

    pub fn save_ledger(&mut self) -> io::Result<()> {
        self.ledger.save(&self.dir.join(LEDGER))
    }
}

/// Splits a managed file into (key PEM, certificate PEM, chain PEM).
fn split_managed(text: &str) -> Result<(String, String, String), String> {
    let first_cert = text.find(BEGIN_CERT).ok_or("no certificate")?;
    let key = text[..first_cert].to_string();
    let rest = &text[first_cert..];
    let second = rest[BEGIN_CERT.len()..]
        .find(BEGIN_CERT)
        .map(|i| i + BEGIN_CERT.len())
        .ok_or("no chain")?;
    Ok((key, rest[..second].to_string(), rest[second..].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::source::{CertSource, LeafOrder};
    use crate::controller::Clock;
    use crate::controller::testing::TestCa;
    use crate::core::names::CertName;

    #[tokio::test]
    async fn certificates_of_one_intermediate_hold_one_chain() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        let ca = TestCa::open(&ca_dir, Default::default(), Clock::System);
        let mut h = Holdings::load(dir.path()).unwrap();
        for name in ["a", "b", "c"] {
            let order = LeafOrder {
                name: CertName::parse(name).unwrap(),
                sans: vec![San::parse(&format!("{name}.internal")).unwrap()],
                usage: Usage::SERVER,
                groups: Default::default(),
                ttl: Duration::from_secs(3600),
                internal: false,
            };
            let issued = ca.issue(&order).await.unwrap();
            let held = Held::from_issued(&issued).unwrap();
            h.store(&Identity::Named(order.name), held).unwrap();
        }
        let shared = |h: &Holdings| {
            let chains: Vec<_> = h.held.values().map(|x| x.chain.clone()).collect();
            assert_eq!(chains.len(), 3);
            chains.iter().all(|c| Arc::ptr_eq(c, &chains[0]))
        };
        assert!(shared(&h), "stored");
        let a = Identity::Named(CertName::parse("a").unwrap());
        assert!(h.held[&a].chain_pem().contains("BEGIN CERTIFICATE"));
        assert!(shared(&Holdings::load(dir.path()).unwrap()), "loaded");
    }

    #[test]
    fn temporary_files_left_by_a_crash_are_removed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let managed = dir.path().join("managed");
        std::fs::create_dir_all(&managed).unwrap();
        std::fs::write(managed.join(".ledger.json.4242.tmp"), b"{\"cop").unwrap();
        std::fs::write(managed.join(".web.pem.4242.tmp"), b"-----BEGIN").unwrap();
        std::fs::write(managed.join("ledger.json"), b"{}").unwrap();
        let h = Holdings::load(dir.path()).unwrap();
        assert!(h.held.is_empty());
        let mut left: Vec<String> = std::fs::read_dir(&managed)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["ledger.json"]);
    }
}
