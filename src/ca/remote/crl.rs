//! The CA's revocations for an agent's forward-auth decider: fetched over the agent's mTLS
//! client and kept on disk, so a restart while the CA is away still knows what was revoked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;

use super::{RemoteError, RemoteSource, http};
use crate::store::atomic::Mode;

const PEM_LABEL: &str = "X509 CRL";

impl RemoteSource {
    /// The CA's current CRL (DER) from `GET /crl`. Not verified here: the caller checks it
    /// against the bundle with `authz::crl::read_crl`, which also refuses a rolled-back one.
    pub async fn crl(&self) -> Result<Vec<u8>, RemoteError> {
        let live = self.live();
        http::call_bytes(live.client.get(self.url("crl")?)).await
    }

    /// The CA certificates the agent trusts now (pinned root, intermediates last fetched),
    /// without asking the CA.
    pub fn trusted_certs(&self) -> Vec<CertificateDer<'static>> {
        self.live().trust.certs
    }

    /// The last CRL kept with [`RemoteSource::keep_crl`], if any.
    pub fn kept_crl(&self) -> Result<Option<Vec<u8>>, RemoteError> {
        let path = self.inner.files.dir.join("crl.pem");
        let Some(pem) = self.inner.files.read_optional(&path)? else {
            return Ok(None);
        };
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        STANDARD
            .decode(body.trim())
            .map(Some)
            .map_err(|e| RemoteError::BadResponse(format!("{}: {e}", path.display())))
    }

    /// Keeps a verified CRL on disk (PEM, public like the CA bundle).
    pub fn keep_crl(&self, der: &[u8]) -> Result<(), RemoteError> {
        let b64 = STANDARD.encode(der);
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        let path = self.inner.files.dir.join("crl.pem");
        self.inner.files.write(&path, &pem, Mode::Public)
    }
}
