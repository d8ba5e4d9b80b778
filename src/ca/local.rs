//! The CA as a service inside this process: its authority, policy, tokens and ledger, which
//! the CLI, the controller and the HTTPS API all reach through `authorize` → `sign`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use time::OffsetDateTime;

use super::CaError;
use super::authority::{self, Authority, CaLifetimes, CaRole};
use super::facts::CertFacts;
use super::keys::KeyType;
use super::ledger::{Ledger, RevokedSerials};
use super::locks::{lock, read, write};
use crate::core::policy::{NamePolicy, TtlPolicy};
use crate::store::inventory::{Inventory, IssuedRecord};
use crate::store::lock::StateLock;
use crate::store::tokens::Tokens;

/// The checks every issuance goes through.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub names: NamePolicy,
    pub ttls: TtlPolicy,
}

pub struct LocalCa {
    pub(super) state_dir: PathBuf,
    pub(super) authority: RwLock<Authority>,
    pub(super) tokens: Mutex<Tokens>,
    pub(super) policy: Policy,
    pub(super) ledger: Ledger,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// How to open a CA's state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The CA must exist (CLI `issue`, `revoke`…).
    Existing,
    /// Create it when there is none (`run`, `serve`: a newcomer needs no `init`).
    CreateIfMissing(KeyType),
}

impl LocalCa {
    pub fn open(
        state_dir: &Path,
        policy: Policy,
        lifetimes: CaLifetimes,
        mode: OpenMode,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let authority = match mode {
            OpenMode::CreateIfMissing(kt) if !authority::exists(state_dir) => {
                match Authority::create(state_dir, kt, lifetimes, None, now) {
                    // Another process created it between our check and our lock: use theirs.
                    Err(CaError::AlreadyExists { .. }) => {
                        Authority::load(state_dir, lifetimes, now)?
                    }
                    other => other?,
                }
            }
            _ => Authority::load(state_dir, lifetimes, now)?,
        };
        let tokens = Tokens::open(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            authority: RwLock::new(authority),
            tokens: Mutex::new(tokens),
            policy,
            ledger: Ledger::open(state_dir, now)?,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The inventory record of a presented certificate, when this CA issued it, it is unexpired
    /// and not revoked.
    pub fn verify_presented(
        &self,
        der: &[u8],
        now: OffsetDateTime,
    ) -> Result<IssuedRecord, CaError> {
        let ca = read(&self.authority, "authority")?;
        Ok(self.ledger.verify_presented(&ca, der, now)?.0)
    }

    /// Revokes a serial (hex, any case, colons allowed) and every live certificate renewed
    /// from it; returns the serials revoked, the one asked first. Unknown serials are an error.
    pub fn revoke(&self, serial: &str, now: OffsetDateTime) -> Result<Vec<String>, CaError> {
        self.ledger.revoke(&normalize_serial(serial)?, now)
    }

    /// Revokes every live certificate of the identity `name` (its `certdock.name`, the
    /// certificate's CN); returns their serials. An identity with none is an error.
    pub fn revoke_name(&self, name: &str, now: OffsetDateTime) -> Result<Vec<String>, CaError> {
        self.ledger.revoke_name(name, now)
    }

    /// Changes after every revocation this process records (see [`LocalCa::is_revoked`]).
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ledger.revocations()
    }

    /// Whether the inventory (refreshed: another process may have revoked) lists `serial` as
    /// revoked.
    pub fn is_revoked(&self, serial: &str) -> Result<bool, CaError> {
        self.ledger
            .with_inventory(|inv| inv.get(serial).is_some_and(|e| e.revoked_at.is_some()))
    }

    /// Every serial this CA has revoked (see [`RevokedSerials`]), the inventory refreshed
    /// from disk first (a `certdock revoke` in another process counts).
    pub fn revoked_serials(&self) -> Result<RevokedSerials, CaError> {
        self.ledger.revoked_serials()
    }

    /// The current CRL (DER), signed by the current intermediate.
    pub fn crl(&self, now: OffsetDateTime) -> Result<Vec<u8>, CaError> {
        let ca = read(&self.authority, "authority")?;
        self.ledger.crl(&ca, now)
    }

    /// Every CA certificate to trust now (root and intermediates), as one PEM bundle.
    pub fn bundle_pem(&self) -> String {
        self.authority
            .read()
            .map(|a| a.bundle_pem())
            .unwrap_or_default()
    }

    /// The CA certificates peers trust now, read through [`CertFacts`], with their role: the
    /// root first, the intermediate signing now last.
    pub fn chain_facts(&self) -> Result<Vec<(CertFacts, CaRole)>, CaError> {
        let ca = read(&self.authority, "authority")?;
        ca.bundle_certs()
            .into_iter()
            .map(|(c, role)| Ok((CertFacts::from_der("CA certificate", &c.der)?, role)))
            .collect()
    }

    pub fn root_fingerprint(&self) -> String {
        self.authority
            .read()
            .map(|a| a.root_fingerprint())
            .unwrap_or_default()
    }

    /// What `GET /health` reports: whether the CA can sign now, and the instants that matter.
    pub fn signer_status(&self, now: OffsetDateTime) -> Result<SignerStatus, CaError> {
        let ca = read(&self.authority, "authority")?;
        let (root, inter) = (ca.root(), ca.current());
        Ok(SignerStatus {
            can_sign: root.not_before <= now
                && now < root.not_after
                && inter.not_before <= now
                && now < inter.not_after,
            root_fingerprint: ca.root_fingerprint(),
            root_not_after: root.not_after,
            intermediate_serial: inter.serial.clone(),
            intermediate_not_after: inter.not_after,
        })
    }

    /// Periodic upkeep: rolls the intermediate over when due, and picks up what another
    /// process (`certdock ca rotate`) changed on disk, or an overlap that ended. Returns whether
    /// the bundle or the signer changed.
    pub fn maintain(&self, now: OffsetDateTime) -> Result<bool, CaError> {
        self.ledger.compact_if_due(now)?;
        let lifetimes = read(&self.authority, "authority")?.lifetimes();
        // Read outside the write lock: signing goes on meanwhile.
        let fresh = Authority::load(&self.state_dir, lifetimes, now)?;
        self.replace_if_changed(fresh)
    }

    /// `certdock ca rotate [--root]`, from this process (the API): a new intermediate, or a
    /// new root cross-signed by the current one. In effect here at once.
    pub fn rotate(&self, root: bool, now: OffsetDateTime) -> Result<(), CaError> {
        let lifetimes = read(&self.authority, "authority")?.lifetimes();
        let fresh = if root {
            Authority::rotate_root(&self.state_dir, lifetimes, now)?
        } else {
            Authority::rotate_intermediate(&self.state_dir, lifetimes, now)?
        };
        self.replace_if_changed(fresh).map(|_| ())
    }

    fn replace_if_changed(&self, fresh: Authority) -> Result<bool, CaError> {
        let mut ca = write(&self.authority, "authority")?;
        let changed =
            fresh.current().serial != ca.current().serial || fresh.bundle_pem() != ca.bundle_pem();
        if changed {
            *ca = fresh;
            self.ledger.forget_verified();
        }
        Ok(changed)
    }

    /// Whether the current root has lived nine tenths of its life, and when it ends.
    pub fn root_expiry(&self, now: OffsetDateTime) -> Result<(bool, OffsetDateTime), CaError> {
        let ca = read(&self.authority, "authority")?;
        Ok((ca.root_in_last_tenth(now), ca.root().not_after))
    }

    /// Runs `f` on the token store with the state lock held.
    pub fn with_tokens<T>(&self, f: impl FnOnce(&mut Tokens) -> T) -> Result<T, CaError> {
        let _lock =
            StateLock::exclusive(&self.state_dir).map_err(|e| CaError::io(&self.state_dir, e))?;
        let mut t = lock(&self.tokens, "token")?;
        Ok(f(&mut t))
    }

    /// Runs `f` on the inventory (refreshed first).
    pub fn with_inventory<T>(&self, f: impl FnOnce(&Inventory) -> T) -> Result<T, CaError> {
        self.ledger.with_inventory(|inv| f(inv))
    }
}

/// The CA's signing readiness, from [`LocalCa::signer_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerStatus {
    /// The root and the signing intermediate are both within their validity now.
    pub can_sign: bool,
    pub root_fingerprint: String,
    pub root_not_after: OffsetDateTime,
    pub intermediate_serial: String,
    pub intermediate_not_after: OffsetDateTime,
}

/// Accepts `0A:1b…` or `0a1b…`; returns lower-case hex without separators.
pub fn normalize_serial(input: &str) -> Result<String, CaError> {
    let s: String = input
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() || s.len() > 40 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CaError::UnknownCertificate {
            serial: input.chars().take(64).collect(),
        });
    }
    Ok(s)
}
