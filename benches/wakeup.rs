//! Issue 17.2 — one wake-up of the controller at N identities, without N real containers.
//!
//! A wake-up is one whole `Reconciler::reconcile` pass, as `certdock run` makes on every Docker
//! event: snapshot of the container store, plan, executor, ledger, status. The containers are
//! in the store (half volume, half container delivery), their certificates issued by the real
//! CA in a first pass; the Docker actions succeed without an engine (steady state makes none).
//! Measured:
//! - `steady`: a wake-up with nothing to do and nothing changed (a timer);
//! - `unrelated event`: a wake-up after a container without certdock labels started;
//! - `a labelled container stops/starts`: nothing to issue or deliver, and an idle plan reads
//!   no running state (`core::plan::idle_plan_holds`), so the last plan stands;
//! - `a labelled container's networks`: it joins another network (no proxy network is set, so
//!   nothing to attach): the plan's inputs changed, and only what that container touches is
//!   planned again (`core::plan::plan_after_idle`), which finds nothing;
//! - `whole pass`: the same wake-up after the settings were reloaded, so everything is planned
//!   again (as after a change to more containers at once than a part takes);
//! - `a burst of 40`: 40 labelled containers join (then leave) another network at once: more
//!   than 16 changes, planned from their part while they are at most a sixteenth of the
//!   containers (so at 100 identities a whole pass);
//! - `one change`: a wake-up after one container's labels changed (one identity reissued);
//! - `recreated`: a container-delivery container removed and created again under its name (what
//!   `docker compose up` does after a change): a new id, so one copy of the held certificate,
//!   and no issuance: a pass with work whose cost is the decision and the ledger, not the CA;
//! - `the loop's timer`: the wake-up the loop makes at least every 30 s (deadlines are
//!   wall-clock times and a clock may jump), with nothing due: the plan's wake-ups are kept per
//!   identity (`core::plan::WakeIndex`), so it is answered like `steady`;
//! - `a renewal due`: the clock reaches one certificate's renewal time: that identity is
//!   planned again from its part, and renewed (an issuance, an fsync, a delivery);
//! - `restart`: a new reconciler over the state on disk (STATE/managed, the ledger) and the full
//!   list: `Holdings::load` + the first pass, which must find nothing to issue or deliver.
//!
//! Run: `scripts/bench.sh wakeup` (or `cargo bench --bench wakeup -- 100 1000`). With
//! `WAKEUP_PROFILE=whole` it makes 20 × `WAKEUP_PASSES` whole passes and stops there, for a profiler.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use certdock::ca::authority::CaLifetimes;
use certdock::ca::keys::KeyType;
use certdock::ca::local::{LocalCa, OpenMode, Policy};
use certdock::ca::source::LocalSource;
use certdock::controller::executor::Executor;
use certdock::controller::holdings::Holdings;
use certdock::controller::outputs::OutputDirs;
use certdock::controller::reconciler::Reconciler;
use certdock::controller::store::ContainerStore;
use certdock::controller::{Clock, ControllerConfig};
use certdock::core::container::{ContainerInfo, ContainerState};
use certdock::docker::{DockerActions, DockerError, Upload, WatchEvent};
use certdock::metrics::Metrics;
use common::machine;
use time::OffsetDateTime;

/// The Docker actions of a wake-up that needs none; a first pass's uploads succeed at once.
struct NoEngine;

impl DockerActions for NoEngine {
    async fn upload(&self, _upload: Upload<'_>) -> Result<(), DockerError> {
        Ok(())
    }
    async fn signal(&self, _id: &str, _signal: &str) -> Result<(), DockerError> {
        Ok(())
    }
    async fn restart(&self, _id: &str) -> Result<(), DockerError> {
        Ok(())
    }
    async fn connect_network(
        &self,
        _network: &str,
        _id: &str,
        _aliases: &[String],
    ) -> Result<(), DockerError> {
        Ok(())
    }
}

/// Docker's ids are 64 random hex digits; ids with a long shared prefix would make every map
/// lookup by id compare tens of bytes (`WAKEUP_IDS=zeros` measures that: the ids this bench used
/// before 2026-11-30, `{i:064x}`).
fn container_id(i: usize) -> String {
    if std::env::var("WAKEUP_IDS").is_ok_and(|v| v == "zeros") {
        return format!("{i:064x}");
    }
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &i.to_le_bytes(),
    ))
}

fn container(i: usize, sans: &str) -> ContainerInfo {
    let delivery = if i.is_multiple_of(2) {
        "volume"
    } else {
        "container"
    };
    ContainerInfo {
        id: container_id(i),
        name: format!("svc-{i}"),
        labels: BTreeMap::from([
            ("certdock.enable".to_string(), "true".to_string()),
            ("certdock.delivery".to_string(), delivery.to_string()),
            ("certdock.sans".to_string(), sans.to_string()),
        ]),
        state: ContainerState::Running,
        networks: vec!["bridge".into()],
    }
}

fn config(root: &std::path::Path) -> ControllerConfig {
    let out = root.join("out");
    ControllerConfig {
        state_dir: root.join("state"),
        dirs: OutputDirs {
            out: out.clone(),
            proxy_view: out,
        },
        label_prefix: "certdock".into(),
        names: Default::default(),
        ttls: Default::default(),
        proxy_network: None,
        resync: Duration::from_secs(60),
        traefik_options: Default::default(),
        grace: Duration::from_secs(600),
        forward_auth: None,
        rollover_spread: Duration::from_secs(900),
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000]
    } else {
        sizes
    };
    println!("# wake-up of the controller — {}", machine());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in sizes {
        rt.block_on(run(n));
    }
}

type Rec = Reconciler<LocalSource, NoEngine>;

fn reconciler(ca: &Arc<LocalCa>, cfg: &ControllerConfig) -> Rec {
    let source = Arc::new(LocalSource {
        ca: ca.clone(),
        key_type: KeyType::EcdsaP256,
    });
    let holdings = Holdings::load(&cfg.state_dir).unwrap();
    Reconciler::new(
        Executor::new(source, Arc::new(NoEngine)),
        holdings,
        Arc::new(Metrics::new()),
        Clock::System,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and the largest of `times`, in ms.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "median {:.2} ms (min {:.2}, max {:.2}, {} passes)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ca = Arc::new(
        LocalCa::open(
            &dir.path().join("ca"),
            Policy::default(),
            CaLifetimes::default(),
            OpenMode::CreateIfMissing(KeyType::EcdsaP256),
            OffsetDateTime::now_utc(),
        )
        .unwrap(),
    );
    let bundle = ca.bundle_pem();
    let mut store = ContainerStore::default();
    store.apply(WatchEvent::InitStart);
    for i in 0..n {
        store.apply(WatchEvent::InitApply(container(
            i,
            &format!("svc-{i}.internal"),
        )));
    }
    store.apply(WatchEvent::InitDone);

    let mut rec = reconciler(&ca, &cfg);
    let started = Instant::now();
    rec.reconcile(&cfg, &mut store, &bundle).await;
    let first = started.elapsed();

    let mut steady = Vec::new();
    let passes: usize = std::env::var("WAKEUP_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    for _ in 0..passes {
        let t = Instant::now();
        rec.reconcile(&cfg, &mut store, &bundle).await;
        steady.push(t.elapsed());
    }

    // An event certdock does not care about: a container without labels starts or stops
    // (ten of them, taking turns).
    let mut unrelated = Vec::new();
    for round in 0..passes {
        store.apply(WatchEvent::Upsert(ContainerInfo {
            id: container_id(1_000_000 + round % 10),
            name: format!("unrelated-{}", round % 10),
            labels: BTreeMap::new(),
            state: if (round / 10).is_multiple_of(2) {
                ContainerState::Running
            } else {
                ContainerState::Stopped
            },
            networks: vec!["bridge".into()],
        }));
        let t = Instant::now();
        rec.reconcile(&cfg, &mut store, &bundle).await;
        unrelated.push(t.elapsed());
    }

    // A labelled container stops or starts: nothing to do, and an idle plan reads no state.
    // Then one joins (and leaves) a network: only what it touches is planned again. Then the
    // same with the settings reloaded first: a whole pass that finds nothing to do.
    // `WAKEUP_PROFILE=whole`: only the whole passes, 20 times as many, and nothing after them,
    // for a profiler to see them (nearly) alone.
    let profiling = std::env::var("WAKEUP_PROFILE").is_ok_and(|v| v == "whole");
    let mut labelled_state = Vec::new();
    let mut networks = Vec::new();
    let mut whole = Vec::new();
    let join = (|c| c.networks.push("other".into())) as fn(&mut ContainerInfo);
    for (times, change, rounds, forced) in [
        (
            &mut labelled_state,
            (|c| c.state = ContainerState::Stopped) as fn(&mut ContainerInfo),
            passes,
            false,
        ),
        (&mut networks, join, passes, false),
        (
            &mut whole,
            join,
            if profiling { passes * 20 } else { passes },
            true,
        ),
    ] {
        if profiling && !forced {
            continue;
        }
        for round in 0..rounds {
            let i = (round / 2 * 7919) % n;
            let mut c = container(i, &format!("svc-{i}.internal"));
            if round.is_multiple_of(2) {
                change(&mut c);
            }
            store.apply(WatchEvent::Upsert(c));
            if forced {
                rec.settings_changed();
            }
            let t = Instant::now();
            let outcome = rec.reconcile(&cfg, &mut store, &bundle).await;
            times.push(t.elapsed());
            assert!(!outcome.delivered, "nothing to deliver");
        }
    }
    if profiling {
        return;
    }

    // A burst: 40 labelled containers join another network at once (`docker compose up` of
    // a project), then leave it: more than 16 changes, fewer than a sixteenth of 1,000.
    let mut burst = Vec::new();
    for round in 0..passes {
        for j in 0..40.min(n) {
            let i = j * (n / 40).max(1);
            let mut c = container(i, &format!("svc-{i}.internal"));
            if round.is_multiple_of(2) {
                join(&mut c);
            }
            store.apply(WatchEvent::Upsert(c));
        }
        let t = Instant::now();
        let outcome = rec.reconcile(&cfg, &mut store, &bundle).await;
        burst.push(t.elapsed());
        assert!(!outcome.delivered, "nothing to deliver");
    }

    // Odd containers take container delivery; each round replaces another of them by a new id.
    let mut recreated = Vec::new();
    for round in 0..passes.min(n / 2) {
        let i = 2 * round + 1;
        let mut c = container(i, &format!("svc-{i}.internal"));
        store.apply(WatchEvent::Remove(c.id.clone()));
        c.id = container_id(2_000_000 + round);
        store.apply(WatchEvent::Upsert(c));
        let t = Instant::now();
        rec.reconcile(&cfg, &mut store, &bundle).await;
        recreated.push(t.elapsed());
    }

    let mut one_change = Vec::new();
    for round in 0..20 {
        let i = (round * 7919) % n;
        store.apply(WatchEvent::Upsert(container(
            i,
            &format!("svc-{i}.internal,alt-{round}.internal"),
        )));
        let t = Instant::now();
        rec.reconcile(&cfg, &mut store, &bundle).await;
        one_change.push(t.elapsed());
    }
    // The loop's timer: a wake-up at least every 30 s (deadlines are wall-clock times), with
    // nothing changed and nothing due. The clock is moved instead of waited for.
    let mut wall = SystemTime::now();
    let mut timer = Vec::new();
    for _ in 0..passes {
        wall += Duration::from_secs(31);
        rec.clock = Clock::tokio_at(wall);
        let t = Instant::now();
        rec.reconcile(&cfg, &mut store, &bundle).await;
        timer.push(t.elapsed());
    }

    // Renewals coming due one at a time: the clock set just past each of the earliest renewal
    // times (spread by each certificate's jitter), one renewal (an issuance and its delivery)
    // per pass; each followed by the pass that plans the renewed identity again (not timed).
    let mut renew_at: Vec<SystemTime> = rec.holdings.held.values().map(|h| h.renew_at).collect();
    renew_at.sort();
    let mut renewal = Vec::new();
    for at in renew_at
        .into_iter()
        .filter(|at| *at > wall)
        .take(passes.min(20))
    {
        rec.clock = Clock::tokio_at(at + Duration::from_millis(1));
        let t = Instant::now();
        rec.reconcile(&cfg, &mut store, &bundle).await;
        renewal.push(t.elapsed());
        rec.reconcile(&cfg, &mut store, &bundle).await;
    }
    drop(rec);

    let t = Instant::now();
    let mut rec = reconciler(&ca, &cfg);
    let load = t.elapsed();
    let outcome = rec.reconcile(&cfg, &mut store, &bundle).await;
    let restart = t.elapsed();
    assert!(
        !outcome.delivered,
        "a restart over the same state must neither reissue nor redeliver"
    );

    println!(
        "wakeup n={n}: first pass (issues {n}) {:.0} ms; steady {}; unrelated event {}; a labelled container stops/starts {}; a labelled container's networks {}; whole pass (settings reloaded) {}; one change {}; a burst of 40 (networks) {}; recreated (one copy) {}; the loop's timer (30 s on) {}; a renewal due {}; restart: load {:.1} ms, load + first pass {:.1} ms",
        ms(first),
        summary(&mut steady),
        summary(&mut unrelated),
        summary(&mut labelled_state),
        summary(&mut networks),
        summary(&mut whole),
        summary(&mut one_change),
        summary(&mut burst),
        summary(&mut recreated),
        summary(&mut timer),
        summary(&mut renewal),
        ms(load),
        ms(restart),
    );
}
