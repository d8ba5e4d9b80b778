//! What one client may hold of a listener (issue 18): a deadline for each phase of a
//! connection and a cap on open connections, kept below the process's open-file limit.

use std::time::Duration;

/// File descriptors kept for everything but client connections (the state directory's files,
/// the Docker socket, connections to a remote CA or an ACME client's server) when the cap is
/// derived from the open-file limit.
const RESERVED_FDS: u64 = 64;
/// The derived cap's ceiling: far more than a CA's clients need at once (an agent keeps one
/// connection, a proxy a few), and it bounds memory where the file limit is huge (containers
/// often allow a million files).
const AUTO_CAP_MAX: u64 = 4096;

/// The deadlines and the cap every listener applies (the API of `run`/`serve`, with ACME and
/// forward-auth, and an agent's forward-auth listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accept to the end of the TLS handshake.
    pub handshake: Duration,
    /// To send a complete request head: counted from the handshake for the first request, and
    /// from the end of the previous answer on a kept-alive connection (so also the idle limit).
    pub header: Duration,
    /// To send a request's whole body, counted from the end of its head.
    pub body: Duration,
    /// Connections open at once; at the cap the oldest connection that is not being answered
    /// (handshaking, idle, or still sending its body) is closed to make room.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
            body: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// The connection cap: `asked` (or, for `None`, three quarters of the limit and at most
/// [`AUTO_CAP_MAX`]), never closer to `open_files` than [`RESERVED_FDS`], and at least 1.
pub fn connection_cap(asked: Option<usize>, open_files: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED_FDS).max(1);
    let wanted = asked.map_or((open_files / 4 * 3).min(AUTO_CAP_MAX), |n| n as u64);
    usize::try_from(wanted.min(room).max(1)).unwrap_or(usize::MAX)
}

/// Raises the soft open-file limit to the hard one and returns the limit now in force (the
/// soft one as it was when raising is refused).
pub fn raise_open_file_limit() -> u64 {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            if now != before {
                tracing::info!(from = before, to = now, "raised the open-file limit");
            }
            now
        }
        Err(e) => {
            tracing::warn!(error = %e, limit = before, "cannot raise the open-file limit");
            before
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        assert_eq!(connection_cap(None, 1024), 768);
        assert_eq!(
            connection_cap(None, 1 << 20),
            4096,
            "a ceiling where files abound"
        );
        assert_eq!(
            connection_cap(Some(50_000), 1 << 20),
            50_000,
            "unless asked"
        );
        assert_eq!(connection_cap(None, 256), 192);
        assert_eq!(connection_cap(Some(5000), 1024), 960, "clamped");
        assert_eq!(connection_cap(Some(100), 1024), 100);
        assert_eq!(connection_cap(None, 10), 1);
        assert_eq!(connection_cap(Some(0), 1024), 1);
    }
}
