//! Replay nonces (RFC 8555 §6.5): random, single use, expiring, and bounded in number.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A nonce older than this is refused (the client gets a fresh one with `badNonce`).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// At most this many outstanding nonces; the oldest go first. A client that fetches nonces in
/// a loop only makes other clients retry once, never grows memory.
pub const MAX_NONCES: usize = 16 * 1024;

/// Outstanding nonces. In memory only: after a restart every client retries once on `badNonce`,
/// which RFC 8555 clients do by design.
#[derive(Default)]
pub struct Nonces {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    issued: HashMap<String, Instant>,
    /// Issue order, for eviction; may hold nonces already spent (skipped when popped).
    order: VecDeque<String>,
}

impl Nonces {
    /// A fresh nonce: 128 random bits, base64url.
    pub fn issue(&self, now: Instant) -> String {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        if let Ok(mut inner) = self.inner.lock() {
            while inner.issued.len() >= MAX_NONCES || inner.order.len() >= 2 * MAX_NONCES {
                match inner.order.pop_front() {
                    Some(old) => {
                        inner.issued.remove(&old);
                    }
                    None => break,
                }
            }
            inner.issued.insert(nonce.clone(), now);
            inner.order.push_back(nonce.clone());
        }
        nonce
    }

    /// Spends a nonce: true only the first time, and only while it has not expired.
    pub fn consume(&self, nonce: &str, now: Instant) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        match inner.issued.remove(nonce) {
            Some(at) => now.saturating_duration_since(at) <= NONCE_LIFETIME,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_once() {
        let n = Nonces::default();
        let now = Instant::now();
        let a = n.issue(now);
        assert!(n.consume(&a, now));
        assert!(!n.consume(&a, now));
        assert!(!n.consume("never-issued", now));
    }

    #[test]
    fn an_old_nonce_is_refused() {
        let n = Nonces::default();
        let now = Instant::now();
        let a = n.issue(now);
        assert!(!n.consume(&a, now + NONCE_LIFETIME + Duration::from_secs(1)));
    }

    #[test]
    fn outstanding_nonces_are_bounded_and_the_oldest_go_first() {
        let n = Nonces::default();
        let now = Instant::now();
        let first = n.issue(now);
        for _ in 0..MAX_NONCES {
            n.issue(now);
        }
        assert!(!n.consume(&first, now));
        let len = n.inner.lock().map(|i| i.issued.len()).unwrap_or(0);
        assert_eq!(len, MAX_NONCES);
    }
}
