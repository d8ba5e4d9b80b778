//! When to renew a certificate, and when to retry after a failed renewal: pure time arithmetic.

use std::time::{Duration, SystemTime};

/// Longest pause between two retries of a failing renewal.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5 * 60);
/// Shortest pause between two attempts, so a hard failure never becomes a busy loop.
pub const MIN_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long before its issuance a certdock certificate starts (its notBefore), so peers with a
/// slightly slow clock accept it. The CA applies it; [`renew_issued_at`] corrects for it.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// THE renewal schedule of a certificate certdock issued (the controller's certificates, the
/// API's own, an agent's identity): [`renew_at`] counted from issuance, i.e. `not_before` plus
/// [`BACKDATE`], not from the backdated `not_before`, which for short lifetimes would pull
/// renewal almost to the start. A lifetime shorter than the backdate counts from `not_before`.
pub fn renew_issued_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let issued_at = not_before.checked_add(BACKDATE).unwrap_or(not_before);
    let start = if issued_at < not_after {
        issued_at
    } else {
        not_before
    };
    renew_at(start, not_after, jitter)
}

/// A jitter in `[0, 1)` derived from a certificate's serial (its last 32 bits), so a
/// certificate's renewal time is stable across restarts yet spread across a fleet.
/// A serial that is not hex gives 0.
pub fn jitter_from_serial(serial_hex: &str) -> f64 {
    let tail = serial_hex
        .get(serial_hex.len().saturating_sub(8)..)
        .unwrap_or("");
    u64::from_str_radix(tail, 16).unwrap_or(0) as f64 / (u64::from(u32::MAX) + 1) as f64
}

/// When to renew a certificate valid from `not_before` to `not_after`: at two thirds of its
/// lifetime, earlier by up to a twelfth of it as `jitter` (in `[0, 1)`, drawn by the caller)
/// grows, so renewals land in `[7/12, 8/12]` of the lifetime and a fleet issued at once does
/// not renew at once. Out-of-range jitter is clamped; an empty or inverted lifetime gives
/// `not_before`.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return not_before;
    };
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let early = (lifetime / 12).mul_f64(jitter);
    let offset = (lifetime / 3 * 2).saturating_sub(early);
    not_before
        .checked_add(offset)
        .unwrap_or(not_after)
        .max(not_before)
}

/// When a certificate issued before a CA rollover (a new intermediate or root signs since
/// `rolled_at`) is re-issued under the new chain: spread by `jitter` (in `[0, 1)`) over
/// `spread` after the rollover, so a fleet does not renew in one second; never later than
/// `renew_at`, its ordinary renewal.
pub fn reissue_after_rollover(
    rolled_at: SystemTime,
    spread: Duration,
    jitter: f64,
    renew_at: SystemTime,
) -> SystemTime {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    rolled_at
        .checked_add(spread.mul_f64(jitter))
        .unwrap_or(renew_at)
        .min(renew_at)
}

/// When to try again after `attempt` failures in a row (0 after the first one): 1 s, 2 s, 4 s …
/// up to [`MAX_RETRY_DELAY`], but never later than halfway from `now` to `not_after`, so retries
/// come faster as expiry nears; never sooner than [`MIN_RETRY_DELAY`]. Once the certificate has
/// expired there is no deadline left to beat, and plain backoff applies.
pub fn retry_after(attempt: u32, now: SystemTime, not_after: SystemTime) -> SystemTime {
    let backoff = MIN_RETRY_DELAY
        .checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .map_or(MAX_RETRY_DELAY, |d| d.min(MAX_RETRY_DELAY));
    let delay = match not_after.duration_since(now) {
        Ok(left) if !left.is_zero() => backoff.min(left / 2),
        _ => backoff,
    };
    let delay = delay.max(MIN_RETRY_DELAY);
    now.checked_add(delay).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn secs(t: SystemTime) -> f64 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    }

    #[test]
    fn renewal_without_jitter_is_at_two_thirds_of_the_lifetime() {
        let nb = t(1_000_000);
        assert_eq!(renew_at(nb, nb + 24 * HOUR, 0.0), nb + 16 * HOUR);
    }

    #[test]
    fn renewal_with_jitter_stays_between_seven_and_eight_twelfths() {
        let nb = t(1_000_000);
        let na = nb + 12 * HOUR;
        for j in [0.0, 0.1, 0.5, 0.9, 0.999_999] {
            let at = renew_at(nb, na, j);
            assert!(
                at >= nb + 7 * HOUR && at <= nb + 8 * HOUR,
                "jitter {j}: {}",
                secs(at)
            );
        }
        assert!(renew_at(nb, na, 0.5) < renew_at(nb, na, 0.0));
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        let nb = t(1_000_000);
        let na = nb + 12 * HOUR;
        assert_eq!(renew_at(nb, na, f64::NAN), nb + 8 * HOUR);
        assert_eq!(renew_at(nb, na, -3.0), nb + 8 * HOUR);
        assert_eq!(renew_at(nb, na, 7.0), nb + 7 * HOUR);
        assert_eq!(renew_at(nb, na, f64::INFINITY), nb + 8 * HOUR);
    }

    #[test]
    fn an_inverted_or_empty_lifetime_renews_at_not_before() {
        let nb = t(1_000_000);
        assert_eq!(renew_at(nb, nb, 0.3), nb);
        assert_eq!(renew_at(nb, t(10), 0.3), nb);
    }

    #[test]
    fn a_ten_year_lifetime_does_not_overflow() {
        let nb = t(1_000_000);
        let na = nb + Duration::from_secs(10 * 365 * 24 * 3600);
        let at = renew_at(nb, na, 0.99);
        assert!(at > nb && at < na);
    }

    #[test]
    fn renewal_of_an_issued_certificate_counts_from_issuance_not_from_the_backdate() {
        let issued = t(1_000_000);
        let nb = issued - BACKDATE;
        let na = issued + Duration::from_secs(300);
        assert_eq!(
            renew_issued_at(nb, na, 0.0),
            issued + Duration::from_secs(200)
        );
        // Without the correction the five-minute certificate would renew 20 s earlier.
        assert!(renew_at(nb, na, 0.0) < renew_issued_at(nb, na, 0.0));
    }

    #[test]
    fn a_lifetime_shorter_than_the_backdate_counts_from_not_before() {
        let nb = t(1_000_000);
        let na = nb + Duration::from_secs(30);
        assert_eq!(renew_issued_at(nb, na, 0.0), nb + Duration::from_secs(20));
    }

    #[test]
    fn serial_jitter_is_stable_and_within_range() {
        assert_eq!(jitter_from_serial("00"), 0.0);
        let j = jitter_from_serial("7f3a00000000000000000000ffffffff");
        assert!((0.0..1.0).contains(&j), "{j}");
        assert_eq!(j, jitter_from_serial("7f3a00000000000000000000ffffffff"));
        assert_eq!(jitter_from_serial("not hex"), 0.0);
        assert_eq!(jitter_from_serial("é"), 0.0);
    }

    #[test]
    fn reissues_after_a_rollover_are_spread_over_the_window_and_never_after_renewal() {
        let rolled = t(1_000_000);
        let window = Duration::from_secs(600);
        let far = rolled + 24 * HOUR;
        assert_eq!(reissue_after_rollover(rolled, window, 0.0, far), rolled);
        assert_eq!(
            reissue_after_rollover(rolled, window, 0.5, far),
            rolled + Duration::from_secs(300)
        );
        assert_eq!(
            reissue_after_rollover(rolled, window, 7.0, far),
            rolled + window
        );
        assert_eq!(
            reissue_after_rollover(rolled, window, f64::NAN, far),
            rolled
        );
        let soon = rolled + Duration::from_secs(10);
        assert_eq!(reissue_after_rollover(rolled, window, 0.9, soon), soon);
    }

    #[test]
    fn retries_back_off_exponentially_from_one_second() {
        let now = t(1_000_000);
        let far = now + 30 * 24 * HOUR;
        let delays: Vec<u64> = (0..5)
            .map(|a| {
                retry_after(a, now, far)
                    .duration_since(now)
                    .unwrap_or_default()
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn retries_are_capped_at_five_minutes_even_for_huge_attempt_counts() {
        let now = t(1_000_000);
        let far = now + 30 * 24 * HOUR;
        for attempt in [9, 10, 31, 32, 1000, u32::MAX] {
            assert_eq!(
                retry_after(attempt, now, far),
                now + MAX_RETRY_DELAY,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn retries_come_sooner_than_halfway_to_expiry() {
        let now = t(1_000_000);
        assert_eq!(
            retry_after(20, now, now + Duration::from_secs(60)),
            now + Duration::from_secs(30)
        );
    }

    #[test]
    fn retries_never_come_sooner_than_one_second() {
        let now = t(1_000_000);
        assert_eq!(
            retry_after(20, now, now + Duration::from_millis(500)),
            now + MIN_RETRY_DELAY
        );
        assert_eq!(retry_after(0, now, now), now + MIN_RETRY_DELAY);
    }

    #[test]
    fn after_expiry_retries_fall_back_to_plain_backoff() {
        let now = t(1_000_000);
        assert_eq!(retry_after(3, now, t(10)), now + Duration::from_secs(8));
        assert_eq!(retry_after(30, now, t(10)), now + MAX_RETRY_DELAY);
    }
}
