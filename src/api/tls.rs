//! The API's TLS: its own certificate from the CA, renewed in the background and published
//! through `watch` channels, so rotation and CA rollover never need a restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::server::ApiConfig;
use crate::ca::CaError;
use crate::ca::authorize::{Local, Order};
use crate::ca::issue::Issued;
use crate::ca::keys::KeyType;
use crate::ca::local::LocalCa;
use crate::ca::pem::certs_from_pem;
use crate::core::names::{CertName, San, Usage};
use crate::core::renew::{jitter_from_serial, renew_issued_at, retry_after};
use crate::metrics::Metrics;
use crate::tls::{VERSIONS, private_key_from_pem, provider, root_store};

/// The label of the API's own certificate in the metrics; a `/` keeps it apart from any
/// container's certificate name.
pub const METRICS_NAME: &str = "certdock/api";

/// How often the CA bundle is compared with the one the client verifier was built from.
pub(crate) const BUNDLE_CHECK: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("issuing the API certificate: {0}")]
    Issue(#[source] CaError),
    #[error("the API certificate's name: {0}")]
    Name(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The certificate the API presents now, and when it is due for renewal.
#[derive(Clone)]
pub struct ApiCert {
    pub key: Arc<CertifiedKey>,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for ApiCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCert")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
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

/// The certificate a listener presents and the client verifier it uses, each published on a
/// `watch`: the one mechanism behind the API (local CA) and an agent's listener (remote CA).
pub(crate) struct ServedCert {
    cert_tx: watch::Sender<Option<ApiCert>>,
    config_tx: watch::Sender<Arc<ServerConfig>>,
    resolver: Arc<CurrentCert>,
    /// The CA bundle the verifier was built from.
    bundle: String,
}

impl ServedCert {
    /// No certificate yet (handshakes fail closed); client certificates verified against `bundle`.
    pub(crate) fn new(bundle: String) -> Result<(Self, TlsHandles), TlsError> {
        let (cert_tx, cert_rx) = watch::channel(None);
        let resolver = Arc::new(CurrentCert(cert_rx.clone()));
        let (config_tx, config_rx) = watch::channel(server_config(resolver.clone(), &bundle)?);
        let served = Self {
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
    pub(crate) fn serial(&self) -> Option<String> {
        self.cert_tx.borrow().as_ref().map(|c| c.serial.clone())
    }

    /// The expiry of the certificate served now, if there is one.
    pub(crate) fn not_after(&self) -> Option<SystemTime> {
        self.cert_tx.borrow().as_ref().map(|c| c.not_after.into())
    }

    /// Rebuilds the client verifier when `bundle` differs from the one it trusts; says whether
    /// it changed.
    pub(crate) fn follow_bundle(&mut self, bundle: String) -> Result<bool, TlsError> {
        if bundle == self.bundle {
            return Ok(false);
        }
        self.config_tx
            .send_replace(server_config(self.resolver.clone(), &bundle)?);
        self.bundle = bundle;
        Ok(true)
    }
}

/// Owns the API's [`ServedCert`]; driven by [`TlsState::upkeep`].
pub struct TlsState {
    ca: Arc<LocalCa>,
    metrics: Arc<Metrics>,
    names: Vec<San>,
    key_type: KeyType,
    served: ServedCert,
}

impl TlsState {
    /// Issues the first API certificate and builds the first server config.
    pub async fn start(
        ca: Arc<LocalCa>,
        api: &ApiConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, TlsHandles), TlsError> {
        let (served, handles) = ServedCert::new(ca.bundle_pem())?;
        let state = Self {
            ca,
            metrics,
            names: api.names.clone(),
            key_type: api.key_type,
            served,
        };
        let cert = state.issue().await?;
        state.publish(cert);
        Ok((state, handles))
    }

    async fn issue(&self) -> Result<ApiCert, TlsError> {
        let name = api_cert_name(&self.names)?;
        let order = Order {
            name,
            sans: self.names.clone(),
            usage: Usage::SERVER,
            groups: Default::default(),
            ttl: None,
            key_type: self.key_type,
        };
        let ca = self.ca.clone();
        let issued = tokio::task::spawn_blocking(move || {
            let now = OffsetDateTime::now_utc();
            ca.sign(ca.authorize_local(Local::ApiCertificate, order)?, now)?
                .wait()
        })
        .await
        .map_err(|e| TlsError::Issue(CaError::Internal(format!("signing task: {e}"))))?
        .map_err(TlsError::Issue)?;
        api_cert(&issued)
    }

    fn publish(&self, cert: ApiCert) -> SystemTime {
        tracing::info!(serial = %cert.serial, not_after = %cert.not_after, "API certificate in use");
        self.metrics.set_certificate(METRICS_NAME, cert.not_after);
        self.served.publish(cert)
    }

    /// Renews the API certificate at two thirds of its life (with jitter; failures retried
    /// with backoff, never past expiry), at once when it is revoked, and rebuilds the client
    /// verifier whenever the CA bundle changes (intermediate rollover). Runs until dropped.
    pub async fn upkeep(mut self) {
        let mut failures = 0u32;
        let mut due = self.served.renewal_due().unwrap_or_else(SystemTime::now);
        let mut revocations = self.ca.revocations();
        loop {
            let now = SystemTime::now();
            let wake = due.min(now + BUNDLE_CHECK);
            tokio::select! {
                () = tokio::time::sleep(wake.duration_since(now).unwrap_or_default()) => {}
                // The ledger lives as long as the CA this task holds: never closed.
                _ = revocations.changed() => {}
            }
            self.refresh_verifier();
            if self.served_is_revoked() {
                tracing::warn!("the API certificate was revoked; replacing it now");
                due = SystemTime::now();
            }
            if SystemTime::now() < due {
                continue;
            }
            match self.issue().await {
                Ok(cert) => {
                    due = self.publish(cert);
                    self.metrics.renewed("api_certificate");
                    failures = 0;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the API certificate failed; keeping the current one");
                    self.metrics.error("api_certificate");
                    let not_after = self.served.not_after().unwrap_or_else(SystemTime::now);
                    due = retry_after(failures, SystemTime::now(), not_after);
                    failures = failures.saturating_add(1);
                }
            }
        }
    }

    /// Whether the certificate served now is revoked (by this process or another one, such
    /// as `certdock revoke`, seen at the next periodic check).
    fn served_is_revoked(&self) -> bool {
        let Some(serial) = self.served.serial() else {
            return false;
        };
        match self.ca.is_revoked(&serial) {
            Ok(revoked) => revoked,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the inventory to check the API certificate");
                false
            }
        }
    }

    fn refresh_verifier(&mut self) {
        match self.served.follow_bundle(self.ca.bundle_pem()) {
            Ok(false) => {}
            Ok(true) => tracing::info!(
                "CA bundle changed; new connections verify client certificates against it"
            ),
            Err(e) => {
                tracing::error!(error = %e, "rebuilding the client verifier for the new CA bundle failed");
                self.metrics.error("api_tls_config");
            }
        }
    }
}

/// The CN of an API certificate: the first DNS name, else the first name that is a valid
/// certificate name (an IPv6 address is not), else a fixed one; the SANs carry every name anyway.
pub(crate) fn api_cert_name(names: &[San]) -> Result<CertName, TlsError> {
    if names.is_empty() {
        return Err(TlsError::Name("no --api-name".into()));
    }
    names
        .iter()
        .filter(|n| matches!(n, San::Dns(_)))
        .chain(names.iter())
        .find_map(|n| CertName::parse(&n.to_string()).ok())
        .map_or_else(|| CertName::parse("certdock-api"), Ok)
        .map_err(|e| TlsError::Name(e.to_string()))
}

pub(crate) fn api_cert(issued: &Issued) -> Result<ApiCert, TlsError> {
    // Leaf, then the intermediate: clients usually trust only the root.
    let mut chain = vec![issued.cert_der.clone()];
    chain.extend(certs_from_pem("API chain", &issued.chain_pem).map_err(TlsError::Issue)?);
    let certified = CertifiedKey::from_der(
        chain,
        private_key_from_pem(issued.key.secret_pem())?,
        &provider(),
    )?;
    Ok(ApiCert {
        key: Arc::new(certified),
        serial: issued.serial.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
    })
}

/// TLS 1.2/1.3; client certificates requested, never required; anchors are the root and every
/// intermediate of the bundle, because a client usually sends only its leaf.
pub(crate) fn server_config(
    resolver: Arc<CurrentCert>,
    bundle_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let anchors = certs_from_pem("CA bundle", bundle_pem).map_err(TlsError::Issue)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(&anchors)?),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::facts::CertFacts;
    use crate::ca::local::{OpenMode, Policy};
    use rustls::ClientConfig;
    use rustls_pki_types::ServerName;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn setup() -> (tempfile::TempDir, Arc<LocalCa>, ApiConfig) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let config = ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            names: vec![
                San::parse("ca.test").unwrap(),
                San::parse("127.0.0.1").unwrap(),
            ],
            key_type: KeyType::EcdsaP256,
            acme: crate::acme::AcmeConfig {
                http_port: 80,
                tls_port: 443,
                eab: false,
                fallback_authority: "ca.test:8443".into(),
            },
            limits: Default::default(),
        };
        let ca = LocalCa::open(
            dir.path(),
            Policy::default(),
            Default::default(),
            OpenMode::CreateIfMissing(config.key_type),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        (dir, Arc::new(ca), config)
    }

    /// The serial of the certificate a TLS client sees, with or without SNI.
    async fn served_serial(config: Arc<ServerConfig>, ca: &LocalCa, sni: &str) -> String {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { TlsAcceptor::from(config).accept(server_io).await });
        let anchors = certs_from_pem("bundle", &ca.bundle_pem()).unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_root_certificates(root_store(&anchors[..1]).unwrap())
            .with_no_client_auth();
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let tls = TlsConnector::from(Arc::new(client))
            .connect(name, client_io)
            .await
            .expect("the handshake verifies against the root");
        let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        drop(tls);
        let _ = server.await;
        CertFacts::from_der("served", &der).unwrap().serial
    }

    #[tokio::test]
    async fn a_renewed_api_certificate_is_served_to_the_next_handshake_without_a_restart() {
        let (_dir, ca, settings) = setup();
        let (state, handles) = TlsState::start(ca.clone(), &settings, Arc::new(Metrics::new()))
            .await
            .unwrap();
        let first = handles.cert.borrow().as_ref().unwrap().serial.clone();
        let config = handles.config.borrow().clone();
        assert_eq!(served_serial(config.clone(), &ca, "ca.test").await, first);
        // No SNI (an IP address) gets the same certificate.
        assert_eq!(served_serial(config.clone(), &ca, "127.0.0.1").await, first);
        let renewed = state.issue().await.unwrap();
        let second = renewed.serial.clone();
        state.publish(renewed);
        assert_ne!(first, second);
        assert_eq!(served_serial(config, &ca, "ca.test").await, second);
    }

    #[tokio::test]
    async fn an_intermediate_rollover_rebuilds_the_client_verifier() {
        let (_dir, ca, settings) = setup();
        let (mut state, handles) = TlsState::start(ca.clone(), &settings, Arc::new(Metrics::new()))
            .await
            .unwrap();
        let before = handles.config.borrow().clone();
        state.refresh_verifier();
        assert!(
            Arc::ptr_eq(&before, &handles.config.borrow()),
            "nothing changed"
        );
        let later = OffsetDateTime::now_utc() + time::Duration::days(300);
        assert!(ca.maintain(later).unwrap(), "the intermediate rolled over");
        state.refresh_verifier();
        assert!(!Arc::ptr_eq(&before, &handles.config.borrow()));
    }
}
