//! The API's TLS: its own certificate from the CA, renewed in the background and published
//! through `watch` channels, so rotation and CA rollover never need a restart.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::served::{CertOrigin, CurrentCert, Listener, ServedCert, TlsHandles};
use super::server::ApiConfig;
use crate::ca::CaError;
use crate::ca::authorize::{Local, Order};
use crate::ca::issue::Issued;
use crate::ca::keys::KeyType;
use crate::ca::local::LocalCa;
use crate::ca::pem::certs_from_pem;
use crate::core::names::{CertName, San, Usage};
use crate::metrics::Metrics;
use crate::tls::{VERSIONS, private_key_from_pem, provider, root_store};

/// The label of the API's own certificate in the metrics; a `/` keeps it apart from any
/// container's certificate name.
pub const METRICS_NAME: &str = "certdock/api";

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

/// How the API's listener is named in logs and metrics.
pub(crate) const API_LISTENER: Listener = Listener {
    what: "API certificate",
    metrics_name: METRICS_NAME,
    certificate_kind: "api_certificate",
    config_kind: "api_tls_config",
};

/// The API's certificate comes from the local CA, under the API's own names.
pub(crate) struct LocalApiCert {
    ca: Arc<LocalCa>,
    names: Vec<San>,
    key_type: KeyType,
}

impl LocalApiCert {
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
}

impl CertOrigin for LocalApiCert {
    async fn issue(&self) -> Result<ApiCert, String> {
        LocalApiCert::issue(self).await.map_err(|e| e.to_string())
    }

    fn bundle(&self) -> String {
        self.ca.bundle_pem()
    }

    /// The inventory, refreshed: a revocation by `certdock revoke` in another process counts too.
    fn is_revoked(&self, serial: &str) -> bool {
        self.ca.is_revoked(serial).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the inventory to check the API certificate");
            false
        })
    }

    fn revocations(&self) -> Option<watch::Receiver<u64>> {
        Some(self.ca.revocations())
    }
}

/// The API's [`ServedCert`] and where its certificate comes from; driven by [`TlsState::upkeep`].
pub struct TlsState {
    origin: LocalApiCert,
    served: ServedCert,
}

impl TlsState {
    /// Issues the first API certificate and builds the first server config.
    pub async fn start(
        ca: Arc<LocalCa>,
        api: &ApiConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, TlsHandles), TlsError> {
        let (served, handles) = ServedCert::new(&API_LISTENER, metrics, ca.bundle_pem())?;
        let origin = LocalApiCert {
            ca,
            names: api.names.clone(),
            key_type: api.key_type,
        };
        served.publish(origin.issue().await?);
        Ok((Self { origin, served }, handles))
    }

    /// Renews the API certificate and follows the CA bundle (intermediate rollover), so
    /// neither needs a restart. Runs until dropped.
    pub async fn upkeep(self) {
        self.served.upkeep(self.origin).await;
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
        let renewed = state.origin.issue().await.unwrap();
        let second = renewed.serial.clone();
        state.served.publish(renewed);
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
        state.served.follow_bundle(&ca.bundle_pem());
        assert!(
            Arc::ptr_eq(&before, &handles.config.borrow()),
            "nothing changed"
        );
        let later = OffsetDateTime::now_utc() + time::Duration::days(300);
        assert!(ca.maintain(later).unwrap(), "the intermediate rolled over");
        state.served.follow_bundle(&ca.bundle_pem());
        assert!(!Arc::ptr_eq(&before, &handles.config.borrow()));
    }
}
