//! The endpoints of SPEC.md "HTTPS API": routing, authorisation, and the calls into the CA.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use super::conns::is_body_timeout;
use super::error::{ApiError, ErrorCode};
use super::forward_auth::{self, ForwardAuthState};
use super::session::Sessions;
use super::tls::ApiCert;
use crate::ca::authorize::{CsrAsk, Remote, RevokeTarget, Revoker, Rotator};
use crate::ca::csr::Csr;
use crate::ca::issue::SignedCert;
use crate::ca::local::{LocalCa, normalize_serial};
use crate::core::authz::GroupName;
use crate::core::names::Usage;
use crate::core::policy::parse_duration;
use crate::core::wire::{
    CertResponse, RenewRequest, RevokeRequest, RevokeResponse, RotateRequest, RotateResponse,
    SignRequest,
};
use crate::metrics::Metrics;
use crate::store::requester::Requester;

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
    /// The forward-auth decider and the allow lists it reads (published by `run`'s controller).
    pub forward_auth: ForwardAuthState,
    /// The ACME server (`/acme/…`), sharing the CA, the metrics and the port.
    pub acme: Arc<crate::acme::Acme>,
    /// The UI's logged-in admins.
    pub sessions: Arc<Sessions>,
}

const ENDPOINTS: [&str; 12] = [
    "/health",
    "/v1/status",
    "/ui",
    "/ui/login",
    "/ui/logout",
    "/roots.pem",
    "/v1/sign",
    "/v1/renew",
    "/v1/revoke",
    "/v1/ca/rotate",
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
        .route("/v1/ca/rotate", post(rotate))
        .route("/crl", get(crl))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(forward_auth::router(state.forward_auth.clone()))
        .merge(crate::acme::router(state.acme.clone()))
        .merge(super::ui::router(state.clone()))
        .fallback(|| async { ApiError::NotFound })
        // A known path with another method gets the same JSON error shape as everything else.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state, track))
}

/// Every server name shares one label: names must not grow the label set.
const FORWARD_AUTH: &str = "/v1/forward-auth/";
const LOGIN_LINK: &str = "/ui/login/";

/// Counts every request by endpoint and status (unknown paths as `other`, so a scanner cannot
/// grow the label set), errors by code, and logs one line without bodies or credentials.
async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let endpoint = ENDPOINTS
        .iter()
        .find(|e| **e == path)
        .copied()
        .or_else(|| path.starts_with(FORWARD_AUTH).then_some(FORWARD_AUTH))
        .or_else(|| crate::acme::endpoint_label(path))
        // The one-time login link carries a token: never a label, never logged.
        .or_else(|| path.starts_with(LOGIN_LINK).then_some(LOGIN_LINK))
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

pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: BODY_LIMIT },
        _ if is_body_timeout(&r) => ApiError::BodyTimeout,
        _ => ApiError::BadRequest(r.body_text()),
    })
}

/// A request with a body says it is JSON (`application/json`, parameters allowed); one without
/// a body (`curl -X POST`) may say nothing. Checked before the body is read.
pub(super) fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        return match (length, chunked) {
            (None | Some(0), false) => Ok(()),
            _ => Err(ApiError::UnsupportedMediaType { got: "none".into() }),
        };
    };
    let text = value.to_str().unwrap_or("(not text)");
    let mime = text.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            got: text.chars().take(64).collect(),
        })
    }
}

fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The bearer token, if an Authorization header is present.
pub(super) fn bearer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

/// What a request presents: a bearer token (which wins when both are sent), or the client
/// certificate verified at the handshake.
enum Credential {
    Token(String),
    Certificate(Arc<CertificateDer<'static>>),
}

fn credential(headers: &HeaderMap, peer: PeerCert) -> Result<Credential, ApiError> {
    match (bearer(headers)?, peer.0) {
        (Some(token), _) => Ok(Credential::Token(token)),
        (None, Some(der)) => Ok(Credential::Certificate(der)),
        (None, None) => Err(ApiError::MissingCredentials),
    }
}

/// A JSON request body with the credential it came with. The credential is read first, so a
/// request without one is refused before its body is read.
struct Credentialed<T>(Credential, T);

impl<T: DeserializeOwned> FromRequest<AppState> for Credentialed<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let peer = req
            .extensions()
            .get::<PeerCert>()
            .cloned()
            .unwrap_or_default();
        let credential = credential(req.headers(), peer)?;
        json_content_type(req.headers())?;
        let body = json(&body_bytes(Bytes::from_request(req, state).await)?)?;
        Ok(Self(credential, body))
    }
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
/// certificate (names within the agent's scope). `ca::authorize` decides which.
async fn sign(
    State(st): State<AppState>,
    Credentialed(credential, req): Credentialed<SignRequest>,
) -> Result<Json<CertResponse>, ApiError> {
    let ask = ask_of(&req)?;
    let token = match credential {
        Credential::Token(token) => token,
        Credential::Certificate(der) => return sign_for_agent(&st, &der, ask).await,
    };
    let (ca, metrics) = (st.ca.clone(), st.metrics.clone());
    let signed = blocking(move || {
        let now = OffsetDateTime::now_utc();
        let secret = token.as_str();
        let auth = ca.authorize_remote(Remote::Token { secret, ask }, now)?;
        let requester = auth.requester().clone();
        let signed = ca.sign(auth, now)?.wait()?;
        if let Requester::AgentToken(id) = requester {
            metrics.issued("agent_enrolment");
            tracing::info!(serial = %signed.serial, token = %id, "agent enrolled");
        } else {
            metrics.issued("token");
        }
        Ok(signed)
    })
    .await?;
    Ok(Json(cert_response(&signed)))
}

/// What a sign request asks, every field checked (ttl, usage, groups, then the CSR) before
/// any credential is used, so a malformed request never spends a token.
fn ask_of(req: &SignRequest) -> Result<CsrAsk, ApiError> {
    Ok(CsrAsk {
        ttl: req.ttl.as_deref().map(parse_duration).transpose()?,
        usage: req.usage.as_deref().map(Usage::parse).transpose()?,
        groups: groups_of(req)?,
        csr: Csr::parse(&req.csr)?,
        enrol: req.enrol,
    })
}

/// The agent path of [`sign`]: no token store, no file lock (see [`sign_presented`]).
async fn sign_for_agent(
    st: &AppState,
    presented: &[u8],
    ask: CsrAsk,
) -> Result<Json<CertResponse>, ApiError> {
    let signed = sign_presented(st, Remote::Agent { presented, ask }).await?;
    st.metrics.issued("agent");
    Ok(Json(cert_response(&signed)))
}

/// The groups a sign request asks for, each a valid group name.
fn groups_of(req: &SignRequest) -> Result<BTreeSet<GroupName>, ApiError> {
    req.groups
        .iter()
        .map(|g| GroupName::parse(g).map_err(|e| ApiError::BadRequest(format!("groups: {e}"))))
        .collect()
}

/// authorize → sign for a caller with a client certificate: nothing blocks but the fsync,
/// which is awaited. The checks and the signature (tens of microseconds) run right here rather
/// than paying two thread hand-offs for them.
async fn sign_presented(st: &AppState, req: Remote<'_>) -> Result<SignedCert, ApiError> {
    let now = OffsetDateTime::now_utc();
    let auth = st.ca.authorize_remote(req, now)?;
    Ok(st.ca.sign(auth, now)?.durable().await?)
}

/// Same identity, new serial; only on the authority of the certificate on this connection.
async fn renew(
    State(st): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    req: Request,
) -> Result<Json<CertResponse>, ApiError> {
    let der = peer.0.ok_or(ApiError::ClientCertificateRequired)?;
    json_content_type(req.headers())?;
    let bytes = body_bytes(Bytes::from_request(req, &st).await)?;
    // `curl -X POST` with no body means `{}`.
    let req: RenewRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        RenewRequest::default()
    } else {
        json(&bytes)?
    };
    let renewal = Remote::Renewal {
        presented: &der,
        csr_pem: req.csr.as_deref(),
    };
    let signed = sign_presented(&st, renewal).await?;
    st.metrics.renewed("mtls");
    Ok(Json(cert_response(&signed)))
}

/// Revokes a serial (and what was renewed from it) on the authority of an `admin` token, an
/// admin's certificate or the very certificate being revoked (on this connection); or every
/// live certificate of an identity (`{"name": …}`), for admins only.
async fn revoke(
    State(st): State<AppState>,
    Credentialed(credential, req): Credentialed<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let target = match (&req.serial, &req.name) {
        (Some(serial), None) => Target::Serial(
            normalize_serial(serial)
                .map_err(|_| ApiError::BadRequest("serial must be hex (colons allowed)".into()))?,
        ),
        (None, Some(name)) if !name.trim().is_empty() => Target::Identity(name.trim().into()),
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of `serial` (hex) and `name` (an identity)".into(),
            ));
        }
    };
    let ca = st.ca.clone();
    let (target, serials) = blocking(move || {
        let now = OffsetDateTime::now_utc();
        let who = match &credential {
            Credential::Token(token) => Revoker::AdminToken(token),
            Credential::Certificate(der) => Revoker::Itself(der),
        };
        let serials = match &target {
            Target::Serial(serial) => {
                ca.authorize_revoke(who, RevokeTarget::Serial(serial), now)?;
                ca.revoke(serial, now)?
            }
            Target::Identity(name) => {
                ca.authorize_revoke(who, RevokeTarget::Identity(name), now)?;
                ca.revoke_name(name, now)?
            }
        };
        tracing::info!(?serials, "revoked");
        Ok((target, serials))
    })
    .await?;
    // Forward-auth refuses them from the next request on, not from the next refresh.
    forward_auth::follow_local_ca_once(&st.ca, &st.forward_auth.decider).await;
    let (serial, name) = match target {
        Target::Serial(s) => (Some(s), None),
        Target::Identity(n) => (None, Some(n)),
    };
    Ok(Json(RevokeResponse {
        serial,
        name,
        revoked: true,
        serials,
    }))
}

/// What a revoke request names, checked.
enum Target {
    Serial(String),
    Identity(String),
}

/// Rotates the intermediate (or with `root`, the root) on the authority of an `admin` token or
/// an admin's client certificate. In effect for this process at once; the controller and the
/// API's verifier follow the bundle within their check intervals.
async fn rotate(
    State(st): State<AppState>,
    Credentialed(credential, req): Credentialed<RotateRequest>,
) -> Result<Json<RotateResponse>, ApiError> {
    let ca = st.ca.clone();
    blocking(move || {
        let now = OffsetDateTime::now_utc();
        let who = match &credential {
            Credential::Token(token) => Rotator::AdminToken(token),
            Credential::Certificate(der) => Rotator::Certificate(der),
        };
        ca.authorize_rotate(who, req.root, now)?;
        ca.rotate(req.root, now)?;
        Ok(())
    })
    .await?;
    let status = st.ca.signer_status(OffsetDateTime::now_utc())?;
    Ok(Json(RotateResponse {
        root_fingerprint: status.root_fingerprint,
        intermediate_serial: status.intermediate_serial,
    }))
}

/// The answer of sign and renew: PEM strings, the serial in hex and not-after in RFC 3339.
fn cert_response(signed: &SignedCert) -> CertResponse {
    CertResponse {
        certificate: signed.cert_pem.clone(),
        chain: signed.chain_pem.clone(),
        fullchain: signed.fullchain_pem(),
        ca: signed.ca_pem.clone(),
        serial: signed.serial.clone(),
        not_after: signed
            .not_after
            .format(&Rfc3339)
            .unwrap_or_else(|_| signed.not_after.to_string()),
    }
}
