//! The forward-auth decision on one host: is this client certificate one of ours (chains to the
//! CA bundle, client usage, valid now), not revoked, and admitted by the server's allow list?
//!
//! Everything it needs is in memory: the trust (CA bundle) and the revoked serials are swapped
//! in whole by whoever follows the CA (the ledger in `run`, the CRL in an agent), so a decision
//! does no I/O and a revocation counts from the next request on. A certificate's chain is
//! verified once and remembered by its digest; revocation and expiry are checked every time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::core::authz::{AllowList, Client};
use crate::core::names::CertName;

/// Bound on remembered chain checks; past it the memory starts over (it is only a cache).
const VERIFIED_CACHE: usize = 16_384;

/// Why a caller is refused. The API maps each to 403 with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the client certificate is unreadable: {0}")]
    Unreadable(String),
    #[error("the client certificate was not issued by this CA for client use: {0}")]
    NotOurs(String),
    #[error("the client certificate expired or is not yet valid")]
    NotValidNow,
    #[error("the client certificate (serial {serial}) is revoked")]
    Revoked { serial: String },
    #[error("{client} is not allowed to call {server}")]
    NotAllowed { client: String, server: String },
    #[error("the decider has no CA bundle yet")]
    NoTrust,
}

impl Refusal {
    /// The stable `error` code of the API's answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unreadable(_) => "bad_client_certificate",
            Refusal::NotOurs(_) => "unknown_certificate",
            Refusal::NotValidNow => "certificate_expired",
            Refusal::Revoked { .. } => "revoked",
            Refusal::NotAllowed { .. } => "not_allowed",
            Refusal::NoTrust => "ca_unavailable",
        }
    }
}

/// What a verified certificate says, kept per digest.
#[derive(Debug, Clone)]
struct Verified {
    client: Client,
    serial: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

/// The CA certificates and revocations the decider trusts now; replaced whole.
#[derive(Debug, Default)]
struct Trust {
    /// The root(s) and intermediates, DER.
    roots: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    revoked: HashSet<Vec<u8>>,
}

/// Decides forward-auth requests from memory. Cheap to share (`Arc`); readers never wait on I/O.
#[derive(Debug, Default)]
pub struct Decider {
    trust: RwLock<Arc<Trust>>,
    verified: RwLock<HashMap<[u8; 32], Verified>>,
}

impl Decider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the trusted CA certificates: self-signed ones are anchors, the rest are
    /// intermediates. Remembered chain checks are dropped (a CA may have left).
    pub fn set_bundle(&self, certs: &[CertificateDer<'static>]) {
        let (roots, intermediates) = certs.iter().cloned().partition(is_self_signed);
        let revoked = self.read_trust().revoked.clone();
        self.replace(Trust {
            roots,
            intermediates,
            revoked,
        });
        if let Ok(mut v) = self.verified.write() {
            v.clear();
        }
    }

    /// [`Decider::set_bundle`] unless `certs` are what it trusts already (a periodic refresh
    /// must not forget every cached chain check).
    pub fn set_bundle_if_changed(&self, certs: &[CertificateDer<'static>]) {
        let t = self.read_trust();
        let same = t.roots.len() + t.intermediates.len() == certs.len()
            && certs
                .iter()
                .all(|c| t.roots.contains(c) || t.intermediates.contains(c));
        if !same {
            self.set_bundle(certs);
        }
    }

    /// Replaces the revoked serials (big-endian bytes, as in the certificate).
    pub fn set_revoked(&self, serials: impl IntoIterator<Item = Vec<u8>>) {
        let t = self.read_trust();
        self.replace(Trust {
            roots: t.roots.clone(),
            intermediates: t.intermediates.clone(),
            revoked: serials.into_iter().map(strip_leading_zeros).collect(),
        });
    }

    /// Whether the serial (hex, as the inventory and the CA's answers write it) is among the
    /// revoked ones: how a holder of a certificate (an agent's listener) learns of its own.
    pub fn is_revoked_hex(&self, serial: &str) -> bool {
        hex::decode(serial)
            .map(strip_leading_zeros)
            .is_ok_and(|s| self.read_trust().revoked.contains(&s))
    }

    fn read_trust(&self) -> Arc<Trust> {
        // A poisoned lock only means a writer panicked mid-swap of an `Arc`: the value is whole.
        self.trust
            .read()
            .map_or_else(|p| p.into_inner().clone(), |t| t.clone())
    }

    fn replace(&self, t: Trust) {
        match self.trust.write() {
            Ok(mut g) => *g = Arc::new(t),
            Err(p) => *p.into_inner() = Arc::new(t),
        }
    }

    /// The client a certificate proves, if it is ours, valid at `now` and not revoked.
    pub fn verify(&self, der: &[u8], now: OffsetDateTime) -> Result<Client, Refusal> {
        let trust = self.read_trust();
        if trust.roots.is_empty() {
            return Err(Refusal::NoTrust);
        }
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .try_into()
            .map_err(|_| Refusal::Unreadable("digest".into()))?;
        let cached = self
            .verified
            .read()
            .ok()
            .and_then(|v| v.get(&digest).cloned());
        let v = match cached {
            Some(v) => v,
            None => {
                let v = verify_chain(&trust, der, now)?;
                if let Ok(mut map) = self.verified.write() {
                    if map.len() >= VERIFIED_CACHE {
                        map.clear();
                    }
                    map.insert(digest, v.clone());
                }
                v
            }
        };
        let t = now.unix_timestamp();
        if t < v.not_before || t >= v.not_after {
            return Err(Refusal::NotValidNow);
        }
        if trust.revoked.contains(&v.serial) {
            return Err(Refusal::Revoked {
                serial: hex::encode(&v.serial),
            });
        }
        Ok(v.client)
    }

    /// The whole decision for a call to `server`, whose callers are `allow`.
    pub fn decide(
        &self,
        der: &[u8],
        server: &str,
        allow: &AllowList,
        now: OffsetDateTime,
    ) -> Result<Client, Refusal> {
        let client = self.verify(der, now)?;
        if allow.admits(&client) {
            Ok(client)
        } else {
            Err(Refusal::NotAllowed {
                client: client.identity.to_string(),
                server: server.to_string(),
            })
        }
    }
}

fn strip_leading_zeros(mut s: Vec<u8>) -> Vec<u8> {
    let zeros = s.iter().take_while(|b| **b == 0).count();
    s.drain(..zeros.min(s.len().saturating_sub(1)));
    s
}

fn is_self_signed(der: &CertificateDer<'static>) -> bool {
    X509Certificate::from_der(der)
        .is_ok_and(|(_, c)| c.subject() == c.issuer() && c.verify_signature(None).is_ok())
}

fn verify_chain(trust: &Trust, der: &[u8], now: OffsetDateTime) -> Result<Verified, Refusal> {
    let cert = CertificateDer::from(der);
    let ee = EndEntityCert::try_from(&cert).map_err(|e| Refusal::Unreadable(format!("{e:?}")))?;
    let anchors = trust
        .roots
        .iter()
        .filter_map(|r| anchor_from_trusted_cert(r).ok())
        .collect::<Vec<_>>();
    let at = UnixTime::since_unix_epoch(Duration::from_secs(now.unix_timestamp().max(0) as u64));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &trust.intermediates,
        at,
        KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            Refusal::NotValidNow
        }
        other => Refusal::NotOurs(format!("{other:?}")),
    })?;
    let (_, parsed) =
        X509Certificate::from_der(der).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or_else(|| Refusal::NotOurs("no subject CN".into()))?;
    let identity = CertName::parse(cn).map_err(|e| Refusal::NotOurs(e.to_string()))?;
    let uris: Vec<&str> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Verified {
        client: Client::new(identity, uris),
        serial: strip_leading_zeros(parsed.raw_serial().to_vec()),
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests;
