//! HTTPS to a certdock CA: the three clients an agent needs (first contact, verified, mTLS)
//! and one function that turns an answer into a value or a [`RemoteError`].

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use serde::de::DeserializeOwned;

use super::RemoteError;
use super::store::{Identity, TrustedBundle};
use crate::core::wire::ErrorBody;
use crate::tls::danger::{AnyServerCert, Use};
use crate::tls::{VERSIONS, private_key_from_pem, provider, root_store};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle pooled connections are dropped before the CA's keep-alive limit (its `--header-timeout`,
/// 10 s by default) closes them, so a request rarely races the CA's close.
const POOL_IDLE: Duration = Duration::from_secs(5);

fn client(config: ClientConfig) -> Result<reqwest::Client, RemoteError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE)
        .build()
        .map_err(|e| RemoteError::Tls(format!("HTTP client: {}", error_chain(&e))))
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, RemoteError> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| RemoteError::Tls(e.to_string()))
}

/// For the one unauthenticated fetch of `/roots.pem` on first contact. The server's
/// certificate is not checked here because the answer is: its root must match the pin.
pub fn first_contact_client() -> Result<reqwest::Client, RemoteError> {
    let config = builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert::new(
            provider(),
            Use::PinnedContent,
        )))
        .with_no_client_auth();
    client(config)
}

/// Verifies the CA against the pinned root (and the intermediates it signed), with the
/// server name taken from the URL's host; optionally presents the agent's identity.
pub fn verified_client(
    trust: &TrustedBundle,
    identity: Option<&Identity>,
) -> Result<reqwest::Client, RemoteError> {
    let roots = root_store(&trust.certs).map_err(|e| RemoteError::Tls(e.to_string()))?;
    let b = builder()?.with_root_certificates(roots);
    let config = match identity {
        None => b.with_no_client_auth(),
        Some(id) => {
            let mut chain = vec![id.cert.clone()];
            chain.extend(id.chain.iter().cloned());
            let key = private_key_from_pem(id.key.secret_pem())
                .map_err(|e| RemoteError::Identity(e.to_string()))?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| RemoteError::Identity(e.to_string()))?
        }
    };
    client(config)
}

/// Sends a request and decodes a 2xx JSON (or text, with `T = String`) answer. Connection
/// failures and 5xx are transient; a 4xx carries the CA's own error code and message.
pub async fn call<T: DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, RemoteError> {
    let resp = send(req).await?;
    resp.json::<T>()
        .await
        .map_err(|e| RemoteError::BadResponse(error_chain(&e)))
}

pub async fn call_text(req: reqwest::RequestBuilder) -> Result<String, RemoteError> {
    let resp = send(req).await?;
    resp.text()
        .await
        .map_err(|e| RemoteError::Unreachable(error_chain(&e)))
}

async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, RemoteError> {
    let resp = req
        .send()
        .await
        .map_err(|e| RemoteError::Unreachable(error_chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.json::<ErrorBody>().await.ok();
    let (code, message) = body.map_or_else(
        || ("unknown".to_string(), String::new()),
        |b| (b.error, b.message),
    );
    if status.is_client_error() {
        Err(RemoteError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    } else {
        Err(RemoteError::ServerError {
            status: status.as_u16(),
            message,
        })
    }
}

/// reqwest's own message is "error sending request"; the cause is in its sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A 2xx binary answer (the DER CRL).
pub async fn call_bytes(req: reqwest::RequestBuilder) -> Result<Vec<u8>, RemoteError> {
    let resp = send(req).await?;
    resp.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| RemoteError::Unreachable(error_chain(&e)))
}
