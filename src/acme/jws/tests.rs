use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};

use super::*;

/// A throw-away RSA key, made by `openssl genpkey` once per test run: ring cannot make RSA keys,
/// and a key file in the repository would be one more private key lying about.
fn rsa_pkcs8() -> &'static [u8] {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        // genpkey's DER is PKCS#1 for RSA; ring wants PKCS#8.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(concat!(
                "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null",
                " | openssl pkcs8 -topk8 -nocrypt -outform DER"
            ))
            .output()
            .expect("openssl is installed (scripts/test.sh installs it)");
        assert!(out.status.success(), "openssl genpkey failed");
        out.stdout
    })
}

fn e(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A test account key of each kind: its JWK and a signing function.
enum TestKey {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl TestKey {
    fn ec() -> Self {
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        TestKey::Ec(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref(), &rng).unwrap(),
        )
    }
    fn ed() -> Self {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        TestKey::Ed(Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap())
    }
    fn rsa() -> Self {
        TestKey::Rsa(RsaKeyPair::from_pkcs8(rsa_pkcs8()).unwrap())
    }
    fn alg(&self) -> &'static str {
        match self {
            TestKey::Ec(_) => "ES256",
            TestKey::Ed(_) => "EdDSA",
            TestKey::Rsa(_) => "RS256",
        }
    }
    fn jwk(&self) -> serde_json::Value {
        match self {
            TestKey::Ec(k) => {
                let p = k.public_key().as_ref();
                serde_json::json!({"kty":"EC","crv":"P-256","x":e(&p[1..33]),"y":e(&p[33..65])})
            }
            TestKey::Ed(k) => {
                serde_json::json!({"kty":"OKP","crv":"Ed25519","x":e(k.public_key().as_ref())})
            }
            TestKey::Rsa(k) => {
                let c: ring::rsa::PublicKeyComponents<Vec<u8>> = k.public().into();
                serde_json::json!({"kty":"RSA","n":e(&c.n),"e":e(&c.e)})
            }
        }
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            TestKey::Ed(k) => k.sign(msg).as_ref().to_vec(),
            TestKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                sig
            }
        }
    }
}

fn jws(key: &TestKey, header: serde_json::Value, payload: &[u8]) -> Vec<u8> {
    let protected = e(header.to_string().as_bytes());
    let payload = e(payload);
    let sig = key.sign(format!("{protected}.{payload}").as_bytes());
    serde_json::json!({"protected": protected, "payload": payload, "signature": e(&sig)})
        .to_string()
        .into_bytes()
}

fn new_account_jws(key: &TestKey) -> Vec<u8> {
    jws(
        key,
        serde_json::json!({"alg": key.alg(), "nonce": "n1", "url": "https://ca/acme/new-account", "jwk": key.jwk()}),
        br#"{"termsOfServiceAgreed":true}"#,
    )
}

#[test]
fn es256_rs256_and_eddsa_accounts_verify_with_their_own_key() {
    for key in [TestKey::ec(), TestKey::rsa(), TestKey::ed()] {
        let parsed = Jws::parse(&new_account_jws(&key)).unwrap();
        let Signer::Jwk(jwk) = &parsed.signer else {
            panic!("jwk expected")
        };
        parsed.verify(jwk).unwrap();
        assert_eq!(parsed.header.nonce.as_deref(), Some("n1"));
        assert_eq!(
            parsed.header.url.as_deref(),
            Some("https://ca/acme/new-account")
        );
        let v: serde_json::Value = parsed.payload_json().unwrap();
        assert_eq!(v["termsOfServiceAgreed"], true);
    }
}

#[test]
fn a_signature_by_another_key_or_over_other_bytes_is_refused() {
    let (a, b) = (TestKey::ec(), TestKey::ec());
    let parsed = Jws::parse(&new_account_jws(&a)).unwrap();
    let Signer::Jwk(b_jwk) = Jws::parse(&new_account_jws(&b)).unwrap().signer else {
        panic!()
    };
    assert_eq!(parsed.verify(&b_jwk), Err(JwsError::BadSignature));
    // Same signature, payload swapped.
    let mut v: serde_json::Value = serde_json::from_slice(&new_account_jws(&a)).unwrap();
    v["payload"] = e(br#"{"termsOfServiceAgreed":false}"#).into();
    let tampered = Jws::parse(v.to_string().as_bytes()).unwrap();
    let Signer::Jwk(a_jwk) = &tampered.signer else {
        panic!()
    };
    assert_eq!(tampered.verify(a_jwk), Err(JwsError::BadSignature));
}

#[test]
fn an_algorithm_that_does_not_fit_the_key_is_refused() {
    let key = TestKey::ec();
    let body = jws(
        &key,
        serde_json::json!({"alg": "EdDSA", "nonce": "n", "url": "u", "jwk": key.jwk()}),
        b"{}",
    );
    let parsed = Jws::parse(&body).unwrap();
    let Signer::Jwk(jwk) = &parsed.signer else {
        panic!()
    };
    assert_eq!(
        parsed.verify(jwk).unwrap_err().problem(),
        "badSignatureAlgorithm"
    );
}

#[test]
fn header_rules_each_have_their_problem_type() {
    let key = TestKey::ec();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({"alg":"none","url":"u","jwk":key.jwk()}),
            "badSignatureAlgorithm",
        ),
        (
            serde_json::json!({"alg":"PS256","url":"u","jwk":key.jwk()}),
            "badSignatureAlgorithm",
        ),
        (serde_json::json!({"alg":"ES256","url":"u"}), "malformed"),
        (
            serde_json::json!({"alg":"ES256","url":"u","jwk":key.jwk(),"kid":"k"}),
            "malformed",
        ),
        (
            serde_json::json!({"alg":"ES256","url":"u","kid":"k","b64":false}),
            "malformed",
        ),
        (
            serde_json::json!({"alg":"ES256","url":"u","kid":"k","crit":["b64"]}),
            "malformed",
        ),
        (
            serde_json::json!({"alg":"ES256","url":"u","jwk":{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}}),
            "badPublicKey",
        ),
        (
            serde_json::json!({"alg":"ES256","url":"u","jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}),
            "badPublicKey",
        ),
        (
            serde_json::json!({"alg":"RS256","url":"u","jwk":{"kty":"RSA","n":e(&[0xff; 128]),"e":"AQAB"}}),
            "badPublicKey",
        ),
        (
            serde_json::json!({"alg":"ES256","url":"u","jwk":{"kty":"oct","k":"AA"}}),
            "badPublicKey",
        ),
    ];
    for (header, problem) in cases {
        let err = Jws::parse(&jws(&key, header.clone(), b"{}")).unwrap_err();
        assert_eq!(err.problem(), problem, "{header}: {err}");
    }
}

#[test]
fn malformed_bodies_are_refused_without_panicking() {
    let too_big = vec![b' '; MAX_BODY + 1];
    let bodies: Vec<&[u8]> = vec![
        b"",
        b"{}",
        b"[]",
        b"not json",
        br#"{"protected":"!!","payload":"","signature":""}"#,
        br#"{"protected":"e30","payload":"","signature":""}"#,
        br#"{"protected":"e30","payload":"","signature":"","header":{}}"#,
        &too_big,
    ];
    for body in bodies {
        let err = Jws::parse(body).unwrap_err();
        assert_eq!(err.problem(), "malformed", "{err}");
    }
}

#[test]
fn post_as_get_has_an_empty_payload() {
    let key = TestKey::ed();
    let body = jws(
        &key,
        serde_json::json!({"alg":"EdDSA","nonce":"n","url":"https://ca/acme/order/1","kid":"https://ca/acme/acct/1"}),
        b"",
    );
    let parsed = Jws::parse(&body).unwrap();
    assert!(parsed.payload.is_empty());
    assert_eq!(parsed.signer, Signer::Kid("https://ca/acme/acct/1".into()));
    let Signer::Jwk(jwk) = Jws::parse(&new_account_jws(&key)).unwrap().signer else {
        panic!()
    };
    parsed.verify(&jwk).unwrap();
}

#[test]
fn external_account_binding_is_an_hmac_and_only_that() {
    let mac = b"an EAB key from certdock token create --kind acme";
    let account = TestKey::ec();
    let protected = e(serde_json::json!({"alg":"HS256","kid":"eab-1","url":"u"})
        .to_string()
        .as_bytes());
    let payload = e(account.jwk().to_string().as_bytes());
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, mac),
        format!("{protected}.{payload}").as_bytes(),
    );
    let body =
        serde_json::json!({"protected":protected,"payload":payload,"signature":e(tag.as_ref())})
            .to_string();
    let parsed = Jws::parse(body.as_bytes()).unwrap();
    parsed.verify_hmac(mac).unwrap();
    assert_eq!(
        parsed.verify_hmac(b"other key"),
        Err(JwsError::BadSignature)
    );
    // An account request may never be MAC-signed, and an EAB never by an account key.
    let Signer::Jwk(jwk) = Jws::parse(&new_account_jws(&account)).unwrap().signer else {
        panic!()
    };
    assert_eq!(
        parsed.verify(&jwk).unwrap_err().problem(),
        "badSignatureAlgorithm"
    );
    let signed = Jws::parse(&new_account_jws(&account)).unwrap();
    assert_eq!(
        signed.verify_hmac(mac).unwrap_err().problem(),
        "badSignatureAlgorithm"
    );
}

#[test]
fn thumbprint_matches_rfc_7638_example() {
    // RFC 7638 §3.1.
    let raw = RawJwk {
        kty: "RSA".into(),
        crv: None,
        x: None,
        y: None,
        n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
        e: Some("AQAB".into()),
    };
    let jwk = Jwk::from_raw(&raw).unwrap();
    assert_eq!(
        jwk.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert_eq!(
        key_authorization("tok", &jwk),
        "tok.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // The stored form reads back to the same key.
    assert_eq!(Jwk::from_raw(&jwk.to_raw()).unwrap(), jwk);
}
