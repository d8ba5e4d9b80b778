//! The Docker adapter against the real engine: watcher, reconnects, uploads, networks, signals.

mod common;

use std::pin::Pin;
use std::time::Duration;

use certdock::core::container::{ContainerInfo, ContainerState};
use certdock::docker::{self, DockerError, DockerHost, WatchConfig, WatchEvent};
use common::{ContainerSpec, SockProxy, TestNetwork};
use futures_util::{Stream, StreamExt};

type Events = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;

/// Generous: the engine may be busy with other tests' containers.
const WAIT: Duration = Duration::from_secs(30);

fn watch_host(host: Option<String>, resync: Duration) -> Events {
    let config = WatchConfig {
        label_prefix: common::label_prefix().to_owned(),
        resync,
    };
    let connect = move || {
        let host = host.clone();
        async move {
            match host {
                Some(host) => docker::connect_to(&DockerHost::parse(&host, None)?).await,
                None => docker::connect().await,
            }
        }
    };
    Box::pin(docker::watch(connect, config))
}

fn watch_default() -> Events {
    watch_host(None, Duration::from_secs(600))
}

/// The next event matching `pred`, skipping others (other tests' containers share the engine).
async fn next_where(
    events: &mut Events,
    what: &str,
    pred: impl Fn(&WatchEvent) -> bool,
) -> WatchEvent {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if pred(&event) {
                return event;
            }
        }
        panic!("the watch stream ended");
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The next complete `Init` batch.
async fn next_init_batch(events: &mut Events) -> Vec<ContainerInfo> {
    next_where(events, "InitStart", |e| *e == WatchEvent::InitStart).await;
    let mut batch = Vec::new();
    loop {
        match next_where(events, "InitApply/InitDone", |_| true).await {
            WatchEvent::InitApply(info) => batch.push(info),
            WatchEvent::InitDone => return batch,
            other => panic!("unexpected {other:?} inside an Init batch"),
        }
    }
}

fn upsert_of<'a>(id: &'a str, state: ContainerState) -> impl Fn(&WatchEvent) -> bool + 'a {
    move |e| matches!(e, WatchEvent::Upsert(info) if info.id == id && info.state == state)
}

#[tokio::test]
async fn watcher_sees_a_labelled_container_created_started_and_destroyed() {
    let docker = common::docker().await;
    let mut events = watch_default();
    next_init_batch(&mut events).await;

    let container = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "web")
        .create(&docker)
        .await;
    let created = next_where(
        &mut events,
        "created",
        upsert_of(&container.id, ContainerState::Created),
    )
    .await;
    let WatchEvent::Upsert(info) = created else {
        unreachable!()
    };
    assert_eq!(info.name, container.name);
    assert_eq!(
        info.labels
            .get(&common::own_label("certdock.name"))
            .map(String::as_str),
        Some("web")
    );

    container.start(&docker).await;
    let started = next_where(
        &mut events,
        "started",
        upsert_of(&container.id, ContainerState::Running),
    )
    .await;
    let WatchEvent::Upsert(info) = started else {
        unreachable!()
    };
    assert_eq!(info.networks, ["bridge"]);

    container.remove(&docker).await;
    let removed = WatchEvent::Remove(container.id.clone());
    next_where(&mut events, "removed", |e| *e == removed).await;
}

#[tokio::test]
async fn changes_between_subscribing_and_listing_are_not_lost() {
    let docker = common::docker().await;
    let mut events = watch_default();
    next_init_batch(&mut events).await;
    // The watcher subscribed (from the daemon's clock) before listing, but sends the events
    // request only when polled again: this container is created in that window.
    let container = ContainerSpec::default()
        .label("certdock.enable", "true")
        .create(&docker)
        .await;
    next_where(
        &mut events,
        "replayed create",
        upsert_of(&container.id, ContainerState::Created),
    )
    .await;
}

#[tokio::test]
async fn initial_list_includes_containers_that_already_existed() {
    let docker = common::docker().await;
    let created = ContainerSpec::default()
        .label("certdock.enable", "true")
        .create(&docker)
        .await;
    let running = ContainerSpec::default()
        .label("certdock.enable", "true")
        .run(&docker)
        .await;
    let unlabelled = ContainerSpec::default().run(&docker).await;

    let mut events = watch_default();
    let batch = next_init_batch(&mut events).await;
    let find = |id: &str| batch.iter().find(|c| c.id == id).cloned();
    let created = find(&created.id).expect("created container listed");
    assert_eq!(created.state, ContainerState::Created);
    let running = find(&running.id).expect("running container listed");
    assert_eq!(
        (running.state, running.networks.as_slice()),
        (ContainerState::Running, &["bridge".to_owned()][..])
    );
    let unlabelled = find(&unlabelled.id).expect("unlabelled container listed");
    assert!(
        unlabelled.networks.is_empty(),
        "networks are tracked for opted-in containers only"
    );
}

#[tokio::test]
async fn watcher_relists_after_the_socket_is_cut_and_sees_containers_created_meanwhile() {
    let docker = common::docker().await;
    let proxy = SockProxy::start(&common::docker_socket()).expect("socket proxy");
    let mut events = watch_host(Some(proxy.host()), Duration::from_secs(600));
    next_init_batch(&mut events).await;
    // An event proves the event stream is connected (it is opened lazily, after the list).
    let probe = ContainerSpec::default()
        .label("certdock.enable", "true")
        .create(&docker)
        .await;
    next_where(
        &mut events,
        "probe",
        upsert_of(&probe.id, ContainerState::Created),
    )
    .await;
    let accepted = proxy.accepted();

    proxy.cut();
    let during_cut = ContainerSpec::default()
        .label("certdock.enable", "true")
        .create(&docker)
        .await;
    proxy.restore().expect("restore proxy");

    let batch = next_init_batch(&mut events).await;
    let listed = batch.iter().find(|c| c.id == during_cut.id);
    assert_eq!(listed.map(|c| c.state), Some(ContainerState::Created));
    assert!(
        proxy.accepted() > accepted,
        "the watcher reconnected through the proxy"
    );

    // And events flow again on the new connection.
    during_cut.start(&docker).await;
    next_where(
        &mut events,
        "started after reconnect",
        upsert_of(&during_cut.id, ContainerState::Running),
    )
    .await;
}

#[tokio::test]
async fn watcher_waits_quietly_for_a_socket_that_is_absent_at_start() {
    common::ensure_image();
    let proxy = SockProxy::new_cut(&common::docker_socket()).expect("socket proxy");
    let mut events = watch_host(Some(proxy.host()), Duration::from_secs(600));
    let early = tokio::time::timeout(Duration::from_millis(700), events.next()).await;
    assert!(
        early.is_err(),
        "nothing may be emitted while Docker is absent: {early:?}"
    );

    proxy.restore().expect("restore proxy");
    next_init_batch(&mut events).await;
}

#[tokio::test]
async fn watcher_relists_every_resync_interval() {
    common::ensure_image();
    let mut events = watch_host(None, Duration::from_millis(300));
    next_init_batch(&mut events).await;
    next_init_batch(&mut events).await;
}

#[tokio::test]
async fn network_changes_of_opted_in_containers_are_seen() {
    let docker = common::docker().await;
    let network = TestNetwork::create(&docker).await;
    let container = ContainerSpec::default()
        .label("certdock.enable", "true")
        .run(&docker)
        .await;
    let mut events = watch_default();
    next_init_batch(&mut events).await;

    docker::connect_network(&docker, &network.name, &container.id, &[])
        .await
        .expect("connect");
    let id = container.id.clone();
    let name = network.name.clone();
    next_where(
        &mut events,
        "attached",
        move |e| matches!(e, WatchEvent::Upsert(i) if i.id == id && i.networks.contains(&name)),
    )
    .await;
}

#[tokio::test]
async fn uploaded_files_are_readable_after_start_with_the_given_owner_and_mode() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().create(&docker).await;
    let files = vec![
        ("cert.pem".to_owned(), b"CERT-1".to_vec(), 0o644),
        ("key.pem".to_owned(), b"KEY-1".to_vec(), 0o600),
    ];
    docker::upload_files(
        &docker,
        &container.id,
        "/run/certdock",
        &files,
        1000,
        1001,
        "v1",
    )
    .await
    .expect("upload into a created container");
    container.start(&docker).await;

    let cat = container
        .exec(
            &docker,
            &["cat", "/run/certdock/cert.pem", "/run/certdock/key.pem"],
        )
        .await;
    assert_eq!(cat, (0, "CERT-1KEY-1".to_owned()));
    let key = container
        .exec(
            &docker,
            &["stat", "-L", "-c", "%a %u:%g", "/run/certdock/key.pem"],
        )
        .await;
    assert_eq!(key, (0, "600 1000:1001\n".to_owned()));
    let version = container
        .exec(&docker, &["cat", "/run/certdock/..data/.version"])
        .await;
    assert_eq!(version, (0, "v1\n".to_owned()));
}

#[tokio::test]
async fn a_second_upload_swaps_data_to_the_new_version_and_a_third_reuses_the_old_slot() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().run(&docker).await;
    let upload = |cert: &str, extra: bool, version: &'static str| {
        let mut files = vec![
            ("cert.pem".to_owned(), cert.as_bytes().to_vec(), 0o644),
            ("key.pem".to_owned(), b"KEY".to_vec(), 0o600),
        ];
        if extra {
            files.push(("stale.pem".to_owned(), b"OLD".to_vec(), 0o644));
        }
        let (docker, id) = (docker.clone(), container.id.clone());
        async move {
            docker::upload_files(&docker, &id, "/run/certdock", &files, 0, 0, version)
                .await
                .expect("upload");
        }
    };

    upload("CERT-1", true, "v1").await;
    upload("CERT-2", false, "v2").await;
    let cat = container
        .exec(&docker, &["cat", "/run/certdock/cert.pem"])
        .await;
    assert_eq!(cat, (0, "CERT-2".to_owned()));
    let data = container
        .exec(&docker, &["readlink", "/run/certdock/..data"])
        .await;
    assert_eq!(data, (0, "..certdock-b\n".to_owned()));
    let link = container
        .exec(&docker, &["readlink", "/run/certdock/cert.pem"])
        .await;
    assert_eq!(link, (0, "..data/cert.pem\n".to_owned()));
    // The previous version is still intact for readers that resolved it before the swap.
    let previous = container
        .exec(&docker, &["cat", "/run/certdock/..certdock-a/cert.pem"])
        .await;
    assert_eq!(previous, (0, "CERT-1".to_owned()));

    upload("CERT-3", false, "v3").await;
    let cat = container
        .exec(&docker, &["cat", "/run/certdock/cert.pem"])
        .await;
    assert_eq!(cat, (0, "CERT-3".to_owned()));
    let slot = container
        .exec(&docker, &["ls", "-A", "/run/certdock/..certdock-a"])
        .await;
    assert_eq!(
        slot,
        (0, ".version\ncert.pem\nkey.pem\n".to_owned()),
        "the reused slot is cleared first"
    );
    let entries = container
        .exec(&docker, &["ls", "-A", "/run/certdock"])
        .await;
    assert_eq!(
        entries,
        (
            0,
            "..certdock-a\n..certdock-b\n..data\ncert.pem\nkey.pem\nstale.pem\n".to_owned()
        ),
        "versions do not accumulate"
    );
}

#[tokio::test]
async fn upload_to_a_missing_container_is_a_permanent_not_found() {
    let docker = common::docker().await;
    let files = vec![("cert.pem".to_owned(), b"x".to_vec(), 0o644)];
    let err = docker::upload_files(
        &docker,
        "certdock-test-no-such-container",
        "/run/certdock",
        &files,
        0,
        0,
        "v1",
    )
    .await
    .expect_err("no such container");
    assert!(err.is_not_found() && !err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn connect_network_is_idempotent() {
    let docker = common::docker().await;
    let network = TestNetwork::create(&docker).await;
    let container = ContainerSpec::default().run(&docker).await;
    let aliases = vec!["web.internal".to_owned()];
    for _ in 0..2 {
        docker::connect_network(&docker, &network.name, &container.id, &aliases)
            .await
            .expect("connect (again)");
    }
    let info = docker::inspect(&docker, &container.id)
        .await
        .expect("inspect")
        .expect("exists");
    assert!(info.networks.contains(&network.name), "{:?}", info.networks);
    let err = docker::connect_network(&docker, "certdock-test-no-such-network", &container.id, &[])
        .await
        .expect_err("missing network");
    assert!(!err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn send_signal_sighup_reaches_the_containers_trap() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().run(&docker).await;
    container.wait_for_file(&docker, "/tmp/ready").await;
    docker::send_signal(&docker, &container.id, "SIGHUP")
        .await
        .expect("signal");
    container.wait_for_file(&docker, "/tmp/hup").await;
    let hup = container.exec(&docker, &["cat", "/tmp/hup"]).await;
    assert_eq!(hup, (0, "HUP\n".to_owned()));
}

#[tokio::test]
async fn send_signal_refuses_sigkill_and_the_container_keeps_running() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().run(&docker).await;
    for signal in ["SIGKILL", "KILL", "9"] {
        let err = docker::send_signal(&docker, &container.id, signal)
            .await
            .expect_err(signal);
        assert!(matches!(err, DockerError::RefusedSignal { .. }), "{err:?}");
    }
    let info = docker::inspect(&docker, &container.id)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(info.state, ContainerState::Running);
}

#[tokio::test]
async fn signalling_a_stopped_container_is_a_permanent_conflict() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().create(&docker).await;
    let err = docker::send_signal(&docker, &container.id, "SIGHUP")
        .await
        .expect_err("not running");
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(err.status_code(), Some(409));
}

#[tokio::test]
async fn restart_starts_the_container_again() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().run(&docker).await;
    container.wait_for_file(&docker, "/tmp/ready").await;
    docker::restart(&docker, &container.id)
        .await
        .expect("restart");
    let info = docker::inspect(&docker, &container.id)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(info.state, ContainerState::Running);
    // /tmp/ready was written again by the new process; the old one's /tmp/hup state is moot.
    container.wait_for_file(&docker, "/tmp/ready").await;
}

#[tokio::test]
async fn inspect_returns_none_for_a_missing_container() {
    let docker = common::docker().await;
    let missing = docker::inspect(&docker, "certdock-test-no-such-container")
        .await
        .expect("inspect");
    assert!(missing.is_none());
}

#[tokio::test]
async fn connect_to_an_absent_socket_fails_transiently() {
    let proxy = SockProxy::new_cut(&common::docker_socket()).expect("socket proxy");
    let host = DockerHost::parse(&proxy.host(), None).expect("host");
    let err = docker::connect_to(&host).await.expect_err("no socket");
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn the_api_version_is_negotiated_down_to_the_engines() {
    let docker = common::docker().await;
    let engine = docker.version().await.expect("version");
    let engine_api = engine.api_version.expect("api version");
    let (major, minor) = engine_api.split_once('.').expect("dotted version");
    let engine_api: (usize, usize) = (major.parse().expect("major"), minor.parse().expect("minor"));
    let bollard = bollard::API_DEFAULT_VERSION;
    let client = docker.client_version();
    // The older of the engine's and bollard's: 1.41 on engine 20.10, bollard's on newer engines.
    let expected = engine_api.min((bollard.major_version, bollard.minor_version));
    assert_eq!((client.major_version, client.minor_version), expected);
}
