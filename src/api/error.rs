//! The API's error enum and the one function that maps it to an HTTP status and a stable code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ca::CaError;
use crate::ca::authorize::AuthError;
use crate::core::names::UsageError;
use crate::core::policy::TtlError;
use crate::core::wire::ErrorBody;
use crate::store::tokens::TokenError;

/// Why a request failed. Variants say whose fault it is: the client's credentials, the client's
/// input, the CA's policy, or the CA itself.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no credentials: send `Authorization: Bearer <token>` or a client certificate")]
    MissingCredentials,
    #[error("this endpoint needs the client certificate being renewed on the TLS connection")]
    ClientCertificateRequired,
    #[error("the Authorization header must be `Bearer <token>`")]
    MalformedAuthorization,
    /// Refused by `ca::authorize`: the credential does not allow what was asked.
    #[error(transparent)]
    Auth(AuthError),
    #[error("malformed request body: {0}")]
    BadRequest(String),
    #[error("ttl: {0}")]
    Ttl(#[from] TtlError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(
        "request bodies are JSON: send `Content-Type: application/json` (Content-Type was {got})"
    )]
    UnsupportedMediaType { got: String },
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive in time (--body-timeout); the connection is closed")]
    BodyTimeout,
    #[error("no such endpoint")]
    NotFound,
    #[error("this endpoint does not answer that method")]
    MethodNotAllowed,
    #[error("the CA cannot sign now: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Input and CA failures found while authorising are classified like any other.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Ca(ca) => ApiError::Ca(ca),
            AuthError::TokenStore(io) => ApiError::Internal(format!("token store: {io}")),
            other => ApiError::Auth(other),
        }
    }
}

impl ApiError {
    /// The single place where errors meet the wire: (HTTP status, stable `error` code).
    pub fn classify(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::MissingCredentials => (S::UNAUTHORIZED, "unauthenticated"),
            ApiError::ClientCertificateRequired => (S::UNAUTHORIZED, "client_certificate_required"),
            ApiError::MalformedAuthorization => (S::UNAUTHORIZED, "bad_authorization"),
            ApiError::Auth(a) => match a {
                AuthError::Token(TokenError::Malformed | TokenError::Unknown) => {
                    (S::UNAUTHORIZED, "invalid_token")
                }
                AuthError::Token(TokenError::Used) => (S::FORBIDDEN, "token_used"),
                AuthError::Token(TokenError::Expired) => (S::FORBIDDEN, "token_expired"),
                AuthError::Token(TokenError::WrongKind { .. })
                | AuthError::NotAnAgentToken { .. } => (S::FORBIDDEN, "token_wrong_kind"),
                AuthError::NotAnAgent => (S::FORBIDDEN, "not_an_agent"),
                AuthError::NotYourCertificate => (S::FORBIDDEN, "not_your_certificate"),
                AuthError::NotAnAdmin => (S::FORBIDDEN, "not_an_admin"),
                AuthError::BadAgentName { .. } => (S::FORBIDDEN, "bad_agent_name"),
                AuthError::GroupsNeedAnAgent => (S::FORBIDDEN, "groups_need_an_agent"),
                AuthError::TokenStore(_) | AuthError::Ca(_) => {
                    (S::INTERNAL_SERVER_ERROR, "internal")
                }
            },
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            ApiError::Ttl(TtlError::Unparsable { .. }) => (S::BAD_REQUEST, "bad_ttl"),
            ApiError::Ttl(_) => (S::FORBIDDEN, "ttl_refused"),
            ApiError::Usage(_) => (S::BAD_REQUEST, "bad_usage"),
            ApiError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::UnsupportedMediaType { .. } => {
                (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::BodyTimeout => (S::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::NotFound => (S::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "ca_unavailable"),
            ApiError::Ca(e) => match e {
                CaError::BadCsr { .. } | CaError::BadPem { .. } => (S::BAD_REQUEST, "bad_csr"),
                CaError::Policy(_) => (S::FORBIDDEN, "policy"),
                CaError::Ttl(TtlError::Unparsable { .. }) => (S::BAD_REQUEST, "bad_ttl"),
                CaError::Ttl(_) => (S::FORBIDDEN, "ttl_refused"),
                CaError::Revoked { .. } => (S::FORBIDDEN, "revoked"),
                CaError::UnknownCertificate { .. } => (S::FORBIDDEN, "unknown_certificate"),
                CaError::NoLiveCertificate { .. } => (S::NOT_FOUND, "unknown_identity"),
                _ => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

pub use crate::metrics::ErrorCode;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        let message = if status.is_server_error() {
            // Details of our own failures (paths, lock states) go to the log, not to the client.
            tracing::error!(error = %self, code, "request failed");
            "the CA failed to process the request; see its log".to_string()
        } else {
            self.to_string()
        };
        error_response(status, code, message)
    }
}

/// The one shape of every error answer: `{"error": code, "message"}`, with the code kept on
/// the response for the request metrics.
pub fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut resp = (
        status,
        Json(ErrorBody {
            error: code.to_string(),
            message,
        }),
    )
        .into_response();
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_input_and_policy_errors_get_distinct_statuses() {
        assert_eq!(
            ApiError::MissingCredentials.classify().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::from(AuthError::Token(TokenError::Used)).classify(),
            (StatusCode::FORBIDDEN, "token_used")
        );
        assert_eq!(
            ApiError::from(AuthError::NotAnAgentToken {
                kind: crate::store::tokens::TokenKind::Sign
            })
            .classify(),
            (StatusCode::FORBIDDEN, "token_wrong_kind")
        );
        assert_eq!(
            ApiError::from(AuthError::Ca(CaError::BadCsr { reason: "x".into() })).classify(),
            (StatusCode::BAD_REQUEST, "bad_csr")
        );
        assert_eq!(
            ApiError::Ca(CaError::BadCsr { reason: "x".into() }).classify(),
            (StatusCode::BAD_REQUEST, "bad_csr")
        );
        assert_eq!(
            ApiError::Ca(CaError::Revoked {
                serial: "01".into()
            })
            .classify(),
            (StatusCode::FORBIDDEN, "revoked")
        );
        assert_eq!(
            ApiError::Ca(CaError::Internal("x".into())).classify().0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
