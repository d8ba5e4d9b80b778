use std::collections::BTreeMap;

use super::*;
use crate::core::labels::LabelContext;
use crate::core::policy::{NamePolicy, TtlPolicy};

const H: Duration = Duration::from_secs(3600);

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn container(id: &str, labels: &[(&str, &str)], state: ContainerState) -> ContainerInfo {
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

struct Fixture {
    names: NamePolicy,
    ttls: TtlPolicy,
    current: BTreeMap<Identity, Current>,
    failures: BTreeMap<Identity, Failure>,
    copied: BTreeMap<String, String>,
    published: BTreeMap<Identity, String>,
    orphaned: BTreeMap<Identity, SystemTime>,
}

impl Fixture {
    fn new() -> Self {
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

    fn labelled(&self, containers: &[ContainerInfo]) -> Vec<Arc<Labelled>> {
        let ctx = LabelContext {
            prefix: "certdock",
            names: &self.names,
            ttls: &self.ttls,
            proxy_network_configured: true,
            forward_auth: true,
        };
        Labelled::parse_all(containers, &ctx)
    }

    fn plan(&self, containers: &[ContainerInfo], now: SystemTime) -> Plan {
        self.plan_parsed(&self.labelled(containers), now)
    }

    fn plan_parsed(&self, containers: &[Arc<Labelled>], now: SystemTime) -> Plan {
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

    fn hold(&mut self, name: &str, serial: &str, sans: &[&str], issued_at: SystemTime) {
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

fn id(name: &str) -> Identity {
    Identity::Named(CertName::parse(name).unwrap())
}

const API: &[(&str, &str)] = &[
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
    assert_eq!(p.next_wake, Some(t(0) + 16 * H));
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
    assert_eq!(p.next_wake, Some(t(30)));
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
    assert_eq!(p.next_wake, Some(now + Duration::from_secs(8)));
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

#[test]
fn a_trust_only_container_gets_ca_pem_again_whenever_the_bundle_changes_and_no_certificate() {
    let mut f = Fixture::new();
    let trust = &[
        ("certdock.enable", "true"),
        ("certdock.name", "web"),
        ("certdock.usage", "none"),
        ("certdock.reload", "SIGHUP"),
    ];
    let c = container("t", trust, ContainerState::Running);
    let p = f.plan(std::slice::from_ref(&c), t(0));
    assert!(p.work.is_empty() && p.refused.is_empty(), "{p:?}");
    assert!(!p.desired.contains_key(&id("web")), "no certificate wanted");
    assert_eq!(p.trust_copies.len(), 1);
    assert!(p.trust_copies[0].running && p.trust_copies[0].reload.is_some());
    assert_eq!(p.trust_only, [("web".to_string(), "c-t".to_string())]);
    f.copied.insert("t".into(), "ca-1".into());
    assert!(
        f.plan(std::slice::from_ref(&c), t(1))
            .trust_copies
            .is_empty()
    );
    f.copied.insert("t".into(), "ca-0".into());
    assert_eq!(f.plan(&[c], t(2)).trust_copies.len(), 1, "a rollover");
}

#[test]
fn a_trust_only_container_asking_for_certificate_features_is_refused() {
    let f = Fixture::new();
    for (label, value) in [
        ("certdock.sans", "x.internal"),
        ("certdock.delivery", "volume"),
        ("certdock.groups", "ops"),
    ] {
        let labels = &[
            ("certdock.enable", "true"),
            ("certdock.name", "web"),
            ("certdock.usage", "none"),
            (label, value),
        ];
        let p = f.plan(&[container("t", labels, ContainerState::Running)], t(0));
        assert_eq!(p.refused.len(), 1, "{label}");
        assert!(
            p.refused[0].error.contains("usage `none`"),
            "{}",
            p.refused[0].error
        );
        assert!(p.trust_copies.is_empty());
    }
}

/// What lets a labelled container's stop or start skip planning ([`idle_plan_holds`]): a plan
/// with nothing to do stays the same plan, field for field, whatever the containers' states.
#[test]
fn an_idle_plan_is_the_same_whatever_the_containers_states() {
    let mut f = Fixture::new();
    f.hold("api", "s1", &["api", "api.internal"], t(0));
    f.hold("vol", "v1", &["vol", "vol.internal"], t(0));
    f.copied.insert("a".into(), "s1".into());
    f.copied.insert("t".into(), "ca-1".into());
    f.published.insert(id("vol"), "v1".into());
    let reload = ("certdock.reload", "SIGHUP");
    let mut api = API.to_vec();
    api.push(reload);
    let vol = [
        ("certdock.enable", "true"),
        ("certdock.name", "vol"),
        ("certdock.sans", "vol.internal"),
        ("certdock.delivery", "volume"),
        reload,
    ];
    let trust = [
        ("certdock.enable", "true"),
        ("certdock.name", "web"),
        ("certdock.usage", "none"),
        reload,
    ];
    let bad = [("certdock.enable", "true"), ("certdock.ttl", "banana")];
    let world = |states: [ContainerState; 4]| {
        let mut cs = vec![
            container("a", &api, states[0]),
            container("v", &vol, states[1]),
            container("t", &trust, states[2]),
            container("b", &bad, states[3]),
        ];
        for c in &mut cs {
            c.networks.push("proxy".into());
        }
        cs
    };
    use ContainerState::{Created, Running, Stopped};
    let first = f.labelled(&world([Running; 4]));
    let idle = f.plan_parsed(&first, t(60));
    assert!(
        idle.work.is_empty() && idle.attaches.is_empty() && idle.trust_copies.is_empty(),
        "{idle:?}"
    );
    assert_eq!(idle.refused.len(), 1);
    for states in [
        [Stopped; 4],
        [Created; 4],
        [Stopped, Running, Created, Stopped],
        [Created, Stopped, Running, Running],
    ] {
        let after = f.labelled(&world(states));
        assert!(idle_plan_holds(&first, &after), "{states:?}");
        assert_eq!(f.plan_parsed(&after, t(60)), idle, "{states:?}");
    }

    // Anything else the plan reads does not hold.
    let mut moved = world([Running; 4]);
    moved[0].networks.retain(|n| n != "proxy");
    let moved = f.labelled(&moved);
    assert!(!idle_plan_holds(&first, &moved));
    assert_eq!(f.plan_parsed(&moved, t(60)).attaches.len(), 1);
    let mut relabelled = world([Running; 4]);
    relabelled[1]
        .labels
        .insert("certdock.delivery".into(), "container".into());
    assert!(!idle_plan_holds(&first, &f.labelled(&relabelled)));
    assert!(!idle_plan_holds(&first, &first[..3]), "one gone");
}
