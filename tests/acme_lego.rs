//! The ACME server against Debian's lego: http-01, tls-alpn-01, renew, revoke, a restart in
//! between, and a name outside `--allow-domain`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Serve, free_port, ok, run, s};

/// lego against `serve`, trusting its roots; returns (success, stdout + stderr).
fn lego(serve: &Serve, path: &Path, args: &[&str]) -> (bool, String) {
    let server = format!("{}/acme/directory", serve.url_ip());
    let out = Command::new("lego")
        .env("LEGO_CA_CERTIFICATES", &serve.roots)
        .args([
            "--server",
            &server,
            "--email",
            "ops@example.com",
            "--accept-tos",
            "--path",
            s(path),
            "-d",
            "localhost",
        ])
        .args(args)
        .output()
        .expect("lego is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn serial_of(cert: &Path) -> String {
    let out = ok(&run(
        "openssl",
        &["x509", "-noout", "-serial", "-in", s(cert)],
    ));
    out.trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

fn verify_chain(serve: &Serve, dir: &Path) {
    let certs = dir.join("certificates");
    let out = ok(&run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            s(&serve.roots),
            "-untrusted",
            s(&certs.join("localhost.issuer.crt")),
            s(&certs.join("localhost.crt")),
        ],
    ));
    assert!(out.contains(": OK"), "{out}");
}

fn start(dir: &Path, state: &Path, port: u16, http: u16, tls: u16, allow: &str) -> Serve {
    let (http, tls) = (http.to_string(), tls.to_string());
    Serve::start_at(
        dir,
        state,
        port,
        &[
            "--acme-http-port",
            &http,
            "--acme-tls-port",
            &tls,
            "--allow-domain",
            allow,
        ],
    )
}

#[test]
fn lego_obtains_with_http_01_renews_with_tls_alpn_01_after_a_restart_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (port, http, tls) = (free_port(), free_port(), free_port());
    let mut serve = start(
        dir.path(),
        &state,
        port,
        http,
        tls,
        "localhost,test,127.0.0.1/32",
    );
    let lego_dir = dir.path().join("lego");
    let http_port = format!(":{http}");
    let (good, out) = lego(
        &serve,
        &lego_dir,
        &["--http", "--http.port", &http_port, "run"],
    );
    assert!(good, "lego run (http-01): {out}\n{}", serve.log());
    verify_chain(&serve, &lego_dir);
    let first = serial_of(&lego_dir.join("certificates/localhost.crt"));

    // kill -9 and start again on the same state: lego's account (its kid) must still exist.
    serve.stop();
    let serve = start(
        dir.path(),
        &state,
        port,
        http,
        tls,
        "localhost,test,127.0.0.1/32",
    );
    let tls_port = format!(":{tls}");
    let (good, out) = lego(
        &serve,
        &lego_dir,
        &[
            "--tls",
            "--tls.port",
            &tls_port,
            "renew",
            "--days",
            "3650",
            "--no-random-sleep",
        ],
    );
    assert!(good, "lego renew (tls-alpn-01): {out}\n{}", serve.log());
    verify_chain(&serve, &lego_dir);
    let second = serial_of(&lego_dir.join("certificates/localhost.crt"));
    assert_ne!(first, second, "renew issued a new certificate");

    let (code, metrics) = serve.curl(&["/metrics"], &[]);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("kind=\"acme\""),
        "issuances counted as acme: {metrics}"
    );
    assert!(metrics.contains("endpoint=\"/acme/finalize\""), "{metrics}");

    let (good, out) = lego(
        &serve,
        &lego_dir,
        &["--http", "--http.port", &http_port, "revoke"],
    );
    assert!(good, "lego revoke: {out}\n{}", serve.log());
    let crl = dir.path().join("crl.der");
    let (code, _) = serve.curl(&["/crl", "-o", s(&crl)], &[]);
    assert_eq!(code, 200);
    let text = ok(&run(
        "openssl",
        &["crl", "-inform", "DER", "-noout", "-text", "-in", s(&crl)],
    ));
    assert!(
        text.to_ascii_lowercase().contains(&second),
        "CRL lists {second}: {text}"
    );
}

#[test]
fn a_name_outside_allow_domain_is_a_rejected_identifier_and_nothing_is_issued() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (port, http, tls) = (free_port(), free_port(), free_port());
    let serve = start(
        dir.path(),
        &state,
        port,
        http,
        tls,
        "internal,test,127.0.0.1/32",
    );
    let lego_dir = dir.path().join("lego");
    let http_port = format!(":{http}");
    let (good, out) = lego(
        &serve,
        &lego_dir,
        &["--http", "--http.port", &http_port, "run"],
    );
    assert!(!good, "lego must fail: {out}");
    assert!(
        out.contains("urn:ietf:params:acme:error:rejectedIdentifier"),
        "{out}"
    );
    assert!(!lego_dir.join("certificates/localhost.crt").exists());
    let inventory = std::fs::read_to_string(state.join("inventory.log")).unwrap_or_default();
    assert!(
        !inventory.contains("acme:"),
        "nothing issued to ACME: {inventory}"
    );
}

#[test]
fn with_acme_eab_an_account_needs_a_single_use_acme_token() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let http_arg = http.to_string();
    let serve = Serve::start_at(
        dir.path(),
        &dir.path().join("state"),
        free_port(),
        &["--acme-http-port", &http_arg, "--acme-eab", "true"],
    );
    let http_port = format!(":{http}");
    let (good, out) = lego(
        &serve,
        &dir.path().join("none"),
        &["--http", "--http.port", &http_port, "run"],
    );
    assert!(!good, "no binding, no account: {out}");
    // lego reads `externalAccountRequired` from the directory and stops before asking.
    assert!(out.contains("requires External Account Binding"), "{out}");

    let printed = serve.token("acme", "web-1", &[]);
    let field = |k: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {printed}"))
            .to_string()
    };
    let (kid, hmac) = (field("kid="), field("hmac="));
    let eab = [
        "--eab",
        "--kid",
        &kid,
        "--hmac",
        &hmac,
        "--http",
        "--http.port",
        &http_port,
        "run",
    ];
    let (good, out) = lego(&serve, &dir.path().join("bound"), &eab);
    assert!(good, "lego with EAB: {out}\n{}", serve.log());
    // The token is spent: a second account cannot use it.
    let (good, out) = lego(&serve, &dir.path().join("again"), &eab);
    assert!(!good, "a spent binding: {out}");
    assert!(out.contains("already been used"), "{out}");
}
