//! The whole loop (see `loop_harness`): issuance, renewal, revocation, retries and deliveries.

use std::time::Duration;

use tokio::time::Instant;

use super::loop_harness::*;
use super::testing::{Act, CaMode, TestEngine};
use crate::core::policy::NamePolicy;

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
