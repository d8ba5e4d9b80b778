//! THE one place that decides who may sign what: a caller (the operator, the controller,
//! certdock itself, a bootstrap token, an enrolled agent, a certificate renewing itself) and
//! what it asks become one [`Authorized`] request, with the final names, usage, lifetime, key,
//! requester and the name policy that applies, or a refusal saying why.

use std::collections::BTreeSet;
use std::time::Duration;

use rcgen::SubjectPublicKeyInfo;
use time::OffsetDateTime;

use super::CaError;
use super::csr::Csr;
use super::issue::BACKDATE;
use super::keys::KeyType;
use super::local::LocalCa;
use super::locks::read;
use crate::core::authz::GroupName;
use crate::core::names::{CertName, San, Usage, traefik_client};
use crate::core::policy::{NamePolicy, NameRule};
use crate::store::requester::Requester;
use crate::store::tokens::{RedeemError, TokenError, TokenGrant, TokenKind};

mod rotate;
mod view;
pub use rotate::Rotator;
pub use view::{ADMIN_GROUP, Viewer};

/// A request the CA has agreed to sign, pending only the name policy it carries (checked
/// by `sign`, so that a refused name spends a token exactly as before). Built only here.
pub struct Authorized<K> {
    pub(super) name: CertName,
    pub(super) sans: Vec<San>,
    pub(super) usage: Usage,
    pub(super) groups: BTreeSet<GroupName>,
    pub(super) ttl: Duration,
    pub(super) key: K,
    pub(super) requester: Requester,
    /// The CA's policy, narrowed by a token's or an agent's scope, or the one for certdock's
    /// own names.
    pub(super) names: NamePolicy,
    /// Recorded with an agent's identity: the names it may sign for. Kept on renewal.
    pub(super) agent_scope: Option<Vec<NameRule>>,
}

impl<K> Authorized<K> {
    pub fn requester(&self) -> &Requester {
        &self.requester
    }
}

/// Callers in this process, for whom certdock makes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `certdock issue` on the CA host.
    Operator,
    /// The controller, for a labelled container.
    Controller,
    /// The API's own certificate, for `--api-name`.
    ApiCertificate,
    /// The controller's client certificate for Traefik itself.
    ProxyClient,
}

/// What a local caller asks for.
#[derive(Debug, Clone)]
pub struct Order {
    pub name: CertName,
    pub sans: Vec<San>,
    pub usage: Usage,
    /// `certdock.groups`, bound to the certificate.
    pub groups: BTreeSet<GroupName>,
    /// `None`: the CA's default lifetime.
    pub ttl: Option<Duration>,
    pub key_type: KeyType,
}

/// What a CSR asks for besides its names and key.
#[derive(Debug)]
pub struct CsrAsk {
    pub csr: Csr,
    pub ttl: Option<Duration>,
    /// `None`: server and client.
    pub usage: Option<Usage>,
    /// The requester is an agent enrolling: only an `agent` token will do.
    pub enrol: bool,
    /// Groups an agent's controller asks for (from `certdock.groups` on its host). Only an
    /// enrolled agent may ask: labels are its authority; a token's holder has none.
    pub groups: BTreeSet<GroupName>,
}

/// Callers over the API, who hold their own key and present a credential.
pub enum Remote<'a> {
    /// A bootstrap token: a `sign` token signs within its scope; an `agent` token enrols.
    Token { secret: &'a str, ask: CsrAsk },
    /// An enrolled agent's client certificate (DER), signing within the agent's scope.
    Agent { presented: &'a [u8], ask: CsrAsk },
    /// The client certificate on the connection renewing itself, optionally with a new key
    /// (a PEM CSR, read only once the certificate checks out).
    Renewal {
        presented: &'a [u8],
        csr_pem: Option<&'a str>,
    },
    /// The finalize of an ACME order whose every identifier this account proved control of
    /// (`acme` checks the challenges and that the CSR names exactly the order's identifiers);
    /// the names still pass the CA's policy, like every other path.
    AcmeOrder {
        account: &'a str,
        order: &'a str,
        csr: Csr,
        ttl: Option<Duration>,
    },
}

/// Who may revoke a certificate.
pub enum Revoker<'a> {
    /// An `admin` token: any certificate, any identity.
    AdminToken(&'a str),
    /// The certificate on the connection (DER): itself; an admin's certificate (see
    /// [`ADMIN_GROUP`]) any certificate and any identity.
    Itself(&'a [u8]),
}

/// What a revocation reaches (each also the live certificates renewed from it).
#[derive(Debug, Clone, Copy)]
pub enum RevokeTarget<'a> {
    /// One certificate, by its serial (normalised).
    Serial(&'a str),
    /// Every live certificate of an identity (`certdock.name`, the CN).
    Identity(&'a str),
}

/// Why a caller may not have what it asks. Malformed input and CA failures pass through as
/// [`AuthError::Ca`].
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("token store: {0}")]
    TokenStore(#[source] std::io::Error),
    #[error(
        "an agent enrols only with an agent token, and this is a {} token (it was not spent): \
         create one with `certdock token create --kind agent --name NAME`",
        kind_name(*kind)
    )]
    NotAnAgentToken { kind: TokenKind },
    #[error(
        "the client certificate is not an enrolled agent's; it may only renew or revoke itself"
    )]
    NotAnAgent,
    #[error(
        "this client certificate is not an admin's (`certdock issue NAME --usage client --admin`)"
    )]
    NotAnAdmin,
    #[error(
        "a certificate may only revoke itself (and its renewals); revoking another certificate or an identity takes an admin token or an admin's certificate"
    )]
    NotYourCertificate,
    #[error(
        "groups are set by `certdock.groups` labels on a certdock host (run or agent), not by a token"
    )]
    GroupsNeedAnAgent,
    #[error("the token's name {name:?} is not a valid agent name: {reason}")]
    BadAgentName { name: String, reason: String },
    #[error(transparent)]
    Ca(#[from] CaError),
}

fn kind_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Sign => "sign",
        TokenKind::Agent => "agent",
        TokenKind::Admin => "admin",
        TokenKind::Acme => "acme",
    }
}

impl From<RedeemError> for AuthError {
    fn from(e: RedeemError) -> Self {
        match e {
            RedeemError::Token(t) => AuthError::Token(t),
            RedeemError::Io(io) => AuthError::TokenStore(io),
        }
    }
}

impl LocalCa {
    /// A local caller's order, with a key certdock makes.
    pub fn authorize_local(
        &self,
        who: Local,
        order: Order,
    ) -> Result<Authorized<KeyType>, CaError> {
        let (names, requester) = match who {
            Local::Operator => (self.policy.names.clone(), Requester::Cli),
            Local::Controller => (self.policy.names.clone(), Requester::Controller),
            // certdock's own names come from the operator's settings (`--api-name`) or are
            // fixed: allow/deny bound what labels, tokens and agents ask, not these. They are
            // still valid names (by type) and still pass the wildcard and count rules.
            Local::ApiCertificate => (self.policy.names.for_ca_itself(), Requester::Api),
            Local::ProxyClient => (self.policy.names.for_ca_itself(), Requester::Controller),
        };
        Ok(Authorized {
            ttl: self.policy.ttls.resolve(order.ttl)?,
            name: order.name,
            sans: order.sans,
            usage: order.usage,
            groups: order.groups,
            key: order.key_type,
            requester,
            names,
            agent_scope: None,
        })
    }

    /// A caller over the API, with the key it holds.
    ///
    /// Malformed input, a refused lifetime and an enrolment with the wrong kind of token are
    /// refused before a token is spent.
    pub fn authorize_remote(
        &self,
        req: Remote<'_>,
        now: OffsetDateTime,
    ) -> Result<Authorized<SubjectPublicKeyInfo>, AuthError> {
        match req {
            Remote::Agent { presented, ask } => {
                let ttl = self.policy.ttls.resolve(ask.ttl).map_err(CaError::from)?;
                let agent = self.verify_presented(presented, now)?;
                let scope = agent.agent_scope.ok_or(AuthError::NotAnAgent)?;
                let groups = ask.groups.clone();
                let proxy_client = is_proxy_client(&ask);
                let mut auth = self.within(ask, ttl, &scope, Requester::Agent(agent.name));
                auth.groups = groups;
                if proxy_client {
                    // The agent's own Traefik client certificate (what its forward-auth
                    // decider answers): certdock's internal name, outside any token scope.
                    auth.names = self.policy.names.for_ca_itself();
                }
                Ok(auth)
            }
            Remote::Token { secret, ask } => {
                let ttl = self.policy.ttls.resolve(ask.ttl).map_err(CaError::from)?;
                // Refused before the token is spent, like every malformed request.
                if !ask.groups.is_empty() {
                    return Err(AuthError::GroupsNeedAnAgent);
                }
                let enrol = ask.enrol;
                let kinds: &[TokenKind] = if enrol {
                    &[TokenKind::Agent]
                } else {
                    &[TokenKind::Sign, TokenKind::Agent]
                };
                let grant = self
                    .with_tokens(|t| t.redeem(secret, kinds, now.unix_timestamp()))?
                    .map_err(|e| match e {
                        // `redeem` checks the kind before it spends the token.
                        RedeemError::Token(TokenError::WrongKind { actual, .. }) if enrol => {
                            AuthError::NotAnAgentToken { kind: actual }
                        }
                        other => other.into(),
                    })?;
                if grant.kind == TokenKind::Agent {
                    return self.enrolment(grant, ask.csr, ttl);
                }
                let requester = Requester::Token(grant.id);
                Ok(self.within(ask, ttl, &grant.allow, requester))
            }
            Remote::Renewal { presented, csr_pem } => Ok(self.renewal(presented, csr_pem, now)?),
            Remote::AcmeOrder {
                account,
                order,
                csr,
                ttl,
            } => {
                let ttl = self.policy.ttls.resolve(ttl).map_err(CaError::from)?;
                let requester = Requester::Acme {
                    account: account.to_string(),
                    order: order.to_string(),
                };
                // Server and client use, like a label's default: ACME clients mostly serve
                // TLS, and certdock's mTLS peers may present the same certificate as clients.
                let ask = CsrAsk {
                    csr,
                    ttl: None,
                    usage: Some(Usage::BOTH),
                    enrol: false,
                    groups: BTreeSet::new(),
                };
                Ok(self.within(ask, ttl, &[], requester))
            }
        }
    }

    /// Revocation of `what` by `who`; an admin token is spent here. A certificate may revoke
    /// itself (and so its renewals); only an admin may revoke another one or an identity.
    pub fn authorize_revoke(
        &self,
        who: Revoker<'_>,
        what: RevokeTarget<'_>,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        match who {
            Revoker::AdminToken(secret) => {
                let grant = self.with_tokens(|t| {
                    t.redeem(secret, &[TokenKind::Admin], now.unix_timestamp())
                })??;
                tracing::info!(?what, token = %grant.id, "revoking with an admin token");
            }
            Revoker::Itself(der) => {
                let own = self.verify_presented(der, now)?.serial;
                if matches!(what, RevokeTarget::Serial(serial) if serial == own) {
                    tracing::info!(?what, "revoking by the certificate itself");
                } else if self.authorize_view(Viewer::Certificate(der), now).is_ok() {
                    tracing::info!(?what, admin = %own, "revoking with an admin's certificate");
                } else {
                    return Err(AuthError::NotYourCertificate);
                }
            }
        }
        Ok(())
    }

    /// A CSR's own names, within the CA's policy narrowed by `scope`.
    fn within(
        &self,
        ask: CsrAsk,
        ttl: Duration,
        scope: &[NameRule],
        requester: Requester,
    ) -> Authorized<SubjectPublicKeyInfo> {
        Authorized {
            name: ask.csr.name,
            sans: ask.csr.sans,
            usage: ask.usage.unwrap_or(Usage::BOTH),
            groups: BTreeSet::new(),
            ttl,
            key: ask.csr.key,
            requester,
            names: self.policy.names.narrowed(scope),
            agent_scope: None,
        }
    }

    /// An agent's enrolment: a client certificate named after its token (the CA picks the
    /// identity, not the CSR, whose names are ignored), recording the token's scope.
    fn enrolment(
        &self,
        grant: TokenGrant,
        csr: Csr,
        ttl: Duration,
    ) -> Result<Authorized<SubjectPublicKeyInfo>, AuthError> {
        let name = CertName::parse(&grant.name).map_err(|e| AuthError::BadAgentName {
            name: grant.name.clone(),
            reason: e.to_string(),
        })?;
        let san = San::parse(name.as_str()).map_err(|e| CaError::BadCsr {
            reason: format!("agent name {name}: {e}"),
        })?;
        Ok(Authorized {
            name,
            sans: vec![san],
            usage: Usage::CLIENT,
            groups: BTreeSet::new(),
            ttl,
            key: csr.key,
            requester: Requester::AgentToken(grant.id),
            names: self.policy.names.clone(),
            agent_scope: Some(grant.allow),
        })
    }

    /// Same names, usage and scope as the presented certificate, a lifetime like its own.
    /// Refused when the certificate is not ours, revoked or expired.
    fn renewal(
        &self,
        presented: &[u8],
        csr_pem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Authorized<SubjectPublicKeyInfo>, CaError> {
        let (entry, facts) = {
            let ca = read(&self.authority, "authority")?;
            self.ledger.verify_presented(&ca, presented, now)?
        };
        let key = match csr_pem {
            Some(pem) => Csr::parse(pem)?.key,
            None => {
                SubjectPublicKeyInfo::from_der(&facts.spki_der).map_err(|e| CaError::BadCsr {
                    reason: format!("public key of the presented certificate: {e}"),
                })?
            }
        };
        let lifetime = Duration::from_secs((entry.not_after - entry.not_before).max(0) as u64)
            .saturating_sub(BACKDATE);
        Ok(Authorized {
            name: CertName::parse(&entry.name).map_err(|e| CaError::Internal(e.to_string()))?,
            sans: entry.sans,
            usage: entry.usage,
            // A renewal keeps what the CA bound to the identity; a label change on the client
            // reaches its next certificate through the controller, not through renewal.
            groups: entry.groups,
            ttl: lifetime.clamp(self.policy.ttls.min, self.policy.ttls.max),
            key,
            requester: Requester::Renewal(entry.serial),
            names: self.policy.names.clone(),
            agent_scope: entry.agent_scope,
        })
    }
}

/// An agent's controller asking for certdock's Traefik client certificate: exactly its one
/// internal name, client usage only, no groups.
fn is_proxy_client(ask: &CsrAsk) -> bool {
    let internal = San::parse(traefik_client::CN).ok();
    ask.usage == Some(Usage::CLIENT)
        && ask.groups.is_empty()
        && ask.csr.name.as_str() == traefik_client::CN
        && ask.csr.sans.len() == 1
        && ask.csr.sans.first() == internal.as_ref()
}
