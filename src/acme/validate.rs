//! The CA's side of http-01 (RFC 8555 §8.3) and tls-alpn-01 (RFC 8737), run in the background.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::Acme;
use super::jws::{Jwk, key_authorization};
use super::model::{ChallengeType, Status};
use super::problem::Problem;
use super::request::unix_now;
use super::slots::Slot;
use super::store::Batch;
use crate::core::names::San;
use crate::tls::danger::{AnyServerCert, Use};

/// A validation that has not finished by then fails (`connection`); the client may order again.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The key authorization is ~87 bytes; a larger answer is not one.
const MAX_HTTP_BODY: usize = 8 * 1024;
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// id-pe-acmeIdentifier (RFC 8737 §6.1).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// Validates challenge `kind` of authorization `authz_id` and records valid or invalid. `slot`
/// is this validation's place among those running (`acme::slots`), given back when it ends.
pub async fn run(
    acme: Arc<Acme>,
    authz_id: String,
    kind: ChallengeType,
    account_id: String,
    slot: Slot,
) {
    let _running = slot;
    let found = acme.store.read(|s| {
        let z = s.authz(&authz_id)?.clone();
        let a = s.account(&account_id)?.clone();
        Some((z, a))
    });
    let Ok(Some((z, account))) = found else {
        tracing::warn!(authz = %authz_id, "ACME validation: authorization or account vanished");
        return;
    };
    let Some(ch) = z.challenges.iter().find(|c| c.kind == kind) else {
        return;
    };
    let outcome = match Jwk::from_raw(&account.jwk) {
        Ok(key) => {
            let key_auth = key_authorization(&ch.token, &key);
            let check = validate(&acme, &z.identifier.value, kind, &ch.token, &key_auth);
            tokio::time::timeout(TIMEOUT, check)
                .await
                .unwrap_or_else(|_| {
                    Err(problem(
                        "connection",
                        format!("no answer within {}s", TIMEOUT.as_secs()),
                    ))
                })
        }
        Err(e) => Err(Problem::from(e)),
    };
    match &outcome {
        Ok(()) => {
            tracing::info!(authz = %authz_id, challenge = kind.as_str(), name = %z.identifier.value, "ACME challenge valid")
        }
        Err(p) => {
            tracing::info!(authz = %authz_id, challenge = kind.as_str(), name = %z.identifier.value, error = %p.detail, "ACME challenge invalid")
        }
    }
    let acme2 = acme.clone();
    let written = tokio::task::spawn_blocking(move || {
        acme2.store.update(|s| {
            let Some(mut z) = s.authz(&authz_id).cloned() else {
                return (None, ());
            };
            let Some(c) = z.challenges.iter_mut().find(|c| c.kind == kind) else {
                return (None, ());
            };
            if c.status != Status::Processing {
                return (None, ());
            }
            match outcome {
                Ok(()) => {
                    c.status = Status::Valid;
                    c.validated = Some(unix_now());
                    z.status = Status::Valid;
                }
                Err(p) => {
                    c.status = Status::Invalid;
                    c.error = Some(p);
                    z.status = Status::Invalid;
                }
            }
            (Some(Batch::default().authz(z)), ())
        })
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("ACME validation: the outcome could not be recorded");
    }
}

fn problem(kind: &str, detail: String) -> Problem {
    Problem::new(kind, StatusCode::BAD_REQUEST, detail)
}

async fn validate(
    acme: &Acme,
    name: &str,
    kind: ChallengeType,
    token: &str,
    key_auth: &str,
) -> Result<(), Problem> {
    match kind {
        ChallengeType::Http01 => http_01(name, acme.config.http_port, token, key_auth).await,
        ChallengeType::TlsAlpn01 => tls_alpn_01(name, acme.config.tls_port, key_auth).await,
    }
}

fn http_client() -> Result<&'static reqwest::Client, Problem> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // Plain HTTP only; a TLS config is still needed to build a client without a
            // process-wide rustls provider. Redirects are not followed: the answer must come
            // from the name itself.
            let tls = ClientConfig::builder_with_provider(crate::tls::provider())
                .with_protocol_versions(crate::tls::VERSIONS)
                .map_err(|e| e.to_string())?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(TIMEOUT)
                .timeout(TIMEOUT)
                .user_agent("certdock-acme-validator")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Problem::server(format!("HTTP client: {e}")))
}

/// GET http://NAME:PORT/.well-known/acme-challenge/TOKEN; the body (trailing white space
/// trimmed) must be the key authorization.
async fn http_01(name: &str, port: u16, token: &str, key_auth: &str) -> Result<(), Problem> {
    let host = match San::parse(name) {
        Ok(San::Ip(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
        _ => name.to_string(),
    };
    let url = format!("http://{host}:{port}/.well-known/acme-challenge/{token}");
    let mut resp = http_client()?
        .get(&url)
        .send()
        .await
        .map_err(|e| problem("connection", format!("GET {url}: {}", error_chain(&e))))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(problem(
            "incorrectResponse",
            format!(
                "GET {url} answered {} (redirects are not followed)",
                resp.status()
            ),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| problem("connection", format!("GET {url}: {}", error_chain(&e))))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_HTTP_BODY {
            return Err(problem(
                "incorrectResponse",
                format!("GET {url}: the answer is larger than {MAX_HTTP_BODY} bytes"),
            ));
        }
    }
    let got = String::from_utf8_lossy(&body);
    if got.trim_end() != key_auth {
        return Err(problem(
            "incorrectResponse",
            format!(
                "GET {url}: the body is not the key authorization (got {:?})",
                got.chars().take(100).collect::<String>()
            ),
        ));
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// TLS to NAME:PORT with SNI NAME and ALPN `acme-tls/1`; the self-signed certificate must hold
/// exactly that dNSName and the critical acmeIdentifier with SHA-256 of the key authorization.
async fn tls_alpn_01(name: &str, port: u16, key_auth: &str) -> Result<(), Problem> {
    let sni = ServerName::try_from(name.to_string())
        .map_err(|e| problem("malformed", format!("{name:?} as SNI: {e}")))?;
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Problem::server(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert::new(
            crate::tls::provider(),
            Use::AcmeValidation,
        )))
        .with_no_client_auth();
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let addr = format!("{name}:{port}");
    let tcp = TcpStream::connect((name, port))
        .await
        .map_err(|e| problem("connection", format!("connecting to {addr}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(sni, tcp)
        .await
        .map_err(|e| problem("tls", format!("TLS with {addr} (ALPN acme-tls/1): {e}")))?;
    let conn = tls.get_ref().1;
    if conn.alpn_protocol() != Some(ACME_TLS_ALPN) {
        return Err(problem(
            "tls",
            format!("{addr} did not negotiate ALPN acme-tls/1"),
        ));
    }
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| problem("tls", format!("{addr} sent no certificate")))?;
    check_alpn_cert(der, name, key_auth)
        .map_err(|why| problem("incorrectResponse", format!("{addr}: {why}")))
}

/// The RFC 8737 §3 checks on the validation certificate.
pub fn check_alpn_cert(der: &[u8], name: &str, key_auth: &str) -> Result<(), String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("subjectAltName: {e}"))?
        .ok_or("the certificate has no subjectAltName")?;
    match san.value.general_names.as_slice() {
        [GeneralName::DNSName(d)] if d.eq_ignore_ascii_case(name) => {}
        other => {
            return Err(format!(
                "subjectAltName must be exactly dNSName {name:?}, not {other:?}"
            ));
        }
    }
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
        .ok_or("no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)")?;
    if !ext.critical {
        return Err("the acmeIdentifier extension must be critical".into());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key_auth.as_bytes());
    let mut want = vec![0x04, 0x20];
    want.extend_from_slice(digest.as_ref());
    if ext.value != want.as_slice() {
        return Err("acmeIdentifier is not SHA-256 of the key authorization".into());
    }
    Ok(())
}
