//! Faults certdock must ride out: the events stream stalls, the output disk fills up, the clock
//! jumps. (The Docker socket going away and coming back is in `controller.rs`; a crash at any
//! instant is in `crash.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::process::{Certdock, eventually, openssl, path_str};
use common::{ContainerSpec, SockProxy, TestContainer, docker};

fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn delivered_serial(d: &certdock::docker::Docker, c: &TestContainer) -> Option<String> {
    let (code, pem) = c.exec(d, &["cat", "/run/certdock/cert.pem"]).await;
    if code != 0 || !pem.contains("BEGIN CERTIFICATE") {
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let p = dir.path().join("c.pem");
    std::fs::write(&p, pem).ok()?;
    let out = openssl(&["x509", "-in", path_str(&p), "-noout", "-serial"]);
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn a_stalled_event_stream_is_replaced_at_the_next_resync() {
    init_crypto();
    let d = docker().await;
    let proxy = SockProxy::start(&common::docker_socket()).unwrap();
    let cd = Certdock::start(
        "run",
        &["--listen", "127.0.0.1:0", "--resync-interval", "3s"],
        &[("DOCKER_HOST", &proxy.host())],
    );
    let a = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "pre-stall")
        .run(&d)
        .await;
    eventually(
        "delivery before the stall",
        Duration::from_secs(20),
        || async { delivered_serial(&d, &a).await },
    )
    .await;
    // The events connection stays open but goes silent, as with a wedged daemon or proxy.
    proxy.stall_open_connections();
    let b = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "during-stall")
        .run(&d)
        .await;
    eventually(
        "the container started during the stall is served",
        Duration::from_secs(30),
        || async { delivered_serial(&d, &b).await },
    )
    .await;
    drop(cd);
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Fills the disk until a write fails; returns the filler to delete later.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn pair_sound(dir: &Path) -> bool {
    let a = openssl(&[
        "x509",
        "-in",
        path_str(&dir.join("cert.pem")),
        "-noout",
        "-pubkey",
    ])
    .stdout;
    let b = openssl(&["pkey", "-in", path_str(&dir.join("key.pem")), "-pubout"]).stdout;
    !a.is_empty() && a == b
}

#[tokio::test]
async fn a_full_output_disk_keeps_the_old_files_reports_the_error_and_recovers() {
    init_crypto();
    let d = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let disk = SmallDisk::mount(&out, "1m");
    let state = dir.path().join("state");
    let cd = Certdock::start_in(
        dir,
        state,
        out.clone(),
        "run",
        &["--listen", "127.0.0.1:0"],
        &[],
    );
    let _a = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "before-full")
        .label("certdock.delivery", "volume")
        .run(&d)
        .await;
    let a_dir = out.join("certs/before-full");
    eventually(
        "the first volume delivery",
        Duration::from_secs(20),
        || async { a_dir.join("cert.pem").is_file().then_some(()) },
    )
    .await;
    let a_cert = std::fs::read_to_string(a_dir.join("cert.pem")).unwrap();
    let filler = disk.fill();
    let b = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "while-full")
        .label("certdock.delivery", "volume")
        .run(&d)
        .await;
    let err = eventually(
        "status reports the full disk",
        Duration::from_secs(20),
        || async {
            cd.status()
                .into_iter()
                .find(|e| e["container"] == b.name.as_str() && e["error"].is_string())
        },
    )
    .await;
    assert!(
        err["error"].as_str().unwrap().contains("No space left"),
        "{err}"
    );
    // Nothing half-written: the earlier delivery is untouched and whole; the new one is absent
    // or whole, never a certificate beside the wrong key.
    assert_eq!(
        std::fs::read_to_string(a_dir.join("cert.pem")).unwrap(),
        a_cert
    );
    assert!(pair_sound(&a_dir));
    let b_dir = out.join("certs/while-full");
    assert!(!b_dir.join("cert.pem").exists() || pair_sound(&b_dir));
    std::fs::remove_file(filler).unwrap();
    eventually(
        "delivery once space is back",
        Duration::from_secs(20),
        || async { (b_dir.join("cert.pem").is_file() && pair_sound(&b_dir)).then_some(()) },
    )
    .await;
    eventually("the error clears", Duration::from_secs(10), || async {
        cd.status()
            .into_iter()
            .find(|e| e["container"] == b.name.as_str() && e["error"].is_null())
    })
    .await;
    drop(cd);
}

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test]
async fn a_clock_jump_forward_or_back_gets_the_container_a_fresh_valid_certificate() {
    init_crypto();
    assert!(
        Path::new(FAKETIME_LIB).exists(),
        "libfaketime is installed by scripts/test.sh (package faketime)"
    );
    let d = docker().await;
    let clock = tempfile::tempdir().unwrap();
    let offset = clock.path().join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    // Wall-clock time is faked (and re-read on every call); the monotonic clock that timers use
    // is left alone, as a real NTP step or suspend would.
    let cd = Certdock::start(
        "run",
        &["--listen", "127.0.0.1:0"],
        &[
            ("LD_PRELOAD", FAKETIME_LIB),
            ("FAKETIME_TIMESTAMP_FILE", path_str(&offset)),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let c = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "clock")
        .run(&d)
        .await;
    let first = eventually("first delivery", Duration::from_secs(20), || async {
        delivered_serial(&d, &c).await
    })
    .await;
    // Let everything settle first, so that only the clock can wake certdock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Forward by 20 hours: past the renewal point of a 24 h certificate.
    std::fs::write(&offset, "+72000\n").unwrap();
    let second = eventually(
        "a renewal after the jump forward",
        Duration::from_secs(45),
        || async { delivered_serial(&d, &c).await.filter(|s| *s != first) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Back to 3 hours before the real time: the last certificate now starts in the future.
    std::fs::write(&offset, "-10800\n").unwrap();
    eventually(
        "a certificate valid from the new 'now' after the jump back",
        Duration::from_secs(45),
        || async {
            delivered_serial(&d, &c)
                .await
                .filter(|s| *s != second && *s != first)
        },
    )
    .await;
    drop(cd);
}
