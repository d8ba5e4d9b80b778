//! The certificate a listener presents and the client verifier it uses, and the one upkeep loop
//! that keeps both current: behind the API (certificate from the local CA) and an agent's
//! listener (certificate from the remote CA). Only where the certificate comes from differs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::tls::{ApiCert, TlsError, server_config};
use crate::ca::facts::issued_before_rollover;
use crate::ca::pem::cert_to_pem;
use crate::core::renew::{
    jitter_from_serial, reissue_after_rollover, renew_issued_at, retry_after,
};
use crate::metrics::Metrics;

/// How often the CA bundle is compared with the one the client verifier was built from, and
/// the served certificate looked up among the revoked ones (an agent's CRL feed pulls every
/// 2 s; the local CA also wakes the loop at once, see [`CertOrigin::revocations`]).
pub(crate) const BUNDLE_CHECK: Duration = Duration::from_secs(2);
/// After a CA rollover, a listener's certificate is re-issued under the new chain within this.
const ROLLOVER_SPREAD: Duration = Duration::from_secs(30);

/// Which listener a [`ServedCert`] belongs to: how it is named in logs and metrics.
#[derive(Debug)]
pub(crate) struct Listener {
    /// In log lines: "API certificate", "agent HTTPS certificate".
    pub what: &'static str,
    /// The certificate's label in `certdock_certificate_*` metrics.
    pub metrics_name: &'static str,
    /// The `kind` of renewals and errors of the certificate in the metrics.
    pub certificate_kind: &'static str,
    /// The `kind` of errors rebuilding the TLS configuration.
    pub config_kind: &'static str,
}

/// Where a listener's certificate comes from.
pub(crate) trait CertOrigin: Send + 'static {
    /// A new certificate for the listener; the error is said in the log as is.
    fn issue(&self) -> impl Future<Output = Result<ApiCert, String>> + Send;
    /// The CA bundle client certificates are verified against now.
    fn bundle(&self) -> String;
    /// Whether the certificate with this serial (hex) is revoked: it is then replaced at once.
    fn is_revoked(&self, serial: &str) -> bool;
    /// Changes after each revocation, when the origin can tell (the local CA), so the loop
    /// looks at once rather than at its next [`CHECK_EVERY`].
    fn revocations(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// Answers every handshake, whatever its SNI (none, unknown, an API name), with the current
/// certificate; fails closed (no certificate, handshake aborted) before the first one exists.
#[derive(Debug)]
pub(crate) struct CurrentCert(pub(crate) watch::Receiver<Option<ApiCert>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.borrow().as_ref().map(|c| c.key.clone())
    }
}

/// What the accept loop and the health handler read; the upkeep task writes.
#[derive(Debug, Clone)]
pub struct TlsHandles {
    pub config: watch::Receiver<Arc<ServerConfig>>,
    pub cert: watch::Receiver<Option<ApiCert>>,
}

/// The served certificate and client verifier, each published on a `watch`.
pub(crate) struct ServedCert {
    listener: &'static Listener,
    metrics: Arc<Metrics>,
    cert_tx: watch::Sender<Option<ApiCert>>,
    config_tx: watch::Sender<Arc<ServerConfig>>,
    resolver: Arc<CurrentCert>,
    /// The CA bundle the verifier was built from.
    bundle: String,
}

impl ServedCert {
    /// No certificate yet (handshakes fail closed); client certificates verified against `bundle`.
    pub(crate) fn new(
        listener: &'static Listener,
        metrics: Arc<Metrics>,
        bundle: String,
    ) -> Result<(Self, TlsHandles), TlsError> {
        let (cert_tx, cert_rx) = watch::channel(None);
        let resolver = Arc::new(CurrentCert(cert_rx.clone()));
        let (config_tx, config_rx) = watch::channel(server_config(resolver.clone(), &bundle)?);
        let served = Self {
            listener,
            metrics,
            cert_tx,
            config_tx,
            resolver,
            bundle,
        };
        let handles = TlsHandles {
            config: config_rx,
            cert: cert_rx,
        };
        Ok((served, handles))
    }

    /// Serves `cert` from the next handshake on; returns when it is due for renewal.
    pub(crate) fn publish(&self, cert: ApiCert) -> SystemTime {
        tracing::info!(serial = %cert.serial, not_after = %cert.not_after, "{} in use", self.listener.what);
        self.metrics
            .set_certificate(self.listener.metrics_name, cert.not_after);
        self.cert_tx.send_replace(Some(cert));
        self.renewal_due().unwrap_or_else(SystemTime::now)
    }

    /// When the certificate served now is due for renewal (the one schedule), if there is one.
    pub(crate) fn renewal_due(&self) -> Option<SystemTime> {
        self.cert_tx.borrow().as_ref().map(|c| {
            renew_issued_at(
                c.not_before.into(),
                c.not_after.into(),
                jitter_from_serial(&c.serial),
            )
        })
    }

    /// The serial of the certificate served now, if there is one.
    fn serial(&self) -> Option<String> {
        self.cert_tx.borrow().as_ref().map(|c| c.serial.clone())
    }

    /// When the certificate served now is re-issued because it predates a CA rollover (the
    /// CA `bundle` signs with another intermediate since), if it does: spread over `spread`.
    pub(crate) fn rollover_due(&self, bundle: &str, spread: Duration) -> Option<SystemTime> {
        let cert = self.cert_tx.borrow();
        let c = cert.as_ref()?;
        let chain: String = c.key.cert.iter().skip(1).map(|d| cert_to_pem(d)).collect();
        let rolled_at = issued_before_rollover(bundle, &chain, c.not_before)?;
        let jitter = jitter_from_serial(&c.serial);
        let renew = renew_issued_at(c.not_before.into(), c.not_after.into(), jitter);
        Some(reissue_after_rollover(
            rolled_at.into(),
            spread,
            jitter,
            renew,
        ))
    }

    /// The expiry of the certificate served now, if there is one.
    fn not_after(&self) -> Option<SystemTime> {
        self.cert_tx.borrow().as_ref().map(|c| c.not_after.into())
    }

    /// Rebuilds the client verifier when `bundle` differs from the one it trusts (a CA
    /// rollover); a failure keeps the old verifier and is logged. Says whether it changed.
    pub(crate) fn follow_bundle(&mut self, bundle: &str) -> bool {
        if bundle == self.bundle {
            return false;
        }
        match server_config(self.resolver.clone(), bundle) {
            Ok(config) => {
                self.config_tx.send_replace(config);
                self.bundle = bundle.to_owned();
                tracing::info!(
                    "CA bundle changed; new connections verify client certificates against it"
                );
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "rebuilding the client verifier for the new CA bundle failed");
                self.metrics.error(self.listener.config_kind);
                false
            }
        }
    }

    /// Renews the certificate at two thirds of its life (`renew_issued_at`, with jitter), at
    /// once when it is revoked, retries a failure with `retry_after` (never past expiry), and
    /// follows the CA bundle: after a rollover the certificate is re-issued under the new chain
    /// within `ROLLOVER_SPREAD`. Without a certificate the listener stays closed. Runs until
    /// dropped.
    pub(crate) async fn upkeep(mut self, origin: impl CertOrigin) {
        let what = self.listener.what;
        let mut failures = 0u32;
        let mut due = self.renewal_due().unwrap_or_else(SystemTime::now);
        let mut revocations = origin.revocations();
        loop {
            let now = SystemTime::now();
            let wake = due.min(now + BUNDLE_CHECK);
            let revoked_now = async {
                let changed = match revocations.as_mut() {
                    Some(r) => r.changed().await.is_ok(),
                    None => false,
                };
                if !changed {
                    // No such signal, or its sender is gone: the periodic check remains.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wake.duration_since(now).unwrap_or_default()) => {}
                () = revoked_now => {}
            }
            let bundle = origin.bundle();
            if self.follow_bundle(&bundle)
                && let Some(at) = self.rollover_due(&bundle, ROLLOVER_SPREAD)
            {
                due = due.min(at);
            }
            // Once: after a failed replacement the backoff decides when to try again.
            if failures == 0 && self.serial().is_some_and(|s| origin.is_revoked(&s)) {
                tracing::warn!("the {what} was revoked; replacing it now");
                due = SystemTime::now();
            }
            if SystemTime::now() < due {
                continue;
            }
            match origin.issue().await {
                Ok(cert) => {
                    due = self.publish(cert);
                    self.metrics.renewed(self.listener.certificate_kind);
                    failures = 0;
                }
                Err(e) => {
                    let held = self.not_after();
                    if held.is_some() {
                        tracing::warn!(error = %e, "renewing the {what} failed; keeping the current one");
                    } else {
                        tracing::error!(error = %e, listen_fails_closed = true, "no {what}: the listener refuses every handshake until the CA issues one");
                    }
                    self.metrics.error(self.listener.certificate_kind);
                    let now = SystemTime::now();
                    // With no certificate there is no expiry to beat: plain backoff.
                    due = retry_after(failures, now, held.unwrap_or(now));
                    failures = failures.saturating_add(1);
                }
            }
        }
    }
}
