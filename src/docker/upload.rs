//! Copying files into a container through the archive API, swapped in atomically.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::container::PathStatResponse;
use bollard::query_parameters::{ContainerArchiveInfoOptions, UploadToContainerOptions};
use tar::{Builder, EntryType, Header};

use super::DockerError;
use crate::core::atomic_dir::{
    DATA_LINK, Step, VERSION_FILE, file_link_target, is_reserved, link_is_current, slot_of,
    swap_steps,
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
    let owner = Owner {
        uid,
        gid,
        mtime: now_secs(),
    };
    let archive = build_archive(&dir, &steps, files, owner, version).map_err(|source| {
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
fn validate(dir: &str, files: &[UploadFile], version: &str) -> Result<String, DockerError> {
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
                let line = format!("{version}\n");
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
mod tests {
    use super::*;

    fn files() -> Vec<UploadFile> {
        vec![
            ("cert.pem".into(), b"CERT".to_vec(), 0o644),
            ("key.pem".into(), b"KEY".to_vec(), 0o600),
        ]
    }

    /// (path, type, mode, uid, link target or content)
    fn entries(archive: &[u8]) -> Vec<(String, EntryType, u32, u64, String)> {
        let mut archive = tar::Archive::new(archive);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let detail = match entry.link_name().unwrap() {
                Some(target) => target.to_string_lossy().into_owned(),
                None => {
                    let mut s = String::new();
                    io::Read::read_to_string(&mut entry, &mut s).unwrap();
                    s
                }
            };
            let kind = header.entry_type();
            out.push((
                path,
                kind,
                header.mode().unwrap(),
                header.uid().unwrap(),
                detail,
            ));
        }
        out
    }

    #[test]
    fn the_archive_writes_the_slot_before_swapping_data() {
        let owner = Owner {
            uid: 1000,
            gid: 1000,
            mtime: 1,
        };
        let steps = swap_steps(&["cert.pem", "key.pem"], Some(0), |n| n != "cert.pem");
        let archive = build_archive("/run/certdock", &steps, &files(), owner, "v2").unwrap();
        let got = entries(&archive);
        let paths: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "run/certdock/..certdock-b",
                "run/certdock/..certdock-b",
                "run/certdock/..certdock-b/cert.pem",
                "run/certdock/..certdock-b/key.pem",
                "run/certdock/..certdock-b/.version",
                "run/certdock/..data",
                "run/certdock/cert.pem",
            ]
        );
        assert_eq!(got[0].1, EntryType::Regular);
        assert_eq!((got[1].1, got[1].2), (EntryType::Directory, 0o755));
        assert_eq!(
            (got[3].2, got[3].3, got[3].4.as_str()),
            (0o600, 1000, "KEY")
        );
        assert_eq!(got[4].4, "v2\n");
        assert_eq!(
            (got[5].1, got[5].4.as_str()),
            (EntryType::Symlink, "..certdock-b")
        );
        assert_eq!(got[6].4, "..data/cert.pem");
    }

    #[test]
    fn directories_must_be_absolute_and_normalised() {
        for dir in [
            "run/certdock",
            "/",
            "//",
            "/run/../etc",
            "/run/./x",
            "/run//x",
            "",
        ] {
            assert!(validate(dir, &files(), "v1").is_err(), "{dir:?}");
        }
        assert_eq!(
            validate("/run/certdock/", &files(), "v1").unwrap(),
            "/run/certdock"
        );
    }

    /// Every entry of `archive` lies inside `dir` (relative to `/`, where Docker extracts it),
    /// and every symlink points inside `dir` too: no absolute target, no `..` component.
    fn assert_confined(archive: &[u8], dir: &str) {
        use std::path::{Component, Path};
        let base = Path::new(dir.trim_start_matches('/'));
        let inside = |p: &Path| {
            p.components().all(|c| matches!(c, Component::Normal(_)))
                && p.starts_with(base)
                && p != base
        };
        let mut archive = tar::Archive::new(archive);
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            assert!(inside(&path), "{} escapes {dir}", path.display());
            if let Some(target) = entry.link_name().unwrap() {
                let parent = path.parent().unwrap();
                assert!(
                    target
                        .components()
                        .all(|c| matches!(c, Component::Normal(_))),
                    "{} -> {}",
                    path.display(),
                    target.display()
                );
                assert!(inside(&parent.join(&target)), "{}", target.display());
            }
        }
    }

    #[test]
    fn hostile_directories_are_refused_or_stay_inside_themselves() {
        let owner = Owner {
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        for dir in [
            "/run/../etc",
            "/../etc",
            "/run/certdock/..",
            "/./x",
            "/a\0b",
            "relative/dir",
            "",
            "/",
            "///",
        ] {
            assert!(validate(dir, &files(), "v1").is_err(), "{dir:?} accepted");
        }
        let long = format!("/{}", "a".repeat(300));
        for dir in [
            "/run/certdock/",
            "/run/...",
            "/run/..data",
            "/é/ü",
            long.as_str(),
        ] {
            let dir = validate(dir, &files(), "v1").unwrap();
            let steps = swap_steps(&["cert.pem", "key.pem"], None, |_| false);
            let archive = build_archive(&dir, &steps, &files(), owner, "v1").unwrap();
            assert_confined(&archive, &dir);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn every_archive_that_validates_writes_and_links_only_inside_its_directory(
            dir in "(/[a-z.]{0,4}){0,5}/?|\\PC{0,20}",
            name in "[a-z.]{1,8}|\\PC{0,8}",
            version in "\\PC{0,20}",
        ) {
            let files = vec![(name.clone(), b"x".to_vec(), 0o600)];
            if let Ok(dir) = validate(&dir, &files, &version) {
                let owner = Owner { uid: 1, gid: 1, mtime: 1 };
                let steps = swap_steps(&[name.as_str()], Some(0), |_| false);
                match build_archive(&dir, &steps, &files, owner, &version) {
                    Ok(archive) => assert_confined(&archive, &dir),
                    // The tar crate refuses what it cannot encode; nothing is sent then.
                    Err(e) => proptest::prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }

    #[test]
    fn file_names_must_be_plain_and_not_reserved() {
        for name in ["", ".", "..", "a/b", "..data", "..certdock-a", ".version"] {
            let files = vec![(name.to_owned(), Vec::new(), 0o600)];
            assert!(validate("/run/certdock", &files, "v1").is_err(), "{name:?}");
        }
        let bad_mode = vec![("cert.pem".to_owned(), Vec::new(), 0o10000)];
        assert!(validate("/run/certdock", &bad_mode, "v1").is_err());
        assert!(validate("/run/certdock", &files(), "").is_err());
        assert!(validate("/run/certdock", &files(), "v1\nx").is_err());
        assert!(validate("/run/certdock", &[], "v1").is_err());
    }
}
