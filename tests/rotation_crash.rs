//! Crash safety of CA rotation: `kill -9` of `certdock ca rotate [--root]` at random moments, and
//! a stop dead at each step of a root rotation, leave either the old CA or the new one, whole.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use certdock::ca::authority::{Authority, CaLifetimes};
use common::process::{bin, openssl, path_str};
use time::OffsetDateTime;

fn certdock(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CERTDOCK_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn load(state: &Path) -> Authority {
    Authority::load(state, CaLifetimes::default(), OffsetDateTime::now_utc())
        .unwrap_or_else(|e| panic!("the CA must load after a crash: {e}"))
}

/// The CA signs, and what it signs verifies against its `ca.pem` and against its root alone.
fn assert_whole(state: &Path, out: &Path) {
    let issued = certdock(state, &["issue", "crash-check", "--out", path_str(out)])
        .stderr(Stdio::piped())
        .output()
        .expect("certdock issue");
    assert!(
        issued.status.success(),
        "issue after a crash: {}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let root = out.join("root.pem");
    std::fs::write(&root, &load(state).root().pem).unwrap();
    for anchor in [out.join("ca.pem"), root] {
        let v = openssl(&[
            "verify",
            "-CAfile",
            path_str(&anchor),
            "-untrusted",
            path_str(&out.join("chain.pem")),
            path_str(&out.join("cert.pem")),
        ]);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }
}

#[test]
fn rotations_killed_at_random_moments_leave_the_old_ca_or_the_new_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(certdock(&state, &["init"]).status().unwrap().success());
    let mut generation = load(&state).generation();
    let mut finished = 0;
    for i in 0..24 {
        let args: &[&str] = if i % 3 == 2 {
            &["ca", "rotate"]
        } else {
            &["ca", "rotate", "--root"]
        };
        let mut child = certdock(&state, args).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(rand::random_range(0..90)));
        let _ = child.kill(); // SIGKILL
        if child.wait().unwrap().success() {
            finished += 1;
        }
        let ca = load(&state);
        assert!(
            ca.generation() == generation || ca.generation() == generation + 1,
            "generation {} after {generation}",
            ca.generation()
        );
        generation = ca.generation();
        assert_whole(&state, &dir.path().join(format!("out-{i}")));
    }
    eprintln!("24 rotations, {finished} finished before the kill, generation {generation}");
}

#[test]
fn a_root_rotation_stopped_dead_at_any_step_leaves_the_old_ca() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(certdock(&state, &["init"]).status().unwrap().success());
    let before = load(&state).root_fingerprint();
    for step in ["rotate-root-half-written", "rotate-root-before-rename"] {
        let status = certdock(&state, &["ca", "rotate", "--root"])
            .env("CERTDOCK_TEST_FAULT", step)
            .status()
            .unwrap();
        assert!(
            !status.success(),
            "{step}: the fault point stops the process"
        );
        let ca = load(&state);
        assert_eq!(ca.root_fingerprint(), before, "{step}: the old CA");
        assert_eq!(ca.generation(), 0);
        assert_whole(&state, &dir.path().join(format!("out-{step}")));
    }
    assert!(
        certdock(&state, &["ca", "rotate", "--root"])
            .status()
            .unwrap()
            .success()
    );
    let ca = load(&state);
    assert_eq!(ca.generation(), 1);
    assert_ne!(ca.root_fingerprint(), before);
    let leftovers: Vec<_> = std::fs::read_dir(state.join("ca/generations"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_whole(&state, &dir.path().join("out-after"));
}
