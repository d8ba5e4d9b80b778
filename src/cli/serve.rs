//! `certdock serve` (the CA and its HTTPS API, a central CA for agents), and what it shares
//! with `run`: opening the CA, the API's settings, the shutdown signal.

use std::sync::Arc;

use time::OffsetDateTime;

use super::settings::Settings;
use crate::api::{ApiConfig, run_api};
use crate::authz::table::AllowTable;
use crate::ca::local::{LocalCa, OpenMode};
use crate::ca::maintain::{MAINTAIN_EVERY, maintain_periodically};
use crate::metrics::Metrics;
use crate::store::ca_policy::{self, RecordedPolicy};

/// The API's part of the settings.
pub fn api_config(s: &Settings) -> ApiConfig {
    ApiConfig {
        listen: s.listen,
        names: s.api_names.clone(),
        key_type: s.key_type,
        acme: s.acme(),
        limits: s.limits(),
    }
}

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
    // For `certdock token create`, which must refuse a scope this CA would never honour.
    let recorded = RecordedPolicy {
        allow: settings.names.allow.clone(),
        deny: settings.names.deny.clone(),
    };
    if let Err(e) = ca_policy::write(&settings.state_dir, &recorded) {
        tracing::warn!(error = %e, "cannot record the name policy in STATE/policy.json");
    }
    Ok(Arc::new(ca))
}

async fn serve(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let ca = open_service_ca(settings).await?;
    let metrics = Arc::new(Metrics::new());
    let maintenance = tokio::spawn(maintain_periodically(
        ca.clone(),
        MAINTAIN_EVERY,
        metrics.clone(),
    ));
    let result = run_api(
        ca,
        &api_config(settings),
        metrics,
        // No controller here, so no allow lists: forward-auth admits nobody on `serve`.
        Arc::new(AllowTable::new()),
        shutdown_signal(),
    )
    .await;
    maintenance.abort();
    Ok(result?)
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
