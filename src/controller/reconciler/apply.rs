//! What a pass's results do to the holdings: issued certificates and failures, deliveries,
//! refusals and orphans (the second half of [`Reconciler::reconcile`]).

use std::time::SystemTime;

use time::OffsetDateTime;

use super::{Reconciler, Wake};
use crate::ca::source::CertSource;
use crate::controller::config::ControllerConfig;
use crate::controller::executor::WorkResult;
use crate::controller::retry::{FailureKind, error_policy};
use crate::core::plan::{Failure, Identity, Plan};
use crate::docker::DockerActions;

impl<S: CertSource, A: DockerActions> Reconciler<S, A> {
    /// A refusal waits for a change: when an identity's order is no longer the refused one
    /// (labels changed), its back-off is dropped. Returns whether any was, to plan again now.
    pub(super) fn retry_changed_orders(&mut self, p: &mut Plan) -> bool {
        let changed: Vec<Identity> = self
            .refused
            .iter()
            .filter(|(id, spec)| p.desired.get(*id).is_none_or(|d| d.spec != **spec))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &changed {
            self.refused.remove(id);
            self.holdings.failures.remove(id);
        }
        !changed.is_empty()
    }

    /// Refusals are logged when they first appear, not on every pass.
    pub(super) fn log_refusals(&mut self, p: &Plan) {
        for r in &p.refused {
            if self
                .holdings
                .refusals_logged
                .insert((r.container_id.clone(), r.error.clone()))
            {
                tracing::warn!(container = %r.container_name, error = %r.error, "container refused");
            }
        }
        self.holdings.refusals_logged.retain(|(id, e)| {
            p.refused
                .iter()
                .any(|r| &r.container_id == id && &r.error == e)
        });
    }

    /// Records one certificate's outcome. Returns whether files were published.
    pub(super) fn apply(&mut self, r: WorkResult, now: SystemTime, wake: &mut Wake) -> bool {
        let WorkResult {
            id,
            order,
            issued,
            issue_error,
            published,
            copied,
            failed_actions,
            action_error,
        } = r;
        let h = &mut self.holdings;
        if let Some(held) = issued {
            tracing::info!(cert = %id, serial = %held.serial, "issued");
            if h.held.contains_key(&id) {
                self.metrics.renewed("controller");
            } else {
                self.metrics.issued("controller");
            }
            let not_after = OffsetDateTime::from(held.not_after);
            self.metrics.set_certificate(&id.to_string(), not_after);
            wake.at(held.renew_at.min(held.not_after));
            if let Err(e) = h.store(&id, held) {
                tracing::error!(cert = %id, error = %e, "cannot store the new certificate");
            }
            h.failures.remove(&id);
            self.refused.remove(&id);
        } else if let Some(err) = issue_error {
            let kind = FailureKind::from(&err);
            let attempts = h.failures.get(&id).map_or(0, |f| f.attempts + 1);
            let not_after = h.held.get(&id).map_or(now, |held| held.not_after);
            let retry_at = error_policy(kind, attempts, now, not_after);
            tracing::warn!(cert = %id, error = %err, attempts = attempts + 1, ?kind, "issuance failed; retrying later");
            self.metrics.error(kind.metric());
            wake.at(retry_at);
            match (kind, order) {
                (FailureKind::Refused, Some(order)) => {
                    self.refused.insert(id.clone(), order);
                }
                _ => {
                    self.refused.remove(&id);
                }
            }
            let error = err.to_string();
            h.failures.insert(
                id.clone(),
                Failure {
                    attempts,
                    retry_at,
                    error,
                },
            );
        }
        let delivered = published.is_some();
        if let Some(v) = published {
            h.ledger.note_published(&id, v);
        }
        h.ledger.note_copied(copied);
        for _ in 0..failed_actions {
            self.metrics.error(FailureKind::Action.metric());
        }
        if failed_actions > 0 {
            wake.at(error_policy(FailureKind::Action, 0, now, now));
        }
        match action_error {
            Some(e) => h.delivery_errors.insert(id, e),
            None => h.delivery_errors.remove(&id),
        };
        delivered
    }

    /// Starts the grace period of certificates no container wants, and removes those past it.
    pub(super) fn apply_orphans(&mut self, cfg: &ControllerConfig, p: &Plan, now: SystemTime) {
        let h = &mut self.holdings;
        for id in &p.newly_orphaned {
            h.ledger.orphaned(id, now);
        }
        h.ledger.wanted(|id| p.desired.contains_key(id));
        for id in &p.remove {
            tracing::info!(cert = %id, "no container uses this certificate any more; removing its files");
            if let Err(e) =
                crate::controller::outputs::unpublish(&cfg.dirs, id).and_then(|()| h.forget(id))
            {
                tracing::warn!(cert = %id, error = %e, "cannot remove an unused certificate");
            }
        }
    }
}
