//! Prometheus metrics shared by the HTTPS API and the controller (`GET /metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

/// Put on every error response (the API's and ACME's) so the request metrics can count errors
/// by their stable code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    pub name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabel {
    pub proxy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub endpoint: String,
    pub code: u16,
}

/// Every certdock metric, registered under the `certdock_` prefix. Cheap to share behind an
/// `Arc`: the families are internally synchronised.
///
/// Expiry gauges are derived at scrape time from the not-after instants recorded with
/// [`Metrics::set_certificate`], so "seconds until expiry" is never stale between scrapes.
pub struct Metrics {
    registry: Registry,
    /// Not-after (Unix seconds) of each managed certificate, by name.
    not_after: Mutex<BTreeMap<String, i64>>,
    /// When the decider's feed started and last got revocations (Unix seconds); `None` while
    /// nothing feeds a decider.
    revocations: Mutex<Option<RevocationsSeen>>,
    /// The current root's not-after (Unix seconds), when this process runs the CA.
    ca_root_not_after: Mutex<Option<i64>>,
    families: Families,
}

/// Past this age the decider's revocations are called stale (`certdock_forward_auth_stale`).
pub const STALE_AFTER_SECONDS: i64 = 30;

#[derive(Debug, Clone, Copy)]
struct RevocationsSeen {
    started: i64,
    fetched: Option<i64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("certdock");
        let families = Families::register(&mut registry);
        Self {
            registry,
            not_after: Mutex::new(BTreeMap::new()),
            revocations: Mutex::new(None),
            ca_root_not_after: Mutex::new(None),
            families,
        }
    }

    /// Records (or replaces) a managed certificate's expiry.
    pub fn set_certificate(&self, name: &str, not_after: OffsetDateTime) {
        if let Ok(mut m) = self.not_after.lock() {
            m.insert(name.to_string(), not_after.unix_timestamp());
        }
    }

    /// Records the current root's expiry, and whether it is in the last tenth of its life.
    pub fn set_ca_root(&self, not_after: OffsetDateTime, last_tenth: bool) {
        if let Ok(mut r) = self.ca_root_not_after.lock() {
            *r = Some(not_after.unix_timestamp());
        }
        self.ca_root_last_tenth.set(i64::from(last_tenth));
    }

    /// Forgets a certificate that is no longer managed.
    pub fn remove_certificate(&self, name: &str) {
        if let Ok(mut m) = self.not_after.lock() {
            m.remove(name);
        }
        self.expiry_seconds.remove(&NameLabel {
            name: name.to_string(),
        });
    }

    pub fn issued(&self, kind: &str) {
        self.issuances.get_or_create(&kind_label(kind)).inc();
    }

    pub fn renewed(&self, kind: &str) {
        self.renewals.get_or_create(&kind_label(kind)).inc();
    }

    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&kind_label(kind)).inc();
    }

    pub fn proxy_config_written(&self, proxy: &str) {
        self.proxy_config_writes
            .get_or_create(&ProxyLabel {
                proxy: proxy.to_string(),
            })
            .inc();
    }

    pub fn http_request(&self, endpoint: &str, code: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                endpoint: endpoint.to_string(),
                code,
            })
            .inc();
    }

    /// One forward-auth decision: `allowed`, or the stable code of the refusal.
    pub fn forward_auth(&self, outcome: &str) {
        self.forward_auth
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A decider feed starts at `now`: until its first revocations arrive it counts as stale.
    pub fn revocations_followed(&self, now: OffsetDateTime) {
        if let Ok(mut r) = self.revocations.lock() {
            r.get_or_insert(RevocationsSeen {
                started: now.unix_timestamp(),
                fetched: None,
            });
        }
    }

    /// The decider got the CA's current revocations at `at`.
    pub fn revocations_fetched(&self, at: OffsetDateTime) {
        if let Ok(mut r) = self.revocations.lock() {
            let seen = r.get_or_insert(RevocationsSeen {
                started: at.unix_timestamp(),
                fetched: None,
            });
            seen.fetched = Some(at.unix_timestamp());
        }
    }

    /// The exposition in the OpenMetrics text format (which Prometheus reads), expiry gauges
    /// computed for `now`.
    pub fn encode(&self, now: OffsetDateTime) -> String {
        let now = now.unix_timestamp();
        if let Ok(m) = self.not_after.lock() {
            self.certificates_managed
                .set(i64::try_from(m.len()).unwrap_or(i64::MAX));
            for (name, at) in m.iter() {
                self.expiry_seconds
                    .get_or_create(&NameLabel { name: name.clone() })
                    .set(at - now);
            }
            // With nothing managed there is no earliest expiry; 0 would read as "expiring now".
            match m.values().min() {
                Some(at) => self.earliest_expiry_seconds.set(at - now),
                None => self.earliest_expiry_seconds.set(i64::MAX),
            };
        }
        if let Ok(r) = self.revocations.lock()
            && let Some(seen) = *r
        {
            let age = now - seen.fetched.unwrap_or(seen.started);
            self.revocations_age_seconds.set(age);
            let stale = seen.fetched.is_none() || age > STALE_AFTER_SECONDS;
            self.forward_auth_stale.set(i64::from(stale));
        }
        if let Ok(r) = self.ca_root_not_after.lock() {
            // Where no CA runs (an agent) there is no root to expire; 0 would read as "now".
            self.ca_root_expiry_seconds
                .set(r.map_or(i64::MAX, |at| at - now));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Declares every family once: its field, type, exported name (after `certdock_`) and help.
macro_rules! families {
    ($( $field:ident: $ty:ty = $name:literal, $help:literal; )*) => {
        /// The families, each registered once and kept for updates.
        pub struct Families {
            $( pub $field: $ty, )*
        }

        impl Families {
            fn register(registry: &mut Registry) -> Self {
                let f = Families { $( $field: <$ty>::default(), )* };
                $( registry.register($name, $help, f.$field.clone()); )*
                f
            }
        }
    };
}

families! {
    certificates_managed: Gauge = "certificates_managed", "Certificates certdock currently manages";
    earliest_expiry_seconds: Gauge = "earliest_expiry_seconds",
        "Seconds until the earliest managed certificate expires (negative: expired)";
    expiry_seconds: Family<NameLabel, Gauge> = "certificate_expiry_seconds",
        "Seconds until each managed certificate expires (negative: expired)";
    issuances: Family<KindLabel, Counter> = "issuances", "Certificates issued, by kind";
    renewals: Family<KindLabel, Counter> = "renewals", "Certificates renewed, by kind";
    errors: Family<KindLabel, Counter> = "errors", "Errors, by kind";
    docker_events: Counter = "docker_events", "Docker events seen";
    resyncs: Counter = "resyncs", "Full re-lists of Docker containers";
    proxy_config_writes: Family<ProxyLabel, Counter> = "proxy_config_writes",
        "Proxy configuration files written, by proxy";
    http_requests: Family<HttpLabels, Counter> = "http_requests",
        "HTTPS API requests, by endpoint and status code";
    forward_auth: Family<OutcomeLabel, Counter> = "forward_auth_decisions",
        "Forward-auth decisions, by outcome (allowed, or the refusal's code)";
    revocations_age_seconds: Gauge = "forward_auth_revocations_age_seconds",
        "Seconds since the forward-auth decider last got the CA's revocations (an agent: its CRL)";
    forward_auth_stale: Gauge = "forward_auth_stale",
        "Whether (1) the decider has had no revocations from the CA for 30 s: the CA is unreachable and it decides from the last ones";
    ca_root_expiry_seconds: Gauge = "ca_root_expiry_seconds",
        "Seconds until the CA's current root expires (only where this process runs the CA)";
    ca_root_last_tenth: Gauge = "ca_root_last_tenth",
        "Whether (1) the CA's current root is in the last tenth of its life: rotate it (`certdock ca rotate --root`)";
}

/// `metrics.resyncs.inc()` and the like read through to the families.
impl std::ops::Deref for Metrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.families
    }
}

fn kind_label(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_gauges_say_when_the_root_ends_and_whether_it_is_in_its_last_tenth() {
        let m = Metrics::new();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert!(
            m.encode(t0)
                .contains(&format!("certdock_ca_root_expiry_seconds {}", i64::MAX))
        );
        m.set_ca_root(t0 + time::Duration::days(300), true);
        let text = m.encode(t0);
        assert!(
            text.contains("certdock_ca_root_expiry_seconds 25920000"),
            "{text}"
        );
        assert!(text.contains("certdock_ca_root_last_tenth 1"), "{text}");
    }

    #[test]
    fn expiry_gauges_are_computed_at_scrape_time_and_prefixed() {
        let m = Metrics::new();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        m.set_certificate("web", t0 + time::Duration::hours(2));
        m.set_certificate("db", t0 + time::Duration::hours(1));
        m.issued("api_sign");
        m.http_request("/health", 200);
        let text = m.encode(t0);
        assert!(text.contains("certdock_certificates_managed 2"), "{text}");
        assert!(
            text.contains("certdock_earliest_expiry_seconds 3600"),
            "{text}"
        );
        assert!(
            text.contains("certdock_certificate_expiry_seconds{name=\"web\"} 7200"),
            "{text}"
        );
        assert!(
            text.contains("certdock_issuances_total{kind=\"api_sign\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        m.remove_certificate("web");
        let text = m.encode(t0);
        assert!(!text.contains("name=\"web\""), "{text}");
        assert!(text.contains("certdock_certificates_managed 1"), "{text}");
    }

    #[test]
    fn the_decider_is_stale_before_its_first_revocations_and_thirty_seconds_after_its_last() {
        let m = Metrics::new();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        m.revocations_followed(t0);
        let text = m.encode(t0 + time::Duration::seconds(5));
        assert!(text.contains("certdock_forward_auth_stale 1"), "{text}");
        m.revocations_fetched(t0 + time::Duration::seconds(6));
        let text = m.encode(t0 + time::Duration::seconds(16));
        assert!(text.contains("certdock_forward_auth_stale 0"), "{text}");
        assert!(
            text.contains("certdock_forward_auth_revocations_age_seconds 10"),
            "{text}"
        );
        let text = m.encode(t0 + time::Duration::seconds(37));
        assert!(text.contains("certdock_forward_auth_stale 1"), "{text}");
    }
}
