//! The CA's own certificates: a root and its intermediates, on disk under `STATE/ca/`.
//!
//! Layout: `root.pem` + `root.key`, and one `intermediate-<not_before>-<serial>.pem` + `.key`
//! per intermediate. The newest valid intermediate signs; older ones stay in the bundle until
//! they expire, so certificates they signed keep verifying during a rollover.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::CaError;
use super::issue::random_serial;
use super::keys::{KeyType, SecretPem};
use super::pem::{cert_to_pem, certs_from_pem, fingerprint, parse_cert};
use crate::store::atomic::{Mode, create_dir, sync_dir, write_atomic};
use crate::store::lock::StateLock;

/// Lifetimes of the CA's own certificates.
#[derive(Debug, Clone, Copy)]
pub struct CaLifetimes {
    pub root: Duration,
    pub intermediate: Duration,
}

impl Default for CaLifetimes {
    fn default() -> Self {
        Self {
            root: Duration::from_secs(10 * 365 * 86400),
            intermediate: Duration::from_secs(365 * 86400),
        }
    }
}

/// A CA certificate with its key, parsed once.
pub struct CaCert {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: String,
    file_stem: String,
}

/// The loaded CA: root, intermediates and the issuer that signs leaves now.
pub struct Authority {
    dir: PathBuf,
    key_type: KeyType,
    lifetimes: CaLifetimes,
    root: CaCert,
    root_issuer: Issuer<'static, KeyPair>,
    /// Valid intermediates, oldest first; the last one signs.
    intermediates: Vec<CaCert>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("root", &self.root.serial)
            .field(
                "intermediates",
                &self
                    .intermediates
                    .iter()
                    .map(|i| &i.serial)
                    .collect::<Vec<_>>(),
            )
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

fn root_params(now: OffsetDateTime, ttl: Duration) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "certdock");
    dn.push(DnType::CommonName, "certdock Root CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = now + ttl;
    p.serial_number = Some(random_serial());
    p
}

fn intermediate_params(now: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "certdock");
    dn.push(
        DnType::CommonName,
        format!("certdock Intermediate CA {}", now.date()),
    );
    p.distinguished_name = dn;
    // Path length 0: an intermediate signs leaves only, never another CA.
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = not_after;
    p.serial_number = Some(random_serial());
    p
}

impl CaCert {
    fn from_der(
        what: &str,
        der: CertificateDer<'static>,
        file_stem: String,
    ) -> Result<Self, CaError> {
        let parsed = parse_cert(what, &der)?;
        let not_before = parsed.validity().not_before.to_datetime();
        let not_after = parsed.validity().not_after.to_datetime();
        let serial = hex::encode(parsed.raw_serial());
        let pem = cert_to_pem(&der);
        Ok(Self {
            der,
            pem,
            not_before,
            not_after,
            serial,
            file_stem,
        })
    }

    fn lifetime_elapsed(&self, now: OffsetDateTime) -> f64 {
        let total = (self.not_after - self.not_before).as_seconds_f64();
        if total <= 0.0 {
            return 1.0;
        }
        (now - self.not_before).as_seconds_f64() / total
    }
}

fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let pem = fs::read_to_string(path).map_err(|e| CaError::io(path, e))?;
    KeyPair::from_pem(&pem).map_err(|e| CaError::BadKey {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn read_cert(path: &Path, stem: String) -> Result<CaCert, CaError> {
    let pem = fs::read_to_string(path).map_err(|e| CaError::io(path, e))?;
    let der = certs_from_pem(&path.display().to_string(), &pem)?
        .into_iter()
        .next()
        .ok_or_else(|| CaError::BadPem {
            what: path.display().to_string(),
            reason: "empty".into(),
        })?;
    CaCert::from_der(&path.display().to_string(), der, stem)
}

/// Checks that `key` is the private half of `cert`'s public key.
fn key_matches(cert_der: &[u8], key: &KeyPair) -> Result<bool, CaError> {
    let parsed = parse_cert("certificate", cert_der)?;
    Ok(parsed.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
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
                let cert = root_params(now, lifetimes.root)
                    .self_signed(&key)
                    .map_err(CaError::Sign)?;
                (cert.der().clone(), key)
            }
            Some((cert_pem, key_pem)) => Self::check_import(cert_pem, key_pem, now)?,
        };
        let key_type = match root_key.algorithm() {
            a if a == &rcgen::PKCS_ED25519 => KeyType::Ed25519,
            _ => KeyType::EcdsaP256,
        };
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
        let inter = Self::write_intermediate(&tmp, &root, &root_issuer, key_type, lifetimes, now)?;
        fs::rename(&tmp, &dir).map_err(|e| CaError::io(&dir, e))?;
        sync_dir(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        drop(inter);
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

    /// Signs a fresh intermediate with the root and writes it into `dir` (key first, then cert,
    /// each atomically: a crash between the two leaves a key without cert, which load ignores).
    fn write_intermediate(
        dir: &Path,
        root: &CaCert,
        root_issuer: &Issuer<'static, KeyPair>,
        key_type: KeyType,
        lifetimes: CaLifetimes,
        now: OffsetDateTime,
    ) -> Result<CaCert, CaError> {
        let not_after = std::cmp::min(now + lifetimes.intermediate, root.not_after);
        let key = key_type.generate().map_err(CaError::Sign)?;
        let cert = intermediate_params(now, not_after)
            .signed_by(&key, root_issuer)
            .map_err(CaError::Sign)?;
        let serial = {
            let parsed = parse_cert("intermediate", cert.der())?;
            hex::encode(parsed.raw_serial())
        };
        let stem = format!("intermediate-{}-{}", now.unix_timestamp(), &serial[..8]);
        write_atomic(
            &dir.join(format!("{stem}.key")),
            key.serialize_pem().as_bytes(),
            Mode::Secret,
        )
        .map_err(|e| CaError::io(dir, e))?;
        write_atomic(
            &dir.join(format!("{stem}.pem")),
            cert.pem().as_bytes(),
            Mode::Public,
        )
        .map_err(|e| CaError::io(dir, e))?;
        CaCert::from_der("intermediate", cert.der().clone(), stem)
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
        let root = read_cert(&dir.join("root.pem"), "root".into())?;
        let root_key = read_key(&dir.join("root.key"))?;
        if !key_matches(&root.der, &root_key)? {
            return Err(CaError::BadKey {
                what: dir.join("root.key").display().to_string(),
                reason: "does not match root.pem".into(),
            });
        }
        let key_type = if root_key.algorithm() == &rcgen::PKCS_ED25519 {
            KeyType::Ed25519
        } else {
            KeyType::EcdsaP256
        };
        let root_issuer = Issuer::from_ca_cert_der(&root.der, root_key).map_err(CaError::Sign)?;
        let mut intermediates = Vec::new();
        let mut newest_key = None;
        let entries = fs::read_dir(&dir).map_err(|e| CaError::io(&dir, e))?;
        let mut stems: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".pem").map(str::to_string))
            .filter(|s| s.starts_with("intermediate-"))
            .collect();
        stems.sort();
        for stem in stems {
            let key_path = dir.join(format!("{stem}.key"));
            if !key_path.exists() {
                continue;
            }
            let cert = read_cert(&dir.join(format!("{stem}.pem")), stem.clone())?;
            if cert.not_after <= now {
                continue; // expired: no longer trusted, no longer in ca.pem
            }
            let key = read_key(&key_path)?;
            if !key_matches(&cert.der, &key)? {
                return Err(CaError::BadKey {
                    what: key_path.display().to_string(),
                    reason: format!("does not match {stem}.pem"),
                });
            }
            newest_key = Some(key);
            intermediates.push(cert);
        }
        let (issuer, intermediates) = match (newest_key, intermediates.last()) {
            (Some(key), Some(cert)) => (
                Issuer::from_ca_cert_der(&cert.der, key).map_err(CaError::Sign)?,
                intermediates,
            ),
            _ => {
                let cert =
                    Self::write_intermediate(&dir, &root, &root_issuer, key_type, lifetimes, now)?;
                let key = read_key(&dir.join(format!("{}.key", cert.file_stem)))?;
                (
                    Issuer::from_ca_cert_der(&cert.der, key).map_err(CaError::Sign)?,
                    vec![cert],
                )
            }
        };
        Ok(Self {
            dir,
            key_type,
            lifetimes,
            root,
            root_issuer,
            intermediates,
            issuer,
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
        if (self.root.not_after - now).whole_seconds() < 86400 {
            return Err(CaError::RootExpiring {
                not_after: self.root.not_after,
            });
        }
        Self::write_intermediate(
            &self.dir,
            &self.root,
            &self.root_issuer,
            self.key_type,
            self.lifetimes,
            now,
        )?;
        *self = Self::load_unlocked(state_dir, self.lifetimes, now)?;
        tracing::info!(intermediate = %self.current().serial, "rolled the intermediate CA over");
        Ok(true)
    }

    pub fn root(&self) -> &CaCert {
        &self.root
    }

    /// The intermediate that signs now.
    pub fn current(&self) -> &CaCert {
        self.intermediates
            .last()
            .expect("load always leaves at least one intermediate")
    }

    pub fn intermediates(&self) -> &[CaCert] {
        &self.intermediates
    }

    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Every CA certificate peers must trust now (root first, then the valid intermediates):
    /// the content of `ca.pem` and `GET /roots.pem`.
    pub fn bundle_pem(&self) -> String {
        let mut out = self.root.pem.clone();
        for i in &self.intermediates {
            out.push_str(&i.pem);
        }
        out
    }

    /// The CA certificates one by one (root first), for proxies that want one file each.
    pub fn bundle_certs(&self) -> Vec<&CaCert> {
        std::iter::once(&self.root)
            .chain(self.intermediates.iter())
            .collect()
    }

    /// SHA-256 of the root's DER, for `--ca-fingerprint`.
    pub fn root_fingerprint(&self) -> String {
        fingerprint(&self.root.der)
    }
}
