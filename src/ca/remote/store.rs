//! What an agent keeps on disk: the pinned root, the last good CA bundle, and its own identity
//! (key, certificate and chain in one 0600 file, so they can never be seen apart).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::RemoteError;
use crate::ca::facts::CertFacts;
use crate::ca::keys::SecretPem;
use crate::ca::pem::{cert_to_pem, certs_from_pem, fingerprint, parse_cert};
use crate::store::atomic::{Mode, create_dir, write_atomic};

/// The agent's files under `<state_dir>/agent/`.
#[derive(Debug, Clone)]
pub struct AgentFiles {
    pub dir: PathBuf,
}

impl AgentFiles {
    pub fn new(state_dir: &Path) -> Result<Self, RemoteError> {
        let dir = state_dir.join("agent");
        create_dir(&dir, 0o700).map_err(|e| RemoteError::state(&dir, e))?;
        Ok(Self { dir })
    }

    /// The root pinned on first contact (0644).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    /// The last CA bundle fetched from the CA (0644): what `bundle()` answers while it is away.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The agent's key, certificate and chain (0600).
    pub fn identity(&self) -> PathBuf {
        self.dir.join("identity.pem")
    }

    pub fn read_optional(&self, path: &Path) -> Result<Option<String>, RemoteError> {
        match fs::read_to_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RemoteError::state(path, e)),
        }
    }

    pub fn write(&self, path: &Path, content: &str, mode: Mode) -> Result<(), RemoteError> {
        write_atomic(path, content.as_bytes(), mode).map_err(|e| RemoteError::state(path, e))
    }
}

/// `AB:cd:…` or `abcd…` → 64 lower-case hex digits.
pub fn normalize_fingerprint(input: &str) -> Result<String, RemoteError> {
    let hex: String = input
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(RemoteError::BadFingerprint(
            "expected the SHA-256 of the root certificate's DER: 64 hex digits, colons allowed"
                .into(),
        ));
    }
    Ok(hex)
}

/// A CA bundle the agent trusts: the roots it trusts (the pinned one, and each later root that a
/// trusted root cross-signed in a rotation), and only those other certificates a trusted root
/// signed. Whatever else a bundle carries is dropped, so nothing fetched over the unverified first
/// connection, and no root appearing unsigned, can become a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedBundle {
    /// What the bundle carried and is trusted, in the bundle's order (its signer last).
    pub certs: Vec<CertificateDer<'static>>,
    /// The chain of custody from the pinned root: that root first, then each followed root and
    /// the cross-certificate proving it. Kept in `agent/root.pem`, so the pin outlives the
    /// pinned root's overlap.
    pub custody: Vec<CertificateDer<'static>>,
}

impl TrustedBundle {
    /// Checks `pem` (a `/roots.pem` answer, or a stored chain of custody) against the pinned
    /// fingerprint.
    pub fn from_pem(pem: &str, pin: &str) -> Result<Self, RemoteError> {
        Self::from_pem_with(pem, pin, &[])
    }

    /// Like [`TrustedBundle::from_pem`], with the chain of custody already established (the
    /// pinned root may have left the bundle since).
    pub fn from_pem_with(
        pem: &str,
        pin: &str,
        custody: &[CertificateDer<'static>],
    ) -> Result<Self, RemoteError> {
        let certs = certs_from_pem("the CA bundle", pem)
            .map_err(|e| RemoteError::BadResponse(e.to_string()))?;
        let material: Vec<&CertificateDer<'static>> = custody.iter().chain(certs.iter()).collect();
        let parsed: Vec<_> = material
            .iter()
            .map(|c| parse_cert("a CA certificate", c).ok())
            .collect();
        let Some(pinned) = material.iter().position(|c| fingerprint(c) == pin) else {
            return Err(RemoteError::FingerprintMismatch {
                pinned: pin.to_string(),
                actual: fingerprint(&certs[0]),
            });
        };
        let self_signed = |i: usize| {
            parsed[i]
                .as_ref()
                .is_some_and(|p| p.subject() == p.issuer() && p.verify_signature(None).is_ok())
        };
        let signed_by = |i: usize, k: usize| match (&parsed[i], &parsed[k]) {
            (Some(c), Some(r)) => c.verify_signature(Some(r.public_key())).is_ok(),
            _ => false,
        };
        // A root is trusted when it is the pinned one, or when a trusted root signed a
        // cross-certificate with its name and key.
        let mut roots = vec![pinned];
        let mut crosses = Vec::new();
        loop {
            let next = (0..material.len()).find_map(|r| {
                if !self_signed(r) || roots.iter().any(|&t| material[t] == material[r]) {
                    return None;
                }
                let target = parsed[r].as_ref()?;
                (0..material.len()).find_map(|c| {
                    let cross = parsed[c].as_ref()?;
                    let same_key = cross.subject() == target.subject()
                        && cross.public_key().raw == target.public_key().raw;
                    (c != r && same_key && roots.iter().any(|&t| signed_by(c, t))).then_some((r, c))
                })
            });
            match next {
                Some((r, c)) => {
                    roots.push(r);
                    crosses.push(c);
                }
                None => break,
            }
        }
        let offset = custody.len();
        let mut kept = Vec::new();
        for (i, c) in certs.iter().enumerate() {
            let i = i + offset;
            let trusted_root = roots.iter().any(|&t| material[t] == c);
            if trusted_root || (!self_signed(i) && roots.iter().any(|&t| signed_by(i, t))) {
                kept.push(c.clone());
            } else {
                tracing::warn!(
                    "ignoring a certificate in the CA bundle that no trusted root signed"
                );
            }
        }
        let mut chain = vec![material[pinned].clone()];
        for (r, c) in roots.iter().skip(1).zip(&crosses) {
            chain.push(material[*c].clone());
            chain.push(material[*r].clone());
        }
        chain.dedup();
        Ok(Self {
            certs: kept,
            custody: chain,
        })
    }

    /// The pinned root.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.custody[0]
    }

    pub fn to_pem(&self) -> String {
        self.certs.iter().map(|c| cert_to_pem(c)).collect()
    }

    /// The chain of custody, for `agent/root.pem`.
    pub fn custody_pem(&self) -> String {
        self.custody.iter().map(|c| cert_to_pem(c)).collect()
    }
}

/// The agent's own client certificate, as enrolled or last renewed.
#[derive(Clone)]
pub struct Identity {
    pub key: SecretPem,
    pub cert: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub serial: String,
    pub name: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// From a key and the certificate (then chain) PEM the CA answered.
    pub fn new(key: SecretPem, cert_and_chain_pem: &str) -> Result<Self, RemoteError> {
        let mut certs = certs_from_pem("the agent certificate", cert_and_chain_pem)
            .map_err(|e| RemoteError::Identity(e.to_string()))?;
        let cert = certs.remove(0);
        let facts = CertFacts::from_der("the agent certificate", &cert)
            .map_err(|e| RemoteError::Identity(e.to_string()))?;
        Ok(Self {
            serial: facts.serial,
            name: facts.common_name.unwrap_or_default(),
            not_before: facts.not_before,
            not_after: facts.not_after,
            key,
            cert: cert.clone(),
            chain: certs,
        })
    }

    /// The one-file form: key, certificate, chain.
    pub fn to_pem(&self) -> String {
        let mut out = self.key.secret_pem().to_string();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&cert_to_pem(&self.cert));
        for c in &self.chain {
            out.push_str(&cert_to_pem(c));
        }
        out
    }

    pub fn from_pem(pem: &str) -> Result<Self, RemoteError> {
        let key = crate::tls::private_key_from_pem(pem)
            .map_err(|e| RemoteError::Identity(e.to_string()))?;
        drop(key);
        // The key block is kept verbatim; the certificates follow it.
        let start = pem
            .find("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| RemoteError::Identity("no certificate after the key".into()))?;
        Self::new(SecretPem::new(pem[..start].to_string()), &pem[start..])
    }

    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::authority::{Authority, CaLifetimes};
    use crate::ca::keys::KeyType;

    fn ca(dir: &Path) -> Authority {
        Authority::create(
            dir,
            KeyType::EcdsaP256,
            CaLifetimes::default(),
            None,
            OffsetDateTime::now_utc(),
        )
        .unwrap()
    }

    #[test]
    fn fingerprints_are_accepted_as_users_paste_them() {
        let hex = "ab".repeat(32);
        let pasted = hex
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(normalize_fingerprint(&pasted).unwrap(), hex);
        assert!(normalize_fingerprint("abcd").is_err());
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_bundle_keeps_only_what_the_pinned_root_signed() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ours, theirs) = (ca(d1.path()), ca(d2.path()));
        let pin = ours.root_fingerprint();
        // An impostor appends its own intermediate to our genuine bundle.
        let tampered = format!("{}{}", ours.bundle_pem(), theirs.current().pem);
        let trusted = TrustedBundle::from_pem(&tampered, &pin).unwrap();
        assert_eq!(trusted.to_pem(), ours.bundle_pem());
        assert!(matches!(
            TrustedBundle::from_pem(&theirs.bundle_pem(), &pin),
            Err(RemoteError::FingerprintMismatch { .. })
        ));
    }

    #[test]
    fn the_pin_follows_a_root_rotation_signed_by_the_pinned_root_and_outlives_its_overlap() {
        let d = tempfile::tempdir().unwrap();
        let t0 = OffsetDateTime::now_utc();
        let life = CaLifetimes {
            root_overlap: Some(std::time::Duration::from_secs(3600)),
            ..CaLifetimes::default()
        };
        let old = Authority::create(d.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
        let pin = old.root_fingerprint();
        let new = Authority::rotate_root(d.path(), life, t0).unwrap();
        let trusted = TrustedBundle::from_pem(&new.bundle_pem(), &pin).unwrap();
        assert_eq!(trusted.to_pem(), new.bundle_pem(), "everything is kept");
        assert_eq!(trusted.custody.len(), 3, "old root, cross, new root");
        assert_eq!(trusted.root(), &old.root().der);
        // The stored chain of custody validates itself on restart.
        let stored = TrustedBundle::from_pem(&trusted.custody_pem(), &pin).unwrap();
        assert_eq!(stored.custody, trusted.custody);
        // After the overlap the old root is gone: the custody still proves the new one.
        let after = Authority::load(d.path(), life, t0 + time::Duration::hours(2)).unwrap();
        assert!(TrustedBundle::from_pem(&after.bundle_pem(), &pin).is_err());
        let later =
            TrustedBundle::from_pem_with(&after.bundle_pem(), &pin, &trusted.custody).unwrap();
        assert_eq!(later.to_pem(), after.bundle_pem());
    }

    #[test]
    fn an_unsigned_new_root_is_never_followed() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ours, theirs) = (ca(d1.path()), ca(d2.path()));
        let pin = ours.root_fingerprint();
        // An impostor puts its own root first and keeps ours behind it.
        let hijack = format!("{}{}", theirs.bundle_pem(), ours.bundle_pem());
        let trusted = TrustedBundle::from_pem(&hijack, &pin).unwrap();
        assert_eq!(trusted.to_pem(), ours.bundle_pem());
        assert_eq!(trusted.custody, vec![ours.root().der.clone()]);
    }
}
