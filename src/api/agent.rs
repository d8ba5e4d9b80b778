//! `certdock agent`'s HTTPS listener: forward-auth, `/health` and `/metrics` only (no signing),
//! with a server certificate issued by the remote CA for `--api-name`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
use super::server::{ApiConfig, ServeError, bind_listener, serve_tls};
use super::tls::{ApiCert, ServedCert, TlsError, api_cert, api_cert_name};
use crate::authz::decider::Decider;
use crate::ca::pem::cert_to_pem;
use crate::ca::remote::RemoteSource;
use crate::ca::source::{CertSource, LeafOrder, SourceError};
use crate::core::names::Usage;
use crate::core::renew::retry_after;
use crate::metrics::Metrics;
use crate::tls::{private_key_from_pem, provider};

/// How often the listener looks at the revoked serials (and the CA bundle): the agent's CRL
/// feed pulls every 2 s, so a revoked listener certificate is replaced within seconds.
const REVOCATION_CHECK: Duration = Duration::from_secs(2);

/// The metrics label of the agent's own HTTPS certificate.
pub const METRICS_NAME: &str = "certdock/agent-api";

/// A bound agent listener. Handshakes fail (closed) until the CA has issued its certificate.
pub struct AgentListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: watch::Receiver<Arc<ServerConfig>>,
    router: Router,
    limits: super::limits::Limits,
    tls: AgentTls,
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
        let (served, handles) = ServedCert::new(bundle_pem(&remote))?;
        let decider = forward_auth.decider.clone();
        let router = router(forward_auth, handles.cert);
        let tls = AgentTls {
            remote,
            metrics,
            order: LeafOrder {
                name: api_cert_name(&config.names)?,
                sans: config.names.clone(),
                usage: Usage::SERVER,
                groups: Default::default(),
                ttl,
                internal: true,
            },
            served,
            decider,
        };
        Ok(Self {
            listener,
            local_addr,
            config: handles.config,
            router,
            limits: config.limits,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`, renewing the certificate in the background.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.local_addr, max_connections = self.limits.max_connections, "agent forward-auth listening");
        let upkeep = tokio::spawn(self.tls.upkeep());
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

/// Issues and renews the listener's certificate through the remote CA, and rebuilds the client
/// verifier when the agent's CA bundle changes.
struct AgentTls {
    remote: Arc<RemoteSource>,
    metrics: Arc<Metrics>,
    order: LeafOrder,
    served: ServedCert,
    /// The forward-auth decider, whose revoked serials (the CA's CRL, pulled by the agent's
    /// feed) say when the listener's own certificate was revoked.
    decider: Arc<Decider>,
}

impl AgentTls {
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

    /// The certificate kept by the last run, if it still fits and is valid: a restart while the
    /// CA is away keeps serving.
    fn restore(&self) -> Option<ApiCert> {
        let id = match self.remote.kept_listener_cert(&self.order.sans) {
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

    /// Serves `cert` from the next handshake on; returns when it is due for renewal.
    fn publish(&self, cert: ApiCert) -> SystemTime {
        tracing::info!(serial = %cert.serial, not_after = %cert.not_after, names = %names(&self.order), "agent HTTPS certificate in use");
        self.metrics.set_certificate(METRICS_NAME, cert.not_after);
        self.served.publish(cert)
    }

    /// The one schedule: renew at two thirds of the life (`renew_issued_at`), retry with
    /// `retry_after` on failure. Without a certificate the listener stays closed.
    async fn upkeep(mut self) {
        let mut failures = 0u32;
        let mut due = self
            .restore()
            .map_or_else(SystemTime::now, |cert| self.publish(cert));
        loop {
            let now = SystemTime::now();
            let wake = due.min(now + REVOCATION_CHECK);
            tokio::time::sleep(wake.duration_since(now).unwrap_or_default()).await;
            self.refresh_verifier();
            if self.served_is_revoked() {
                tracing::warn!("the agent HTTPS certificate was revoked; replacing it now");
                due = SystemTime::now();
            }
            if SystemTime::now() < due {
                continue;
            }
            match self.issue().await {
                Ok(cert) => {
                    due = self.publish(cert);
                    failures = 0;
                }
                Err(e) => {
                    let held = self.served.not_after();
                    match held {
                        Some(_) => {
                            tracing::warn!(error = %e, "renewing the agent HTTPS certificate failed; keeping the current one")
                        }
                        None => {
                            tracing::error!(error = %e, listen_fails_closed = true, "no agent HTTPS certificate: forward-auth on --listen refuses every handshake until the CA issues one")
                        }
                    }
                    self.metrics.error("agent_api_certificate");
                    let now = SystemTime::now();
                    // With no certificate there is no expiry to beat: plain backoff.
                    let not_after = held.unwrap_or(now);
                    due = retry_after(failures, now, not_after);
                    failures = failures.saturating_add(1);
                }
            }
        }
    }

    fn served_is_revoked(&self) -> bool {
        self.served
            .serial()
            .is_some_and(|s| self.decider.is_revoked_hex(&s))
    }

    fn refresh_verifier(&mut self) {
        if let Err(e) = self.served.follow_bundle(bundle_pem(&self.remote)) {
            tracing::error!(error = %e, "rebuilding the agent's client verifier failed");
            self.metrics.error("agent_tls_config");
        }
    }
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
