//! ACME's JSON Web Signatures (RFC 8555 §6.2, RFC 7515 flattened form): parse, check the
//! protected header's rules, verify ES256 / RS256 / EdDSA (and HS256 for External Account
//! Binding only), and the JWK thumbprint (RFC 7638) that key authorizations use.
//!
//! Parsing decodes and checks shape only; nothing here trusts a key until [`Jws::verify`]
//! (or [`Jws::verify_hmac`]) has checked the signature with it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// Largest JWS body accepted: a finalize with a CSR is a few KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// Why a JWS is refused; [`JwsError::problem`] gives the ACME error type for the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the JWS is malformed: {0}")]
    Malformed(String),
    #[error("the JWS is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("signature algorithm {0:?} is not supported; use ES256, RS256 or EdDSA (Ed25519)")]
    BadAlgorithm(String),
    #[error("the account key is not acceptable: {0}")]
    BadPublicKey(String),
    #[error("the JWS signature does not verify")]
    BadSignature,
    #[error("the protected header must name the key by exactly one of `jwk` and `kid`")]
    KeyChoice,
}

impl JwsError {
    /// The RFC 8555 §6.7 error type (after `urn:ietf:params:acme:error:`).
    pub fn problem(&self) -> &'static str {
        match self {
            JwsError::BadAlgorithm(_) => "badSignatureAlgorithm",
            JwsError::BadPublicKey(_) => "badPublicKey",
            JwsError::Malformed(_)
            | JwsError::TooLarge
            | JwsError::BadSignature
            | JwsError::KeyChoice => "malformed",
        }
    }
}

/// Signature algorithms an account key may use. HS256 exists only inside External Account
/// Binding (RFC 8555 §7.3.4), where the key is the CA's MAC key, never an account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Rs256,
    EdDsa,
    Hs256,
}

impl Alg {
    fn parse(s: &str) -> Result<Self, JwsError> {
        match s {
            "ES256" => Ok(Alg::Es256),
            "RS256" => Ok(Alg::Rs256),
            "EdDSA" => Ok(Alg::EdDsa),
            "HS256" => Ok(Alg::Hs256),
            other => Err(JwsError::BadAlgorithm(other.chars().take(32).collect())),
        }
    }
}

/// A public key as a JWK (RFC 7517/7518/8037), with its base64url members decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jwk {
    /// P-256 only: x and y are 32 bytes each.
    Ec { x: Vec<u8>, y: Vec<u8> },
    /// At least 2048 bits.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Ed25519 only: x is 32 bytes.
    Ed25519 { x: Vec<u8> },
}

/// The JWK as it arrives; [`Jwk::from_raw`] validates it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawJwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

fn b64(field: &str, v: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|e| JwsError::Malformed(format!("{field} is not unpadded base64url: {e}")))
}

fn member<'a>(field: &str, v: &'a Option<String>) -> Result<&'a str, JwsError> {
    v.as_deref()
        .ok_or_else(|| JwsError::BadPublicKey(format!("the JWK has no `{field}`")))
}

impl Jwk {
    pub fn from_raw(raw: &RawJwk) -> Result<Self, JwsError> {
        let key = |field: &str, v: &Option<String>| -> Result<Vec<u8>, JwsError> {
            b64(field, member(field, v)?)
        };
        match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let (x, y) = (key("x", &raw.x)?, key("y", &raw.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwsError::BadPublicKey(
                        "P-256 coordinates must be 32 bytes".into(),
                    ));
                }
                Ok(Jwk::Ec { x, y })
            }
            ("RSA", _) => {
                let (n, e) = (key("n", &raw.n)?, key("e", &raw.e)?);
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(JwsError::BadPublicKey(format!(
                        "an RSA key of about {bits} bits; at least 2048"
                    )));
                }
                Ok(Jwk::Rsa { n, e })
            }
            ("OKP", Some("Ed25519")) => {
                let x = key("x", &raw.x)?;
                if x.len() != 32 {
                    return Err(JwsError::BadPublicKey("an Ed25519 key is 32 bytes".into()));
                }
                Ok(Jwk::Ed25519 { x })
            }
            (kty, crv) => Err(JwsError::BadPublicKey(format!(
                "key type {kty:?} with curve {crv:?}; use EC P-256, RSA (2048+) or OKP Ed25519"
            ))),
        }
    }

    /// The RFC 7638 thumbprint (SHA-256, base64url): the account's identity in key
    /// authorizations, and how two JWKs are compared.
    pub fn thumbprint(&self) -> String {
        let e = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        // Required members only, in lexicographic order, no white space (RFC 7638 §3.2).
        let canonical = match self {
            Jwk::Ec { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                e(x),
                e(y)
            ),
            Jwk::Rsa { n, e: exp } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, e(exp), e(n))
            }
            Jwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, e(x)),
        };
        e(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// The JWK as JSON members (stored with the account).
    pub fn to_raw(&self) -> RawJwk {
        let e = |b: &[u8]| Some(URL_SAFE_NO_PAD.encode(b));
        match self {
            Jwk::Ec { x, y } => RawJwk {
                kty: "EC".into(),
                crv: Some("P-256".into()),
                x: e(x),
                y: e(y),
                n: None,
                e: None,
            },
            Jwk::Rsa { n, e: exp } => RawJwk {
                kty: "RSA".into(),
                crv: None,
                x: None,
                y: None,
                n: e(n),
                e: e(exp),
            },
            Jwk::Ed25519 { x } => RawJwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: e(x),
                y: None,
                n: None,
                e: None,
            },
        }
    }

    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        let ok = match (self, alg) {
            (Jwk::Ec { x, y }, Alg::Es256) => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Jwk::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (Jwk::Ed25519 { x }, Alg::EdDsa) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
            (_, alg) => {
                return Err(JwsError::BadAlgorithm(format!(
                    "{alg:?} does not fit the key type"
                )));
            }
        };
        if ok {
            Ok(())
        } else {
            Err(JwsError::BadSignature)
        }
    }
}

/// The flattened JSON serialization (RFC 7515 §7.2.2) that ACME uses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    protected: String,
    payload: String,
    signature: String,
}

/// The protected header members ACME defines (RFC 8555 §6.2).
#[derive(Debug, Clone, Deserialize)]
pub struct Protected {
    pub alg: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub jwk: Option<RawJwk>,
    #[serde(default)]
    pub kid: Option<String>,
    /// RFC 7797: an unencoded payload. ACME never uses it; present means refuse.
    #[serde(default)]
    pub b64: Option<bool>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// Who signed: a new key (account creation, revocation by certificate key, the inner JWS of a
/// key change) or an existing account's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    Jwk(Jwk),
    Kid(String),
}

/// A parsed, not yet verified JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    pub alg: Alg,
    pub header: Protected,
    pub signer: Signer,
    /// The decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl Jws {
    /// Decodes a flattened JWS and checks the header's shape: a known algorithm, exactly one of
    /// `jwk`/`kid`, a valid JWK, no unencoded payload or critical extensions.
    pub fn parse(body: &[u8]) -> Result<Self, JwsError> {
        if body.len() > MAX_BODY {
            return Err(JwsError::TooLarge);
        }
        let f: Flattened = serde_json::from_slice(body)
            .map_err(|e| JwsError::Malformed(format!("not a flattened JWS: {e}")))?;
        let header_bytes = b64("protected", &f.protected)?;
        let header: Protected = serde_json::from_slice(&header_bytes)
            .map_err(|e| JwsError::Malformed(format!("protected header: {e}")))?;
        if header.b64 == Some(false) || header.crit.is_some() {
            return Err(JwsError::Malformed(
                "`b64` and `crit` are not used by ACME".into(),
            ));
        }
        let alg = Alg::parse(&header.alg)?;
        let signer = match (&header.jwk, &header.kid) {
            (Some(jwk), None) => Signer::Jwk(Jwk::from_raw(jwk)?),
            (None, Some(kid)) => Signer::Kid(kid.clone()),
            _ => return Err(JwsError::KeyChoice),
        };
        let payload = if f.payload.is_empty() {
            Vec::new()
        } else {
            b64("payload", &f.payload)?
        };
        let signature = b64("signature", &f.signature)?;
        let mut signing_input = Vec::with_capacity(f.protected.len() + 1 + f.payload.len());
        signing_input.extend_from_slice(f.protected.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(f.payload.as_bytes());
        Ok(Self {
            alg,
            header,
            signer,
            payload,
            signing_input,
            signature,
        })
    }

    /// Verifies the signature with an account key (`jwk` of the header, or the key stored for
    /// `kid`). HS256 is never an account algorithm.
    pub fn verify(&self, key: &Jwk) -> Result<(), JwsError> {
        if self.alg == Alg::Hs256 {
            return Err(JwsError::BadAlgorithm(
                "HS256 (a MAC) cannot sign ACME requests".into(),
            ));
        }
        key.verify(self.alg, &self.signing_input, &self.signature)
    }

    /// Verifies an External Account Binding's MAC (RFC 8555 §7.3.4) with the CA's key.
    pub fn verify_hmac(&self, mac_key: &[u8]) -> Result<(), JwsError> {
        if self.alg != Alg::Hs256 {
            return Err(JwsError::BadAlgorithm(
                "an external account binding is signed with HS256".into(),
            ));
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, mac_key);
        ring::hmac::verify(&key, &self.signing_input, &self.signature)
            .map_err(|_| JwsError::BadSignature)
    }

    /// The payload as JSON (`T`); POST-as-GET has none.
    pub fn payload_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, JwsError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| JwsError::Malformed(format!("payload: {e}")))
    }
}

/// The key authorization of a challenge (RFC 8555 §8.1): `token.thumbprint`.
pub fn key_authorization(token: &str, account_key: &Jwk) -> String {
    format!("{token}.{}", account_key.thumbprint())
}

#[cfg(test)]
mod tests;
