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

/// A CA bundle the agent trusts: the pinned root first, then only those intermediates that
/// the root really signed. Whatever else a bundle carries is dropped, so nothing fetched over
/// the unverified first connection can become a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedBundle {
    pub certs: Vec<CertificateDer<'static>>,
}

impl TrustedBundle {
    /// Checks `pem` (a `/roots.pem` answer) against the pinned fingerprint.
    pub fn from_pem(pem: &str, pin: &str) -> Result<Self, RemoteError> {
        let certs = certs_from_pem("the CA bundle", pem)
            .map_err(|e| RemoteError::BadResponse(e.to_string()))?;
        let root = &certs[0];
        let actual = fingerprint(root);
        if actual != pin {
            return Err(RemoteError::FingerprintMismatch {
                pinned: pin.to_string(),
                actual,
            });
        }
        let parsed_root =
            parse_cert("the CA root", root).map_err(|e| RemoteError::BadResponse(e.to_string()))?;
        let mut kept = vec![root.clone()];
        for c in &certs[1..] {
            let signed_by_root = parse_cert("an intermediate", c)
                .is_ok_and(|p| p.verify_signature(Some(parsed_root.public_key())).is_ok());
            if signed_by_root {
                kept.push(c.clone());
            } else {
                tracing::warn!(
                    "ignoring a certificate in the CA bundle that the pinned root did not sign"
                );
            }
        }
        Ok(Self { certs: kept })
    }

    pub fn root(&self) -> &CertificateDer<'static> {
        &self.certs[0]
    }

    pub fn to_pem(&self) -> String {
        self.certs.iter().map(|c| cert_to_pem(c)).collect()
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
}
