//! Reconnect delays for the watcher: 0.5 s doubling to 30 s, jittered, reset after a quiet spell.

use std::time::Duration;

use tokio::time::Instant;

const INITIAL: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(30);
/// A connection that stayed healthy this long counts as recovered: the next failure starts over
/// at [`INITIAL`]. Shorter healthy spells keep growing the delay, so a daemon that accepts and then
/// drops every connection is not hammered.
const RESET_AFTER: Duration = Duration::from_secs(60);
/// Jitter spreads the reconnects of many certdock instances after a daemon restart.
const JITTER: std::ops::Range<f64> = 0.8..1.2;

/// Exponential backoff state. Time is passed in (tokio's clock), so tests can pause it.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Failures since the last reset.
    attempt: u32,
    /// When the current connection became healthy (listed successfully), if it is.
    healthy_since: Option<Instant>,
}

// === impl Backoff ===

impl Backoff {
    /// Records that the connection works (first success after a failure counts).
    pub(crate) fn healthy(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// The delay before the next attempt, with random jitter.
    pub(crate) fn next_delay(&mut self, now: Instant) -> Duration {
        let factor = rand::random_range(JITTER);
        self.next_delay_with(now, factor)
    }

    /// The delay before the next attempt, scaled by `jitter` (from [`JITTER`]).
    fn next_delay_with(&mut self, now: Instant, jitter: f64) -> Duration {
        if let Some(since) = self.healthy_since.take()
            && now.saturating_duration_since(since) >= RESET_AFTER
        {
            self.attempt = 0;
        }
        // 2^6 × 0.5 s already exceeds MAX; capping the exponent avoids overflow.
        let base = INITIAL.saturating_mul(1 << self.attempt.min(6)).min(MAX);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(jitter).min(MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn delays_double_from_half_a_second_up_to_thirty() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        let delays: Vec<f64> = (0..9)
            .map(|_| secs(backoff.next_delay_with(now, 1.0)))
            .collect();
        assert_eq!(delays, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
    }

    #[test]
    fn jitter_never_exceeds_the_maximum() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        assert_eq!(secs(backoff.next_delay_with(now, 1.19)), 0.595);
        for _ in 0..10 {
            assert!(backoff.next_delay_with(now, 1.19) <= MAX);
        }
    }

    #[test]
    fn a_quiet_healthy_spell_resets_the_delay() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        for _ in 0..4 {
            backoff.next_delay_with(start, 1.0);
        }
        backoff.healthy(start);
        let later = start + RESET_AFTER;
        assert_eq!(secs(backoff.next_delay_with(later, 1.0)), 0.5);
    }

    #[test]
    fn a_short_healthy_spell_keeps_growing_the_delay() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        backoff.next_delay_with(start, 1.0);
        backoff.healthy(start);
        let soon = start + Duration::from_secs(5);
        assert_eq!(secs(backoff.next_delay_with(soon, 1.0)), 1.0);
    }
}
