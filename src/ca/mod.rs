//! The certificate authority: its own certificates, who may sign what, leaf signing, the ledger,
//! CRL, PKCS#12, and the two certificate sources. No Docker, no HTTP server.

pub mod authority;
pub mod authorize;
pub mod commit;
pub mod crl;
pub mod csr;
pub mod facts;
pub mod issue;
pub mod keys;
pub mod ledger;
pub mod local;
mod locks;
pub mod maintain;
pub mod p12;
pub mod pem;
pub mod remote;
pub mod sign;
pub mod source;

use std::path::{Path, PathBuf};

use rcgen::SerialNumber;
use time::OffsetDateTime;

use crate::core::policy::{PolicyError, TtlError};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "a CA already exists in {dir}; refusing to overwrite it (remove the directory to start over)"
    )]
    AlreadyExists { dir: PathBuf },
    #[error("no CA in {dir}; run `certdock init` first")]
    Missing { dir: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    BadPem { what: String, reason: String },
    #[error("{what}: not a usable private key: {reason}")]
    BadKey { what: String, reason: String },
    #[error("cannot import the CA: {0}")]
    BadImport(String),
    #[error("the CSR is refused: {reason}")]
    BadCsr { reason: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Ttl(#[from] TtlError),
    #[error("serial {serial} is revoked")]
    Revoked { serial: String },
    #[error("certificate {serial} was not issued by this CA")]
    UnknownCertificate { serial: String },
    #[error("the root CA expires at {not_after}; import or create a new root")]
    RootExpiring { not_after: OffsetDateTime },
    #[error("signing failed: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("internal error: {0} (please report this)")]
    Internal(String),
}

impl CaError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CaError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A random, positive 128-bit serial (RFC 5280 §4.1.2.2: positive, at most 20 octets). The
/// first octet is kept in 0x01..=0x7f so every serial has the same 16-octet encoding.
pub fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests;
