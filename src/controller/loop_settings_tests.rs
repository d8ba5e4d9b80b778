//! The whole loop (see `loop_harness`): settings reloaded, restarts, the proxy's own certificate,
//! allow lists and groups.

use std::time::SystemTime;

use super::Clock;
use super::loop_harness::*;
use super::testing::{Act, TestEngine};
use crate::ca::pem::{certs_from_pem, parse_cert};
use crate::core::names::traefik_client;
use crate::core::policy::NamePolicy;

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
    // Another list for the same server: published in its place.
    h.engine.run(
        "api",
        &web(&[("certdock.name", "api"), ("certdock.allow", "web")]),
    );
    sleep(3 * SEC).await;
    assert_eq!(h.allow.snapshot()["api"].to_string(), "web");
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
