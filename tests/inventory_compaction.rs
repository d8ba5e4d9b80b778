//! Issue 17.5: the inventory follows the live certificates. A real `certdock serve` over a
//! journal of 100,000 long-expired records and 1,000 live ones compacts it; `kill -9` at random
//! moments of the compaction (after it logged its start) loses no live record and no revocation.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certdock::store::inventory::Inventory;
use common::process::bin;
use common::serve::free_port;

const DEAD: usize = 50_000;
const LIVE: usize = 1_000;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn line(serial: &str, not_before: i64, not_after: i64) -> String {
    format!(
        r#"{{"kind":"issued","serial":"{serial}","name":"svc","sans":["svc"],"usage":"server","not_before":{not_before},"not_after":{not_after},"requester":"cli"}}"#
    )
}

/// Appends `DEAD` records of certificates that expired three days ago (round `round`).
fn append_dead(state: &Path, round: usize) {
    let t = now() - 3 * 86_400;
    let mut text = String::with_capacity(DEAD * 180);
    for i in 0..DEAD {
        writeln!(
            text,
            "{}",
            line(&format!("dead{round:02}{i:08x}"), t - 3600, t)
        )
        .unwrap();
    }
    append(state, &text);
}

fn append(state: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(state.join("inventory.log"))
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The live serials (every tenth revoked) the journal must keep whatever happens.
fn append_live(state: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let t = now();
    let (mut live, mut revoked) = (BTreeSet::new(), BTreeSet::new());
    let mut text = String::new();
    for i in 0..LIVE {
        let serial = format!("11ve{i:08x}");
        writeln!(text, "{}", line(&serial, t - 60, t + 86_400)).unwrap();
        if i % 10 == 0 {
            writeln!(text, r#"{{"kind":"revoked","serial":"{serial}","at":{t}}}"#).unwrap();
            revoked.insert(serial.clone());
        }
        live.insert(serial);
    }
    append(state, &text);
    (live, revoked)
}

fn assert_kept(state: &Path, live: &BTreeSet<String>, revoked: &BTreeSet<String>, when: &str) {
    let inv = Inventory::open(state).unwrap_or_else(|e| panic!("{when}: the inventory opens: {e}"));
    for serial in live {
        let entry = inv
            .get(serial)
            .unwrap_or_else(|| panic!("{when}: live record {serial} lost"));
        assert_eq!(
            entry.revoked_at.is_some(),
            revoked.contains(serial),
            "{when}: the revocation of {serial}"
        );
    }
}

fn lines(state: &Path) -> usize {
    std::fs::read(state.join("inventory.log"))
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn serve(state: &Path, log: &Path) -> std::process::Child {
    let listen = format!("127.0.0.1:{}", free_port());
    Command::new(bin())
        .args(["serve", "--state-dir"])
        .arg(state)
        .args(["--listen", &listen, "--api-name", "ca.test,127.0.0.1"])
        .env_remove("CERTDOCK_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start certdock serve")
}

/// Waits (polling every millisecond, at most 60 s) until the serve log says `what`.
fn wait_for(log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(what)
    {
        assert!(
            Instant::now() < deadline,
            "no {what:?} within 60 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn kill_9_during_compaction_loses_no_live_record_and_compaction_shrinks_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let init = Command::new(bin())
        .args(["init", "--state-dir"])
        .arg(&state)
        .env_remove("CERTDOCK_CONFIG")
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    append_dead(&state, 0);
    let (live, revoked) = append_live(&state);
    append_dead(&state, 1);
    let log = dir.path().join("serve.log");

    let mut seed = now() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let (mut kills, mut mid_compaction) = (0, 0);
    for round in 0..10 {
        if lines(&state) < DEAD {
            append_dead(&state, round + 2);
        }
        let mut child = serve(&state, &log);
        wait_for(&log, "compacting the inventory");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 30_000));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("compacted the inventory")
        {
            mid_compaction += 1;
        }
        assert_kept(&state, &live, &revoked, &format!("kill -9 number {kills}"));
    }
    eprintln!("{kills} kills, {mid_compaction} before the compaction finished");
    assert!(mid_compaction > 0, "no kill landed inside a compaction");

    // Left to run, it compacts: only the live records and their revocations remain.
    if lines(&state) < DEAD {
        append_dead(&state, 20);
    }
    let before = lines(&state);
    let mut child = serve(&state, &log);
    wait_for(&log, "compacted the inventory");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_kept(&state, &live, &revoked, "after a whole compaction");
    let after = lines(&state);
    // Besides: the API certificate each of the 11 starts issued for itself (all still live).
    assert!(
        after >= LIVE + revoked.len() && after <= LIVE + revoked.len() + 11,
        "{before} records before, {after} after"
    );
}
