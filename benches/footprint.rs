//! Group 4 — footprint of managed certificates: the controller's state for N labelled
//! containers (N = 100, 1000) with real signing, without N real containers.
//!
//! It drives what one reconcile pass of `certdock run` does for each container, minus Docker:
//! `core::plan` over N labelled containers, `LocalCa::issue` (real keys, real signatures, the
//! durable inventory), `Holdings::store` (STATE/managed), `publish` (volume delivery under
//! OUT/certs/NAME) and the ledger; then a second, steady-state `plan` (nothing to do) that the
//! loop repeats on every wake. RSS is read from /proc/self/status (VmRSS now, VmHWM peak).
//!
//! This process is not `certdock run` (no Tokio runtime, HTTPS API or Docker client), so the
//! figure that matters is the growth over the baseline; `scripts/bench.sh footprint` prints
//! the real process's idle RSS beside it.
//!
//! Run: `scripts/bench.sh footprint` (or `cargo bench --bench footprint -- 100 1000`).

mod common;

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use certdock::ca::authority::CaLifetimes;
use certdock::ca::authorize::{Local, Order};
use certdock::ca::keys::KeyType;
use certdock::ca::local::{LocalCa, OpenMode, Policy};
use certdock::controller::holdings::{Held, Holdings, TrustedBundle, version};
use certdock::controller::outputs::{OutputDirs, publish};
use certdock::core::container::{ContainerInfo, ContainerState};
use certdock::core::labelled::Labelled;
use certdock::core::labels::LabelContext;
use certdock::core::names::CertName;
use certdock::core::plan::{Identity, World, plan};
use certdock::core::policy::{NamePolicy, TtlPolicy};
use common::{machine, rss_kib};
use time::OffsetDateTime;

fn containers(n: usize) -> Vec<ContainerInfo> {
    (0..n)
        .map(|i| ContainerInfo {
            id: format!("{i:064x}"),
            name: format!("svc-{i}"),
            labels: BTreeMap::from([
                ("certdock.enable".to_string(), "true".to_string()),
                ("certdock.delivery".to_string(), "volume".to_string()),
                ("certdock.sans".to_string(), format!("svc-{i}.internal")),
            ]),
            state: ContainerState::Running,
            networks: vec!["bridge".into()],
        })
        .collect()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000]
    } else {
        sizes
    };
    println!(
        "# group 4: footprint of managed certificates — {}",
        machine()
    );
    for n in sizes {
        run(n);
    }
}

fn run(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dirs = OutputDirs {
        out: dir.path().join("out"),
        proxy_view: dir.path().join("out"),
    };
    let ca = LocalCa::open(
        &state,
        Policy::default(),
        CaLifetimes::default(),
        OpenMode::CreateIfMissing(KeyType::EcdsaP256),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let mut holdings = Holdings::load(&state).unwrap();
    let bundle = ca.bundle_pem();
    let (base_rss, _) = rss_kib("self");

    let containers = containers(n);
    let (names, ttls) = (NamePolicy::default(), TtlPolicy::default());
    let started = Instant::now();
    let first = plan_once(&containers, &holdings, &bundle, &names, &ttls);
    for work in &first.work {
        let Some((spec, _)) = &work.issue else {
            continue;
        };
        let Identity::Named(name) = &work.id else {
            continue;
        };
        let order = Order {
            name: CertName::parse(name.as_str()).unwrap(),
            sans: spec.sans.clone(),
            usage: spec.usage,
            groups: Default::default(),
            ttl: Some(spec.ttl),
            key_type: KeyType::EcdsaP256,
        };
        let auth = ca.authorize_local(Local::Controller, order).unwrap();
        let issued = ca
            .sign(auth, OffsetDateTime::now_utc())
            .unwrap()
            .wait()
            .unwrap();
        let held = Held::from_issued(&issued).unwrap();
        if work.publish {
            publish(&dirs, &work.id, &held.bundle(&bundle)).unwrap();
            holdings
                .ledger
                .note_published(&work.id, version(&held.serial, &bundle));
        }
        holdings.store(&work.id, held).unwrap();
    }
    holdings.save_ledger().unwrap();
    let issue_secs = started.elapsed().as_secs_f64();
    let passes = std::env::var("FOOTPRINT_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let steady_started = Instant::now();
    let mut steady = plan_once(&containers, &holdings, &bundle, &names, &ttls);
    for _ in 1..passes {
        steady = plan_once(&containers, &holdings, &bundle, &names, &ttls);
    }
    let steady_ms = steady_started.elapsed().as_secs_f64() * 1e3 / passes as f64;
    assert!(
        steady.work.iter().all(|w| w.issue.is_none() && !w.publish),
        "the second pass must find nothing to do"
    );
    let (rss, hwm) = rss_kib("self");
    println!(
        "footprint managed={n} issued={} in {issue_secs:.2} s; steady-state plan {steady_ms:.1} ms; \
         VmRSS={:.1} MiB (baseline {:.1} MiB, +{:.1} KiB per certificate) VmHWM={:.1} MiB",
        holdings.held.len(),
        rss as f64 / 1024.0,
        base_rss as f64 / 1024.0,
        (rss.saturating_sub(base_rss)) as f64 / n as f64,
        hwm as f64 / 1024.0,
    );
}

fn plan_once(
    containers: &[ContainerInfo],
    holdings: &Holdings,
    bundle: &str,
    names: &NamePolicy,
    ttls: &TtlPolicy,
) -> certdock::core::plan::Plan {
    let trusted = TrustedBundle::new(bundle, std::time::Duration::from_secs(900));
    let current: BTreeMap<_, _> = holdings
        .held
        .iter()
        .map(|(id, h)| (id.clone(), h.current(&trusted)))
        .collect();
    let empty = BTreeMap::new();
    let ctx = LabelContext {
        prefix: "certdock",
        names,
        ttls,
        proxy_network_configured: false,
        forward_auth: true,
    };
    plan(&World {
        containers: &Labelled::parse_all(containers, &ctx),
        label_prefix: "certdock",
        proxy_network: None,
        traefik_client: None,
        current: &current,
        failures: &holdings.failures,
        copied: holdings.ledger.copied(),
        ca_version: "ca-test",
        published: holdings.ledger.published(),
        orphaned_since: &empty,
        first_list_done: true,
        grace: std::time::Duration::from_secs(600),
        now: SystemTime::now(),
    })
}
