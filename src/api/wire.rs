//! The JSON bodies of the HTTPS API, shared by the server and the remote CA client.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::ca::issue::Issued;

/// `POST /v1/sign`. Unknown fields are ignored so that a newer client still talks to an older CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignRequest {
    /// A PEM `CERTIFICATE REQUEST`.
    pub csr: String,
    /// Lifetime such as `24h` (default: the CA's `--default-ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// certdock's extension: `server`, `client` or `server,client` (default). Ignored when an
    /// agent enrols: an agent's own identity is always a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
}

/// `POST /v1/renew`: `{}` keeps the key, a CSR brings a new one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RenewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

/// `POST /v1/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// Hex, any case, colons allowed.
    pub serial: String,
}

/// The answer of `POST /v1/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub serial: String,
    pub revoked: bool,
}

/// The answer of sign and renew: PEM strings, the serial in hex and not-after in RFC 3339.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertResponse {
    pub certificate: String,
    pub chain: String,
    pub fullchain: String,
    pub ca: String,
    pub serial: String,
    pub not_after: String,
}

impl CertResponse {
    pub fn from_issued(issued: &Issued) -> Self {
        Self {
            certificate: issued.cert_pem.clone(),
            chain: issued.chain_pem.clone(),
            fullchain: issued.fullchain_pem(),
            ca: issued.ca_pem.clone(),
            serial: issued.serial.clone(),
            not_after: issued
                .not_after
                .format(&Rfc3339)
                .unwrap_or_else(|_| issued.not_after.to_string()),
        }
    }
}

/// Every error answer: a stable machine `error` code and a human `message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}
