//! An agent's forward-auth decider, fed from the remote CA: its bundle, and its CRL pulled every 2 s.
//!
//! Pull rather than push: the agent already holds an mTLS client pinned to the CA, a CRL is
//! signed (so a cache or a replay cannot forge one) and numbered (so an old one is refused),
//! and a lost push would need the pull anyway. Every decision stays in memory on the host.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::authz::crl::{CrlFacts, read_crl};
use crate::authz::decider::Decider;
use crate::ca::pem::certs_from_pem;
use crate::ca::remote::RemoteSource;
use crate::ca::source::CertSource;
use crate::metrics::Metrics;

/// How often the CRL is pulled: a revocation reaches the decider within this, plus one
/// round trip.
pub const CRL_INTERVAL: Duration = Duration::from_secs(2);
/// The bundle changes only at a CA rollover: asked every this many CRL pulls (a minute).
const BUNDLE_EVERY: u32 = 30;

/// Keeps an agent's decider current. The decider gets its trust only together with a
/// verified CRL, so before the first one it refuses everyone (`ca_unavailable`): an agent that
/// never knew the revocations must not guess them.
pub struct RemoteFeed {
    remote: Arc<RemoteSource>,
    decider: Arc<Decider>,
    metrics: Arc<Metrics>,
    /// The number of the last CRL applied: CRLs only move forward.
    number: Option<Vec<u8>>,
    /// Whether the last pull failed, so an outage is logged once, not every 2 s.
    failing: bool,
}

impl RemoteFeed {
    pub fn new(remote: Arc<RemoteSource>, decider: Arc<Decider>, metrics: Arc<Metrics>) -> Self {
        metrics.revocations_followed(OffsetDateTime::now_utc());
        Self {
            remote,
            decider,
            metrics,
            number: None,
            failing: false,
        }
    }

    /// Starts from the CRL kept on disk (still before its next update), so an agent restarted
    /// while the CA is away keeps deciding. It does not count as fresh in the metrics.
    pub fn restore(&mut self) {
        let der = match self.remote.kept_crl() {
            Ok(Some(der)) => der,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kept CRL");
                return;
            }
        };
        let bundle = self.remote.trusted_certs();
        match read_crl(&der, &bundle, None, OffsetDateTime::now_utc()) {
            Ok(facts) => {
                tracing::info!(
                    revoked = facts.revoked.len(),
                    "forward-auth decides from the kept CRL until the CA answers"
                );
                self.apply(&bundle, facts);
            }
            Err(e) => tracing::warn!(error = %e, "the kept CRL is not usable"),
        }
    }

    fn apply(&mut self, bundle: &[CertificateDer<'static>], facts: CrlFacts) {
        self.decider.set_bundle_if_changed(bundle);
        self.decider.set_revoked(facts.revoked);
        self.number = Some(facts.number);
    }

    /// One pull: the bundle when `with_bundle` (the last good one while the CA is away), then
    /// the CRL, verified against it and applied.
    pub async fn refresh(&mut self, with_bundle: bool) -> Result<(), String> {
        let bundle = if with_bundle {
            match self.remote.bundle().await {
                Ok(pem) => certs_from_pem("CA bundle", &pem).map_err(|e| e.to_string())?,
                Err(e) => return Err(e.to_string()),
            }
        } else {
            self.remote.trusted_certs()
        };
        let der = self.remote.crl().await.map_err(|e| e.to_string())?;
        let now = OffsetDateTime::now_utc();
        let facts =
            read_crl(&der, &bundle, self.number.as_deref(), now).map_err(|e| e.to_string())?;
        self.apply(&bundle, facts);
        self.metrics.revocations_fetched(now);
        if let Err(e) = self.remote.keep_crl(&der) {
            tracing::warn!(error = %e, "cannot keep the CRL on disk");
        }
        Ok(())
    }

    /// Pulls every [`CRL_INTERVAL`] until dropped; on failure keeps what it had and says so
    /// (log once, `certdock_forward_auth_stale` after 30 s).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(CRL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u32;
        loop {
            tick.tick().await;
            let result = self.refresh(n.is_multiple_of(BUNDLE_EVERY)).await;
            n = n.wrapping_add(1);
            match result {
                Ok(()) if self.failing => {
                    self.failing = false;
                    tracing::info!(
                        "the CA's CRL is reachable again; forward-auth revocations are current"
                    );
                }
                Ok(()) => {}
                Err(e) => {
                    self.metrics.error("forward_auth_crl");
                    if !self.failing {
                        self.failing = true;
                        tracing::warn!(error = %e, "cannot get the CA's CRL; forward-auth keeps deciding from the last revocations it had");
                    }
                }
            }
        }
    }
}
