//! The CA's own certificates: its generations of roots, their cross-certificates and the
//! intermediates, on disk under `STATE/ca/` (see `ca::generation` for the layout).
//!
//! The newest valid intermediate of the newest generation signs; older intermediates stay in
//! the bundle until they expire, and an older root (with the cross-certificate it signed for
//! its successor) until its overlap ends, so certificates they signed keep verifying during a
//! rollover.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::CaError;
use super::generation::{
    self, Generation, Predecessor, key_matches, read_key, root_params, write_intermediate,
};
use super::keys::{KeyType, SecretPem};
use super::pem::{certs_from_pem, fingerprint, parse_cert};
use crate::store::atomic::{Mode, create_dir, sync_dir, write_atomic};
use crate::store::lock::StateLock;

pub use super::generation::{CaCert, CaRole};

/// How long an old root stays in the bundle after the last leaf it vouched for expired.
pub const ROOT_OVERLAP_MARGIN: Duration = Duration::from_secs(86400);

/// Lifetimes of the CA's own certificates.
#[derive(Debug, Clone, Copy)]
pub struct CaLifetimes {
    pub root: Duration,
    pub intermediate: Duration,
    /// How long a replaced root stays in the bundle after the rotation; `None`: until every
    /// leaf it vouched for has expired, plus [`ROOT_OVERLAP_MARGIN`].
    pub root_overlap: Option<Duration>,
}

impl Default for CaLifetimes {
    fn default() -> Self {
        Self {
            root: Duration::from_secs(10 * 365 * 86400),
            intermediate: Duration::from_secs(365 * 86400),
            root_overlap: None,
        }
    }
}

/// The loaded CA: the current generation, the issuer that signs leaves now, and the earlier
/// generations still in their overlap.
pub struct Authority {
    dir: PathBuf,
    key_type: KeyType,
    lifetimes: CaLifetimes,
    current: Generation,
    root_issuer: Issuer<'static, KeyPair>,
    /// The current generation's valid intermediates, oldest first; the last one signs.
    intermediates: Vec<CaCert>,
    issuer: Issuer<'static, KeyPair>,
    /// Earlier generations whose overlap has not ended, newest first.
    previous: Vec<Generation>,
    /// Every valid intermediate of the previous generations.
    previous_intermediates: Vec<CaCert>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("generation", &self.current.number)
            .field("root", &self.current.root.serial)
            .field(
                "intermediates",
                &self
                    .intermediates
                    .iter()
                    .map(|i| &i.serial)
                    .collect::<Vec<_>>(),
            )
            .field("previous", &self.previous.len())
            .finish_non_exhaustive()
    }
}

fn ca_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ca")
}

/// True when `STATE/ca/root.pem` exists.
pub fn exists(state_dir: &Path) -> bool {
    ca_dir(state_dir).join("root.pem").exists()
}

impl Authority {
    /// Creates a new CA (root and first intermediate) in `STATE/ca`. Refuses if one exists.
    /// With `import`, the root certificate and key are the user's instead of freshly made.
    pub fn create(
        state_dir: &Path,
        key_type: KeyType,
        lifetimes: CaLifetimes,
        import: Option<(&str, &SecretPem)>,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        create_dir(state_dir, 0o700).map_err(|e| CaError::io(state_dir, e))?;
        let _lock = StateLock::exclusive(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        let dir = ca_dir(state_dir);
        if dir.join("root.pem").exists() {
            return Err(CaError::AlreadyExists { dir });
        }
        let (root_der, root_key) = match import {
            None => {
                let key = key_type.generate().map_err(CaError::Sign)?;
                let cert = root_params(0, now, now + lifetimes.root)
                    .self_signed(&key)
                    .map_err(CaError::Sign)?;
                (cert.der().clone(), key)
            }
            Some((cert_pem, key_pem)) => Self::check_import(cert_pem, key_pem, now)?,
        };
        let key_type = key_type_of(&root_key);
        let root = CaCert::from_der("root", root_der, "root".into())?;

        // Build everything in a private temporary directory, then rename it into place: a crash
        // leaves either no CA or a whole one, never half of one.
        let tmp = state_dir.join(format!(".ca-new-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        create_dir(&tmp, 0o700).map_err(|e| CaError::io(&tmp, e))?;
        write_atomic(&tmp.join("root.pem"), root.pem.as_bytes(), Mode::Public)
            .map_err(|e| CaError::io(&tmp, e))?;
        write_atomic(
            &tmp.join("root.key"),
            root_key.serialize_pem().as_bytes(),
            Mode::Secret,
        )
        .map_err(|e| CaError::io(&tmp, e))?;
        let root_issuer = Issuer::from_ca_cert_der(&root.der, root_key).map_err(CaError::Sign)?;
        write_intermediate(
            &tmp,
            &root,
            &root_issuer,
            key_type,
            lifetimes.intermediate,
            now,
        )?;
        fs::rename(&tmp, &dir).map_err(|e| CaError::io(&dir, e))?;
        sync_dir(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        Self::load_unlocked(state_dir, lifetimes, now)
    }

    fn check_import(
        cert_pem: &str,
        key_pem: &SecretPem,
        now: OffsetDateTime,
    ) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
        let der = certs_from_pem("--import-root", cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| CaError::BadImport("--import-root holds no certificate".into()))?;
        let key = KeyPair::from_pem(key_pem.secret_pem()).map_err(|e| CaError::BadKey {
            what: "--import-key".into(),
            reason: e.to_string(),
        })?;
        let parsed = parse_cert("--import-root", &der)?;
        let is_ca = parsed
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CaError::BadImport(
                "--import-root is not a CA certificate (basicConstraints CA:TRUE is missing)"
                    .into(),
            ));
        }
        if !key_matches(&der, &key)? {
            return Err(CaError::BadImport(
                "--import-key does not match the public key of --import-root".into(),
            ));
        }
        if parsed.validity().not_after.to_datetime() <= now {
            return Err(CaError::BadImport("--import-root has expired".into()));
        }
        Ok((der, key))
    }

    /// Loads the CA from `STATE/ca`, rolling the intermediate over when it is due.
    pub fn load(
        state_dir: &Path,
        lifetimes: CaLifetimes,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        if !exists(state_dir) {
            return Err(CaError::Missing {
                dir: ca_dir(state_dir),
            });
        }
        let mut ca = Self::load_unlocked(state_dir, lifetimes, now)?;
        ca.rollover_if_due(state_dir, now)?;
        Ok(ca)
    }

    fn load_unlocked(
        state_dir: &Path,
        lifetimes: CaLifetimes,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let dir = ca_dir(state_dir);
        let mut gens = generation::list(&dir)?;
        let (number, gen_dir) = gens.pop().expect("generation 0 is always listed");
        let mut current = Generation::read(number, &gen_dir)?;
        let root_key = read_key(&gen_dir.join("root.key"))?;
        if !key_matches(&current.root.der, &root_key)? {
            return Err(CaError::BadKey {
                what: gen_dir.join("root.key").display().to_string(),
                reason: "does not match root.pem".into(),
            });
        }
        let key_type = key_type_of(&root_key);
        let root_issuer =
            Issuer::from_ca_cert_der(&current.root.der, root_key).map_err(CaError::Sign)?;
        let mut signer = None;
        for cert in current.valid_intermediates(now) {
            let key_path = gen_dir.join(format!("{}.key", cert.file_stem));
            let key = read_key(&key_path)?;
            if !key_matches(&cert.der, &key)? {
                return Err(CaError::BadKey {
                    what: key_path.display().to_string(),
                    reason: format!("does not match {}.pem", cert.file_stem),
                });
            }
            signer = Some((cert.der.clone(), key));
        }
        let (der, key) = match signer {
            Some(s) => s,
            None => {
                let cert = write_intermediate(
                    &gen_dir,
                    &current.root,
                    &root_issuer,
                    key_type,
                    lifetimes.intermediate,
                    now,
                )?;
                let key = read_key(&gen_dir.join(format!("{}.key", cert.file_stem)))?;
                let der = cert.der.clone();
                current.intermediates.push(cert);
                (der, key)
            }
        };
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(CaError::Sign)?;
        let intermediates = current
            .valid_intermediates(now)
            .map(|c| CaCert::from_der("intermediate", c.der.clone(), c.file_stem.clone()))
            .collect::<Result<Vec<_>, _>>()?;

        // Earlier generations, newest first, while their overlap lasts.
        let mut previous: Vec<Generation> = Vec::new();
        let mut replaced_at = current.root.not_before + time::Duration::minutes(1);
        for (number, gen_dir) in gens.into_iter().rev() {
            let generation = Generation::read(number, &gen_dir)?;
            if now
                >= generation.overlap_ends(replaced_at, lifetimes.root_overlap, ROOT_OVERLAP_MARGIN)
            {
                break;
            }
            replaced_at = generation.root.not_before + time::Duration::minutes(1);
            previous.push(generation);
        }
        let previous_intermediates = previous
            .iter()
            .flat_map(|g| g.valid_intermediates(now))
            .map(|c| CaCert::from_der("intermediate", c.der.clone(), c.file_stem.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            dir,
            key_type,
            lifetimes,
            current,
            root_issuer,
            intermediates,
            issuer,
            previous,
            previous_intermediates,
        })
    }

    /// Renews the intermediate with the root once it has lived two thirds of its life.
    /// Returns whether a new one was made. Takes the state lock, then re-reads the directory,
    /// so two processes never both roll over.
    pub fn rollover_if_due(
        &mut self,
        state_dir: &Path,
        now: OffsetDateTime,
    ) -> Result<bool, CaError> {
        if self.current().lifetime_elapsed(now) < 2.0 / 3.0 {
            return Ok(false);
        }
        let _lock = StateLock::exclusive(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        let fresh = Self::load_unlocked(state_dir, self.lifetimes, now)?;
        if fresh.current().lifetime_elapsed(now) < 2.0 / 3.0 {
            *self = fresh;
            return Ok(true);
        }
        // The root can't sign past its own end; when the root itself is nearly over, a new
        // intermediate would be no younger: say so instead of looping.
        if (fresh.root().not_after - now).whole_seconds() < 86400 {
            return Err(CaError::RootExpiring {
                not_after: fresh.root().not_after,
            });
        }
        *self = fresh;
        self.new_intermediate_locked(state_dir, now)?;
        tracing::info!(intermediate = %self.current().serial, "rolled the intermediate CA over");
        Ok(true)
    }

    fn new_intermediate_locked(
        &mut self,
        state_dir: &Path,
        now: OffsetDateTime,
    ) -> Result<(), CaError> {
        write_intermediate(
            &self.current.dir,
            &self.current.root,
            &self.root_issuer,
            self.key_type,
            self.lifetimes.intermediate,
            now,
        )?;
        *self = Self::load_unlocked(state_dir, self.lifetimes, now)?;
        Ok(())
    }

    /// `certdock ca rotate`: a new intermediate now, whatever the age of the current one. The
    /// old one stays in the bundle while it is valid. Safe beside a running `run` or `serve`:
    /// the state lock is held, and the directory re-read under it.
    pub fn rotate_intermediate(
        state_dir: &Path,
        lifetimes: CaLifetimes,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let _lock = StateLock::exclusive(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        let mut ca = Self::load_unlocked(state_dir, lifetimes, now)?;
        ca.new_intermediate_locked(state_dir, now)?;
        tracing::info!(intermediate = %ca.current().serial, "made a new intermediate CA");
        Ok(ca)
    }

    /// `certdock ca rotate --root`: a new generation (root, cross-certificate signed by the
    /// current root, first intermediate), made whole in a temporary directory and renamed into
    /// place. Safe beside a running `run` or `serve`, like [`Authority::rotate_intermediate`].
    pub fn rotate_root(
        state_dir: &Path,
        lifetimes: CaLifetimes,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let _lock = StateLock::exclusive(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        let dir = ca_dir(state_dir);
        generation::remove_leftovers(&dir);
        let ca = Self::load_unlocked(state_dir, lifetimes, now)?;
        let number = generation::create_next(
            &dir,
            &Predecessor {
                number: ca.current.number,
                root: &ca.current.root,
                issuer: &ca.root_issuer,
            },
            ca.key_type,
            lifetimes.root,
            lifetimes.intermediate,
            now,
        )?;
        let ca = Self::load_unlocked(state_dir, lifetimes, now)?;
        tracing::info!(generation = number, root = %ca.root_fingerprint(), "made a new root CA, cross-signed by the previous one");
        Ok(ca)
    }

    /// The root that signs now.
    pub fn root(&self) -> &CaCert {
        &self.current.root
    }

    /// The number of the current generation (0 until the first root rotation).
    pub fn generation(&self) -> u32 {
        self.current.number
    }

    /// The intermediate that signs now.
    pub fn current(&self) -> &CaCert {
        self.intermediates
            .last()
            .expect("load always leaves at least one intermediate")
    }

    /// Every valid intermediate of every generation in the bundle: what may have signed a leaf
    /// this CA still vouches for.
    pub fn intermediates(&self) -> impl Iterator<Item = &CaCert> {
        self.previous_intermediates
            .iter()
            .chain(self.intermediates.iter())
    }

    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub fn lifetimes(&self) -> CaLifetimes {
        self.lifetimes
    }

    /// The cross-certificates a peer that still trusts only a previous root needs to reach the
    /// current one: one per generation step still in the overlap, newest first.
    pub fn crosses(&self) -> Vec<&CaCert> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .take(self.previous.len())
            .filter_map(|g| g.cross.as_ref())
            .collect()
    }

    /// What follows a new leaf in its `chain.pem`: the signing intermediate, then the
    /// cross-certificates while a previous root is still trusted anywhere.
    pub fn chain_pem(&self) -> String {
        let mut out = self.current().pem.clone();
        for c in self.crosses() {
            out.push_str(&c.pem);
        }
        out
    }

    /// Every CA certificate peers must trust now: the current root first, then the previous
    /// roots, the cross-certificates and the previous intermediates, and the current
    /// generation's intermediates with the one signing now last. The content of `ca.pem` and
    /// `GET /roots.pem`.
    pub fn bundle_pem(&self) -> String {
        self.bundle_certs()
            .iter()
            .map(|(c, _)| c.pem.as_str())
            .collect()
    }

    /// The CA certificates one by one, in [`Authority::bundle_pem`]'s order, with their role.
    pub fn bundle_certs(&self) -> Vec<(&CaCert, CaRole)> {
        let mut out = vec![(&self.current.root, CaRole::Root)];
        out.extend(
            self.previous
                .iter()
                .map(|g| (&g.root, CaRole::PreviousRoot)),
        );
        out.extend(self.crosses().into_iter().map(|c| (c, CaRole::Cross)));
        out.extend(
            self.previous_intermediates
                .iter()
                .map(|c| (c, CaRole::PreviousIntermediate)),
        );
        let last = self.intermediates.len() - 1;
        out.extend(self.intermediates.iter().enumerate().map(|(i, c)| {
            let role = if i == last {
                CaRole::Intermediate
            } else {
                CaRole::PreviousIntermediate
            };
            (c, role)
        }));
        out
    }

    /// True once the current root has lived nine tenths of its life: time to rotate it.
    pub fn root_in_last_tenth(&self, now: OffsetDateTime) -> bool {
        self.current.root.lifetime_elapsed(now) >= 0.9
    }

    /// SHA-256 of the current root's DER, for `--ca-fingerprint`.
    pub fn root_fingerprint(&self) -> String {
        fingerprint(&self.current.root.der)
    }
}

fn key_type_of(key: &KeyPair) -> KeyType {
    if key.algorithm() == &rcgen::PKCS_ED25519 {
        KeyType::Ed25519
    } else {
        KeyType::EcdsaP256
    }
}
