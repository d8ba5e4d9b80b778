//! Copying files into a container through the archive API, swapped in atomically.

use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::container::PathStatResponse;
use bollard::query_parameters::{ContainerArchiveInfoOptions, UploadToContainerOptions};
use tar::{Builder, EntryType, Header};

use super::DockerError;
use super::actions::Upload;
use crate::core::atomic_dir::{
    DATA_LINK, Step, VERSION_FILE, file_link_target, is_reserved, link_is_current, slot_of,
    swap_steps, version_line,
};

const SLOT_DIR_MODE: u32 = 0o755;
const VERSION_FILE_MODE: u32 = 0o644;
/// Enough for any serial, hash or timestamp; keeps a bogus version out of the tar header.
const MAX_VERSION_LEN: usize = 256;

/// A file to deliver: its name inside `dir`, its content and its mode (e.g. `0o600` for keys).
pub type UploadFile = (String, Vec<u8>, u32);

/// Copies `files` into directory `dir` of the container (created, running or stopped), owned by
/// `uid:gid` with the given modes, replacing the previous version atomically. Missing parent
/// directories are created (root-owned, 0755).
///
/// The layout and the order of steps are [`crate::core::atomic_dir`]'s, shared with the host
/// writer; here they become one archive that Docker extracts in order. Docker extracts an entry
/// by removing the old path and then writing the new one, so files are never overwritten in
/// place. Bounds and limits, because the archive API cannot delete or rename:
/// - Old versions do not accumulate: the non-live slot is reused. Its old contents are cleared
///   by first sending an empty regular file under the slot's name (Docker removes the directory
///   recursively to put it there), then the directory again.
/// - Replacing `..data` is an unlink followed by a symlink, so for microseconds a reader may get
///   "no such file" (never a partial file or a mismatched pair). Reload signals go out after the
///   upload returns, so signalled readers never hit that window. Per-file links are only sent
///   when missing or wrong, so they add no such window on updates.
/// - A file dropped from the set leaves a dangling link behind.
///
/// # Errors
/// [`DockerError::InvalidUpload`] for a relative or unnormalised `dir`, a file name that is not a
/// plain name (or starts with `..`, reserved for the layout), a mode above 0o7777 or an empty
/// version; otherwise the failed Docker step (a missing container is `is_not_found`).
pub async fn upload_files(
    docker: &Docker,
    container_id: &str,
    dir: &str,
    files: &[UploadFile],
    uid: u32,
    gid: u32,
    version: &str,
) -> Result<(), DockerError> {
    let dir = validate(dir, files, version)?;
    let began = Instant::now();
    let live = live_slot(docker, container_id, &dir).await?;
    let mut linked = Vec::new();
    if live.is_some() {
        for (name, _, _) in files {
            let target = stat(docker, container_id, &format!("{dir}/{name}")).await?;
            if target.is_some_and(|s| link_is_current(&s.link_target, name, live)) {
                linked.push(name.as_str());
            }
        }
    }
    let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
    let steps = swap_steps(&names, live, |n| linked.contains(&n));
    let stated = began.elapsed();
    let owner = Owner::new(uid, gid);
    let result = put(docker, container_id, &dir, &steps, files, owner, version).await;
    tracing::debug!(
        container = %container_id,
        stat_ms = stated.as_secs_f64() * 1e3,
        put_ms = (began.elapsed() - stated).as_secs_f64() * 1e3,
        "upload timing"
    );
    result
}

/// [`upload_files`] into a directory that holds no earlier delivery (none is recorded for this
/// container): one archive call, without first reading the layout (each read is a round trip
/// that waits for the container's lock in the daemon).
///
/// The archive is the one for an empty directory: clear slot `a`, fill it, point `..data` at
/// it, link every file. Where an earlier delivery does exist after all (a lost ledger), the
/// same archive still never leaves a key beside the wrong certificate: slot `a` is emptied
/// before anything is written, so a reader may meet missing files while Docker extracts
/// (a few milliseconds), then the new set.
///
/// # Errors
/// As [`upload_files`].
pub async fn upload_first(docker: &Docker, u: &Upload<'_>) -> Result<(), DockerError> {
    let (container_id, files) = (u.container_id, u.files);
    let dir = validate(u.dir, files, u.version)?;
    let began = Instant::now();
    let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
    let steps = swap_steps(&names, None, |_| false);
    let owner = Owner::new(u.uid, u.gid);
    let result = put(docker, container_id, &dir, &steps, files, owner, u.version).await;
    tracing::debug!(
        container = %container_id,
        put_ms = began.elapsed().as_secs_f64() * 1e3,
        "upload timing (first)"
    );
    result
}

/// Sends the archive of `steps` (one PUT, extracted at `/`).
async fn put(
    docker: &Docker,
    container_id: &str,
    dir: &str,
    steps: &[Step<'_>],
    files: &[UploadFile],
    owner: Owner,
    version: &str,
) -> Result<(), DockerError> {
    let archive = build_archive(dir, steps, files, owner, version).map_err(|source| {
        DockerError::BuildArchive {
            id: container_id.to_owned(),
            source,
        }
    })?;
    let options = UploadToContainerOptions {
        path: "/".to_owned(),
        ..Default::default()
    };
    docker
        .upload_to_container(
            container_id,
            Some(options),
            bollard::body_full(archive.into()),
        )
        .await
        .map_err(|source| DockerError::UploadFiles {
            id: container_id.to_owned(),
            source,
        })
}

/// Checks the request and returns `dir` without a trailing slash.
pub(super) fn validate(
    dir: &str,
    files: &[UploadFile],
    version: &str,
) -> Result<String, DockerError> {
    let invalid = |reason: String| Err(DockerError::InvalidUpload { reason });
    let trimmed = dir.trim_end_matches('/');
    let normal = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.contains('\0');
    if !dir.starts_with('/') || trimmed.is_empty() || !trimmed[1..].split('/').all(normal) {
        return invalid(format!(
            "directory {dir:?} must be absolute, normalised and not /"
        ));
    }
    if files.is_empty() {
        return invalid("no files to upload".to_owned());
    }
    for (name, _, mode) in files {
        if !normal(name) || name.contains('/') || is_reserved(name) {
            return invalid(format!(
                "file name {name:?} must be a plain name not starting with .."
            ));
        }
        if *mode > 0o7777 {
            return invalid(format!(
                "mode {mode:o} of {name:?} is not a permission mode"
            ));
        }
    }
    if version.is_empty()
        || version.len() > MAX_VERSION_LEN
        || version.chars().any(char::is_control)
    {
        return invalid(format!(
            "version {version:?} must be 1-{MAX_VERSION_LEN} printable characters"
        ));
    }
    Ok(trimmed.to_owned())
}

/// Which slot `dir/..data` points at, or `None` before the first upload.
async fn live_slot(docker: &Docker, id: &str, dir: &str) -> Result<Option<usize>, DockerError> {
    let Some(stat) = stat(docker, id, &format!("{dir}/{DATA_LINK}")).await? else {
        return Ok(None);
    };
    // Docker reports the fully resolved absolute target.
    Ok(slot_of(&stat.link_target))
}

/// Stats a path in the container (symlinks resolved in `link_target`); `None` when it is absent.
async fn stat(
    docker: &Docker,
    id: &str,
    path: &str,
) -> Result<Option<PathStatResponse>, DockerError> {
    let options = ContainerArchiveInfoOptions {
        path: path.to_owned(),
    };
    match docker.get_container_archive_info(id, Some(options)).await {
        Ok(stat) => Ok(Some(stat)),
        Err(source) => {
            let err = DockerError::StatPath {
                id: id.to_owned(),
                path: path.to_owned(),
                source,
            };
            if err.is_not_found() {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
    mtime: u64,
}

impl Owner {
    fn new(uid: u32, gid: u32) -> Self {
        Self {
            uid,
            gid,
            mtime: now_secs(),
        }
    }
}

/// The archive of `steps`, extracted at `/` in their order. Paths are relative so Docker
/// creates missing parents.
fn build_archive(
    dir: &str,
    steps: &[Step<'_>],
    files: &[UploadFile],
    owner: Owner,
    version: &str,
) -> io::Result<Vec<u8>> {
    let base = dir.trim_start_matches('/');
    let mut tar = Builder::new(Vec::new());
    for step in steps {
        match *step {
            Step::ClearSlot(slot) => {
                let slot_path = format!("{base}/{slot}");
                // An empty file where the stale slot directory is: Docker removes the directory
                // to write it.
                append_file(&mut tar, &slot_path, &[], 0o600, owner)?;
                let mut header = header(EntryType::Directory, SLOT_DIR_MODE, owner);
                tar.append_data(&mut header, &slot_path, io::empty())?;
            }
            Step::WriteFile { slot, name } => {
                let Some((_, content, mode)) = files.iter().find(|(n, _, _)| n == name) else {
                    continue;
                };
                append_file(
                    &mut tar,
                    &format!("{base}/{slot}/{name}"),
                    content,
                    *mode,
                    owner,
                )?;
            }
            Step::WriteVersion(slot) => {
                let line = version_line(version);
                let path = format!("{base}/{slot}/{VERSION_FILE}");
                append_file(&mut tar, &path, line.as_bytes(), VERSION_FILE_MODE, owner)?;
            }
            Step::SwapData(slot) => {
                append_symlink(&mut tar, &format!("{base}/{DATA_LINK}"), slot, owner)?
            }
            Step::LinkFile(name) => append_symlink(
                &mut tar,
                &format!("{base}/{name}"),
                &file_link_target(name),
                owner,
            )?,
        }
    }
    tar.into_inner()
}

fn header(kind: EntryType, mode: u32, owner: Owner) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(owner.uid.into());
    header.set_gid(owner.gid.into());
    header.set_mtime(owner.mtime);
    header.set_size(0);
    header
}

fn append_file(
    tar: &mut Builder<Vec<u8>>,
    path: &str,
    content: &[u8],
    mode: u32,
    owner: Owner,
) -> io::Result<()> {
    let mut header = header(EntryType::Regular, mode, owner);
    header.set_size(content.len() as u64);
    tar.append_data(&mut header, path, content)
}

fn append_symlink(
    tar: &mut Builder<Vec<u8>>,
    path: &str,
    target: &str,
    owner: Owner,
) -> io::Result<()> {
    let mut header = header(EntryType::Symlink, 0o777, owner);
    tar.append_link(&mut header, path, target)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
