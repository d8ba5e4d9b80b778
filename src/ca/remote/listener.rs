//! The agent listener's own certificate and key, kept on disk (0600) so an agent restarted
//! while the CA is away still serves forward-auth instead of failing every handshake.

use super::{Identity, RemoteError, RemoteSource};
use crate::ca::facts::CertFacts;
use crate::ca::issue::Issued;
use crate::core::names::San;
use crate::store::atomic::Mode;

const FILE: &str = "listener.pem";

impl RemoteSource {
    /// Keeps a newly issued listener certificate (key, certificate, chain in one file).
    pub fn keep_listener_cert(&self, issued: &Issued) -> Result<(), RemoteError> {
        let mut pem = issued.cert_pem.clone();
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(&issued.chain_pem);
        let id = Identity::new(issued.key.clone(), &pem)?;
        let path = self.inner.files.dir.join(FILE);
        self.inner.files.write(&path, &id.to_pem(), Mode::Secret)
    }

    /// The kept listener certificate, when it carries exactly `names` (an operator may have
    /// changed --api-name since).
    pub fn kept_listener_cert(&self, names: &[San]) -> Result<Option<Identity>, RemoteError> {
        let path = self.inner.files.dir.join(FILE);
        let Some(pem) = self.inner.files.read_optional(&path)? else {
            return Ok(None);
        };
        let id = Identity::from_pem(&pem)?;
        let facts = CertFacts::from_der("the kept listener certificate", &id.cert)
            .map_err(|e| RemoteError::Identity(e.to_string()))?;
        let mut held = facts.sans;
        let mut wanted = names.to_vec();
        held.sort_by_key(ToString::to_string);
        wanted.sort_by_key(ToString::to_string);
        Ok((held == wanted).then_some(id))
    }
}
