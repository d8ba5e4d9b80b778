//! Bootstrap tokens: random, stored only as a hash, single-use, expiring, scoped to names.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::journal::Journal;
use crate::core::policy::NameRule;

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// One `POST /v1/sign` for names within the token's scope.
    Sign,
    /// Enrols an agent: it receives a client certificate and may then sign within the scope.
    Agent,
    /// One `POST /v1/revoke` of any certificate.
    Admin,
    /// One ACME External Account Binding (RFC 8555 §7.3.4): its id is the EAB key id.
    Acme,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Created {
        id: String,
        /// SHA-256 of the secret part, hex. The secret itself is never stored.
        hash: String,
        name: String,
        token_kind: TokenKind,
        allow: Vec<NameRule>,
        expires_at: i64,
        /// `acme` tokens only: the HMAC key itself (base64url), which verifying a binding
        /// needs; the journal is mode 0600 like the CA keys.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac_key: Option<String>,
    },
    Used {
        id: String,
        at: i64,
    },
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub id: String,
    pub name: String,
    pub kind: TokenKind,
    pub allow: Vec<NameRule>,
    pub expires_at: i64,
}

struct Stored {
    grant: TokenGrant,
    hash: String,
    mac_key: Option<String>,
    used: bool,
}

/// A freshly made token's secret form, shown once to the operator.
pub struct TokenSecret(String);

impl TokenSecret {
    pub fn secret_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret([elided])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed (expected cdt_<id>_<secret>)")]
    Malformed,
    #[error("the token is unknown or its secret is wrong")]
    Unknown,
    #[error("the token has already been used")]
    Used,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for {actual:?}, not for {wanted:?}")]
    WrongKind {
        wanted: TokenKind,
        actual: TokenKind,
    },
}

pub struct Tokens {
    journal: Journal<Record>,
    by_id: HashMap<String, Stored>,
}

fn hash_secret(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

impl Tokens {
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let (journal, records) = Journal::open(&state_dir.join("tokens.log"))?;
        let mut t = Self {
            journal,
            by_id: HashMap::new(),
        };
        t.apply(records);
        Ok(t)
    }

    fn apply(&mut self, records: Vec<Record>) {
        for r in records {
            match r {
                Record::Created {
                    id,
                    hash,
                    name,
                    token_kind,
                    allow,
                    expires_at,
                    mac_key,
                } => {
                    self.by_id.insert(
                        id.clone(),
                        Stored {
                            grant: TokenGrant {
                                id,
                                name,
                                kind: token_kind,
                                allow,
                                expires_at,
                            },
                            hash,
                            mac_key,
                            used: false,
                        },
                    );
                }
                Record::Used { id, .. } => {
                    if let Some(s) = self.by_id.get_mut(&id) {
                        s.used = true;
                    }
                }
            }
        }
    }

    fn refresh(&mut self) -> io::Result<()> {
        match self.journal.refresh()? {
            Some(new) => self.apply(new),
            None => {
                let (j, all) = Journal::open(self.journal.path())?;
                self.journal = j;
                self.by_id.clear();
                self.apply(all);
            }
        }
        Ok(())
    }

    /// Makes a token. The caller holds the state lock.
    pub fn create(
        &mut self,
        name: &str,
        kind: TokenKind,
        allow: Vec<NameRule>,
        expires_at: i64,
    ) -> io::Result<(TokenGrant, TokenSecret)> {
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        };
        let rec = Record::Created {
            id: id.clone(),
            hash: hash_secret(&secret),
            name: name.to_string(),
            token_kind: kind,
            allow,
            expires_at,
            mac_key: (kind == TokenKind::Acme).then(|| secret.clone()),
        };
        self.journal.append(std::slice::from_ref(&rec))?;
        self.apply(vec![rec]);
        let grant = self.by_id[&id].grant.clone();
        Ok((grant, TokenSecret(format!("cdt_{id}_{secret}"))))
    }

    /// Checks a presented token and marks it used, durably, before returning its grant: a
    /// token is spent even when the request it came with later fails. The caller holds the
    /// state lock so that two processes cannot both spend it.
    pub fn redeem(
        &mut self,
        presented: &str,
        wanted: &[TokenKind],
        now: i64,
    ) -> Result<TokenGrant, RedeemError> {
        let (id, grant) = self.verify(presented, wanted, now)?;
        let rec = Record::Used { id, at: now };
        self.journal.append(std::slice::from_ref(&rec))?;
        self.apply(vec![rec]);
        Ok(grant)
    }

    /// Checks a presented token without spending it: for reading (an admin viewing status),
    /// where nothing changes. Refused exactly when [`Tokens::redeem`] would refuse it.
    pub fn check(
        &mut self,
        presented: &str,
        wanted: &[TokenKind],
        now: i64,
    ) -> Result<TokenGrant, RedeemError> {
        Ok(self.verify(presented, wanted, now)?.1)
    }

    /// The id and grant of a usable token of one of the `wanted` kinds.
    fn verify(
        &mut self,
        presented: &str,
        wanted: &[TokenKind],
        now: i64,
    ) -> Result<(String, TokenGrant), RedeemError> {
        let rest = presented
            .trim()
            .strip_prefix("cdt_")
            .ok_or(TokenError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
        self.refresh()?;
        let stored = self.by_id.get(id).ok_or(TokenError::Unknown)?;
        let presented_hash = hash_secret(secret);
        // Comparing digests, not secrets: an attacker learns nothing useful from the timing.
        if presented_hash != stored.hash {
            return Err(TokenError::Unknown.into());
        }
        if stored.used {
            return Err(TokenError::Used.into());
        }
        if stored.grant.expires_at <= now {
            return Err(TokenError::Expired.into());
        }
        if !wanted.contains(&stored.grant.kind) {
            return Err(TokenError::WrongKind {
                wanted: wanted[0],
                actual: stored.grant.kind,
            }
            .into());
        }
        Ok((id.to_string(), stored.grant.clone()))
    }
}

impl Tokens {
    /// Spends an `acme` token for an External Account Binding: `verify` gets its HMAC key and
    /// says whether the binding's MAC is right. Spent only when it is.
    pub fn redeem_eab(
        &mut self,
        key_id: &str,
        verify: impl FnOnce(&[u8]) -> bool,
        now: i64,
    ) -> Result<TokenGrant, RedeemError> {
        use base64::Engine;
        self.refresh()?;
        let stored = self.by_id.get(key_id).ok_or(TokenError::Unknown)?;
        if stored.grant.kind != TokenKind::Acme {
            return Err(TokenError::WrongKind {
                wanted: TokenKind::Acme,
                actual: stored.grant.kind,
            }
            .into());
        }
        let mac = stored
            .mac_key
            .as_deref()
            .and_then(|k| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k)
                    .ok()
            })
            .ok_or(TokenError::Unknown)?;
        if !verify(&mac) {
            return Err(TokenError::Unknown.into());
        }
        if stored.used {
            return Err(TokenError::Used.into());
        }
        if stored.grant.expires_at <= now {
            return Err(TokenError::Expired.into());
        }
        let grant = stored.grant.clone();
        let rec = Record::Used {
            id: key_id.to_string(),
            at: now,
        };
        self.journal.append(std::slice::from_ref(&rec))?;
        self.apply(vec![rec]);
        Ok(grant)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("token store: {0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_and_only_with_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tokens::open(dir.path()).unwrap();
        let (_, secret) = t.create("agent-1", TokenKind::Sign, vec![], 1000).unwrap();
        let s = secret.secret_str().to_string();
        let forged = format!("{}x", &s);
        assert!(matches!(
            t.redeem(&forged, &[TokenKind::Sign], 10),
            Err(RedeemError::Token(TokenError::Unknown))
        ));
        assert!(t.redeem(&s, &[TokenKind::Sign], 10).is_ok());
        // Another process (a fresh open) sees it spent too.
        let mut t2 = Tokens::open(dir.path()).unwrap();
        assert!(matches!(
            t2.redeem(&s, &[TokenKind::Sign], 10),
            Err(RedeemError::Token(TokenError::Used))
        ));
    }

    #[test]
    fn expired_and_wrong_kind_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tokens::open(dir.path()).unwrap();
        let (_, s1) = t.create("x", TokenKind::Sign, vec![], 100).unwrap();
        assert!(matches!(
            t.redeem(s1.secret_str(), &[TokenKind::Sign], 100),
            Err(RedeemError::Token(TokenError::Expired))
        ));
        let (_, s2) = t.create("y", TokenKind::Sign, vec![], 1000).unwrap();
        assert!(matches!(
            t.redeem(s2.secret_str(), &[TokenKind::Admin], 1),
            Err(RedeemError::Token(TokenError::WrongKind { .. }))
        ));
        assert!(t.redeem("garbage", &[TokenKind::Sign], 1).is_err());
    }
}
