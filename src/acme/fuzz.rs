//! What the `acme_jws` fuzz target and `tests/fuzz_corpus.rs` run: any bytes through the JWS parser.

use super::jws::{Jwk, Jws, Signer, key_authorization};

/// Parses `data` as a flattened JWS; a parsed one must survive every later step without a
/// panic, and its key must round-trip through its JWK form with the same thumbprint.
pub fn fuzz_jws(data: &[u8]) {
    let Ok(jws) = Jws::parse(data) else {
        return;
    };
    let _ = jws.payload_json::<serde_json::Value>();
    let _ = jws.verify_hmac(b"fuzzing mac key");
    // An inner JWS (keyChange, EAB) is parsed from a payload: the same parser, nested.
    let _ = Jws::parse(&jws.payload);
    if let Signer::Jwk(key) = &jws.signer {
        let _ = jws.verify(key);
        let again = Jwk::from_raw(&key.to_raw());
        assert_eq!(again.as_ref(), Ok(key), "a valid JWK round-trips");
        assert_eq!(key.thumbprint(), key.thumbprint());
        assert!(key_authorization("token", key).starts_with("token."));
    }
}
