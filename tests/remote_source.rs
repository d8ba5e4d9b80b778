//! `RemoteSource` (the agent's CA) against a real `certdock serve`.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certdock::ca::remote::{RemoteError, RemoteSource};
use certdock::ca::source::{CertSource, LeafOrder, SourceError};
use certdock::core::names::{CertName, San, Usage};
use certdock::store::inventory::Inventory;
use common::{Serve, ok, run, s};

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn order(name: &str) -> LeafOrder {
    LeafOrder {
        name: CertName::parse(name).unwrap(),
        sans: vec![San::parse(name).unwrap()],
        usage: Usage::BOTH,
        groups: Default::default(),
        ttl: Duration::from_secs(3600),
        internal: false,
    }
}

fn token_file(dir: &Path, serve: &Serve, extra: &[&str]) -> std::path::PathBuf {
    let path = dir.join("agent.token");
    fs::write(&path, serve.token("agent", "agent-1.test", extra)).unwrap();
    path
}

/// The issued certificate chains to the CA's root for both usages, checked by openssl.
fn verify_with_openssl(dir: &Path, serve: &Serve, issued: &certdock::ca::issue::Issued) {
    let cert = dir.join(format!("{}.pem", issued.serial));
    let chain = dir.join(format!("{}.chain.pem", issued.serial));
    fs::write(&cert, &issued.cert_pem).unwrap();
    fs::write(&chain, &issued.chain_pem).unwrap();
    for purpose in ["sslserver", "sslclient"] {
        ok(&run(
            "openssl",
            &[
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                s(&serve.roots),
                "-untrusted",
                s(&chain),
                s(&cert),
            ],
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pinned_by_fingerprint_enrols_once_and_issues_certificates_that_verify() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let agent_state = d.join("agent-state");
    let token = token_file(d, &serve, &[]);
    let remote =
        RemoteSource::bootstrap(&serve.url_ip(), &token, &serve.fingerprint(), &agent_state)
            .await
            .expect("bootstrap");
    assert_eq!(
        remote.identity().name,
        "agent-1.test",
        "named after its token"
    );
    let issued = remote.issue(&order("web.test")).await.expect("issue");
    assert!(
        issued.key.secret_pem().contains("PRIVATE KEY"),
        "the key was made by the agent"
    );
    verify_with_openssl(d, &serve, &issued);
    assert_eq!(
        remote.bundle().await.unwrap(),
        fs::read_to_string(&serve.roots).unwrap()
    );

    // Files: the pinned root is public, the identity (key inside) is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        fs::metadata(agent_state.join("agent").join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("root.pem"), 0o644);
    assert_eq!(mode("identity.pem"), 0o600);

    // The identity renews itself over mTLS with a new key, and the new one is what is stored.
    let before = remote.identity();
    let renewed = remote.renew_identity().await.expect("renew the identity");
    assert_ne!(renewed.serial, before.serial);
    assert_eq!(renewed.name, before.name);
    assert_ne!(renewed.key.secret_pem(), before.key.secret_pem());
    remote
        .issue(&order("db.test"))
        .await
        .expect("issue with the renewed identity");

    // A restart reuses the stored identity: the spent token is not needed again.
    fs::write(&token, "").unwrap();
    let again =
        RemoteSource::bootstrap(&serve.url_ip(), &token, &serve.fingerprint(), &agent_state)
            .await
            .expect("bootstrap from the stored identity");
    assert_eq!(again.identity().serial, renewed.serial);
    again
        .issue(&order("api.test"))
        .await
        .expect("issue after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fingerprint_is_refused_before_the_token_is_spent() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let token = token_file(d, &serve, &[]);
    let wrong = "00".repeat(32);
    let err = RemoteSource::bootstrap(&serve.url_ip(), &token, &wrong, &d.join("a"))
        .await
        .expect_err("a wrong pin is refused");
    assert!(
        matches!(err, RemoteError::FingerprintMismatch { .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains(&wrong), "{err}");
    // The token was not spent on the impostor: the right pin still enrols with it.
    RemoteSource::bootstrap(&serve.url_ip(), &token, &serve.fingerprint(), &d.join("a"))
        .await
        .expect("bootstrap with the right pin");
    // Once pinned, a different --ca-fingerprint is refused rather than silently re-pinned.
    let err = RemoteSource::bootstrap(&serve.url_ip(), &token, &wrong, &d.join("a"))
        .await
        .expect_err("the stored pin wins");
    assert!(
        matches!(err, RemoteError::StoredRootMismatch { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_serve_is_down_issue_is_unavailable_and_bundle_is_the_last_one_and_it_recovers() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut serve = Serve::start(d);
    let token = token_file(d, &serve, &[]);
    let remote =
        RemoteSource::bootstrap(&serve.url_ip(), &token, &serve.fingerprint(), &d.join("a"))
            .await
            .unwrap();
    let bundle = remote.bundle().await.unwrap();
    let (port, state) = (serve.port, serve.state.clone());
    serve.stop();
    let err = remote
        .issue(&order("web.test"))
        .await
        .expect_err("CA is down");
    assert!(matches!(err, SourceError::Unavailable(_)), "{err}");
    assert_eq!(
        remote.bundle().await.unwrap(),
        bundle,
        "the last good bundle"
    );
    // The CA comes back (same state, same port): the agent carries on without re-enrolling.
    let _serve = Serve::start_at(d, &state, port, &[]);
    let issued = remote
        .issue(&order("web.test"))
        .await
        .expect("issue after recovery");
    assert!(!issued.serial.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_signs_only_within_its_token_scope_and_never_for_the_api_names() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let token = token_file(d, &serve, &["--allow-domain", "team.test"]);
    let remote =
        RemoteSource::bootstrap(&serve.url_ip(), &token, &serve.fingerprint(), &d.join("a"))
            .await
            .unwrap();
    remote
        .issue(&order("web.team.test"))
        .await
        .expect("within scope");
    let err = remote
        .issue(&order("web.other.test"))
        .await
        .expect_err("outside scope");
    assert!(matches!(err, SourceError::Refused(_)), "{err}");
    let err = remote
        .issue(&order("ca.test"))
        .await
        .expect_err("the CA's own name");
    assert!(matches!(err, SourceError::Refused(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_signs_never_reuse_a_serial_and_all_are_in_the_inventory() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let token = token_file(d, &serve, &[]);
    let remote = Arc::new(
        RemoteSource::bootstrap(&serve.url_ip(), &token, &serve.fingerprint(), &d.join("a"))
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let remote = remote.clone();
            tokio::spawn(async move {
                let mut serials = Vec::new();
                for i in 0..25 {
                    let issued = remote
                        .issue(&order(&format!("s{t}-{i}.test")))
                        .await
                        .expect("issue");
                    serials.push(issued.cert.serial);
                }
                serials
            })
        })
        .collect();
    let mut serials = HashSet::new();
    for t in tasks {
        for serial in t.await.unwrap() {
            assert!(serials.insert(serial), "a serial was reused");
        }
    }
    assert_eq!(serials.len(), 200);
    let inventory = Inventory::open(&serve.state).unwrap();
    for serial in &serials {
        let entry = inventory
            .get(serial)
            .unwrap_or_else(|| panic!("{serial} not in the inventory"));
        assert_eq!(
            entry.record.requester,
            certdock::store::requester::Requester::Agent("agent-1.test".into())
        );
    }
}
