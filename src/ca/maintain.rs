//! The CA's periodic upkeep in a long-running process (`run`, `serve`): intermediate rollover.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::local::LocalCa;

/// How often the CA checks whether its intermediate is due for rollover.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// Calls [`LocalCa::maintain`] every `every`, starting now. Runs until dropped; a failure is
/// logged and retried at the next tick.
pub async fn maintain_periodically(ca: Arc<LocalCa>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let ca = ca.clone();
        match tokio::task::spawn_blocking(move || ca.maintain(OffsetDateTime::now_utc())).await {
            Ok(Ok(true)) => tracing::info!("the CA bundle changed (intermediate rollover)"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "CA maintenance failed"),
            Err(e) => tracing::error!(error = %e, "CA maintenance task failed"),
        }
    }
}
