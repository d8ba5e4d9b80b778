//! An HTTPS client for end-to-end tests (rustls, in process, one fresh connection per request),
//! and the rotation driver: call a proxy again and again with the certificate a container holds
//! right now, across rotations, counting every failure.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestContainer;

/// How long one request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client certificate chain (leaf first) and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// From PEM text holding the certificates (leaf first) and the private key.
    pub fn from_pem(pem: &[u8]) -> Result<Identity, String> {
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificates: {e}"))?;
        if chain.is_empty() {
            return Err("no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("key: {e}"))?;
        Ok(Identity { chain, key })
    }

    pub fn from_files(cert: &Path, key: &Path) -> Identity {
        let mut pem = std::fs::read(cert).unwrap_or_else(|e| panic!("{}: {e}", cert.display()));
        pem.extend(std::fs::read(key).unwrap_or_else(|e| panic!("{}: {e}", key.display())));
        Identity::from_pem(&pem).expect("a certificate and its key")
    }

    /// A self-signed certificate no certdock CA ever saw.
    pub fn foreign() -> Identity {
        let c = rcgen::generate_simple_self_signed(vec!["client1".into()]).expect("rcgen");
        Identity {
            chain: vec![c.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(c.signing_key.serialize_der().into()),
        }
    }

    /// The leaf's serial, hex.
    pub fn serial(&self) -> String {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.chain[0]).expect("leaf DER");
        cert.raw_serial_as_string()
    }
}

/// Where to call and whom to trust.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    /// Sent as SNI and checked against the server certificate.
    pub server_name: String,
    pub roots: Arc<rustls::RootCertStore>,
}

impl Target {
    pub fn new(port: u16, server_name: &str, ca_file: &Path) -> Target {
        let pem = std::fs::read(ca_file).unwrap_or_else(|e| panic!("{}: {e}", ca_file.display()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        assert!(!roots.is_empty(), "no CA in {}", ca_file.display());
        Target {
            port,
            server_name: server_name.to_owned(),
            roots: Arc::new(roots),
        }
    }
}

/// `GET /` over a fresh TLS connection: the status code and body, or why it failed.
pub async fn get(target: &Target, identity: Option<&Identity>) -> Result<(u16, String), String> {
    let builder = rustls::ClientConfig::builder().with_root_certificates(target.roots.clone());
    let config = match identity {
        // Refuses a key that does not match the certificate (rustls checks the pair).
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| format!("client identity refused by rustls: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(target.server_name.clone()).map_err(|e| e.to_string())?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        target.server_name, target.port
    );
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        // With TLS 1.3 a refused client certificate shows up here, as an alert after the handshake.
        if let Err(e) = tls.read_to_end(&mut response).await {
            // A peer that closes without close_notify after a complete answer is still an answer.
            if e.kind() != std::io::ErrorKind::UnexpectedEof || response.is_empty() {
                return Err(format!("read: {e}"));
            }
        }
        parse_response(&response)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("incomplete HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// True when the answer is the proxies' `200 ok`.
pub fn is_ok(answer: &Result<(u16, String), String>) -> bool {
    matches!(answer, Ok((200, body)) if body.trim() == "ok")
}

/// Reads the container's current certificate chain and key through `..data`, resolved once by
/// `cd`, so both files come from the same delivered version (the documented way to read a
/// consistent pair). `None` when the read itself failed, e.g. in the microseconds while `..data`
/// is being replaced: that is a retry of the read, not a failed request.
pub async fn read_identity(
    d: &certdock::docker::Docker,
    c: &TestContainer,
    dir: &str,
) -> Option<Result<Identity, String>> {
    let script = format!("cd {dir}/..data && cat fullchain.pem key.pem");
    let (code, out) = c.exec(d, &["sh", "-c", &script]).await;
    if code != 0 || !out.contains("PRIVATE KEY") {
        return None;
    }
    Some(Identity::from_pem(out.as_bytes()))
}

/// What a rotation run saw.
#[derive(Debug, Default)]
pub struct RotationReport {
    pub requests: usize,
    pub failures: Vec<String>,
    /// Reads of the container's files that failed and were retried (not requests).
    pub read_retries: usize,
    /// Serials in the order they were first used.
    pub serials: Vec<String>,
    pub elapsed: Duration,
}

impl RotationReport {
    pub fn rotations(&self) -> usize {
        self.serials.len().saturating_sub(1)
    }
}

/// Calls `target` with the certificate `container` holds in `dir`, re-read before every request,
/// until the serial changed `rotations` times and `settle` more has passed (so the newest
/// certificate is exercised too), or `max` passed. Every request that does not get `200 ok` is a
/// failure, recorded with its reason; a certificate whose key does not match is a failure too.
pub async fn call_through_rotations(
    d: &certdock::docker::Docker,
    container: &TestContainer,
    dir: &str,
    target: &Target,
    rotations: usize,
    settle: Duration,
    max: Duration,
) -> RotationReport {
    let start = Instant::now();
    let mut report = RotationReport::default();
    let mut last_rotation: Option<Instant> = None;
    let mut previous: Option<Identity> = None;
    while start.elapsed() < max {
        if report.rotations() >= rotations && last_rotation.is_some_and(|t| t.elapsed() >= settle) {
            break;
        }
        let identity = match read_identity(d, container, dir).await {
            None => {
                report.read_retries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Some(Err(e)) => {
                report.failures.push(format!("unreadable delivery: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Some(Ok(id)) => id,
        };
        let serial = identity.serial();
        if report.serials.last() != Some(&serial) {
            if let Some(old) = previous.take() {
                last_rotation = Some(Instant::now());
                // A client that has not re-read its files yet still holds the previous
                // certificate, which has not expired: it must keep working too.
                report.requests += 1;
                let answer = get(target, Some(&old)).await;
                if !is_ok(&answer) {
                    report.failures.push(format!(
                        "request {} at {:?} with the replaced serial {}: {answer:?}",
                        report.requests,
                        start.elapsed(),
                        old.serial()
                    ));
                }
            }
            report.serials.push(serial.clone());
        }
        report.requests += 1;
        let answer = get(target, Some(&identity)).await;
        if !is_ok(&answer) {
            report.failures.push(format!(
                "request {} at {:?} with serial {serial}: {answer:?}",
                report.requests,
                start.elapsed()
            ));
        }
        previous = Some(identity);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.elapsed = start.elapsed();
    report
}

/// The rotation suites' container: a client with a 45 s certificate, delivered into the
/// container at `/run/certdock` (certdock must run with `--min-ttl 30s` or lower), labelled
/// `<prefix>.enable=true`, `<prefix>.usage=client`, `<prefix>.ttl=45s`, `<prefix>.name=NAME`
/// with the test's own label prefix (`certdock` for users).
pub async fn short_lived_client(
    d: &certdock::docker::Docker,
    prefix: &str,
    name: &str,
) -> TestContainer {
    super::ContainerSpec::default()
        .label(&format!("{prefix}.enable"), "true")
        .label(&format!("{prefix}.name"), name)
        .label(&format!("{prefix}.usage"), "client")
        .label(&format!("{prefix}.ttl"), "45s")
        .run(d)
        .await
}

/// Waits for the first delivery into `container` and returns it.
pub async fn first_identity(
    d: &certdock::docker::Docker,
    container: &TestContainer,
    dir: &str,
) -> Identity {
    super::process::eventually(
        "the client's first certificate",
        Duration::from_secs(30),
        || async {
            read_identity(d, container, dir)
                .await
                .map(|r| r.expect("a consistent certificate and key"))
        },
    )
    .await
}

/// Asserts a run made requests, saw `rotations` rotations and had no failure, and prints its numbers.
pub fn assert_no_failures(what: &str, report: &RotationReport, rotations: usize) {
    println!(
        "{what}: {} requests, {} failures, {} rotations (serials {:?}), {} read retries, {:.1?}",
        report.requests,
        report.failures.len(),
        report.rotations(),
        report.serials,
        report.read_retries,
        report.elapsed
    );
    assert!(
        report.failures.is_empty(),
        "{what}: {} of {} requests failed:\n{}",
        report.failures.len(),
        report.requests,
        report.failures.join("\n")
    );
    assert!(
        report.rotations() >= rotations,
        "{what}: only {} rotations in {:?} (serials {:?})",
        report.rotations(),
        report.elapsed,
        report.serials
    );
    assert!(
        report.requests >= 100,
        "{what}: too few requests to mean anything"
    );
}
