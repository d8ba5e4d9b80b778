//! RFC 8555 §6.7 problem documents (`application/problem+json`): the only error shape ACME sends.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::jws::JwsError;
use crate::ca::CaError;

const PREFIX: &str = "urn:ietf:params:acme:error:";

/// A problem: the ACME error type (without the URN prefix), a human detail naming the input and
/// the rule, and the HTTP status it travels with. Stored as is in invalid challenges and orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
    pub status: u16,
}

impl Problem {
    pub fn new(kind: &str, status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{PREFIX}{kind}"),
            detail: detail.into(),
            status: status.as_u16(),
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new("malformed", StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new("unauthorized", StatusCode::UNAUTHORIZED, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            "malformed",
            StatusCode::NOT_FOUND,
            format!("no such {what} on this server"),
        )
    }

    pub fn server(detail: impl Into<String>) -> Self {
        Self::new("serverInternal", StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// The short type (`badNonce`), for metrics and tests.
    pub fn short(&self) -> &str {
        self.kind.strip_prefix(PREFIX).unwrap_or(&self.kind)
    }
}

impl From<JwsError> for Problem {
    fn from(e: JwsError) -> Self {
        let status = match e {
            JwsError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Problem::new(e.problem(), status, e.to_string())
    }
}

/// What a refusal by the CA means for an ACME client: its input (CSR, names, lifetime) or the CA.
impl From<CaError> for Problem {
    fn from(e: CaError) -> Self {
        match e {
            CaError::BadCsr { .. } => {
                Problem::new("badCSR", StatusCode::BAD_REQUEST, e.to_string())
            }
            CaError::Policy(_) => {
                Problem::new("rejectedIdentifier", StatusCode::BAD_REQUEST, e.to_string())
            }
            CaError::Ttl(_) => Problem::malformed(e.to_string()),
            CaError::Revoked { .. } => {
                Problem::new("alreadyRevoked", StatusCode::BAD_REQUEST, e.to_string())
            }
            CaError::UnknownCertificate { .. } => {
                Problem::new("malformed", StatusCode::NOT_FOUND, e.to_string())
            }
            other => {
                tracing::error!(error = %other, "ACME: the CA failed");
                Problem::server(other.to_string())
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if self.short() == "rateLimited" {
            // RFC 8555 §6.6: say when to ask again.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        // `track` in api::handlers counts refusals by this code.
        resp.extensions_mut()
            .insert(crate::metrics::ErrorCode(acme_code(self.short())));
        resp
    }
}

/// A `'static` metrics label for an ACME error type (a closed set, so labels cannot grow).
fn acme_code(short: &str) -> &'static str {
    const KNOWN: [&str; 19] = [
        "accountDoesNotExist",
        "alreadyRevoked",
        "badCSR",
        "badNonce",
        "badPublicKey",
        "badRevocationReason",
        "badSignatureAlgorithm",
        "connection",
        "externalAccountRequired",
        "incorrectResponse",
        "invalidContact",
        "malformed",
        "orderNotReady",
        "rateLimited",
        "rejectedIdentifier",
        "serverInternal",
        "tls",
        "unauthorized",
        "unsupportedIdentifier",
    ];
    KNOWN
        .iter()
        .find(|k| **k == short)
        .map_or("acme_other", |k| k)
}

pub type Result<T, E = Problem> = std::result::Result<T, E>;
