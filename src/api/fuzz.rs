//! What the `http_request` fuzz target and `tests/fuzz_corpus.rs` run: a request head, as a
//! client sends it, through every header check certdock owns (the HTTP syntax itself is hyper's):
//! the bearer token, the JSON Content-Type, forward-auth's client-certificate headers and the
//! UI's session cookie.

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::handlers::{bearer, json_content_type};
use super::session::cookie;
use crate::core::client_cert::{RFC9440_HEADER, TRAEFIK_HEADER, from_rfc9440, from_traefik};

/// Reads `data` as a request head (a request line, then `Name: value` lines); header lines
/// hyper would refuse are skipped, the rest go through the checks, whose answers must keep
/// their promises.
pub fn fuzz_request_head(data: &[u8]) {
    let headers = headers_of(data);
    match bearer(&headers) {
        Ok(Some(token)) => assert!(!token.is_empty() && token.trim() == token, "{token:?}"),
        Ok(None) => assert!(!headers.contains_key(AUTHORIZATION)),
        Err(e) => assert_eq!(e.classify().0, StatusCode::UNAUTHORIZED, "{e}"),
    }
    match json_content_type(&headers) {
        Ok(()) => {
            if let Some(v) = headers.get(CONTENT_TYPE) {
                let text = v.to_str().expect("accepted Content-Type is text");
                let mime = text.split(';').next().unwrap_or_default().trim();
                assert!(mime.eq_ignore_ascii_case("application/json"), "{text:?}");
            }
        }
        Err(e) => {
            assert_eq!(e.classify().0, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{e}");
            assert!(
                e.to_string().len() < 512,
                "the message quotes a bounded value"
            );
        }
    }
    for (name, parse) in [
        (TRAEFIK_HEADER, from_traefik as fn(&str) -> _),
        (RFC9440_HEADER, from_rfc9440),
    ] {
        if let Some(Ok(value)) = headers.get(name).map(|v| v.to_str())
            && let Ok(der) = parse(value)
        {
            assert!(!der.is_empty());
            assert!(der.len() <= value.len(), "decoding never grows the input");
            let _ = x509_parser::parse_x509_certificate(&der);
        }
    }
    if let Some(id) = cookie(&headers) {
        assert!(!id.contains(';'), "{id:?}");
    }
}

fn headers_of(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/http_request")
            .join(name);
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_seeds_reach_the_decoders_they_are_for() {
        let h = headers_of(&seed("traefik_escaped_chain.txt"));
        let v = h.get(TRAEFIK_HEADER).unwrap().to_str().unwrap();
        assert!(from_traefik(v).is_ok());
        let h = headers_of(&seed("rfc9440_cert.txt"));
        let v = h.get(RFC9440_HEADER).unwrap().to_str().unwrap();
        assert!(from_rfc9440(v).is_ok());
        let h = headers_of(&seed("sign_token.txt"));
        assert_eq!(bearer(&h).unwrap().as_deref(), Some("cdt_0a1b_secret"));
        assert!(json_content_type(&h).is_ok());
        assert!(json_content_type(&headers_of(&seed("form_body.txt"))).is_err());
        assert_eq!(
            cookie(&headers_of(&seed("cookies.txt"))).as_deref(),
            Some("0123abcd")
        );
    }
}
