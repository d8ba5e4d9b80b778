//! The Docker controller: watcher → container store → one reconcile loop → executor and outputs.

pub mod executor;
pub mod file_watch;
pub mod holdings;
pub mod outputs;
pub mod reconciler;
pub mod status;
pub mod store;

pub use reconciler::{ControllerConfig, run};
