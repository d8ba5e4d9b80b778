//! [`RemoteSource`]: a certdock CA reached over its HTTPS API, for `certdock agent`.
//!
//! First contact pins the root by fingerprint, then the agent enrols with its single-use
//! `agent` token and from then on authenticates with its own client certificate. The CA names
//! the agent after its token (`certdock token create --kind agent --name host1.agents`): the
//! names in the enrolment CSR are ignored. Keys are made here and never leave the host.

mod bootstrap;
mod crl;
mod csr;
mod http;
mod listener;
mod store;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use reqwest::Url;
use time::OffsetDateTime;

use super::facts::issued_before_rollover;
use super::issue::Issued;
use super::pem::cert_to_pem;
use super::source::{CertSource, LeafOrder, RevokedSerials, SourceError, bare_serial};
use crate::core::policy::fmt_duration;
use crate::core::renew::{
    jitter_from_serial, reissue_after_rollover, renew_issued_at, retry_after,
};
use crate::core::wire::{CertResponse, RenewRequest, SignRequest};
use crate::store::atomic::Mode;
use bootstrap::{enrol, parse_url, pinned_trust};
use csr::{issued_from, key_and_csr};
use store::AgentFiles;

/// After a CA rollover, an agent's identity is re-issued under the new chain within this.
const IDENTITY_ROLLOVER_SPREAD: Duration = Duration::from_secs(60);
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
    /// The kept CRL last read (DER, empty for none) and its serials: read again while the
    /// file holds the same bytes, it answers with the same set (see [`CertSource::revoked`]).
    crl_seen: std::sync::Mutex<(Vec<u8>, RevokedSerials)>,
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
                crl_seen: Default::default(),
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
        let trust = TrustedBundle::from_pem_with(&pem, &self.inner.pin, &live.trust.custody)?;
        if trust.custody != live.trust.custody {
            // Only ever longer: a root joins only when a trusted root cross-signed it.
            self.inner
                .files
                .write(&self.inner.files.root(), &trust.custody_pem(), Mode::Public)?;
            tracing::info!(
                roots = trust.custody.len().div_ceil(2),
                "followed a CA root rotation signed by the pinned root"
            );
        }
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
                enrol: false,
                groups: order.groups.iter().map(ToString::to_string).collect(),
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

    /// From the CRL the agent's feed last kept (verified before it was kept, pulled every 2 s
    /// while the agent runs); none kept, none known.
    async fn revoked(&self) -> RevokedSerials {
        let der = match self.kept_crl() {
            Ok(der) => der.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kept CRL");
                return RevokedSerials::default();
            }
        };
        let mut seen = self
            .inner
            .crl_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.0 != der {
            let serials = if der.is_empty() {
                BTreeSet::new()
            } else {
                crl_serials(&der)
            };
            *seen = (der, Arc::new(serials));
        }
        seen.1.clone()
    }
}

/// The revoked serials of a CRL, as [`RevokedSerials`] holds them ([`bare_serial`]).
fn crl_serials(der: &[u8]) -> BTreeSet<String> {
    match x509_parser::parse_x509_crl(der) {
        Ok((_, crl)) => crl
            .iter_revoked_certificates()
            .map(|r| bare_serial(&hex::encode(r.raw_serial())).to_string())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the kept CRL does not parse");
            BTreeSet::new()
        }
    }
}

impl Live {
    fn new(trust: TrustedBundle, identity: Identity) -> Result<Self, RemoteError> {
        let client = http::verified_client(&trust, Some(&identity))?;
        let jitter = jitter_from_serial(&identity.serial);
        let mut renew_at = renew_issued_at(
            identity.not_before.into(),
            identity.not_after.into(),
            jitter,
        );
        // Issued before a CA rollover: re-issued under the new chain soon, spread by serial.
        let chain: String = identity.chain.iter().map(|c| cert_to_pem(c)).collect();
        if let Some(rolled_at) =
            issued_before_rollover(&trust.to_pem(), &chain, identity.not_before)
        {
            renew_at = reissue_after_rollover(
                rolled_at.into(),
                IDENTITY_ROLLOVER_SPREAD,
                jitter,
                renew_at,
            );
        }
        Ok(Self {
            trust,
            identity,
            renew_at,
            client,
        })
    }
}
