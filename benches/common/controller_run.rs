//! The `certdock run` process `benches/controller.rs` measures, and Docker's own event times.
//! Included by path (`#[path]`): only that bench uses them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn bin() -> PathBuf {
    std::env::var_os("CERTDOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("release/certdock")
        })
}

/// A `certdock run` child with its own state, output, log and label prefix.
pub struct Run {
    child: Option<Child>,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub log: PathBuf,
}

impl Run {
    pub fn start(dir: &Path, prefix: &str, tag: &str) -> Run {
        let out = dir.join("out");
        let log = dir.join(format!("certdock-{tag}.log"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin())
            .arg("run")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--out-dir")
            .arg(&out)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--api-name", "localhost,127.0.0.1"])
            .args(["--log-format", "json"])
            .env("CERTDOCK_LABEL_PREFIX", prefix)
            .env_remove("CERTDOCK_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin().display()));
        Run {
            child: Some(child),
            dir: dir.to_path_buf(),
            out,
            log,
        }
    }

    pub fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    }

    pub fn log_lines(&self, message: &str) -> Vec<serde_json::Value> {
        let needle = format!("\"message\":\"{message}\"");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for the controller's first pass (ca.pem written).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.out.join("ca.pem").exists() {
            assert!(
                Instant::now() < deadline,
                "certdock never wrote ca.pem; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn label(prefix: &str, key: &str) -> String {
    format!("{prefix}.{key}")
}

pub fn ts(v: &serde_json::Value) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(v.get("timestamp")?.as_str()?, &Rfc3339).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64))
}

pub fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// Docker's own `create`/`start` event times (the daemon's clock, the same host clock).
#[derive(Default, Clone)]
pub struct EventTimes(std::sync::Arc<std::sync::Mutex<HashMap<(String, String), SystemTime>>>);

impl EventTimes {
    pub fn follow(docker: &Docker) -> EventTimes {
        let times = EventTimes::default();
        let (docker, sink) = (docker.clone(), times.clone());
        tokio::spawn(async move {
            let options = EventsOptions {
                filters: Some(HashMap::from([
                    ("type".to_string(), vec!["container".to_string()]),
                    (
                        "event".to_string(),
                        vec!["create".to_string(), "start".to_string()],
                    ),
                    ("label".to_string(), vec!["io.certdock.bench=1".to_string()]),
                ])),
                ..Default::default()
            };
            let mut events = docker.events(Some(options));
            while let Some(Ok(ev)) = events.next().await {
                let name = ev
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|a| a.get("name").cloned())
                    .unwrap_or_default();
                let at =
                    SystemTime::UNIX_EPOCH + Duration::from_nanos(ev.time_nano.unwrap_or(0) as u64);
                sink.0
                    .lock()
                    .unwrap()
                    .insert((name, ev.action.unwrap_or_default()), at);
            }
        });
        times
    }

    pub async fn get(&self, name: &str, action: &str) -> SystemTime {
        for _ in 0..500 {
            if let Some(t) = self
                .0
                .lock()
                .unwrap()
                .get(&(name.to_string(), action.to_string()))
            {
                return *t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {action} event for {name}");
    }
}
