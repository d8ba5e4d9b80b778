//! `GET /ui` and `GET /v1/status` on `certdock serve`: who gets in, and that the page and the
//! JSON show what `certdock status --json` lists, plus the CA chain, agents and events.

mod common;

use common::ui::{AGENT, CERT_NAMES, REFUSED, listed_names, populate, status_json};
use common::{Serve, s};

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// curl's `-D -` headers then the body, for one request.
fn headers_and_body(serve: &Serve, path: &str, extra: &[&str]) -> (u16, String) {
    serve.curl(&[path, "-D", "-"], extra)
}

#[test]
fn anonymous_callers_and_wrong_credentials_see_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    populate(&serve);
    let (code, page) = serve.curl(&["/ui"], &[]);
    assert_eq!(code, 401, "{page}");
    assert!(
        page.contains("action=\"/ui/login\""),
        "the login form: {page}"
    );
    let (code, json) = serve.curl(&["/v1/status"], &[]);
    assert_eq!(code, 401, "{json}");
    let bad = bearer("cdt_0000000000000000_nope");
    for path in ["/ui", "/v1/status"] {
        let (code, body) = serve.curl(&[path, "-H", &bad], &[]);
        assert_eq!(code, 401, "{path}: {body}");
    }
    // A sign token is not an admin's; nor is a client certificate without --admin.
    let sign = serve.token("sign", "x", &[]);
    let (code, body) = serve.curl(&["/v1/status", "-H", &bearer(&sign)], &[]);
    assert_eq!(code, 403, "{body}");
    let agent = dir.path();
    let (code, body) = serve.curl(
        &["/v1/status"],
        &[
            "--cert",
            s(&agent.join("agent.pem")),
            "--key",
            s(&agent.join("agent.key")),
        ],
    );
    assert_eq!(code, 403, "an agent is no admin: {body}");
    for (_, body) in [serve.curl(&["/ui"], &[]), serve.curl(&["/v1/status"], &[])] {
        for name in CERT_NAMES.iter().chain([&REFUSED, &AGENT]) {
            assert!(!body.contains(name), "{name} leaked: {body}");
        }
    }
}

#[test]
fn an_admin_sees_what_status_json_lists_plus_the_chain_agents_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    populate(&serve);
    let cli = status_json(&serve);
    let token = serve.token("admin", "viewer", &[]);
    // Reading does not spend the token: the second request is let in as well.
    let (_, _) = serve.curl(&["/v1/status", "-H", &bearer(&token)], &[]);
    let (code, body) = serve.curl(&["/v1/status", "-H", &bearer(&token)], &[]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["certificates"], cli, "the certificates are status --json");
    let names = listed_names(&cli);
    for name in CERT_NAMES.iter().chain([&REFUSED]) {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let ca = v["ca"].as_array().unwrap();
    assert_eq!(ca[0]["role"], "root");
    assert_eq!(ca.last().unwrap()["role"], "intermediate");
    let root_fp = serve.fingerprint().replace(':', "").to_lowercase();
    assert_eq!(ca[0]["sha256"], root_fp.as_str());
    assert_eq!(v["agents"][0]["name"], AGENT);
    assert_eq!(v["agents"][0]["scope"], serde_json::json!(["agents.test"]));
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["issued", "revoked", "refused"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }

    let (code, page) = headers_and_body(&serve, "/ui", &["-H", &bearer(&token)]);
    assert_eq!(code, 200, "{page}");
    let lower = page.to_lowercase();
    assert!(lower.contains("cache-control: no-store"), "{page}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    for entry in cli.as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let row = if entry["usage"] == "" {
            "data-refused"
        } else {
            "data-cert"
        };
        assert!(
            page.contains(&format!("{row}=\"{name}\"")),
            "{name} row in {page}"
        );
    }
    assert!(page.contains(&format!("data-agent=\"{AGENT}\"")), "{page}");
    assert!(page.contains(&root_fp), "the root's fingerprint");
    assert!(
        page.contains("1x is not a duration"),
        "the refusal's reason"
    );

    // The admin client certificate from `certdock issue --admin` is let in too.
    let ops = dir.path().join("ops");
    let (pem, key) = (ops.join("cert.pem"), ops.join("key.pem"));
    let cert = ["--cert", s(&pem), "--key", s(&key)];
    let (code, body) = serve.curl(&["/v1/status"], &cert);
    assert_eq!(code, 200, "{body}");
}

/// The `Set-Cookie` line of a response, and the session cookie (`name=value`) in it.
fn session_cookie(headers: &str) -> (String, String) {
    let line = headers
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {headers}"))
        .to_string();
    let pair = line["set-cookie:".len()..]
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    (line, pair)
}

#[test]
fn login_spends_the_token_for_a_strict_session_and_logout_needs_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    populate(&serve);
    let token = serve.token("admin", "me", &[]);
    let form = format!("token={token}");
    // A form posted from another site is refused, and the token is not spent by it.
    let evil = ["-H", "Origin: https://evil.test", "--data", &form];
    let (code, _) = serve.curl(&["/ui/login"], &evil);
    assert_eq!(code, 400);
    let (code, answer) = headers_and_body(&serve, "/ui/login", &["--data", &form]);
    assert_eq!(code, 303, "{answer}");
    let (line, cookie) = session_cookie(&answer);
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(line.contains(flag), "{flag} in {line}");
    }
    assert!(cookie.starts_with("__Host-certdock_session="), "{cookie}");
    assert_eq!(
        cookie.len(),
        "__Host-certdock_session=".len() + 64,
        "256 bits"
    );
    // The token was spent: it logs in no one else.
    let (code, again) = serve.curl(&["/ui/login"], &["--data", &form]);
    assert_eq!(code, 403, "{again}");
    assert!(again.contains("already been used"), "{again}");

    let with_cookie = ["-H", &format!("Cookie: {cookie}")];
    let (code, page) = serve.curl(&["/ui"], &with_cookie);
    assert_eq!(code, 200, "{page}");
    let (code, _) = serve.curl(&["/v1/status"], &with_cookie);
    assert_eq!(code, 200);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the logout form carries the CSRF token")
        .to_string();
    let (code, _) = serve.curl(&["/ui/logout", "--data", "csrf=wrong"], &with_cookie);
    assert_eq!(code, 403, "the cookie alone is not enough");
    let (code, _) = serve.curl(&["/ui/logout", "--data", &format!("csrf={csrf}")], &[]);
    assert_eq!(code, 403, "the CSRF token alone is not enough");
    let (code, _) = serve.curl(
        &["/ui/logout", "--data", &format!("csrf={csrf}")],
        &with_cookie,
    );
    assert_eq!(code, 303);
    let (code, _) = serve.curl(&["/ui"], &with_cookie);
    assert_eq!(code, 401, "the session ended");
}
