//! revokeCert (RFC 8555 §7.6) and renewalInfo (ARI, RFC 9773).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use time::OffsetDateTime;

use super::Acme;
use super::jws::Jwk;
use super::problem::{Problem, Result};
use super::request::{KeyFrom, Post, blocking, rfc3339, store_err, verify};

#[derive(Deserialize)]
struct RevokeRequest {
    certificate: String,
    #[serde(default)]
    reason: Option<u8>,
}

/// The certificate's public key as a JWK, to compare with a `jwk`-signed revocation.
fn cert_jwk(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<Jwk> {
    use x509_parser::public_key::PublicKey;
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    match cert.public_key().parsed().ok()? {
        PublicKey::EC(point) => {
            let d = point.data();
            (d.len() == 65 && d[0] == 4).then(|| Jwk::Ec {
                x: d[1..33].to_vec(),
                y: d[33..].to_vec(),
            })
        }
        PublicKey::RSA(rsa) => Some(Jwk::Rsa {
            n: strip(rsa.modulus),
            e: strip(rsa.exponent),
        }),
        _ if cert.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Some(Jwk::Ed25519 {
                x: cert.public_key().subject_public_key.data.to_vec(),
            })
        }
        _ => None,
    }
}

fn same_key(a: &Jwk, b: &Jwk) -> bool {
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    match (a, b) {
        (Jwk::Rsa { n, e }, Jwk::Rsa { n: n2, e: e2 }) => {
            strip(n) == strip(n2) && strip(e) == strip(e2)
        }
        _ => a == b,
    }
}

pub async fn revoke_cert(State(acme): State<Arc<Acme>>, post: Post) -> Result<Response> {
    let signed = verify(&acme, post, KeyFrom::Any)?;
    let req: RevokeRequest = signed.payload()?;
    // RFC 5280 reasons certdock accepts; 7 is unused and 8 (removeFromCRL) is not a revocation.
    if let Some(r) = req.reason
        && !matches!(r, 0..=6 | 9 | 10)
    {
        return Err(Problem::new(
            "badRevocationReason",
            StatusCode::BAD_REQUEST,
            format!("reason {r} is not a revocation reason (0-6, 9, 10)"),
        ));
    }
    let der = URL_SAFE_NO_PAD
        .decode(req.certificate.trim_end_matches('='))
        .map_err(|e| Problem::malformed(format!("certificate is not base64url DER: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Problem::malformed(format!("certificate: {e}")))?;
    let serial = hex::encode(cert.raw_serial());
    let serial = serial.trim_start_matches("00").to_string();
    let known = acme
        .ca
        .with_inventory(|inv| inv.get(&serial).map(|e| e.revoked_at.is_some()))
        .map_err(Problem::from)?;
    let Some(already) = known else {
        return Err(Problem::new(
            "malformed",
            StatusCode::NOT_FOUND,
            format!("certificate {serial} was not issued by this CA"),
        ));
    };
    let allowed = match &signed.account {
        Some(account) => acme
            .store
            .read(|s| s.order_by_serial(&serial).map(|o| o.account == account.id))
            .map_err(store_err)?
            .unwrap_or(false),
        None => cert_jwk(&cert).is_some_and(|k| same_key(&k, &signed.key)),
    };
    if !allowed {
        return Err(Problem::unauthorized(format!(
            "certificate {serial} may be revoked only by the account that ordered it or with its own key"
        )));
    }
    if already {
        return Err(Problem::new(
            "alreadyRevoked",
            StatusCode::BAD_REQUEST,
            format!("certificate {serial} is already revoked"),
        ));
    }
    let ca = acme.ca.clone();
    let s2 = serial.clone();
    blocking(move || Ok(ca.revoke(&s2, OffsetDateTime::now_utc())?)).await?;
    tracing::info!(%serial, by = if signed.account.is_some() { "account" } else { "certificate key" }, "ACME revocation");
    Ok(StatusCode::OK.into_response())
}

/// `GET /acme/renewal-info/<base64url(AKI keyIdentifier)>.<base64url(serial)>`: a window inside
/// the one certdock's own renewals use (from 7/12 to 8/12 of the lifetime, see
/// `core::renew::renew_at`); a revoked certificate should be replaced now.
pub async fn renewal_info(
    State(acme): State<Arc<Acme>>,
    Path(cert_id): Path<String>,
) -> Result<Response> {
    let (aki, serial) = cert_id.split_once('.').ok_or_else(|| {
        Problem::malformed("certID must be base64url(keyIdentifier).base64url(serial)")
    })?;
    let decode = |what: &str, s: &str| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| Problem::malformed(format!("certID {what}: {e}")))
    };
    decode("keyIdentifier", aki)?;
    let serial = hex::encode(decode("serial", serial)?);
    let serial = serial.trim_start_matches("00").to_string();
    let entry = acme
        .ca
        .with_inventory(|inv| inv.get(&serial).cloned())
        .map_err(Problem::from)?
        .ok_or_else(|| {
            Problem::new(
                "malformed",
                StatusCode::NOT_FOUND,
                format!("no certificate {serial} issued here"),
            )
        })?;
    let (nb, na) = (entry.record.not_before, entry.record.not_after);
    let life = (na - nb).max(0);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (start, end) = if entry.revoked_at.is_some() {
        (now - 60, now)
    } else {
        (nb + life * 7 / 12, nb + life * 8 / 12)
    };
    let body = serde_json::json!({
        "suggestedWindow": { "start": rfc3339(start), "end": rfc3339(end) },
    });
    let mut resp = axum::Json(body).into_response();
    // Ask again within a sixth of the lifetime, at most every six hours (RFC 9773 §4.3).
    let retry = (life / 6).clamp(60, 6 * 3600);
    if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(resp)
}
