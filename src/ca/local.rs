//! The CA as a service inside this process: policy, signing and the inventory, behind one API
//! that the CLI, the controller and the HTTPS API all call, so every path gets the same checks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use rcgen::{CertificateSigningRequestParams, SubjectPublicKeyInfo};
use time::OffsetDateTime;
use x509_parser::prelude::GeneralName;

use super::CaError;
use super::authority::{self, Authority, CaLifetimes};
use super::commit::{Committer, Durable};
use super::crl::{RevokedEntry, build_crl};
use super::issue::{Issued, LeafKey, LeafRequest, sign_leaf};
use super::keys::KeyType;
use super::pem::{csr_from_pem, parse_cert};
use crate::core::names::{CertName, San, Usage};
use crate::core::policy::{NamePolicy, NameRule, TtlPolicy};
use crate::store::inventory::{Inventory, IssuedRecord};
use crate::store::lock::StateLock;
use crate::store::tokens::Tokens;

/// The checks every issuance goes through.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub names: NamePolicy,
    pub ttls: TtlPolicy,
}

/// What a caller asks for; the CA decides whether and what it signs.
pub struct IssueRequest {
    pub name: CertName,
    pub sans: Vec<San>,
    pub usage: Usage,
    pub ttl: Option<Duration>,
    pub key: LeafKey,
    /// Recorded in the inventory: who asked.
    pub requester: String,
    /// Extra restriction on names (an agent's or a token's scope); never widens the policy.
    pub scope: Option<Vec<NameRule>>,
}

pub struct LocalCa {
    state_dir: PathBuf,
    authority: RwLock<Authority>,
    inventory: Arc<Mutex<Inventory>>,
    tokens: Mutex<Tokens>,
    policy: Policy,
    /// The inventory writer (see [`super::commit`]), started by the first issuance.
    commit: OnceLock<Committer>,
    /// SHA-256 of client certificates whose signature by a current intermediate was already
    /// checked: a keep-alive agent presents the same certificate on every request, and the check
    /// is an ECDSA verification, dearer than the signature the request then asks for.
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
}

/// Bound on [`LocalCa::verified`]; past it the set starts over (it is only a cache).
const VERIFIED_CACHE: usize = 4096;

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// How to open a CA's state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The CA must exist (CLI `issue`, `revoke`…).
    Existing,
    /// Create it when there is none (`run`, `serve`: a newcomer needs no `init`).
    CreateIfMissing(KeyType),
}

impl LocalCa {
    pub fn open(
        state_dir: &Path,
        policy: Policy,
        lifetimes: CaLifetimes,
        mode: OpenMode,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let authority = match mode {
            OpenMode::CreateIfMissing(kt) if !authority::exists(state_dir) => {
                match Authority::create(state_dir, kt, lifetimes, None, now) {
                    // Another process created it between our check and our lock: use theirs.
                    Err(CaError::AlreadyExists { .. }) => {
                        Authority::load(state_dir, lifetimes, now)?
                    }
                    other => other?,
                }
            }
            _ => Authority::load(state_dir, lifetimes, now)?,
        };
        let inventory = Inventory::open(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        let tokens = Tokens::open(state_dir).map_err(|e| CaError::io(state_dir, e))?;
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            authority: RwLock::new(authority),
            inventory: Arc::new(Mutex::new(inventory)),
            tokens: Mutex::new(tokens),
            policy,
            commit: OnceLock::new(),
            verified: Mutex::default(),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn lock_state(&self) -> Result<StateLock, CaError> {
        StateLock::exclusive(&self.state_dir).map_err(|e| CaError::io(&self.state_dir, e))
    }

    /// Checks the request against policy, signs it and records it durably before returning it:
    /// a certificate that is handed out is always in the inventory.
    pub fn issue(&self, req: IssueRequest, now: OffsetDateTime) -> Result<Issued, CaError> {
        self.issue_with(req, &self.policy.names, None, now)
    }

    /// The CA's own API certificate: the only issuance allowed to carry the reserved API names.
    pub fn issue_for_api(&self, req: IssueRequest, now: OffsetDateTime) -> Result<Issued, CaError> {
        self.issue_with(req, &self.policy.names.for_ca_itself(), None, now)
    }

    /// Enrols an agent: a client certificate named `name` (the CA picks the identity, not the
    /// CSR, whose names are ignored) for the CSR's key. Its inventory record carries `scope`,
    /// the names the agent may later sign for over mTLS.
    pub fn enrol_agent(
        &self,
        csr_pem: &str,
        name: CertName,
        ttl: Option<Duration>,
        scope: Vec<NameRule>,
        requester: String,
        now: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        let (_, _, spki) = parse_csr(csr_pem)?;
        let san = San::parse(name.as_str()).map_err(|e| CaError::BadCsr {
            reason: format!("agent name {name}: {e}"),
        })?;
        self.issue_with(
            IssueRequest {
                name,
                sans: vec![san],
                usage: Usage::CLIENT,
                ttl,
                key: LeafKey::Public(spki),
                requester,
                scope: None,
            },
            &self.policy.names,
            Some(scope),
            now,
        )
    }

    fn issue_with(
        &self,
        req: IssueRequest,
        names: &NamePolicy,
        agent_scope: Option<Vec<NameRule>>,
        now: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        self.issue_deferred(req, names, agent_scope, now)?.wait()
    }

    /// Checks and signs now; the record goes to the inventory writer, and the certificate is
    /// released by [`PendingIssue`] only once that record is durable.
    fn issue_deferred(
        &self,
        req: IssueRequest,
        names: &NamePolicy,
        agent_scope: Option<Vec<NameRule>>,
        now: OffsetDateTime,
    ) -> Result<PendingIssue, CaError> {
        let scoped;
        let names = match &req.scope {
            Some(scope) => {
                scoped = names.narrowed(scope);
                &scoped
            }
            None => names,
        };
        names.check(&req.sans)?;
        // The CN is a name too (old clients match it). A DNS-like one is always among the SANs;
        // one that spells an address (`10.9.1.2`) is not, so policy looks at it here.
        if let Ok(ip) = req.name.as_str().parse::<std::net::IpAddr>() {
            names.check(&[San::Ip(ip)])?;
        }
        let ttl = self.policy.ttls.resolve(req.ttl)?;
        let issued = {
            let ca = self
                .authority
                .read()
                .map_err(|_| CaError::Internal("authority lock poisoned".into()))?;
            sign_leaf(
                &ca,
                LeafRequest {
                    common_name: req.name.as_str(),
                    sans: &req.sans,
                    usage: req.usage,
                    ttl,
                    key: req.key,
                },
                now,
            )?
        };
        let record = IssuedRecord {
            serial: issued.serial.clone(),
            name: req.name.to_string(),
            sans: req.sans,
            usage: req.usage,
            not_before: issued.not_before.unix_timestamp(),
            not_after: issued.not_after.unix_timestamp(),
            requester: req.requester,
            agent_scope,
        };
        Ok(PendingIssue {
            durable: self.record(record),
            issued,
        })
    }

    /// Queues `record` for the inventory writer; the certificate may be handed out only once
    /// the returned [`Durable`] has resolved.
    fn record(&self, record: IssuedRecord) -> Durable {
        self.commit
            .get_or_init(|| Committer::start(self.state_dir.clone(), self.inventory.clone()))
            .submit(record)
    }

    /// Signs a PEM CSR: names come from the CSR's SANs (and CN), the key stays the requester's.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        ttl: Option<Duration>,
        usage: Usage,
        scope: Option<Vec<NameRule>>,
        requester: String,
        now: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        self.sign_parsed_csr(parse_csr(csr_pem)?, ttl, usage, scope, requester, now)
    }

    /// [`LocalCa::sign_csr`] for a CSR the caller has already parsed (and so verified) with
    /// [`parse_csr`]: the CSR's signature check is dearer than the certificate's signature.
    pub fn sign_parsed_csr(
        &self,
        csr: ParsedCsr,
        ttl: Option<Duration>,
        usage: Usage,
        scope: Option<Vec<NameRule>>,
        requester: String,
        now: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        self.sign_parsed_csr_deferred(csr, ttl, usage, scope, requester, now)?
            .wait()
    }

    /// [`LocalCa::sign_parsed_csr`] for async callers: signs now, and the certificate comes
    /// out of [`PendingIssue::durable`] once its record is on disk.
    pub fn sign_parsed_csr_deferred(
        &self,
        (name, sans, spki): ParsedCsr,
        ttl: Option<Duration>,
        usage: Usage,
        scope: Option<Vec<NameRule>>,
        requester: String,
        now: OffsetDateTime,
    ) -> Result<PendingIssue, CaError> {
        self.issue_deferred(
            IssueRequest {
                name,
                sans,
                usage,
                ttl,
                key: LeafKey::Public(spki),
                requester,
                scope,
            },
            &self.policy.names,
            None,
            now,
        )
    }

    /// Renews the certificate presented on an mTLS connection: same names and usage, new serial,
    /// optionally a new key. Refused when the certificate is not ours, revoked or expired.
    pub fn renew(
        &self,
        presented_der: &[u8],
        csr_pem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        self.renew_deferred(presented_der, csr_pem, now)?.wait()
    }

    /// [`LocalCa::renew`] for async callers (see [`LocalCa::sign_parsed_csr_deferred`]).
    pub fn renew_deferred(
        &self,
        presented_der: &[u8],
        csr_pem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<PendingIssue, CaError> {
        let entry = self.verify_presented(presented_der, now)?;
        let key = match csr_pem {
            Some(pem) => LeafKey::Public(parse_csr(pem)?.2),
            None => {
                let parsed = parse_cert("client certificate", presented_der)?;
                LeafKey::Public(
                    SubjectPublicKeyInfo::from_der(parsed.public_key().raw).map_err(|e| {
                        CaError::BadCsr {
                            reason: format!("public key of the presented certificate: {e}"),
                        }
                    })?,
                )
            }
        };
        let lifetime = Duration::from_secs((entry.not_after - entry.not_before).max(0) as u64)
            .saturating_sub(super::issue::BACKDATE);
        let ttl = lifetime.clamp(self.policy.ttls.min, self.policy.ttls.max);
        // An agent's renewed identity keeps its scope: renewal never changes what it may do.
        let agent_scope = entry.agent_scope.clone();
        self.issue_deferred(
            IssueRequest {
                name: CertName::parse(&entry.name).map_err(|e| CaError::Internal(e.to_string()))?,
                sans: entry.sans.clone(),
                usage: entry.usage,
                ttl: Some(ttl),
                key,
                requester: format!("renew:{}", entry.serial),
                scope: None,
            },
            &self.policy.names,
            agent_scope,
            now,
        )
    }

    /// The inventory record of a presented certificate, when this CA issued it (signature checked
    /// by the TLS layer or here), it is unexpired and not revoked.
    pub fn verify_presented(
        &self,
        der: &[u8],
        now: OffsetDateTime,
    ) -> Result<IssuedRecord, CaError> {
        let parsed = parse_cert("client certificate", der)?;
        let serial = hex::encode(parsed.raw_serial());
        self.verify_signature(&parsed, der)?;
        let mut inv = self
            .inventory
            .lock()
            .map_err(|_| CaError::Internal("inventory lock poisoned".into()))?;
        inv.refresh().map_err(|e| CaError::io(&self.state_dir, e))?;
        let entry = inv
            .get(&serial)
            .ok_or_else(|| CaError::UnknownCertificate {
                serial: serial.clone(),
            })?;
        if entry.revoked_at.is_some() {
            return Err(CaError::Revoked { serial });
        }
        if entry.record.not_after <= now.unix_timestamp()
            || parsed.validity().not_after.to_datetime() <= now
        {
            return Err(CaError::UnknownCertificate { serial });
        }
        Ok(entry.record.clone())
    }

    fn verify_signature(
        &self,
        cert: &x509_parser::certificate::X509Certificate<'_>,
        der: &[u8],
    ) -> Result<(), CaError> {
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .try_into()
            .map_err(|_| CaError::Internal("SHA-256 is 32 bytes".into()))?;
        if self.verified.lock().is_ok_and(|v| v.contains(&digest)) {
            return Ok(());
        }
        let ca = self
            .authority
            .read()
            .map_err(|_| CaError::Internal("authority lock poisoned".into()))?;
        for inter in ca.intermediates() {
            let parsed = parse_cert("intermediate", &inter.der)?;
            if cert.verify_signature(Some(parsed.public_key())).is_ok() {
                if let Ok(mut v) = self.verified.lock() {
                    if v.len() >= VERIFIED_CACHE {
                        v.clear();
                    }
                    v.insert(digest);
                }
                return Ok(());
            }
        }
        Err(CaError::UnknownCertificate {
            serial: hex::encode(cert.raw_serial()),
        })
    }

    /// Revokes a serial (hex, any case, colons allowed). Unknown serials are an error.
    pub fn revoke(&self, serial: &str, now: OffsetDateTime) -> Result<(), CaError> {
        let serial = normalize_serial(serial)?;
        let _lock = self.lock_state()?;
        let mut inv = self
            .inventory
            .lock()
            .map_err(|_| CaError::Internal("inventory lock poisoned".into()))?;
        inv.refresh().map_err(|e| CaError::io(&self.state_dir, e))?;
        if !inv
            .record_revoked(&serial, now.unix_timestamp())
            .map_err(|e| CaError::io(&self.state_dir, e))?
        {
            return Err(CaError::UnknownCertificate { serial });
        }
        Ok(())
    }

    /// The current CRL (DER), signed by the current intermediate.
    pub fn crl(&self, now: OffsetDateTime) -> Result<Vec<u8>, CaError> {
        let revoked = {
            let mut inv = self
                .inventory
                .lock()
                .map_err(|_| CaError::Internal("inventory lock poisoned".into()))?;
            inv.refresh().map_err(|e| CaError::io(&self.state_dir, e))?;
            inv.revoked_unexpired(now.unix_timestamp())
        };
        let entries: Vec<RevokedEntry<'_>> = revoked
            .iter()
            .map(|(s, at)| RevokedEntry {
                serial_hex: s,
                revoked_at: OffsetDateTime::from_unix_timestamp(*at).unwrap_or(now),
            })
            .collect();
        let ca = self
            .authority
            .read()
            .map_err(|_| CaError::Internal("authority lock poisoned".into()))?;
        build_crl(&ca, &entries, now.unix_timestamp().max(1) as u64, now)
    }

    /// Every CA certificate to trust now (root and intermediates), as one PEM bundle.
    pub fn bundle_pem(&self) -> String {
        self.authority
            .read()
            .map(|a| a.bundle_pem())
            .unwrap_or_default()
    }

    /// The CA certificates one by one, root first: (file stem, PEM).
    pub fn bundle_parts(&self) -> Vec<(String, String)> {
        self.authority
            .read()
            .map(|a| {
                a.bundle_certs()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        (
                            if i == 0 {
                                "root".to_string()
                            } else {
                                format!("intermediate-{}", &c.serial[..16.min(c.serial.len())])
                            },
                            c.pem.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn root_fingerprint(&self) -> String {
        self.authority
            .read()
            .map(|a| a.root_fingerprint())
            .unwrap_or_default()
    }

    /// What `GET /health` reports: whether the CA can sign now, and the instants that matter.
    pub fn signer_status(&self, now: OffsetDateTime) -> Result<SignerStatus, CaError> {
        let ca = self
            .authority
            .read()
            .map_err(|_| CaError::Internal("authority lock poisoned".into()))?;
        let (root, inter) = (ca.root(), ca.current());
        Ok(SignerStatus {
            can_sign: root.not_before <= now
                && now < root.not_after
                && inter.not_before <= now
                && now < inter.not_after,
            root_fingerprint: ca.root_fingerprint(),
            root_not_after: root.not_after,
            intermediate_serial: inter.serial.clone(),
            intermediate_not_after: inter.not_after,
        })
    }

    /// Periodic upkeep: rolls the intermediate over when due. Returns whether the bundle changed.
    pub fn maintain(&self, now: OffsetDateTime) -> Result<bool, CaError> {
        let mut ca = self
            .authority
            .write()
            .map_err(|_| CaError::Internal("authority lock poisoned".into()))?;
        let changed = ca.rollover_if_due(&self.state_dir, now)?;
        if changed {
            // An intermediate may have left the bundle: what it signed must be checked again.
            if let Ok(mut v) = self.verified.lock() {
                v.clear();
            }
        }
        Ok(changed)
    }

    /// Runs `f` on the token store with the state lock held.
    pub fn with_tokens<T>(&self, f: impl FnOnce(&mut Tokens) -> T) -> Result<T, CaError> {
        let _lock = self.lock_state()?;
        let mut t = self
            .tokens
            .lock()
            .map_err(|_| CaError::Internal("token lock poisoned".into()))?;
        Ok(f(&mut t))
    }

    /// Runs `f` on the inventory (refreshed first).
    pub fn with_inventory<T>(&self, f: impl FnOnce(&Inventory) -> T) -> Result<T, CaError> {
        let mut inv = self
            .inventory
            .lock()
            .map_err(|_| CaError::Internal("inventory lock poisoned".into()))?;
        inv.refresh().map_err(|e| CaError::io(&self.state_dir, e))?;
        Ok(f(&inv))
    }
}

/// A signed certificate waiting for its inventory record to be durable: it cannot be
/// unwrapped any other way, so no caller can hand it out early.
#[must_use = "the certificate is only released once its record is durable"]
pub struct PendingIssue {
    issued: Issued,
    durable: Durable,
}

impl PendingIssue {
    /// Blocks this thread until the record is on disk (CLI, blocking tasks).
    pub fn wait(self) -> Result<Issued, CaError> {
        self.durable.wait()?;
        Ok(self.issued)
    }

    /// Waits without blocking the async worker (the HTTPS API).
    pub async fn durable(self) -> Result<Issued, CaError> {
        self.durable.await_durable().await?;
        Ok(self.issued)
    }
}

/// The CA's signing readiness, from [`LocalCa::signer_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerStatus {
    /// The root and the signing intermediate are both within their validity now.
    pub can_sign: bool,
    pub root_fingerprint: String,
    pub root_not_after: OffsetDateTime,
    pub intermediate_serial: String,
    pub intermediate_not_after: OffsetDateTime,
}

/// Accepts `0A:1b…` or `0a1b…`; returns lower-case hex without separators.
pub fn normalize_serial(input: &str) -> Result<String, CaError> {
    let s: String = input
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() || s.len() > 40 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CaError::UnknownCertificate {
            serial: input.chars().take(64).collect(),
        });
    }
    Ok(s)
}

/// What [`parse_csr`] returns: the name, the SANs and the public key of a verified CSR.
pub type ParsedCsr = (CertName, Vec<San>, SubjectPublicKeyInfo);

/// The identity a CSR asks for: CN (or first SAN) as the name, its SANs, and its public key.
/// The CSR's signature is verified; any extensions it requests besides SANs are ignored:
/// the CA decides key usage, lifetime and CA status, never the requester.
pub fn parse_csr(pem: &str) -> Result<ParsedCsr, CaError> {
    if pem.len() > 64 * 1024 {
        return Err(CaError::BadCsr {
            reason: "larger than 64 KiB".into(),
        });
    }
    let der = csr_from_pem(pem)?;
    let params = CertificateSigningRequestParams::from_der(&der).map_err(|e| CaError::BadCsr {
        reason: format!("unreadable or badly signed: {e}"),
    })?;
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| CaError::BadCsr {
                reason: e.to_string(),
            })?;
    use x509_parser::prelude::FromDer;
    let mut sans = Vec::new();
    if let Some(exts) = parsed.requested_extensions() {
        for ext in exts {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for gn in &san.general_names {
                    let s = match gn {
                        GeneralName::DNSName(d) => San::parse(d),
                        GeneralName::IPAddress(b) => match b.len() {
                            4 => Ok(San::Ip(std::net::IpAddr::from(
                                <[u8; 4]>::try_from(*b).unwrap_or_default(),
                            ))),
                            16 => Ok(San::Ip(std::net::IpAddr::from(
                                <[u8; 16]>::try_from(*b).unwrap_or_default(),
                            ))),
                            _ => {
                                return Err(CaError::BadCsr {
                                    reason: "an IP SAN of odd length".into(),
                                });
                            }
                        },
                        other => {
                            return Err(CaError::BadCsr {
                                reason: format!(
                                    "unsupported SAN type {other:?}; only DNS names and IPs"
                                ),
                            });
                        }
                    };
                    sans.push(s.map_err(|e| CaError::BadCsr {
                        reason: e.to_string(),
                    })?);
                }
            }
        }
    }
    let cn = parsed
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    if let Some(cn) = &cn {
        // The CN is a name too: it must be among the SANs, so that policy sees it.
        let as_san = San::parse(cn).map_err(|e| CaError::BadCsr {
            reason: format!("subject CN: {e}"),
        })?;
        if !sans.contains(&as_san) {
            sans.insert(0, as_san);
        }
    }
    let first = sans.first().ok_or_else(|| CaError::BadCsr {
        reason: "no names: give a CN or SANs".into(),
    })?;
    let name = CertName::parse(cn.as_deref().unwrap_or(&first.to_string())).map_err(|e| {
        CaError::BadCsr {
            reason: e.to_string(),
        }
    })?;
    let spki = SubjectPublicKeyInfo::from_der(parsed.certification_request_info.subject_pki.raw)
        .map_err(|e| CaError::BadCsr {
            reason: format!("public key: {e}"),
        })?;
    drop(params);
    sans.dedup();
    Ok((name, sans, spki))
}
