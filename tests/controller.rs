//! `certdock run` against the real Docker Engine: labelled containers get certificates, the proxy
//! files are right, rotation happens, and nothing is lost when events are (output files, reload
//! and removal: `controller_outputs.rs`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::controller::{fetch_delivery, init_crypto, read_in, run_certdock, serial_of};
use common::process::{Certdock, eventually, openssl, path_str};
use common::{ContainerSpec, TestNetwork, docker};

#[tokio::test]
async fn a_labelled_container_gets_five_verified_files_and_the_proxy_network() {
    init_crypto();
    let d = docker().await;
    let net = TestNetwork::create(&d).await;
    let cd = run_certdock(Some(&net.name), &[]);
    let api = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "api")
        .label("certdock.sans", "api.internal")
        .run(&d)
        .await;
    let plain = ContainerSpec::default().run(&d).await;
    let bad = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.ttl", "banana")
        .run(&d)
        .await;

    let tmp = tempfile::tempdir().unwrap();
    let got = tmp.path().join("got");
    eventually(
        "the five files in /run/certdock",
        Duration::from_secs(20),
        || async { fetch_delivery(&d, &api, &got).await.then_some(()) },
    )
    .await;
    let cert = got.join("cert.pem");
    for ca in [got.join("ca.pem"), cd.out.join("ca.pem")] {
        let v = openssl(&[
            "verify",
            "-CAfile",
            path_str(&ca),
            "-untrusted",
            path_str(&got.join("chain.pem")),
            path_str(&cert),
        ]);
        assert!(
            v.status.success(),
            "verify against {}: {}",
            ca.display(),
            String::from_utf8_lossy(&v.stderr)
        );
    }
    let pk_cert = openssl(&["x509", "-in", path_str(&cert), "-noout", "-pubkey"]).stdout;
    let pk_key = openssl(&["pkey", "-in", path_str(&got.join("key.pem")), "-pubout"]).stdout;
    assert_eq!(pk_cert, pk_key, "the key matches the certificate");
    let text = String::from_utf8_lossy(
        &openssl(&["x509", "-in", path_str(&cert), "-noout", "-text"]).stdout,
    )
    .to_string();
    assert!(text.contains("DNS:api, DNS:api.internal"), "{text}");
    let (_, mode) = api
        .exec(&d, &["stat", "-L", "-c", "%a", "/run/certdock/key.pem"])
        .await;
    assert_eq!(mode.trim(), "600");

    let attached = eventually(
        "attached to the proxy network",
        Duration::from_secs(10),
        || async {
            let info = d.inspect_container(&api.id, None).await.ok()?;
            let nets = info.network_settings?.networks?;
            let ep = nets.get(&net.name)?.clone();
            Some(ep)
        },
    )
    .await;
    assert!(
        attached
            .aliases
            .unwrap_or_default()
            .contains(&"api".to_string())
    );

    // The unlabelled container is untouched; the bad one is refused with the ttl named.
    let (code, _) = plain.exec(&d, &["test", "-e", "/run/certdock"]).await;
    assert_ne!(code, 0, "nothing delivered to an unlabelled container");
    let info = d.inspect_container(&plain.id, None).await.unwrap();
    assert!(
        !info
            .network_settings
            .unwrap()
            .networks
            .unwrap()
            .contains_key(&net.name)
    );
    let st = cd.status_error_of(&bad.name, Duration::from_secs(10)).await;
    assert!(st["error"].as_str().unwrap().contains("ttl"), "{st}");
    let (code, _) = bad.exec(&d, &["test", "-e", "/run/certdock"]).await;
    assert_ne!(code, 0);
    let ok = cd
        .status()
        .into_iter()
        .find(|e| e["container"] == api.name.as_str())
        .unwrap();
    assert!(ok["error"].is_null() && ok["serial"].is_string(), "{ok}");
}

#[tokio::test]
async fn the_traefik_file_passes_the_schema_and_names_real_files() {
    init_crypto();
    let d = docker().await;
    let cd = run_certdock(None, &[]);
    let web = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "web")
        .label("certdock.traefik.hosts", "true")
        .label("certdock.usage", "server")
        .label(
            "traefik.http.routers.web.rule",
            "Host(`web.example.test`) || Host(`www.example.test`)",
        )
        .run(&d)
        .await;
    let yml = cd.out.join("traefik/certdock.yml");
    let text = eventually(
        "certdock.yml lists the web certificate",
        Duration::from_secs(20),
        || async {
            let t = std::fs::read_to_string(&yml).ok()?;
            t.contains("certs/web/").then_some(t)
        },
    )
    .await;
    let value: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/testdata/traefik/traefik-v3-file-provider.schema.json"),
        )
        .expect("schema in ../shared"),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mtls = &value["tls"]["options"]["mTLS"]["clientAuth"];
    assert_eq!(mtls["clientAuthType"], "RequireAndVerifyClientCert");
    for f in mtls["caFiles"].as_array().unwrap() {
        assert!(Path::new(f.as_str().unwrap()).is_file(), "{f} exists");
    }
    assert_eq!(
        value["tls"]["options"]["sniStrictDisable"]["sniStrict"],
        false
    );
    let crt = &value["tls"]["certificates"][0];
    let server_cert = crt["certFile"].as_str().unwrap();
    let text =
        String::from_utf8_lossy(&openssl(&["x509", "-in", server_cert, "-noout", "-text"]).stdout)
            .to_string();
    assert!(text.contains("DNS:www.example.test"), "{text}");
    let transport = &value["http"]["serversTransports"]["certdock"];
    let client_cert = transport["certificates"][0]["certFile"].as_str().unwrap();
    let purpose = openssl(&[
        "verify",
        "-CAfile",
        path_str(&cd.out.join("ca.pem")),
        "-purpose",
        "sslclient",
        client_cert,
    ]);
    assert!(
        purpose.status.success(),
        "Traefik's client certificate verifies for clientAuth: {}",
        String::from_utf8_lossy(&purpose.stderr)
    );
    assert!(value["tcp"]["serversTransports"]["certdock"]["tls"]["certificates"].is_array());
    drop(web);
}

#[tokio::test]
async fn a_45s_certificate_is_rotated_in_the_container_and_sighup_follows_each_delivery() {
    init_crypto();
    let d = docker().await;
    // Running (with its trap set) before certdock starts: the first delivery is to a running
    // process, which must be told to reload. (A container that gets its files before it
    // starts reads them at start, and is not signalled.)
    let c = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "short")
        .label("certdock.ttl", "45s")
        .label("certdock.reload", "SIGHUP")
        .run(&d)
        .await;
    c.wait_for_file(&d, "/tmp/ready").await;
    let cd = run_certdock(None, &["--min-ttl", "30s"]);
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("1");
    eventually("first delivery", Duration::from_secs(20), || async {
        fetch_delivery(&d, &c, &first).await.then_some(())
    })
    .await;
    let serial1 = serial_of(&first.join("cert.pem"));
    eventually(
        "SIGHUP after the first delivery",
        Duration::from_secs(10),
        || async {
            read_in(&d, &c, "/tmp/hup")
                .await
                .filter(|s| s.lines().count() >= 1)
        },
    )
    .await;
    let end = openssl(&[
        "x509",
        "-in",
        path_str(&first.join("cert.pem")),
        "-noout",
        "-checkend",
        "0",
    ]);
    assert!(end.status.success());
    let second = tmp.path().join("2");
    eventually(
        "a new certificate before the first expires",
        Duration::from_secs(40),
        || async {
            if !fetch_delivery(&d, &c, &second).await {
                return None;
            }
            (serial_of(&second.join("cert.pem")) != serial1).then_some(())
        },
    )
    .await;
    // The old one had not expired when it was replaced: it is still valid now, a moment later.
    let still = openssl(&[
        "x509",
        "-in",
        path_str(&first.join("cert.pem")),
        "-noout",
        "-checkend",
        "0",
    ]);
    assert!(still.status.success(), "rotation happened before expiry");
    eventually(
        "SIGHUP after the rotation",
        Duration::from_secs(10),
        || async {
            read_in(&d, &c, "/tmp/hup")
                .await
                .filter(|s| s.lines().count() >= 2)
        },
    )
    .await;
    drop(cd);
}

#[tokio::test]
async fn containers_running_before_certdock_starts_are_served() {
    init_crypto();
    let d = docker().await;
    let c = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "early")
        .run(&d)
        .await;
    let created = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "early-created")
        .create(&d)
        .await;
    let _cd = run_certdock(None, &[]);
    let tmp = tempfile::tempdir().unwrap();
    eventually(
        "delivery to the container that was already running",
        Duration::from_secs(20),
        || async { fetch_delivery(&d, &c, tmp.path()).await.then_some(()) },
    )
    .await;
    // A created-but-never-started container gets its files before it starts.
    eventually(
        "files in the created container",
        Duration::from_secs(20),
        || async {
            created.start(&d).await;
            let ok = read_in(&d, &created, "/run/certdock/cert.pem")
                .await
                .is_some_and(|s| s.contains("BEGIN CERTIFICATE"));
            ok.then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_cut_events_connection_loses_no_container() {
    init_crypto();
    let d = docker().await;
    let proxy = common::SockProxy::start(&common::docker_socket()).unwrap();
    let cd = Certdock::start(
        "run",
        &["--listen", "127.0.0.1:0", "--resync-interval", "60s"],
        &[("DOCKER_HOST", &proxy.host())],
    );
    let a = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "before-cut")
        .run(&d)
        .await;
    let tmp = tempfile::tempdir().unwrap();
    eventually(
        "delivery before the cut",
        Duration::from_secs(20),
        || async { fetch_delivery(&d, &a, tmp.path()).await.then_some(()) },
    )
    .await;
    proxy.cut();
    let b = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "during-cut")
        .run(&d)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore().unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    eventually(
        "delivery of the container started while events were cut",
        Duration::from_secs(40),
        || async { fetch_delivery(&d, &b, tmp2.path()).await.then_some(()) },
    )
    .await;
    drop(cd);
}

#[tokio::test]
async fn twenty_containers_started_together_cause_few_proxy_writes_and_none_when_idle() {
    init_crypto();
    let d = docker().await;
    let cd = run_certdock(None, &[]);
    // Let the first write (ca.pem and Traefik's own client certificate) happen first.
    eventually("initial proxy files", Duration::from_secs(20), || async {
        (cd.count_log("wrote proxy configuration") >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cd.count_log("wrote proxy configuration");
    let mut containers = Vec::new();
    let specs: Vec<_> = (0..20)
        .map(|i| {
            ContainerSpec::default()
                .label("certdock.enable", "true")
                .label("certdock.name", &format!("burst-{i}"))
                .label("certdock.usage", "server")
                .label("certdock.traefik.hosts", "true")
                .label(
                    &format!("traefik.http.routers.b{i}.rule"),
                    &format!("Host(`burst-{i}.example.test`)"),
                )
        })
        .collect();
    let created = futures_util::future::join_all(specs.into_iter().map(|s| s.create(&d))).await;
    futures_util::future::join_all(created.iter().map(|c| c.start(&d))).await;
    containers.extend(created);
    let yml = cd.out.join("traefik/certdock.yml");
    eventually(
        "all 20 certificates listed for Traefik",
        Duration::from_secs(30),
        || async {
            let t = std::fs::read_to_string(&yml).ok()?;
            (0..20)
                .all(|i| t.contains(&format!("certs/burst-{i}/")))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = cd.count_log("wrote proxy configuration") - before;
    assert!(
        writes <= 5,
        "20 containers caused {writes} Traefik config writes"
    );
    let idle_before = cd.count_log("wrote proxy configuration");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        cd.count_log("wrote proxy configuration"),
        idle_before,
        "no write when nothing changed"
    );
    drop(containers);
}
