//! Issue 17.5 — issuance while the inventory is compacted: compaction must not stall issuance.
//!
//! A `LocalCa` over an inventory of `DEAD` long-expired records and 1,000 live ones (as a CA
//! that never compacted leaves it); 8 threads issue durable certificates back to back (the real
//! path: policy, signature, group-committed inventory record); meanwhile `LocalCa::maintain`
//! compacts the journal. Per-issuance latencies are split into those that overlapped the
//! compaction and the others; the compaction's own duration and the journal size are printed.
//!
//! Run: `scripts/bench.sh inventory` (or `cargo bench --bench compaction -- 200000`).

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use certdock::ca::authority::CaLifetimes;
use certdock::ca::authorize::{Local, Order};
use certdock::ca::keys::KeyType;
use certdock::ca::local::{LocalCa, OpenMode, Policy};
use certdock::core::names::{CertName, San, Usage};
use common::machine;
use time::OffsetDateTime;

const THREADS: usize = 8;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dead: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!("# issuance during an inventory compaction — {}", machine());
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let open = || {
        LocalCa::open(
            dir.path(),
            Policy::default(),
            CaLifetimes::default(),
            OpenMode::CreateIfMissing(KeyType::EcdsaP256),
            OffsetDateTime::now_utc(),
        )
        .unwrap()
    };
    drop(open());
    let t = now.unix_timestamp() - 3 * 86_400;
    let mut text = String::with_capacity(dead * 200);
    for i in 0..dead {
        writeln!(
            text,
            r#"{{"kind":"issued","serial":"{i:032x}","name":"svc","sans":["svc"],"usage":"server","not_before":{},"not_after":{t},"requester":"controller"}}"#,
            t - 3600
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("inventory.log"), text).unwrap();
    let ca = Arc::new(open());

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            let (ca, stop) = (ca.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut times = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{w}-{i}");
                    let order = Order {
                        name: CertName::parse(&name).unwrap(),
                        sans: vec![San::parse(&name).unwrap()],
                        usage: Usage::SERVER,
                        groups: Default::default(),
                        ttl: Some(Duration::from_secs(3600)),
                        key_type: KeyType::EcdsaP256,
                    };
                    let t0 = Instant::now();
                    let auth = ca.authorize_local(Local::Controller, order).unwrap();
                    ca.sign(auth, OffsetDateTime::now_utc())
                        .unwrap()
                        .wait()
                        .unwrap();
                    times.push((t0 - started, t0.elapsed()));
                    i += 1;
                }
                times
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let size_before = std::fs::metadata(dir.path().join("inventory.log"))
        .unwrap()
        .len();
    let c0 = started.elapsed();
    ca.maintain(OffsetDateTime::now_utc()).unwrap();
    let c1 = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let size_after = std::fs::metadata(dir.path().join("inventory.log"))
        .unwrap()
        .len();
    let (mut during, mut outside) = (Vec::new(), Vec::new());
    for w in workers {
        for (at, took) in w.join().unwrap() {
            if at + took >= c0 && at <= c1 {
                during.push(took);
            } else {
                outside.push(took);
            }
        }
    }
    during.sort();
    outside.sort();
    println!(
        "compaction dead={dead}: {:.1} ms, inventory.log {:.1} MB -> {:.2} MB; issuances overlapping it: {} (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms); the others: {} (p50 {:.2} ms, p99 {:.2} ms)",
        (c1 - c0).as_secs_f64() * 1e3,
        size_before as f64 / 1e6,
        size_after as f64 / 1e6,
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        percentile(&during, 1.0),
        outside.len(),
        percentile(&outside, 0.5),
        percentile(&outside, 0.99),
    );
}
