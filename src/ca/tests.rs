//! CA core tests: chains are checked by an independent verifier (webpki), not by our own code.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

use super::authority::{Authority, CaLifetimes};
use super::issue::{LeafKey, LeafRequest, sign_leaf};
use super::keys::KeyType;
use super::local::{IssueRequest, LocalCa, OpenMode, Policy};
use super::pem::certs_from_pem;
use crate::core::names::{CertName, San, Usage};
use crate::core::policy::{NamePolicy, NameRule};

fn now() -> OffsetDateTime {
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

fn leaf(ca: &Authority, usage: Usage, kt: KeyType) -> super::issue::Issued {
    let sans = vec![
        San::parse("web.internal").unwrap(),
        San::parse("10.1.2.3").unwrap(),
    ];
    sign_leaf(
        ca,
        LeafRequest {
            common_name: "web.internal",
            sans: &sans,
            usage,
            ttl: Duration::from_secs(3600),
            key: LeafKey::Generate(kt),
        },
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
    let ca = Authority::create(
        dir.path(),
        KeyType::EcdsaP256,
        CaLifetimes::default(),
        None,
        now(),
    )
    .unwrap();
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
        ca.intermediates().len(),
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
    let src = Authority::create(
        other.path(),
        KeyType::EcdsaP256,
        CaLifetimes::default(),
        None,
        now(),
    )
    .unwrap();
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
    let ca = Authority::create(
        dir.path(),
        KeyType::EcdsaP256,
        CaLifetimes::default(),
        None,
        now(),
    )
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let l = leaf(&ca, Usage::SERVER, KeyType::EcdsaP256);
        assert_eq!(l.serial.len(), 32);
        assert!(u8::from_str_radix(&l.serial[..2], 16).unwrap() < 0x80);
        assert!(seen.insert(l.serial));
    }
}

fn local(policy: Policy) -> (tempfile::TempDir, LocalCa) {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::open(
        dir.path(),
        policy,
        CaLifetimes::default(),
        OpenMode::CreateIfMissing(KeyType::EcdsaP256),
        now(),
    )
    .unwrap();
    (dir, ca)
}

fn req(name: &str, sans: &[&str]) -> IssueRequest {
    IssueRequest {
        name: CertName::parse(name).unwrap(),
        sans: sans.iter().map(|s| San::parse(s).unwrap()).collect(),
        usage: Usage::BOTH,
        ttl: None,
        key: LeafKey::Generate(KeyType::EcdsaP256),
        requester: "test".into(),
        scope: None,
    }
}

#[test]
fn every_issuance_passes_the_name_policy_and_is_recorded() {
    let (dir, ca) = local(Policy {
        names: NamePolicy {
            allow: NameRule::parse_list("internal").unwrap(),
            reserved: vec![San::parse("ca.internal").unwrap()],
            ..Default::default()
        },
        ..Default::default()
    });
    let ok = ca.issue(req("web", &["web.internal"]), now()).unwrap();
    assert!(
        ca.issue(req("web", &["web.example.com"]), now())
            .unwrap_err()
            .to_string()
            .contains("--allow-domain internal")
    );
    assert!(
        ca.issue(req("ca", &["ca.internal"]), now()).is_err(),
        "API names are reserved"
    );
    assert!(ca.issue_for_api(req("ca", &["ca.internal"]), now()).is_ok());
    let mut scoped = req("x", &["x.other.internal"]);
    scoped.scope = Some(NameRule::parse_list("team.internal").unwrap());
    assert!(
        ca.issue(scoped, now()).is_err(),
        "a token scope narrows the policy"
    );
    let inv = crate::store::inventory::Inventory::open(dir.path()).unwrap();
    assert_eq!(inv.len(), 2);
    assert!(inv.get(&ok.serial).is_some());
}

#[test]
fn renewal_keeps_the_identity_and_refuses_revoked_or_foreign_certificates() {
    let (_dir, ca) = local(Policy::default());
    let first = ca
        .issue(req("api", &["api", "api.internal"]), now())
        .unwrap();
    let renewed = ca.renew(&first.cert_der, None, now()).unwrap();
    assert_ne!(renewed.serial, first.serial);
    let p1 = super::pem::parse_cert("a", &first.cert_der).unwrap();
    let p2 = super::pem::parse_cert("b", &renewed.cert_der).unwrap();
    assert_eq!(
        p1.subject_alternative_name().unwrap().unwrap().value,
        p2.subject_alternative_name().unwrap().unwrap().value
    );
    ca.revoke(&renewed.serial, now()).unwrap();
    assert!(matches!(
        ca.renew(&renewed.cert_der, None, now()),
        Err(super::CaError::Revoked { .. })
    ));
    let (_d2, other) = local(Policy::default());
    let foreign = other.issue(req("api", &["api"]), now()).unwrap();
    assert!(matches!(
        ca.renew(&foreign.cert_der, None, now()),
        Err(super::CaError::UnknownCertificate { .. })
    ));
    let crl = ca.crl(now()).unwrap();
    let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
    let listed: Vec<String> = parsed
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    assert_eq!(listed, vec![renewed.serial.clone()]);
}

#[test]
fn concurrent_issuance_never_reuses_a_serial_or_loses_a_record() {
    let (dir, ca) = local(Policy::default());
    let ca = std::sync::Arc::new(ca);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let ca = ca.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        ca.issue(req(&format!("s{t}-{i}"), &[&format!("s{t}-{i}")]), now())
                            .unwrap()
                            .serial
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let serials: std::collections::HashSet<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(serials.len(), 200);
    assert_eq!(
        crate::store::inventory::Inventory::open(dir.path())
            .unwrap()
            .len(),
        200
    );
}

fn csr_pem(cn: &str) -> String {
    let key = KeyType::EcdsaP256.generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn an_enrolled_agent_is_a_client_named_by_the_ca_and_keeps_its_scope_on_renewal() {
    let (_dir, ca) = local(Policy::default());
    let scope = NameRule::parse_list("team.internal").unwrap();
    let enrolled = ca
        .enrol_agent(
            &csr_pem("whatever-the-host-says"),
            CertName::parse("agent-1.internal").unwrap(),
            None,
            scope.clone(),
            "test".into(),
            now(),
        )
        .unwrap();
    let rec = ca.verify_presented(&enrolled.cert_der, now()).unwrap();
    assert_eq!(rec.name, "agent-1.internal");
    assert_eq!(rec.sans, vec![San::parse("agent-1.internal").unwrap()]);
    assert_eq!(rec.usage, Usage::CLIENT);
    assert_eq!(rec.agent_scope, Some(scope.clone()));
    let renewed = ca.renew(&enrolled.cert_der, None, now()).unwrap();
    let rec = ca.verify_presented(&renewed.cert_der, now()).unwrap();
    assert_eq!(rec.agent_scope, Some(scope));
    let plain = ca.issue(req("web", &["web"]), now()).unwrap();
    assert_eq!(
        ca.verify_presented(&plain.cert_der, now())
            .unwrap()
            .agent_scope,
        None
    );
}

#[test]
fn the_signer_status_says_a_fresh_ca_can_sign() {
    let (_dir, ca) = local(Policy::default());
    let status = ca.signer_status(now()).unwrap();
    assert!(status.can_sign);
    assert_eq!(status.root_fingerprint, ca.root_fingerprint());
    assert!(
        !ca.signer_status(status.intermediate_not_after)
            .unwrap()
            .can_sign
    );
}
