//! Replacing the root under load, with real peers: Caddy and HAProxy that are NOT reloaded keep
//! accepting the client's re-issued certificate (its chain carries the cross-certificate to the
//! root they loaded), then, reloaded with the new files, accept the old and the new certificate;
//! `openssl verify` accepts a new leaf against only the old root and against only the new one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mtls_client::{Identity, Target, get, init_crypto, is_ok, read_identity};
use common::peers::{caddy_with_mtls_snippet, haproxy_pem, haproxy_with_mtls, issue_server_cert};
use common::process::{Certdock, bin, eventually, openssl, path_str};
use common::{ContainerSpec, TestContainer, docker};
use rustls::pki_types::pem::PemObject;

const DIR: &str = "/run/certdock";
const WORKERS: usize = 4;

/// Requests made and failures seen by the load.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    requests: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// `WORKERS` tasks calling every target in turn with the identity `current` holds at that
/// moment (and with `also`, when given), until `load.stop`.
fn start_load(
    targets: Vec<(&'static str, Target)>,
    current: Arc<Mutex<Arc<Identity>>>,
    also: Option<Arc<Identity>>,
    load: Arc<Load>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WORKERS)
        .map(|_| {
            let (targets, current, also, load) =
                (targets.clone(), current.clone(), also.clone(), load.clone());
            tokio::spawn(async move {
                while !load.stop.load(Ordering::SeqCst) {
                    for (name, target) in &targets {
                        let id = current.lock().unwrap().clone();
                        for id in std::iter::once(&id).chain(also.iter()) {
                            let n = load.requests.fetch_add(1, Ordering::SeqCst);
                            let answer = get(target, Some(id)).await;
                            if !is_ok(&answer) {
                                load.failures.lock().unwrap().push(format!(
                                    "request {n} to {name} with serial {}: {answer:?}",
                                    id.serial()
                                ));
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// Keeps `current` at the identity the container holds now (re-read every 100 ms).
fn follow_identity(
    d: certdock::docker::Docker,
    container: Arc<TestContainer>,
    current: Arc<Mutex<Arc<Identity>>>,
    load: Arc<Load>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !load.stop.load(Ordering::SeqCst) {
            if let Some(Ok(id)) = read_identity(&d, &container, DIR).await {
                *current.lock().unwrap() = Arc::new(id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn finish(load: &Load, tasks: Vec<tokio::task::JoinHandle<()>>) -> (usize, Vec<String>) {
    load.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("load task");
    }
    let failures = load.failures.lock().unwrap().clone();
    (load.requests.load(Ordering::SeqCst), failures)
}

/// How many certificates the container's delivered `ca.pem` holds, once it has one.
async fn certs_in_ca_pem(d: &certdock::docker::Docker, c: &TestContainer) -> Option<usize> {
    let (code, text) = c.exec(d, &["cat", &format!("{DIR}/ca.pem")]).await;
    (code == 0).then(|| text.matches("BEGIN CERTIFICATE").count())
}

fn first_cert(pem_file: &Path, dest: &Path) -> PathBuf {
    let pem = std::fs::read_to_string(pem_file).expect("PEM file");
    let end = pem
        .find("-----END CERTIFICATE-----")
        .expect("a certificate")
        + 26;
    std::fs::write(dest, &pem[..end]).expect("write");
    dest.to_path_buf()
}

fn self_signed_count(pem_file: &Path) -> usize {
    let pem = std::fs::read(pem_file).unwrap_or_default();
    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .filter(|c| {
            x509_parser::parse_x509_certificate(c)
                .is_ok_and(|(_, x)| x.subject() == x.issuer() && x.is_ca())
        })
        .count()
}

fn verify(root: &Path, chain: &Path, cert: &Path) -> std::process::Output {
    openssl(&[
        "verify",
        "-CAfile",
        path_str(root),
        "-untrusted",
        path_str(chain),
        path_str(cert),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_rotation_under_load_fails_no_request_before_or_after_the_peers_reload() {
    init_crypto();
    let d = docker().await;
    let prefix = common::unique_label_prefix();
    let cd = Certdock::start(
        "run",
        &[
            "--listen",
            "127.0.0.1:0",
            "--label-prefix",
            &prefix,
            "--rollover-spread",
            "5s",
        ],
        &[],
    );
    let snippet = cd.out.join("caddy/mtls.caddy");
    let ca_pem = cd.out.join("ca.pem");
    eventually(
        "ca.pem and the Caddy snippet",
        Duration::from_secs(20),
        || async { (snippet.is_file() && ca_pem.is_file()).then_some(()) },
    )
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    std::fs::copy(&ca_pem, w.join("old-ca.pem")).unwrap();
    let old_root = first_cert(&w.join("old-ca.pem"), &w.join("old-root.pem"));

    // Peers as they were before the rotation: they keep what they loaded.
    let server = issue_server_cert(&cd.state, "rot-server", &w.join("server-old"));
    std::fs::create_dir_all(w.join("caddy-old")).unwrap();
    let caddy = caddy_with_mtls_snippet(
        &w.join("caddy-old"),
        &snippet,
        &server.join("fullchain.pem"),
        &server.join("key.pem"),
    );
    let pem = haproxy_pem(&server, &w.join("server-old.pem"));
    std::fs::create_dir_all(w.join("haproxy-old")).unwrap();
    let haproxy = haproxy_with_mtls(&w.join("haproxy-old"), &pem, &w.join("old-ca.pem"));
    let old_trust = w.join("old-ca.pem");
    let targets = vec![
        ("caddy", Target::new(caddy.port, "localhost", &old_trust)),
        (
            "haproxy",
            Target::new(haproxy.port, "localhost", &old_trust),
        ),
    ];

    let client = Arc::new(
        ContainerSpec::default()
            .label(&format!("{prefix}.enable"), "true")
            .label(&format!("{prefix}.name"), "rot-client")
            .label(&format!("{prefix}.usage"), "client")
            .label(&format!("{prefix}.ttl"), "2h")
            .run(&d)
            .await,
    );
    let first = eventually(
        "the client's first certificate",
        Duration::from_secs(30),
        || {
            let (d, client) = (d.clone(), client.clone());
            async move { read_identity(&d, &client, DIR).await.and_then(Result::ok) }
        },
    )
    .await;
    let first = Arc::new(first);
    assert_eq!(first.chain.len(), 2, "before: leaf and intermediate");
    // A container that wants only the trust (`usage=none`): ca.pem, no key, kept current.
    let trusting = ContainerSpec::default()
        .label(&format!("{prefix}.enable"), "true")
        .label(&format!("{prefix}.name"), "rot-trust")
        .label(&format!("{prefix}.usage"), "none")
        .run(&d)
        .await;
    let before = eventually(
        "ca.pem in the usage=none container",
        Duration::from_secs(30),
        || certs_in_ca_pem(&d, &trusting),
    )
    .await;
    assert_eq!(before, 2, "root and intermediate");
    let (code, _) = trusting
        .exec(&d, &["test", "-e", &format!("{DIR}/key.pem")])
        .await;
    assert_ne!(code, 0, "no key for usage=none");
    let listed = cd
        .status()
        .into_iter()
        .any(|e| e["name"] == "rot-trust" && e["usage"] == "none" && e["serial"].is_null());
    assert!(listed, "the usage=none container is in status");

    // Phase 1: rotate the root while clients call the peers that are not reloaded.
    let current = Arc::new(Mutex::new(first.clone()));
    let load = Arc::new(Load::default());
    let mut tasks = start_load(targets.clone(), current.clone(), None, load.clone());
    tasks.push(follow_identity(
        d.clone(),
        client.clone(),
        current.clone(),
        load.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rotate = Command::new(bin())
        .args(["ca", "rotate", "--root", "--state-dir"])
        .arg(&cd.state)
        .env_remove("CERTDOCK_CONFIG")
        .output()
        .expect("run certdock ca rotate --root");
    assert!(
        rotate.status.success(),
        "ca rotate --root: {}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let new_root = cd.state.join("ca/generations/000001/root.pem");
    let reissued = eventually(
        "the client's certificate re-issued under the new root",
        Duration::from_secs(90),
        || {
            let current = current.clone();
            let first = first.clone();
            async move {
                let id = current.lock().unwrap().clone();
                (id.serial() != first.serial()).then_some(id)
            }
        },
    )
    .await;
    // Both roots went out before any leaf under the new one.
    assert_eq!(self_signed_count(&ca_pem), 2, "ca.pem carries both roots");
    eventually(
        "the usage=none container's ca.pem with both roots",
        Duration::from_secs(30),
        || async { (certs_in_ca_pem(&d, &trusting).await == Some(5)).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (requests, failures) = finish(&load, tasks).await;
    eprintln!(
        "not reloaded: {requests} requests, {} failed",
        failures.len()
    );
    assert!(requests > 50, "too few requests: {requests}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        reissued.chain.len(),
        3,
        "leaf, new intermediate, cross-certificate"
    );

    // The new leaf verifies with only the old root (through the delivered chain) and with
    // only the new root.
    let leaf_dir = w.join("leaf");
    std::fs::create_dir_all(&leaf_dir).unwrap();
    for f in ["cert.pem", "chain.pem"] {
        let (code, text) = client.exec(&d, &["cat", &format!("{DIR}/{f}")]).await;
        assert_eq!(code, 0, "{f}: {text}");
        std::fs::write(leaf_dir.join(f), text).unwrap();
    }
    let (cert, chain) = (leaf_dir.join("cert.pem"), leaf_dir.join("chain.pem"));
    for (what, root) in [("old root only", &old_root), ("new root only", &new_root)] {
        let v = verify(root, &chain, &cert);
        assert!(
            v.status.success(),
            "openssl verify against the {what}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
    drop((caddy, haproxy));

    // Phase 2: the peers reload with the new files; old and new client certificates work.
    let server = issue_server_cert(&cd.state, "rot-server", &w.join("server-new"));
    std::fs::create_dir_all(w.join("caddy-new")).unwrap();
    let caddy = caddy_with_mtls_snippet(
        &w.join("caddy-new"),
        &snippet,
        &server.join("fullchain.pem"),
        &server.join("key.pem"),
    );
    let pem = haproxy_pem(&server, &w.join("server-new.pem"));
    std::fs::create_dir_all(w.join("haproxy-new")).unwrap();
    let haproxy = haproxy_with_mtls(&w.join("haproxy-new"), &pem, &ca_pem);
    let targets = vec![
        ("caddy", Target::new(caddy.port, "localhost", &ca_pem)),
        ("haproxy", Target::new(haproxy.port, "localhost", &ca_pem)),
        // A client that still trusts only the old root accepts the new server certificate.
        (
            "caddy/old-root",
            Target::new(caddy.port, "localhost", &old_root),
        ),
    ];
    let load = Arc::new(Load::default());
    let mut tasks = start_load(targets, current.clone(), Some(first.clone()), load.clone());
    tasks.push(follow_identity(
        d.clone(),
        client.clone(),
        current.clone(),
        load.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (requests, failures) = finish(&load, tasks).await;
    eprintln!("reloaded: {requests} requests, {} failed", failures.len());
    assert!(requests > 50, "too few requests: {requests}");
    assert!(failures.is_empty(), "{failures:#?}");
    drop((caddy, haproxy));
}
