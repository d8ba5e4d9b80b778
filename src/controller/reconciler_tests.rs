//! A pass that nothing changed is skipped (see `Quiet`), and every kind of change plans again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::controller::testing::{Act, TestCa, TestEngine, config};
use crate::core::container::{ContainerInfo, ContainerState};
use crate::core::policy::NamePolicy;
use crate::docker::WatchEvent;

fn container(id: &str, labels: &[(&str, &str)]) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state: ContainerState::Running,
        networks: vec![],
    }
}

fn web(sans: &str) -> ContainerInfo {
    container(
        "web",
        &[
            ("certdock.enable", "true"),
            ("certdock.sans", sans),
            ("certdock.delivery", "container"),
        ],
    )
}

/// A reconciler over a fresh state directory, the test CA and the in-memory engine running
/// `running`, on tokio's paused clock; with the CA bundle and a store listing `listed`.
struct Setup {
    _dir: tempfile::TempDir,
    cfg: ControllerConfig,
    clock: Clock,
    ca: Arc<TestCa>,
    engine: Arc<TestEngine>,
    rec: Reconciler<TestCa, TestEngine>,
    bundle: String,
    store: ContainerStore,
}

async fn setup(running: &[&str], listed: &[ContainerInfo]) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::create_dir_all(dir.path().join("ca")).unwrap();
    let clock = Clock::tokio_at(SystemTime::now());
    let ca = Arc::new(TestCa::open(
        &dir.path().join("ca"),
        NamePolicy::default(),
        clock,
    ));
    let engine = Arc::new(TestEngine::default());
    for id in running {
        engine.run(id, &[]);
    }
    let rec = Reconciler::new(
        Executor::new(ca.clone(), engine.clone()),
        Holdings::load(&cfg.state_dir).unwrap(),
        Arc::new(Metrics::new()),
        clock,
    );
    let bundle = ca.bundle().await.unwrap();
    let mut store = ContainerStore::default();
    store.apply(WatchEvent::InitStart);
    for c in listed {
        store.apply(WatchEvent::InitApply(c.clone()));
    }
    store.apply(WatchEvent::InitDone);
    Setup {
        _dir: dir,
        cfg,
        clock,
        ca,
        engine,
        rec,
        bundle,
        store,
    }
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_nothing_changed_is_skipped_and_every_change_plans_again() {
    let Setup {
        _dir,
        cfg,
        clock,
        ca,
        engine,
        mut rec,
        bundle,
        mut store,
        ..
    } = setup(&["web"], &[web("web.internal")]).await;
    let uploads = || engine.count(|a| matches!(a, Act::Upload { .. }));

    let first = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert_eq!(
        (ca.orders_for("web").len(), uploads()),
        (1, 1),
        "issued and delivered"
    );
    let idle = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(
        !first.desired.ptr_eq(&idle.desired),
        "a pass with work is not skipped"
    );
    let skipped = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(
        idle.desired.ptr_eq(&skipped.desired),
        "nothing changed: skipped"
    );

    // Another container coming and going changes nothing certdock plans from.
    store.apply(WatchEvent::Upsert(container("db", &[])));
    let other = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(
        idle.desired.ptr_eq(&other.desired),
        "an unlabelled container: skipped"
    );

    // The labelled container stops and starts again: an idle plan does not read states.
    for state in [ContainerState::Stopped, ContainerState::Running] {
        store.apply(WatchEvent::Upsert(ContainerInfo {
            state,
            ..web("web.internal")
        }));
        let stopped = rec.reconcile(&cfg, &mut store, &bundle).await;
        assert!(idle.desired.ptr_eq(&stopped.desired), "{state:?}: skipped");
    }
    // It joins a network certdock does not manage: only what it touches is planned again,
    // and the pass stays quiet (issue 17: a wake-up grows with what changed).
    store.apply(WatchEvent::Upsert(ContainerInfo {
        networks: vec!["backend".into()],
        ..web("web.internal")
    }));
    let joined = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(
        idle.desired.ptr_eq(&joined.desired),
        "another network: skipped"
    );
    assert_eq!(uploads(), 1, "nothing delivered again");

    // A different CA bundle plans again: the chain in the container follows it.
    let rolled = format!("{bundle}\n");
    let again = rec.reconcile(&cfg, &mut store, &rolled).await;
    assert!(
        !idle.desired.ptr_eq(&again.desired),
        "another bundle: planned"
    );
    assert_eq!(uploads(), 2, "redelivered with the other bundle");
    let again = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert_eq!(uploads(), 3);

    // The settings changed: planned again.
    rec.settings_changed();
    let after_reload = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(!again.desired.ptr_eq(&after_reload.desired));

    // A revocation is seen while quiet, and the certificate replaced at once (planned from
    // its part: the rest is the quiet plan's, shared).
    let serial = rec.holdings.held.values().next().unwrap().serial.clone();
    let quiet = rec.reconcile(&cfg, &mut store, &bundle).await;
    ca.revoke(&serial);
    let replaced = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert_eq!((ca.orders_for("web").len(), uploads()), (2, 4), "replaced");
    assert!(
        quiet.desired.ptr_eq(&replaced.desired),
        "planned from its part"
    );

    // The labels changed: planned again, reissued with the new name.
    rec.reconcile(&cfg, &mut store, &bundle).await;
    store.apply(WatchEvent::Upsert(web("web.internal,alt.internal")));
    rec.reconcile(&cfg, &mut store, &bundle).await;
    assert_eq!((ca.orders_for("web").len(), uploads()), (3, 5), "reissued");

    // The loop's timer (at the latest every 30 s, for a clock that jumps) finds the plan
    // holding: nothing is planned again, and the next timer is again at most 30 s away.
    let quiet = rec.reconcile(&cfg, &mut store, &bundle).await;
    tokio::time::advance(Duration::from_secs(31)).await;
    let timer = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(quiet.desired.ptr_eq(&timer.desired), "the timer: skipped");
    assert!(timer.next_wake <= tokio::time::Instant::now() + Duration::from_secs(30));

    // The clock reaching the renewal time plans that identity again with nothing else
    // changed (from its part: the rest is the quiet plan's, shared).
    let renew_at = rec.holdings.held.values().next().unwrap().renew_at;
    let wait = renew_at.duration_since(clock.now()).unwrap() + Duration::from_secs(1);
    tokio::time::advance(wait).await;
    let renewed = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(
        quiet.desired.ptr_eq(&renewed.desired),
        "planned from its part"
    );
    assert_eq!(
        (ca.orders_for("web").len(), uploads()),
        (4, 6),
        "renewed on time"
    );
    let after = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(renewed.desired.ptr_eq(&after.desired), "quiet again");
    let renew_at = rec.holdings.held.values().next().unwrap().renew_at;
    assert!(
        renew_at > clock.now() + Duration::from_secs(3600),
        "the new one's"
    );
    assert!(
        after.next_wake <= tokio::time::Instant::now() + Duration::from_secs(30),
        "the timer stays"
    );
    // A step of the clock past the next renewal, as after a suspend: renewed at the next pass.
    let wait = renew_at.duration_since(clock.now()).unwrap() + Duration::from_secs(1);
    tokio::time::advance(wait).await;
    rec.reconcile(&cfg, &mut store, &bundle).await;
    assert_eq!(
        (ca.orders_for("web").len(), uploads()),
        (5, 7),
        "renewed again"
    );
}

/// Issue 17: after a quiet pass, a change with work (here a container recreated under its name,
/// as `docker compose up` does) is planned from what it touches; the rest of the plan is the
/// quiet one's, shared, and a delivery that failed is planned again until it is done.
#[tokio::test(start_paused = true)]
async fn a_change_with_work_after_a_quiet_pass_is_planned_from_what_it_touches() {
    let api = container(
        "api",
        &[
            ("certdock.enable", "true"),
            ("certdock.sans", "api.internal"),
            ("certdock.delivery", "container"),
        ],
    );
    let Setup {
        _dir,
        cfg,
        ca,
        engine,
        mut rec,
        bundle,
        mut store,
        ..
    } = setup(
        &["web", "web-2", "api"],
        &[web("web.internal"), api.clone()],
    )
    .await;
    // A copy into a container that left while certdock was down: the first sweep is whole.
    rec.holdings
        .ledger
        .note_copied([("ghost".to_string(), "v0".to_string())]);
    rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(!rec.holdings.ledger.copied().contains_key("ghost"));
    let idle = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(rec.quiet.is_some(), "nothing to do: quiet");
    let status = || std::fs::read_to_string(cfg.state_dir.join("status.json")).unwrap();
    let status_before = status();

    // `web` is removed and created again under its name, and its first copy fails.
    store.apply(WatchEvent::Remove("web".into()));
    store.apply(WatchEvent::Upsert(ContainerInfo {
        id: "web-2".into(),
        ..web("web.internal")
    }));
    engine.set_failing(true);
    let failed = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(rec.quiet.is_some(), "planned from the quiet pass");
    let id = |n: &str| Identity::Named(crate::core::names::CertName::parse(n).unwrap());
    assert!(
        Arc::ptr_eq(&failed.desired[&id("api")], &idle.desired[&id("api")]),
        "the rest of the plan is the quiet one's"
    );
    assert_eq!(failed.desired[&id("web")].containers[0].0.id, "web-2");
    assert!(engine.uploads_to("web-2").is_empty(), "the copy failed");
    assert_ne!(status(), status_before, "the failure shows in status");
    engine.set_failing(false);
    let done = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert_eq!(
        engine.uploads_to("web-2").len(),
        1,
        "planned again and done"
    );
    let copied = |id: &str| rec.holdings.ledger.copied().contains_key(id);
    assert!(
        copied("web-2") && copied("api") && !copied("web"),
        "the gone container's copy forgotten"
    );
    assert_eq!(
        ca.orders_for("web").len(),
        1,
        "the held certificate, not a new one"
    );
    assert_eq!(done.desired, failed.desired);
    assert_eq!(
        status(),
        status_before,
        "the same rows: web's container is named web"
    );
    // Done: the next pass finds the part idle and is quiet from there.
    let settled = rec.reconcile(&cfg, &mut store, &bundle).await;
    let skipped = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(settled.desired.ptr_eq(&skipped.desired));
    assert!(rec.quiet.as_ref().is_some_and(|q| q.since.is_empty()));
    assert_eq!(engine.uploads_to("web-2").len(), 1);
    assert_eq!(engine.uploads_to("api").len(), 1, "api untouched");

    // A second container asking for api: planned from the part too, and the status it changes
    // (a row for the new member) is written.
    engine.run("api-2", &[]);
    store.apply(WatchEvent::Upsert(ContainerInfo {
        id: "api-2".into(),
        name: "api-2".into(),
        ..api
    }));
    rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(rec.quiet.is_some(), "planned from the quiet pass");
    assert_eq!(engine.uploads_to("api-2").len(), 1);
    assert!(status().contains("\"api-2\""), "{}", status());
}

/// A quiet pass writes nothing: after a pass that could not write `status.json`, no quiet
/// stands, so the next pass (the loop's timer at the latest) writes it once it can.
#[tokio::test(start_paused = true)]
async fn a_status_that_could_not_be_written_is_written_by_a_later_pass() {
    let Setup {
        _dir,
        cfg,
        mut rec,
        bundle,
        mut store,
        ..
    } = setup(&["web"], &[web("web.internal")]).await;
    // `status.json` taken by a directory that is not empty: the rename onto it fails.
    let status = cfg.state_dir.join("status.json");
    std::fs::create_dir_all(status.join("taken")).unwrap();
    rec.reconcile(&cfg, &mut store, &bundle).await;
    let idle = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(status.is_dir(), "not written");

    std::fs::remove_dir_all(&status).unwrap();
    tokio::time::advance(Duration::from_secs(31)).await;
    let timer = rec.reconcile(&cfg, &mut store, &bundle).await;
    let written = std::fs::read_to_string(&status).expect("written by the next pass");
    assert!(written.contains("web"), "{written}");
    assert!(
        !idle.desired.ptr_eq(&timer.desired),
        "planned again, not skipped"
    );
    let quiet = rec.reconcile(&cfg, &mut store, &bundle).await;
    assert!(timer.desired.ptr_eq(&quiet.desired), "then quiet");
}
