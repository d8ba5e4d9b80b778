//! Why the CA could not do what it was asked: one enum, variants named for the failed step.

use std::path::{Path, PathBuf};

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
    #[error("no unrevoked, unexpired certificate is named {name:?}")]
    NoLiveCertificate { name: String },
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
