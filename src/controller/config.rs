//! What the controller is told: its settings, and the config file that may replace them while it runs.

use std::path::PathBuf;
use std::time::Duration;

use super::outputs::OutputDirs;
use crate::core::policy::{NamePolicy, TtlPolicy};
use crate::docker::WatchConfig;
use crate::proxy::traefik::TlsOptionsBase;

/// Everything the controller is told at start (and again at every reload).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub state_dir: PathBuf,
    pub dirs: OutputDirs,
    pub label_prefix: String,
    pub names: NamePolicy,
    pub ttls: TtlPolicy,
    pub proxy_network: Option<String>,
    pub resync: Duration,
    pub traefik_options: TlsOptionsBase,
    /// How long files of a certificate no container wants stay before removal.
    pub grace: Duration,
    /// The forward-auth decider Traefik asks (`https://<api name>:<port>`, this host's API);
    /// `None` when this process serves none, and then an allow list is refused.
    pub forward_auth: Option<String>,
    /// After a CA rollover, certificates issued before it are re-issued spread over this.
    pub rollover_spread: Duration,
}

impl ControllerConfig {
    /// What the Docker watcher needs; a reload that changes it restarts the watch.
    pub fn watch_config(&self) -> WatchConfig {
        WatchConfig {
            label_prefix: self.label_prefix.clone(),
            resync: self.resync,
        }
    }
}

/// The config file and how to turn it into a new configuration (flags and environment still
/// take precedence over the file, as at start).
pub struct Reloadable {
    pub path: PathBuf,
    pub load: Box<dyn Fn() -> Result<ControllerConfig, String> + Send + Sync>,
}
