//! PKCS#12 bundles for browsers and phones (`certdock issue --p12`).

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::CaError;
use super::issue::Issued;
use super::pem::certs_from_pem;

/// A password-protected PKCS#12 holding the key, the leaf and its chain.
pub fn build_p12(issued: &Issued, friendly_name: &str, password: &str) -> Result<Vec<u8>, CaError> {
    let key_der =
        PrivateKeyDer::from_pem_slice(issued.key.secret_pem().as_bytes()).map_err(|e| {
            CaError::BadKey {
                what: "generated key".into(),
                reason: e.to_string(),
            }
        })?;
    let key = PrivateKey::from_der(key_der.secret_der()).map_err(|e| CaError::BadKey {
        what: "generated key".into(),
        reason: e.to_string(),
    })?;
    let mut certs = vec![p12_cert(issued.cert_der.as_ref())?];
    for der in certs_from_pem("chain", &issued.chain_pem)? {
        certs.push(p12_cert(der.as_ref())?);
    }
    let local_key_id: Vec<u8> = issued.serial.as_bytes().to_vec();
    let chain = PrivateKeyChain::new(local_key_id, key, certs);
    let mut store = KeyStore::new();
    store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .write()
        .map_err(|e| CaError::Internal(format!("writing PKCS#12: {e}")))
}

fn p12_cert(der: &[u8]) -> Result<Certificate, CaError> {
    Certificate::from_der(der).map_err(|e| CaError::Internal(format!("PKCS#12 certificate: {e}")))
}
