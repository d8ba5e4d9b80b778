//! Who asked for a certificate, as recorded in the inventory: a typed value that reads and
//! writes the free-text form earlier releases stored (`cli`, `api:token:<id>`, `renew:<serial>`…).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Requester {
    /// `certdock issue` on the CA host.
    Cli,
    /// The controller in this process (labelled containers, Traefik's client certificate).
    Controller,
    /// The CA's own HTTPS API certificate.
    Api,
    /// `POST /v1/sign` with the `sign` token of this id.
    Token(String),
    /// An agent's enrolment with the `agent` token of this id.
    AgentToken(String),
    /// An enrolled agent of this name, signing over mTLS.
    Agent(String),
    /// Renewal over mTLS of the certificate with this serial.
    Renewal(String),
    /// The finalize of an ACME order: (account id, order id).
    Acme { account: String, order: String },
    /// Anything else a state directory holds (tests, benchmarks, older spellings): kept verbatim.
    Other(String),
}

impl Requester {
    /// Reads the stored form; never fails, since whatever is unknown is kept as [`Requester::Other`].
    pub fn parse(s: &str) -> Self {
        let tagged = |prefix: &str| s.strip_prefix(prefix).map(str::to_string);
        match s {
            "cli" => Requester::Cli,
            "controller" => Requester::Controller,
            "api" => Requester::Api,
            _ => tagged("api:token:")
                .map(Requester::Token)
                .or_else(|| tagged("api:agent-token:").map(Requester::AgentToken))
                .or_else(|| tagged("agent:").map(Requester::Agent))
                .or_else(|| tagged("renew:").map(Requester::Renewal))
                .or_else(|| {
                    let (account, order) = s.strip_prefix("acme:")?.split_once(":order:")?;
                    Some(Requester::Acme {
                        account: account.to_string(),
                        order: order.to_string(),
                    })
                })
                .unwrap_or_else(|| Requester::Other(s.to_string())),
        }
    }
}

/// The stored form, unchanged from earlier releases.
impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requester::Cli => f.write_str("cli"),
            Requester::Controller => f.write_str("controller"),
            Requester::Api => f.write_str("api"),
            Requester::Token(id) => write!(f, "api:token:{id}"),
            Requester::AgentToken(id) => write!(f, "api:agent-token:{id}"),
            Requester::Agent(name) => write!(f, "agent:{name}"),
            Requester::Renewal(serial) => write!(f, "renew:{serial}"),
            Requester::Acme { account, order } => write!(f, "acme:{account}:order:{order}"),
            Requester::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for Requester {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Requester {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Requester::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_spelling_reads_back_as_itself() {
        for (stored, typed) in [
            ("cli", Requester::Cli),
            ("controller", Requester::Controller),
            ("api", Requester::Api),
            ("api:token:0a1b", Requester::Token("0a1b".into())),
            ("api:agent-token:0a1b", Requester::AgentToken("0a1b".into())),
            (
                "agent:host1.agents",
                Requester::Agent("host1.agents".into()),
            ),
            ("renew:7f00aa", Requester::Renewal("7f00aa".into())),
            ("bench", Requester::Other("bench".into())),
            ("", Requester::Other(String::new())),
        ] {
            assert_eq!(Requester::parse(stored), typed, "{stored}");
            assert_eq!(typed.to_string(), stored);
            let json = serde_json::to_string(&typed).unwrap();
            assert_eq!(json, format!("{stored:?}"));
            assert_eq!(serde_json::from_str::<Requester>(&json).unwrap(), typed);
        }
    }
}
