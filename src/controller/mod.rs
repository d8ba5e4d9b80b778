//! The Docker controller: watcher → container store → one reconcile loop → executor and outputs.

pub mod clock;
pub mod config;
pub mod delivery_ledger;
pub mod executor;
pub mod file_watch;
pub mod holdings;
#[cfg(test)]
mod loop_harness;
#[cfg(test)]
mod loop_settings_tests;
#[cfg(test)]
mod loop_tests;
pub mod outputs;
mod quiet;
pub mod reconciler;
pub mod retry;
pub mod runner;
pub mod status;
pub mod store;
#[cfg(test)]
mod testing;

pub use clock::Clock;
pub use config::{ControllerConfig, Reloadable};
pub use runner::Controller;
