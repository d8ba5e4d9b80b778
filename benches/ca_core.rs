//! Group 1 — CA core: leaf issuances per second (fresh key + signature), ECDSA P-256 and
//! Ed25519, one thread and every core, beside `openssl speed`'s sign rate measured in the same
//! run (the ceiling of the signing primitive on this machine).
//!
//! Two figures per key type: `sign_leaf` (what the CA core does: key generation, the leaf's
//! fields, the signature, PEM), and `LocalCa::issue` (the same plus policy checks and the
//! durable inventory record under the state lock — what every real issuance pays).
//!
//! And for the P-256 CA, what every `/v1/sign` pays before anything else: the CSR's signature check
//! (`Csr::parse`, one ECDSA P-256 verification) and the signature over a requester's key
//! (`sign_leaf`, no key generation), one thread, beside `openssl speed ecdsap256`'s verify and
//! sign rates in the same run: the floor of that endpoint's CPU per response.
//!
//! Run: `scripts/bench.sh ca` (or `cargo bench --bench ca_core`). `BENCH_RUNS`, `BENCH_SECONDS`.

mod common;

use std::time::Duration;

use certdock::ca::authority::{Authority, CaLifetimes};
use certdock::ca::authorize::{Local, Order};
use certdock::ca::csr::Csr;
use certdock::ca::issue::{LeafRequest, issue_leaf, sign_leaf};
use certdock::ca::keys::KeyType;
use certdock::ca::local::{LocalCa, OpenMode, Policy};
use certdock::core::names::{CertName, San, Usage};
use common::{Stats, cores, machine, openssl_sign_rate, openssl_speed, rate, runs, seconds};
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
        if kt == KeyType::EcdsaP256 {
            csr_floor(runs, dur, &authority, &name, &sans);
        }
    }
}

/// The two signature operations of every `/v1/sign` with a P-256 CSR and a P-256 CA, one
/// thread: the CSR's check and the leaf's signature, beside openssl's verify and sign rates.
fn csr_floor(runs: usize, dur: Duration, authority: &Authority, name: &CertName, sans: &[San]) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name.as_str());
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let spki = Csr::parse(&pem).unwrap().key;
    let (mut check, mut sign, mut verify_ceiling, mut sign_ceiling) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        check.push(rate(1, dur, || {
            Csr::parse(&pem).unwrap();
        }));
        sign.push(rate(1, dur, || {
            let req = LeafRequest {
                common_name: name.as_str(),
                sans,
                groups: &Default::default(),
                usage: Usage::BOTH,
                ttl: TTL,
            };
            sign_leaf(authority, req, &spki, OffsetDateTime::now_utc()).unwrap();
        }));
        if let Some((s, v)) = openssl_speed("ecdsap256", 5, 1) {
            sign_ceiling.push(s);
            verify_ceiling.push(v);
        }
    }
    let (check, sign) = (Stats::of(&check), Stats::of(&sign));
    let both_us = 1e6 / check.median + 1e6 / sign.median;
    let openssl = if verify_ceiling.is_empty() {
        "openssl missing".to_string()
    } else {
        let (v, s) = (Stats::of(&verify_ceiling), Stats::of(&sign_ceiling));
        format!(
            "openssl_speed_ecdsap256_verify/s={} sign/s={} ratio_check={:.2} ratio_sign={:.2} \
             openssl_both_us={:.1}",
            v.show(0),
            s.show(0),
            check.median / v.median,
            sign.median / s.median,
            1e6 / v.median + 1e6 / s.median,
        )
    };
    println!(
        "ca_core csr key=ecdsa-p256 threads=1 Csr::parse/s={} sign_leaf_for_csr_key/s={} \
         both_us={both_us:.1} {openssl}",
        check.show(0),
        sign.show(0),
    );
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
