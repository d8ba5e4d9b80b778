//! The name rules hold on every issuance path: labels, `certdock issue`, a local order, a CSR
//! under a token (SANs and CN) and renewals. One table of bad names, checked on each.

use std::path::Path;
use std::process::Command;

use certdock::ca::CaError;
use certdock::ca::authority::CaLifetimes;
use certdock::ca::authorize::{AuthError, CsrAsk, Local, Order, Remote};
use certdock::ca::csr::Csr;
use certdock::ca::issue::{Issued, SignedCert};
use certdock::ca::keys::KeyType;
use certdock::ca::local::{LocalCa, OpenMode, Policy};
use certdock::core::container::{ContainerInfo, ContainerState};
use certdock::core::labels::{self, LabelContext};
use certdock::core::names::{CertName, San, Usage};
use certdock::core::policy::{NamePolicy, TtlPolicy};
use certdock::store::tokens::TokenKind;
use time::OffsetDateTime;

#[path = "common/names.rs"]
mod names;

use names::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn ca(dir: &Path, names: NamePolicy) -> LocalCa {
    LocalCa::open(
        dir,
        Policy {
            names,
            ttls: TtlPolicy::default(),
        },
        CaLifetimes::default(),
        OpenMode::CreateIfMissing(KeyType::EcdsaP256),
        now(),
    )
    .unwrap()
}

fn request(sans: Vec<San>) -> Order {
    Order {
        name: CertName::parse("web").unwrap(),
        sans,
        usage: Usage::BOTH,
        groups: Default::default(),
        ttl: None,
        key_type: KeyType::EcdsaP256,
    }
}

/// authorize → sign → wait, as `certdock issue` does.
fn issue(ca: &LocalCa, order: Order) -> Result<Issued, CaError> {
    ca.sign(ca.authorize_local(Local::Operator, order)?, now())?
        .wait()
}

/// A CSR under a fresh `sign` token without a scope of its own: the CA's policy alone.
fn sign_csr(ca: &LocalCa, pem: &str) -> Result<SignedCert, AuthError> {
    let expires = (now() + time::Duration::hours(1)).unix_timestamp();
    let (_, secret) = ca
        .with_tokens(|t| t.create("test", TokenKind::Sign, Vec::new(), expires))?
        .map_err(|e| CaError::Internal(e.to_string()))?;
    let ask = CsrAsk {
        csr: Csr::parse(pem)?,
        ttl: None,
        usage: Some(Usage::BOTH),
        enrol: false,
        groups: Default::default(),
    };
    let secret = secret.secret_str();
    let auth = ca.authorize_remote(Remote::Token { secret, ask }, now())?;
    Ok(ca.sign(auth, now())?.wait()?)
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

// === labels ===

fn parse_labels(labels: &[(&str, &str)], names: &NamePolicy) -> Result<(), labels::LabelError> {
    let ttls = TtlPolicy::default();
    let ctx = LabelContext {
        prefix: "certdock",
        names,
        ttls: &ttls,
        proxy_network_configured: false,
        forward_auth: true,
    };
    let c = ContainerInfo {
        id: "0".into(),
        name: "c".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state: ContainerState::Running,
        networks: Vec::new(),
    };
    labels::parse(&c, &ctx).map(|spec| assert!(spec.is_some()))
}

#[test]
fn every_bad_name_is_refused_in_sans_and_in_traefik_host_rules_naming_the_label() {
    for (what, name, word, _, wildcards) in bad_names() {
        let p = policy(wildcards);
        let e = parse_labels(
            &[
                ("certdock.enable", "true"),
                ("certdock.name", "web.internal"),
                ("certdock.sans", &name),
            ],
            &p,
        )
        .expect_err(what);
        assert_eq!(e.label, "certdock.sans", "{what}: {e}");
        assert!(e.to_string().contains(word), "{what}: {e}");

        if name.parse::<std::net::IpAddr>().is_ok() {
            continue; // Host() takes DNS names only; an address there is a syntax error.
        }
        let rule = format!("Host(`{name}`)");
        let e = parse_labels(
            &[
                ("certdock.enable", "true"),
                ("certdock.name", "web.internal"),
                ("certdock.usage", "server"),
                ("certdock.traefik.hosts", "true"),
                ("traefik.http.routers.web.rule", &rule),
            ],
            &p,
        )
        .expect_err(what);
        assert_eq!(e.label, "traefik.http.routers.web.rule", "{what}: {e}");
        assert!(e.to_string().contains(word), "{what}: {e}");
    }
    for (name, wildcards) in good_names() {
        parse_labels(
            &[
                ("certdock.enable", "true"),
                ("certdock.name", "web.internal"),
                ("certdock.sans", name),
            ],
            &policy(wildcards),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_certificate_name_label_is_held_to_the_policy_too() {
    let e = parse_labels(
        &[
            ("certdock.enable", "true"),
            ("certdock.name", "web.example.com"),
        ],
        &policy(false),
    )
    .unwrap_err();
    assert_eq!(e.label, "certdock.name", "{e}");
    assert!(e.to_string().contains("--allow-domain"), "{e}");
    let e = parse_labels(
        &[("certdock.enable", "true"), ("certdock.name", API_NAME)],
        &policy(false),
    )
    .unwrap_err();
    assert_eq!(e.label, "certdock.name", "{e}");
    assert!(e.to_string().contains("API names"), "{e}");
}

// === the CA core ===

#[test]
fn the_ca_core_refuses_every_bad_name_that_can_be_spelled_at_all() {
    let dir = tempfile::tempdir().unwrap();
    for (what, name, word, stage, wildcards) in bad_names() {
        let ca = ca(dir.path(), policy(wildcards));
        match (stage, San::parse(&name)) {
            (Stage::Syntax, Err(e)) => assert!(e.to_string().contains(word), "{what}: {e}"),
            (Stage::Policy, Ok(san)) => {
                let e = issue(&ca, request(vec![san])).expect_err(what);
                assert!(e.to_string().contains(word), "{what}: {e}");
            }
            (stage, got) => panic!("{what}: expected a {stage:?} refusal, got {got:?}"),
        }
    }
    for (name, wildcards) in good_names() {
        let ca = ca(dir.path(), policy(wildcards));
        issue(&ca, request(vec![San::parse(name).unwrap()]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A CSR made by openssl (which writes any bytes it is given into the CN and SANs).
fn openssl_csr(dir: &Path, cn: &str, san: Option<&str>) -> String {
    let key = dir.join("csr.key");
    if !key.exists() {
        let o = Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&key)
            .output()
            .expect("openssl");
        assert!(o.status.success());
    }
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-utf8", "-key"])
        .arg(&key)
        .args(["-subj", &format!("/CN={}", cn.replace('/', "\\/"))]);
    if let Some(san) = san {
        cmd.args(["-addext", &format!("subjectAltName={san}")]);
    }
    let o = cmd.output().expect("openssl");
    assert!(
        o.status.success(),
        "openssl req for {cn:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn san_entry(name: &str) -> String {
    match name.parse::<std::net::IpAddr>() {
        Ok(_) => format!("IP:{name}"),
        Err(_) => format!("DNS:{name}"),
    }
}

#[test]
fn sign_csr_refuses_every_bad_name_whether_it_is_a_san_or_the_cn() {
    let dir = tempfile::tempdir().unwrap();
    let sign = sign_csr;
    for (what, name, word, _, wildcards) in bad_names() {
        let ca = ca(dir.path(), policy(wildcards));
        let as_san = openssl_csr(dir.path(), "web.internal", Some(&san_entry(&name)));
        let e = sign(&ca, &as_san).expect_err(what).to_string();
        // A DNS SAN is an IA5String: the DER reader refuses non-ASCII before our rules do.
        assert!(
            e.contains(word) || (word == "punycode" && e.contains("IA5String")),
            "{what} as a SAN: {e}"
        );
        if name.len() <= 64 {
            // X.509 bounds a CN to 64 characters; openssl refuses to write longer ones.
            let as_cn = openssl_csr(dir.path(), &name, None);
            let e = sign(&ca, &as_cn).expect_err(what).to_string();
            // A CN is also the certificate name, whose own rule may refuse it first.
            assert!(
                e.contains(word) || e.contains("not a valid certificate name"),
                "{what} as the CN: {e}"
            );
        }
    }
    for (name, wildcards) in good_names() {
        let ca = ca(dir.path(), policy(wildcards));
        let pem = openssl_csr(dir.path(), "web.internal", Some(&san_entry(name)));
        sign(&ca, &pem).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_renewal_is_checked_against_the_policy_of_today_not_of_the_first_issue() {
    let dir = tempfile::tempdir().unwrap();
    let mut issued = Vec::new();
    {
        let lax = ca(
            dir.path(),
            NamePolicy {
                allow_wildcards: true,
                ..Default::default()
            },
        );
        for (what, name, word, stage, wildcards) in bad_names() {
            if stage == Stage::Policy {
                let san = San::parse(&name).unwrap();
                let cert = issue(&lax, request(vec![san])).expect(what);
                issued.push((what, word, wildcards, cert));
            }
        }
        let fine = issue(&lax, request(vec![San::parse("web.internal").unwrap()])).unwrap();
        issued.push(("a name still within policy", "", false, fine));
    }
    for (what, word, wildcards, cert) in issued {
        let strict = ca(dir.path(), policy(wildcards));
        match renew(&strict, &cert.cert_der) {
            Err(e) => assert!(
                !word.is_empty() && e.to_string().contains(word),
                "{what}: {e}"
            ),
            Ok(_) => assert!(word.is_empty(), "{what} was renewed"),
        }
    }
}

#[test]
fn a_certificate_name_that_spells_a_refused_address_is_refused_as_the_cn() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path(), policy(false));
    let mut req = request(vec![San::parse("web.internal").unwrap()]);
    req.name = CertName::parse("10.9.1.2").unwrap();
    let e = issue(&ca, req).unwrap_err();
    assert!(e.to_string().contains("--deny-domain"), "{e}");
    let mut req = request(vec![San::parse("web.internal").unwrap()]);
    req.name = CertName::parse("10.1.2.3").unwrap();
    issue(&ca, req).unwrap();
}

// === the CLI ===

fn certdock(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certdock"))
        .args(args)
        .env_remove("CERTDOCK_STATE_DIR")
        .env_remove("CERTDOCK_CONFIG")
        .output()
        .expect("run certdock")
}

#[test]
fn certdock_issue_refuses_every_bad_name_with_the_rule_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("S");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let init = certdock(&["init", "--state-dir", &s(&state)]);
    assert!(init.status.success());
    let run = |name: &str, san: Option<&str>, wildcards: bool, out: &Path| {
        let mut args = vec![
            "issue".to_string(),
            name.to_string(),
            "--state-dir".into(),
            s(&state),
            "--allow-domain".into(),
            ALLOW.into(),
            "--deny-domain".into(),
            DENY.into(),
            "--api-name".into(),
            API_NAME.into(),
            "--allow-wildcards".into(),
            wildcards.to_string(),
            "--out".into(),
            s(out),
        ];
        if let Some(san) = san {
            args.extend(["--san".into(), san.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        certdock(&args)
    };
    for (i, (what, name, word, _, wildcards)) in bad_names().into_iter().enumerate() {
        let out = dir.path().join(format!("out-{i}"));
        let o = run("web.internal", Some(&name), wildcards, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what} was issued");
        assert!(err.contains(word), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(!out.exists(), "{what}: nothing written");
    }
    for (name, word) in [
        ("bücher", "certificate name"),
        ("../../etc", "certificate name"),
    ] {
        let out = dir.path().join("out-name");
        let o = run(name, None, false, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(word), "{name}: {err}");
        assert!(!out.exists());
    }
    for (i, (name, wildcards)) in good_names().into_iter().enumerate() {
        let out = dir.path().join(format!("good-{i}"));
        let o = run("web.internal", Some(name), wildcards, &out);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.join("cert.pem").exists());
    }
}
