//! `certdock agent` against a real `certdock serve` and the real Docker Engine: a remote-CA
//! certificate lands in a labelled container, and a CA outage costs nothing but time.

mod common;

use std::time::Duration;

use common::process::{Certdock, eventually, openssl, path_str};
use common::{ContainerSpec, Serve, TestContainer, docker, s};

async fn delivered(
    d: &certdock::docker::Docker,
    c: &TestContainer,
    dir: &std::path::Path,
) -> Option<String> {
    std::fs::create_dir_all(dir).ok()?;
    for f in ["cert.pem", "key.pem", "chain.pem", "ca.pem"] {
        let (code, text) = c.exec(d, &["cat", &format!("/run/certdock/{f}")]).await;
        if code != 0 || text.is_empty() {
            return None;
        }
        std::fs::write(dir.join(f), text).ok()?;
    }
    let serial = openssl(&[
        "x509",
        "-in",
        path_str(&dir.join("cert.pem")),
        "-noout",
        "-serial",
    ]);
    Some(String::from_utf8_lossy(&serial.stdout).trim().to_string())
}

#[tokio::test]
async fn an_agent_delivers_a_remote_ca_certificate_and_rides_out_a_ca_outage() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start_at(
        dir.path(),
        &dir.path().join("state"),
        common::free_port(),
        &["--min-ttl", "30s"],
    );
    let token = dir.path().join("agent.token");
    std::fs::write(&token, serve.token("agent", "host1.agents.test", &[])).unwrap();
    let url = serve.url_ip();
    let fp = serve.fingerprint();
    let agent = Certdock::start(
        "agent",
        &[
            "--ca-url",
            &url,
            "--token-file",
            path_str(&token),
            "--ca-fingerprint",
            &fp,
            "--min-ttl",
            "30s",
        ],
        &[],
    );
    // 45 s certificates renew about every 30 s: the outage below spans a renewal.
    let c = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "web.test")
        .label("certdock.ttl", "45s")
        .run(&d)
        .await;
    let got = dir.path().join("got");
    let first = eventually(
        "a certificate from the remote CA in the container",
        Duration::from_secs(30),
        || async { delivered(&d, &c, &got).await },
    )
    .await;
    // It chains to the CA that `serve` runs (the pinned root), not to anything local.
    let v = openssl(&[
        "verify",
        "-CAfile",
        s(&serve.roots),
        "-untrusted",
        path_str(&got.join("chain.pem")),
        path_str(&got.join("cert.pem")),
    ]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(agent.out.join("ca.pem").is_file());

    // The CA goes away past the renewal point: the container keeps a valid certificate, the
    // agent reports the error, and nothing is removed.
    let (port, state) = (serve.port, serve.state.clone());
    serve.stop();
    let err = eventually(
        "status shows the CA as unavailable",
        Duration::from_secs(40),
        || async {
            agent
                .status()
                .into_iter()
                .find(|e| e["name"] == "web.test" && e["error"].is_string())
        },
    )
    .await;
    assert!(
        err["error"].as_str().unwrap().contains("unavailable"),
        "{err}"
    );
    let during = delivered(&d, &c, &got)
        .await
        .expect("the certificate stays in place");
    assert!(during == first || !during.is_empty());
    let still_valid = openssl(&[
        "x509",
        "-in",
        path_str(&got.join("cert.pem")),
        "-noout",
        "-checkend",
        "0",
    ]);
    assert!(
        still_valid.status.success(),
        "the delivered certificate is still valid during the outage"
    );

    // The CA returns on the same state and port: the agent renews without re-enrolling.
    let _serve = Serve::start_at(dir.path(), &state, port, &["--min-ttl", "30s"]);
    eventually(
        "a renewal after the CA came back",
        Duration::from_secs(60),
        || async {
            let serial = delivered(&d, &c, &got).await?;
            let fresh = agent
                .status()
                .into_iter()
                .any(|e| e["name"] == "web.test" && e["error"].is_null());
            (serial != first && serial != during && fresh).then_some(())
        },
    )
    .await;
}
