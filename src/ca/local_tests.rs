//! LocalCa tests: who may be issued what (name policy, tokens, agents, groups), renewal and
//! revocation, each issuance recorded.

use super::CaError;
use super::authority::CaLifetimes;
use super::authorize::{AuthError, CsrAsk, Local, Order, Remote};
use super::csr::Csr;
use super::facts::CertFacts;
use super::issue::{Issued, SignedCert};
use super::keys::KeyType;
use super::local::{LocalCa, OpenMode, Policy};
use super::tests::now;
use crate::core::names::{CertName, San, Usage};
use crate::core::policy::{NamePolicy, NameRule};
use crate::store::tokens::TokenKind;

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

fn order(name: &str, sans: &[&str]) -> Order {
    Order {
        name: CertName::parse(name).unwrap(),
        sans: sans.iter().map(|s| San::parse(s).unwrap()).collect(),
        usage: Usage::BOTH,
        groups: Default::default(),
        ttl: None,
        key_type: KeyType::EcdsaP256,
    }
}

/// authorize → sign → wait, for a local caller.
fn issue(ca: &LocalCa, who: Local, order: Order) -> Result<Issued, CaError> {
    ca.sign(ca.authorize_local(who, order)?, now())?.wait()
}

fn renew(ca: &LocalCa, der: &[u8]) -> Result<SignedCert, AuthError> {
    let auth = ca.authorize_remote(
        Remote::Renewal {
            presented: der,
            csr_pem: None,
        },
        now(),
    )?;
    Ok(ca.sign(auth, now())?.wait()?)
}

/// A token of `kind` for `name` within `scope`, as `certdock token create` makes it.
fn token(ca: &LocalCa, name: &str, kind: TokenKind, scope: &str) -> String {
    let allow = NameRule::parse_list(scope).unwrap();
    let expires = (now() + time::Duration::hours(1)).unix_timestamp();
    let (_, secret) = ca
        .with_tokens(|t| t.create(name, kind, allow, expires))
        .unwrap()
        .unwrap();
    secret.secret_str().to_string()
}

fn with_token(
    ca: &LocalCa,
    secret: &str,
    csr_pem: &str,
    enrol: bool,
) -> Result<SignedCert, AuthError> {
    let ask = CsrAsk {
        csr: Csr::parse(csr_pem)?,
        ttl: None,
        usage: None,
        enrol,
        groups: Default::default(),
    };
    let auth = ca.authorize_remote(Remote::Token { secret, ask }, now())?;
    Ok(ca.sign(auth, now())?.wait()?)
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
    let ok = issue(&ca, Local::Operator, order("web", &["web.internal"])).unwrap();
    assert!(
        issue(&ca, Local::Controller, order("web", &["web.example.com"]))
            .unwrap_err()
            .to_string()
            .contains("--allow-domain internal")
    );
    assert!(
        issue(&ca, Local::Operator, order("ca", &["ca.internal"])).is_err(),
        "API names are reserved"
    );
    assert!(issue(&ca, Local::ApiCertificate, order("ca", &["ca.internal"])).is_ok());
    let scoped = token(&ca, "x", TokenKind::Sign, "team.internal");
    assert!(
        with_token(&ca, &scoped, &csr_pem("x.other.internal"), false).is_err(),
        "a token scope narrows the policy"
    );
    let inv = crate::store::inventory::Inventory::open(dir.path()).unwrap();
    assert_eq!(inv.len(), 2);
    assert!(inv.get(&ok.serial).is_some());
    assert_eq!(
        inv.get(&ok.serial).unwrap().record.requester,
        crate::store::requester::Requester::Cli
    );
}

#[test]
fn the_api_certificate_is_exempt_from_allow_and_deny_but_labels_and_tokens_are_not() {
    let (_dir, ca) = local(Policy {
        names: NamePolicy {
            allow: NameRule::parse_list("internal").unwrap(),
            deny: NameRule::parse_list("10.0.0.0/8").unwrap(),
            ..Default::default()
        },
        ..Default::default()
    });
    let api = issue(&ca, Local::ApiCertificate, order("vm", &["vm", "10.0.0.5"])).unwrap();
    assert_eq!(
        CertFacts::from_der("api", &api.cert_der).unwrap().sans,
        vec![San::parse("vm").unwrap(), San::parse("10.0.0.5").unwrap()]
    );
    assert!(issue(&ca, Local::Controller, order("vm", &["vm"])).is_err());
    assert!(issue(&ca, Local::Operator, order("vm", &["vm"])).is_err());
    let any = token(&ca, "t", TokenKind::Sign, "");
    assert!(matches!(
        with_token(&ca, &any, &csr_pem("vm"), false),
        Err(AuthError::Ca(CaError::Policy(_)))
    ));
}

#[test]
fn renewal_keeps_the_identity_and_refuses_revoked_or_foreign_certificates() {
    let (_dir, ca) = local(Policy::default());
    let first = issue(&ca, Local::Operator, order("api", &["api", "api.internal"])).unwrap();
    let renewed = renew(&ca, &first.cert_der).unwrap();
    assert_ne!(renewed.serial, first.serial);
    let p1 = super::pem::parse_cert("a", &first.cert_der).unwrap();
    let p2 = super::pem::parse_cert("b", &renewed.cert_der).unwrap();
    assert_eq!(
        p1.subject_alternative_name().unwrap().unwrap().value,
        p2.subject_alternative_name().unwrap().unwrap().value
    );
    ca.revoke(&renewed.serial, now()).unwrap();
    assert!(matches!(
        renew(&ca, &renewed.cert_der),
        Err(AuthError::Ca(CaError::Revoked { .. }))
    ));
    let (_d2, other) = local(Policy::default());
    let foreign = issue(&other, Local::Operator, order("api", &["api"])).unwrap();
    assert!(matches!(
        renew(&ca, &foreign.cert_der),
        Err(AuthError::Ca(CaError::UnknownCertificate { .. }))
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
                        let name = format!("s{t}-{i}");
                        issue(&ca, Local::Controller, order(&name, &[&name]))
                            .unwrap()
                            .serial
                            .clone()
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
    let secret = token(&ca, "agent-1.internal", TokenKind::Agent, "team.internal");
    let enrolled = with_token(&ca, &secret, &csr_pem("whatever-the-host-says"), true).unwrap();
    let rec = ca.verify_presented(&enrolled.cert_der, now()).unwrap();
    assert_eq!(rec.name, "agent-1.internal");
    assert_eq!(rec.sans, vec![San::parse("agent-1.internal").unwrap()]);
    assert_eq!(rec.usage, Usage::CLIENT);
    assert_eq!(rec.agent_scope, Some(scope.clone()));
    let renewed = renew(&ca, &enrolled.cert_der).unwrap();
    let rec = ca.verify_presented(&renewed.cert_der, now()).unwrap();
    assert_eq!(rec.agent_scope, Some(scope));
    let plain = issue(&ca, Local::Operator, order("web", &["web"])).unwrap();
    assert_eq!(
        ca.verify_presented(&plain.cert_der, now())
            .unwrap()
            .agent_scope,
        None
    );
}

#[test]
fn an_enrolment_with_a_sign_token_is_refused_before_the_token_is_spent() {
    let (_dir, ca) = local(Policy::default());
    let secret = token(&ca, "host2", TokenKind::Sign, "");
    let refused = with_token(&ca, &secret, &csr_pem("certdock-agent"), true).unwrap_err();
    assert!(matches!(
        refused,
        AuthError::NotAnAgentToken {
            kind: TokenKind::Sign
        }
    ));
    assert!(
        refused
            .to_string()
            .contains("certdock token create --kind agent"),
        "{refused}"
    );
    // Not spent: the same token still signs what a sign token may.
    assert!(with_token(&ca, &secret, &csr_pem("host2"), false).is_ok());
}

#[test]
fn an_older_agent_that_does_not_say_it_enrols_still_enrols_with_an_agent_token() {
    let (_dir, ca) = local(Policy::default());
    let secret = token(&ca, "agent-2.internal", TokenKind::Agent, "");
    let enrolled = with_token(&ca, &secret, &csr_pem("certdock-agent"), false).unwrap();
    let rec = ca.verify_presented(&enrolled.cert_der, now()).unwrap();
    assert_eq!(rec.name, "agent-2.internal");
    assert_eq!(rec.agent_scope, Some(Vec::new()));
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

fn groups(names: &[&str]) -> std::collections::BTreeSet<crate::core::authz::GroupName> {
    names
        .iter()
        .map(|g| crate::core::authz::GroupName::parse(g).unwrap())
        .collect()
}

#[test]
fn groups_are_bound_to_the_certificate_recorded_and_kept_on_renewal() {
    let (_dir, ca) = local(Policy::default());
    let issued = issue(
        &ca,
        Local::Controller,
        Order {
            groups: groups(&["web", "ops"]),
            ..order("cron", &["cron"])
        },
    )
    .unwrap();
    let facts = super::facts::CertFacts::from_der("leaf", &issued.cert_der).unwrap();
    assert_eq!(facts.groups, groups(&["ops", "web"]));
    let rec = ca.verify_presented(&issued.cert_der, now()).unwrap();
    assert_eq!(rec.groups, groups(&["ops", "web"]));
    let renewed = renew(&ca, &issued.cert_der).unwrap();
    let facts = super::facts::CertFacts::from_der("renewed", &renewed.cert_der).unwrap();
    assert_eq!(facts.groups, groups(&["ops", "web"]));
}

#[test]
fn a_token_cannot_ask_for_groups_and_is_not_spent_asking() {
    let (_dir, ca) = local(Policy::default());
    let secret = token(&ca, "host2", TokenKind::Sign, "");
    let ask = CsrAsk {
        csr: Csr::parse(&csr_pem("host2")).unwrap(),
        ttl: None,
        usage: None,
        enrol: false,
        groups: groups(&["admins"]),
    };
    let refused = ca
        .authorize_remote(
            Remote::Token {
                secret: &secret,
                ask,
            },
            now(),
        )
        .err()
        .expect("refused");
    assert!(matches!(refused, AuthError::GroupsNeedAnAgent), "{refused}");
    assert!(with_token(&ca, &secret, &csr_pem("host2"), false).is_ok());
}

#[test]
fn an_agent_binds_the_groups_its_labels_ask_for() {
    let (_dir, ca) = local(Policy::default());
    let secret = token(&ca, "agent-1.internal", TokenKind::Agent, "");
    let agent = with_token(&ca, &secret, &csr_pem("agent"), true).unwrap();
    let ask = CsrAsk {
        csr: Csr::parse(&csr_pem("batch")).unwrap(),
        ttl: None,
        usage: Some(Usage::CLIENT),
        enrol: false,
        groups: groups(&["ops"]),
    };
    let auth = ca
        .authorize_remote(
            Remote::Agent {
                presented: &agent.cert_der,
                ask,
            },
            now(),
        )
        .unwrap();
    let signed = ca.sign(auth, now()).unwrap().wait().unwrap();
    let facts = super::facts::CertFacts::from_der("leaf", &signed.cert_der).unwrap();
    assert_eq!(facts.groups, groups(&["ops"]));
}

#[test]
fn an_agent_gets_the_traefik_client_certificate_outside_its_scope_but_only_for_client_use() {
    let (_dir, ca) = local(Policy::default());
    let secret = token(&ca, "agent-1.internal", TokenKind::Agent, "internal");
    let agent = with_token(&ca, &secret, &csr_pem("agent"), true).unwrap();
    let ask = |usage: Usage, cn: &str| CsrAsk {
        csr: Csr::parse(&csr_pem(cn)).unwrap(),
        ttl: None,
        usage: Some(usage),
        enrol: false,
        groups: Default::default(),
    };
    let ask_as_agent = |ask: CsrAsk| {
        ca.authorize_remote(
            Remote::Agent {
                presented: &agent.cert_der,
                ask,
            },
            now(),
        )
    };
    let cn = crate::core::names::traefik_client::CN;
    let auth = ask_as_agent(ask(Usage::CLIENT, cn)).expect("the proxy's client certificate");
    assert!(ca.sign(auth, now()).unwrap().wait().is_ok());
    for refused in [ask(Usage::SERVER, cn), ask(Usage::BOTH, cn)] {
        let auth = ask_as_agent(refused).expect("authorised within the scope");
        assert!(
            ca.sign(auth, now()).is_err(),
            "the internal name as a server is refused"
        );
    }
    // Anything else stays within the token's scope.
    let auth = ask_as_agent(ask(Usage::CLIENT, "web.example")).unwrap();
    assert!(ca.sign(auth, now()).is_err());
}

#[test]
fn the_revoked_serials_stay_one_set_until_a_revocation_here_or_in_another_process() {
    let (dir, ca) = local(Policy::default());
    let a = issue(&ca, Local::Controller, order("a", &["a.internal"])).unwrap();
    let b = issue(&ca, Local::Controller, order("b", &["b.internal"])).unwrap();
    let bare = |serial: &str| serial.trim_start_matches('0').to_string();

    let none = ca.revoked_serials().unwrap();
    assert!(none.is_empty());
    assert!(
        std::sync::Arc::ptr_eq(&none, &ca.revoked_serials().unwrap()),
        "nothing revoked since: the same set"
    );

    ca.revoke(&a.serial, now()).unwrap();
    let one = ca.revoked_serials().unwrap();
    assert_eq!(*one, [bare(&a.serial)].into());

    // `certdock revoke` in another process: its own CA over the same state directory.
    let other = LocalCa::open(
        dir.path(),
        Policy::default(),
        CaLifetimes::default(),
        OpenMode::CreateIfMissing(KeyType::EcdsaP256),
        now(),
    )
    .unwrap();
    other.revoke(&b.serial, now()).unwrap();
    let two = ca.revoked_serials().unwrap();
    assert_eq!(*two, [bare(&a.serial), bare(&b.serial)].into());
    assert!(std::sync::Arc::ptr_eq(&two, &ca.revoked_serials().unwrap()));
}
