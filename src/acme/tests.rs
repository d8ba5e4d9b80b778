//! Unit tests across the ACME modules: finalize crash recovery, the tls-alpn-01 certificate rules.

use std::sync::Arc;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use time::OffsetDateTime;

use super::model::{Authz, Challenge, ChallengeType, Identifier, Order, Status};
use super::store::Batch;
use super::validate::check_alpn_cert;
use super::{Acme, AcmeConfig, issue};
use crate::ca::authority::CaLifetimes;
use crate::ca::csr::Csr;
use crate::ca::keys::KeyType;
use crate::ca::local::{LocalCa, OpenMode, Policy};
use crate::metrics::Metrics;

fn config() -> AcmeConfig {
    AcmeConfig {
        http_port: 80,
        tls_port: 443,
        eab: false,
        fallback_authority: "ca.test:8443".into(),
    }
}

fn localhost() -> Identifier {
    Identifier {
        kind: "dns".into(),
        value: "localhost".into(),
    }
}

/// A fresh CA in `dir` and the ACME server over it.
fn open(dir: &std::path::Path, now: OffsetDateTime) -> (Arc<LocalCa>, Arc<Acme>) {
    let ca = Arc::new(
        LocalCa::open(
            dir,
            Policy::default(),
            CaLifetimes::default(),
            OpenMode::CreateIfMissing(KeyType::EcdsaP256),
            now,
        )
        .unwrap(),
    );
    let acme = Acme::open(ca.clone(), Arc::new(Metrics::new()), config()).unwrap();
    (ca, acme)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_signing_and_the_journal_revokes_the_orphan_and_reopens_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let (ca, acme) = open(dir.path(), now);
    let order = Order {
        id: "o1".into(),
        account: "a1".into(),
        identifiers: vec![localhost()],
        authzs: vec!["z1".into()],
        expires: now.unix_timestamp() + 3600,
        ttl_secs: None,
        finalized: Some(Status::Processing),
        cert: None,
        error: None,
    };
    let authz = Authz {
        id: "z1".into(),
        account: "a1".into(),
        identifier: localhost(),
        status: Status::Pending,
        expires: now.unix_timestamp() + 3600,
        challenges: vec![Challenge {
            kind: ChallengeType::Http01,
            token: "t".into(),
            status: Status::Processing,
            validated: None,
            error: None,
        }],
    };
    acme.store
        .write(Batch::default().order(order).authz(authz))
        .unwrap();
    // The CA signed and recorded it; the process died before the order learnt its serial.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = Csr::parse(&params.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
    let issued = issue::issue(&acme, csr, None, "a1", "o1").unwrap();
    drop(acme);

    let acme = Acme::open(ca.clone(), Arc::new(Metrics::new()), config()).unwrap();
    let (order, authz) = acme
        .store
        .read(|s| (s.order("o1").cloned(), s.authz("z1").cloned()))
        .unwrap();
    assert_eq!(order.unwrap().finalized, None, "the order is ready again");
    let authz = authz.unwrap();
    assert_eq!(authz.status, Status::Invalid);
    assert!(authz.challenges[0].error.is_some());
    let revoked = ca
        .with_inventory(|inv| inv.get(&issued.serial).and_then(|e| e.revoked_at))
        .unwrap();
    assert!(
        revoked.is_some(),
        "the certificate no client got is revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_up_a_certificate_of_an_order_that_does_not_hold_it_is_revoked_and_its_own_is_kept()
 {
    // The finalize's claim is not fsynced on its own: after a power loss the order may be
    // `ready` again while the CA's record of its certificate survived.
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let (ca, acme) = open(dir.path(), now);
    let order = |id: &str| Order {
        id: id.into(),
        account: "a1".into(),
        identifiers: vec![localhost()],
        authzs: vec![],
        expires: now.unix_timestamp() + 3600,
        ttl_secs: None,
        finalized: None,
        cert: None,
        error: None,
    };
    let csr = || {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        Csr::parse(&params.serialize_request(&key).unwrap().pem().unwrap()).unwrap()
    };
    let lost = issue::issue(&acme, csr(), None, "a1", "lost").unwrap();
    let kept = issue::issue(&acme, csr(), None, "a1", "done").unwrap();
    let stranger = issue::issue(&acme, csr(), None, "a1", "unknown").unwrap();
    let mut done = order("done");
    done.finalized = Some(Status::Valid);
    done.cert = Some(super::model::OrderCert {
        serial: kept.serial.clone(),
        chain_pem: kept.fullchain_pem(),
    });
    acme.store
        .write(Batch::default().order(order("lost")).order(done))
        .unwrap();
    drop(acme);

    let _acme = Acme::open(ca.clone(), Arc::new(Metrics::new()), config()).unwrap();
    let revoked = |serial: &str| {
        ca.with_inventory(|inv| inv.get(serial).and_then(|e| e.revoked_at))
            .unwrap()
            .is_some()
    };
    assert!(
        revoked(&lost.serial),
        "the certificate no client got is revoked"
    );
    assert!(
        !revoked(&kept.serial),
        "the order's own certificate is kept"
    );
    assert!(
        !revoked(&stranger.serial),
        "a certificate of an order this journal never held is left alone"
    );
}

fn alpn_cert(names: &[&str], digest_of: &str, critical: bool) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, digest_of.as_bytes());
    let mut ext = CustomExtension::new_acme_identifier(digest.as_ref());
    ext.set_criticality(critical);
    params.custom_extensions = vec![ext];
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn a_tls_alpn_01_certificate_must_name_exactly_the_identifier_and_hash_the_key_authorization() {
    let ka = "token.thumbprint";
    assert_eq!(
        check_alpn_cert(&alpn_cert(&["web.internal"], ka, true), "web.internal", ka),
        Ok(())
    );
    assert_eq!(
        check_alpn_cert(&alpn_cert(&["WEB.internal"], ka, true), "web.internal", ka),
        Ok(()),
        "DNS names compare without case"
    );
    for (der, why) in [
        (alpn_cert(&["web.internal"], "other", true), "digest"),
        (alpn_cert(&["web.internal"], ka, false), "critical"),
        (
            alpn_cert(&["web.internal", "x.internal"], ka, true),
            "exactly",
        ),
        (alpn_cert(&["x.internal"], ka, true), "exactly"),
    ] {
        let err = check_alpn_cert(&der, "web.internal", ka).unwrap_err();
        assert!(err.contains(why) || err.contains("SHA-256"), "{why}: {err}");
    }
    assert!(check_alpn_cert(b"not a certificate", "web.internal", ka).is_err());
}
