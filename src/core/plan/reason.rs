//! Why a held certificate must be replaced: the one place that compares it with what is wanted.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::{CertSpecLite, Current};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueReason {
    Missing,
    NamesChanged,
    GroupsChanged,
    UsageChanged,
    TtlChanged,
    RenewalDue,
    Expired,
    /// The clock now reads earlier than the certificate's start (it jumped back): peers would
    /// refuse it as not yet valid.
    NotYetValid,
    IssuerGone,
}

impl fmt::Display for IssueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IssueReason::Missing => "no certificate yet",
            IssueReason::NamesChanged => "names changed",
            IssueReason::GroupsChanged => "groups changed",
            IssueReason::UsageChanged => "usage changed",
            IssueReason::TtlChanged => "ttl changed",
            IssueReason::RenewalDue => "renewal due",
            IssueReason::Expired => "expired",
            IssueReason::NotYetValid => "not yet valid (the clock went back)",
            IssueReason::IssuerGone => "issuing CA no longer trusted",
        })
    }
}

/// Why the current certificate must be replaced, if it must.
pub(super) fn issue_reason(
    want: &CertSpecLite,
    current: Option<&Current>,
    now: SystemTime,
) -> Option<IssueReason> {
    let Some(cur) = current else {
        return Some(IssueReason::Missing);
    };
    if cur.sans != want.sans {
        return Some(IssueReason::NamesChanged);
    }
    if cur.groups != want.groups {
        return Some(IssueReason::GroupsChanged);
    }
    if cur.usage != want.usage {
        return Some(IssueReason::UsageChanged);
    }
    if now >= cur.not_after {
        return Some(IssueReason::Expired);
    }
    if now < cur.not_before {
        return Some(IssueReason::NotYetValid);
    }
    if !cur.issuer_trusted {
        return Some(IssueReason::IssuerGone);
    }
    // A shorter ttl takes effect at once (someone wants shorter-lived credentials); a longer one
    // waits for the next renewal. The lifetime includes the 1-minute backdate, hence the slack.
    let lifetime = cur
        .not_after
        .duration_since(cur.not_before)
        .unwrap_or_default();
    if lifetime > want.ttl + Duration::from_secs(90) {
        return Some(IssueReason::TtlChanged);
    }
    if now >= cur.renew_at {
        return Some(IssueReason::RenewalDue);
    }
    None
}
