//! [`RemoteSource`]: a certdock CA reached over its HTTPS API, for `certdock agent`.
//!
//! First contact pins the root by fingerprint, then the agent enrols with its single-use
//! `agent` token and from then on authenticates with its own client certificate. The CA names
//! the agent after its token (`certdock token create --kind agent --name host1.agents`): the
//! names in the enrolment CSR are ignored. Keys are made here and never leave the host.

mod http;
mod store;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData,
};
use reqwest::Url;
use time::OffsetDateTime;

use super::issue::Issued;
use super::keys::SecretPem;
use super::pem::{certs_from_pem, parse_cert};
use super::source::{CertSource, LeafOrder, SourceError};
use crate::api::wire::{CertResponse, RenewRequest, SignRequest};
use crate::core::names::{San, Usage};
use crate::core::policy::fmt_duration;
use crate::core::renew::{renew_at, retry_after};
use crate::store::atomic::Mode;
use store::AgentFiles;
pub use store::{Identity, TrustedBundle, normalize_fingerprint};

/// Why the remote CA could not be used. [`RemoteError::is_transient`] says whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("--ca-url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("--ca-fingerprint: {0}")]
    BadFingerprint(String),
    #[error(
        "the CA's root has fingerprint {actual}, not the pinned {pinned}: refusing to trust it \
         (check --ca-fingerprint against `certdock init` or the CA's log)"
    )]
    FingerprintMismatch { pinned: String, actual: String },
    #[error(
        "{path} pins a root with fingerprint {stored}, but --ca-fingerprint is {pinned}; \
         remove the agent state directory to pin a new CA"
    )]
    StoredRootMismatch {
        path: String,
        stored: String,
        pinned: String,
    },
    #[error("--token-file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("{path}: {source}")]
    State {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent identity: {0}")]
    Identity(String),
    #[error(
        "the agent identity expired at {not_after}; put a new agent token in --token-file and \
         restart the agent to enrol again"
    )]
    IdentityExpired { not_after: OffsetDateTime },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the CA is unreachable: {0}")]
    Unreachable(String),
    #[error("the CA failed ({status}): {message}")]
    ServerError { status: u16, message: String },
    #[error("the CA refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the CA: {0}")]
    BadResponse(String),
    #[error("key or CSR generation: {0}")]
    Key(String),
}

impl RemoteError {
    fn state(path: &Path, source: std::io::Error) -> Self {
        RemoteError::State {
            path: path.display().to_string(),
            source,
        }
    }

    /// Network trouble, CA failures and local I/O: retry with backoff. The rest needs a human.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable(_)
                | RemoteError::ServerError { .. }
                | RemoteError::State { .. }
                | RemoteError::IdentityExpired { .. }
        )
    }
}

impl From<RemoteError> for SourceError {
    fn from(e: RemoteError) -> Self {
        if e.is_transient() {
            SourceError::Unavailable(e.to_string())
        } else {
            SourceError::Refused(e.to_string())
        }
    }
}

/// A certdock CA over HTTPS. Cheap to clone; clones share the identity and the last bundle.
#[derive(Debug, Clone)]
pub struct RemoteSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Url,
    pin: String,
    files: AgentFiles,
    /// Never held across an await.
    live: RwLock<Live>,
    /// One identity renewal at a time.
    renewing: tokio::sync::Mutex<()>,
}

/// What changes while the agent runs; replaced as a whole.
#[derive(Debug, Clone)]
struct Live {
    trust: TrustedBundle,
    identity: Identity,
    renew_at: SystemTime,
    client: reqwest::Client,
}

impl RemoteSource {
    /// Connects an agent to its CA: pins the root (first contact) or checks the stored pin,
    /// and enrols with the token in `token_file` unless a valid identity is already stored.
    ///
    /// # Errors
    /// A wrong fingerprint, a refused or spent token, or an unreachable CA (transient: see
    /// [`RemoteError::is_transient`]).
    pub async fn bootstrap(
        ca_url: &str,
        token_file: &Path,
        fingerprint_hex: &str,
        state_dir: &Path,
    ) -> Result<Self, RemoteError> {
        let base = parse_url(ca_url)?;
        let pin = normalize_fingerprint(fingerprint_hex)?;
        let files = AgentFiles::new(state_dir)?;
        let trust = pinned_trust(&base, &pin, &files).await?;
        let now = OffsetDateTime::now_utc();
        let identity = match files.read_optional(&files.identity())? {
            Some(pem) => match Identity::from_pem(&pem) {
                Ok(id) if id.is_valid_at(now) => Some(id),
                Ok(id) => {
                    tracing::warn!(not_after = %id.not_after, "the stored agent identity has expired; enrolling again");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the stored agent identity is unreadable; enrolling again");
                    None
                }
            },
            None => None,
        };
        let identity = match identity {
            Some(id) => {
                tracing::info!(name = %id.name, serial = %id.serial, "reusing the agent identity");
                id
            }
            None => enrol(&base, &trust, token_file, &files).await?,
        };
        let live = Live::new(trust, identity)?;
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                pin,
                files,
                live: RwLock::new(live),
                renewing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The agent's current identity (name, serial, validity).
    pub fn identity(&self) -> Identity {
        self.live().identity
    }

    fn live(&self) -> Live {
        // A poisoned lock only means a panic elsewhere; the data is whole (replaced at once).
        match self.inner.live.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_live(&self, live: Live) {
        match self.inner.live.write() {
            Ok(mut l) => *l = live,
            Err(p) => *p.into_inner() = live,
        }
    }

    fn url(&self, path: &str) -> Result<Url, RemoteError> {
        self.inner.base.join(path).map_err(|e| RemoteError::BadUrl {
            url: self.inner.base.to_string(),
            reason: e.to_string(),
        })
    }

    /// Renews the agent's own certificate over mTLS (with a new key) when two thirds of its
    /// life have passed. Returns whether it renewed.
    pub async fn renew_identity_if_due(&self) -> Result<bool, RemoteError> {
        if SystemTime::now() < self.live().renew_at {
            return Ok(false);
        }
        let _one = self.inner.renewing.lock().await;
        // Another caller may have renewed while this one waited for the lock.
        if SystemTime::now() < self.live().renew_at {
            return Ok(false);
        }
        self.renew_identity_locked().await.map(|_| true)
    }

    /// Renews the agent's own certificate now, with a new key (e.g. after a suspected leak).
    pub async fn renew_identity(&self) -> Result<Identity, RemoteError> {
        let _one = self.inner.renewing.lock().await;
        self.renew_identity_locked().await
    }

    /// The caller holds `renewing`.
    async fn renew_identity_locked(&self) -> Result<Identity, RemoteError> {
        let live = self.live();
        if !live.identity.is_valid_at(OffsetDateTime::now_utc()) {
            return Err(RemoteError::IdentityExpired {
                not_after: live.identity.not_after,
            });
        }
        let (key, csr) = key_and_csr("certdock-agent", &[])?;
        let resp: CertResponse = http::call(
            live.client
                .post(self.url("v1/renew")?)
                .json(&RenewRequest { csr: Some(csr) }),
        )
        .await?;
        let identity = Identity::new(key, &resp.fullchain)?;
        self.inner.files.write(
            &self.inner.files.identity(),
            &identity.to_pem(),
            Mode::Secret,
        )?;
        tracing::info!(serial = %identity.serial, not_after = %identity.not_after, "renewed the agent identity");
        self.set_live(Live::new(live.trust, identity.clone())?);
        Ok(identity)
    }

    /// Keeps the agent's identity renewed: sleeps until it is due, renews, and on failure
    /// retries with backoff (sooner as expiry nears). Runs until dropped.
    pub async fn keep_identity_fresh(&self) {
        let mut failures = 0u32;
        loop {
            let live = self.live();
            let wait = live
                .renew_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
            match self.renew_identity_if_due().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the agent identity failed");
                    let now = SystemTime::now();
                    let next = retry_after(failures, now, live.identity.not_after.into());
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(next.duration_since(now).unwrap_or_default()).await;
                }
            }
        }
    }

    /// Fetches `/roots.pem` over verified TLS and keeps it when its root is still the pinned one.
    async fn refresh_bundle(&self) -> Result<String, RemoteError> {
        let live = self.live();
        let pem = http::call_text(live.client.get(self.url("roots.pem")?)).await?;
        let trust = TrustedBundle::from_pem(&pem, &self.inner.pin)?;
        if trust != live.trust {
            self.inner
                .files
                .write(&self.inner.files.bundle(), &trust.to_pem(), Mode::Public)?;
            tracing::info!("the CA bundle changed");
            self.set_live(Live::new(trust.clone(), live.identity)?);
        }
        Ok(trust.to_pem())
    }

    async fn sign(&self, order: &LeafOrder) -> Result<Issued, RemoteError> {
        if let Err(e) = self.renew_identity_if_due().await {
            // Not fatal while the current identity still works; the renewal loop retries.
            tracing::warn!(error = %e, "renewing the agent identity failed");
        }
        let live = self.live();
        if !live.identity.is_valid_at(OffsetDateTime::now_utc()) {
            return Err(RemoteError::IdentityExpired {
                not_after: live.identity.not_after,
            });
        }
        let (key, csr) = key_and_csr(order.name.as_str(), &order.sans)?;
        let resp: CertResponse =
            http::call(live.client.post(self.url("v1/sign")?).json(&SignRequest {
                csr,
                ttl: Some(fmt_duration(order.ttl)),
                usage: Some(order.usage.to_string()),
            }))
            .await?;
        issued_from(&resp, key)
    }
}

impl CertSource for RemoteSource {
    async fn issue(&self, order: &LeafOrder) -> Result<Issued, SourceError> {
        self.sign(order).await.map_err(SourceError::from)
    }

    /// The CA's bundle now, or the last good one while the CA is unreachable.
    async fn bundle(&self) -> Result<String, SourceError> {
        match self.refresh_bundle().await {
            Ok(pem) => Ok(pem),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "using the last known CA bundle");
                Ok(self.live().trust.to_pem())
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Live {
    fn new(trust: TrustedBundle, identity: Identity) -> Result<Self, RemoteError> {
        let client = http::verified_client(&trust, Some(&identity))?;
        let renew_at = renew_at(
            identity.not_before.into(),
            identity.not_after.into(),
            rand::random(),
        );
        Ok(Self {
            trust,
            identity,
            renew_at,
            client,
        })
    }
}

fn parse_url(ca_url: &str) -> Result<Url, RemoteError> {
    let bad = |reason: &str| RemoteError::BadUrl {
        url: ca_url.to_string(),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(ca_url).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(bad("must be https://"));
    }
    if url.host().is_none() {
        return Err(bad("needs a host"));
    }
    // `join` treats the last path segment as a file unless it ends in '/'.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The stored pin, checked against `--ca-fingerprint`; or, on first contact, the CA's bundle
/// fetched without verification and accepted only if its root matches the pin.
async fn pinned_trust(
    base: &Url,
    pin: &str,
    files: &AgentFiles,
) -> Result<TrustedBundle, RemoteError> {
    if let Some(root_pem) = files.read_optional(&files.root())? {
        let stored = TrustedBundle::from_pem(&root_pem, pin).map_err(|e| match e {
            RemoteError::FingerprintMismatch { actual, pinned } => {
                RemoteError::StoredRootMismatch {
                    path: files.root().display().to_string(),
                    stored: actual,
                    pinned,
                }
            }
            other => other,
        })?;
        // The last bundle adds the intermediates; without it the root alone is enough.
        let bundle = files
            .read_optional(&files.bundle())?
            .and_then(|pem| TrustedBundle::from_pem(&pem, pin).ok());
        return Ok(bundle.unwrap_or(stored));
    }
    let url = base.join("roots.pem").map_err(|e| RemoteError::BadUrl {
        url: base.to_string(),
        reason: e.to_string(),
    })?;
    let pem = http::call_text(http::first_contact_client()?.get(url)).await?;
    let trust = TrustedBundle::from_pem(&pem, pin)?;
    let root_pem = super::pem::cert_to_pem(trust.root());
    files.write(&files.root(), &root_pem, Mode::Public)?;
    files.write(&files.bundle(), &trust.to_pem(), Mode::Public)?;
    tracing::info!(fingerprint = %pin, "pinned the CA root on first contact");
    Ok(trust)
}

/// Spends the agent token for a client certificate, stored before it is used.
async fn enrol(
    base: &Url,
    trust: &TrustedBundle,
    token_file: &Path,
    files: &AgentFiles,
) -> Result<Identity, RemoteError> {
    let token_err = |reason: String| RemoteError::Token {
        path: token_file.display().to_string(),
        reason,
    };
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| token_err(e.to_string()))?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(token_err("the file is empty".into()));
    }
    let (key, csr) = key_and_csr("certdock-agent", &[])?;
    let url = base.join("v1/sign").map_err(|e| RemoteError::BadUrl {
        url: base.to_string(),
        reason: e.to_string(),
    })?;
    let resp: CertResponse = http::call(
        http::verified_client(trust, None)?
            .post(url)
            .bearer_auth(&token)
            .json(&SignRequest {
                csr,
                ttl: None,
                usage: Some(Usage::CLIENT.to_string()),
            }),
    )
    .await?;
    let identity = Identity::new(key, &resp.fullchain)?;
    // Stored at once: the token is spent, this certificate is the agent's only way back in.
    files.write(&files.identity(), &identity.to_pem(), Mode::Secret)?;
    tracing::info!(name = %identity.name, serial = %identity.serial, "enrolled with the CA");
    Ok(identity)
}

/// A fresh P-256 key and a CSR for `cn` and `sans`.
fn key_and_csr(cn: &str, sans: &[San]) -> Result<(SecretPem, String), RemoteError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| RemoteError::Key(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| RemoteError::Key(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s {
            San::Ip(ip) => Ok(rcgen::SanType::IpAddress(*ip)),
            San::Dns(d) => d
                .as_str()
                .try_into()
                .map(rcgen::SanType::DnsName)
                .map_err(|e: rcgen::Error| RemoteError::Key(e.to_string())),
        })
        .collect::<Result<_, _>>()?;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| RemoteError::Key(e.to_string()))?;
    Ok((SecretPem::from_key(&key), csr))
}

/// The CA's answer as an [`Issued`], after checking that it certifies our key.
fn issued_from(resp: &CertResponse, key: SecretPem) -> Result<Issued, RemoteError> {
    let bad = |e: &dyn std::fmt::Display| RemoteError::BadResponse(e.to_string());
    let cert_der = certs_from_pem("certificate", &resp.certificate)
        .map_err(|e| bad(&e))?
        .remove(0);
    let parsed = parse_cert("certificate", &cert_der).map_err(|e| bad(&e))?;
    let ours = KeyPair::from_pem(key.secret_pem()).map_err(|e| bad(&e))?;
    if parsed.public_key().raw != ours.subject_public_key_info().as_slice() {
        return Err(RemoteError::BadResponse(
            "the certificate is not for the key this agent sent".into(),
        ));
    }
    Ok(Issued {
        serial: hex::encode(parsed.raw_serial()),
        not_before: parsed.validity().not_before.to_datetime(),
        not_after: parsed.validity().not_after.to_datetime(),
        cert_pem: resp.certificate.clone(),
        chain_pem: resp.chain.clone(),
        ca_pem: resp.ca.clone(),
        key: Some(key),
        cert_der,
    })
}
