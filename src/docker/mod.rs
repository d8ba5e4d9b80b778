//! The Docker adapter: connection, container watcher, and the actions the controller takes.

pub mod client;
mod error;

pub use bollard::Docker;
pub use client::{DEFAULT_DOCKER_HOST, DockerHost, connect, connect_to};
pub use error::DockerError;
