//! PEM and DER helpers on top of rustls-pki-types and x509-parser.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::CaError;

/// Every certificate in a PEM bundle, in order. An empty bundle is an error: callers always
/// expect at least one certificate.
pub fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CaError::BadPem {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaError::BadPem {
            what: what.to_string(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

pub fn cert_to_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

pub fn csr_from_pem(pem: &str) -> Result<CertificateSigningRequestDer<'static>, CaError> {
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::BadCsr {
        reason: format!("not a PEM CERTIFICATE REQUEST: {e}"),
    })
}

pub fn parse_cert<'a>(what: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| CaError::BadPem {
            what: what.to_string(),
            reason: format!("not an X.509 certificate: {e}"),
        })
}

/// SHA-256 of the DER, lower-case hex: the fingerprint agents pin (`--ca-fingerprint`).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}
