//! rustls plumbing shared by the API server and the remote CA client: one provider, one policy.

pub mod danger;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS 1.3 and 1.2 only, newest first.
pub static VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// ring, passed explicitly to every config so that nothing depends on a process-wide default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trust anchors made from CA certificates (a root, and intermediates when the caller trusts
/// them directly, e.g. because peers usually send only their leaf).
pub fn root_store<'a>(
    certs: impl IntoIterator<Item = &'a CertificateDer<'static>>,
) -> Result<RootCertStore, rustls::Error> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c.clone())
            .map_err(|e| rustls::Error::General(format!("CA certificate as trust anchor: {e}")))?;
    }
    Ok(store)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in a PEM string.
pub fn private_key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, rustls::Error> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| rustls::Error::General(format!("private key PEM: {e}")))
}
