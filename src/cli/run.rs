//! `certdock run` (CA + Docker controller + HTTPS API in one process) and `certdock agent`
//! (the Docker controller with certificates from a remote certdock CA).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use super::CmdResult;
use super::serve::{api_config, open_service_ca, shutdown_signal};
use super::settings::{RawSettings, Settings};
use crate::api::ApiServer;
use crate::api::agent::AgentListener;
use crate::api::agent_feed::RemoteFeed;
use crate::api::forward_auth::ForwardAuthState;
use crate::authz::decider::Decider;
use crate::authz::table::AllowTable;
use crate::ca::maintain::{MAINTAIN_EVERY, maintain_periodically};
use crate::ca::remote::RemoteSource;
use crate::ca::source::{CertSource, LocalSource};
use crate::controller::outputs::OutputDirs;
use crate::controller::{Clock, Controller, ControllerConfig, Reloadable};
use crate::docker::{self, BollardActions};
use crate::metrics::Metrics;
use crate::proxy::traefik::TlsOptionsBase;

pub fn traefik_options(s: &Settings) -> Result<TlsOptionsBase, String> {
    let opts = TlsOptionsBase::deserialize(toml::Value::Table(s.traefik_options.clone()))
        .map_err(|e| format!("[traefik.options]: {e}"))?;
    opts.validate()
        .map_err(|e| format!("[traefik.options]: {e}"))?;
    Ok(opts)
}

/// Where this host's Traefik asks for forward-auth decisions: the HTTPS API under its first
/// `--api-name` (the name its certificate carries) and the `--listen` port.
pub fn forward_auth_base(s: &Settings) -> String {
    let host = match s.api_names.first() {
        Some(crate::core::names::San::Ip(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
        Some(name) => name.to_string(),
        None => "localhost".to_string(),
    };
    format!("https://{host}:{}", s.listen.port())
}

/// The controller's settings; `decider` when this process serves forward-auth (`run`, `agent`).
pub fn controller_config(s: &Settings, decider: bool) -> Result<ControllerConfig, String> {
    Ok(ControllerConfig {
        state_dir: s.state_dir.clone(),
        dirs: OutputDirs {
            out: s.out_dir.clone(),
            proxy_view: s.traefik_out_dir.clone(),
        },
        label_prefix: s.label_prefix.clone(),
        names: s.names.clone(),
        ttls: s.ttls,
        proxy_network: s.proxy_network.clone(),
        resync: s.resync_interval,
        traefik_options: traefik_options(s)?,
        grace: s.orphan_grace,
        forward_auth: decider.then(|| forward_auth_base(s)),
        rollover_spread: s.rollover_spread,
    })
}

/// With `--config`, the controller reloads the file when it changes.
pub fn reloadable(raw: RawSettings, decider: bool) -> Option<Reloadable> {
    let path = raw.config.clone()?;
    Some(Reloadable {
        path,
        load: Box::new(move || {
            let s = Settings::resolve(raw.clone()).map_err(|e| e.to_string())?;
            controller_config(&s, decider)
        }),
    })
}

/// The controller against the Docker engine named by `DOCKER_HOST`, on the system clock.
async fn run_controller<S: CertSource>(
    cfg: ControllerConfig,
    source: Arc<S>,
    metrics: Arc<Metrics>,
    reload: Option<Reloadable>,
    allow: Arc<AllowTable>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Deliveries through a running container's root only for an engine reached by a unix
    // socket: one on another host (tcp://) has process ids that mean nothing here.
    let actions = BollardActions::new(docker::connect);
    let actions = match docker::DockerHost::from_env() {
        Ok(docker::DockerHost::Unix(_)) => actions,
        _ => actions.archive_only(),
    };
    let controller = Controller {
        cfg,
        source,
        actions: Arc::new(actions),
        watch: |config| docker::watch(docker::connect, config),
        metrics,
        reload,
        clock: Clock::System,
        allow,
    };
    controller.run(shutdown).await
}

/// One shutdown signal, fanned out to every part of the process.
fn shutdown_fanout() -> (
    impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(false);
    let waiter = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    let make = move || {
        let mut rx = rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
    };
    (make, waiter)
}

pub fn run(s: &Settings, raw: RawSettings) -> CmdResult {
    let cfg = controller_config(s, true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ca = open_service_ca(s).await?;
        let metrics = Arc::new(Metrics::new());
        // Bind first: a taken port is an error at start, not a surprise later.
        // The controller publishes the labels' allow lists; the API's decider reads them.
        let allow = Arc::new(AllowTable::new());
        let api =
            ApiServer::bind(ca.clone(), &api_config(s), metrics.clone(), allow.clone()).await?;
        let (shutdown, waiter) = shutdown_fanout();
        let maintenance = tokio::spawn(maintain_periodically(
            ca.clone(),
            MAINTAIN_EVERY,
            metrics.clone(),
        ));
        let api_task = tokio::spawn(api.serve(shutdown()));
        let source = Arc::new(LocalSource {
            ca: ca.clone(),
            key_type: s.key_type,
        });
        let result = run_controller(
            cfg,
            source,
            metrics,
            reloadable(raw, true),
            allow,
            shutdown(),
        )
        .await;
        maintenance.abort();
        let _ = api_task.await;
        waiter.abort();
        result?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// What `certdock agent` needs besides the common settings.
pub struct AgentArgs {
    pub ca_url: String,
    pub token_file: PathBuf,
    pub ca_fingerprint: String,
}

/// First contact with the CA: retried with backoff while the CA is unreachable; a refusal
/// (wrong fingerprint, spent token) ends the agent with its reason.
async fn bootstrap(
    a: &AgentArgs,
    state_dir: &std::path::Path,
) -> Result<RemoteSource, Box<dyn std::error::Error>> {
    let mut delay = Duration::from_millis(500);
    loop {
        match RemoteSource::bootstrap(&a.ca_url, &a.token_file, &a.ca_fingerprint, state_dir).await
        {
            Ok(r) => return Ok(r),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in = ?delay, "the CA is unreachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub fn agent(s: &Settings, raw: RawSettings, a: AgentArgs) -> CmdResult {
    // The agent answers forward-auth for the Traefik beside it, so `certdock.allow` works on
    // its host and the middleware points at its own --listen, never at the central CA.
    let cfg = controller_config(s, true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        crate::store::atomic::create_dir(&s.state_dir, 0o700)?;
        let (shutdown, waiter) = shutdown_fanout();
        let remote = tokio::select! {
            r = bootstrap(&a, &s.state_dir) => Arc::new(r?),
            _ = shutdown() => return Ok(()),
        };
        tracing::info!(ca = %a.ca_url, "agent enrolled; watching Docker");
        let keeper = {
            let remote = remote.clone();
            tokio::spawn(async move { remote.keep_identity_fresh().await })
        };
        let metrics = Arc::new(Metrics::new());
        let allow = Arc::new(AllowTable::new());
        let decider = Arc::new(Decider::new());
        let mut feed = RemoteFeed::new(remote.clone(), decider.clone(), metrics.clone());
        // Until the first pull (at once, in the feed) the kept CRL stands, or nothing: every
        // request refused. Not awaited here, so a CA that does not answer delays nothing.
        feed.restore();
        let feed_task = tokio::spawn(feed.run());
        let listener = AgentListener::bind(
            remote.clone(),
            &api_config(s),
            s.ttls.default,
            metrics.clone(),
            ForwardAuthState {
                decider,
                allow: allow.clone(),
                metrics: metrics.clone(),
            },
        )
        .await?;
        let listener_task = tokio::spawn(listener.serve(shutdown()));
        let result = run_controller(
            cfg,
            remote,
            metrics,
            reloadable(raw, true),
            allow,
            shutdown(),
        )
        .await;
        keeper.abort();
        feed_task.abort();
        let _ = listener_task.await;
        waiter.abort();
        result?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
