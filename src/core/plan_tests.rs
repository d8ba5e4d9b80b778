use std::collections::BTreeMap;

use super::*;
use crate::core::labels::LabelContext;
use crate::core::policy::{NamePolicy, TtlPolicy};

pub(super) const H: Duration = Duration::from_secs(3600);

pub(super) fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

pub(super) fn container(id: &str, labels: &[(&str, &str)], state: ContainerState) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: format!("c-{id}"),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state,
        networks: vec!["bridge".into()],
    }
}

pub(super) struct Fixture {
    pub(super) names: NamePolicy,
    pub(super) ttls: TtlPolicy,
    pub(super) current: BTreeMap<Identity, Current>,
    pub(super) failures: BTreeMap<Identity, Failure>,
    pub(super) copied: BTreeMap<String, String>,
    pub(super) published: BTreeMap<Identity, String>,
    pub(super) orphaned: BTreeMap<Identity, SystemTime>,
}

impl Fixture {
    pub(super) fn new() -> Self {
        Self {
            names: NamePolicy::default(),
            ttls: TtlPolicy::default(),
            current: BTreeMap::new(),
            failures: BTreeMap::new(),
            copied: BTreeMap::new(),
            published: BTreeMap::new(),
            orphaned: BTreeMap::new(),
        }
    }

    pub(super) fn labelled(&self, containers: &[ContainerInfo]) -> ContainerSet {
        let ctx = LabelContext {
            prefix: "certdock",
            names: &self.names,
            ttls: &self.ttls,
            proxy_network_configured: true,
            forward_auth: true,
        };
        Labelled::parse_all(containers, &ctx)
    }

    pub(super) fn plan(&self, containers: &[ContainerInfo], now: SystemTime) -> Plan {
        self.plan_parsed(&self.labelled(containers), now)
    }

    pub(super) fn plan_parsed(&self, containers: &ContainerSet, now: SystemTime) -> Plan {
        plan(&World {
            containers,
            label_prefix: "certdock",
            proxy_network: Some("proxy"),
            traefik_client: None,
            current: &self.current,
            failures: &self.failures,
            copied: &self.copied,
            ca_version: "ca-1",
            published: &self.published,
            orphaned_since: &self.orphaned,
            first_list_done: true,
            grace: Duration::from_secs(600),
            now,
        })
    }

    pub(super) fn hold(&mut self, name: &str, serial: &str, sans: &[&str], issued_at: SystemTime) {
        self.current.insert(
            id(name),
            Current {
                version: serial.into(),
                sans: sans.iter().map(|s| San::parse(s).unwrap()).collect(),
                groups: Default::default(),
                usage: Usage::BOTH,
                not_before: issued_at - Duration::from_secs(60),
                not_after: issued_at + 24 * H,
                renew_at: issued_at + 16 * H,
                issuer_trusted: true,
            },
        );
    }
}

pub(super) fn id(name: &str) -> Identity {
    Identity::Named(CertName::parse(name).unwrap())
}

pub(super) const API: &[(&str, &str)] = &[
    ("certdock.enable", "true"),
    ("certdock.name", "api"),
    ("certdock.sans", "api.internal"),
];

#[test]
fn a_new_labelled_container_is_issued_copied_and_attached() {
    let f = Fixture::new();
    let p = f.plan(&[container("a", API, ContainerState::Created)], t(0));
    assert_eq!(p.work.len(), 1);
    let w = &p.work[0];
    assert_eq!(w.issue.as_ref().unwrap().1, IssueReason::Missing);
    assert_eq!(w.issue.as_ref().unwrap().0.sans.len(), 2);
    assert_eq!(w.copies.len(), 1);
    assert!(!w.copies[0].running);
    assert_eq!(
        p.attaches,
        vec![Attach {
            container_id: "a".into(),
            network: "proxy".into(),
            alias: "api".into()
        }]
    );
}

#[test]
fn an_unlabelled_container_is_untouched_and_a_bad_label_is_refused_alone() {
    let f = Fixture::new();
    let bad = [("certdock.enable", "true"), ("certdock.ttl", "banana")];
    let p = f.plan(
        &[
            container("plain", &[], ContainerState::Running),
            container("bad", &bad, ContainerState::Running),
            container("good", API, ContainerState::Running),
        ],
        t(0),
    );
    assert_eq!(p.work.len(), 1, "only the good one is worked on");
    assert_eq!(p.refused.len(), 1);
    assert!(
        p.refused[0].error.contains("certdock.ttl"),
        "{}",
        p.refused[0].error
    );
    assert_eq!(p.attaches.len(), 1);
}

#[test]
fn nothing_happens_when_everything_is_delivered_and_the_loop_wakes_at_renewal() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    f.copied.insert("a".into(), "s1".into());
    let mut c = container("a", API, ContainerState::Running);
    c.networks.push("proxy".into());
    let p = f.plan(&[c], t(60));
    assert!(p.work.is_empty() && p.attaches.is_empty(), "{p:?}");
    assert_eq!(p.next_wake(), Some(t(0) + 16 * H));
}

#[test]
fn renewal_is_due_at_renew_at_and_redelivers_with_a_reload() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    f.copied.insert("a".into(), "s1".into());
    let mut labels = API.to_vec();
    labels.push(("certdock.reload", "SIGHUP"));
    let p = f.plan(
        &[container("a", &labels, ContainerState::Running)],
        t(0) + 16 * H,
    );
    assert_eq!(p.work[0].issue.as_ref().unwrap().1, IssueReason::RenewalDue);
    assert_eq!(
        p.work[0].copies[0].reload,
        Some(Reload::Signal(crate::core::labels::Signal::Hup))
    );
    assert!(p.work[0].copies[0].running);
}

#[test]
fn a_container_missing_the_current_serial_gets_a_copy_without_reissue() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    f.copied.insert("a".into(), "s1".into());
    let p = f.plan(
        &[
            container("a", API, ContainerState::Running),
            container("b", API, ContainerState::Created),
        ],
        t(10),
    );
    assert!(p.work[0].issue.is_none());
    assert_eq!(p.work[0].copies.len(), 1);
    assert_eq!(p.work[0].copies[0].container_id, "b");
}

#[test]
fn changed_names_or_a_distrusted_issuer_force_a_new_certificate() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api"], t(0));
    let p = f.plan(&[container("a", API, ContainerState::Running)], t(10));
    assert_eq!(
        p.work[0].issue.as_ref().unwrap().1,
        IssueReason::NamesChanged
    );
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    f.current.get_mut(&id("api")).unwrap().issuer_trusted = false;
    let p = f.plan(&[container("a", API, ContainerState::Running)], t(10));
    assert_eq!(p.work[0].issue.as_ref().unwrap().1, IssueReason::IssuerGone);
}

#[test]
fn a_failed_issuance_backs_off_until_its_retry_time() {
    let mut f = Fixture::new();
    f.failures.insert(
        id("api"),
        Failure {
            attempts: 1,
            retry_at: t(30),
            error: "CA down".into(),
        },
    );
    let p = f.plan(&[container("a", API, ContainerState::Running)], t(10));
    assert!(p.work.iter().all(|w| w.issue.is_none()));
    assert_eq!(p.next_wake(), Some(t(30)));
    let p = f.plan(&[container("a", API, ContainerState::Running)], t(30));
    assert!(p.work[0].issue.is_some());
}

#[test]
fn a_renewal_backing_off_wakes_at_its_retry_not_at_the_past_renewal_time() {
    let mut f = Fixture::new();
    f.hold("api", "01", &["api", "api.internal"], t(0));
    let now = t(0) + 17 * H;
    f.failures.insert(
        id("api"),
        Failure {
            attempts: 3,
            retry_at: now + Duration::from_secs(8),
            error: "CA down".into(),
        },
    );
    let p = f.plan(&[container("a", API, ContainerState::Running)], now);
    assert!(p.work.iter().all(|w| w.issue.is_none()));
    assert_eq!(p.next_wake(), Some(now + Duration::from_secs(8)));
}

#[test]
fn two_containers_sharing_a_name_share_one_certificate_unless_they_disagree() {
    let f = Fixture::new();
    let other = [
        ("certdock.enable", "true"),
        ("certdock.name", "api"),
        ("certdock.sans", "other.internal"),
    ];
    let p = f.plan(
        &[
            container("a", API, ContainerState::Running),
            container("b", API, ContainerState::Running),
            container("c", &other, ContainerState::Running),
        ],
        t(0),
    );
    assert_eq!(p.work.len(), 1);
    assert_eq!(p.work[0].copies.len(), 2);
    assert_eq!(p.refused.len(), 1);
    assert_eq!(p.refused[0].container_id, "c");
}

#[test]
fn volume_delivery_publishes_once_and_signals_running_containers() {
    let mut f = Fixture::new();
    f.hold("api", "s2", &["api", "api.internal"], t(0));
    f.published.insert(id("api"), "s1".into());
    let mut labels = API.to_vec();
    labels.push(("certdock.delivery", "volume"));
    labels.push(("certdock.reload", "restart"));
    let p = f.plan(&[container("a", &labels, ContainerState::Running)], t(10));
    assert!(p.work[0].publish);
    assert!(p.work[0].copies.is_empty());
    assert_eq!(
        p.work[0].publish_reloads,
        vec![("a".to_string(), Reload::Restart)]
    );
}

#[test]
fn an_unwanted_certificate_is_removed_only_after_the_grace_period_and_the_first_list() {
    let mut f = Fixture::new();
    f.hold("gone", "s1", &["gone"], t(0));
    let p = f.plan(&[], t(10));
    assert_eq!(p.newly_orphaned, vec![id("gone")]);
    assert!(p.remove.is_empty());
    f.orphaned.insert(id("gone"), t(10));
    assert!(f.plan(&[], t(300)).remove.is_empty());
    assert_eq!(f.plan(&[], t(610)).remove, vec![id("gone")]);
}

#[test]
fn a_shorter_ttl_takes_effect_at_once() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    let mut labels = API.to_vec();
    labels.push(("certdock.ttl", "1h"));
    let p = f.plan(&[container("a", &labels, ContainerState::Running)], t(10));
    assert_eq!(p.work[0].issue.as_ref().unwrap().1, IssueReason::TtlChanged);
}

#[test]
fn a_clock_that_jumps_back_before_not_before_forces_a_new_certificate() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(7200));
    f.copied.insert("a".into(), "s1".into());
    let p = f.plan(&[container("a", API, ContainerState::Running)], t(0));
    assert_eq!(
        p.work[0].issue.as_ref().unwrap().1,
        IssueReason::NotYetValid
    );
}

#[test]
fn a_clock_that_jumps_forward_past_expiry_forces_a_new_certificate() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    let p = f.plan(
        &[container("a", API, ContainerState::Running)],
        t(0) + 48 * H,
    );
    assert_eq!(p.work[0].issue.as_ref().unwrap().1, IssueReason::Expired);
}

#[test]
fn a_change_of_groups_is_a_new_certificate() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    let mut labels = API.to_vec();
    let p = f.plan(&[container("a", &labels, ContainerState::Running)], t(10));
    assert!(p.work.iter().all(|w| w.issue.is_none()), "{:?}", p.work);
    labels.push(("certdock.groups", "ops"));
    let p = f.plan(&[container("a", &labels, ContainerState::Running)], t(10));
    let (spec, reason) = p.work[0].issue.as_ref().unwrap();
    assert_eq!(*reason, IssueReason::GroupsChanged);
    assert_eq!(
        spec.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        ["ops"]
    );
}

#[test]
fn containers_sharing_a_name_must_agree_on_the_allow_list() {
    let f = Fixture::new();
    let mut a = API.to_vec();
    a.push(("certdock.allow", "web"));
    let mut b = API.to_vec();
    b.push(("certdock.allow", "web,group:ops"));
    let p = f.plan(
        &[
            container("a", &a, ContainerState::Running),
            container("b", &b, ContainerState::Running),
        ],
        t(10),
    );
    assert_eq!(
        p.desired[&id("api")]
            .allow
            .as_ref()
            .map(ToString::to_string),
        Some("web".into())
    );
    assert_eq!(p.refused.len(), 1);
    assert!(
        p.refused[0].error.contains("allow list"),
        "{}",
        p.refused[0].error
    );
}
