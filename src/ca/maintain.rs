//! The CA's periodic upkeep in a long-running process (`run`, `serve`): intermediate rollover,
//! picking up a rotation made by another process, and the warning when the root nears its end.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::local::LocalCa;
use crate::metrics::Metrics;

/// How often the CA re-reads its state directory (a rotation by `certdock ca rotate` is in
/// effect here within this) and checks whether its intermediate is due for rollover.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(5);

/// How often the "root in its last tenth" warning is repeated in the log.
const ROOT_WARN_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Calls [`LocalCa::maintain`] every `every`, starting now. Runs until dropped; a failure is
/// logged and retried at the next tick.
pub async fn maintain_periodically(ca: Arc<LocalCa>, every: Duration, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(every);
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = OffsetDateTime::now_utc();
        let task = ca.clone();
        match tokio::task::spawn_blocking(move || task.maintain(now)).await {
            Ok(Ok(true)) => tracing::info!(
                root_fingerprint = %ca.root_fingerprint(),
                "the CA bundle changed (rollover or rotation)"
            ),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "CA maintenance failed"),
            Err(e) => tracing::error!(error = %e, "CA maintenance task failed"),
        }
        if let Ok((last_tenth, not_after)) = ca.root_expiry(now) {
            metrics.set_ca_root(not_after, last_tenth);
            if last_tenth && warned.is_none_or(|w| w.elapsed() >= ROOT_WARN_EVERY) {
                warned = Some(tokio::time::Instant::now());
                tracing::warn!(%not_after, "the root CA is in the last tenth of its life: replace it with `certdock ca rotate --root` (see README, \"Replacing the root\")");
            }
        }
    }
}
