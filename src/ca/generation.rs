//! One generation of the CA: a root, the cross-certificate that the previous root signed for it,
//! and the intermediates under it, all in one directory.
//!
//! Generation 0 lives in `STATE/ca/` itself (the layout of every release before root rotation);
//! generation N ≥ 1 in `STATE/ca/generations/NNNNNN/`. A new generation is built whole in
//! `STATE/ca/generations/.new-PID/` and appears by ONE rename, so a crash leaves either the old
//! CA or the new one, never half of one. The highest-numbered generation is the current one.

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
use super::keys::KeyType;
use super::pem::{cert_to_pem, certs_from_pem, parse_cert};
use crate::store::atomic::{Mode, create_dir, sync_dir, write_atomic};

/// Where the generations after the first live, under `STATE/ca/`.
pub const GENERATIONS_DIR: &str = "generations";

/// A CA certificate, parsed once.
pub struct CaCert {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: String,
    pub(super) file_stem: String,
}

impl CaCert {
    pub(super) fn from_der(
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

    /// The share of its lifetime that has passed at `now` (1.0 for an empty lifetime).
    pub fn lifetime_elapsed(&self, now: OffsetDateTime) -> f64 {
        let total = (self.not_after - self.not_before).as_seconds_f64();
        if total <= 0.0 {
            return 1.0;
        }
        (now - self.not_before).as_seconds_f64() / total
    }
}

/// The role of a CA certificate in the bundle, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    /// The current root.
    Root,
    /// A replaced root, trusted while what it vouched for may still be valid.
    PreviousRoot,
    /// A newer root signed by the previous root.
    Cross,
    /// The intermediate that signs now.
    Intermediate,
    /// A replaced intermediate, trusted while what it signed may still be valid.
    PreviousIntermediate,
}

impl std::fmt::Display for CaRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            CaRole::Root => "root",
            CaRole::PreviousRoot => "previous root",
            CaRole::Cross => "cross",
            CaRole::Intermediate => "intermediate",
            CaRole::PreviousIntermediate => "previous intermediate",
        })
    }
}

/// The certificates of one generation (keys are read only for the current one).
pub struct Generation {
    pub number: u32,
    pub(super) dir: PathBuf,
    pub root: CaCert,
    /// This generation's root signed by the previous generation's root (none for generation 0).
    pub cross: Option<CaCert>,
    /// Intermediates with their key on disk, oldest first; expired ones included.
    pub intermediates: Vec<CaCert>,
}

impl Generation {
    /// Reads the certificates of the generation in `dir` (keys are checked by the caller).
    pub(super) fn read(number: u32, dir: &Path) -> Result<Self, CaError> {
        let root = read_cert(&dir.join("root.pem"), "root".into())?;
        let cross_path = dir.join("cross.pem");
        let cross = if number > 0 {
            Some(read_cert(&cross_path, "cross".into())?)
        } else {
            None
        };
        let mut intermediates = Vec::new();
        for stem in intermediate_stems(dir)? {
            // Key first, then certificate: a certificate without its key is never left behind,
            // but a key without its certificate may be (a crash in between), and is ignored.
            if dir.join(format!("{stem}.key")).exists() {
                intermediates.push(read_cert(&dir.join(format!("{stem}.pem")), stem)?);
            }
        }
        Ok(Self {
            number,
            dir: dir.to_path_buf(),
            root,
            cross,
            intermediates,
        })
    }

    /// The intermediates still valid at `now`, oldest first.
    pub fn valid_intermediates(&self, now: OffsetDateTime) -> impl Iterator<Item = &CaCert> {
        self.intermediates.iter().filter(move |c| c.not_after > now)
    }

    /// When the root of this generation, replaced by a newer one made at `replaced_at`, leaves
    /// the bundle: after `overlap` when set; by default once every leaf it vouched for has
    /// expired (a leaf never outlives its intermediate) plus `margin`. Never after the root
    /// itself expires.
    pub fn overlap_ends(
        &self,
        replaced_at: OffsetDateTime,
        overlap: Option<Duration>,
        margin: Duration,
    ) -> OffsetDateTime {
        let end = match overlap {
            Some(o) => replaced_at + o,
            None => {
                self.intermediates
                    .iter()
                    .map(|c| c.not_after)
                    .max()
                    .unwrap_or(replaced_at)
                    + margin
            }
        };
        end.min(self.root.not_after)
    }
}

/// The generations on disk, oldest first: `(number, directory)`. Generation 0 is `ca_dir`.
pub(super) fn list(ca_dir: &Path) -> Result<Vec<(u32, PathBuf)>, CaError> {
    let mut out = vec![(0, ca_dir.to_path_buf())];
    let gens = ca_dir.join(GENERATIONS_DIR);
    let entries = match fs::read_dir(&gens) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CaError::io(&gens, e)),
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        // `.new-PID`: a generation being built, or left by a crash; never a CA.
        if let Ok(n) = name.parse::<u32>()
            && n > 0
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn intermediate_stems(dir: &Path) -> Result<Vec<String>, CaError> {
    let entries = fs::read_dir(dir).map_err(|e| CaError::io(dir, e))?;
    let mut stems: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".pem").map(str::to_string))
        .filter(|s| s.starts_with("intermediate-"))
        .collect();
    stems.sort();
    Ok(stems)
}

/// The time part of a new intermediate's name: nanoseconds since the epoch (19 digits until
/// 2286), so names sort by age; always after every existing name, so the new one signs even when
/// made in the same instant, or after a name of an earlier release (`intermediate-SECONDS-…`).
fn next_stamp(existing: &[String], now: OffsetDateTime) -> i128 {
    let mut stamp = now.unix_timestamp_nanos();
    for stem in existing {
        let Some(digits) = stem
            .strip_prefix("intermediate-")
            .and_then(|r| r.split('-').next())
            .and_then(|d| d.parse::<i128>().ok())
        else {
            continue;
        };
        // Ten digits: seconds (earlier releases); more: nanoseconds.
        let nanos = if digits < 10_000_000_000 {
            digits * 1_000_000_000
        } else {
            digits
        };
        stamp = stamp.max(nanos + 1);
    }
    stamp
}

pub(super) fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let pem = fs::read_to_string(path).map_err(|e| CaError::io(path, e))?;
    KeyPair::from_pem(&pem).map_err(|e| CaError::BadKey {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

pub(super) fn read_cert(path: &Path, stem: String) -> Result<CaCert, CaError> {
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
pub(super) fn key_matches(cert_der: &[u8], key: &KeyPair) -> Result<bool, CaError> {
    let parsed = parse_cert("certificate", cert_der)?;
    Ok(parsed.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// The subject of a root: generation 0 keeps the name every release gave it; later ones carry
/// their number, so that no two roots share a name and path building never confuses them.
fn root_name(generation: u32) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "certdock");
    if generation == 0 {
        dn.push(DnType::CommonName, "certdock Root CA");
    } else {
        dn.push(
            DnType::CommonName,
            format!("certdock Root CA G{generation}"),
        );
    }
    dn
}

fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ]
}

/// The parameters of generation `generation`'s root (self-signed) and of its cross-certificate
/// (the same subject and key, signed by the previous root): they differ only in issuer, serial
/// and lifetime.
pub(super) fn root_params(
    generation: u32,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = root_name(generation);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = ca_key_usages();
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = not_after;
    p.serial_number = Some(random_serial());
    p
}

pub(super) fn intermediate_params(
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
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
    p.key_usages = ca_key_usages();
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = not_after;
    p.serial_number = Some(random_serial());
    p
}

/// Signs a fresh intermediate with the root and writes it into `dir` (key first, then cert,
/// each atomically: a crash between the two leaves a key without cert, which load ignores).
pub(super) fn write_intermediate(
    dir: &Path,
    root: &CaCert,
    root_issuer: &Issuer<'static, KeyPair>,
    key_type: KeyType,
    lifetime: Duration,
    now: OffsetDateTime,
) -> Result<CaCert, CaError> {
    let not_after = std::cmp::min(now + lifetime, root.not_after);
    let key = key_type.generate().map_err(CaError::Sign)?;
    let cert = intermediate_params(now, not_after)
        .signed_by(&key, root_issuer)
        .map_err(CaError::Sign)?;
    let serial = {
        let parsed = parse_cert("intermediate", cert.der())?;
        hex::encode(parsed.raw_serial())
    };
    let stem = format!(
        "intermediate-{}-{}",
        next_stamp(&intermediate_stems(dir)?, now),
        &serial[..8]
    );
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

/// What a new generation needs from the current one.
pub(super) struct Predecessor<'a> {
    pub number: u32,
    pub root: &'a CaCert,
    pub issuer: &'a Issuer<'static, KeyPair>,
}

/// Test hook: the name of a step at which a rotation stops dead (`abort`), as `kill -9` would.
const FAULT_ENV: &str = "CERTDOCK_TEST_FAULT";

fn fault_point(step: &str) {
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == step) {
        std::process::abort();
    }
}

/// Builds the next generation (root, cross-certificate, first intermediate) in a private
/// temporary directory and renames it into place. Returns its number. The caller holds the
/// state lock.
pub(super) fn create_next(
    ca_dir: &Path,
    prev: &Predecessor<'_>,
    key_type: KeyType,
    root_ttl: Duration,
    intermediate_ttl: Duration,
    now: OffsetDateTime,
) -> Result<u32, CaError> {
    let gens = ca_dir.join(GENERATIONS_DIR);
    create_dir(&gens, 0o700).map_err(|e| CaError::io(&gens, e))?;
    let number = prev.number + 1;
    let target = gens.join(format!("{number:06}"));
    if target.exists() {
        return Err(CaError::Internal(format!(
            "{} exists but is not the newest generation",
            target.display()
        )));
    }
    let tmp = gens.join(format!(".new-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    create_dir(&tmp, 0o700).map_err(|e| CaError::io(&tmp, e))?;

    let key = key_type.generate().map_err(CaError::Sign)?;
    let root = root_params(number, now, now + root_ttl)
        .self_signed(&key)
        .map_err(CaError::Sign)?;
    // The cross-certificate: the new root's name and key, vouched for by the old root, for as
    // long as both live. A peer that trusts only the old root reaches it through this.
    let mut cross_params = root_params(number, now, (now + root_ttl).min(prev.root.not_after));
    cross_params.use_authority_key_identifier_extension = true;
    let cross = cross_params
        .signed_by(&key, prev.issuer)
        .map_err(CaError::Sign)?;
    let io = |e| CaError::io(&tmp, e);
    write_atomic(
        &tmp.join("root.key"),
        key.serialize_pem().as_bytes(),
        Mode::Secret,
    )
    .map_err(io)?;
    write_atomic(&tmp.join("root.pem"), root.pem().as_bytes(), Mode::Public).map_err(io)?;
    fault_point("rotate-root-half-written");
    write_atomic(&tmp.join("cross.pem"), cross.pem().as_bytes(), Mode::Public).map_err(io)?;
    let root = CaCert::from_der("new root", root.der().clone(), "root".into())?;
    let issuer = Issuer::from_ca_cert_der(&root.der, key).map_err(CaError::Sign)?;
    write_intermediate(&tmp, &root, &issuer, key_type, intermediate_ttl, now)?;
    sync_dir(&tmp).map_err(io)?;
    fault_point("rotate-root-before-rename");
    fs::rename(&tmp, &target).map_err(|e| CaError::io(&target, e))?;
    sync_dir(&gens).map_err(|e| CaError::io(&gens, e))?;
    Ok(number)
}

/// Removes what crashed rotations left behind (`.new-*`); a live one belongs to a process
/// holding the state lock, which the caller holds now.
pub(super) fn remove_leftovers(ca_dir: &Path) {
    let gens = ca_dir.join(GENERATIONS_DIR);
    let Ok(entries) = fs::read_dir(&gens) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with(".new-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}
