//! `POST /v1/ca/rotate`: an admin (token or admin certificate) rotates the intermediate or the
//! root of a running `serve`; anyone else is refused; `/roots.pem` carries both roots at once.

mod common;

use std::path::Path;

use rustls::pki_types::pem::PemObject;

use common::serve::{Serve, certdock, ok, s};

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `certdock issue NAME --usage client [--admin] --out DIR`; returns curl's `--cert/--key`.
fn client_cert(serve: &Serve, d: &Path, name: &str, admin: bool) -> Vec<String> {
    let out = d.join(name);
    let mut args = vec![
        "issue",
        name,
        "--usage",
        "client",
        "--state-dir",
        s(&serve.state),
        "--out",
        s(&out),
    ];
    if admin {
        args.push("--admin");
    }
    ok(&certdock(&args));
    vec![
        "--cert".into(),
        s(&out.join("fullchain.pem")).into(),
        "--key".into(),
        s(&out.join("key.pem")).into(),
    ]
}

/// (self-signed roots, certificates) in `/roots.pem`.
fn roots_in_bundle(serve: &Serve) -> (usize, usize) {
    let (code, pem) = serve.curl(&["/roots.pem"], &[]);
    assert_eq!(code, 200);
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let roots = certs
        .iter()
        .filter(|c| {
            x509_parser::parse_x509_certificate(c).is_ok_and(|(_, x)| x.subject() == x.issuer())
        })
        .count();
    (roots, certs.len())
}

#[test]
fn only_an_admin_rotates_the_ca_from_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let before = serve.fingerprint();
    let rotate = |root: bool, extra: &[String]| {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let body = if root { r#"{"root":true}"# } else { "{}" };
        serve.curl(
            &[
                "/v1/ca/rotate",
                "-H",
                "Content-Type: application/json",
                "--data",
                body,
            ],
            &extra,
        )
    };

    let (code, body) = rotate(true, &[]);
    assert_eq!(code, 401, "no credential: {body}");
    let plain = client_cert(&serve, d, "plain", false);
    let (code, body) = rotate(true, &plain);
    assert_eq!(
        (code, error_code(&body)),
        (403, "not_an_admin".into()),
        "{body}"
    );

    let admin = serve.token("admin", "ops", &[]);
    let bearer = vec!["-H".to_string(), format!("Authorization: Bearer {admin}")];
    let (code, body) = rotate(true, &bearer);
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let fp = answer["root_fingerprint"].as_str().unwrap().to_string();
    assert_ne!(
        fp.to_uppercase(),
        before.replace(':', ""),
        "a new root signs now"
    );
    // Both roots at once, the cross-certificate and both intermediates.
    assert_eq!(roots_in_bundle(&serve), (2, 5));
    // The token was spent.
    let (code, body) = rotate(false, &bearer);
    assert_eq!(
        (code, error_code(&body)),
        (403, "token_used".into()),
        "{body}"
    );

    // An admin's client certificate may rotate the intermediate.
    let admin_cert = client_cert(&serve, d, "admin", true);
    let (code, body) = rotate(false, &admin_cert);
    assert_eq!(code, 200, "{body}");
    let after: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(after["root_fingerprint"], answer["root_fingerprint"]);
    assert_ne!(after["intermediate_serial"], answer["intermediate_serial"]);
}
