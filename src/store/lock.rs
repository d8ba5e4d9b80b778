//! An advisory lock on the state directory, so that two processes never mutate it at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Held while mutating the state directory; released on drop (or when the process dies, which
/// is why an OS lock beats a lock file that would have to be cleaned up after `kill -9`).
/// `dir/lock`, created 0600 if missing; its content is never used, only its lock.
fn open_lock_file(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join("lock"))
}

#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Blocks until the exclusive lock on `dir/lock` is ours.
    pub fn exclusive(dir: &Path) -> io::Result<Self> {
        let file = open_lock_file(dir)?;
        file.lock()?;
        Ok(Self { _file: file })
    }
}

/// The lock file kept open, for a thread that takes the state lock over and over (the
/// inventory writer, once per batch): the same exclusion as [`StateLock::exclusive`] (a lock
/// belongs to an open file, so this one also excludes the other handles of this process),
/// without opening the file every time.
#[derive(Debug)]
pub struct StateLockFile {
    file: File,
}

impl StateLockFile {
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            file: open_lock_file(dir)?,
        })
    }

    /// Blocks until the exclusive lock is ours; released when the guard drops.
    pub fn exclusive(&self) -> io::Result<HeldLock<'_>> {
        self.file.lock()?;
        Ok(HeldLock { file: &self.file })
    }
}

/// The state lock taken through a [`StateLockFile`].
#[derive(Debug)]
pub struct HeldLock<'a> {
    file: &'a File,
}

impl Drop for HeldLock<'_> {
    fn drop(&mut self) {
        // Closing would release it as well; unlocking keeps the file open for next time.
        let _ = self.file.unlock();
    }
}
