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

/// Issue 12 #1: a token made without `--kind` is a `sign` token. An agent enrolling with it is
/// refused before the token is spent, with a message that says which token to make, and the
/// agent stops at once instead of retrying forever.
#[test]
fn an_agent_with_a_sign_token_stops_at_once_and_the_token_is_not_spent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let token = common::certdock(&[
        "token",
        "create",
        "--state-dir",
        s(&serve.state),
        "--name",
        "host2",
    ]);
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let token_file = d.join("host2.token");
    std::fs::write(&token_file, &token).unwrap();
    let agent_state = d.join("agent-state");
    let mut agent = std::process::Command::new(common::process::bin())
        .args([
            "agent",
            "--state-dir",
            path_str(&agent_state),
            "--out-dir",
            path_str(&d.join("agent-out")),
            "--ca-url",
            &serve.url_ip(),
            "--token-file",
            path_str(&token_file),
            "--ca-fingerprint",
            &serve.fingerprint(),
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn certdock agent");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = agent.kill();
            panic!("the agent kept running with a sign token");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "the agent must fail: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("certdock: "),
        "one-line reason last: {stderr}"
    );
    assert!(
        last.contains("token_wrong_kind") && last.contains("certdock token create --kind agent"),
        "{last}"
    );
    assert!(
        !agent_state.join("agent/identity.pem").exists(),
        "no identity was stored"
    );

    // The token is not spent: it still signs one CSR, as a sign token does.
    let (_, csr) = common::openssl_csr(d, "host2", "host2", &[]);
    let body = common::body_file(d, "sign", &serde_json::json!({ "csr": csr }));
    let auth = format!("Authorization: Bearer {token}");
    let (code, answer) = serve.post_json("/v1/sign", &auth, &format!("@{}", s(&body)));
    assert_eq!(code, 200, "{answer}");
}

/// Issue 18: revoking an identity on the CA host (`certdock revoke --name`) makes the agent
/// replace that container's certificate within a pass of its loop (the CRL its feed pulls),
/// not at the renewal hours later.
#[tokio::test]
async fn an_identity_revoked_on_the_ca_is_replaced_in_its_container_within_a_minute() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let token = dir.path().join("agent.token");
    std::fs::write(&token, serve.token("agent", "host5.agents.test", &[])).unwrap();
    // A port of its own: the default one is the other agent tests'.
    let listen = format!("127.0.0.1:{}", common::free_port());
    let agent = Certdock::start(
        "agent",
        &[
            "--ca-url",
            &serve.url_ip(),
            "--token-file",
            path_str(&token),
            "--ca-fingerprint",
            &serve.fingerprint(),
            "--listen",
            &listen,
        ],
        &[],
    );
    let c = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "revoked.test")
        .run(&d)
        .await;
    let got = dir.path().join("got");
    let started = std::time::Instant::now();
    let mut first = None;
    while first.is_none() && started.elapsed() < Duration::from_secs(30) {
        first = delivered(&d, &c, &got).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = first.unwrap_or_else(|| panic!("no certificate in 30 s:\n{}", agent.log_text()));
    eprintln!(
        "first certificate in the container after {:?}",
        started.elapsed()
    );
    let out = common::certdock(&[
        "revoke",
        "--name",
        "revoked.test",
        "--state-dir",
        s(&serve.state),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = eventually(
        "a new certificate after the identity was revoked",
        Duration::from_secs(60),
        || async { delivered(&d, &c, &got).await.filter(|s| *s != first) },
    )
    .await;
    assert_ne!(first, second);
}
