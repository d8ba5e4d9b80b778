//! The accept loop: TCP, the rustls handshake, the verified client certificate into each
//! request's extensions, HTTP/1.1 by hyper, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::conns::{Admitted, Conns, DeadlineBody, Slot};
use super::forward_auth::{ForwardAuthState, follow_local_ca, follow_local_ca_once};
use super::handlers::{AppState, PeerCert, router};
use super::limits::Limits;
use super::linger::Lingering;
use super::served::TlsHandles;
use super::tls::{TlsError, TlsState};
use crate::authz::decider::Decider;
use crate::authz::table::AllowTable;
use crate::ca::keys::KeyType;
use crate::ca::local::LocalCa;
use crate::core::names::San;
use crate::metrics::Metrics;

/// What the API needs to know, built by the command line from its settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--api-name`: the names of the API's own certificate.
    pub names: Vec<San>,
    /// The key type of the API's own certificate.
    pub key_type: KeyType,
    /// The ACME server on the same port.
    pub acme: crate::acme::AcmeConfig,
    /// Deadlines and the connection cap of the listener.
    pub limits: Limits,
}

/// Binds `addr` (a taken port is an error at start, not a surprise later) and says where.
pub async fn bind_listener(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let bind = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    Ok((listener, local))
}

/// Largest request head (start line and headers). The biggest legitimate one is forward-auth's
/// client certificate chain in a header, a few KiB; the bound also caps each connection's read
/// buffer (hyper's own default is about 400 KiB), so the connection cap bounds memory too.
const MAX_HEADER_SIZE: usize = 32 * 1024;
/// How long requests in flight may take to finish after shutdown was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("ACME state (STATE/acme/): {source}")]
    Acme {
        #[source]
        source: std::io::Error,
    },
}

/// A bound, ready API: its certificate is issued and the socket is listening.
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: TlsHandles,
    router: Router,
    limits: Limits,
    /// Renews the API certificate and follows CA rollovers; stopped with the server.
    upkeep: JoinHandle<()>,
    /// Keeps the forward-auth decider's trust and revocations current; stopped with the server.
    decider_feed: JoinHandle<()>,
}

impl ApiServer {
    /// Issues the API certificate for `config.names` and binds `config.listen`.
    ///
    /// # Errors
    /// When the CA refuses the API names (e.g. a wildcard) or the address is taken.
    pub async fn bind(
        ca: Arc<LocalCa>,
        config: &ApiConfig,
        metrics: Arc<Metrics>,
        allow: Arc<AllowTable>,
    ) -> Result<Self, ServeError> {
        let (state, tls) = TlsState::start(ca.clone(), config, metrics.clone()).await?;
        let (listener, local_addr) = bind_listener(config.listen).await?;
        let decider = Arc::new(Decider::new());
        // The first decision already has the trust and revocations: fed before serving.
        follow_local_ca_once(&ca, &decider).await;
        let decider_feed = tokio::spawn(follow_local_ca(ca.clone(), decider.clone()));
        let acme = crate::acme::Acme::open(ca.clone(), metrics.clone(), config.acme.clone())
            .map_err(|source| ServeError::Acme { source })?;
        let router = router(AppState {
            forward_auth: ForwardAuthState {
                decider,
                allow,
                metrics: metrics.clone(),
            },
            ca,
            metrics,
            api_cert: tls.cert.clone(),
            acme,
            sessions: Default::default(),
        });
        Ok(Self {
            listener,
            local_addr,
            tls,
            router,
            limits: config.limits,
            upkeep: tokio::spawn(state.upkeep()),
            decider_feed,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish (bounded).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.local_addr, max_connections = self.limits.max_connections, "HTTPS API listening");
        serve_tls(
            self.listener,
            self.tls.config,
            self.router,
            self.limits,
            shutdown,
        )
        .await;
        self.upkeep.abort();
        self.decider_feed.abort();
    }
}

/// The one accept loop (the API of `run`/`serve` and an agent's forward-auth listener): each
/// connection takes the TLS config current when it arrives, so a renewed certificate or a new
/// CA bundle needs no restart, and lives within `limits` (see [`Limits`]). Returns after
/// `shutdown` and a bounded drain.
pub async fn serve_tls(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let conns = Conns::new(limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE (the cap keeps below it, but other files count too):
                    // pause rather than spin, and keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // At the cap: an idle connection of the busiest address makes room, or this waits.
        let admitted = tokio::select! {
            () = &mut shutdown => break,
            admitted = conns.admit(remote.ip()) => admitted,
        };
        let config = config.borrow().clone();
        tokio::spawn(connection(
            tcp,
            remote,
            TlsAcceptor::from(config),
            router.clone(),
            limits,
            admitted,
            graceful.watcher(),
        ));
    }
    drop(listener);
    tracing::info!("HTTPS listener stopping; draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time and were dropped");
    }
}

/// One connection, closed early when the listener needs its place (see [`Conns`]).
async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    admitted: Admitted,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let slot = admitted.slot.clone();
    tokio::select! {
        () = slot.evicted() => {
            tracing::debug!(%remote, "connection closed to make room (connection cap)");
        }
        () = serve_connection(tcp, remote, acceptor, router, limits, admitted.slot.clone(), watcher) => {}
    }
    drop(admitted);
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    slot: Arc<Slot>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let stream = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    // rustls has already verified it against the CA bundle; the leaf is what handlers check.
    let peer = PeerCert(
        stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Arc::new(c.clone().into_owned())),
    );
    let body_slot = slot.clone();
    let service = router
        .map_request(move |req: axum::http::Request<Incoming>| {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(peer.clone());
            let body = DeadlineBody::new(body, limits.body, body_slot.clone());
            axum::http::Request::from_parts(parts, axum::body::Body::new(body))
        })
        .map_response(move |resp| {
            // Answered: idle (evictable) again until the next request's body has arrived.
            slot.set_answering(false);
            resp
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper starts this clock whenever it waits for a request head, so it is also the
        // keep-alive idle limit.
        .header_read_timeout(limits.header)
        .max_header_size(MAX_HEADER_SIZE)
        // Closed lingering: a client still sending a body hyper did not read gets the answer,
        // not a reset (see `linger`).
        .serve_connection(
            TokioIo::new(Lingering::new(stream)),
            TowerToHyperService::new(service),
        );
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// Runs the HTTPS API for `ca` until `shutdown` completes: what `serve` and `run` call.
///
/// # Errors
/// When the API certificate cannot be issued or the listen address cannot be bound.
pub async fn run_api(
    ca: Arc<LocalCa>,
    config: &ApiConfig,
    metrics: Arc<Metrics>,
    allow: Arc<AllowTable>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    ApiServer::bind(ca, config, metrics, allow)
        .await?
        .serve(shutdown)
        .await;
    Ok(())
}
