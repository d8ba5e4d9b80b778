//! The names `tests/name_policy.rs` checks on every issuance path: the policy, one table of bad
//! names with the stage that refuses each, and names that pass. Included by path (`#[path]`).

use certdock::core::names::San;
use certdock::core::policy::{NamePolicy, NameRule};

pub const ALLOW: &str = "internal,10.0.0.0/8";
pub const DENY: &str = "secret.internal,db.svc.internal,10.9.0.0/16";
pub const API_NAME: &str = "ca.certdock.internal";

pub fn policy(allow_wildcards: bool) -> NamePolicy {
    NamePolicy {
        allow: NameRule::parse_list(ALLOW).unwrap(),
        deny: NameRule::parse_list(DENY).unwrap(),
        allow_wildcards,
        reserved: vec![San::parse(API_NAME).unwrap()],
        for_certdock_itself: false,
    }
}

/// Whether a name fails to parse at all, or parses and is refused by policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Syntax,
    Policy,
}

/// (what, name, a word of the expected message, stage, with --allow-wildcards)
pub fn bad_names() -> Vec<(&'static str, String, &'static str, Stage, bool)> {
    use Stage::*;
    let long = format!("{}.internal", vec!["abcdefghi"; 25].join("."));
    assert!(long.len() > 253);
    vec![
        (
            "a unicode name",
            "bücher.internal".into(),
            "punycode",
            Syntax,
            false,
        ),
        (
            "a unicode label that looks ASCII",
            "wеb.internal".into(),
            "punycode",
            Syntax,
            false,
        ),
        (
            "two trailing dots",
            "web.internal..".into(),
            "empty label",
            Syntax,
            false,
        ),
        (
            "an empty label",
            "a..internal".into(),
            "empty label",
            Syntax,
            false,
        ),
        (
            "a leading dot",
            ".web.internal".into(),
            "empty label",
            Syntax,
            false,
        ),
        (
            "a name over 253 characters",
            long,
            "at most 253",
            Syntax,
            false,
        ),
        (
            "a label over 63 characters",
            format!("{}.internal", "a".repeat(64)),
            "at most 63",
            Syntax,
            false,
        ),
        (
            "a wildcard in the middle",
            "a.*.internal".into(),
            "wildcard",
            Syntax,
            true,
        ),
        (
            "a wildcard without --allow-wildcards",
            "*.apps.internal".into(),
            "wildcard",
            Policy,
            false,
        ),
        (
            "a name outside --allow-domain",
            "web.example.com".into(),
            "--allow-domain",
            Policy,
            false,
        ),
        (
            "an address outside --allow-domain",
            "192.168.1.1".into(),
            "--allow-domain",
            Policy,
            false,
        ),
        (
            "a denied name",
            "db.secret.internal".into(),
            "--deny-domain",
            Policy,
            false,
        ),
        (
            "a denied address",
            "10.9.1.2".into(),
            "--deny-domain",
            Policy,
            false,
        ),
        (
            "a denied address written IPv4-mapped",
            "::ffff:10.9.1.2".into(),
            "--deny-domain",
            Policy,
            false,
        ),
        (
            "a wildcard covering a denied name",
            "*.svc.internal".into(),
            "--deny-domain",
            Policy,
            true,
        ),
        (
            "the CA's API name",
            API_NAME.into(),
            "API names",
            Policy,
            false,
        ),
        (
            "the CA's API name with a trailing dot",
            "CA.Certdock.Internal.".into(),
            "API names",
            Policy,
            false,
        ),
        (
            "a wildcard covering the API name",
            "*.certdock.internal".into(),
            "API names",
            Policy,
            true,
        ),
    ]
}

pub fn good_names() -> Vec<(&'static str, bool)> {
    vec![
        ("web.internal", false),
        ("Web.Internal.", false),
        ("10.1.2.3", false),
        ("*.apps.internal", true),
    ]
}
