//! Key types and the secret-key wrapper that never prints itself.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SignatureAlgorithm};
use serde::{Deserialize, Serialize};

/// The key algorithms certdock generates. ECDSA P-256 is the default: every TLS peer speaks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    Ed25519,
}

impl KeyType {
    pub fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyType::Ed25519 => &PKCS_ED25519,
        }
    }

    pub fn generate(self) -> Result<KeyPair, rcgen::Error> {
        KeyPair::generate_for(self.algorithm())
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "ecdsa" => Ok(KeyType::EcdsaP256),
            "ed25519" => Ok(KeyType::Ed25519),
            _ => Err(format!(
                "key type {s:?} is not one of `ecdsa-p256`, `ed25519`"
            )),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Ed25519 => "ed25519",
        })
    }
}

/// A PEM-encoded private key. Its `Debug` is redacted and its bytes are reachable only through
/// [`SecretPem::secret_pem`], so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    pub fn secret_pem(&self) -> &str {
        &self.0
    }

    pub fn from_key(key: &KeyPair) -> Self {
        Self(key.serialize_pem())
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem([secret key elided])")
    }
}
