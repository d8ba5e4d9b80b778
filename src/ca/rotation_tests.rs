//! Root and intermediate rotation: chains are checked by an independent verifier (webpki).

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

use super::authority::{Authority, CaLifetimes, CaRole};
use super::issue::{Issued, LeafRequest, issue_leaf};
use super::keys::KeyType;
use super::pem::certs_from_pem;
use crate::core::names::{San, Usage};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Verifies `leaf` with its chain against `anchor` only.
fn verifies(leaf: &Issued, anchor: &CertificateDer<'_>, at: OffsetDateTime) -> bool {
    let anchor = anchor_from_trusted_cert(anchor).unwrap();
    let inters = certs_from_pem("chain", &leaf.chain_pem).unwrap();
    EndEntityCert::try_from(&leaf.cert_der)
        .unwrap()
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &inters,
            UnixTime::since_unix_epoch(Duration::from_secs(at.unix_timestamp() as u64)),
            KeyUsage::server_auth(),
            None,
            None,
        )
        .is_ok()
}

fn leaf(ca: &Authority, at: OffsetDateTime) -> Issued {
    issue_leaf(
        ca,
        LeafRequest {
            common_name: "web.internal",
            sans: &[San::parse("web.internal").unwrap()],
            groups: &Default::default(),
            usage: Usage::SERVER,
            ttl: Duration::from_secs(3600),
        },
        KeyType::EcdsaP256,
        at,
    )
    .unwrap()
}

fn roles(ca: &Authority) -> Vec<CaRole> {
    ca.bundle_certs().into_iter().map(|(_, r)| r).collect()
}

#[test]
fn a_new_root_is_cross_signed_so_peers_with_either_root_accept_new_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let old = Authority::create(
        dir.path(),
        KeyType::EcdsaP256,
        CaLifetimes::default(),
        None,
        t0,
    )
    .unwrap();
    let old_root = old.root().der.clone();
    let old_leaf = leaf(&old, t0);
    assert!(old_leaf.chain_pem.matches("BEGIN CERTIFICATE").count() == 1);

    let ca = Authority::rotate_root(dir.path(), CaLifetimes::default(), t0).unwrap();
    assert_eq!(ca.generation(), 1);
    assert_ne!(ca.root().der, old_root);
    assert_eq!(
        roles(&ca),
        [
            CaRole::Root,
            CaRole::PreviousRoot,
            CaRole::Cross,
            CaRole::PreviousIntermediate,
            CaRole::Intermediate
        ]
    );
    let bundle = certs_from_pem("bundle", &ca.bundle_pem()).unwrap();
    assert!(bundle.contains(&old_root) && bundle.contains(&ca.root().der));

    let new_leaf = leaf(&ca, t0);
    assert_eq!(new_leaf.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(verifies(&new_leaf, &old_root, t0), "old root only");
    assert!(verifies(&new_leaf, &ca.root().der, t0), "new root only");
    assert!(
        verifies(&old_leaf, &old_root, t0),
        "old leaves keep working"
    );
    // A reload finds the same CA; the old intermediate is still trusted, not signing.
    let again = Authority::load(dir.path(), CaLifetimes::default(), t0).unwrap();
    assert_eq!(again.root_fingerprint(), ca.root_fingerprint());
    assert_eq!(again.current().serial, ca.current().serial);
    assert_eq!(again.intermediates().count(), 2);
}

#[test]
fn the_old_root_leaves_the_bundle_when_the_overlap_ends() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let life = CaLifetimes {
        root_overlap: Some(Duration::from_secs(3600)),
        ..CaLifetimes::default()
    };
    Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    Authority::rotate_root(dir.path(), life, t0).unwrap();
    let during = Authority::load(dir.path(), life, t0 + time::Duration::minutes(59)).unwrap();
    assert_eq!(certs_from_pem("b", &during.bundle_pem()).unwrap().len(), 5);
    let after = Authority::load(dir.path(), life, t0 + time::Duration::minutes(62)).unwrap();
    assert_eq!(roles(&after), [CaRole::Root, CaRole::Intermediate]);
    assert_eq!(leaf(&after, t0).chain_pem.matches("BEGIN").count(), 1);
}

#[test]
fn by_default_the_overlap_lasts_until_the_old_intermediates_have_expired() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let life = CaLifetimes {
        intermediate: Duration::from_secs(3 * 86400),
        ..CaLifetimes::default()
    };
    Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    Authority::rotate_root(dir.path(), life, t0).unwrap();
    let day = time::Duration::days(1);
    let late = Authority::load(dir.path(), life, t0 + day * 3.5).unwrap();
    assert!(roles(&late).contains(&CaRole::PreviousRoot), "margin");
    let after = Authority::load(dir.path(), life, t0 + day * 4.5).unwrap();
    assert!(!roles(&after).contains(&CaRole::PreviousRoot));
}

#[test]
fn two_rotations_chain_the_cross_certificates_back_to_the_first_root() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let life = CaLifetimes::default();
    let first = Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    Authority::rotate_root(dir.path(), life, t0).unwrap();
    let ca = Authority::rotate_root(dir.path(), life, t0).unwrap();
    assert_eq!(ca.generation(), 2);
    assert_eq!(ca.crosses().len(), 2);
    assert!(verifies(&leaf(&ca, t0), &first.root().der, t0));
}

#[test]
fn a_rotation_that_died_before_its_rename_leaves_the_old_ca_whole() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let life = CaLifetimes::default();
    let ca = Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    // What a crash leaves: a half-built generation under its temporary name.
    let tmp = dir.path().join("ca/generations/.new-4242");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("root.key"), "half").unwrap();
    let again = Authority::load(dir.path(), life, t0).unwrap();
    assert_eq!(again.root_fingerprint(), ca.root_fingerprint());
    let next = Authority::rotate_root(dir.path(), life, t0).unwrap();
    assert_eq!(next.generation(), 1);
    assert!(
        !tmp.exists(),
        "the leftover is cleaned up by the next rotation"
    );
}

#[test]
fn a_forced_intermediate_rotation_keeps_the_old_one_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let life = CaLifetimes::default();
    let ca = Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    let old_leaf = leaf(&ca, t0);
    let rotated = Authority::rotate_intermediate(dir.path(), life, t0).unwrap();
    assert_ne!(rotated.current().serial, ca.current().serial);
    assert_eq!(rotated.root_fingerprint(), ca.root_fingerprint());
    assert_eq!(
        roles(&rotated),
        [
            CaRole::Root,
            CaRole::PreviousIntermediate,
            CaRole::Intermediate
        ]
    );
    assert!(verifies(&old_leaf, &rotated.root().der, t0));
}

#[test]
fn the_root_warns_in_its_last_tenth() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let life = CaLifetimes {
        root: Duration::from_secs(100 * 86400),
        intermediate: Duration::from_secs(86400),
        root_overlap: None,
    };
    let ca = Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    assert!(!ca.root_in_last_tenth(t0 + time::Duration::days(89)));
    assert!(ca.root_in_last_tenth(t0 + time::Duration::days(91)));
}

/// Copies `tests/fixtures/state-before-rotation` (made by `certdock init` of the release before
/// root rotation existed, on 2026-11-29) into a fresh state directory.
fn previous_release_state() -> (tempfile::TempDir, OffsetDateTime) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/state-before-rotation/ca");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    std::fs::create_dir_all(&ca).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ca.join(e.file_name())).unwrap();
    }
    let made = OffsetDateTime::from_unix_timestamp(1_795_990_224).unwrap();
    (dir, made + time::Duration::days(1))
}

#[test]
fn a_state_directory_of_the_previous_release_loads_unchanged_and_rotates() {
    let (dir, at) = previous_release_state();
    let life = CaLifetimes::default();
    let ca = Authority::load(dir.path(), life, at).unwrap();
    assert_eq!(ca.generation(), 0);
    assert_eq!(
        ca.root_fingerprint(),
        "931e55a084c6c91b8dda48fc02dbf2ba0669bcff07c4ca190c7cfaffad787079"
    );
    assert_eq!(roles(&ca), [CaRole::Root, CaRole::Intermediate]);
    let old_root = ca.root().der.clone();
    let old_leaf = leaf(&ca, at);
    assert!(verifies(&old_leaf, &old_root, at));
    // An intermediate made in the same second as the old-style one still sorts after it.
    let same_second = OffsetDateTime::from_unix_timestamp(1_795_990_224).unwrap();
    let rotated = Authority::rotate_intermediate(dir.path(), life, same_second).unwrap();
    assert_ne!(rotated.current().serial, ca.current().serial);
    let again = Authority::load(dir.path(), life, at).unwrap();
    assert_eq!(
        again.current().serial,
        rotated.current().serial,
        "the newest signs"
    );
    let new = Authority::rotate_root(dir.path(), life, at).unwrap();
    assert!(verifies(&leaf(&new, at), &old_root, at));
    assert!(verifies(&old_leaf, &old_root, at));
}

#[test]
fn a_leaf_from_before_a_rollover_is_flagged_for_reissue_and_a_new_one_is_not() {
    use super::facts::issued_before_rollover;
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let life = CaLifetimes::default();
    let ca = Authority::create(dir.path(), KeyType::EcdsaP256, life, None, t0).unwrap();
    let old = leaf(&ca, t0);
    assert_eq!(
        issued_before_rollover(&ca.bundle_pem(), &old.chain_pem, old.not_before),
        None
    );
    let t1 = t0 + time::Duration::seconds(5);
    let ca = Authority::rotate_root(dir.path(), life, t1).unwrap();
    let rolled = issued_before_rollover(&ca.bundle_pem(), &old.chain_pem, old.not_before)
        .expect("issued under the previous chain");
    assert_eq!(rolled.unix_timestamp(), t1.unix_timestamp());
    let new = leaf(&ca, t1);
    assert_eq!(
        issued_before_rollover(&ca.bundle_pem(), &new.chain_pem, new.not_before),
        None
    );
}
