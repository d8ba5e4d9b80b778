//! The agent's side of signing: a fresh key and CSR, and the CA's answer checked against it.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData,
};

use super::RemoteError;
use crate::ca::facts::CertFacts;
use crate::ca::issue::{Issued, SignedCert};
use crate::ca::keys::SecretPem;
use crate::ca::pem::certs_from_pem;
use crate::core::names::San;
use crate::core::wire::CertResponse;

/// A fresh P-256 key and a CSR for `cn` and `sans`.
pub fn key_and_csr(cn: &str, sans: &[San]) -> Result<(SecretPem, String), RemoteError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| RemoteError::Key(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| RemoteError::Key(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s {
            San::Ip(ip) => Ok(rcgen::SanType::IpAddress(*ip)),
            San::Dns(d) => d
                .as_str()
                .try_into()
                .map(rcgen::SanType::DnsName)
                .map_err(|e: rcgen::Error| RemoteError::Key(e.to_string())),
        })
        .collect::<Result<_, _>>()?;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| RemoteError::Key(e.to_string()))?;
    Ok((crate::ca::keys::secret_pem_of(&key), csr))
}

/// The CA's answer as an [`Issued`], after checking that it certifies our key.
pub fn issued_from(resp: &CertResponse, key: SecretPem) -> Result<Issued, RemoteError> {
    let bad = |e: &dyn std::fmt::Display| RemoteError::BadResponse(e.to_string());
    let cert_der = certs_from_pem("certificate", &resp.certificate)
        .map_err(|e| bad(&e))?
        .remove(0);
    let facts = CertFacts::from_der("certificate", &cert_der).map_err(|e| bad(&e))?;
    let ours = KeyPair::from_pem(key.secret_pem()).map_err(|e| bad(&e))?;
    if facts.spki_der != ours.subject_public_key_info() {
        return Err(RemoteError::BadResponse(
            "the certificate is not for the key this agent sent".into(),
        ));
    }
    Ok(Issued {
        cert: SignedCert {
            serial: facts.serial,
            not_before: facts.not_before,
            not_after: facts.not_after,
            cert_pem: resp.certificate.clone(),
            chain_pem: resp.chain.clone(),
            ca_pem: resp.ca.clone(),
            cert_der,
        },
        key,
    })
}
