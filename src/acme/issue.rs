//! The one call from ACME into the CA, and finalize's crash recovery (rewired at the merge).

use std::time::Duration;

use time::OffsetDateTime;

use super::Acme;
use super::model::Status;
use super::store::Batch;
use crate::ca::CaError;
use crate::ca::authorize::{AuthError, Remote};
use crate::ca::csr::Csr;
use crate::ca::issue::SignedCert;
use crate::store::requester::Requester;

/// Who asked, as the inventory records it: the account and the order, so that recovery can
/// find a certificate signed for an order whose finalize never completed.
pub fn requester(account: &str, order: &str) -> Requester {
    Requester::Acme {
        account: account.to_string(),
        order: order.to_string(),
    }
}

/// Signs `csr` (names already checked against the order) under the CA's name and ttl policy,
/// through the CA's one authorize → sign path, and returns the certificate once its inventory
/// record is durable. Blocking: it waits for the inventory writer's fsync.
pub fn issue(
    acme: &Acme,
    csr: Csr,
    ttl: Option<Duration>,
    account: &str,
    order: &str,
) -> Result<SignedCert, CaError> {
    let now = OffsetDateTime::now_utc();
    let auth = acme
        .ca
        .authorize_remote(
            Remote::AcmeOrder {
                account,
                order,
                csr,
                ttl,
            },
            now,
        )
        .map_err(|e| match e {
            AuthError::Ca(ca) => ca,
            other => CaError::Internal(other.to_string()),
        })?;
    acme.ca.sign(auth, now)?.wait()
}

/// At start-up: a certificate the CA recorded for an ACME order that does not hold it (the
/// crash fell between the inventory and this journal) was never handed out, so it is revoked.
/// The inventory is searched, not only the orders left `processing`: the finalize's claim is
/// not fsynced on its own, so a power loss may take it while the certificate's record stays.
/// Orders left `processing` go back to `ready`, and the client's retried finalize issues
/// exactly one certificate. Challenges left `processing` are failed with a reason (their
/// validation task died with the process).
pub fn recover(acme: &Acme) -> std::io::Result<()> {
    let now = OffsetDateTime::now_utc();
    let io = |e: CaError| std::io::Error::other(e.to_string());
    let acme_certs: Vec<(String, String)> = acme
        .ca
        .with_inventory(|inv| {
            inv.entries()
                .filter(|e| e.revoked_at.is_none())
                .filter_map(|e| match &e.record.requester {
                    Requester::Acme { order, .. } => Some((e.record.serial.clone(), order.clone())),
                    _ => None,
                })
                .collect()
        })
        .map_err(io)?;
    let orphans: Vec<(String, String)> = acme.store.read(|s| {
        acme_certs
            .into_iter()
            // Only orders this journal knows: a certificate of an order it never held (a
            // journal older than the inventory) is left alone rather than guessed about.
            .filter(|(serial, order)| {
                s.order(order)
                    .is_some_and(|o| o.cert.as_ref().is_none_or(|c| &c.serial != serial))
            })
            .collect()
    })?;
    for (serial, order) in orphans {
        tracing::warn!(%serial, %order, "ACME: revoking a certificate a crash kept from its client");
        acme.ca.revoke(&serial, now).map_err(io)?;
    }
    let mut batch = Batch::default();
    for mut order in acme.store.processing_orders()? {
        order.finalized = None;
        batch = batch.order(order);
    }
    for mut z in acme.store.processing_authzs()? {
        for c in z
            .challenges
            .iter_mut()
            .filter(|c| c.status == Status::Processing)
        {
            c.status = Status::Invalid;
            c.error = Some(super::problem::Problem::new(
                "connection",
                axum::http::StatusCode::BAD_REQUEST,
                "the CA restarted during this validation; place a new order",
            ));
            z.status = Status::Invalid;
        }
        batch = batch.authz(z);
    }
    if !batch.is_empty() {
        acme.store.write(batch)?;
    }
    Ok(())
}
