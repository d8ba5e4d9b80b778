//! First contact with the CA: the pinned root, then enrolment with the agent token.

use std::path::Path;

use reqwest::Url;

use super::RemoteError;
use super::csr::key_and_csr;
use super::http;
use super::store::{AgentFiles, Identity, TrustedBundle};
use crate::core::names::Usage;
use crate::core::wire::{CertResponse, SignRequest};
use crate::store::atomic::Mode;

/// `--ca-url`: https only, with a trailing `/` so that `join("v1/sign")` appends.
pub fn parse_url(ca_url: &str) -> Result<Url, RemoteError> {
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
pub async fn pinned_trust(
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
            .and_then(|pem| TrustedBundle::from_pem_with(&pem, pin, &stored.custody).ok());
        return Ok(bundle.unwrap_or(stored));
    }
    let url = base.join("roots.pem").map_err(|e| RemoteError::BadUrl {
        url: base.to_string(),
        reason: e.to_string(),
    })?;
    let pem = http::call_text(http::first_contact_client()?.get(url)).await?;
    let trust = TrustedBundle::from_pem(&pem, pin)?;
    files.write(&files.root(), &trust.custody_pem(), Mode::Public)?;
    files.write(&files.bundle(), &trust.to_pem(), Mode::Public)?;
    tracing::info!(fingerprint = %pin, "pinned the CA root on first contact");
    Ok(trust)
}

/// Spends the agent token for a client certificate, stored before it is used.
pub async fn enrol(
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
                enrol: true,
                groups: Vec::new(),
            }),
    )
    .await?;
    let identity = Identity::new(key, &resp.fullchain)?;
    // Stored at once: the token is spent, this certificate is the agent's only way back in.
    files.write(&files.identity(), &identity.to_pem(), Mode::Secret)?;
    tracing::info!(name = %identity.name, serial = %identity.serial, "enrolled with the CA");
    Ok(identity)
}
