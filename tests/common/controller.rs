//! `certdock run` as `tests/controller*.rs` start it, and the files it delivers into a container.

use std::path::Path;

use super::TestContainer;
use super::process::{Certdock, openssl, path_str};

pub const FILES: [&str; 5] = [
    "cert.pem",
    "key.pem",
    "chain.pem",
    "fullchain.pem",
    "ca.pem",
];

pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a file from a running container (through `cat`).
pub async fn read_in(
    d: &certdock::docker::Docker,
    c: &TestContainer,
    path: &str,
) -> Option<String> {
    let (code, out) = c.exec(d, &["cat", path]).await;
    (code == 0).then_some(out)
}

/// Copies the delivered files out of the container into `dir`.
pub async fn fetch_delivery(d: &certdock::docker::Docker, c: &TestContainer, dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    for f in FILES {
        match read_in(d, c, &format!("/run/certdock/{f}")).await {
            Some(text) if !text.is_empty() => std::fs::write(dir.join(f), text).unwrap(),
            _ => return false,
        }
    }
    true
}

pub fn serial_of(cert: &Path) -> String {
    let o = openssl(&["x509", "-in", path_str(cert), "-noout", "-serial"]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn run_certdock(network: Option<&str>, extra: &[&str]) -> Certdock {
    let mut args = vec!["--listen", "127.0.0.1:0", "--resync-interval", "3s"];
    if let Some(n) = network {
        args.extend(["--proxy-network", n]);
    }
    args.extend(extra);
    Certdock::start("run", &args, &[])
}
