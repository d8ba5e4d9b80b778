//! CA core tests: chains are checked by an independent verifier (webpki), not by our own code.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

use super::authority::{Authority, CaLifetimes};
use super::issue::{Issued, LeafRequest, issue_leaf};
use super::keys::KeyType;
use super::pem::certs_from_pem;
use crate::core::names::{San, Usage};

pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn verify(
    issued_cert: &CertificateDer<'_>,
    chain_pem: &str,
    ca: &Authority,
    usage: KeyUsage,
    at: OffsetDateTime,
) -> Result<(), webpki::Error> {
    let anchor = anchor_from_trusted_cert(&ca.root().der)?;
    let inters = certs_from_pem("chain", chain_pem).unwrap();
    let ee = EndEntityCert::try_from(issued_cert)?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &inters,
        UnixTime::since_unix_epoch(Duration::from_secs(at.unix_timestamp() as u64)),
        usage,
        None,
        None,
    )
    .map(|_| ())
}

/// A new P-256 CA with default lifetimes in `dir`.
fn fresh_authority(dir: &std::path::Path) -> Authority {
    Authority::create(dir, KeyType::EcdsaP256, CaLifetimes::default(), None, now()).unwrap()
}

fn leaf(ca: &Authority, usage: Usage, kt: KeyType) -> Issued {
    let sans = vec![
        San::parse("web.internal").unwrap(),
        San::parse("10.1.2.3").unwrap(),
    ];
    issue_leaf(
        ca,
        LeafRequest {
            common_name: "web.internal",
            sans: &sans,
            groups: &Default::default(),
            usage,
            ttl: Duration::from_secs(3600),
        },
        kt,
        now(),
    )
    .unwrap()
}

#[test]
fn a_leaf_chains_to_the_root_through_the_intermediate_for_its_usage_only() {
    for kt in [KeyType::EcdsaP256, KeyType::Ed25519] {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create(dir.path(), kt, CaLifetimes::default(), None, now()).unwrap();
        let server = leaf(&ca, Usage::SERVER, kt);
        verify(
            &server.cert_der,
            &server.chain_pem,
            &ca,
            KeyUsage::server_auth(),
            now(),
        )
        .unwrap();
        assert!(
            verify(
                &server.cert_der,
                &server.chain_pem,
                &ca,
                KeyUsage::client_auth(),
                now()
            )
            .is_err()
        );
        let client = leaf(&ca, Usage::CLIENT, kt);
        verify(
            &client.cert_der,
            &client.chain_pem,
            &ca,
            KeyUsage::client_auth(),
            now(),
        )
        .unwrap();
        // Expired an hour later (+ backdate): the verifier refuses it.
        assert!(
            verify(
                &client.cert_der,
                &client.chain_pem,
                &ca,
                KeyUsage::client_auth(),
                now() + time::Duration::hours(2)
            )
            .is_err()
        );
    }
}

#[test]
fn a_reloaded_ca_signs_with_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = fresh_authority(dir.path());
    let fp = ca.root_fingerprint();
    drop(ca);
    let ca = Authority::load(dir.path(), CaLifetimes::default(), now()).unwrap();
    assert_eq!(ca.root_fingerprint(), fp);
    let l = leaf(&ca, Usage::BOTH, KeyType::EcdsaP256);
    verify(
        &l.cert_der,
        &l.chain_pem,
        &ca,
        KeyUsage::server_auth(),
        now(),
    )
    .unwrap();
}

#[test]
fn the_intermediate_is_renewed_after_two_thirds_and_both_stay_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let life = CaLifetimes {
        root: Duration::from_secs(10 * 86400),
        intermediate: Duration::from_secs(3 * 86400),
        ..CaLifetimes::default()
    };
    let t0 = now();
    let ca = Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    let old = leaf(&ca, Usage::SERVER, KeyType::EcdsaP256);
    let first = ca.current().serial.clone();
    drop(ca);
    let t1 = t0 + time::Duration::hours(47);
    assert_eq!(
        Authority::load(dir.path(), life, t1)
            .unwrap()
            .current()
            .serial,
        first,
        "not yet due"
    );
    let t2 = t0 + time::Duration::hours(49);
    let ca = Authority::load(dir.path(), life, t2).unwrap();
    assert_ne!(ca.current().serial, first, "rolled over after two thirds");
    assert_eq!(
        ca.intermediates().count(),
        2,
        "old and new are both in the bundle"
    );
    assert_eq!(certs_from_pem("bundle", &ca.bundle_pem()).unwrap().len(), 3);
    // A leaf signed by the old intermediate still verifies with the old chain.
    verify(
        &old.cert_der,
        &old.chain_pem,
        &ca,
        KeyUsage::server_auth(),
        t0,
    )
    .unwrap();
}

#[test]
fn an_imported_root_signs_the_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let src = fresh_authority(other.path());
    let key = super::keys::SecretPem::new(
        std::fs::read_to_string(other.path().join("ca/root.key")).unwrap(),
    );
    let ca = Authority::create(
        dir.path(),
        KeyType::EcdsaP256,
        CaLifetimes::default(),
        Some((&src.root().pem, &key)),
        now(),
    )
    .unwrap();
    assert_eq!(ca.root_fingerprint(), src.root_fingerprint());
    // A key that does not belong to the root is refused.
    let wrong = super::keys::SecretPem::new(KeyType::EcdsaP256.generate().unwrap().serialize_pem());
    let dir2 = tempfile::tempdir().unwrap();
    let err = Authority::create(
        dir2.path(),
        KeyType::EcdsaP256,
        CaLifetimes::default(),
        Some((&src.root().pem, &wrong)),
        now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn serials_are_random_positive_and_128_bit() {
    let dir = tempfile::tempdir().unwrap();
    let ca = fresh_authority(dir.path());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let l = leaf(&ca, Usage::SERVER, KeyType::EcdsaP256);
        assert_eq!(l.serial.len(), 32);
        assert!(u8::from_str_radix(&l.serial[..2], 16).unwrap() < 0x80);
        assert!(seen.insert(l.cert.serial));
    }
}
