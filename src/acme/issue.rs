//! The one call from ACME into the CA, and finalize's crash recovery (rewired at the merge).

use std::time::Duration;

use time::OffsetDateTime;

use super::Acme;
use super::model::Status;
use super::store::Batch;
use crate::ca::CaError;
use crate::ca::issue::Issued;
use crate::ca::local::ParsedCsr;
use crate::core::names::Usage;

/// Who asked, as the inventory records it: the account and the order, so that recovery can
/// find a certificate signed for an order whose finalize never completed.
pub fn requester(account: &str, order: &str) -> String {
    format!("acme:{account}:order:{order}")
}

/// Signs `csr` (names already checked against the order) under the CA's name and ttl policy,
/// and returns the certificate once its inventory record is durable.
pub async fn issue(
    acme: &Acme,
    csr: ParsedCsr,
    ttl: Option<Duration>,
    requester: String,
) -> Result<Issued, CaError> {
    let now = OffsetDateTime::now_utc();
    // Server and client use, like a label's default: ACME clients mostly serve TLS, and
    // certdock's mTLS peers may present the same certificate as clients.
    acme.ca
        .sign_parsed_csr_deferred(csr, ttl, Usage::BOTH, None, requester, now)?
        .durable()
        .await
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
