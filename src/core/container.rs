//! What the Docker adapter observed about one container, as plain data for the pure core.

use std::collections::BTreeMap;

/// A container as listed or inspected, reduced to what planning needs. The Docker adapter fills
/// it; the core never talks to Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Container name without the leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// Names of the networks the container is attached to.
    pub networks: Vec<String>,
}

impl ContainerInfo {
    /// The Compose service name, when the container belongs to a Compose project.
    pub fn compose_service(&self) -> Option<&str> {
        self.labels
            .get("com.docker.compose.service")
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// Created but never started: files can be copied in before the process reads them.
    Created,
    Running,
    /// Paused, restarting, exited, dead: it still exists and keeps its certificate.
    Stopped,
}
