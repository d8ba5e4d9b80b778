//! The CA's side of http-01 (RFC 8555 §8.3) and tls-alpn-01 (RFC 8737), run in the background.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::jws::{Jwk, key_authorization};
use super::model::{ChallengeType, Status};
use super::problem::Problem;
use super::request::unix_now;
use super::slots::Slot;
use super::store::Batch;
use super::{Acme, http01};
use crate::tls::danger::{AnyServerCert, Use};

/// A validation that has not finished by then fails (`connection`); the client may order again.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// id-pe-acmeIdentifier (RFC 8737 §6.1).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// Starts validating challenge `kind` of authorization `authz_id`; the validation records valid
/// or invalid itself. `slot` is its place among those running (`acme::slots`), given back when
/// it ends. http-01 runs on one blocking thread from the name's resolution to the outcome's
/// fsync (see [`super::http01`]); tls-alpn-01 runs as a task.
pub fn start(
    acme: Arc<Acme>,
    authz_id: String,
    kind: ChallengeType,
    account_id: String,
    slot: Slot,
) -> JoinHandle<()> {
    let deadline = Instant::now() + TIMEOUT;
    match kind {
        ChallengeType::Http01 => tokio::task::spawn_blocking(move || {
            let _running = slot;
            let Some(target) = Target::find(&acme, &authz_id, kind, &account_id) else {
                return;
            };
            let outcome = target.key_auth.and_then(|key_auth| {
                http01::check(
                    &target.name,
                    acme.config.http_port,
                    &target.token,
                    &key_auth,
                    deadline,
                )
            });
            record(&acme, &authz_id, kind, outcome);
        }),
        ChallengeType::TlsAlpn01 => tokio::spawn(async move {
            let _running = slot;
            let Some(target) = Target::find(&acme, &authz_id, kind, &account_id) else {
                return;
            };
            let outcome = match target.key_auth {
                Ok(key_auth) => {
                    let check = tls_alpn_01(&target.name, acme.config.tls_port, &key_auth);
                    tokio::time::timeout_at(deadline.into(), check)
                        .await
                        .unwrap_or_else(|_| Err(too_late()))
                }
                Err(p) => Err(p),
            };
            let _ =
                tokio::task::spawn_blocking(move || record(&acme, &authz_id, kind, outcome)).await;
        }),
    }
}

/// A validation the challenge POST stopped waiting for: if it is still running at its
/// deadline (a name whose resolution hangs: the resolver cannot be interrupted), it fails
/// then, and whatever it finds later is not recorded (only a `processing` challenge is).
pub async fn watch(
    acme: Arc<Acme>,
    authz_id: String,
    kind: ChallengeType,
    task: JoinHandle<()>,
    left: Duration,
) {
    if tokio::time::timeout(left, task).await.is_err() {
        let _ =
            tokio::task::spawn_blocking(move || record(&acme, &authz_id, kind, Err(too_late())))
                .await;
    }
}

fn too_late() -> Problem {
    problem(
        "connection",
        format!("no answer within {}s", TIMEOUT.as_secs()),
    )
}

/// What a validation checks: the name, the challenge's token and the key authorization.
struct Target {
    name: String,
    token: String,
    key_auth: Result<String, Problem>,
}

impl Target {
    fn find(acme: &Acme, authz_id: &str, kind: ChallengeType, account_id: &str) -> Option<Self> {
        let found = acme.store.read(|s| {
            let z = s.authz(authz_id)?;
            let a = s.account(account_id)?;
            let ch = z.challenges.iter().find(|c| c.kind == kind)?;
            Some(Target {
                name: z.identifier.value.clone(),
                token: ch.token.clone(),
                key_auth: Jwk::from_raw(&a.jwk)
                    .map(|key| key_authorization(&ch.token, &key))
                    .map_err(Problem::from),
            })
        });
        match found {
            Ok(Some(t)) => Some(t),
            _ => {
                tracing::warn!(authz = %authz_id, "ACME validation: authorization, account or challenge vanished");
                None
            }
        }
    }
}

/// Records the outcome (blocking: the journal's fsync) if the challenge is still `processing`.
fn record(acme: &Acme, authz_id: &str, kind: ChallengeType, outcome: Result<(), Problem>) {
    let written = acme.store.update(|s| {
        let Some(mut z) = s.authz(authz_id).cloned() else {
            return (None, None);
        };
        let name = z.identifier.value.clone();
        let Some(c) = z.challenges.iter_mut().find(|c| c.kind == kind) else {
            return (None, None);
        };
        if c.status != Status::Processing {
            return (None, None);
        }
        match &outcome {
            Ok(()) => {
                c.status = Status::Valid;
                c.validated = Some(unix_now());
                z.status = Status::Valid;
            }
            Err(p) => {
                c.status = Status::Invalid;
                c.error = Some(p.clone());
                z.status = Status::Invalid;
            }
        }
        (Some(Batch::default().authz(z)), Some(name))
    });
    match (written, &outcome) {
        (Ok(None), _) => {}
        (Ok(Some(name)), Ok(())) => {
            tracing::info!(authz = %authz_id, challenge = kind.as_str(), %name, "ACME challenge valid")
        }
        (Ok(Some(name)), Err(p)) => {
            tracing::info!(authz = %authz_id, challenge = kind.as_str(), %name, error = %p.detail, "ACME challenge invalid")
        }
        (Err(e), _) => {
            tracing::error!(authz = %authz_id, error = %e, "ACME validation: the outcome could not be recorded")
        }
    }
}

fn problem(kind: &str, detail: String) -> Problem {
    Problem::new(kind, StatusCode::BAD_REQUEST, detail)
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
