//! The seam between the controller and a CA: one trait, two real implementations.
//!
//! `run` uses the CA in this process ([`LocalSource`]); `agent` uses a certdock CA over its HTTPS
//! API (`ca::remote`). The controller is generic over [`CertSource`] and cannot tell them apart.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::CaError;
use super::authorize::{Local, Order};
use super::issue::Issued;
use super::keys::KeyType;
pub use super::ledger::{RevokedSerials, bare_serial};
use super::local::LocalCa;
use crate::core::authz::GroupName;
use crate::core::names::{CertName, San, Usage};

/// What the controller wants signed. The key is always made where the certificate is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafOrder {
    pub name: CertName,
    pub sans: Vec<San>,
    pub usage: Usage,
    /// `certdock.groups`, bound to the certificate.
    pub groups: BTreeSet<GroupName>,
    pub ttl: Duration,
    /// certdock's own identity (Traefik's client certificate): exempt from allow/deny like
    /// the API certificate, since the user never asked for its name.
    pub internal: bool,
}

/// Why a CA could not serve an order. Only `Unavailable` is worth retrying soon.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The CA refused the order (policy, bad ttl): retrying will not help until labels change.
    #[error("refused by the CA: {0}")]
    Refused(String),
    /// The CA could not be reached or failed: keep the old certificate, retry with backoff.
    #[error("CA unavailable: {0}")]
    Unavailable(String),
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Unavailable(_))
    }
}

impl From<CaError> for SourceError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Policy(_)
            | CaError::Ttl(_)
            | CaError::BadCsr { .. }
            | CaError::Revoked { .. }
            | CaError::UnknownCertificate { .. } => SourceError::Refused(e.to_string()),
            other => SourceError::Unavailable(other.to_string()),
        }
    }
}

pub trait CertSource: Send + Sync + 'static {
    /// Signs a leaf for `order`, with a fresh private key that never leaves this host.
    fn issue(&self, order: &LeafOrder) -> impl Future<Output = Result<Issued, SourceError>> + Send;

    /// The CA bundle to trust now (root first, then intermediates): the content of `ca.pem`.
    fn bundle(&self) -> impl Future<Output = Result<String, SourceError>> + Send;

    /// Every serial the CA has revoked, as far as this source knows now (hex without leading
    /// zeros): the controller replaces the certificates it holds among them at once. The same
    /// `Arc` while nothing new was revoked, so a pass that finds it unchanged looks no further
    /// (checking every held serial on every pass made even a quiet wake-up grow with the
    /// certificates held). Never fails: what cannot be known now counts as not revoked (the
    /// renewal schedule still applies).
    fn revoked(&self) -> impl Future<Output = RevokedSerials> + Send;
}

/// The CA in this process, asked by the controller.
#[derive(Debug, Clone)]
pub struct LocalSource {
    pub ca: Arc<LocalCa>,
    pub key_type: KeyType,
}

impl CertSource for LocalSource {
    async fn issue(&self, order: &LeafOrder) -> Result<Issued, SourceError> {
        let ca = self.ca.clone();
        let who = if order.internal {
            Local::ProxyClient
        } else {
            Local::Controller
        };
        let order = Order {
            name: order.name.clone(),
            sans: order.sans.clone(),
            usage: order.usage,
            groups: order.groups.clone(),
            ttl: Some(order.ttl),
            key_type: self.key_type,
        };
        // Key generation, signing and the fsync are blocking work.
        tokio::task::spawn_blocking(move || {
            let now = OffsetDateTime::now_utc();
            ca.sign(ca.authorize_local(who, order)?, now)?.wait()
        })
        .await
        .map_err(|e| SourceError::Unavailable(format!("signing task: {e}")))?
        .map_err(SourceError::from)
    }

    async fn bundle(&self) -> Result<String, SourceError> {
        Ok(self.ca.bundle_pem())
    }

    async fn revoked(&self) -> RevokedSerials {
        let ca = self.ca.clone();
        // The inventory is refreshed from disk (a `certdock revoke` in another process counts).
        tokio::task::spawn_blocking(move || ca.revoked_serials())
            .await
            .map_err(|e| CaError::Internal(format!("inventory task: {e}")))
            .and_then(|r| r)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read revocations from the inventory");
                RevokedSerials::default()
            })
    }
}
