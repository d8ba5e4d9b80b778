//! The Docker adapter: connection, container watcher, and the actions the controller takes.

pub mod actions;
mod backoff;
pub mod client;
mod convert;
mod error;
pub mod in_root;
pub mod ops;
pub mod upload;
pub mod watcher;

pub use actions::{BollardActions, DockerActions, Upload};
pub use bollard::Docker;
pub use client::{DEFAULT_DOCKER_HOST, DockerHost, connect, connect_to};
pub use error::DockerError;
pub use ops::{connect_network, inspect, restart, send_signal};
pub use upload::{upload_files, upload_first};
pub use watcher::{WatchConfig, WatchEvent, watch};
