//! The loop's wall clock, injected so the whole loop runs on tokio's paused clock in tests.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Wall-clock time for planning, and the mapping of wall-clock deadlines to timer instants.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock: a step of it (suspend, NTP) is seen at the next pass.
    System,
    /// `wall` at tokio instant `at`, advancing with tokio's clock (paused in tests).
    Tokio { wall: SystemTime, at: Instant },
}

// === impl Clock ===

impl Clock {
    /// A clock that reads `wall` now and advances with tokio's (possibly paused) clock.
    pub fn tokio_at(wall: SystemTime) -> Self {
        Clock::Tokio {
            wall,
            at: Instant::now(),
        }
    }

    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Tokio { wall, at } => *wall + at.elapsed(),
        }
    }

    /// The timer instant at which this clock reads `t` (now, when `t` is past).
    pub fn instant_of(&self, t: SystemTime) -> Instant {
        Instant::now() + t.duration_since(self.now()).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_follows_the_paused_timer() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = Clock::tokio_at(wall);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), wall + Duration::from_secs(90));
        let at = clock.instant_of(wall + Duration::from_secs(100));
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
        assert_eq!(clock.instant_of(wall), Instant::now(), "a past time is now");
    }
}
