//! Container delivery without the archive API: the same atomic layout, written straight into a
//! running container's root filesystem through `/proc/PID/root`.
//!
//! Why: Docker 20.10 extracts an archive upload through a re-executed daemon in a chroot, under
//! the container's lock, 55-75 ms per upload, and only after `start` has let go of that lock
//! (BENCHMARKS.md §3.1). Here the same files are a few syscalls, made as soon as the container
//! runs. It needs certdock beside a local engine with the rights to see the container's
//! processes (root on the host, or `pid: host` with the capabilities to match).
//!
//! Where this path cannot be sure to write what the archive API would write, it declines and the
//! caller uploads the archive instead:
//! - the process must be the container's: `/proc/PID/cgroup` names the container's full id,
//!   read before and after its root is opened (so a PID reused meanwhile is caught);
//! - that root must be the root of a mount (a process that chrooted elsewhere declines);
//! - no user-namespace remapping: owners are given as the container sees them, and the archive
//!   API is what maps them;
//! - the directory must be on the root filesystem itself: every path is resolved with
//!   `RESOLVE_NO_XDEV`, so a tmpfs, volume or bind mount on the way declines.
//!
//! Every path is resolved with `RESOLVE_IN_ROOT` and `RESOLVE_NO_MAGICLINKS`, so no symlink in
//! the container, absolute or `..`, leads out of it (the escape `docker cp` once had,
//! CVE-2018-15664, cannot happen here); every entry inside the delivery directory is opened,
//! replaced or removed without following links.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    AtFlags, CWD, Dir, Gid, Mode, OFlags, ResolveFlags, StatxAttributes, StatxFlags, Uid, fchmod,
    fchown, mkdirat, openat, openat2, readlinkat, renameat, statx, symlinkat, unlinkat,
};
use rustix::io::Errno;

use super::actions::Upload;
use super::upload::validate;
use crate::core::atomic_dir::{
    DATA_LINK, Step, VERSION_FILE, file_link_target, slot_of, swap_steps, temp_link_name,
    version_line,
};

const DIR_MODE: u32 = 0o755;
const VERSION_FILE_MODE: u32 = 0o644;
/// How deep a stale slot may nest before clearing it declines (certdock's slots hold files only;
/// anything deeper was put there by someone else).
const MAX_CLEAR_DEPTH: usize = 8;

/// Why the files were not written through the container's root; the caller falls back to the
/// archive API, which either delivers or reports its own error.
#[derive(Debug)]
pub struct Declined(pub String);

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Writes `u` into the container whose main process is `pid`, following
/// [`crate::core::atomic_dir`] with `rename(2)` swaps (as the host writer does). Blocking: a
/// handful of syscalls on the container's filesystem.
///
/// # Errors
/// [`Declined`] with the reason when any check above fails or a step fails; a failed step leaves
/// the live set whole (the slot being written is not live until the swap).
pub fn write(pid: u32, u: &Upload<'_>) -> Result<(), Declined> {
    let dir = validate(u.dir, u.files, u.version).map_err(|e| Declined(e.to_string()))?;
    let proc = format!("/proc/{pid}");
    let id = u.container_id;
    ensure_container(&proc, id)?;
    let root = openat(
        CWD,
        format!("{proc}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| step("open the process's root", e))?;
    ensure_container(&proc, id)?;
    ensure_mount_root(&root)?;
    ensure_no_user_namespace(&proc)?;
    let target = open_or_make_dir(&root, &dir)?;
    write_steps(&target, u).map_err(|e| step(&format!("write {dir}"), e))
}

fn step(what: &str, e: impl Into<io::Error>) -> Declined {
    Declined(format!("cannot {what}: {}", e.into()))
}

/// The process is in the container's cgroup: its full id appears in `/proc/PID/cgroup`
/// (cgroup v1 and v2, either cgroup driver).
fn ensure_container(proc: &str, id: &str) -> Result<(), Declined> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Declined(format!("{id:?} is not a full container id")));
    }
    let cgroup = std::fs::read_to_string(format!("{proc}/cgroup"))
        .map_err(|e| step(&format!("read {proc}/cgroup"), e))?;
    if cgroup.contains(id) {
        Ok(())
    } else {
        Err(Declined(format!(
            "{proc} is not in container {id}'s cgroup"
        )))
    }
}

fn ensure_mount_root(root: &OwnedFd) -> Result<(), Declined> {
    let stx = statx(root, "", AtFlags::EMPTY_PATH, StatxFlags::empty())
        .map_err(|e| step("statx the process's root", e))?;
    let known = stx
        .stx_attributes_mask
        .contains(StatxAttributes::MOUNT_ROOT);
    if known && stx.stx_attributes.contains(StatxAttributes::MOUNT_ROOT) {
        Ok(())
    } else {
        Err(Declined(
            "the process's root is not a mount's root (chrooted?)".into(),
        ))
    }
}

/// Identity maps only: `0 0 4294967295`, as the initial user namespace shows it.
fn ensure_no_user_namespace(proc: &str) -> Result<(), Declined> {
    for map in ["uid_map", "gid_map"] {
        let text = std::fs::read_to_string(format!("{proc}/{map}"))
            .map_err(|e| step(&format!("read {proc}/{map}"), e))?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields != ["0", "0", "4294967295"] {
            return Err(Declined(format!(
                "the container runs in a user namespace ({map} {text:?})"
            )));
        }
    }
    Ok(())
}

/// Resolution inside the container's root, never across a mount, never through `/proc` links.
fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

fn open_in_root(root: &OwnedFd, path: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    openat2(root, path, flags, Mode::empty(), in_root())
}

/// Opens `dir` (absolute, normalised) inside the container, making missing directories as the
/// archive API does (root-owned, 0755).
fn open_or_make_dir(root: &OwnedFd, dir: &str) -> Result<OwnedFd, Declined> {
    let relative = dir.trim_start_matches('/');
    match open_in_root(root, relative) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(step(&format!("open {dir}"), e)),
    }
    let mut parent = open_in_root(root, ".").map_err(|e| step("open /", e))?;
    let mut path = String::new();
    for component in relative.split('/') {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(component);
        let fd = match open_in_root(root, &path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match mkdirat(&parent, component, Mode::from_raw_mode(DIR_MODE)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(step(&format!("make /{path}"), e)),
                }
                let fd =
                    open_in_root(root, &path).map_err(|e| step(&format!("open /{path}"), e))?;
                // Independent of certdock's umask.
                fchmod(&fd, Mode::from_raw_mode(DIR_MODE))
                    .map_err(|e| step(&format!("chmod /{path}"), e))?;
                fd
            }
            Err(e) => return Err(step(&format!("open /{path}"), e)),
        };
        parent = fd;
    }
    Ok(parent)
}

fn write_steps(dir: &OwnedFd, u: &Upload<'_>) -> io::Result<()> {
    let owner = (Uid::from_raw(u.uid), Gid::from_raw(u.gid));
    let live = read_link(dir, DATA_LINK).and_then(|t| slot_of(&t));
    let names: Vec<&str> = u.files.iter().map(|(n, _, _)| n.as_str()).collect();
    let linked = |name: &str| read_link(dir, name).as_deref() == Some(&file_link_target(name));
    let mut slot_dir: Option<OwnedFd> = None;
    for step in swap_steps(&names, live, linked) {
        match step {
            Step::ClearSlot(slot) => {
                remove_entry(dir, &CString::new(slot)?, 0)?;
                mkdirat(dir, slot, Mode::from_raw_mode(DIR_MODE))?;
                let fd = open_child_dir(dir, slot)?;
                fchown(&fd, Some(owner.0), Some(owner.1))?;
                fchmod(&fd, Mode::from_raw_mode(DIR_MODE))?;
                slot_dir = Some(fd);
            }
            Step::WriteFile { slot, name } => {
                let Some((_, content, mode)) = u.files.iter().find(|(n, _, _)| n == name) else {
                    continue;
                };
                let fd = slot_fd(dir, slot, &mut slot_dir)?;
                write_file(fd, name, content, *mode, owner)?;
            }
            Step::WriteVersion(slot) => {
                let fd = slot_fd(dir, slot, &mut slot_dir)?;
                let line = version_line(u.version);
                write_file(fd, VERSION_FILE, line.as_bytes(), VERSION_FILE_MODE, owner)?;
            }
            Step::SwapData(slot) => replace_link(dir, DATA_LINK, slot, owner)?,
            Step::LinkFile(name) => replace_link(dir, name, &file_link_target(name), owner)?,
        }
    }
    Ok(())
}

fn read_link(dir: &OwnedFd, name: &str) -> Option<String> {
    let target = readlinkat(dir, name, Vec::new()).ok()?;
    target.into_string().ok()
}

fn open_child_dir(dir: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    openat(dir, name, flags, Mode::empty())
}

fn slot_fd<'a>(
    dir: &OwnedFd,
    slot: &str,
    opened: &'a mut Option<OwnedFd>,
) -> io::Result<&'a OwnedFd> {
    if opened.is_none() {
        *opened = Some(open_child_dir(dir, slot)?);
    }
    Ok(opened.as_ref().expect("opened above"))
}

/// Creates `name` anew (never through a link), owned and moded before its content goes in.
fn write_file(
    dir: &OwnedFd,
    name: &str,
    content: &[u8],
    mode: u32,
    owner: (Uid, Gid),
) -> io::Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    fchown(&fd, Some(owner.0), Some(owner.1))?;
    // After the chown, which clears set-id bits.
    fchmod(&fd, Mode::from_raw_mode(mode))?;
    File::from(fd).write_all(content)
}

/// Points `dir/name` at `target` with one `rename(2)`.
fn replace_link(dir: &OwnedFd, name: &str, target: &str, owner: (Uid, Gid)) -> io::Result<()> {
    let tmp = temp_link_name(name);
    match unlinkat(dir, tmp.as_str(), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    symlinkat(target, dir, tmp.as_str())?;
    rustix::fs::chownat(
        dir,
        tmp.as_str(),
        Some(owner.0),
        Some(owner.1),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    renameat(dir, tmp.as_str(), dir, name)?;
    Ok(())
}

/// Removes `name` from `dir` whatever it is, without following links.
fn remove_entry(dir: &impl AsFd, name: &CStr, depth: usize) -> io::Result<()> {
    let sub = match openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        // A file or a link: not a directory to descend into.
        Err(Errno::NOTDIR | Errno::LOOP) => return Ok(unlinkat(dir, name, AtFlags::empty())?),
        Err(e) => return Err(e.into()),
    };
    if depth >= MAX_CLEAR_DEPTH {
        return Err(io::Error::other(format!(
            "{name:?} nests deeper than {MAX_CLEAR_DEPTH} directories"
        )));
    }
    let entries: Vec<CString> = Dir::read_from(&sub)?
        .map(|e| e.map(|e| e.file_name().to_owned()))
        .filter(|n| {
            n.as_ref()
                .map_or(true, |n| !matches!(n.to_bytes(), b"." | b".."))
        })
        .collect::<rustix::io::Result<_>>()?;
    for entry in entries {
        remove_entry(&sub, &entry, depth + 1)?;
    }
    unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}
