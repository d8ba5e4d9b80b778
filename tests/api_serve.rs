//! `certdock serve` and its HTTPS API, checked with curl and openssl as independent peers.

mod common;

use common::{Serve, body_file, ok, openssl_csr, run, s, save_cert, x509};
use serde_json::json;

#[test]
fn health_answers_200_over_tls_verified_for_the_api_name() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let (code, body) = serve.curl(&["/health"], &[]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    // The fingerprint /health reports is the one of the first certificate of /roots.pem.
    let fp = x509(&serve.roots, &["-fingerprint", "-sha256"]);
    let fp = fp
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(v["root_fingerprint"], fp);
    assert!(serve.log().contains(&fp), "serve logs the root fingerprint");
}

#[test]
fn a_client_sending_no_sni_or_an_unknown_sni_gets_a_certificate_that_verifies_against_roots_pem() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let connect = format!("127.0.0.1:{}", serve.port);
    for sni in [
        &["-noservername"][..],
        &["-servername", "unknown.example"][..],
    ] {
        let mut args = vec![
            "s_client",
            "-connect",
            &connect,
            "-CAfile",
            s(&serve.roots),
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
        ];
        args.extend_from_slice(sni);
        let out = run("openssl", &args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{sni:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("CN = ca.test"), "{text}");
    }
    // TLS 1.2 and 1.3 are offered; TLS 1.1 is refused (even when the client allows it).
    for (version, accepted) in [("-tls1_3", true), ("-tls1_2", true), ("-tls1_1", false)] {
        let out = run(
            "openssl",
            &[
                "s_client",
                "-connect",
                &connect,
                "-noservername",
                version,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            !text.contains("no peer certificate available"),
            accepted,
            "{version}: {text}"
        );
    }
}

#[test]
fn a_fresh_token_signs_an_openssl_csr_once_and_the_same_token_is_refused_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let token = serve.token("sign", "web", &[]);
    let (_, csr) = openssl_csr(d, "web", "web.test", &["DNS:web.test", "IP:10.0.0.7"]);
    let body = body_file(d, "sign", &json!({"csr": csr, "ttl": "2h"}));
    let auth = format!("Authorization: Bearer {token}");
    let data = format!("@{}", body.display());
    let (code, answer) = serve.post_json("/v1/sign", &auth, &data);
    assert_eq!(code, 200, "{answer}");
    let v = save_cert(d, "web", &answer);
    let verified = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            s(&serve.roots),
            "-untrusted",
            s(&d.join("web.chain.pem")),
            s(&d.join("web.pem")),
        ],
    );
    ok(&verified);
    let sans = x509(&d.join("web.pem"), &["-ext", "subjectAltName"]);
    assert!(
        sans.contains("DNS:web.test") && sans.contains("IP Address:10.0.0.7"),
        "{sans}"
    );
    let serial = x509(&d.join("web.pem"), &["-serial"]);
    assert!(
        serial
            .trim()
            .eq_ignore_ascii_case(&format!("serial={}", v["serial"].as_str().unwrap())),
        "{serial} vs {v}"
    );
    let (code, again) = serve.post_json("/v1/sign", &auth, &data);
    assert!(code == 401 || code == 403, "{code} {again}");
    let err: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(err["error"], "token_used");
    assert!(err["message"].is_string());
}

#[test]
fn malformed_input_is_refused_before_the_token_is_spent_and_oversized_bodies_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let token = serve.token("sign", "web", &[]);
    let auth = format!("Authorization: Bearer {token}");
    let (code, body) = serve.post_json("/v1/sign", &auth, "{not json");
    assert_eq!(
        (code, error_code(&body)),
        (400, "bad_request".into()),
        "{body}"
    );
    let bad_csr = body_file(
        d,
        "bad",
        &json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
    );
    let (code, body) = serve.post_json("/v1/sign", &auth, &format!("@{}", bad_csr.display()));
    assert_eq!((code, error_code(&body)), (400, "bad_csr".into()), "{body}");
    let (_, csr) = openssl_csr(d, "x", "x.test", &[]);
    let bad_ttl = body_file(d, "ttl", &json!({"csr": csr, "ttl": "forever"}));
    let (code, body) = serve.post_json("/v1/sign", &auth, &format!("@{}", bad_ttl.display()));
    assert_eq!((code, error_code(&body)), (400, "bad_ttl".into()), "{body}");
    let too_long = body_file(d, "long", &json!({"csr": csr, "ttl": "400d"}));
    let (code, body) = serve.post_json("/v1/sign", &auth, &format!("@{}", too_long.display()));
    assert_eq!(
        (code, error_code(&body)),
        (403, "ttl_refused".into()),
        "{body}"
    );
    // The token survived all of the above.
    let good = body_file(d, "good", &json!({"csr": csr}));
    let (code, body) = serve.post_json("/v1/sign", &auth, &format!("@{}", good.display()));
    assert_eq!(code, 200, "{body}");
    let huge = body_file(d, "huge", &json!({"csr": "A".repeat(100 * 1024)}));
    let (code, body) = serve.post_json("/v1/sign", &auth, &format!("@{}", huge.display()));
    assert_eq!(
        (code, error_code(&body)),
        (413, "body_too_large".into()),
        "{body}"
    );
    let (code, body) = serve.post_json("/v1/sign", "", "{}");
    assert_eq!(
        (code, error_code(&body)),
        (401, "unauthenticated".into()),
        "{body}"
    );
    let (code, body) = serve.post_json(
        "/v1/sign",
        "Authorization: Bearer cdt_x_y",
        &format!("@{}", good.display()),
    );
    assert_eq!(
        (code, error_code(&body)),
        (401, "invalid_token".into()),
        "{body}"
    );
    let (code, body) = serve.curl(&["/nope"], &[]);
    assert_eq!(
        (code, error_code(&body)),
        (404, "not_found".into()),
        "{body}"
    );
    // A known endpoint with another method: the same JSON error shape, never an empty 405.
    for (method, path) in [
        ("GET", "/v1/sign"),
        ("DELETE", "/health"),
        ("PUT", "/v1/revoke"),
    ] {
        let (code, body) = serve.curl(&[path, "-X", method], &[]);
        assert_eq!(
            (code, error_code(&body)),
            (405, "method_not_allowed".into()),
            "{method} {path}: {body}"
        );
    }
}

/// Signs `name` with a fresh token; returns the stems of the key and certificate files.
fn signed(serve: &Serve, d: &std::path::Path, stem: &str, name: &str) -> serde_json::Value {
    let token = serve.token("sign", stem, &[]);
    let (_, csr) = openssl_csr(d, stem, name, &[&format!("DNS:{name}")]);
    let body = body_file(d, &format!("{stem}-sign"), &json!({"csr": csr}));
    let (code, answer) = serve.post_json(
        "/v1/sign",
        &format!("Authorization: Bearer {token}"),
        &format!("@{}", body.display()),
    );
    assert_eq!(code, 200, "{answer}");
    save_cert(d, stem, &answer)
}

fn mtls(d: &std::path::Path, stem: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        s(&d.join(format!("{stem}.pem"))).into(),
        "--key".into(),
        s(&d.join(format!("{stem}.key"))).into(),
    ]
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn renewal_over_mtls_keeps_the_names_changes_the_serial_and_needs_a_client_certificate_but_signing_needs_an_agent()
 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let first = signed(&serve, d, "svc", "svc.test");
    let cert = mtls(d, "svc");
    let cert: Vec<&str> = cert.iter().map(String::as_str).collect();
    let (code, body) = serve.curl(
        &[
            "/v1/renew",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
        ],
        &cert,
    );
    assert_eq!(code, 200, "{body}");
    let renewed = save_cert(d, "svc-renewed", &body);
    assert_ne!(renewed["serial"], first["serial"]);
    assert_eq!(
        x509(
            &d.join("svc.pem"),
            &["-ext", "subjectAltName,extendedKeyUsage"]
        ),
        x509(
            &d.join("svc-renewed.pem"),
            &["-ext", "subjectAltName,extendedKeyUsage"]
        )
    );
    assert_eq!(
        x509(&d.join("svc.pem"), &["-pubkey"]),
        x509(&d.join("svc-renewed.pem"), &["-pubkey"]),
        "without a CSR the key stays"
    );
    // With a CSR, the renewed certificate is for the new key, still with the same names.
    let (new_key, csr) = openssl_csr(d, "svc-new", "ignored.test", &[]);
    let body_path = body_file(d, "renew-csr", &json!({"csr": csr}));
    let (code, body) = serve.curl(
        &[
            "/v1/renew",
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("@{}", body_path.display()),
        ],
        &cert,
    );
    assert_eq!(code, 200, "{body}");
    save_cert(d, "svc-rekeyed", &body);
    let new_pub = ok(&run("openssl", &["pkey", "-in", s(&new_key), "-pubout"]));
    assert_eq!(x509(&d.join("svc-rekeyed.pem"), &["-pubkey"]), new_pub);
    assert!(x509(&d.join("svc-rekeyed.pem"), &["-ext", "subjectAltName"]).contains("DNS:svc.test"));
    let (code, body) = serve.curl(&["/v1/renew", "-X", "POST"], &[]);
    assert_eq!(
        (code, error_code(&body)),
        (401, "client_certificate_required".into())
    );
    // A certificate that is not an enrolled agent's may renew itself but not sign for others.
    let (code, body) = serve.curl(
        &[
            "/v1/sign",
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("@{}", body_path.display()),
        ],
        &cert,
    );
    assert_eq!(
        (code, error_code(&body)),
        (403, "not_an_agent".into()),
        "{body}"
    );
}

#[test]
fn a_revoked_certificate_cannot_renew_and_is_listed_in_the_crl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let own = signed(&serve, d, "a", "a.test");
    let other = signed(&serve, d, "b", "b.test");
    let a = mtls(d, "a");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    // A certificate may not revoke another one.
    let body = body_file(d, "rev-b", &json!({"serial": other["serial"]}));
    let (code, resp) = serve.curl(
        &[
            "/v1/revoke",
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("@{}", body.display()),
        ],
        &a,
    );
    assert_eq!(
        (code, error_code(&resp)),
        (403, "not_your_certificate".into()),
        "{resp}"
    );
    // It may revoke itself.
    let body = body_file(d, "rev-a", &json!({"serial": own["serial"]}));
    let (code, resp) = serve.curl(
        &[
            "/v1/revoke",
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("@{}", body.display()),
        ],
        &a,
    );
    assert_eq!(code, 200, "{resp}");
    let (code, resp) = serve.curl(
        &[
            "/v1/renew",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
        ],
        &a,
    );
    assert_eq!((code, error_code(&resp)), (403, "revoked".into()), "{resp}");
    // An admin token revokes anyone's.
    let admin = serve.token("admin", "ops", &[]);
    let body = body_file(d, "rev-b2", &json!({"serial": other["serial"]}));
    let (code, resp) = serve.post_json(
        "/v1/revoke",
        &format!("Authorization: Bearer {admin}"),
        &format!("@{}", body.display()),
    );
    assert_eq!(code, 200, "{resp}");
    let crl = d.join("crl.der");
    let (code, _) = serve.curl(&["/crl", "-o", s(&crl)], &[]);
    assert_eq!(code, 200);
    let text = ok(&run(
        "openssl",
        &["crl", "-inform", "DER", "-in", s(&crl), "-text", "-noout"],
    ))
    .to_uppercase();
    for v in [&own, &other] {
        let serial = v["serial"].as_str().unwrap().to_uppercase();
        assert!(
            text.contains(&format!("SERIAL NUMBER: {serial}")),
            "{serial} not in\n{text}"
        );
    }
}

#[test]
fn metrics_are_valid_prometheus_text_with_certdock_series() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let (code, _) = serve.post_json("/v1/renew", "", "{}");
    assert_eq!(code, 401);
    let (code, text) = serve.curl(&["/metrics"], &[]);
    assert_eq!(code, 200);
    let mut samples = 0;
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(matches!(kind, "HELP" | "TYPE" | "UNIT"), "{line}");
            assert!(name.starts_with("certdock_"), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("certdock_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
        samples += 1;
    }
    assert!(samples > 5, "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    assert!(
        text.contains("certdock_certificate_expiry_seconds{name=\"certdock/api\"}"),
        "{text}"
    );
    assert!(
        text.contains("certdock_http_requests_total{endpoint=\"/v1/renew\",code=\"401\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("certdock_errors_total{kind=\"client_certificate_required\"} 1"),
        "{text}"
    );
}

/// Issue 12 #2: `--allow-domain` bounds what tokens, labels and agents ask, not the API's own
/// names (`--api-name`, here `ca.test,127.0.0.1`, both outside `internal`): the CA starts and
/// answers, and a sign request outside the allowed names is still refused.
#[test]
fn the_api_names_are_exempt_from_allow_domain_but_signed_names_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start_at(
        d,
        &d.join("state"),
        common::free_port(),
        &["--allow-domain", "internal"],
    );
    // curl verifies the API certificate for `ca.test` against the CA's roots.
    let (code, body) = serve.curl(&["/health"], &[]);
    assert_eq!(code, 200, "{body}");

    let sign = |stem: &str, name: &str| {
        let token = serve.token("sign", stem, &[]);
        let (_, csr) = openssl_csr(d, stem, name, &[]);
        let body = body_file(d, stem, &json!({ "csr": csr }));
        let auth = format!("Authorization: Bearer {token}");
        let data = format!("@{}", body.display());
        serve.post_json("/v1/sign", &auth, &data)
    };
    let (code, refused) = sign("outside", "web.test");
    assert_eq!(code, 403, "{refused}");
    let err: serde_json::Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(err["error"], "policy");
    assert!(
        err["message"].as_str().unwrap().contains("web.test"),
        "{refused}"
    );
    let (code, answer) = sign("inside", "web.internal");
    assert_eq!(code, 200, "{answer}");
}
