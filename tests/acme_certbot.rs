//! The ACME server against certbot (Debian's), standalone http-01.

mod common;

use std::process::Command;

use common::{Serve, free_port, ok, run, s};

#[test]
fn certbot_standalone_obtains_a_certificate_with_http_01() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let http_arg = http.to_string();
    let serve = Serve::start_at(
        dir.path(),
        &dir.path().join("state"),
        free_port(),
        &["--acme-http-port", &http_arg],
    );
    let cb = dir.path().join("certbot");
    let server = format!("{}/acme/directory", serve.url_ip());
    let out = Command::new("certbot")
        .env("REQUESTS_CA_BUNDLE", &serve.roots)
        .args([
            "certonly",
            "--standalone",
            "--http-01-port",
            &http_arg,
            "--server",
            &server,
            "--config-dir",
            s(&cb.join("config")),
            "--work-dir",
            s(&cb.join("work")),
            "--logs-dir",
            s(&cb.join("logs")),
            "--register-unsafely-without-email",
            "--agree-tos",
            "--non-interactive",
            "-d",
            "localhost",
        ])
        .output()
        .expect("certbot is installed");
    assert!(
        out.status.success(),
        "certbot: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        serve.log()
    );
    let live = cb.join("config/live/localhost");
    let verified = ok(&run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            s(&serve.roots),
            "-untrusted",
            s(&live.join("chain.pem")),
            s(&live.join("cert.pem")),
        ],
    ));
    assert!(verified.contains(": OK"), "{verified}");
}
