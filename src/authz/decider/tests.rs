use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType, SerialNumber,
};
use time::{Duration as TDuration, OffsetDateTime};

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A CA made with rcgen alone (root → intermediate), independent of certdock's own CA code.
struct TestCa {
    root: CertificateDer<'static>,
    inter: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> TestCa {
    let root_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, format!("{name} root"));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = now() - TDuration::days(1);
    p.not_after = now() + TDuration::days(30);
    let root = p.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(p, root_key);
    let inter_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, format!("{name} intermediate"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.not_before = now() - TDuration::days(1);
    p.not_after = now() + TDuration::days(30);
    let inter = p.signed_by(&inter_key, &root_issuer).unwrap();
    TestCa {
        root: root.der().clone(),
        inter: inter.der().clone(),
        issuer: Issuer::new(p, inter_key),
    }
}

struct Leaf<'a> {
    cn: &'a str,
    uris: &'a [&'a str],
    serial: u8,
    eku: ExtendedKeyUsagePurpose,
    valid: (OffsetDateTime, OffsetDateTime),
}

impl Default for Leaf<'_> {
    fn default() -> Self {
        Self {
            cn: "frontend",
            uris: &[],
            serial: 7,
            eku: ExtendedKeyUsagePurpose::ClientAuth,
            valid: (now() - TDuration::minutes(1), now() + TDuration::hours(1)),
        }
    }
}

fn leaf(ca: &TestCa, l: Leaf<'_>) -> Vec<u8> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, l.cn);
    p.subject_alt_names = vec![SanType::DnsName(l.cn.try_into().unwrap())];
    for u in l.uris {
        p.subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    p.serial_number = Some(SerialNumber::from_slice(&[l.serial]));
    p.extended_key_usages = vec![l.eku];
    (p.not_before, p.not_after) = l.valid;
    let key = KeyPair::generate().unwrap();
    p.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
}

fn decider(ca: &TestCa) -> Decider {
    let d = Decider::new();
    d.set_bundle(&[ca.root.clone(), ca.inter.clone()]);
    d
}

fn allow(s: &str) -> AllowList {
    AllowList::parse(s).unwrap()
}

#[test]
fn an_allowed_identity_of_ours_is_admitted_with_its_groups() {
    let ca = ca("ours");
    let d = decider(&ca);
    let der = leaf(
        &ca,
        Leaf {
            uris: &["urn:certdock:group:web", "urn:certdock:group:ops"],
            ..Default::default()
        },
    );
    let c = d.decide(&der, "api", &allow("frontend"), now()).unwrap();
    assert_eq!(c.identity.as_str(), "frontend");
    assert_eq!(c.groups_header(), "ops,web");
    // The same certificate through a group entry, from the cache this time.
    assert!(d.decide(&der, "api", &allow("group:ops"), now()).is_ok());
}

#[test]
fn a_client_not_in_the_allow_list_is_refused_by_name() {
    let ca = ca("ours");
    let d = decider(&ca);
    let der = leaf(
        &ca,
        Leaf {
            cn: "batch",
            uris: &["urn:certdock:group:web"],
            ..Default::default()
        },
    );
    let e = d
        .decide(&der, "api", &allow("frontend,group:ops"), now())
        .unwrap_err();
    assert_eq!(
        e,
        Refusal::NotAllowed {
            client: "batch".into(),
            server: "api".into()
        }
    );
    assert_eq!(e.code(), "not_allowed");
}

#[test]
fn a_certificate_from_another_ca_is_not_ours() {
    let (ours, theirs) = (ca("ours"), ca("theirs"));
    let d = decider(&ours);
    let der = leaf(&theirs, Leaf::default());
    assert!(matches!(d.verify(&der, now()), Err(Refusal::NotOurs(_))));
}

#[test]
fn a_server_only_certificate_cannot_call() {
    let ca = ca("ours");
    let der = leaf(
        &ca,
        Leaf {
            eku: ExtendedKeyUsagePurpose::ServerAuth,
            ..Default::default()
        },
    );
    assert!(matches!(
        decider(&ca).verify(&der, now()),
        Err(Refusal::NotOurs(_))
    ));
}

#[test]
fn revocation_bites_on_the_next_request_even_when_cached() {
    let ca = ca("ours");
    let d = decider(&ca);
    let der = leaf(
        &ca,
        Leaf {
            serial: 0x42,
            ..Default::default()
        },
    );
    assert!(d.verify(&der, now()).is_ok());
    d.set_revoked([vec![0x00, 0x42]]);
    assert_eq!(
        d.verify(&der, now()).unwrap_err(),
        Refusal::Revoked {
            serial: "42".into()
        }
    );
    d.set_revoked(Vec::<Vec<u8>>::new());
    assert!(d.verify(&der, now()).is_ok());
}

#[test]
fn expiry_counts_at_every_request_not_only_the_first() {
    let ca = ca("ours");
    let d = decider(&ca);
    let der = leaf(
        &ca,
        Leaf {
            valid: (now() - TDuration::minutes(5), now() + TDuration::minutes(5)),
            ..Default::default()
        },
    );
    assert!(d.verify(&der, now()).is_ok());
    assert_eq!(
        d.verify(&der, now() + TDuration::minutes(6)).unwrap_err(),
        Refusal::NotValidNow
    );
    let old = leaf(
        &ca,
        Leaf {
            serial: 8,
            valid: (now() - TDuration::hours(2), now() - TDuration::hours(1)),
            ..Default::default()
        },
    );
    assert_eq!(d.verify(&old, now()).unwrap_err(), Refusal::NotValidNow);
}

#[test]
fn a_new_bundle_forgets_what_the_old_one_vouched_for() {
    let (old, new) = (ca("old"), ca("new"));
    let d = decider(&old);
    let der = leaf(&old, Leaf::default());
    assert!(d.verify(&der, now()).is_ok());
    d.set_bundle(&[new.root.clone(), new.inter.clone()]);
    assert!(matches!(d.verify(&der, now()), Err(Refusal::NotOurs(_))));
}

#[test]
fn without_a_bundle_nothing_is_admitted() {
    let ca = ca("ours");
    let d = Decider::new();
    assert_eq!(
        d.verify(&leaf(&ca, Leaf::default()), now()).unwrap_err(),
        Refusal::NoTrust
    );
    assert!(matches!(d.verify(b"garbage", now()), Err(Refusal::NoTrust)));
    let d = decider(&ca);
    assert!(matches!(
        d.verify(b"garbage", now()),
        Err(Refusal::Unreadable(_))
    ));
}
