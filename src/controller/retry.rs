//! What a failure means for the next attempt: the one place retry timing is decided.

use std::time::{Duration, SystemTime};

use crate::ca::source::SourceError;
use crate::core::renew::retry_after;

/// A failed delivery, signal or attach is tried again this soon even if nothing else happens.
pub const ACTION_RETRY: Duration = Duration::from_secs(2);
/// A refusal (policy, bad request) waits for a change of labels or config; without one it is
/// asked again after this, doubling per refusal up to [`REFUSAL_RETRY_MAX`], in case the CA's
/// own policy changed.
pub const REFUSAL_RETRY: Duration = Duration::from_secs(15 * 60);
pub const REFUSAL_RETRY_MAX: Duration = Duration::from_secs(6 * 60 * 60);

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The CA said no: retrying the same order will not help.
    Refused,
    /// The CA could not be reached or failed: retry with quick backoff, keep the old certificate.
    Unavailable,
    /// A delivery, reload signal or network attach failed.
    Action,
}

impl From<&SourceError> for FailureKind {
    fn from(e: &SourceError) -> Self {
        if e.is_transient() {
            FailureKind::Unavailable
        } else {
            FailureKind::Refused
        }
    }
}

impl FailureKind {
    /// The metrics `kind` label.
    pub fn metric(self) -> &'static str {
        match self {
            FailureKind::Refused => "ca_refused",
            FailureKind::Unavailable => "ca_unavailable",
            FailureKind::Action => "delivery",
        }
    }
}

/// When to try again after `attempts` failures in a row (0 after the first) of `kind`, for a
/// certificate valid until `not_after` (`now` when there is none).
pub fn error_policy(
    kind: FailureKind,
    attempts: u32,
    now: SystemTime,
    not_after: SystemTime,
) -> SystemTime {
    match kind {
        FailureKind::Unavailable => retry_after(attempts, now, not_after),
        FailureKind::Refused => {
            let delay = REFUSAL_RETRY
                .checked_mul(1u32.checked_shl(attempts).unwrap_or(u32::MAX))
                .map_or(REFUSAL_RETRY_MAX, |d| d.min(REFUSAL_RETRY_MAX));
            now + delay
        }
        FailureKind::Action => now + ACTION_RETRY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn an_outage_is_retried_within_seconds_and_a_refusal_after_minutes() {
        let (now, na) = (t0(), t0() + 600 * MIN);
        let outage = error_policy(FailureKind::Unavailable, 0, now, na);
        let refusal = error_policy(FailureKind::Refused, 0, now, na);
        assert_eq!(outage, now + Duration::from_secs(1));
        assert_eq!(refusal, now + 15 * MIN);
    }

    #[test]
    fn refusals_back_off_to_six_hours_whatever_the_expiry() {
        let now = t0();
        let at = |n| error_policy(FailureKind::Refused, n, now, now + MIN);
        assert_eq!(at(1), now + 30 * MIN);
        assert_eq!(at(10), now + 360 * MIN);
        assert_eq!(at(40), now + 360 * MIN);
    }

    #[test]
    fn a_failed_action_is_retried_in_two_seconds() {
        let now = t0();
        assert_eq!(
            error_policy(FailureKind::Action, 7, now, now),
            now + ACTION_RETRY
        );
    }
}
