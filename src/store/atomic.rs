//! Crash-safe file writes: a reader sees the old content or the new, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File modes certdock writes with. Keys are never readable by anyone but the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0644: certificates, CA bundles, proxy configuration.
    Public,
    /// 0600: private keys, tokens, state.
    Secret,
}

impl Mode {
    pub fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        }
    }
}

/// The temporary name used while writing `path`. It starts with a dot and ends in `.tmp`, so
/// neither Traefik's file provider (`.yml`/`.yaml`/`.toml` only) nor a glob on `*.pem` picks it up.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically: temporary file (created with `mode`, so a key is never
/// readable by others even for an instant), fsync, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode.bits())
            .open(&tmp)?;
        // `mode` at create is filtered by the umask and ignored if the file already existed.
        f.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like [`write_atomic`], but leaves the file untouched when its content is already `bytes`.
/// Returns whether it wrote. Proxies watching the directory see no event for a no-op.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<bool> {
    match fs::read(path) {
        Ok(old) if old == bytes => {
            let meta = fs::metadata(path)?;
            if meta.permissions().mode() & 0o777 != mode.bits() {
                fs::set_permissions(path, fs::Permissions::from_mode(mode.bits()))?;
            }
            Ok(false)
        }
        _ => write_atomic(path, bytes, mode).map(|()| true),
    }
}

/// `value` as pretty JSON in `path` (0600), written only when it changed (see [`write_if_changed`]).
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<bool> {
    let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_if_changed(path, &json, Mode::Secret)
}

/// The JSON in `path`; `None` when there is no such file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes a directory (and its parents) with the given mode on the last component. An existing
/// directory is left alone when its mode is already right (a chmod is an event for watchers),
/// and when it belongs to someone else (a volume's root in Kubernetes) and cannot be changed.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    let existed = path.is_dir();
    fs::create_dir_all(path)?;
    if fs::metadata(path)?.permissions().mode() & 0o7777 != mode {
        match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
            Err(e) if existed && e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::debug!(dir = %path.display(), "cannot change the mode of a directory we do not own; leaving it");
            }
            other => other?,
        }
    }
    Ok(())
}

/// fsync a directory so that a rename inside it survives power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"one", Mode::Secret).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&p, b"two", Mode::Secret).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("certdock.yml");
        assert!(write_if_changed(&p, b"a: 1\n", Mode::Public).unwrap());
        let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&p).unwrap());
        assert!(!write_if_changed(&p, b"a: 1\n", Mode::Public).unwrap());
        let ino2 = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&p).unwrap());
        assert_eq!(ino, ino2);
        assert!(write_if_changed(&p, b"a: 2\n", Mode::Public).unwrap());
    }
}
