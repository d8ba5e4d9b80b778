//! `STATE/status.json`: the controller's view of every managed certificate, published for
//! `certdock status` (which runs as another process).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::atomic::{Mode, write_if_changed};

/// One managed certificate (or one container whose labels were refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub name: String,
    /// Container name, or null for certificates not tied to a container.
    pub container: Option<String>,
    pub sans: Vec<String>,
    pub usage: String,
    pub serial: Option<String>,
    /// RFC 3339.
    pub not_after: Option<String>,
    /// RFC 3339.
    pub next_renewal: Option<String>,
    /// The last error for this certificate or container, null when none.
    pub error: Option<String>,
}

const FILE: &str = "status.json";

pub fn write(state_dir: &Path, entries: &[StatusEntry]) -> io::Result<bool> {
    let json = serde_json::to_vec_pretty(entries).map_err(io::Error::other)?;
    write_if_changed(&state_dir.join(FILE), &json, Mode::Secret)
}

/// `None` when no controller has ever written a status.
pub fn read(state_dir: &Path) -> io::Result<Option<Vec<StatusEntry>>> {
    match std::fs::read(state_dir.join(FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
