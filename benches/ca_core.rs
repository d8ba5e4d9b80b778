//! Group 1 — CA core: leaf issuances per second (fresh key + signature), ECDSA P-256 and
//! Ed25519, one thread and every core, beside `openssl speed`'s sign rate measured in the same
//! run (the ceiling of the signing primitive on this machine).
//!
//! Two figures per key type: `sign_leaf` (what the CA core does: key generation, the leaf's
//! fields, the signature, PEM), and `LocalCa::issue` (the same plus policy checks and the
//! durable inventory record under the state lock — what every real issuance pays).
//!
//! Run: `scripts/bench.sh ca` (or `cargo bench --bench ca_core`). `BENCH_RUNS`, `BENCH_SECONDS`.

mod common;

use std::time::Duration;

use certdock::ca::authority::{Authority, CaLifetimes};
use certdock::ca::authorize::{Local, Order};
use certdock::ca::issue::{LeafRequest, issue_leaf};
use certdock::ca::keys::KeyType;
use certdock::ca::local::{LocalCa, OpenMode, Policy};
use certdock::core::names::{CertName, San, Usage};
use common::{Stats, cores, machine, openssl_sign_rate, rate, runs, seconds};
use time::OffsetDateTime;

const TTL: Duration = Duration::from_secs(86400);

fn main() {
    let runs = runs();
    let dur = seconds();
    let cores = cores();
    println!("# group 1: CA core issuance — {}", machine());
    println!("runs={runs} seconds_per_run={:.1}", dur.as_secs_f64());
    let sans = vec![San::parse("web.bench.internal").unwrap()];
    let name = CertName::parse("web.bench.internal").unwrap();

    for (kt, openssl_alg) in [
        (KeyType::EcdsaP256, "ecdsap256"),
        (KeyType::Ed25519, "ed25519"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = LocalCa::open(
            dir.path(),
            Policy::default(),
            CaLifetimes::default(),
            OpenMode::CreateIfMissing(kt),
            now,
        )
        .unwrap();
        let authority = Authority::load(dir.path(), CaLifetimes::default(), now).unwrap();
        for threads in [1, cores] {
            let mut core = Vec::new();
            let mut durable = Vec::new();
            let mut ceiling = Vec::new();
            for _ in 0..runs {
                core.push(rate(threads, dur, || {
                    issue_leaf(
                        &authority,
                        LeafRequest {
                            common_name: name.as_str(),
                            sans: &sans,
                            groups: &Default::default(),
                            usage: Usage::BOTH,
                            ttl: TTL,
                        },
                        kt,
                        OffsetDateTime::now_utc(),
                    )
                    .unwrap();
                }));
                durable.push(rate(threads, dur, || {
                    issue(&ca, &name, &sans, kt);
                }));
                // openssl speed's shortest useful run is 5 s (its own default is 10 s).
                if let Some(r) = openssl_sign_rate(openssl_alg, 5, threads) {
                    ceiling.push(r);
                }
            }
            let core = Stats::of(&core);
            let durable = Stats::of(&durable);
            let (ceil_s, ratio_core, ratio_durable) = if ceiling.is_empty() {
                ("openssl missing".to_string(), f64::NAN, f64::NAN)
            } else {
                let c = Stats::of(&ceiling);
                (c.show(0), core.median / c.median, durable.median / c.median)
            };
            println!(
                "ca_core key={kt} threads={threads} sign_leaf/s={} LocalCa::issue/s={} \
                 openssl_speed_{openssl_alg}_sign/s={ceil_s} ratio_sign_leaf={ratio_core:.2} \
                 ratio_issue={ratio_durable:.2}",
                core.show(0),
                durable.show(0),
            );
        }
        // Many concurrent issuers (the API under load, the controller's parallel executor): the
        // inventory's group commit lets them share fsyncs, so the durable rate approaches the
        // signing rate instead of the disk's fsync rate.
        let threads = 16;
        let mut durable = Vec::new();
        for _ in 0..runs {
            durable.push(rate(threads, dur, || {
                issue(&ca, &name, &sans, kt);
            }));
        }
        println!(
            "ca_core key={kt} threads={threads} LocalCa::issue/s={}",
            Stats::of(&durable).show(0)
        );
        let records = ca.with_inventory(|inv| inv.len()).unwrap();
        println!("ca_core key={kt} inventory_records_written={records}");
    }
}

/// `LocalCa`'s whole path for a controller order: authorize, sign, durable record.
fn issue(ca: &LocalCa, name: &CertName, sans: &[San], kt: KeyType) {
    let order = Order {
        name: name.clone(),
        sans: sans.to_vec(),
        usage: Usage::BOTH,
        groups: Default::default(),
        ttl: Some(TTL),
        key_type: kt,
    };
    let auth = ca.authorize_local(Local::Controller, order).unwrap();
    ca.sign(auth, OffsetDateTime::now_utc())
        .unwrap()
        .wait()
        .unwrap();
}
