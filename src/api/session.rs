//! UI sessions: what a login exchanges an admin token for, held in this process's memory only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use time::OffsetDateTime;

/// The session cookie's name. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-certdock_session";

/// How long a session lasts (a working day); then the operator logs in again.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// At most this many live sessions: a flood of logins (each costing an admin token) cannot
/// grow memory without bound; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

/// A logged-in admin: the per-session CSRF token any form that changes something must echo.
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    pub expires: OffsetDateTime,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Sessions by id (256 random bits, hex). Lost on restart: the operator logs in again.
#[derive(Default)]
pub struct Sessions {
    // A std mutex: nothing awaits while it is held.
    by_id: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions([elided])")
    }
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// A new session; returns its id (the cookie's value) and the session.
    pub fn create(&self, now: OffsetDateTime) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            csrf: random_hex(),
            expires: now + LIFETIME,
        };
        if let Ok(mut map) = self.by_id.lock() {
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            map.insert(id.clone(), session.clone());
        }
        (id, session)
    }

    /// The live session a request's cookie names, if any.
    pub fn find(&self, headers: &HeaderMap, now: OffsetDateTime) -> Option<Session> {
        let id = cookie(headers)?;
        let map = self.by_id.lock().ok()?;
        map.get(&id).filter(|s| s.expires > now).cloned()
    }

    /// Ends the session a request's cookie names.
    pub fn end(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut map)) = (cookie(headers), self.by_id.lock()) {
            map.remove(&id);
        }
    }
}

/// The session id in the `Cookie` header(s), if one is there.
pub(super) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// Compares two secrets by their digests, as tokens are: the timing tells nothing useful.
pub fn same_secret(a: &str, b: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    digest(a).as_ref() == digest(b).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_ends() {
        let sessions = Sessions::default();
        let now = OffsetDateTime::UNIX_EPOCH;
        let (id, s) = sessions.create(now);
        let h = with_cookie(&format!("a=b; {COOKIE}={id}"));
        assert_eq!(sessions.find(&h, now).map(|f| f.csrf), Some(s.csrf));
        assert!(sessions.find(&h, now + LIFETIME).is_none(), "expired");
        assert!(
            sessions
                .find(&with_cookie(&format!("{COOKIE}=x")), now)
                .is_none()
        );
        sessions.end(&h);
        assert!(sessions.find(&h, now).is_none(), "ended");
    }

    #[test]
    fn the_cookie_is_http_only_secure_strict_and_expires() {
        let c = set_cookie("abc");
        for flag in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=28800",
        ] {
            assert!(c.contains(flag), "{c}");
        }
    }
}
