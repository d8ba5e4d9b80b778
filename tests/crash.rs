//! Crash safety: `kill -9` of certdock at many points while containers start loses nothing and
//! never leaves a certificate beside the wrong key, in containers or on disk.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::{Certdock, eventually, openssl, path_str};
use common::{ContainerSpec, TestContainer, docker};

fn pubkey_of_cert(p: &Path) -> Vec<u8> {
    openssl(&["x509", "-in", path_str(p), "-noout", "-pubkey"]).stdout
}

fn pubkey_of_key(p: &Path) -> Vec<u8> {
    openssl(&["pkey", "-in", path_str(p), "-pubout"]).stdout
}

/// Checks that `dir` holds a certificate, its own key, and a chain that verifies against `ca`.
fn pair_is_sound(dir: &Path, ca: &Path) -> Result<(), String> {
    let cert = dir.join("cert.pem");
    let (a, b) = (pubkey_of_cert(&cert), pubkey_of_key(&dir.join("key.pem")));
    if a.is_empty() || a != b {
        return Err(format!(
            "{}: key does not match the certificate",
            dir.display()
        ));
    }
    let v = openssl(&[
        "verify",
        "-CAfile",
        path_str(ca),
        "-untrusted",
        path_str(&dir.join("chain.pem")),
        path_str(&cert),
    ]);
    if !v.status.success() {
        return Err(format!(
            "{}: {}",
            dir.display(),
            String::from_utf8_lossy(&v.stderr)
        ));
    }
    Ok(())
}

async fn copy_out(d: &certdock::docker::Docker, c: &TestContainer, dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["cert.pem", "key.pem", "chain.pem"] {
        let (code, text) = c.exec(d, &["cat", &format!("/run/certdock/{f}")]).await;
        if code != 0 || text.is_empty() {
            return false;
        }
        std::fs::write(dir.join(f), text).unwrap();
    }
    true
}

#[tokio::test]
async fn fifteen_containers_started_while_certdock_is_killed_and_restarted_are_all_served() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = docker().await;
    let mut cd = Certdock::start(
        "run",
        &["--listen", "127.0.0.1:0", "--resync-interval", "2s"],
        &[],
    );
    let mut containers = Vec::new();
    let mut kills = 0;
    for i in 0..15 {
        let mut spec = ContainerSpec::default()
            .label("certdock.enable", "true")
            .label("certdock.name", &format!("crash-{i}"));
        if i % 3 == 0 {
            spec = spec.label("certdock.delivery", "volume");
        }
        containers.push((i % 3 == 0, spec.run(&d).await));
        if i % 2 == 1 {
            // Kill at a different moment each time: right after a start, or a little later,
            // when certdock is in the middle of issuing, copying or writing its state.
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..400))).await;
            cd.restart();
            kills += 1;
        }
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(rand::random_range(20..300))).await;
        cd.restart();
        kills += 1;
    }
    assert!(kills >= 10);
    let ca = cd.out.join("ca.pem");
    let tmp = tempfile::tempdir().unwrap();
    for (i, (volume, c)) in containers.iter().enumerate() {
        let dir = if *volume {
            cd.out.join(format!("certs/crash-{i}"))
        } else {
            tmp.path().join(format!("c{i}"))
        };
        eventually(
            &format!("container crash-{i} served with a sound pair"),
            Duration::from_secs(60),
            || async {
                if !*volume && !copy_out(&d, c, &dir).await {
                    return None;
                }
                pair_is_sound(&dir, &ca).ok()
            },
        )
        .await;
    }
    // Every held state file and every delivery is whole: no temporary leftovers in the state dir.
    // Stop the last certdock first: a live process may be in the middle of a write (a temp file
    // that is about to be renamed is not a leftover).
    cd.stop();
    let leftovers: Vec<_> = std::fs::read_dir(cd.state.join("managed"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let status = cd.status();
    for i in 0..15 {
        assert!(
            status.iter().any(|e| e["name"] == format!("crash-{i}")
                && e["error"].is_null()
                && e["serial"].is_string()),
            "crash-{i} in status: {status:?}"
        );
    }
}
