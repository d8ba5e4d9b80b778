//! A `certdock` child process for integration tests, killed on drop even when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Certdock {
    child: Option<Child>,
    command: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub out: PathBuf,
    pub log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_certdock")
}

impl Certdock {
    /// Starts `certdock <args…>` with a fresh state and output directory; stderr goes to a log file.
    pub fn start(command: &str, args: &[&str], env: &[(&str, &str)]) -> Certdock {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let out = dir.path().join("out");
        Self::start_in(dir, state, out, command, args, env)
    }

    pub fn start_in(
        dir: tempfile::TempDir,
        state: PathBuf,
        out: PathBuf,
        command: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Certdock {
        let mut cd = Certdock {
            child: None,
            command: command.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: dir.path().join("none.log"),
            dir,
            state,
            out,
        };
        cd.spawn();
        cd
    }

    /// Starts the same command again on the same directories, logging to a fresh file.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = self
            .dir
            .path()
            .join(format!("certdock-{}.log", rand_suffix()));
        let mut cmd = Command::new(bin());
        cmd.arg(&self.command)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--out-dir")
            .arg(&self.out)
            .args(&self.args)
            .env("CERTDOCK_LOG_FORMAT", "json")
            // Only containers labelled for this test process (see `ContainerSpec::label`).
            .env("CERTDOCK_LABEL_PREFIX", super::label_prefix())
            .env_remove("CERTDOCK_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn certdock"));
        self.log = log;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the JSON log whose message is `msg`.
    pub fn count_log(&self, msg: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(&format!("\"message\":\"{msg}\"")))
            .count()
    }

    /// The first status entry of `container` that carries an error, waited for up to `timeout`.
    pub async fn status_error_of(&self, container: &str, timeout: Duration) -> serde_json::Value {
        eventually(
            &format!("an error in status for {container}"),
            timeout,
            || async {
                self.status()
                    .into_iter()
                    .find(|e| e["container"] == container && !e["error"].is_null())
            },
        )
        .await
    }

    /// `certdock status --json` on this instance's state directory.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let out = Command::new(bin())
            .args(["status", "--json", "--state-dir"])
            .arg(&self.state)
            .output()
            .expect("status");
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful path.
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
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Certdock {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- certdock log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

fn rand_suffix() -> String {
    format!("{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
