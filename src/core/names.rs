//! Validated identity types: certificate names, DNS names, SANs and usages.
//!
//! Every name that reaches the CA passes through these constructors, whatever path it came by
//! (labels, CLI, `/v1/sign`, agents), so the rules live in one place.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a name was refused. Each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is empty")]
    Empty(String),
    #[error("{name:?} is {len} characters long; a DNS name may have at most 253")]
    TooLong { name: String, len: usize },
    #[error("{name:?} has a label of {len} characters; a DNS label may have at most 63")]
    LabelTooLong { name: String, len: usize },
    #[error("{0:?} has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel(String),
    #[error("{0:?} is not ASCII; write internationalised names in their punycode form (xn--…)")]
    NotAscii(String),
    #[error("{name:?} contains {ch:?}; DNS names may contain only letters, digits, '-' and '.'")]
    BadCharacter { name: String, ch: char },
    #[error("{0:?}: a label may not start or end with '-'")]
    HyphenEdge(String),
    #[error("{0:?}: a wildcard is allowed only as the whole leftmost label (\"*.example.com\")")]
    BadWildcard(String),
    #[error("{0:?}: the last label of a DNS name may not be all digits")]
    NumericTld(String),
    #[error(
        "{name:?} is not a valid certificate name: use 1 to 64 characters of a-z, 0-9, '-' and '.', starting with a letter or digit"
    )]
    BadCertName { name: String },
}

/// A DNS name, lower-cased, without a trailing dot; possibly a wildcard (`*.example.com`).
///
/// Built only through [`DnsName::parse`], which enforces RFC 1035/5280 syntax; IDNA names must
/// arrive in their ASCII (punycode) form, as certificates carry them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsName(String);

impl DnsName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.trim();
        // One trailing dot is the absolute form of the same name; certificates carry the relative form.
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if name.is_empty() {
            return Err(NameError::Empty(input.to_string()));
        }
        if !name.is_ascii() {
            return Err(NameError::NotAscii(input.to_string()));
        }
        let name = name.to_ascii_lowercase();
        if name.len() > 253 {
            return Err(NameError::TooLong {
                len: name.len(),
                name,
            });
        }
        let labels: Vec<&str> = name.split('.').collect();
        for (i, label) in labels.iter().enumerate() {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(name.clone()));
            }
            if *label == "*" {
                if i != 0 || labels.len() < 3 {
                    return Err(NameError::BadWildcard(name.clone()));
                }
                continue;
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong {
                    len: label.len(),
                    name: name.clone(),
                });
            }
            if let Some(ch) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                if ch == '*' {
                    return Err(NameError::BadWildcard(name.clone()));
                }
                return Err(NameError::BadCharacter {
                    name: name.clone(),
                    ch,
                });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(NameError::HyphenEdge(name.clone()));
            }
        }
        if labels.len() > 1
            && labels
                .last()
                .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(NameError::NumericTld(name));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// True when `self` equals `suffix` or lies below it (`a.b.example.com` is within `example.com`).
    pub fn is_within(&self, suffix: &DnsName) -> bool {
        let name = self.0.strip_prefix("*.").unwrap_or(&self.0);
        let suffix = suffix.0.strip_prefix("*.").unwrap_or(&suffix.0);
        name == suffix
            || (name.len() > suffix.len()
                && name.ends_with(suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.')
    }
}

impl TryFrom<String> for DnsName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<DnsName> for String {
    fn from(n: DnsName) -> String {
        n.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subject alternative name: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum San {
    Dns(DnsName),
    Ip(IpAddr),
}

impl San {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let t = input.trim();
        // `[::1]` is how IPv6 addresses are often written next to ports.
        let unbracketed = t
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(t);
        if let Ok(ip) = IpAddr::from_str(unbracketed) {
            return Ok(San::Ip(ip));
        }
        DnsName::parse(t).map(San::Dns)
    }
}

impl TryFrom<String> for San {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<San> for String {
    fn from(s: San) -> String {
        s.to_string()
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => d.fmt(f),
            San::Ip(ip) => ip.fmt(f),
        }
    }
}

/// The identity of a managed certificate: its subject CN, its first SAN, and the name of its
/// directory under `certs/`. Restricted so that it is always a safe single path component.
/// Shared, not copied: every map of the controller is keyed by it, and a pass clones it per
/// identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertName(std::sync::Arc<str>);

impl CertName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let name = input.trim().to_ascii_lowercase();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && !name.contains("..");
        if !ok {
            return Err(NameError::BadCertName {
                name: input.to_string(),
            });
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The certificate name as a DNS SAN, when it is a valid DNS name (it always is but for
    /// the rare all-numeric last label, e.g. `web.1`).
    pub fn as_dns(&self) -> Option<DnsName> {
        DnsName::parse(&self.0).ok()
    }
}

impl TryFrom<String> for CertName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<CertName> for String {
    fn from(n: CertName) -> String {
        n.0.to_string()
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a leaf certificate may be used for (its extended key usages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Usage {
    pub server: bool,
    pub client: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usage {0:?} is not one of `server`, `client`, `server,client`")]
pub struct UsageError(pub String);

impl Usage {
    pub const SERVER: Usage = Usage {
        server: true,
        client: false,
    };
    pub const CLIENT: Usage = Usage {
        server: false,
        client: true,
    };
    pub const BOTH: Usage = Usage {
        server: true,
        client: true,
    };

    /// `certdock.usage=none`: no certificate, only the trust (`ca.pem`).
    pub const NONE: Usage = Usage {
        server: false,
        client: false,
    };

    /// `server`, `client`, or both comma separated (a certificate's usage; the label also
    /// takes `none`, see `core::labels`).
    pub fn parse(input: &str) -> Result<Self, UsageError> {
        let mut usage = Usage::NONE;
        for part in input.split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "server" => usage.server = true,
                "client" => usage.client = true,
                _ => return Err(UsageError(input.to_string())),
            }
        }
        Ok(usage)
    }

    /// Whether a certificate is wanted at all (`none`: only `ca.pem`).
    pub fn wants_certificate(&self) -> bool {
        self.server || self.client
    }
}

impl TryFrom<String> for Usage {
    type Error = UsageError;
    fn try_from(s: String) -> Result<Self, UsageError> {
        Self::parse(&s)
    }
}

impl From<Usage> for String {
    fn from(u: Usage) -> String {
        u.to_string()
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.server, self.client) {
            (true, true) => f.write_str("server,client"),
            (true, false) => f.write_str("server"),
            (false, true) => f.write_str("client"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// certdock's own client certificate, which Traefik presents to backends (the `certdock`
/// serversTransport). Every spelling of that identity lives here.
pub mod traefik_client {
    /// Its subject CN and only SAN.
    pub const CN: &str = "traefik.certdock";
    /// Its name in `certdock status`, and its directory under the output directory (outside
    /// `certs/`, so no container's name can reach it).
    pub const NAME: &str = "traefik-client";
    /// Its file key under `STATE/managed/`: `_` never occurs in a certificate name.
    pub const FILE_KEY: &str = "_traefik-client";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_lowercased_and_lose_one_trailing_dot() {
        assert_eq!(
            DnsName::parse("Web.Example.COM.").unwrap().as_str(),
            "web.example.com"
        );
    }

    #[test]
    fn bad_dns_names_are_refused_with_the_rule() {
        assert!(matches!(
            DnsName::parse("a..b"),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(
            DnsName::parse("a.b.."),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(DnsName::parse(""), Err(NameError::Empty(_))));
        assert!(matches!(
            DnsName::parse("bücher.de"),
            Err(NameError::NotAscii(_))
        ));
        assert!(matches!(
            DnsName::parse("a_b.com"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            DnsName::parse("-a.com"),
            Err(NameError::HyphenEdge(_))
        ));
        assert!(matches!(
            DnsName::parse("a.*.com"),
            Err(NameError::BadWildcard(_))
        ));
        assert!(matches!(
            DnsName::parse("*.com"),
            Err(NameError::BadWildcard(_))
        ));
        assert!(matches!(
            DnsName::parse("f*o.a.com"),
            Err(NameError::BadWildcard(_))
        ));
        assert!(matches!(
            DnsName::parse(&"a".repeat(64)),
            Err(NameError::LabelTooLong { .. })
        ));
        let long = vec!["abcdefghij"; 30].join(".");
        assert!(matches!(
            DnsName::parse(&long),
            Err(NameError::TooLong { .. })
        ));
        assert!(matches!(
            DnsName::parse("1.2.3.999"),
            Err(NameError::NumericTld(_))
        ));
    }

    #[test]
    fn wildcards_parse_and_are_within_their_suffix() {
        let w = DnsName::parse("*.apps.example.com").unwrap();
        assert!(w.is_wildcard());
        assert!(w.is_within(&DnsName::parse("example.com").unwrap()));
        assert!(
            !DnsName::parse("badexample.com")
                .unwrap()
                .is_within(&DnsName::parse("example.com").unwrap())
        );
    }

    #[test]
    fn sans_tell_ips_from_dns_names() {
        assert_eq!(
            San::parse("10.1.2.3").unwrap(),
            San::Ip("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            San::parse("[::1]").unwrap(),
            San::Ip("::1".parse().unwrap())
        );
        assert!(matches!(San::parse("web.internal").unwrap(), San::Dns(_)));
    }

    #[test]
    fn cert_names_are_single_safe_path_components() {
        assert!(CertName::parse("api").is_ok());
        assert!(CertName::parse("web-1.internal").is_ok());
        for bad in ["../etc", "a/b", "", ".hidden", "a..b", &"x".repeat(65), "ü"] {
            assert!(CertName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn usage_parses_the_three_forms() {
        assert_eq!(Usage::parse("server").unwrap(), Usage::SERVER);
        assert_eq!(Usage::parse("client").unwrap(), Usage::CLIENT);
        assert_eq!(Usage::parse("server, client").unwrap(), Usage::BOTH);
        assert!(Usage::parse("peer").is_err());
        assert!(Usage::parse("").is_err());
    }

    #[test]
    fn certdocks_own_identity_is_a_valid_name_that_no_container_file_key_can_take() {
        assert!(CertName::parse(traefik_client::CN).is_ok());
        assert!(San::parse(traefik_client::CN).is_ok());
        assert!(CertName::parse(traefik_client::FILE_KEY).is_err());
        assert_eq!(
            traefik_client::FILE_KEY,
            format!("_{}", traefik_client::NAME)
        );
    }
}
