//! The endpoints of SPEC.md "HTTPS API": routing, authorisation, and the calls into the CA.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use super::error::{ApiError, ErrorCode};
use super::tls::ApiCert;
use super::wire::{CertResponse, RenewRequest, RevokeRequest, RevokeResponse, SignRequest};
use crate::ca::local::{LocalCa, normalize_serial, parse_csr};
use crate::core::names::{CertName, Usage};
use crate::core::policy::parse_duration;
use crate::metrics::Metrics;
use crate::store::tokens::TokenKind;

/// Largest accepted request body; a CSR is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The client certificate verified during the handshake (leaf only), if one was sent.
#[derive(Debug, Clone, Default)]
pub struct PeerCert(pub Option<Arc<CertificateDer<'static>>>);

#[derive(Clone)]
pub struct AppState {
    pub ca: Arc<LocalCa>,
    pub metrics: Arc<Metrics>,
    pub api_cert: watch::Receiver<Option<ApiCert>>,
    /// The ACME server (`/acme/…`), sharing the CA, the metrics and the port.
    pub acme: Arc<crate::acme::Acme>,
}

const ENDPOINTS: [&str; 7] = [
    "/health",
    "/roots.pem",
    "/v1/sign",
    "/v1/renew",
    "/v1/revoke",
    "/crl",
    "/metrics",
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/roots.pem", get(roots))
        .route("/v1/sign", post(sign))
        .route("/v1/renew", post(renew))
        .route("/v1/revoke", post(revoke))
        .route("/crl", get(crl))
        .route("/metrics", get(metrics))
        .merge(crate::acme::router(state.acme.clone()))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every request by endpoint and status (unknown paths as `other`, so a scanner cannot
/// grow the label set), errors by code, and logs one line without bodies or credentials.
async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = ENDPOINTS
        .iter()
        .find(|e| **e == req.uri().path())
        .copied()
        .or_else(|| crate::acme::endpoint_label(req.uri().path()))
        .unwrap_or("other");
    let method = req.method().clone();
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    st.metrics.http_request(endpoint, code);
    match resp.extensions().get::<ErrorCode>() {
        Some(ErrorCode(kind)) => {
            st.metrics.error(kind);
            tracing::info!(%method, endpoint, code, error = kind, "request refused");
        }
        None => tracing::debug!(%method, endpoint, code, "request"),
    }
    resp
}

/// Runs blocking CA work (file locks, fsync, signing) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker task: {e}")))?
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: BODY_LIMIT },
        _ => ApiError::BadRequest(r.body_text()),
    })
}

fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The bearer token, if an Authorization header is present.
fn bearer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::MalformedAuthorization)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::MalformedAuthorization)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::MalformedAuthorization);
    }
    Ok(Some(token.trim().to_string()))
}

async fn health(State(st): State<AppState>) -> Result<Response, ApiError> {
    let ca = st.ca.clone();
    let status = blocking(move || Ok(ca.signer_status(OffsetDateTime::now_utc())?)).await?;
    if !status.can_sign {
        return Err(ApiError::Unavailable(format!(
            "intermediate {} is outside its validity (not after {})",
            status.intermediate_serial, status.intermediate_not_after
        )));
    }
    let rfc = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let api_not_after = st.api_cert.borrow().as_ref().map(|c| rfc(c.not_after));
    Ok(Json(serde_json::json!({
        "status": "ok",
        "root_fingerprint": status.root_fingerprint,
        "root_not_after": rfc(status.root_not_after),
        "intermediate_serial": status.intermediate_serial,
        "intermediate_not_after": rfc(status.intermediate_not_after),
        "api_certificate_not_after": api_not_after,
    }))
    .into_response())
}

async fn roots(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        st.ca.bundle_pem(),
    )
        .into_response()
}

async fn crl(State(st): State<AppState>) -> Result<Response, ApiError> {
    let ca = st.ca.clone();
    let der = blocking(move || Ok(ca.crl(OffsetDateTime::now_utc())?)).await?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response())
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(OffsetDateTime::now_utc()),
    )
        .into_response()
}

/// A CSR signed on the authority of a `sign` token (names within its scope), an `agent` token
/// (enrolment: a client certificate named after the token), or an enrolled agent's client
/// certificate (names within the agent's scope).
async fn sign(
    State(st): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CertResponse>, ApiError> {
    let token = bearer(&headers)?;
    if token.is_none() && peer.0.is_none() {
        return Err(ApiError::MissingCredentials);
    }
    let req: SignRequest = json(&body_bytes(body)?)?;
    let ttl = req.ttl.as_deref().map(parse_duration).transpose()?;
    let usage = req.usage.as_deref().map(Usage::parse).transpose()?;
    let (ca, metrics) = (st.ca.clone(), st.metrics.clone());
    let Some(token) = token else {
        // An enrolled agent's client certificate: no token store, no file lock, nothing that
        // blocks but the fsync, which is awaited. The checks and the signature (tens of
        // microseconds) run right here rather than paying two thread hand-offs for them.
        let der = peer.0.ok_or(ApiError::MissingCredentials)?;
        let now = OffsetDateTime::now_utc();
        let csr = parse_csr(&req.csr)?;
        ca.policy().ttls.resolve(ttl)?;
        let agent = ca.verify_presented(&der, now)?;
        let scope = agent.agent_scope.ok_or(ApiError::NotAnAgent)?;
        let issued = ca
            .sign_parsed_csr_deferred(
                csr,
                ttl,
                usage.unwrap_or(Usage::BOTH),
                Some(scope),
                format!("agent:{}", agent.name),
                now,
            )?
            .durable()
            .await?;
        metrics.issued("agent");
        return Ok(Json(CertResponse::from_issued(&issued)));
    };
    let issued = blocking(move || {
        let now = OffsetDateTime::now_utc();
        // Malformed input and a refused lifetime never spend a token.
        let csr = parse_csr(&req.csr)?;
        ca.policy().ttls.resolve(ttl)?;
        let grant = ca.with_tokens(|t| {
            t.redeem(
                &token,
                &[TokenKind::Sign, TokenKind::Agent],
                now.unix_timestamp(),
            )
        })??;
        if grant.kind == TokenKind::Agent {
            let name = CertName::parse(&grant.name).map_err(|e| ApiError::BadAgentName {
                name: grant.name.clone(),
                reason: e.to_string(),
            })?;
            let issued = ca.enrol_agent(
                &req.csr,
                name,
                ttl,
                grant.allow,
                format!("api:agent-token:{}", grant.id),
                now,
            )?;
            metrics.issued("agent_enrolment");
            tracing::info!(serial = %issued.serial, token = %grant.id, "agent enrolled");
            return Ok(issued);
        }
        let issued = ca.sign_parsed_csr(
            csr,
            ttl,
            usage.unwrap_or(Usage::BOTH),
            Some(grant.allow),
            format!("api:token:{}", grant.id),
            now,
        )?;
        metrics.issued("token");
        Ok(issued)
    })
    .await?;
    Ok(Json(CertResponse::from_issued(&issued)))
}

/// Same identity, new serial; only on the authority of the certificate on this connection.
async fn renew(
    State(st): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CertResponse>, ApiError> {
    let der = peer.0.ok_or(ApiError::ClientCertificateRequired)?;
    let bytes = body_bytes(body)?;
    // `curl -X POST` with no body means `{}`.
    let req: RenewRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        RenewRequest::default()
    } else {
        json(&bytes)?
    };
    // Checks and signature inline, the fsync awaited (see `sign`).
    let issued = st
        .ca
        .renew_deferred(&der, req.csr.as_deref(), OffsetDateTime::now_utc())?
        .durable()
        .await?;
    st.metrics.renewed("mtls");
    Ok(Json(CertResponse::from_issued(&issued)))
}

/// Revokes a serial on the authority of an `admin` token, or of the very certificate being
/// revoked (on this connection).
async fn revoke(
    State(st): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let token = bearer(&headers)?;
    if token.is_none() && peer.0.is_none() {
        return Err(ApiError::MissingCredentials);
    }
    let req: RevokeRequest = json(&body_bytes(body)?)?;
    let serial = normalize_serial(&req.serial)
        .map_err(|_| ApiError::BadRequest("serial must be hex (colons allowed)".into()))?;
    let ca = st.ca.clone();
    let serial = blocking(move || {
        let now = OffsetDateTime::now_utc();
        match (token, peer.0) {
            (Some(token), _) => {
                let grant = ca.with_tokens(|t| {
                    t.redeem(&token, &[TokenKind::Admin], now.unix_timestamp())
                })??;
                tracing::info!(%serial, token = %grant.id, "revoking with an admin token");
            }
            (None, Some(der)) => {
                let own = ca.verify_presented(&der, now)?;
                if own.serial != serial {
                    return Err(ApiError::NotYourCertificate);
                }
                tracing::info!(%serial, "revoking by the certificate itself");
            }
            (None, None) => return Err(ApiError::MissingCredentials),
        }
        ca.revoke(&serial, now)?;
        Ok(serial)
    })
    .await?;
    Ok(Json(RevokeResponse {
        serial,
        revoked: true,
    }))
}
