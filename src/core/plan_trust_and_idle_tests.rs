//! Plan tests, continued: trust-only containers, and an idle plan whatever the running states.

use super::tests::*;
use super::*;

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
    let mut one_gone = first.clone();
    one_gone.remove("b");
    assert!(!idle_plan_holds(&first, &one_gone), "one gone");
}
