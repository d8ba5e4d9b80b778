//! Key types and the secret-key wrapper that never prints itself.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PublicKeyData, SignatureAlgorithm};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
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

    /// A fresh key for a leaf certificate, which certdock never signs with: only its public half
    /// goes into the certificate and the PKCS#8 goes to the owner. Unlike [`KeyType::generate`]
    /// (rcgen parses the new PKCS#8 back into a signing key, which recomputes the public point),
    /// this costs one scalar multiplication instead of two: a third of a whole issuance.
    pub fn generate_leaf(self) -> Result<LeafKeyPair, rcgen::Error> {
        let rng = SystemRandom::new();
        let (doc, marker, public_len) = match self {
            KeyType::EcdsaP256 => (
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng),
                // `[1] { BIT STRING, 0 unused bits }` then the uncompressed point 04‖X‖Y.
                &[0xa1, 0x44, 0x03, 0x42, 0x00, 0x04][..],
                65,
            ),
            KeyType::Ed25519 => (
                Ed25519KeyPair::generate_pkcs8(&rng),
                // PKCS#8 v2 `[1] IMPLICIT BIT STRING, 0 unused bits` then the 32-byte key.
                &[0x81, 0x21, 0x00][..],
                32,
            ),
        };
        let pkcs8 = doc
            .map_err(|_| rcgen::Error::RingUnspecified)?
            .as_ref()
            .to_vec();
        // ring puts the public key last; check the DER around it rather than trust an offset.
        let public_start = pkcs8
            .len()
            .checked_sub(public_len)
            .filter(|&start| {
                let prefix_len = marker.len() - usize::from(self == KeyType::EcdsaP256);
                start >= prefix_len && pkcs8[start - prefix_len..].starts_with(marker)
            })
            .ok_or(rcgen::Error::CouldNotParseKeyPair)?;
        Ok(LeafKeyPair {
            pkcs8,
            public_start,
            alg: self.algorithm(),
        })
    }
}

/// A freshly generated leaf key: the PKCS#8 document and where its public key lies in it.
pub struct LeafKeyPair {
    pkcs8: Vec<u8>,
    public_start: usize,
    alg: &'static SignatureAlgorithm,
}

impl LeafKeyPair {
    /// The private key as `-----BEGIN PRIVATE KEY-----` (PKCS#8), as rcgen would write it.
    pub fn secret_pem(&self) -> SecretPem {
        SecretPem::new(super::pem::pem_block("PRIVATE KEY", &self.pkcs8))
    }
}

impl PublicKeyData for LeafKeyPair {
    fn der_bytes(&self) -> &[u8] {
        &self.pkcs8[self.public_start..]
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

impl fmt::Debug for LeafKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeafKeyPair([secret key elided])")
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

pub use crate::core::secret::SecretPem;

/// The PEM of a key certdock made.
pub fn secret_pem_of(key: &KeyPair) -> SecretPem {
    SecretPem::new(key.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_key_is_a_valid_pkcs8_whose_public_half_is_the_one_certified() {
        for kt in [KeyType::EcdsaP256, KeyType::Ed25519] {
            let leaf = kt.generate_leaf().unwrap();
            // rcgen (ring) parses it back and derives the same public key on its own.
            let parsed = KeyPair::from_pem(leaf.secret_pem().secret_pem()).unwrap();
            assert_eq!(parsed.public_key_raw(), leaf.der_bytes(), "{kt}");
            assert_eq!(parsed.algorithm(), kt.algorithm());
            assert_eq!(parsed.serialize_pem(), leaf.secret_pem().secret_pem());
        }
    }
}
