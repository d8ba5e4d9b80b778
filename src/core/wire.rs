//! The JSON bodies of the HTTPS API, shared by the server (`api`) and the agent (`ca::remote`).

use serde::{Deserialize, Serialize};

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
    /// certdock's extension: `true` when an agent enrols, so that the CA refuses a token that
    /// is not an `agent` token before spending it. Older agents omit it (an `agent` token
    /// enrols them all the same).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enrol: bool,
    /// certdock's extension: the groups (`certdock.groups`) an agent's controller binds to the
    /// certificate. Only an enrolled agent may ask for groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// `POST /v1/renew`: `{}` keeps the key, a CSR brings a new one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RenewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

/// `POST /v1/revoke`: exactly one of `serial` (a certificate and what was renewed from it)
/// and `name` (every live certificate of an identity; admins only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// Hex, any case, colons allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// An identity: its `certdock.name`, the certificates' CN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /v1/ca/rotate`: a new intermediate, or with `root` a new root cross-signed by the
/// current one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RotateRequest {
    #[serde(default)]
    pub root: bool,
}

/// The answer of `POST /v1/ca/rotate`: the CA as it is now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateResponse {
    /// SHA-256 of the current root's DER (what agents pin).
    pub root_fingerprint: String,
    /// The serial (hex) of the intermediate that signs now.
    pub intermediate_serial: String,
}

/// The answer of `POST /v1/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// The serial asked for (normalised), when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The identity asked for, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub revoked: bool,
    /// Every certificate this request revoked: the serial asked and the live certificates
    /// renewed from it, or every live certificate of the identity.
    pub serials: Vec<String>,
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

/// Every error answer: a stable machine `error` code and a human `message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}
