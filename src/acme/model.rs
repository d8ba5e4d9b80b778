//! ACME's objects as certdock keeps them: accounts, orders, authorizations and challenges.

use serde::{Deserialize, Serialize};

use super::jws::RawJwk;
use super::problem::Problem;
use crate::core::names::San;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Valid,
    Deactivated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub jwk: RawJwk,
    /// RFC 7638 thumbprint of `jwk`: the key's identity (one account per key).
    pub thumbprint: String,
    #[serde(default)]
    pub contact: Vec<String>,
    pub status: AccountStatus,
    pub created_at: i64,
    /// The External Account Binding key id it was created with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_kid: Option<String>,
}

/// An identifier of RFC 8555 §9.7.7 (`dns`) or RFC 8738 (`ip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Identifier {
    /// The SAN it stands for, or why it is not one certdock can certify.
    pub fn to_san(&self) -> Result<San, Problem> {
        let refuse =
            |kind: &str, why: String| Problem::new(kind, axum::http::StatusCode::BAD_REQUEST, why);
        if self.kind != "dns" && self.kind != "ip" {
            return Err(refuse(
                "unsupportedIdentifier",
                format!(
                    "identifier type {:?}: certdock certifies `dns` names and `ip` addresses",
                    self.kind.chars().take(32).collect::<String>()
                ),
            ));
        }
        let san = San::parse(&self.value).map_err(|e| {
            refuse(
                "rejectedIdentifier",
                format!("identifier {:?}: {e}", self.value),
            )
        })?;
        match (self.kind.as_str(), &san) {
            ("dns", San::Dns(d)) if d.is_wildcard() => Err(refuse(
                "rejectedIdentifier",
                format!(
                    "identifier {:?}: a wildcard needs dns-01, which certdock does not offer",
                    self.value
                ),
            )),
            ("dns", San::Dns(_)) | ("ip", San::Ip(_)) => Ok(san),
            _ => Err(refuse(
                "rejectedIdentifier",
                format!(
                    "identifier {:?} is not of type {:?} (`dns` for names, `ip` for addresses)",
                    self.value, self.kind
                ),
            )),
        }
    }

    pub fn from_san(san: &San) -> Self {
        match san {
            San::Dns(d) => Self {
                kind: "dns".into(),
                value: d.to_string(),
            },
            San::Ip(ip) => Self {
                kind: "ip".into(),
                value: ip.to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChallengeType {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http-01" => Some(ChallengeType::Http01),
            "tls-alpn-01" => Some(ChallengeType::TlsAlpn01),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub kind: ChallengeType,
    pub token: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authz {
    pub id: String,
    pub account: String,
    pub identifier: Identifier,
    /// pending, valid or invalid (a challenge's processing shows on the challenge).
    pub status: Status,
    pub expires: i64,
    pub challenges: Vec<Challenge>,
}

/// The certificate an order produced: recorded before the finalize answer, so that a retried
/// finalize or a download after a restart gets this one and nothing is signed twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCert {
    pub serial: String,
    /// Leaf then intermediate, PEM.
    pub chain_pem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub account: String,
    pub identifiers: Vec<Identifier>,
    pub authzs: Vec<String>,
    pub expires: i64,
    /// Requested lifetime in seconds (from `notAfter`), checked against the CA's bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Finalize's progress: `None` until finalize; then processing, valid or invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<OrderCert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// A random identifier for an object's URL: 128 bits, base64url.
pub fn new_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}
