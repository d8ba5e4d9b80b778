//! Finalize with a CSR naming exactly the order's identifiers, and the certificate download.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;

use super::Acme;
use super::model::{Order, OrderCert, Status};
use super::order::{ReadOwn, order_json, order_status, order_url, owned_by};
use super::problem::{Problem, Result};
use super::request::{KeyFrom, Post, Signed, blocking, json_answer, store_err, unix_now, verify};
use super::store::Batch;
use crate::ca::csr::Csr;

#[derive(Deserialize)]
struct FinalizeRequest {
    csr: String,
}

fn bad_csr(detail: String) -> Problem {
    Problem::new("badCSR", StatusCode::BAD_REQUEST, detail)
}

/// The CSR of a finalize, verified, with exactly the order's names (CN included).
fn order_csr(order: &Order, b64: &str) -> Result<Csr> {
    let der = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|e| bad_csr(format!("csr is not base64url DER: {e}")))?;
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in STANDARD.encode(&der).as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    let csr = Csr::parse(&pem).map_err(|e| bad_csr(e.to_string()))?;
    let asked: BTreeSet<String> = csr.sans.iter().map(ToString::to_string).collect();
    let ordered: BTreeSet<String> = order
        .identifiers
        .iter()
        .filter_map(|i| i.to_san().ok())
        .map(|s| s.to_string())
        .collect();
    if asked != ordered {
        return Err(bad_csr(format!(
            "the CSR names {:?} (CN and SANs) differ from the order's identifiers {:?}",
            asked, ordered
        )));
    }
    Ok(csr)
}

fn answer(acme: &Acme, signed: &Signed, order: &Order) -> Result<Response> {
    let body = acme
        .store
        .read(|s| order_json(&signed.base, order, s, unix_now()))
        .map_err(store_err)?;
    let url = order_url(&signed.base, &order.id);
    Ok(json_answer(StatusCode::OK, &body, Some(&url), &[]))
}

pub async fn finalize(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    post: Post,
) -> Result<Response> {
    let signed = verify(&acme, post, KeyFrom::Kid)?;
    let order: Order = owned_by(&acme, &signed, &id)?;
    let status = acme
        .store
        .read(|s| order_status(&order, s, unix_now()))
        .map_err(store_err)?;
    match status {
        // A retried finalize (lost answer, restart) gets the order and its one certificate.
        Status::Valid | Status::Processing => return answer(&acme, &signed, &order),
        Status::Ready => {}
        Status::Pending | Status::Invalid => {
            return Err(Problem::new(
                "orderNotReady",
                StatusCode::FORBIDDEN,
                format!(
                    "order {id} is {status:?}, not ready: every authorization must be valid first"
                ),
            ));
        }
    }
    let req: FinalizeRequest = signed.payload()?;
    let csr = order_csr(&order, &req.csr)?;
    // Claim the order: of two finalizes at once, one signs and the other sees `processing`.
    // The claim is written (it survives `kill -9`) but not fsynced: the order's answer waits
    // for the fsync of its outcome below, which covers it. Recovery does not rely on it: a
    // certificate the CA recorded for an order that does not hold it is revoked at start-up
    // whether or not the claim reached the disk (see `issue::recover`).
    let claimed = acme
        .store
        .update_staged(|s| match s.order(&id) {
            Some(o) if o.finalized.is_none() => {
                let mut o = o.clone();
                o.finalized = Some(Status::Processing);
                (Some(Batch::default().order(o.clone())), Some(o))
            }
            _ => (None, None),
        })
        .map_err(store_err)?;
    let Some(mut order) = claimed else {
        return answer(&acme, &signed, &order);
    };
    let ttl = order.ttl_secs.map(Duration::from_secs);
    // Signing, the wait for the inventory's fsync and the order's own fsync, on one blocking
    // thread: the writer's answer wakes it directly, not an async worker that would hand the
    // order's write to a blocking thread again.
    let acme2 = acme.clone();
    let order = blocking(move || {
        match super::issue::issue(&acme2, csr, ttl, &order.account, &order.id) {
            Ok(issued) => {
                order.finalized = Some(Status::Valid);
                order.cert = Some(OrderCert {
                    serial: issued.serial.clone(),
                    chain_pem: issued.fullchain_pem(),
                });
                acme2.metrics.issued("acme");
                tracing::info!(serial = %issued.serial, order = %order.id, "ACME certificate issued");
            }
            Err(e) => {
                let p = Problem::from(e);
                order.finalized = Some(Status::Invalid);
                order.error = Some(p);
            }
        }
        acme2
            .store
            .write(Batch::default().order(order.clone()))
            .map_err(store_err)?;
        Ok(order)
    })
    .await?;
    answer(&acme, &signed, &order)
}

pub async fn certificate(ReadOwn { item: order, .. }: ReadOwn<Order>) -> Result<Response> {
    let cert = order
        .cert
        .ok_or_else(|| Problem::not_found("certificate (the order is not valid yet)"))?;
    Ok((
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        cert.chain_pem,
    )
        .into_response())
}
