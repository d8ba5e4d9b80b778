//! Server-certificate verifiers that accept any certificate: each use checks the certificate by
//! other means, and the handshake signature is always verified with the certificate's key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, verify_tls12_signature, verify_tls13_signature,
    verify_tls13_signature_with_raw_key,
};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};

/// Why no chain is verified, and so how the handshake signature is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// An agent's first `/roots.pem`: the content is then checked against the pinned
    /// fingerprint. TLS 1.2 and 1.3, signatures checked through webpki as usual.
    PinnedContent,
    /// ACME tls-alpn-01: the CA checks the self-signed certificate's acmeIdentifier itself.
    /// TLS 1.3 only, the signature checked with the bare public key: webpki refuses the
    /// certificate for its critical acmeIdentifier extension.
    AcmeValidation,
}

/// Accepts any server certificate; still checks the handshake signature (see [`Use`]).
#[derive(Debug)]
pub struct AnyServerCert {
    provider: Arc<CryptoProvider>,
    usage: Use,
}

impl AnyServerCert {
    pub fn new(provider: Arc<CryptoProvider>, usage: Use) -> Self {
        Self { provider, usage }
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.usage {
            Use::PinnedContent => verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
            Use::AcmeValidation => Err(rustls::Error::General(
                "tls-alpn-01 validation uses TLS 1.3".into(),
            )),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        match self.usage {
            Use::PinnedContent => verify_tls13_signature(message, cert, dss, algs),
            Use::AcmeValidation => {
                use x509_parser::prelude::{FromDer, X509Certificate};
                let (_, parsed) = X509Certificate::from_der(cert.as_ref())
                    .map_err(|e| rustls::Error::General(format!("certificate: {e}")))?;
                let spki = SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
                verify_tls13_signature_with_raw_key(message, &spki, dss, algs)
            }
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
