//! The client certificate a proxy forwards in a header: Traefik's `X-Forwarded-Tls-Client-Cert`
//! and RFC 9440's `Client-Cert`. Pure decoding to DER; what the DER is worth is decided elsewhere.
//!
//! Traefik's `passTLSClientCert` (`pem: true`) writes each certificate of the peer's chain as its
//! PEM body with the BEGIN/END lines and newlines removed, leaf first, joined by `,`; Traefik v2
//! also URL-escaped the whole value (`%2B`, `%2F`, `%3D`, `%2C`). RFC 9440 writes one structured
//! field byte sequence, `:BASE64:`, of the leaf's DER.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Headers larger than this are refused before decoding: a chain of a few certificates is a
/// few KiB, and the decoder must not be a way to make the decider allocate.
pub const MAX_HEADER: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{header}: empty")]
    Empty { header: &'static str },
    #[error("{header}: larger than {MAX_HEADER} bytes")]
    TooLarge { header: &'static str },
    #[error("{header}: {reason}")]
    Malformed {
        header: &'static str,
        reason: String,
    },
}

pub const TRAEFIK_HEADER: &str = "X-Forwarded-Tls-Client-Cert";
pub const RFC9440_HEADER: &str = "Client-Cert";

/// The leaf certificate's DER from Traefik's `X-Forwarded-Tls-Client-Cert`, escaped or not.
/// Only the first certificate (the leaf) is returned: the chain is the CA's to know.
pub fn from_traefik(value: &str) -> Result<Vec<u8>, HeaderError> {
    let header = TRAEFIK_HEADER;
    let value = check_size(header, value)?;
    let unescaped;
    let value = if value.contains('%') {
        unescaped = percent_decode(value).ok_or_else(|| HeaderError::Malformed {
            header,
            reason: "bad URL escape".into(),
        })?;
        unescaped.as_str()
    } else {
        value
    };
    let leaf = value.split(',').next().unwrap_or_default();
    // Tolerate a full PEM block too (some proxies pass one): only the base64 body matters.
    let body: String = leaf
        .replace("-----BEGIN CERTIFICATE-----", "")
        .replace("-----END CERTIFICATE-----", "")
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if body.is_empty() {
        return Err(HeaderError::Empty { header });
    }
    decode(header, &body)
}

/// The leaf certificate's DER from RFC 9440 `Client-Cert: :BASE64:`.
pub fn from_rfc9440(value: &str) -> Result<Vec<u8>, HeaderError> {
    let header = RFC9440_HEADER;
    let value = check_size(header, value)?;
    let inner = value
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .ok_or_else(|| HeaderError::Malformed {
            header,
            reason: "not a byte sequence (`:base64:`)".into(),
        })?;
    if inner.is_empty() {
        return Err(HeaderError::Empty { header });
    }
    decode(header, inner)
}

fn check_size<'a>(header: &'static str, value: &'a str) -> Result<&'a str, HeaderError> {
    if value.len() > MAX_HEADER {
        return Err(HeaderError::TooLarge { header });
    }
    let v = value.trim();
    if v.is_empty() {
        return Err(HeaderError::Empty { header });
    }
    Ok(v)
}

fn decode(header: &'static str, b64: &str) -> Result<Vec<u8>, HeaderError> {
    STANDARD.decode(b64).map_err(|e| HeaderError::Malformed {
        header,
        reason: format!("not base64: {e}"),
    })
}

/// `%XX` escapes and `+` as space (Go's `url.QueryEscape`, which Traefik v2 used). A space is
/// not base64, so the decoder refuses it afterwards if one was really there.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Arbitrary bytes with `+`, `/` and padding in their base64, like any DER.
    const DER: &[u8] = &[0xfb, 0xef, 0xbe, 0x3f, 0xff];

    fn b64(d: &[u8]) -> String {
        STANDARD.encode(d)
    }

    #[test]
    fn traefik_v3_plain_body_leaf_first() {
        let v = format!("{},{}", b64(DER), b64(b"intermediate"));
        assert_eq!(from_traefik(&v).unwrap(), DER);
    }

    #[test]
    fn traefik_v2_query_escaped_value() {
        let plain = format!("{},{}", b64(DER), b64(b"x"));
        assert!(plain.contains('+') && plain.contains('/') && plain.contains('='));
        let escaped = plain
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
            .replace(',', "%2C");
        assert_eq!(from_traefik(&escaped).unwrap(), DER);
    }

    #[test]
    fn a_full_pem_block_is_accepted() {
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            b64(DER)
        );
        assert_eq!(from_traefik(&pem).unwrap(), DER);
    }

    #[test]
    fn rfc9440_byte_sequence() {
        assert_eq!(from_rfc9440(&format!(":{}:", b64(DER))).unwrap(), DER);
        assert!(matches!(
            from_rfc9440(&b64(DER)),
            Err(HeaderError::Malformed { .. })
        ));
        assert!(matches!(from_rfc9440("::"), Err(HeaderError::Empty { .. })));
    }

    #[test]
    fn garbage_is_refused_with_the_header_named() {
        for v in ["", "   ", "%zz", "%2", "not base64!", "a b"] {
            let e = from_traefik(v).unwrap_err();
            assert!(e.to_string().starts_with(TRAEFIK_HEADER), "{v:?}: {e}");
        }
        let huge = "A".repeat(MAX_HEADER + 1);
        assert_eq!(
            from_traefik(&huge).unwrap_err(),
            HeaderError::TooLarge {
                header: TRAEFIK_HEADER
            }
        );
        assert!(from_rfc9440(&format!(":{huge}:")).is_err());
    }
}
