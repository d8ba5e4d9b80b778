//! The harness of the loop tests (`loop_tests`, `loop_settings_tests`): the whole loop on tokio's
//! paused clock, with the in-memory engine and the real CA: no Docker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::testing::{TestCa, TestEngine, config};
use super::{Clock, Controller, ControllerConfig, Reloadable};
use crate::authz::table::AllowTable;
use crate::ca::pem::{certs_from_pem, parse_cert};
use crate::core::policy::{NamePolicy, NameRule};
use crate::metrics::{Metrics, ProxyLabel};
use crate::store::status::{self, StatusEntry};

pub(super) const SEC: Duration = Duration::from_secs(1);
pub(super) const MIN: Duration = Duration::from_secs(60);
pub(super) const DIR: &str = "/run/certdock";

/// One controller over a test engine and a test CA, with its directories.
pub(super) struct Harness {
    pub(super) engine: Arc<TestEngine>,
    pub(super) ca: Arc<TestCa>,
    pub(super) metrics: Arc<Metrics>,
    /// Where the loop publishes allow lists for the forward-auth decider.
    pub(super) allow: Arc<AllowTable>,
    /// What the config file "contains": the reload closure returns it.
    pub(super) settings: Arc<Mutex<ControllerConfig>>,
    pub(super) config_file: PathBuf,
    pub(super) started: Instant,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) task: Option<JoinHandle<std::io::Result<()>>>,
    pub(super) dirs: TempDir,
}

pub(super) fn deny(suffixes: &str) -> NamePolicy {
    NamePolicy {
        deny: NameRule::parse_list(suffixes).unwrap_or_else(|e| panic!("{e}")),
        ..Default::default()
    }
}

impl Harness {
    /// A controller over a fresh state, the CA refusing what `ca_names` refuses.
    pub(super) async fn start(ca_names: NamePolicy) -> Harness {
        let dirs = tempfile::tempdir().unwrap();
        let clock = Clock::tokio_at(SystemTime::now());
        std::fs::create_dir_all(dirs.path().join("ca")).unwrap();
        let ca = Arc::new(TestCa::open(&dirs.path().join("ca"), ca_names, clock));
        let config_file = dirs.path().join("certdock.toml");
        std::fs::write(&config_file, "# v1\n").unwrap();
        let mut h = Harness {
            engine: Arc::new(TestEngine::default()),
            ca,
            metrics: Arc::new(Metrics::new()),
            allow: Arc::new(AllowTable::new()),
            settings: Arc::new(Mutex::new(config(dirs.path()))),
            config_file,
            started: Instant::now(),
            stop: None,
            task: None,
            dirs,
        };
        h.spawn(clock);
        h
    }

    pub(super) fn spawn(&mut self, clock: Clock) {
        let settings = self.settings.clone();
        let reload = Reloadable {
            path: self.config_file.clone(),
            load: Box::new(move || Ok(settings.lock().unwrap().clone())),
        };
        let engine = self.engine.clone();
        let controller = Controller {
            cfg: self.settings.lock().unwrap().clone(),
            source: self.ca.clone(),
            actions: self.engine.clone(),
            watch: move |config| engine.watch(config),
            metrics: self.metrics.clone(),
            reload: Some(reload),
            clock,
            allow: self.allow.clone(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(controller.run(async {
            let _ = rx.await;
        })));
    }

    pub(super) async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Changes the settings and the config file, as an operator editing it would.
    pub(super) fn reload(&self, change: impl FnOnce(&mut ControllerConfig)) {
        change(&mut self.settings.lock().unwrap());
        std::fs::write(&self.config_file, "# v2\n").unwrap();
    }

    pub(super) fn out(&self) -> PathBuf {
        self.settings.lock().unwrap().dirs.out.clone()
    }

    pub(super) fn status(&self) -> Vec<StatusEntry> {
        status::read(&self.dirs.path().join("state"))
            .unwrap()
            .unwrap_or_default()
    }

    pub(super) fn traefik_writes(&self) -> u64 {
        let label = ProxyLabel {
            proxy: "traefik".into(),
        };
        self.metrics.proxy_config_writes.get_or_create(&label).get()
    }

    pub(super) fn delivered_serial(&self, container: &str) -> Option<String> {
        serial(&self.engine.file(container, DIR, "cert.pem")?)
    }
}

pub(super) fn serial(pem: &[u8]) -> Option<String> {
    let der = certs_from_pem("cert", std::str::from_utf8(pem).ok()?).ok()?;
    let cert = parse_cert("cert", der.first()?).ok()?;
    Some(hex::encode(cert.raw_serial()))
}

pub(super) async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Waits for something driven by the OS file watch, whose events arrive in real time: a few
/// real milliseconds at a time, letting the paused clock run meanwhile.
pub(super) async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
        sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// An opted-in container with a one-hour certificate, plus `extra` labels.
pub(super) fn web(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    [("certdock.enable", "true"), ("certdock.ttl", "1h")]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
