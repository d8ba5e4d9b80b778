//! [`plan_after_idle`] against the whole plan: whenever it says an idle plan still holds after
//! a change, planning everything again finds nothing to do and says the same; whenever it plans
//! the part, its plan is the whole plan.

use std::sync::LazyLock;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::core::container::{ContainerInfo, ContainerState};
use crate::core::names::{San, Usage, traefik_client};
use crate::core::plan::tests::{Fixture, H, container, t};
use crate::core::plan::{CertSpecLite, Current, Failure, Plan, WakeIndex, World};

/// Label sets the containers pick from: two that share a name and agree, one that disagrees
/// with them, a trust-only one, a volume one, a bad one, and one asking for no network.
fn labels(variant: usize) -> Vec<(&'static str, &'static str)> {
    let on = ("certdock.enable", "true");
    match variant % 7 {
        0 | 1 => vec![
            on,
            ("certdock.name", "api"),
            ("certdock.sans", "api.internal"),
        ],
        2 => vec![
            on,
            ("certdock.name", "api"),
            ("certdock.sans", "other.internal"),
        ],
        3 => vec![on, ("certdock.name", "web"), ("certdock.usage", "none")],
        4 => vec![
            on,
            ("certdock.name", "vol"),
            ("certdock.delivery", "volume"),
        ],
        5 => vec![on, ("certdock.ttl", "banana")],
        _ => vec![on, ("certdock.name", "db"), ("certdock.network", "false")],
    }
}

fn make(id: &str, variant: usize, proxy: bool, other: bool) -> ContainerInfo {
    let pairs = labels(variant);
    let mut c = container(id, &pairs, ContainerState::Running);
    if proxy {
        c.networks.push("proxy".into());
    }
    if other {
        c.networks.push("other".into());
    }
    c
}

/// certdock's own client certificate, as the reconciler asks for it.
static CLIENT: LazyLock<CertSpecLite> = LazyLock::new(|| CertSpecLite {
    sans: vec![San::parse(traefik_client::CN).unwrap()],
    groups: Default::default(),
    usage: Usage::CLIENT,
    ttl: 24 * H,
});

fn world<'a>(f: &'a Fixture, containers: &'a ContainerSet, now: SystemTime) -> World<'a> {
    World {
        containers,
        label_prefix: "certdock",
        proxy_network: Some("proxy"),
        traefik_client: Some(&CLIENT),
        current: &f.current,
        failures: &f.failures,
        copied: &f.copied,
        ca_version: "ca-1",
        published: &f.published,
        orphaned_since: &f.orphaned,
        first_list_done: true,
        grace: Duration::from_secs(600),
        now,
    }
}

fn parsed(f: &Fixture, containers: &[ContainerInfo]) -> ContainerSet {
    f.labelled(containers)
}

/// `base` changed into `containers` as the store changes its set: only the containers that
/// changed, came or went are parsed and put in or taken out; the rest stays shared.
fn patched(f: &Fixture, base: &ContainerSet, containers: &[ContainerInfo]) -> ContainerSet {
    let mut set = base.clone();
    for l in base.iter() {
        if !containers.iter().any(|c| c.id == l.container.id) {
            set.remove(&l.container.id);
        }
    }
    for c in containers {
        if base.get(&c.id).is_none_or(|l| *l.container != *c) {
            set.extend(f.labelled(std::slice::from_ref(c)).iter().cloned());
        }
    }
    set
}

/// When a certificate issued now for `id` is due for renewal: a time of its own per name, so
/// that a step of the clock makes some identities due and not others.
fn renewal(id: &Identity) -> Duration {
    let spread = id.to_string().bytes().map(u64::from).sum::<u64>() % 7;
    (10 + spread as u32) * H
}

/// Carries `p` out in the fixture, as the executor and the ledger would; with `fail`, the
/// first certificate's issuance fails (retried 5 minutes later), and its copies and
/// publication, the trust copies and the attaches are not carried out.
fn carry_out(
    f: &mut Fixture,
    containers: &mut [ContainerInfo],
    p: &Plan,
    fail: bool,
    now: SystemTime,
) {
    for (i, w) in p.work.iter().enumerate() {
        let failed = fail && i == 0;
        let version = format!("v-{}-{}", w.id, now.duration_since(t(0)).unwrap().as_secs());
        match &w.issue {
            Some(_) if failed => {
                f.failures.insert(
                    w.id.clone(),
                    Failure {
                        attempts: 1,
                        retry_at: now + Duration::from_secs(300),
                        error: "the CA is away".into(),
                    },
                );
                continue;
            }
            Some((spec, _)) => {
                f.failures.remove(&w.id);
                f.current.insert(
                    w.id.clone(),
                    Current {
                        version: version.clone(),
                        sans: spec.sans.clone(),
                        groups: spec.groups.clone(),
                        usage: spec.usage,
                        not_before: now - Duration::from_secs(60),
                        not_after: now + 24 * H,
                        renew_at: now + renewal(&w.id),
                        issuer_trusted: true,
                    },
                );
            }
            None => {}
        }
        if failed {
            continue;
        }
        let version = f.current.get(&w.id).map_or(version, |c| c.version.clone());
        if w.publish {
            f.published.insert(w.id.clone(), version.clone());
        }
        for c in &w.copies {
            f.copied.insert(c.container_id.clone(), version.clone());
        }
    }
    if !fail {
        for c in &p.trust_copies {
            f.copied.insert(c.container_id.clone(), "ca-1".into());
        }
        for a in &p.attaches {
            if let Some(c) = containers.iter_mut().find(|c| c.id == a.container_id) {
                c.networks.push(a.network.clone());
            }
        }
    }
    for id in &p.newly_orphaned {
        f.orphaned.insert(id.clone(), now);
    }
    for id in &p.remove {
        f.current.remove(id);
        f.published.remove(id);
        f.orphaned.remove(id);
        f.failures.remove(id);
    }
    f.orphaned.retain(|id, _| !p.desired.contains_key(id));
}

type Spec = (usize, bool, bool);

fn containers_of(specs: &[Option<Spec>]) -> Vec<ContainerInfo> {
    specs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|(v, p, o)| make(&format!("k{i}"), v, p, o)))
        .collect()
}

type Change = (usize, Option<Spec>);

fn change() -> impl Strategy<Value = Change> {
    (
        0usize..7,
        proptest::option::of((0usize..7, any::<bool>(), any::<bool>())),
    )
}

/// A step of the clock: none, minutes (a retry, an orphan's grace), or hours (renewals).
fn step() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        (1u64..15).prop_map(|m| Duration::from_secs(60 * m)),
        (1u64..60).prop_map(|m| Duration::from_secs(60 * 20 * m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// After an idle plan, rounds of changes and clock steps, each planned from the part (with
    /// the identities whose wake-up came) and carried out (some issuances and deliveries
    /// failing) as the reconciler does: every answer is the whole plan's, and the wake-ups
    /// kept are the whole plan's, identity by identity.
    #[test]
    fn the_part_plans_what_the_whole_plan_does(
        before in proptest::collection::vec(proptest::option::of((0usize..7, any::<bool>(), any::<bool>())), 1..7),
        rounds in proptest::collection::vec(
            (proptest::collection::vec(change(), 0..4), any::<bool>(), step()),
            1..5,
        ),
    ) {
        let mut now = t(100);
        let mut f = Fixture::new();
        let mut cs = containers_of(&before);
        // Settle: carry plans out until one has nothing to do.
        let mut last = None;
        for _ in 0..4 {
            let p = plan(&world(&f, &parsed(&f, &cs), now));
            if p.is_idle() {
                last = Some(p);
                break;
            }
            carry_out(&mut f, &mut cs, &p, false, now);
        }
        let last = last.expect("a world settles within four passes");
        let mut base = parsed(&f, &cs);
        let mut wakes = WakeIndex::of(&last.wakes);
        let mut outcome = IdleOutcome::of(&last);
        let mut since = CarriedOut::default();
        for (changes, fail, step) in &rounds {
            // Containers replaced, removed or added (by slot).
            for (slot, spec) in changes {
                let id = format!("k{slot}");
                cs.retain(|c| c.id != id);
                if let Some((v, p, o)) = spec {
                    cs.push(make(&id, *v, *p, *o));
                }
            }
            now += *step;
            // The identities whose wake-up came, as `controller::quiet` finds them.
            let due: Vec<Identity> = wakes.due(now).cloned().collect();
            let now_parsed = patched(&f, &base, &cs);
            let after =
                plan_after_idle(&world(&f, &now_parsed, now), &base, &since, &due, &outcome);
            let whole = plan(&world(&f, &now_parsed, now));
            match after {
                None => prop_assert!(false, "at most 9 changes since the idle plan"),
                Some(AfterIdle::Holds { planned, wakes: part_wakes }) => {
                    prop_assert!(whole.is_idle(), "{whole:?}");
                    prop_assert_eq!(&whole.desired, &outcome.desired);
                    prop_assert_eq!(&whole.refused, &outcome.refused);
                    prop_assert_eq!(&whole.trust_only, &outcome.trust_only);
                    wakes.replace(&planned, &part_wakes);
                    prop_assert_eq!(&wakes, &WakeIndex::of(&whole.wakes));
                    base = now_parsed;
                    since = CarriedOut::default();
                }
                Some(AfterIdle::Changed(part)) => {
                    let p = part.plan;
                    prop_assert_eq!(&p.work, &whole.work);
                    prop_assert_eq!(&p.attaches, &whole.attaches);
                    prop_assert_eq!(&p.trust_copies, &whole.trust_copies);
                    prop_assert_eq!(&p.newly_orphaned, &whole.newly_orphaned);
                    prop_assert_eq!(&p.remove, &whole.remove);
                    prop_assert_eq!(&p.desired, &whole.desired);
                    prop_assert_eq!(&p.refused, &whole.refused);
                    prop_assert_eq!(&p.trust_only, &whole.trust_only);
                    wakes.replace(&part.scope.names, &p.wakes);
                    prop_assert_eq!(&wakes, &WakeIndex::of(&whole.wakes));
                    carry_out(&mut f, &mut cs, &p, *fail, now);
                    // The quiet moves to this plan, as `controller::quiet` does.
                    since = CarriedOut::of(&p);
                    base = now_parsed;
                    outcome = IdleOutcome::of(&p);
                }
            }
        }
    }
}

#[test]
fn another_network_is_answered_by_the_part_and_a_new_name_is_planned() {
    let now = t(100);
    let mut f = Fixture::new();
    let mut cs = vec![
        make("a", 0, true, false),
        make("b", 4, true, false),
        make("e", 1, true, false),
    ];
    for _ in 0..3 {
        let p = plan(&world(&f, &parsed(&f, &cs), now));
        carry_out(&mut f, &mut cs, &p, false, now);
    }
    let idle = plan(&world(&f, &parsed(&f, &cs), now));
    assert!(idle.is_idle(), "{idle:?}");
    let outcome = IdleOutcome::of(&idle);
    let before = parsed(&f, &cs);
    let check = |after: &[ContainerInfo]| {
        let after = parsed(&f, after);
        plan_after_idle(
            &world(&f, &after, now),
            &before,
            &CarriedOut::default(),
            &[],
            &outcome,
        )
    };

    let mut joined = cs.clone();
    joined[0].networks.push("other".into());
    assert!(
        matches!(check(&joined), Some(AfterIdle::Holds { .. })),
        "a network certdock does not manage, on a container sharing its name with another"
    );
    let mut left = cs.clone();
    left[0].networks.retain(|n| n != "proxy");
    assert!(
        matches!(check(&left), Some(AfterIdle::Changed(..))),
        "the proxy network: an attach is due"
    );
    let mut more = cs.clone();
    more.push(make("c", 6, false, false));
    assert!(
        matches!(check(&more), Some(AfterIdle::Changed(..))),
        "a new identity: an issuance is due"
    );
    let mut shared = cs.clone();
    shared.push(make("d", 1, true, false));
    assert!(
        matches!(check(&shared), Some(AfterIdle::Changed(..))),
        "a new member: a copy is due"
    );
    let gone = vec![cs[1].clone(), cs[2].clone()];
    assert!(
        matches!(check(&gone), Some(AfterIdle::Changed(..))),
        "a member gone: status changes"
    );
    let gone = vec![cs[0].clone(), cs[2].clone()];
    assert!(
        matches!(check(&gone), Some(AfterIdle::Changed(..))),
        "an identity left: an orphan"
    );
}

#[test]
fn a_burst_is_planned_from_its_part_up_to_a_sixteenth_of_the_containers() {
    let now = t(100);
    let mut f = Fixture::new();
    let mut cs: Vec<ContainerInfo> = (0..400)
        .map(|i| {
            let name = format!("s{i}");
            let on = ("certdock.enable", "true");
            let mut c = container(
                &name,
                &[on, ("certdock.name", &name)],
                ContainerState::Running,
            );
            c.networks.push("proxy".into());
            c
        })
        .collect();
    let idle = loop {
        let p = plan(&world(&f, &parsed(&f, &cs), now));
        if p.is_idle() {
            break p;
        }
        carry_out(&mut f, &mut cs, &p, false, now);
    };
    let outcome = IdleOutcome::of(&idle);
    let before = parsed(&f, &cs);
    // `k` of them join a network certdock does not manage, at once.
    let burst = |k: usize| {
        let mut after = cs.clone();
        after
            .iter_mut()
            .take(k)
            .for_each(|c| c.networks.push("other".into()));
        let after = patched(&f, &before, &after);
        let w = world(&f, &after, now);
        plan_after_idle(&w, &before, &CarriedOut::default(), &[], &outcome)
            .map(|a| matches!(a, AfterIdle::Holds { .. }))
    };
    assert_eq!(burst(25), Some(true), "25 of 400: from the part");
    assert_eq!(burst(26), None, "26 of 400: planned whole");
    // As many identities due at once, likewise.
    let due: Vec<Identity> = idle.wakes.iter().map(|(id, _)| id.clone()).collect();
    let w = world(&f, &before, now);
    let from = |k: usize| plan_after_idle(&w, &before, &CarriedOut::default(), &due[..k], &outcome);
    assert!(from(25).is_some());
    assert!(from(26).is_none());
}
