//! Bounds on the CA's own outgoing validations. Each http-01 or tls-alpn-01 validation is a
//! connection the CA opens on a client's behalf and may hold for [`super::validate`]'s 10 s
//! timeout: without a bound one account, or many cheap accounts, could make the CA hold
//! thousands of them (and point them at any host:port the names resolve to). A challenge
//! POST over a bound is refused with `rateLimited` (HTTP 429, `Retry-After`) before anything is
//! changed: the challenge stays `pending` and the client may ask again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use super::problem::Problem;

/// Validations one account may have running at once (lego validates one name at a time by
/// default; certbot and Caddy a few).
pub const PER_ACCOUNT: usize = 8;
/// Validations the CA runs at once, whoever asked.
pub const TOTAL: usize = 64;

/// The validations running now, counted per account.
#[derive(Debug)]
pub struct ValidationSlots {
    per_account: usize,
    total: usize,
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    total: usize,
    by_account: HashMap<String, usize>,
}

/// One running validation; its slot is given back when this is dropped (the validation ended,
/// or its task was dropped), whatever the outcome.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ValidationSlots>,
    account: String,
}

impl Default for ValidationSlots {
    fn default() -> Self {
        Self::new(PER_ACCOUNT, TOTAL)
    }
}

impl ValidationSlots {
    pub fn new(per_account: usize, total: usize) -> Self {
        Self {
            per_account,
            total,
            running: Mutex::new(Running::default()),
        }
    }

    /// A slot for one validation of `account`, or the problem to answer with.
    pub fn take(self: &Arc<Self>, account: &str) -> Result<Slot, Problem> {
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mine = r.by_account.get(account).copied().unwrap_or(0);
        if mine >= self.per_account {
            return Err(busy(format!(
                "this account has {mine} validations running, the most one account may have at once; \
                 retry when one has finished"
            )));
        }
        if r.total >= self.total {
            return Err(busy(format!(
                "the CA is running {} validations, the most it runs at once; retry shortly",
                r.total
            )));
        }
        r.total += 1;
        *r.by_account.entry(account.to_string()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            account: account.to_string(),
        })
    }

    /// Validations running now (for tests and metrics).
    pub fn running(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.slots.running.lock().unwrap_or_else(|e| e.into_inner());
        r.total = r.total.saturating_sub(1);
        if let Some(n) = r.by_account.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                r.by_account.remove(&self.account);
            }
        }
    }
}

fn busy(detail: String) -> Problem {
    Problem::new("rateLimited", StatusCode::TOO_MANY_REQUESTS, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_and_the_ca_each_have_a_bound_and_slots_come_back() {
        let slots = Arc::new(ValidationSlots::new(2, 3));
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        let e = slots.take("a").unwrap_err();
        assert_eq!((e.short(), e.status), ("rateLimited", 429));
        assert!(e.detail.contains("this account"), "{}", e.detail);
        let _b1 = slots.take("b").unwrap();
        let e = slots.take("c").unwrap_err();
        assert!(e.detail.contains("the CA is running 3"), "{}", e.detail);
        drop(a1);
        assert_eq!(slots.running(), 2);
        let _c1 = slots.take("c").expect("a slot came back");
        assert!(slots.take("a").is_err(), "the CA is full again");
    }
}
