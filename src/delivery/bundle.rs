//! The five files of a delivered certificate, and the atomic directory swap that publishes them.
//!
//! Layout (Kubernetes' atomic-writer scheme): the files live in a fresh version directory
//! `..certdock-<serial>`, the symlink `..data` points at the current one, and each public name
//! (`cert.pem`, …) is a symlink to `..data/<name>`. Publishing is one `rename(2)` of `..data`,
//! so a reader sees the old set or the new one, never a half-written file or a certificate
//! beside the wrong key. The previous version is kept for readers that hold it open.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::ca::issue::Issued;
use crate::ca::keys::SecretPem;
use crate::store::atomic::{Mode, create_dir, sync_dir, write_atomic};

/// Everything a service needs: its certificate, key, chain and the CA bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Names the version directory; the certificate serial.
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
    pub fn from_issued(issued: &Issued) -> Self {
        Self {
            version: issued.serial.clone(),
            cert_pem: issued.cert_pem.clone(),
            key: issued.key.clone(),
            chain_pem: issued.chain_pem.clone(),
            ca_pem: issued.ca_pem.clone(),
        }
    }

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

const DATA_LINK: &str = "..data";
const VERSION_PREFIX: &str = "..certdock-";

/// Publishes `bundle` into `dir` atomically (see the module docs). `owner` chowns the files
/// (needs root); the key stays 0600 whatever the owner.
pub fn publish_dir(dir: &Path, bundle: &Bundle, owner: Option<(u32, u32)>) -> io::Result<()> {
    create_dir(dir, 0o755)?;
    let version = format!(
        "{VERSION_PREFIX}{}-{}",
        sanitize(&bundle.version),
        hex::encode(rand::random::<[u8; 4]>())
    );
    let vdir = dir.join(&version);
    create_dir(&vdir, 0o755)?;
    for (name, content, mode) in bundle.files() {
        let path = vdir.join(name);
        write_atomic(&path, &content, mode)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
    }
    sync_dir(&vdir)?;
    replace_symlink(dir, DATA_LINK, &version)?;
    for (name, _) in FILES {
        let target = format!("{DATA_LINK}/{name}");
        let current = fs::read_link(dir.join(name)).ok();
        if current.as_deref() != Some(Path::new(&target)) {
            replace_symlink(dir, name, &target)?;
        }
    }
    sync_dir(dir)?;
    prune_versions(dir, &version)
}

/// Points `dir/name` at `target` with one atomic rename.
fn replace_symlink(dir: &Path, name: &str, target: &str) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp)?;
    fs::rename(&tmp, dir.join(name))
}

/// Keeps the current version and the one before it; older ones go.
fn prune_versions(dir: &Path, current: &str) -> io::Result<()> {
    let mut versions: Vec<(std::time::SystemTime, String)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(VERSION_PREFIX) || name == current {
                return None;
            }
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, name))
        })
        .collect();
    versions.sort();
    versions.pop(); // the previous version stays
    for (_, name) in versions {
        fs::remove_dir_all(dir.join(name))?;
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
            || name.starts_with(VERSION_PREFIX)
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

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(40)
        .collect()
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
                    .starts_with(VERSION_PREFIX)
            })
            .count();
        assert_eq!(versions, 2);
        remove_dir(&d).unwrap();
        assert!(!d.exists());
    }
}
