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
/// record is durable.
pub async fn issue(
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
    acme.ca.sign(auth, now)?.durable().await
}

/// At start-up: an order left `processing` by a crash got no certificate to its client. A
/// certificate the CA recorded for it (the crash fell between the inventory and this journal)
/// was never handed out, so it is revoked; the order goes back to `ready`, and the client's
/// retried finalize issues exactly one certificate. Challenges left `processing` are failed
/// with a reason (their validation task died with the process).
pub fn recover(acme: &Acme) -> std::io::Result<()> {
    let now = OffsetDateTime::now_utc();
    for mut order in acme.store.processing_orders()? {
        let who = requester(&order.account, &order.id);
        let orphans: Vec<String> = acme
            .ca
            .with_inventory(|inv| {
                inv.entries()
                    .filter(|e| e.record.requester == who && e.revoked_at.is_none())
                    .map(|e| e.record.serial.clone())
                    .collect()
            })
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        for serial in orphans {
            tracing::warn!(%serial, order = %order.id, "ACME: revoking a certificate a crash kept from its client");
            acme.ca
                .revoke(&serial, now)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        order.finalized = None;
        acme.store.write(Batch::default().order(order))?;
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
        acme.store.write(Batch::default().authz(z))?;
    }
    Ok(())
}
