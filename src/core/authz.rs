//! Who may call whom: group names, allow lists, and the decision itself. Pure: the caller brings a
//! client identity that something else has already verified (chain, expiry, revocation).
//!
//! Groups are bound to the certificate itself, as URI SANs `urn:certdock:group:NAME`, the way
//! Kubernetes binds groups to the subject of a client certificate: a decider on any host then
//! needs only the CA bundle and the revocation list, never a lookup per request, and a forwarded
//! header cannot add a group the CA did not sign. A label change reaches the client's next
//! certificate.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::names::CertName;

/// The URI SAN prefix that carries a group membership in a certificate.
pub const GROUP_URI_PREFIX: &str = "urn:certdock:group:";

/// Longest group name (SPEC.md: 1–32 characters).
const GROUP_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error("group {0:?} is not valid: use 1 to 32 characters of a-z, 0-9 and '-'")]
    BadGroup(String),
    #[error(
        "allow entry {entry:?} is not valid: give a client's certdock.name or group:NAME ({reason})"
    )]
    BadAllowEntry { entry: String, reason: String },
    #[error("the allow list is empty: name at least one client or group:NAME")]
    EmptyAllowList,
}

/// A group name: 1–32 characters of `a-z 0-9 -`. Built only through [`GroupName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(input: &str) -> Result<Self, AuthzError> {
        let s = input.trim();
        let ok = !s.is_empty()
            && s.len() <= GROUP_MAX
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(AuthzError::BadGroup(input.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI SAN that binds this group to a certificate.
    pub fn to_uri(&self) -> String {
        format!("{GROUP_URI_PREFIX}{}", self.0)
    }

    /// The group a certificate's URI SAN names, if it is one of ours (and valid).
    pub fn from_uri(uri: &str) -> Option<Self> {
        uri.strip_prefix(GROUP_URI_PREFIX)
            .and_then(|g| Self::parse(g).ok())
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for GroupName {
    type Error = AuthzError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<GroupName> for String {
    fn from(g: GroupName) -> String {
        g.0
    }
}

/// Parses a comma-separated list of groups (`certdock.groups`); duplicates collapse, order is
/// sorted so that equal sets compare equal.
pub fn parse_groups(value: &str) -> Result<BTreeSet<GroupName>, AuthzError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(GroupName::parse)
        .collect()
}

/// One entry of `certdock.allow`: a client identity, or every member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AllowEntry {
    Identity(CertName),
    Group(GroupName),
}

impl AllowEntry {
    pub fn parse(input: &str) -> Result<Self, AuthzError> {
        let s = input.trim();
        let bad = |reason: String| AuthzError::BadAllowEntry {
            entry: input.chars().take(80).collect(),
            reason,
        };
        match s.strip_prefix("group:") {
            Some(g) => GroupName::parse(g)
                .map(AllowEntry::Group)
                .map_err(|e| bad(e.to_string())),
            None => CertName::parse(s)
                .map(AllowEntry::Identity)
                .map_err(|e| bad(e.to_string())),
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Identity(n) => write!(f, "{n}"),
            AllowEntry::Group(g) => write!(f, "group:{g}"),
        }
    }
}

impl TryFrom<String> for AllowEntry {
    type Error = AuthzError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<AllowEntry> for String {
    fn from(e: AllowEntry) -> String {
        e.to_string()
    }
}

/// Who may call one server identity (`certdock.allow`). Never empty: an empty list would
/// admit nobody, which a user writes by leaving the service unrouted, not by a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct AllowList(BTreeSet<AllowEntry>);

impl AllowList {
    pub fn parse(value: &str) -> Result<Self, AuthzError> {
        let entries: BTreeSet<AllowEntry> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(AllowEntry::parse)
            .collect::<Result<_, _>>()?;
        if entries.is_empty() {
            return Err(AuthzError::EmptyAllowList);
        }
        Ok(Self(entries))
    }

    pub fn entries(&self) -> impl Iterator<Item = &AllowEntry> {
        self.0.iter()
    }

    /// The decision: the client's identity is listed, or one of its groups is.
    pub fn admits(&self, client: &Client) -> bool {
        self.0.iter().any(|e| match e {
            AllowEntry::Identity(n) => *n == client.identity,
            AllowEntry::Group(g) => client.groups.contains(g),
        })
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// A client as a verified certificate describes it: its identity (the CN, which is always its
/// `certdock.name`) and the groups bound to it by the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub identity: CertName,
    pub groups: BTreeSet<GroupName>,
}

impl Client {
    /// The groups of a certificate from its URI SANs; URIs that are not certdock groups are
    /// ignored (they grant nothing).
    pub fn new<'a>(identity: CertName, uris: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            identity,
            groups: uris.into_iter().filter_map(GroupName::from_uri).collect(),
        }
    }

    /// `X-Certdock-Groups`: the groups, comma separated, sorted.
    pub fn groups_header(&self) -> String {
        let parts: Vec<&str> = self.groups.iter().map(GroupName::as_str).collect();
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, groups: &[&str]) -> Client {
        Client {
            identity: CertName::parse(name).unwrap(),
            groups: groups
                .iter()
                .map(|g| GroupName::parse(g).unwrap())
                .collect(),
        }
    }

    #[test]
    fn group_names_follow_the_spec_rule() {
        for good in ["a", "frontend", "team-7", &"x".repeat(32)] {
            assert!(GroupName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Frontend",
            "a_b",
            "a.b",
            "group:a",
            "ü",
            &"x".repeat(33),
            "a b",
        ] {
            let e = GroupName::parse(bad).unwrap_err();
            assert!(e.to_string().contains("a-z, 0-9 and '-'"), "{bad}: {e}");
        }
    }

    #[test]
    fn groups_label_is_a_set() {
        let g = parse_groups("web, ops,web,,").unwrap();
        let names: Vec<&str> = g.iter().map(GroupName::as_str).collect();
        assert_eq!(names, ["ops", "web"]);
        assert!(parse_groups("web,Ops").is_err());
    }

    #[test]
    fn allow_entries_are_identities_or_groups() {
        let a = AllowList::parse("frontend, group:ops ,batch.jobs").unwrap();
        assert_eq!(a.to_string(), "batch.jobs,frontend,group:ops");
        for bad in ["group:", "group:OPS", "-x", "a/b", "group:a b"] {
            let e = AllowList::parse(bad).unwrap_err();
            assert!(e.to_string().contains("allow entry"), "{bad}: {e}");
        }
        assert_eq!(
            AllowList::parse(" , ").unwrap_err(),
            AuthzError::EmptyAllowList
        );
    }

    #[test]
    fn a_listed_identity_or_group_is_admitted_and_nobody_else() {
        let allow = AllowList::parse("frontend,group:ops").unwrap();
        assert!(allow.admits(&client("frontend", &[])));
        assert!(allow.admits(&client("cron", &["ops"])));
        assert!(allow.admits(&client("cron", &["web", "ops"])));
        assert!(!allow.admits(&client("cron", &["web"])));
        assert!(!allow.admits(&client("frontend2", &[])));
        // A group is not an identity, nor the other way round.
        assert!(!allow.admits(&client("ops", &[])));
        assert!(
            !AllowList::parse("group:frontend")
                .unwrap()
                .admits(&client("frontend", &[]))
        );
    }

    #[test]
    fn groups_come_only_from_certdock_group_uris() {
        let c = Client::new(
            CertName::parse("cron").unwrap(),
            [
                "urn:certdock:group:ops",
                "urn:certdock:group:Bad",
                "spiffe://x/ops",
                "urn:certdock:groupie:web",
                "urn:certdock:group:web",
            ],
        );
        assert_eq!(c.groups_header(), "ops,web");
        assert_eq!(
            GroupName::parse("ops").unwrap().to_uri(),
            "urn:certdock:group:ops"
        );
    }
}
