//! Issuance policy: which names may be certified, and for how long.
//!
//! Pure values and checks; the CA core calls [`NamePolicy::check`] and [`TtlPolicy::resolve`] on
//! every issuance path (labels, CLI, API, agents, renewals).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::names::{DnsName, NameError, San, traefik_client};

/// One entry of `--allow-domain` / `--deny-domain`: a DNS suffix or an IP range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NameRule {
    Suffix(DnsName),
    Range(IpNet),
}

impl NameRule {
    pub fn parse(input: &str) -> Result<Self, PolicyError> {
        let t = input.trim();
        if let Ok(net) = IpNet::from_str(t) {
            return Ok(NameRule::Range(net.trunc()));
        }
        if let Ok(ip) = IpAddr::from_str(t) {
            return Ok(NameRule::Range(IpNet::from(ip)));
        }
        // A leading "." or "*." is a common way to write "this suffix"; both mean the same here.
        let s = t
            .strip_prefix("*.")
            .or_else(|| t.strip_prefix('.'))
            .unwrap_or(t);
        // `.*.x` parses as the wildcard `*.x`; keep the rule in its plain form so that it
        // prints as it matches (found by fuzzing: the printed rule parsed back differently).
        let plain = |d: DnsName| match d.as_str().strip_prefix("*.") {
            Some(rest) => DnsName::parse(rest),
            None => Ok(d),
        };
        DnsName::parse(s)
            .and_then(plain)
            .map(NameRule::Suffix)
            .map_err(|e| PolicyError::BadRule {
                rule: input.to_string(),
                reason: e,
            })
    }

    fn matches(&self, san: &San) -> bool {
        match (self, san) {
            (NameRule::Suffix(s), San::Dns(d)) => d.is_within(s),
            (NameRule::Range(net), San::Ip(ip)) => ip_forms(*ip).iter().any(|ip| net.contains(ip)),
            _ => false,
        }
    }

    /// Whether a certificate for `san` would be valid for any name this rule covers: as
    /// [`matches`](Self::matches), and also when a wildcard covers the rule's own name
    /// (`*.internal` is valid for `secret.internal`). What a deny rule must refuse.
    fn overlaps(&self, san: &San) -> bool {
        self.matches(san)
            || match (self, san) {
                (NameRule::Suffix(s), San::Dns(d)) => wildcard_covers(d, s),
                _ => false,
            }
    }

    /// Splits a comma-separated list, as the flags and environment variables carry it.
    pub fn parse_list(input: &str) -> Result<Vec<NameRule>, PolicyError> {
        input
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(NameRule::parse)
            .collect()
    }
}

impl TryFrom<String> for NameRule {
    type Error = PolicyError;
    fn try_from(s: String) -> Result<Self, PolicyError> {
        Self::parse(&s)
    }
}

impl From<NameRule> for String {
    fn from(r: NameRule) -> String {
        r.to_string()
    }
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRule::Suffix(s) => s.fmt(f),
            NameRule::Range(n) => n.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("name rule {rule:?} is neither a DNS suffix nor an IP range: {reason}")]
    BadRule { rule: String, reason: NameError },
    #[error("{name} is outside the allowed names (--allow-domain {allowed})")]
    NotAllowed { name: String, allowed: String },
    #[error("{name} is refused by --deny-domain {rule}")]
    Denied { name: String, rule: String },
    #[error("{name} is a wildcard; wildcards are refused unless --allow-wildcards is set")]
    WildcardRefused { name: String },
    #[error(
        "{name} is one of the CA's own API names (--api-name) and is never issued to anyone else"
    )]
    Reserved { name: String },
    #[error(
        "{name} is refused: the scope of this token or agent lies wholly outside the CA's \
         --allow-domain, so it may sign nothing (a scope only narrows the policy; make a new token within it)"
    )]
    ScopeOutsidePolicy { name: String },
    #[error("a certificate needs at least one name")]
    NoNames,
    #[error("a certificate may carry at most {max} names, this one asks for {count}")]
    TooManyNames { count: usize, max: usize },
}

/// The allow/deny list, wildcard switch and reserved names that every issuance is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamePolicy {
    /// Empty means any name (SPEC: "none = any name").
    pub allow: Vec<NameRule>,
    pub deny: Vec<NameRule>,
    pub allow_wildcards: bool,
    /// The CA's own API names: only the CA itself may hold a certificate for them.
    pub reserved: Vec<San>,
    /// The policy for certdock's own certificates ([`NamePolicy::for_ca_itself`]): only it may
    /// carry certdock's internal identities (Traefik's client certificate, which forward-auth
    /// trusts as the proxy), which every other policy refuses whatever its lists say.
    pub for_certdock_itself: bool,
}

/// certdock's internal identities, which no label, token, agent or ACME account may claim.
/// A wildcard that would cover one is refused as well.
fn is_internal(san: &San) -> bool {
    let San::Dns(d) = san else { return false };
    DnsName::parse(traefik_client::CN)
        .is_ok_and(|internal| *d == internal || wildcard_covers(d, &internal))
}

/// More names than any sane service needs; bounds the work a single request can cause.
pub const MAX_SANS: usize = 100;

impl NamePolicy {
    /// Checks every name; the first refusal is returned, naming the name and the rule.
    pub fn check(&self, sans: &[San]) -> Result<(), PolicyError> {
        if sans.is_empty() {
            return Err(PolicyError::NoNames);
        }
        if sans.len() > MAX_SANS {
            return Err(PolicyError::TooManyNames {
                count: sans.len(),
                max: MAX_SANS,
            });
        }
        for san in sans {
            self.check_one(san)?;
        }
        Ok(())
    }

    fn check_one(&self, san: &San) -> Result<(), PolicyError> {
        if self.refuses_everything() {
            return Err(PolicyError::ScopeOutsidePolicy {
                name: san.to_string(),
            });
        }
        if let San::Dns(d) = san
            && d.is_wildcard()
            && !self.allow_wildcards
        {
            return Err(PolicyError::WildcardRefused {
                name: san.to_string(),
            });
        }
        if self.is_reserved(san) || (!self.for_certdock_itself && is_internal(san)) {
            return Err(PolicyError::Reserved {
                name: san.to_string(),
            });
        }
        if let Some(rule) = self.deny.iter().find(|r| r.overlaps(san)) {
            return Err(PolicyError::Denied {
                name: san.to_string(),
                rule: rule.to_string(),
            });
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches(san)) {
            return Err(PolicyError::NotAllowed {
                name: san.to_string(),
                allowed: self
                    .allow
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        Ok(())
    }

    fn is_reserved(&self, san: &San) -> bool {
        self.reserved.iter().any(|r| match (r, san) {
            // A wildcard that would cover a reserved name is as bad as the name itself.
            (San::Dns(a), San::Dns(b)) => a == b || wildcard_covers(b, a),
            (San::Ip(a), San::Ip(b)) => ip_forms(*b).contains(a),
            _ => false,
        })
    }

    /// The policy for certdock's own certificates (the API's `--api-name`, Traefik's client):
    /// their names are the operator's choice, so neither the allow/deny lists (which bound what
    /// labels, tokens and agents ask) nor the reserved names apply; wildcards and the name
    /// count still do.
    pub fn for_ca_itself(&self) -> NamePolicy {
        NamePolicy {
            allow: Vec::new(),
            deny: Vec::new(),
            reserved: Vec::new(),
            allow_wildcards: self.allow_wildcards,
            for_certdock_itself: true,
        }
    }

    /// A narrower policy: names must satisfy both `self` and `scope` (e.g. an agent's token).
    pub fn narrowed(&self, scope: &[NameRule]) -> NamePolicy {
        if scope.is_empty() {
            return self.clone();
        }
        // Intersection: checked as `self` first, then as the scope's own allow list.
        let mut p = self.clone();
        p.allow = if self.allow.is_empty() {
            scope.to_vec()
        } else {
            // Keep only scope rules that lie within some allow rule; a broader scope cannot widen policy.
            scope
                .iter()
                .filter(|s| self.allow.iter().any(|a| rule_within(s, a)))
                .cloned()
                .collect()
        };
        if p.allow.is_empty() {
            // Nothing of the scope lies within policy: refuse everything rather than fall open.
            p.allow = vec![nothing()];
        }
        p
    }

    /// A narrowed policy that nothing of its scope survived ([`NamePolicy::narrowed`]).
    fn refuses_everything(&self) -> bool {
        self.allow.len() == 1 && self.allow[0] == nothing()
    }

    /// The rules of `scope` that lie outside this policy's allow list (none when it allows
    /// any name): what a token or agent scope may not have, checked when the token is made.
    pub fn outside_allow<'a>(&self, scope: &'a [NameRule]) -> Vec<&'a NameRule> {
        if self.allow.is_empty() {
            return Vec::new();
        }
        scope
            .iter()
            .filter(|s| !self.allow.iter().any(|a| rule_within(s, a)))
            .collect()
    }
}

/// The allow list of a policy that allows nothing: one address no certificate may carry (the
/// limited broadcast address), matched before any rule ([`NamePolicy::refuses_everything`]).
fn nothing() -> NameRule {
    NameRule::Range("255.255.255.255/32".parse().expect("literal"))
}

/// An address and its other spelling: `::ffff:10.0.0.1` is `10.0.0.1` to many TLS clients
/// (Go's `net.IP.Equal`, so Traefik), so ranges and reserved names see both.
fn ip_forms(ip: IpAddr) -> [IpAddr; 2] {
    match ip {
        IpAddr::V4(v4) => [ip, IpAddr::V6(v4.to_ipv6_mapped())],
        IpAddr::V6(_) => [ip, ip.to_canonical()],
    }
}

/// `*.x` covers exactly the names one label below `x`; true when `name` is one of them.
fn wildcard_covers(wildcard: &DnsName, name: &DnsName) -> bool {
    wildcard.is_wildcard()
        && !name.is_wildcard()
        && name.is_within(wildcard)
        && name.as_str().matches('.').count() == wildcard.as_str().matches('.').count()
}

fn rule_within(inner: &NameRule, outer: &NameRule) -> bool {
    match (inner, outer) {
        (NameRule::Suffix(i), NameRule::Suffix(o)) => i.is_within(o),
        (NameRule::Range(i), NameRule::Range(o)) => o.contains(i),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("ttl {input:?} is not a duration (examples: 90m, 24h, 7d): {reason}")]
    Unparsable { input: String, reason: String },
    #[error("ttl {ttl} is longer than the CA's maximum of {max} (--max-ttl)")]
    TooLong { ttl: String, max: String },
    #[error("ttl {ttl} is shorter than the CA's minimum of {min} (--min-ttl)")]
    TooShort { ttl: String, min: String },
}

/// Parses a human duration such as `90m`, `24h` or `7d`.
pub fn parse_duration(input: &str) -> Result<Duration, TtlError> {
    humantime::parse_duration(input.trim()).map_err(|e| TtlError::Unparsable {
        input: input.to_string(),
        reason: e.to_string(),
    })
}

/// Formats a duration in its largest exact unit (`30d`, `90m`, `45s`), as users write them.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Leaf lifetimes: the default when none is asked for, and the bounds every request must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    pub min: Duration,
    pub default: Duration,
    pub max: Duration,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(5 * 60),
            default: Duration::from_secs(24 * 3600),
            max: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl TtlPolicy {
    /// The lifetime to issue for a request: the default when none is asked, else the request if
    /// within bounds. Out of bounds is refused, never silently clamped: a user who asked for 400d
    /// must learn that they will not get it.
    pub fn resolve(&self, requested: Option<Duration>) -> Result<Duration, TtlError> {
        let ttl = requested.unwrap_or(self.default);
        if ttl > self.max {
            return Err(TtlError::TooLong {
                ttl: fmt_duration(ttl),
                max: fmt_duration(self.max),
            });
        }
        if ttl < self.min {
            return Err(TtlError::TooShort {
                ttl: fmt_duration(ttl),
                min: fmt_duration(self.min),
            });
        }
        Ok(ttl)
    }

    /// Parses and bounds a ttl given as text (a label, a flag, a JSON field).
    pub fn resolve_str(&self, requested: Option<&str>) -> Result<Duration, TtlError> {
        self.resolve(requested.map(parse_duration).transpose()?)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
