//! Issue 18: the JSON endpoints answer 415 to a body that does not say it is JSON (curl's
//! `--data` alone sends a form), before reading it and without spending the token.

mod common;

use common::{Serve, body_file, openssl_csr};
use serde_json::json;

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_form_body_is_answered_415_and_the_token_still_signs_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let token = serve.token("sign", "web", &[]);
    let (_, csr) = openssl_csr(d, "web", "web.test", &["DNS:web.test"]);
    let body = body_file(d, "sign", &json!({"csr": csr}));
    let auth = format!("Authorization: Bearer {token}");
    let data = format!("@{}", body.display());
    for content_type in [None, Some("Content-Type: text/plain")] {
        let mut args = vec!["/v1/sign", "-H", &auth, "--data", &data];
        if let Some(ct) = content_type {
            args.extend(["-H", ct]);
        }
        let (code, answer) = serve.curl(&args, &[]);
        assert_eq!(
            (code, error_code(&answer)),
            (415, "unsupported_media_type".into()),
            "{content_type:?}: {answer}"
        );
        assert!(answer.contains("application/json"), "{answer}");
    }
    for path in ["/v1/revoke", "/v1/renew"] {
        let (code, answer) = serve.curl(&[path, "-H", &auth, "--data", "{}"], &[]);
        assert!(
            code == 415 || code == 401,
            "{path}: refused, for its content type or its credentials first: {code} {answer}"
        );
    }
    let (code, answer) = serve.curl(
        &[
            "/v1/sign",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json; charset=utf-8",
            "--data",
            &data,
        ],
        &[],
    );
    assert_eq!(
        code, 200,
        "the token was not spent by the refusals: {answer}"
    );
}
