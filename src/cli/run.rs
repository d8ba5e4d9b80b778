//! `certdock run`: the CA and the Docker controller in one process (and, with `serve`'s API,
//! the HTTPS API on `--listen`).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::CmdResult;
use super::settings::{RawSettings, Settings};
use crate::ca::local::{LocalCa, OpenMode};
use crate::ca::source::LocalSource;
use crate::controller::outputs::OutputDirs;
use crate::controller::{self, ControllerConfig};
use crate::proxy::traefik::TlsOptionsBase;

pub fn traefik_options(s: &Settings) -> Result<TlsOptionsBase, String> {
    let opts = TlsOptionsBase::deserialize(toml::Value::Table(s.traefik_options.clone()))
        .map_err(|e| format!("[traefik.options]: {e}"))?;
    opts.validate()
        .map_err(|e| format!("[traefik.options]: {e}"))?;
    Ok(opts)
}

pub fn controller_config(s: &Settings) -> Result<ControllerConfig, String> {
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
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}

/// With `--config`, the controller reloads the file when it changes.
pub fn reloadable(raw: RawSettings) -> Option<controller::reconciler::Reloadable> {
    let path = raw.config.clone()?;
    Some(controller::reconciler::Reloadable {
        path,
        load: Box::new(move || {
            let s = Settings::resolve(raw.clone()).map_err(|e| e.to_string())?;
            controller_config(&s)
        }),
    })
}

pub fn run(s: &Settings, raw: RawSettings) -> CmdResult {
    let cfg = controller_config(s)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ca = Arc::new(LocalCa::open(
            &s.state_dir,
            s.policy(),
            s.lifetimes(),
            OpenMode::CreateIfMissing(s.key_type),
            OffsetDateTime::now_utc(),
        )?);
        tracing::info!(
            state = %s.state_dir.display(),
            root_fingerprint = %ca.root_fingerprint(),
            "CA ready"
        );
        let maintenance = tokio::spawn(maintain(ca.clone()));
        let source = Arc::new(LocalSource {
            ca: ca.clone(),
            key_type: s.key_type,
            requester: "controller",
        });
        controller::run(cfg, source, reloadable(raw), shutdown_signal()).await?;
        maintenance.abort();
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// Rolls the intermediate over when due; the controller picks the new bundle up on its next pass.
pub async fn maintain(ca: Arc<LocalCa>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let ca = ca.clone();
        match tokio::task::spawn_blocking(move || ca.maintain(OffsetDateTime::now_utc())).await {
            Ok(Ok(true)) => tracing::info!("intermediate CA renewed"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "CA maintenance failed"),
            Err(e) => tracing::error!(error = %e, "CA maintenance task failed"),
        }
    }
}
