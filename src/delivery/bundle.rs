//! The five files of a delivered certificate, and the host side of the atomic directory swap.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::core::atomic_dir::{
    DATA_LINK, SLOT_PREFIX, Step, VERSION_FILE, file_link_target, slot_of, swap_steps,
    temp_link_name, version_line,
};
use crate::core::secret::SecretPem;
use crate::store::atomic::{Mode, create_dir, sync_dir, write_atomic};

/// Everything a service needs: its certificate, key, chain and the CA bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Written to the slot's `.version`; the certificate serial.
    pub version: String,
    pub cert_pem: String,
    pub key: SecretPem,
    pub chain_pem: String,
    pub ca_pem: String,
}

/// File names in a delivery directory, with their modes.
pub const FILES: [(&str, Mode); 5] = [
    ("cert.pem", Mode::Public),
    ("key.pem", Mode::Secret),
    ("chain.pem", Mode::Public),
    ("fullchain.pem", Mode::Public),
    ("ca.pem", Mode::Public),
];

impl Bundle {
    pub fn fullchain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }

    /// (file name, content, mode) for each of the five files.
    pub fn files(&self) -> Vec<(&'static str, Vec<u8>, Mode)> {
        let content = |name: &str| -> Vec<u8> {
            match name {
                "cert.pem" => self.cert_pem.as_bytes().to_vec(),
                "key.pem" => self.key.secret_pem().as_bytes().to_vec(),
                "chain.pem" => self.chain_pem.as_bytes().to_vec(),
                "fullchain.pem" => self.fullchain_pem().into_bytes(),
                _ => self.ca_pem.as_bytes().to_vec(),
            }
        };
        FILES
            .iter()
            .map(|(name, mode)| (*name, content(name), *mode))
            .collect()
    }
}

/// Publishes `bundle` into `dir` atomically, following [`crate::core::atomic_dir`]: the `..data`
/// swap is one `rename(2)`, so a reader sees the old set or the new one, never a half-written
/// file or a certificate beside the wrong key. `owner` chowns the files (needs root); the key
/// stays 0600 whatever the owner.
pub fn publish_dir(dir: &Path, bundle: &Bundle, owner: Option<(u32, u32)>) -> io::Result<()> {
    create_dir(dir, 0o755)?;
    let before = fs::read_link(dir.join(DATA_LINK)).ok();
    let live = before
        .as_deref()
        .and_then(|t| slot_of(&t.to_string_lossy()));
    let files = bundle.files();
    let names: Vec<&str> = files.iter().map(|(n, _, _)| *n).collect();
    let linked = |name: &str| {
        fs::read_link(dir.join(name)).ok().as_deref() == Some(Path::new(&file_link_target(name)))
    };
    for step in swap_steps(&names, live, linked) {
        match step {
            Step::ClearSlot(slot) => {
                match fs::remove_dir_all(dir.join(slot)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                create_dir(&dir.join(slot), 0o755)?;
            }
            Step::WriteFile { slot, name } => {
                let Some((_, content, mode)) = files.iter().find(|(n, _, _)| *n == name) else {
                    continue;
                };
                let path = dir.join(slot).join(name);
                write_atomic(&path, content, *mode)?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
                }
            }
            Step::WriteVersion(slot) => {
                let path = dir.join(slot).join(VERSION_FILE);
                write_atomic(
                    &path,
                    version_line(&bundle.version).as_bytes(),
                    Mode::Public,
                )?;
                sync_dir(&dir.join(slot))?;
            }
            Step::SwapData(slot) => replace_symlink(dir, DATA_LINK, slot)?,
            Step::LinkFile(name) => replace_symlink(dir, name, &file_link_target(name))?,
        }
    }
    sync_dir(dir)?;
    prune_legacy(dir, before.as_deref())
}

/// Points `dir/name` at `target` with one atomic rename.
fn replace_symlink(dir: &Path, name: &str, target: &str) -> io::Result<()> {
    let tmp = dir.join(temp_link_name(name));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp)?;
    fs::rename(&tmp, dir.join(name))
}

/// Removes version directories of older releases (`..certdock-<serial>-<random>`), except the
/// one that was live before this update: readers may still hold it, as they may hold a slot.
fn prune_legacy(dir: &Path, before: Option<&Path>) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let legacy = name.starts_with(SLOT_PREFIX) && slot_of(&name).is_none();
        if legacy && before != Some(Path::new(&name)) {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Removes a delivery directory made by [`publish_dir`] (only the entries this module makes).
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == DATA_LINK
            || name.starts_with(SLOT_PREFIX)
            || FILES.iter().any(|(f, _)| *f == name);
        if ours {
            let p = entry.path();
            if p.is_dir() && !p.is_symlink() {
                fs::remove_dir_all(p)?;
            } else {
                fs::remove_file(p)?;
            }
        }
    }
    // Only removes the directory when nothing else is left in it.
    let _ = fs::remove_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn bundle(v: &str) -> Bundle {
        Bundle {
            version: v.into(),
            cert_pem: format!("cert {v}\n"),
            key: SecretPem::new(format!("key {v}\n")),
            chain_pem: "chain\n".into(),
            ca_pem: "ca\n".into(),
        }
    }

    #[test]
    fn a_republished_dir_shows_the_new_set_and_keeps_one_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("web");
        for v in ["01", "02", "03"] {
            publish_dir(&d, &bundle(v), None).unwrap();
        }
        assert_eq!(fs::read_to_string(d.join("cert.pem")).unwrap(), "cert 03\n");
        assert_eq!(fs::read_to_string(d.join("key.pem")).unwrap(), "key 03\n");
        assert_eq!(
            fs::read_to_string(d.join("fullchain.pem")).unwrap(),
            "cert 03\nchain\n"
        );
        let mode = fs::metadata(d.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let versions = fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(SLOT_PREFIX)
            })
            .count();
        assert_eq!(versions, 2);
        assert_eq!(
            fs::read_to_string(d.join("..data/.version")).unwrap(),
            "03\n"
        );
        remove_dir(&d).unwrap();
        assert!(!d.exists());
    }

    /// A directory published by the previous release: a fresh `..certdock-<serial>-<random>`
    /// directory per version, `..data` pointing at the newest.
    fn legacy_dir(d: &Path) {
        for (v, rnd) in [("01", "0a0b0c0d"), ("02", "1a1b1c1d")] {
            let vdir = d.join(format!("..certdock-{v}-{rnd}"));
            fs::create_dir_all(&vdir).unwrap();
            for (name, content, _) in bundle(v).files() {
                fs::write(vdir.join(name), content).unwrap();
            }
        }
        symlink("..certdock-02-1a1b1c1d", d.join(DATA_LINK)).unwrap();
        for (name, _) in FILES {
            symlink(file_link_target(name), d.join(name)).unwrap();
        }
    }

    #[test]
    fn a_directory_of_the_previous_release_is_taken_over_and_its_versions_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("web");
        legacy_dir(&d);
        assert_eq!(fs::read_to_string(d.join("cert.pem")).unwrap(), "cert 02\n");
        publish_dir(&d, &bundle("03"), None).unwrap();
        assert_eq!(fs::read_to_string(d.join("cert.pem")).unwrap(), "cert 03\n");
        assert!(
            d.join("..certdock-02-1a1b1c1d").is_dir(),
            "the version live before stays"
        );
        assert!(!d.join("..certdock-01-0a0b0c0d").exists());
        publish_dir(&d, &bundle("04"), None).unwrap();
        assert_eq!(fs::read_to_string(d.join("key.pem")).unwrap(), "key 04\n");
        let mut left: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(SLOT_PREFIX))
            .collect();
        left.sort();
        assert_eq!(left, ["..certdock-a", "..certdock-b"]);
    }
}
