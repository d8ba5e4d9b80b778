//! The directory, new nonces, and the headers every ACME answer carries.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Acme;
use super::problem::Problem;
use super::request::base_url;

/// Directory entries and their paths under `/acme/`.
const ENTRIES: [(&str, &str); 6] = [
    ("newNonce", "new-nonce"),
    ("newAccount", "new-account"),
    ("newOrder", "new-order"),
    ("revokeCert", "revoke-cert"),
    ("keyChange", "key-change"),
    ("renewalInfo", "renewal-info"),
];

pub async fn directory(State(acme): State<Arc<Acme>>, req: Request) -> Json<serde_json::Value> {
    let base = base_url(&acme, req.headers());
    let mut dir = serde_json::Map::new();
    for (key, path) in ENTRIES {
        dir.insert(key.into(), format!("{base}/acme/{path}").into());
    }
    dir.insert(
        "meta".into(),
        serde_json::json!({
            "externalAccountRequired": acme.config.eab,
            "website": "https://github.com/certdock/certdock",
        }),
    );
    Json(dir.into())
}

/// RFC 8555 §7.2: HEAD answers 200, GET 204; the nonce itself comes from [`common_headers`].
pub async fn new_nonce_head() -> StatusCode {
    StatusCode::OK
}

pub async fn new_nonce_get() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(
        "malformed",
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed here: the directory, newNonce and renewalInfo are read with GET (newNonce also HEAD); every other ACME resource takes a signed POST (reads are POST-as-GET)",
    )
}

pub async fn unknown() -> Problem {
    Problem::not_found("ACME resource")
}

/// A fresh `Replay-Nonce` on every answer (errors included, so `badNonce` can be retried at
/// once), the directory as `rel="index"`, and no caching.
pub async fn common_headers(State(acme): State<Arc<Acme>>, req: Request, next: Next) -> Response {
    let base = base_url(&acme, req.headers());
    let mut resp = next.run(req).await;
    let nonce = acme.nonces.issue(Instant::now());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&nonce) {
        h.insert("replay-nonce", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("<{base}/acme/directory>;rel=\"index\"")) {
        h.append(header::LINK, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.into_response()
}

/// The metrics label for an ACME path: its route, never the ids in it, so that a client cannot
/// grow the label set. `None` for a path outside `/acme/`.
pub fn endpoint_label(path: &str) -> Option<&'static str> {
    const ROUTES: [&str; 13] = [
        "/acme/directory",
        "/acme/new-nonce",
        "/acme/new-account",
        "/acme/account",
        "/acme/key-change",
        "/acme/new-order",
        "/acme/order",
        "/acme/authz",
        "/acme/chall",
        "/acme/cert",
        "/acme/revoke-cert",
        "/acme/renewal-info",
        "/acme/other",
    ];
    let rest = path.strip_prefix("/acme/")?;
    let first = rest.split('/').next().unwrap_or_default();
    let route = ROUTES
        .iter()
        .find(|r| r.strip_prefix("/acme/") == Some(first))
        .copied()
        .unwrap_or("/acme/other");
    // `/acme/order/X/finalize` is its own endpoint.
    if route == "/acme/order" && rest.ends_with("/finalize") {
        return Some("/acme/finalize");
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::endpoint_label;

    #[test]
    fn acme_paths_map_to_a_closed_set_of_labels() {
        assert_eq!(endpoint_label("/health"), None);
        assert_eq!(endpoint_label("/acme/order/abc"), Some("/acme/order"));
        assert_eq!(
            endpoint_label("/acme/order/abc/finalize"),
            Some("/acme/finalize")
        );
        assert_eq!(endpoint_label("/acme/chall/x/http-01"), Some("/acme/chall"));
        assert_eq!(endpoint_label("/acme/%2e%2e/etc"), Some("/acme/other"));
    }
}
