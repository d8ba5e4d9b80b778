//! An agent's forward-auth pieces without Docker labels: the CRL feed in process (closed before
//! the first CRL, revocations applied, kept through an outage, restored), and a listener whose
//! certificate the CA refuses fails closed while the agent keeps running.

mod common;

use std::time::Duration;

use common::process::{Certdock, eventually, path_str};
use common::{Serve, free_port, ok, s};

/// The feed itself, without Docker: a CRL pull applies a CLI revocation, an outage keeps it,
/// and a fresh decider on the same agent state starts from the kept CRL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crl_feed_applies_revocations_keeps_them_through_an_outage_and_restores_them() {
    use std::sync::Arc;

    use certdock::api::agent_feed::RemoteFeed;
    use certdock::authz::decider::{Decider, Refusal};
    use certdock::ca::remote::RemoteSource;
    use certdock::ca::source::{CertSource, LeafOrder};
    use certdock::core::names::{CertName, San, Usage};
    use certdock::metrics::Metrics;
    use time::OffsetDateTime;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path());
    let token = dir.path().join("agent.token");
    std::fs::write(&token, serve.token("agent", "host2.agents.test", &[])).unwrap();
    let state = dir.path().join("agent-state");
    let remote = Arc::new(
        RemoteSource::bootstrap(&serve.url_ip(), &token, &serve.fingerprint(), &state)
            .await
            .unwrap(),
    );
    let client = remote
        .issue(&LeafOrder {
            name: CertName::parse("feed-client.test").unwrap(),
            sans: vec![San::parse("feed-client.test").unwrap()],
            usage: Usage::CLIENT,
            groups: Default::default(),
            ttl: Duration::from_secs(3600),
            internal: false,
        })
        .await
        .unwrap();
    let decider = Arc::new(Decider::new());
    let now = OffsetDateTime::now_utc;
    assert_eq!(
        decider.verify(&client.cert_der, now()).unwrap_err(),
        Refusal::NoTrust,
        "no trust before the first CRL: closed"
    );
    let metrics = Arc::new(Metrics::new());
    let mut feed = RemoteFeed::new(remote.clone(), decider.clone(), metrics);
    feed.refresh(true).await.unwrap();
    assert!(decider.verify(&client.cert_der, now()).is_ok());

    ok(&common::certdock(&[
        "revoke",
        "--state-dir",
        s(&serve.state),
        &client.serial,
    ]));
    feed.refresh(false).await.unwrap();
    assert!(matches!(
        decider.verify(&client.cert_der, now()),
        Err(Refusal::Revoked { .. })
    ));

    serve.stop();
    assert!(feed.refresh(true).await.is_err(), "the CA is away");
    assert!(matches!(
        decider.verify(&client.cert_der, now()),
        Err(Refusal::Revoked { .. })
    ));
    let restarted = Arc::new(Decider::new());
    let mut feed = RemoteFeed::new(remote, restarted.clone(), Arc::new(Metrics::new()));
    feed.restore();
    assert!(matches!(
        restarted.verify(&client.cert_der, now()),
        Err(Refusal::Revoked { .. })
    ));
}

/// `--api-name` outside the agent token's scope: the CA refuses the listener's certificate, the
/// agent says which names and why, keeps its controller running, and refuses every handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_listener_certificate_fails_closed_and_the_agent_keeps_running() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let token = dir.path().join("agent.token");
    let secret = serve.token(
        "agent",
        "host3.agents.test",
        &["--allow-domain", "scoped.test"],
    );
    std::fs::write(&token, secret).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = Certdock::start(
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
            "--api-name",
            "outside.example",
        ],
        &[],
    );
    let line = eventually(
        "the refusal names --api-name",
        Duration::from_secs(30),
        || async {
            agent
                .log_text()
                .lines()
                .find(|l| l.contains("no agent HTTPS certificate"))
                .map(str::to_string)
        },
    )
    .await;
    assert!(
        line.contains("--api-name outside.example") && line.contains("--allow-domain"),
        "{line}"
    );
    assert!(
        agent.count_log("controller started") >= 1,
        "{}",
        agent.log_text()
    );
    let out = std::process::Command::new("curl")
        .args(["-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/health"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "000",
        "no certificate, no handshake"
    );
    assert!(agent.is_running(), "{}", agent.log_text());
}

/// The serial of the certificate served on `127.0.0.1:port`, lower-case hex as certdock writes
/// it; `None` before there is one.
fn served_serial(dir: &std::path::Path, port: u16) -> Option<String> {
    let connect = format!("127.0.0.1:{port}");
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-noservername"])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let pem = dir.join("agent-served.pem");
    std::fs::write(&pem, &out.stdout).ok()?;
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&pem)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.trim().strip_prefix("serial=")?.to_lowercase())
}

/// Revoked on the CA host, an agent's listener certificate is replaced within seconds (the
/// CRL feed), not at its renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_listener_certificate_is_replaced_within_seconds() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let token = dir.path().join("agent.token");
    std::fs::write(&token, serve.token("agent", "host4.agents.test", &[])).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
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
            "--api-name",
            "agent4.test",
        ],
        &[],
    );
    let d = dir.path().to_path_buf();
    let first = eventually(
        "the agent serves its certificate",
        Duration::from_secs(30),
        || async { served_serial(&d, port) },
    )
    .await;
    ok(&common::certdock(&[
        "revoke",
        "--state-dir",
        s(&serve.state),
        &first,
    ]));
    let second = eventually(
        "a new certificate after the revocation",
        Duration::from_secs(20),
        || async { served_serial(&d, port).filter(|s| *s != first) },
    )
    .await;
    assert_ne!(first, second);
    assert!(
        agent
            .log_text()
            .contains("the agent HTTPS certificate was revoked"),
        "{}",
        agent.log_text()
    );
}
