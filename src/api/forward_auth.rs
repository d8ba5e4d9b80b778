//! `GET /v1/forward-auth/NAME`: may the client behind the proxy call server NAME?
//!
//! Only the proxy may ask: the connection must carry certdock's own Traefik client certificate
//! (issued here, valid, not revoked). The client's certificate then comes from the header the
//! proxy set (Traefik's `X-Forwarded-Tls-Client-Cert`, or RFC 9440 `Client-Cert` from Caddy,
//! nginx…), and the decision is made from memory by [`Decider`]. A forwarded header is only as
//! good as the proxy that verified the key behind it, hence the first check.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::OffsetDateTime;

use super::error::error_response;
use super::handlers::PeerCert;
use crate::authz::decider::{Decider, Refusal};
use crate::authz::table::AllowTable;
use crate::ca::local::LocalCa;
use crate::ca::pem::certs_from_pem;
use crate::core::client_cert::{self, RFC9440_HEADER, TRAEFIK_HEADER};
use crate::core::names::traefik_client;
use crate::metrics::Metrics;

/// What the endpoint reads: the decider (trust and revocations) and the allow lists.
#[derive(Clone)]
pub struct ForwardAuthState {
    pub decider: Arc<Decider>,
    pub allow: Arc<AllowTable>,
    pub metrics: Arc<Metrics>,
}

/// The route, for the API router (`run`) and for an agent's listener.
pub fn router(state: ForwardAuthState) -> Router {
    Router::new()
        .route("/v1/forward-auth/{name}", get(forward_auth))
        .with_state(state)
}

/// Why a forward-auth request gets no 200, mapped to the wire in [`Denied::into_response`].
#[derive(Debug)]
enum Denied {
    /// No client certificate on the connection: not the proxy.
    NoProxyCertificate,
    /// A certificate, but not certdock's proxy client certificate (or not valid now).
    NotTheProxy(String),
    /// The proxy sent no (readable) client certificate of the caller.
    NoClientCertificate(String),
    /// No `certdock.allow` for this server: nobody is admitted through forward-auth.
    UnknownServer(String),
    Refused(Refusal),
}

impl Denied {
    /// The stable `error` code, for the answer and the decision metric alike.
    fn code(&self) -> &'static str {
        match self {
            Denied::NoProxyCertificate => "client_certificate_required",
            Denied::NotTheProxy(_) => "not_the_proxy",
            Denied::NoClientCertificate(_) => "no_client_certificate",
            Denied::UnknownServer(_) => "unknown_server",
            Denied::Refused(r) => r.code(),
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let code = self.code();
        let (status, message) = match self {
            Denied::NoProxyCertificate => (
                StatusCode::UNAUTHORIZED,
                "forward-auth answers only the proxy: present certdock's Traefik client certificate (OUT/traefik-client/)".to_string(),
            ),
            Denied::NotTheProxy(why) => (
                StatusCode::FORBIDDEN,
                format!("forward-auth answers only certdock's Traefik client certificate: {why}"),
            ),
            Denied::NoClientCertificate(why) => (StatusCode::FORBIDDEN, why),
            Denied::UnknownServer(name) => (
                StatusCode::FORBIDDEN,
                format!("{name} has no certdock.allow label on this host: nobody is admitted"),
            ),
            Denied::Refused(r) => (StatusCode::FORBIDDEN, r.to_string()),
        };
        error_response(status, code, message)
    }
}

async fn forward_auth(
    State(st): State<ForwardAuthState>,
    Path(name): Path<String>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let result = decide(&st, &name, peer, &headers, now);
    st.metrics
        .forward_auth(result.as_ref().map_or_else(Denied::code, |_| "allowed"));
    match result {
        Ok((client, groups)) => {
            let mut resp = StatusCode::OK.into_response();
            let h = resp.headers_mut();
            // Certificate names and group names are plain ASCII by construction.
            if let Ok(v) = HeaderValue::from_str(&client) {
                h.insert("x-certdock-client", v);
            }
            if let Ok(v) = HeaderValue::from_str(&groups) {
                h.insert("x-certdock-groups", v);
            }
            resp
        }
        Err(d) => d.into_response(),
    }
}

/// The decision, from memory only: (client identity, its groups) or why not.
fn decide(
    st: &ForwardAuthState,
    name: &str,
    peer: PeerCert,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<(String, String), Denied> {
    let proxy = peer.0.ok_or(Denied::NoProxyCertificate)?;
    let proxy = st
        .decider
        .verify(&proxy, now)
        .map_err(|r| Denied::NotTheProxy(r.to_string()))?;
    if proxy.identity.as_str() != traefik_client::CN {
        return Err(Denied::NotTheProxy(format!(
            "{} is a client, not the proxy",
            proxy.identity
        )));
    }
    let der = client_der(headers)?;
    let lists = st.allow.snapshot();
    let allow = lists
        .get(name)
        .ok_or_else(|| Denied::UnknownServer(name.chars().take(64).collect()))?;
    let client = st
        .decider
        .decide(&der, name, allow, now)
        .map_err(Denied::Refused)?;
    Ok((client.identity.to_string(), client.groups_header()))
}

/// The caller's certificate from Traefik's header, else from RFC 9440's.
fn client_der(headers: &HeaderMap) -> Result<Vec<u8>, Denied> {
    let text = |name: &str| {
        headers.get(name).map(|v| {
            v.to_str()
                .map_err(|_| Denied::NoClientCertificate(format!("{name}: not ASCII")))
        })
    };
    if let Some(v) = text(TRAEFIK_HEADER) {
        return client_cert::from_traefik(v?)
            .map_err(|e| Denied::NoClientCertificate(e.to_string()));
    }
    if let Some(v) = text(RFC9440_HEADER) {
        return client_cert::from_rfc9440(v?)
            .map_err(|e| Denied::NoClientCertificate(e.to_string()));
    }
    Err(Denied::NoClientCertificate(format!(
        "no {TRAEFIK_HEADER} or {RFC9440_HEADER} header: the router needs tls.options=mTLS@file"
    )))
}

/// How often the decider re-reads the CA's bundle and revocations. A revocation by this
/// process (`POST /v1/revoke`) reaches it at once; one by `certdock revoke` (another process
/// appending to the same journal) within this interval.
pub const FEED_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps `decider` current with the CA in this process, until dropped.
pub async fn follow_local_ca(ca: Arc<LocalCa>, decider: Arc<Decider>) {
    let mut tick = tokio::time::interval(FEED_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        follow_local_ca_once(&ca, &decider).await;
    }
}

/// One refresh: the bundle (replaced only when it changed, since that forgets every cached
/// chain check) and the revoked serials (the journal's new lines; no I/O when there are none).
pub async fn follow_local_ca_once(ca: &Arc<LocalCa>, decider: &Arc<Decider>) {
    let (ca, decider) = (ca.clone(), decider.clone());
    let done = tokio::task::spawn_blocking(move || {
        let now = OffsetDateTime::now_utc();
        let bundle = certs_from_pem("CA bundle", &ca.bundle_pem()).unwrap_or_default();
        decider.set_bundle_if_changed(&bundle);
        match ca.with_inventory(|inv| inv.revoked_unexpired(now.unix_timestamp())) {
            Ok(revoked) => decider.set_revoked(revoked.keys().filter_map(|s| hex::decode(s).ok())),
            Err(e) => tracing::warn!(error = %e, "cannot read revocations; keeping the last ones"),
        }
    })
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "the decider's refresh task failed");
    }
}
