//! The whole loop on tokio's paused clock, with the in-memory engine and the real CA: no Docker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::testing::{Act, CaMode, TestCa, TestEngine, config};
use super::{Clock, Controller, ControllerConfig, Reloadable};
use crate::authz::table::AllowTable;
use crate::ca::pem::{certs_from_pem, parse_cert};
use crate::core::names::traefik_client;
use crate::core::policy::{NamePolicy, NameRule};
use crate::metrics::{Metrics, ProxyLabel};
use crate::store::status::{self, StatusEntry};

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const DIR: &str = "/run/certdock";

/// One controller over a test engine and a test CA, with its directories.
struct Harness {
    engine: Arc<TestEngine>,
    ca: Arc<TestCa>,
    metrics: Arc<Metrics>,
    /// Where the loop publishes allow lists for the forward-auth decider.
    allow: Arc<AllowTable>,
    /// What the config file "contains": the reload closure returns it.
    settings: Arc<Mutex<ControllerConfig>>,
    config_file: PathBuf,
    started: Instant,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    dirs: TempDir,
}

fn deny(suffixes: &str) -> NamePolicy {
    NamePolicy {
        deny: NameRule::parse_list(suffixes).unwrap_or_else(|e| panic!("{e}")),
        ..Default::default()
    }
}

impl Harness {
    /// A controller over a fresh state, the CA refusing what `ca_names` refuses.
    async fn start(ca_names: NamePolicy) -> Harness {
        let dirs = tempfile::tempdir().unwrap();
        let clock = Clock::tokio_at(SystemTime::now());
        std::fs::create_dir_all(dirs.path().join("ca")).unwrap();
        let ca = Arc::new(TestCa::open(&dirs.path().join("ca"), ca_names, clock));
        let config_file = dirs.path().join("certdock.toml");
        std::fs::write(&config_file, "# v1\n").unwrap();
        let mut h = Harness {
            engine: Arc::new(TestEngine::default()),
            ca,
            metrics: Arc::new(Metrics::new()),
            allow: Arc::new(AllowTable::new()),
            settings: Arc::new(Mutex::new(config(dirs.path()))),
            config_file,
            started: Instant::now(),
            stop: None,
            task: None,
            dirs,
        };
        h.spawn(clock);
        h
    }

    fn spawn(&mut self, clock: Clock) {
        let settings = self.settings.clone();
        let reload = Reloadable {
            path: self.config_file.clone(),
            load: Box::new(move || Ok(settings.lock().unwrap().clone())),
        };
        let engine = self.engine.clone();
        let controller = Controller {
            cfg: self.settings.lock().unwrap().clone(),
            source: self.ca.clone(),
            actions: self.engine.clone(),
            watch: move |config| engine.watch(config),
            metrics: self.metrics.clone(),
            reload: Some(reload),
            clock,
            allow: self.allow.clone(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(controller.run(async {
            let _ = rx.await;
        })));
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Changes the settings and the config file, as an operator editing it would.
    fn reload(&self, change: impl FnOnce(&mut ControllerConfig)) {
        change(&mut self.settings.lock().unwrap());
        std::fs::write(&self.config_file, "# v2\n").unwrap();
    }

    fn out(&self) -> PathBuf {
        self.settings.lock().unwrap().dirs.out.clone()
    }

    fn status(&self) -> Vec<StatusEntry> {
        status::read(&self.dirs.path().join("state"))
            .unwrap()
            .unwrap_or_default()
    }

    fn traefik_writes(&self) -> u64 {
        let label = ProxyLabel {
            proxy: "traefik".into(),
        };
        self.metrics.proxy_config_writes.get_or_create(&label).get()
    }

    fn delivered_serial(&self, container: &str) -> Option<String> {
        serial(&self.engine.file(container, DIR, "cert.pem")?)
    }
}

fn serial(pem: &[u8]) -> Option<String> {
    let der = certs_from_pem("cert", std::str::from_utf8(pem).ok()?).ok()?;
    let cert = parse_cert("cert", der.first()?).ok()?;
    Some(hex::encode(cert.raw_serial()))
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Waits for something driven by the OS file watch, whose events arrive in real time: a few
/// real milliseconds at a time, letting the paused clock run meanwhile.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
        sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// An opted-in container with a one-hour certificate, plus `extra` labels.
fn web(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    [("certdock.enable", "true"), ("certdock.ttl", "1h")]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn renewal_is_issued_at_two_thirds_of_the_lifetime() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run("web", &web(&[]));
    sleep(SEC).await;
    let first = h.delivered_serial("web").expect("delivered at once");
    sleep(34 * MIN).await;
    assert_eq!(
        h.engine.uploads_to("web").len(),
        1,
        "nothing before 7/12 of an hour"
    );
    sleep(7 * MIN).await;
    assert_eq!(
        h.engine.uploads_to("web").len(),
        2,
        "renewed by 8/12 of an hour"
    );
    let second = h.delivered_serial("web").unwrap();
    assert_ne!(first, second);
    let orders = h.ca.orders_for("web");
    let at = orders[1] - h.started;
    assert!(at >= 35 * MIN && at <= 40 * MIN, "renewed after {at:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_revoked_certificate_is_replaced_within_a_pass_not_at_its_renewal() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run("web", &web(&[]));
    sleep(SEC).await;
    let first = h.delivered_serial("web").expect("delivered at once");
    h.ca.revoke(&first);
    // The loop passes at least every 30 s; the renewal would be 35 minutes away.
    sleep(31 * SEC).await;
    let second = h.delivered_serial("web").expect("still delivered");
    assert_ne!(first, second, "replaced after the revocation");
    assert_eq!(h.ca.orders_for("web").len(), 2);
    sleep(2 * MIN).await;
    assert_eq!(h.ca.orders_for("web").len(), 2, "and only once");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refused_issuance_is_not_retried_like_an_outage() {
    let mut h = Harness::start(deny("denied.test")).await;
    h.engine.run(
        "web",
        &web(&[("certdock.name", "web"), ("certdock.sans", "x.denied.test")]),
    );
    h.engine.run("ok", &web(&[]));
    sleep(14 * MIN).await;
    assert_eq!(
        h.ca.orders_for("web").len(),
        1,
        "a refusal is not asked again soon"
    );
    assert!(h.delivered_serial("ok").is_some(), "others carry on");
    let status = h.status();
    let row = status.iter().find(|e| e.name == "web").unwrap();
    let error = row.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("refused by the CA"), "{error}");
    sleep(2 * MIN).await;
    assert_eq!(
        h.ca.orders_for("web").len(),
        2,
        "asked again after 15 minutes"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ca_outage_backs_off_then_recovers() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.ca.set(CaMode::Down);
    h.engine.run("web", &web(&[]));
    sleep(20 * SEC).await;
    let orders = h.ca.orders_for("web");
    let gaps: Vec<Duration> = orders.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 4, "{gaps:?}");
    for (gap, want) in gaps.iter().zip([1, 2, 4, 8]) {
        let want = Duration::from_secs(want);
        assert!(*gap >= want && *gap < want + SEC / 10, "{gaps:?}");
    }
    assert!(h.engine.uploads_to("web").is_empty());
    let row = h.status().into_iter().find(|e| e.name == "web").unwrap();
    assert!(row.error.unwrap().starts_with("CA unavailable"));
    h.ca.set(CaMode::Up);
    sleep(40 * SEC).await;
    assert_eq!(h.engine.uploads_to("web").len(), 1);
    let row = h.status().into_iter().find(|e| e.name == "web").unwrap();
    assert_eq!(row.error, None);
    assert!(row.serial.is_some());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn burst_of_twenty_containers_writes_traefik_once() {
    let mut h = Harness::start(NamePolicy::default()).await;
    sleep(5 * SEC).await;
    let before = h.traefik_writes();
    assert_eq!(
        before, 1,
        "the first file, with certdock's own client certificate"
    );
    for i in 0..20 {
        let rule_key = format!("traefik.http.routers.b{i}.rule");
        let rule = format!("Host(`b{i}.example.test`)");
        let name = format!("b{i}");
        let labels = web(&[
            ("certdock.name", &name),
            ("certdock.usage", "server"),
            ("certdock.traefik.hosts", "true"),
            (&rule_key, &rule),
        ]);
        h.engine.run(&name, &labels);
        sleep(Duration::from_millis(50)).await;
    }
    sleep(5 * SEC).await;
    assert_eq!(h.traefik_writes() - before, 1);
    let yml = std::fs::read_to_string(h.out().join("traefik/certdock.yml")).unwrap();
    for i in 0..20 {
        assert!(yml.contains(&format!("certs/b{i}/fullchain.pem")), "b{i}");
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn orphaned_files_stay_until_grace_then_go() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine
        .run("vol", &web(&[("certdock.delivery", "volume")]));
    sleep(2 * SEC).await;
    let cert = h.out().join("certs/vol/cert.pem");
    let managed = h.dirs.path().join("state/managed/vol.pem");
    assert!(cert.exists() && managed.exists());
    h.engine.remove("vol");
    sleep(9 * MIN).await;
    assert!(cert.exists(), "kept during the grace period");
    sleep(2 * MIN).await;
    assert!(!cert.exists() && !managed.exists(), "removed after it");
    assert!(!h.out().join("certs/vol").exists());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_with_new_label_prefix_rewatches() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run(
        "acme",
        &[("acme.enable", "true"), ("acme.ttl", "1h")].map(|(k, v)| (k.to_string(), v.to_string())),
    );
    sleep(2 * SEC).await;
    assert!(h.engine.uploads_to("acme").is_empty());
    h.reload(|c| c.label_prefix = "acme".into());
    until("a watch with the new prefix", || {
        h.engine.watches().last().map(|w| w.label_prefix.as_str()) == Some("acme")
    })
    .await;
    until("delivered under the new prefix", || {
        h.engine.uploads_to("acme").len() == 1
    })
    .await;
    assert_eq!(h.engine.watches().len(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_with_new_out_dir_writes_there_and_watches_it() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine
        .run("vol", &web(&[("certdock.delivery", "volume")]));
    sleep(2 * SEC).await;
    let new_out = h.dirs.path().join("out2");
    h.reload(|c| {
        c.dirs.out = new_out.clone();
        c.dirs.proxy_view = new_out.clone();
    });
    let cert = new_out.join("certs/vol/cert.pem");
    until("every output in the new directory", || {
        cert.exists()
            && new_out.join("ca.pem").exists()
            && new_out.join("caddy/mtls.caddy").exists()
            && new_out.join("traefik/certdock.yml").exists()
            && new_out.join("traefik-client/cert.pem").exists()
    })
    .await;
    // The file watch follows: a deleted file in the new directory is written again.
    let before = std::fs::read(&cert).unwrap();
    std::fs::remove_file(&cert).unwrap();
    until("the deleted file written again", || {
        std::fs::read(&cert).is_ok_and(|b| b == before)
    })
    .await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn bad_label_refuses_only_its_container() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run("bad", &web(&[("certdock.usage", "peer")]));
    h.engine.run("good", &web(&[]));
    sleep(2 * SEC).await;
    assert!(h.engine.uploads_to("bad").is_empty());
    assert_eq!(h.engine.uploads_to("good").len(), 1);
    let status = h.status();
    let bad = status
        .iter()
        .find(|e| e.container.as_deref() == Some("bad"));
    let error = bad.and_then(|e| e.error.clone()).unwrap_or_default();
    assert!(error.contains("peer"), "{error}");
    let good = status.iter().find(|e| e.name == "good").unwrap();
    assert_eq!(good.error, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn delivery_failure_is_retried_soon() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.set_failing(true);
    h.engine.run("web", &web(&[]));
    sleep(SEC).await;
    assert!(h.engine.uploads_to("web").is_empty());
    let row = h.status().into_iter().find(|e| e.name == "web").unwrap();
    assert!(
        row.error
            .unwrap()
            .contains("delivery to container web failed")
    );
    let healed = Instant::now();
    h.engine.set_failing(false);
    sleep(3 * SEC).await;
    let log = h.engine.log();
    let (at, _) = log
        .iter()
        .find(|(_, a)| matches!(a, Act::Upload { container, .. } if container == "web"))
        .expect("delivered after the engine healed");
    assert!(*at - healed <= 2 * SEC, "retried {:?} after", *at - healed);
    assert_eq!(
        h.ca.orders_for("web").len(),
        1,
        "the certificate is not reissued"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_signal_sent_only_after_delivery() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.set_failing(true);
    h.engine.run("web", &web(&[("certdock.reload", "SIGHUP")]));
    sleep(5 * SEC).await;
    let signals = |e: &TestEngine| e.count(|a| matches!(a, Act::Signal { .. }));
    assert_eq!(signals(&h.engine), 0, "no signal without a delivery");
    h.engine.set_failing(false);
    sleep(5 * SEC).await;
    let acts: Vec<Act> = h.engine.log().into_iter().map(|(_, a)| a).collect();
    let upload = acts
        .iter()
        .position(|a| matches!(a, Act::Upload { .. }))
        .unwrap();
    let signal = acts
        .iter()
        .position(|a| matches!(a, Act::Signal { signal, .. } if signal == "SIGHUP"))
        .unwrap();
    assert!(upload < signal, "{acts:?}");
    assert_eq!(signals(&h.engine), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_reconcile_of_containers_before_first_full_list() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.stop().await;
    h.engine.hold_list(true);
    h.engine.run("web", &web(&[]));
    h.spawn(Clock::tokio_at(SystemTime::now()));
    sleep(5 * MIN).await;
    assert_eq!(h.ca.orders_for("web").len(), 0);
    assert!(h.engine.uploads_to("web").is_empty());
    h.engine.hold_list(false);
    sleep(SEC).await;
    assert_eq!(h.engine.uploads_to("web").len(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_neither_reissues_nor_resignals() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run("web", &web(&[("certdock.reload", "SIGHUP")]));
    sleep(2 * SEC).await;
    h.stop().await;
    h.spawn(Clock::tokio_at(SystemTime::now()));
    sleep(5 * SEC).await;
    assert_eq!(h.ca.orders_for("web").len(), 1);
    assert_eq!(h.engine.uploads_to("web").len(), 1);
    assert_eq!(h.engine.count(|a| matches!(a, Act::Signal { .. })), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_with_new_proxy_network_attaches_there() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run("web", &web(&[]));
    sleep(2 * SEC).await;
    let attached = |e: &TestEngine| {
        e.count(|a| matches!(a, Act::Attach { network, container } if network == "edge" && container == "web"))
    };
    assert_eq!(attached(&h.engine), 0);
    h.reload(|c| c.proxy_network = Some("edge".into()));
    until("attached to the new network", || attached(&h.engine) >= 1).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_with_a_deny_list_refuses_the_container() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine
        .run("web", &web(&[("certdock.name", "web.blocked.test")]));
    sleep(2 * SEC).await;
    assert_eq!(h.engine.uploads_to("web").len(), 1);
    h.reload(|c| c.names = deny("blocked.test"));
    until("the container refused in status", || {
        h.status().iter().any(|e| {
            e.container.as_deref() == Some("web")
                && e.error
                    .as_deref()
                    .is_some_and(|m| m.contains("blocked.test"))
        })
    })
    .await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_order_is_asked_again_as_soon_as_its_labels_change() {
    let mut h = Harness::start(deny("denied.test")).await;
    h.engine
        .run("web", &web(&[("certdock.sans", "x.denied.test")]));
    sleep(MIN).await;
    assert_eq!(h.ca.orders_for("web").len(), 1);
    h.engine.run("web", &web(&[]));
    sleep(SEC).await;
    assert_eq!(h.ca.orders_for("web").len(), 2);
    assert_eq!(h.engine.uploads_to("web").len(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_traefik_client_certificate_is_published_and_referenced() {
    let mut h = Harness::start(NamePolicy::default()).await;
    sleep(2 * SEC).await;
    let out = h.out();
    let dir = out.join(traefik_client::NAME);
    let pem = std::fs::read(dir.join("cert.pem")).unwrap();
    let der = certs_from_pem("cert", std::str::from_utf8(&pem).unwrap()).unwrap();
    let cert = parse_cert("cert", &der[0]).unwrap();
    assert!(cert.subject().to_string().contains(traefik_client::CN));
    let yml = std::fs::read_to_string(out.join("traefik/certdock.yml")).unwrap();
    assert!(
        yml.contains(&format!("{}/fullchain.pem", dir.display())),
        "{yml}"
    );
    let ca = std::fs::read_to_string(out.join("ca.pem")).unwrap();
    assert!(yml.contains(&out.join("ca.pem").display().to_string()) && !ca.is_empty());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_keeps_delivering_the_old_certificate() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run("web", &web(&[]));
    sleep(SEC).await;
    let old = h.delivered_serial("web").unwrap();
    h.ca.set(CaMode::Down);
    sleep(45 * MIN).await;
    assert!(h.ca.orders_for("web").len() > 1, "renewal was tried");
    h.engine.run("web2", &web(&[("certdock.name", "web")]));
    sleep(5 * SEC).await;
    assert_eq!(
        h.delivered_serial("web2"),
        Some(old),
        "the new container gets the old one"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_allow_list_is_published_to_the_decider_and_becomes_a_middleware() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run(
        "api",
        &web(&[
            ("certdock.name", "api"),
            ("certdock.allow", "web,group:ops"),
        ]),
    );
    h.engine.run(
        "cron",
        &web(&[("certdock.name", "cron"), ("certdock.groups", "ops")]),
    );
    sleep(3 * SEC).await;
    let lists = h.allow.snapshot();
    assert_eq!(lists["api"].to_string(), "web,group:ops");
    assert!(!lists.contains_key("cron"));
    // The client's certificate carries its group; the server's status names the middleware.
    let pem = h.engine.file("cron", DIR, "cert.pem").unwrap();
    let facts =
        crate::ca::facts::CertFacts::from_pem("cron", std::str::from_utf8(&pem).unwrap()).unwrap();
    assert_eq!(
        facts.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        ["ops"]
    );
    let api = h.status().into_iter().find(|e| e.name == "api").unwrap();
    assert_eq!(api.middleware.as_deref(), Some("certdock-allow-api@file"));
    let yml = std::fs::read_to_string(h.out().join("traefik/certdock.yml")).unwrap();
    assert!(
        yml.contains("address: https://certdock:8443/v1/forward-auth/api"),
        "{yml}"
    );
    // The label goes: so do the list and the middleware.
    h.engine.run("api", &web(&[("certdock.name", "api")]));
    sleep(3 * SEC).await;
    assert!(h.allow.snapshot().is_empty());
    let yml = std::fs::read_to_string(h.out().join("traefik/certdock.yml")).unwrap();
    assert!(!yml.contains("certdock-allow-api"), "{yml}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_groups_change_gets_a_new_certificate() {
    let mut h = Harness::start(NamePolicy::default()).await;
    h.engine.run("cron", &web(&[("certdock.groups", "ops")]));
    sleep(2 * SEC).await;
    let first = h.delivered_serial("cron").unwrap();
    h.engine
        .run("cron", &web(&[("certdock.groups", "ops,web")]));
    sleep(2 * SEC).await;
    let second = h.delivered_serial("cron").unwrap();
    assert_ne!(first, second, "a group change must reissue");
    let pem = h.engine.file("cron", DIR, "cert.pem").unwrap();
    let facts =
        crate::ca::facts::CertFacts::from_pem("cron", std::str::from_utf8(&pem).unwrap()).unwrap();
    assert_eq!(facts.groups.len(), 2);
    h.stop().await;
}
