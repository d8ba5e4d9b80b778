//! One JWS-signed ACME request checked in RFC 8555 §6 order, and the helpers every handler shares.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Acme;
use super::jws::{Jwk, Jws, MAX_BODY, Signer};
use super::model::{Account, AccountStatus};
use super::problem::{Problem, Result};

/// `https://HOST[:PORT]` as the client addressed us. The URL in every JWS must be built on it
/// (RFC 8555 §6.4), so it comes from the request's Host header; without a usable one, from the
/// first `--api-name` and the listen port.
pub fn base_url(acme: &Acme, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 260
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        });
    format!(
        "https://{}",
        host.unwrap_or(&acme.config.fallback_authority)
    )
}

/// Which key a request must be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFrom {
    /// `jwk` in the header: newAccount, and revokeCert by the certificate's key.
    Jwk,
    /// `kid`: an existing, valid account.
    Kid,
    /// Either (revokeCert).
    Any,
}

/// A request whose signature, URL and nonce have been checked.
pub struct Signed {
    pub jws: Jws,
    pub key: Jwk,
    /// The signing account, when signed by `kid`.
    pub account: Option<Account>,
    pub base: String,
}

impl Signed {
    pub fn account(&self) -> Result<&Account> {
        self.account
            .as_ref()
            .ok_or_else(|| Problem::malformed("this request must be signed by an account (`kid`)"))
    }

    /// The payload as `T`; `malformed` naming the field when it does not fit.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(self.jws.payload_json()?)
    }

    /// POST-as-GET (RFC 8555 §6.3) has an empty payload, nothing else.
    pub fn expect_post_as_get(&self) -> Result<()> {
        if self.jws.payload.is_empty() {
            Ok(())
        } else {
            Err(Problem::malformed(
                "this resource is read with POST-as-GET: the payload must be empty",
            ))
        }
    }
}

/// A POST to an ACME resource before any check: its headers, the path it was sent to (which
/// the JWS `url` must name) and its body (refused later if too large, with a problem document).
pub struct Post {
    headers: HeaderMap,
    path: String,
    body: std::result::Result<Bytes, BytesRejection>,
}

impl<S: Send + Sync> FromRequest<S> for Post {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        // The ACME routes are merged, never nested, so the URI's path is the one the client used.
        let path = req.uri().path().to_owned();
        let body = Bytes::from_request(req, state).await;
        Ok(Self {
            headers,
            path,
            body,
        })
    }
}

/// A POST-as-GET by an existing account (orders, authorizations, certificates, order lists):
/// signature, URL and nonce checked, `kid` an account, and an empty payload.
pub fn read_as_account(acme: &Acme, post: Post) -> Result<Signed> {
    let signed = verify(acme, post, KeyFrom::Kid)?;
    signed.expect_post_as_get()?;
    Ok(signed)
}

pub fn account_id_from_kid<'a>(base: &str, kid: &'a str) -> Option<&'a str> {
    kid.strip_prefix(base)?
        .strip_prefix("/acme/account/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Checks a signed request to the path it was sent to (e.g. `/acme/new-order`).
pub fn verify(acme: &Acme, post: Post, key_from: KeyFrom) -> Result<Signed> {
    let Post {
        headers,
        path,
        body,
    } = post;
    let headers = &headers;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                "malformed",
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY} bytes"),
            )
        } else {
            Problem::malformed(format!("the request body: {}", r.body_text()))
        }
    })?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !media
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/jose+json"))
    {
        return Err(Problem::new(
            "malformed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {media:?}: ACME requests are application/jose+json"),
        ));
    }
    let jws = Jws::parse(&body)?;
    let base = base_url(acme, headers);
    let want = format!("{base}{path}");
    match jws.header.url.as_deref() {
        Some(url) if url == want => {}
        Some(url) => {
            return Err(Problem::unauthorized(format!(
                "the JWS header's url {:?} is not this request's URL {want:?}",
                url.chars().take(200).collect::<String>()
            )));
        }
        None => return Err(Problem::malformed("the JWS header has no `url`")),
    }
    let (key, account) = match (&jws.signer, key_from) {
        (Signer::Jwk(jwk), KeyFrom::Jwk | KeyFrom::Any) => (jwk.clone(), None),
        (Signer::Kid(kid), KeyFrom::Kid | KeyFrom::Any) => {
            let account = account_for_kid(acme, &base, kid)?;
            let raw = Jwk::from_raw(&account.jwk)?;
            (raw, Some(account))
        }
        (Signer::Kid(_), KeyFrom::Jwk) => {
            return Err(Problem::malformed(
                "this request must carry the new key as `jwk`, not a `kid`",
            ));
        }
        (Signer::Jwk(_), KeyFrom::Kid) => {
            return Err(Problem::malformed(
                "this request must name its account with `kid` (the account URL), not a `jwk`",
            ));
        }
    };
    jws.verify(&key)?;
    let fresh = jws
        .header
        .nonce
        .as_deref()
        .is_some_and(|n| acme.nonces.consume(n, Instant::now()));
    if !fresh {
        return Err(Problem::new(
            "badNonce",
            StatusCode::BAD_REQUEST,
            "the JWS nonce is missing, unknown, already used or expired; retry with the Replay-Nonce of this answer",
        ));
    }
    Ok(Signed {
        jws,
        key,
        account,
        base,
    })
}

fn account_for_kid(acme: &Acme, base: &str, kid: &str) -> Result<Account> {
    let id = account_id_from_kid(base, kid).ok_or_else(|| {
        Problem::new(
            "accountDoesNotExist",
            StatusCode::BAD_REQUEST,
            format!(
                "kid {:?} is not an account URL of this server ({base}/acme/account/ID)",
                kid.chars().take(200).collect::<String>()
            ),
        )
    })?;
    let account = acme
        .store
        .read(|s| s.account(id).cloned())
        .map_err(|e| Problem::server(format!("ACME store: {e}")))?
        .ok_or_else(|| {
            Problem::new(
                "accountDoesNotExist",
                StatusCode::BAD_REQUEST,
                format!("no account {id:?} on this server"),
            )
        })?;
    if account.status != AccountStatus::Valid {
        return Err(Problem::unauthorized(format!(
            "account {id} is deactivated"
        )));
    }
    Ok(account)
}

/// A JSON answer with an optional `Location` and `Link` headers.
pub fn json_answer<T: Serialize>(
    status: StatusCode,
    body: &T,
    location: Option<&str>,
    links: &[String],
) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        h.insert(header::LOCATION, v);
    }
    for l in links {
        if let Ok(v) = HeaderValue::from_str(l) {
            h.append(header::LINK, v);
        }
    }
    resp
}

/// Maps a store failure (disk) to a problem; the request is not acknowledged.
pub fn store_err(e: std::io::Error) -> Problem {
    tracing::error!(error = %e, "ACME store write failed");
    Problem::server(format!("the ACME state could not be written: {e}"))
}

/// Runs blocking work (journal fsync, the CA's file locks) off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::server(format!("worker task: {e}")))?
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
