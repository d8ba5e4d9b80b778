//! `certdock serve`: the CA and its HTTPS API, nothing else (a central CA for agents).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::server::run_api;
use crate::ca::local::{LocalCa, OpenMode};
use crate::cli::settings::Settings;
use crate::metrics::Metrics;

/// How often the CA checks whether its intermediate is due for rollover.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// Runs `serve` to completion on its own runtime.
pub fn command(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(settings))
}

/// Opens the CA for a long-running process (`serve`, `run`), creating it on first start, and
/// logs the root fingerprint that agents pin.
pub async fn open_service_ca(
    settings: &Settings,
) -> Result<Arc<LocalCa>, Box<dyn std::error::Error>> {
    let s = settings.clone();
    let ca = tokio::task::spawn_blocking(move || {
        LocalCa::open(
            &s.state_dir,
            s.policy(),
            s.lifetimes(),
            OpenMode::CreateIfMissing(s.key_type),
            OffsetDateTime::now_utc(),
        )
    })
    .await??;
    tracing::info!(
        state_dir = %settings.state_dir.display(),
        root_fingerprint = %ca.root_fingerprint(),
        "CA ready (agents pin the root with --ca-fingerprint)"
    );
    Ok(Arc::new(ca))
}

async fn serve(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let ca = open_service_ca(settings).await?;
    let maintenance = tokio::spawn(maintain_periodically(ca.clone(), MAINTAIN_EVERY));
    let result = run_api(ca, settings, Arc::new(Metrics::new()), shutdown_signal()).await;
    maintenance.abort();
    Ok(result?)
}

/// Calls [`LocalCa::maintain`] (intermediate rollover) every `every`, starting now. Runs until
/// dropped; a failure is logged and retried at the next tick.
pub async fn maintain_periodically(ca: Arc<LocalCa>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let ca = ca.clone();
        match tokio::task::spawn_blocking(move || ca.maintain(OffsetDateTime::now_utc())).await {
            Ok(Ok(true)) => tracing::info!("the CA bundle changed (intermediate rollover)"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "CA maintenance failed"),
            Err(e) => tracing::error!(error = %e, "CA maintenance task failed"),
        }
    }
}

/// Completes on SIGTERM (docker stop, Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown requested");
}
