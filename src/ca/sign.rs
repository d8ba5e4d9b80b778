//! The one signing path: an [`Authorized`] request is checked against the name policy that
//! applies to it, signed, and recorded; the certificate is released only once that record is
//! durable.

use rcgen::SubjectPublicKeyInfo;
use time::OffsetDateTime;

use super::CaError;
use super::authority::Authority;
use super::authorize::Authorized;
use super::commit::Durable;
use super::issue::{Issued, LeafRequest, SignedCert, issue_leaf, sign_leaf};
use super::keys::KeyType;
use super::local::LocalCa;
use super::locks::read;
use crate::core::names::San;
use crate::store::inventory::IssuedRecord;

/// Where a leaf's key comes from, and so what signing yields.
pub trait LeafKey {
    /// [`Issued`] (with the key) when certdock makes the key; [`SignedCert`] for a CSR's.
    type Signed: AsRef<SignedCert>;

    fn sign(
        &self,
        ca: &Authority,
        req: LeafRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<Self::Signed, CaError>;
}

/// certdock makes the key (controller, `certdock issue`, the API's own certificate).
impl LeafKey for KeyType {
    type Signed = Issued;

    fn sign(
        &self,
        ca: &Authority,
        req: LeafRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        issue_leaf(ca, req, *self, now)
    }
}

/// The requester holds the key (a CSR, a renewal): only its public half is known here.
impl LeafKey for SubjectPublicKeyInfo {
    type Signed = SignedCert;

    fn sign(
        &self,
        ca: &Authority,
        req: LeafRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<SignedCert, CaError> {
        sign_leaf(ca, req, self, now)
    }
}

impl LocalCa {
    /// Checks `auth` against its name policy, signs it now, and queues its record for the
    /// inventory writer: the certificate comes out of the [`PendingIssue`] once the record is
    /// on disk, so a certificate handed out is always in the inventory.
    pub fn sign<K: LeafKey>(
        &self,
        auth: Authorized<K>,
        now: OffsetDateTime,
    ) -> Result<PendingIssue<K::Signed>, CaError> {
        auth.names.check(&auth.sans)?;
        // The CN is a name too (old clients match it). A DNS-like one is always among the SANs;
        // one that spells an address (`10.9.1.2`) is not, so policy looks at it here.
        if let Ok(ip) = auth.name.as_str().parse::<std::net::IpAddr>() {
            auth.names.check(&[San::Ip(ip)])?;
        }
        let signed = {
            let ca = read(&self.authority, "authority")?;
            auth.key.sign(
                &ca,
                LeafRequest {
                    common_name: auth.name.as_str(),
                    sans: &auth.sans,
                    groups: &auth.groups,
                    usage: auth.usage,
                    ttl: auth.ttl,
                },
                now,
            )?
        };
        let cert = signed.as_ref();
        let record = IssuedRecord {
            serial: cert.serial.clone(),
            name: auth.name.to_string(),
            sans: auth.sans,
            usage: auth.usage,
            groups: auth.groups,
            not_before: cert.not_before.unix_timestamp(),
            not_after: cert.not_after.unix_timestamp(),
            requester: auth.requester,
            agent_scope: auth.agent_scope,
        };
        Ok(PendingIssue {
            durable: self.ledger.record(record),
            signed,
        })
    }
}

/// A signed certificate waiting for its inventory record to be durable: it cannot be
/// unwrapped any other way, so no caller can hand it out early.
#[must_use = "the certificate is only released once its record is durable"]
pub struct PendingIssue<T> {
    signed: T,
    durable: Durable,
}

impl<T> PendingIssue<T> {
    /// Blocks this thread until the record is on disk (CLI, blocking tasks).
    pub fn wait(self) -> Result<T, CaError> {
        self.durable.wait()?;
        Ok(self.signed)
    }

    /// Waits without blocking the async worker (the HTTPS API).
    pub async fn durable(self) -> Result<T, CaError> {
        self.durable.await_durable().await?;
        Ok(self.signed)
    }
}
