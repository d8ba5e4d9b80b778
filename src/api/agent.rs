//! `certdock agent`'s HTTPS listener: forward-auth, `/health` and `/metrics` only (no signing),
//! with a server certificate issued by the remote CA for `--api-name`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rustls::ServerConfig;
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::error::ApiError;
use super::forward_auth::{self, ForwardAuthState};
use super::served::{CertOrigin, Listener, ServedCert};
use super::server::{ApiConfig, ServeError, bind_listener, serve_tls};
use super::tls::{ApiCert, TlsError, api_cert, api_cert_name};
use crate::authz::decider::Decider;
use crate::ca::pem::cert_to_pem;
use crate::ca::remote::RemoteSource;
use crate::ca::source::{CertSource, LeafOrder, SourceError};
use crate::core::names::{San, Usage};
use crate::metrics::Metrics;
use crate::tls::{private_key_from_pem, provider};

/// The metrics label of the agent's own HTTPS certificate.
pub const METRICS_NAME: &str = "certdock/agent-api";

/// How the agent's listener is named in logs and metrics.
const AGENT_LISTENER: Listener = Listener {
    what: "agent HTTPS certificate",
    metrics_name: METRICS_NAME,
    certificate_kind: "agent_api_certificate",
    config_kind: "agent_tls_config",
};

/// A bound agent listener. Handshakes fail (closed) until the CA has issued its certificate.
pub struct AgentListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: watch::Receiver<Arc<ServerConfig>>,
    router: Router,
    served: ServedCert,
    origin: AgentCert,
    limits: super::limits::Limits,
}

impl AgentListener {
    /// Binds `config.listen`; the certificate is issued by [`AgentListener::serve`]'s upkeep.
    ///
    /// # Errors
    /// When the address is taken, or the trusted bundle cannot make a client verifier.
    pub async fn bind(
        remote: Arc<RemoteSource>,
        config: &ApiConfig,
        ttl: Duration,
        metrics: Arc<Metrics>,
        forward_auth: ForwardAuthState,
    ) -> Result<Self, ServeError> {
        let (listener, local_addr) = bind_listener(config.listen).await?;
        let (served, handles) = ServedCert::new(&AGENT_LISTENER, metrics, bundle_pem(&remote))?;
        if let Some(cert) = restore(&remote, &config.names) {
            // A restart while the CA is away keeps serving the certificate kept by the last run.
            served.publish(cert);
        }
        let decider = forward_auth.decider.clone();
        let router = router(forward_auth, handles.cert);
        let origin = AgentCert {
            remote,
            decider,
            order: LeafOrder {
                name: api_cert_name(&config.names)?,
                sans: config.names.clone(),
                usage: Usage::SERVER,
                groups: Default::default(),
                ttl,
                internal: true,
            },
        };
        Ok(Self {
            listener,
            local_addr,
            config: handles.config,
            router,
            served,
            origin,
            limits: config.limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`, renewing the certificate in the background.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.local_addr, max_connections = self.limits.max_connections, "agent forward-auth listening");
        let upkeep = tokio::spawn(self.served.upkeep(self.origin));
        serve_tls(
            self.listener,
            self.config,
            self.router,
            self.limits,
            shutdown,
        )
        .await;
        upkeep.abort();
    }
}

fn bundle_pem(remote: &RemoteSource) -> String {
    remote
        .trusted_certs()
        .iter()
        .map(|c| cert_to_pem(c))
        .collect()
}

/// The listener's certificate comes from the remote CA, for `--api-name`.
struct AgentCert {
    remote: Arc<RemoteSource>,
    /// The forward-auth decider, whose revoked serials (the CA's CRL, pulled by the agent's
    /// feed every 2 s) say when the listener's own certificate was revoked.
    decider: Arc<Decider>,
    order: LeafOrder,
}

impl CertOrigin for AgentCert {
    async fn issue(&self) -> Result<ApiCert, String> {
        let issued = self.remote.issue(&self.order).await.map_err(|e| match e {
            SourceError::Refused(why) => format!(
                "the CA refused the agent's HTTPS certificate for --api-name {}: {why}; the agent \
                 token's scope (--allow-domain of `certdock token create --kind agent`) must cover \
                 every --api-name",
                names(&self.order)
            ),
            other => other.to_string(),
        })?;
        if let Err(e) = self.remote.keep_listener_cert(&issued) {
            tracing::warn!(error = %e, "cannot keep the agent HTTPS certificate on disk");
        }
        api_cert(&issued).map_err(|e: TlsError| e.to_string())
    }

    fn bundle(&self) -> String {
        bundle_pem(&self.remote)
    }

    fn is_revoked(&self, serial: &str) -> bool {
        self.decider.is_revoked_hex(serial)
    }
}

/// The certificate kept by the last run, if it still fits `names` and is valid.
fn restore(remote: &RemoteSource, names: &[San]) -> Option<ApiCert> {
    let id = match remote.kept_listener_cert(names) {
        Ok(Some(id)) if id.is_valid_at(OffsetDateTime::now_utc()) => id,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "the kept agent HTTPS certificate is unusable");
            return None;
        }
    };
    let mut chain = vec![id.cert.clone()];
    chain.extend(id.chain.iter().cloned());
    let key = private_key_from_pem(id.key.secret_pem()).ok()?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).ok()?;
    Some(ApiCert {
        key: Arc::new(certified),
        serial: id.serial,
        not_before: id.not_before,
        not_after: id.not_after,
    })
}

fn names(order: &LeafOrder) -> String {
    order
        .sans
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Clone)]
struct AgentState {
    metrics: Arc<Metrics>,
    cert: watch::Receiver<Option<ApiCert>>,
}

/// Forward-auth, health and metrics; everything else is 404 (an agent signs nothing).
fn router(forward_auth: ForwardAuthState, cert: watch::Receiver<Option<ApiCert>>) -> Router {
    let state = AgentState {
        metrics: forward_auth.metrics.clone(),
        cert,
    };
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(forward_auth::router(forward_auth))
        .fallback(|| async { ApiError::NotFound })
}

async fn health(State(st): State<AgentState>) -> Json<serde_json::Value> {
    let not_after = st
        .cert
        .borrow()
        .as_ref()
        .and_then(|c| c.not_after.format(&Rfc3339).ok());
    Json(serde_json::json!({
        "status": "ok",
        "role": "agent",
        "api_certificate_not_after": not_after,
    }))
}

async fn metrics(State(st): State<AgentState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(OffsetDateTime::now_utc()),
    )
        .into_response()
}
