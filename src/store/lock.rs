//! An advisory lock on the state directory, so that two processes never mutate it at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Held while mutating the state directory; released on drop (or when the process dies, which
/// is why an OS lock beats a lock file that would have to be cleaned up after `kill -9`).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Blocks until the exclusive lock on `dir/lock` is ours.
    pub fn exclusive(dir: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("lock"))?;
        file.lock()?;
        Ok(Self { _file: file })
    }
}
