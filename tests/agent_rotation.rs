//! An agent pinned to a root follows a root rotation of its `certdock serve`: through the
//! cross-certificate the pinned root signed, kept across a restart with the old
//! `--ca-fingerprint`; its container gets a certificate under the new chain and both roots.

mod common;

use std::time::Duration;

use common::process::{Certdock, bin, eventually, path_str};
use common::{ContainerSpec, Serve, docker};

fn count(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

#[tokio::test]
async fn an_agent_follows_a_root_rotation_signed_by_its_pinned_root_and_keeps_it_across_a_restart()
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start_at(
        dir.path(),
        &dir.path().join("state"),
        common::free_port(),
        &[],
    );
    let token = dir.path().join("agent.token");
    std::fs::write(&token, serve.token("agent", "host1.agents.test", &[])).unwrap();
    let (url, fp) = (serve.url_ip(), serve.fingerprint());
    let prefix = common::unique_label_prefix();
    let mut agent = Certdock::start(
        "agent",
        &[
            "--ca-url",
            &url,
            "--token-file",
            path_str(&token),
            "--ca-fingerprint",
            &fp,
            "--label-prefix",
            &prefix,
            "--rollover-spread",
            "5s",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let c = ContainerSpec::default()
        .label(&format!("{prefix}.enable"), "true")
        .label(&format!("{prefix}.name"), "web.test")
        .run(&d)
        .await;
    let chain_len = || async {
        let (code, text) = c.exec(&d, &["cat", "/run/certdock/chain.pem"]).await;
        (code == 0 && !text.is_empty()).then(|| count(&text))
    };
    let before = eventually("a first certificate", Duration::from_secs(30), chain_len).await;
    assert_eq!(before, 1, "the intermediate only");

    let rotate = std::process::Command::new(bin())
        .args(["ca", "rotate", "--root", "--state-dir"])
        .arg(&serve.state)
        .env_remove("CERTDOCK_CONFIG")
        .output()
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let custody = agent.state.join("agent/root.pem");
    eventually(
        "the agent follows the new root (pinned root, cross, new root)",
        Duration::from_secs(60),
        || async { (count(&std::fs::read_to_string(&custody).ok()?) == 3).then_some(()) },
    )
    .await;
    eventually(
        "the agent's ca.pem carries both roots",
        Duration::from_secs(30),
        || async {
            (count(&std::fs::read_to_string(agent.out.join("ca.pem")).ok()?) == 5).then_some(())
        },
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while chain_len().await != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "the container's certificate was not re-issued under the new chain:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(agent.log_text().contains("followed a CA root rotation"));

    // Restarted with the same, old, fingerprint: the stored chain of custody still holds.
    agent.restart();
    eventually("the agent runs again", Duration::from_secs(30), || async {
        agent
            .log_text()
            .contains("controller started")
            .then_some(())
    })
    .await;
    assert!(agent.is_running(), "{}", agent.log_text());
    assert_eq!(
        count(&std::fs::read_to_string(&custody).unwrap()),
        3,
        "custody kept"
    );
}
