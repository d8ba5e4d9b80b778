//! Real proxies for end-to-end tests: Caddy and HAProxy on loopback, run in the foreground and
//! killed on drop. A missing binary fails the test: these suites exist to prove the files work
//! with the real peers, so a skip would prove nothing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::serve::free_port;

/// A proxy process; killed on drop, its log printed when the test panics.
pub struct Peer {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
    pub port: u16,
}

impl Peer {
    /// Spawns `cmd` (stdout and stderr to `log`), then waits until `port` accepts connections.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf, port: u16) -> Peer {
        let file = std::fs::File::create(&log).expect("peer log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{name} is not installed: this end-to-end test needs the real {name} \
                 (scripts/test.sh installs it)"
            ),
            Err(e) => panic!("starting {name} failed: {e}"),
        };
        let mut peer = Peer {
            name,
            child: Some(child),
            log,
            port,
        };
        peer.wait_listening();
        peer
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited before listening ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never listened on {}:\n{}",
                self.name,
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still up (a proxy that died mid-test would fail requests anyway,
    /// but this says why).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Caddy serving `https://localhost:PORT` on 127.0.0.1 with the server certificate
/// `cert`/`key`, requiring client certificates through certdock's `(mtls)` snippet, and
/// answering `ok`. `dir` holds the Caddyfile, the log and Caddy's HOME/XDG directories.
pub fn caddy_with_mtls_snippet(dir: &Path, snippet: &Path, cert: &Path, key: &Path) -> Peer {
    let port = free_port();
    // `admin off`: no admin endpoint on :2019, so parallel tests do not collide.
    // `auto_https off`: no ACME, no HTTP redirect listener on :80 (offline, loopback only).
    // `import mtls` comes before `tls`: Caddy 2.6 merges the two `tls` directives of a site
    // only in this order (the other order fails with "conflicting client auth configuration").
    let caddyfile = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n\n\
         import {snippet}\n\n\
         https://localhost:{port} {{\n\
         \tbind 127.0.0.1\n\
         \timport mtls\n\
         \ttls {cert} {key}\n\
         \trespond \"ok\"\n\
         }}\n",
        snippet = snippet.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let file = dir.join("Caddyfile");
    std::fs::write(&file, caddyfile).expect("write Caddyfile");
    let mut cmd = Command::new("caddy");
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"));
    Peer::spawn("caddy", cmd, dir.join("caddy.log"), port)
}

/// HAProxy terminating TLS on 127.0.0.1:PORT with `server_pem` (certificate chain and key in
/// one file, as HAProxy wants), requiring a client certificate that verifies against `ca_file`,
/// and answering `ok`.
pub fn haproxy_with_mtls(dir: &Path, server_pem: &Path, ca_file: &Path) -> Peer {
    let port = free_port();
    let cfg = format!(
        "global\n\
         \tlog stderr format raw local0 info\n\
         defaults\n\
         \tmode http\n\
         \tlog global\n\
         \toption httplog\n\
         \ttimeout connect 5s\n\
         \ttimeout client 10s\n\
         \ttimeout server 10s\n\
         frontend mtls\n\
         \tbind 127.0.0.1:{port} ssl crt {crt} ca-file {ca} verify required\n\
         \thttp-request return status 200 content-type text/plain string ok\n",
        crt = server_pem.display(),
        ca = ca_file.display(),
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, cfg).expect("write haproxy.cfg");
    let mut cmd = Command::new("haproxy");
    // -db: foreground, no daemon, so the child is the proxy and dies with the guard.
    cmd.arg("-db").arg("-f").arg(&file);
    Peer::spawn("haproxy", cmd, dir.join("haproxy.log"), port)
}

/// A server certificate for `localhost` and 127.0.0.1 from the CA in `state` (the same CA
/// `certdock run` uses there), written by `certdock issue … --out` into `dir`.
pub fn issue_server_cert(state: &Path, name: &str, dir: &Path) -> PathBuf {
    let out = Command::new(super::process::bin())
        .args([
            "issue",
            name,
            "--usage",
            "server",
            "--san",
            "localhost,127.0.0.1",
        ])
        .arg("--state-dir")
        .arg(state)
        .arg("--out")
        .arg(dir)
        .env_remove("CERTDOCK_CONFIG")
        .output()
        .expect("run certdock issue");
    assert!(
        out.status.success(),
        "certdock issue {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

/// `fullchain.pem` followed by `key.pem`: the single file HAProxy's `crt` takes.
pub fn haproxy_pem(cert_dir: &Path, dest: &Path) -> PathBuf {
    let mut pem = std::fs::read(cert_dir.join("fullchain.pem")).expect("fullchain.pem");
    pem.extend(std::fs::read(cert_dir.join("key.pem")).expect("key.pem"));
    std::fs::write(dest, pem).expect("write HAProxy pem");
    dest.to_path_buf()
}
