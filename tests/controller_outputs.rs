//! `certdock run` against the real Docker Engine, its output files: written again when deleted or
//! altered, a changed config file applied without a restart, a destroyed container's files
//! removed after the grace period.

mod common;

use std::time::Duration;

use common::controller::{fetch_delivery, init_crypto, run_certdock};
use common::process::{Certdock, eventually, openssl, path_str};
use common::{ContainerSpec, docker};

#[tokio::test]
async fn deleted_or_altered_output_files_are_written_again() {
    init_crypto();
    let d = docker().await;
    let cd = run_certdock(None, &[]);
    let _vol = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "vol")
        .label("certdock.delivery", "volume")
        .run(&d)
        .await;
    let cert = cd.out.join("certs/vol/cert.pem");
    let yml = cd.out.join("traefik/certdock.yml");
    eventually(
        "the volume delivery and the Traefik file",
        Duration::from_secs(20),
        || async { (cert.is_file() && yml.is_file()).then_some(()) },
    )
    .await;
    let good_cert = std::fs::read_to_string(&cert).unwrap();
    let good_yml = std::fs::read_to_string(&yml).unwrap();
    let good_ca = std::fs::read_to_string(cd.out.join("ca.pem")).unwrap();
    std::fs::remove_file(cd.out.join("ca.pem")).unwrap();
    std::fs::write(&yml, "tls: {}\n").unwrap();
    std::fs::remove_file(cd.out.join("certs/vol/key.pem")).unwrap();
    eventually("every file restored", Duration::from_secs(15), || async {
        let ok = std::fs::read_to_string(cd.out.join("ca.pem")).is_ok_and(|c| c == good_ca)
            && std::fs::read_to_string(&yml).is_ok_and(|y| y == good_yml)
            && std::fs::read_to_string(cd.out.join("certs/vol/key.pem")).is_ok()
            && std::fs::read_to_string(&cert).is_ok_and(|c| c == good_cert);
        ok.then_some(())
    })
    .await;
    let pk_cert = openssl(&["x509", "-in", path_str(&cert), "-noout", "-pubkey"]).stdout;
    let pk_key = openssl(&[
        "pkey",
        "-in",
        path_str(&cd.out.join("certs/vol/key.pem")),
        "-pubout",
    ])
    .stdout;
    assert_eq!(
        pk_cert, pk_key,
        "the restored key belongs to the certificate"
    );
}

#[tokio::test]
async fn a_changed_config_file_applies_without_a_restart() {
    init_crypto();
    let d = docker().await;
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("certdock.toml");
    std::fs::write(&cfg, "resync_interval = \"3s\"\n").unwrap();
    let cd = Certdock::start(
        "run",
        &["--listen", "127.0.0.1:0", "--config", path_str(&cfg)],
        &[],
    );
    let a = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "allowed")
        .run(&d)
        .await;
    let tmp = tempfile::tempdir().unwrap();
    eventually(
        "delivery under the first settings",
        Duration::from_secs(20),
        || async { fetch_delivery(&d, &a, tmp.path()).await.then_some(()) },
    )
    .await;
    std::fs::write(
        &cfg,
        "resync_interval = \"3s\"\ndeny_domain = \"blocked.test\"\n",
    )
    .unwrap();
    eventually("the reload in the log", Duration::from_secs(10), || async {
        (cd.count_log("settings reloaded from the config file") >= 1).then_some(())
    })
    .await;
    let b = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "nope")
        .label("certdock.sans", "x.blocked.test")
        .run(&d)
        .await;
    let refused = cd.status_error_of(&b.name, Duration::from_secs(15)).await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("--deny-domain blocked.test"),
        "{refused}"
    );
    // A broken file is refused and the running settings stay.
    std::fs::write(&cfg, "resync_interval = \"banana\"\n").unwrap();
    eventually(
        "the refusal in the log",
        Duration::from_secs(10),
        || async {
            cd.log_text()
                .contains("the changed config file is refused")
                .then_some(())
        },
    )
    .await;
    let ok = cd
        .status()
        .into_iter()
        .find(|e| e["container"] == a.name.as_str())
        .unwrap();
    assert!(ok["error"].is_null(), "{ok}");
}

#[tokio::test]
async fn a_destroyed_containers_volume_files_go_after_the_grace_period() {
    init_crypto();
    let d = docker().await;
    let cd = run_certdock(None, &["--orphan-grace", "2s"]);
    let c = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "ephemeral")
        .label("certdock.delivery", "volume")
        .run(&d)
        .await;
    let dir = cd.out.join("certs/ephemeral");
    eventually("the volume delivery", Duration::from_secs(20), || async {
        dir.join("cert.pem").is_file().then_some(())
    })
    .await;
    c.remove(&d).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        dir.join("cert.pem").is_file(),
        "files stay during the grace period"
    );
    eventually(
        "the files removed after the grace period",
        Duration::from_secs(15),
        || async { (!dir.exists()).then_some(()) },
    )
    .await;
    assert!(
        cd.status().iter().all(|e| e["name"] != "ephemeral"),
        "no longer managed"
    );
}
