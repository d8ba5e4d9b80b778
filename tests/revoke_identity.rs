//! Issue 18: a revocation reaches what was renewed from the certificate, an admin revokes a
//! whole identity (API and CLI), and a revoked API certificate is replaced at once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Serve, body_file, certdock, ok, openssl_csr, run, s, save_cert};
use serde_json::json;

const JSON: &str = "Content-Type: application/json";

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A certificate for `name` signed with a fresh `sign` token; `stem.pem`/`stem.key` on disk.
fn signed(serve: &Serve, d: &Path, stem: &str, name: &str) -> String {
    let token = serve.token("sign", stem, &[]);
    let (_, csr) = openssl_csr(d, stem, name, &[&format!("DNS:{name}")]);
    let body = body_file(d, &format!("{stem}-sign"), &json!({"csr": csr}));
    let (code, answer) = serve.curl(
        &[
            "/v1/sign",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            JSON,
            "--data",
            &format!("@{}", body.display()),
        ],
        &[],
    );
    assert_eq!(code, 200, "{answer}");
    save_cert(d, stem, &answer)["serial"]
        .as_str()
        .unwrap()
        .to_string()
}

fn mtls(d: &Path, stem: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        s(&d.join(format!("{stem}.pem"))).into(),
        "--key".into(),
        s(&d.join(format!("{stem}.key"))).into(),
    ]
}

/// Renews `from` over mTLS (same key); the new certificate is `to.pem`/`to.key`.
fn renewed(serve: &Serve, d: &Path, from: &str, to: &str) -> String {
    let cert = mtls(d, from);
    let cert: Vec<&str> = cert.iter().map(String::as_str).collect();
    let (code, body) = serve.curl(&["/v1/renew", "-H", JSON, "--data", "{}"], &cert);
    assert_eq!(code, 200, "{body}");
    std::fs::copy(d.join(format!("{from}.key")), d.join(format!("{to}.key"))).unwrap();
    save_cert(d, to, &body)["serial"]
        .as_str()
        .unwrap()
        .to_string()
}

fn revoke(serve: &Serve, d: &Path, auth: &[&str], body: serde_json::Value) -> (u16, String) {
    let file = body_file(d, "revoke", &body);
    let data = format!("@{}", file.display());
    let mut args = vec!["/v1/revoke", "-H", JSON, "--data", &data];
    args.extend_from_slice(auth);
    serve.curl(&args, &[])
}

/// The serials the CRL lists, upper-case hex.
fn crl_serials(serve: &Serve, d: &Path) -> String {
    let crl = d.join("crl.der");
    let (code, _) = serve.curl(&["/crl", "-o", s(&crl)], &[]);
    assert_eq!(code, 200);
    ok(&run(
        "openssl",
        &["crl", "-inform", "DER", "-in", s(&crl), "-text", "-noout"],
    ))
    .to_uppercase()
}

fn listed(crl: &str, serial: &str) -> bool {
    crl.contains(&format!("SERIAL NUMBER: {}", serial.to_uppercase()))
}

fn serials_of(resp: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(resp).unwrap();
    let mut all: Vec<String> = v["serials"]
        .as_array()
        .unwrap_or_else(|| panic!("no serials in {resp}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    all.sort();
    all
}

#[test]
fn revoking_a_serial_revokes_every_certificate_renewed_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let a = signed(&serve, d, "a", "a.test");
    let b = renewed(&serve, d, "a", "b");
    let c = renewed(&serve, d, "b", "c");
    let unrelated = signed(&serve, d, "x", "x.test");
    let admin = serve.token("admin", "ops", &[]);
    let bearer = format!("Authorization: Bearer {admin}");
    let (code, resp) = revoke(&serve, d, &["-H", &bearer], json!({"serial": a}));
    assert_eq!(code, 200, "{resp}");
    let mut expected = vec![a.clone(), b.clone(), c.clone()];
    expected.sort();
    assert_eq!(serials_of(&resp), expected, "{resp}");
    // The newest renewal can neither renew again nor pass forward-auth (the CRL lists it).
    let cert = mtls(d, "c");
    let cert: Vec<&str> = cert.iter().map(String::as_str).collect();
    let (code, resp) = serve.curl(&["/v1/renew", "-H", JSON, "--data", "{}"], &cert);
    assert_eq!((code, error_code(&resp)), (403, "revoked".into()), "{resp}");
    let crl = crl_serials(&serve, d);
    for serial in [&a, &b, &c] {
        assert!(listed(&crl, serial), "{serial} not in\n{crl}");
    }
    assert!(!listed(&crl, &unrelated), "{crl}");
}

#[test]
fn an_admin_revokes_every_live_certificate_of_an_identity_by_api_and_by_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let first = signed(&serve, d, "svc1", "svc.test");
    let second = signed(&serve, d, "svc2", "svc.test");
    let renewal = renewed(&serve, d, "svc2", "svc3");
    let other = signed(&serve, d, "other", "other.test");

    // Only an admin revokes an identity: not a certificate of another identity, not nobody.
    let (code, resp) = revoke(&serve, d, &[], json!({"name": "svc.test"}));
    assert_eq!((code, error_code(&resp)), (401, "unauthenticated".into()));
    let cert = mtls(d, "other");
    let cert: Vec<&str> = cert.iter().map(String::as_str).collect();
    let (code, resp) = revoke(&serve, d, &cert, json!({"name": "svc.test"}));
    assert_eq!(
        (code, error_code(&resp)),
        (403, "not_your_certificate".into()),
        "{resp}"
    );
    // One of serial and name, not both.
    let admin = serve.token("admin", "ops", &[]);
    let bearer = format!("Authorization: Bearer {admin}");
    let (code, resp) = revoke(
        &serve,
        d,
        &["-H", &bearer],
        json!({"name": "svc.test", "serial": other}),
    );
    assert_eq!(
        (code, error_code(&resp)),
        (400, "bad_request".into()),
        "{resp}"
    );

    let admin = serve.token("admin", "ops2", &[]);
    let bearer = format!("Authorization: Bearer {admin}");
    let (code, resp) = revoke(&serve, d, &["-H", &bearer], json!({"name": "svc.test"}));
    assert_eq!(code, 200, "{resp}");
    let mut expected = vec![first.clone(), second.clone(), renewal.clone()];
    expected.sort();
    assert_eq!(serials_of(&resp), expected);
    let admin = serve.token("admin", "ops3", &[]);
    let bearer = format!("Authorization: Bearer {admin}");
    let (code, resp) = revoke(&serve, d, &["-H", &bearer], json!({"name": "svc.test"}));
    assert_eq!(
        (code, error_code(&resp)),
        (404, "unknown_identity".into()),
        "nothing live is left: {resp}"
    );

    // The CLI, as another process beside the running server.
    let out = ok(&certdock(&[
        "revoke",
        "--name",
        "other.test",
        "--state-dir",
        s(&serve.state),
    ]));
    assert_eq!(out.trim(), other);
    let crl = crl_serials(&serve, d);
    for serial in [&first, &second, &renewal, &other] {
        assert!(listed(&crl, serial), "{serial} not in\n{crl}");
    }
    let no_name = certdock(&["revoke", "--state-dir", s(&serve.state)]);
    assert!(!no_name.status.success());
}

/// The serial of the certificate the API serves now.
fn served_serial(serve: &Serve) -> String {
    let connect = format!("127.0.0.1:{}", serve.port);
    let out = run(
        "openssl",
        &["s_client", "-connect", &connect, "-noservername"],
    );
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    let file = serve.dir.join("served.pem");
    std::fs::write(&file, pem).unwrap();
    let serial = ok(&run(
        "openssl",
        &["x509", "-in", s(&file), "-noout", "-serial"],
    ));
    serial.trim().trim_start_matches("serial=").to_lowercase()
}

#[test]
fn a_revoked_api_certificate_is_replaced_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let before = served_serial(&serve);
    let admin = serve.token("admin", "ops", &[]);
    let bearer = format!("Authorization: Bearer {admin}");
    let (code, resp) = revoke(&serve, d, &["-H", &bearer], json!({"serial": before}));
    assert_eq!(code, 200, "{resp}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = served_serial(&serve);
        if now != before {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "still serving the revoked {before}:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(serve.log().contains("the API certificate was revoked"));
    // The new one verifies (curl checks it against the roots) and is not in the CRL.
    let (code, _) = serve.curl(&["/health"], &[]);
    assert_eq!(code, 200);
    let crl = crl_serials(&serve, d);
    assert!(listed(&crl, &before) && !listed(&crl, &after), "{crl}");
}
