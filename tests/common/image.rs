//! The FROM-scratch certdock image, built without any registry: a static binary compiled here,
//! laid out by `scripts/rootfs.sh`, and the final stage of the repository's `Dockerfile`.
//!
//! The image is tagged `certdock-test/certdock-scratch:<hash of its content>` and kept: the next
//! run with the same binary and Dockerfile reuses it. Only images with that name are ever built.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::TEST_LABEL;

pub const IMAGE_REPO: &str = "certdock-test/certdock-scratch";
const TARGET: &str = "x86_64-unknown-linux-gnu";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A target directory of its own, so the static build (other RUSTFLAGS) never invalidates the
/// normal build's cache: `$CARGO_TARGET_DIR/static`, else `target/static`.
fn static_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
        .join("static")
}

/// Builds (or finds up to date) the statically linked release binary. Cargo decides what is up
/// to date; the first build takes minutes, later ones a second.
pub fn static_binary() -> PathBuf {
    let dir = static_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(manifest_dir())
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "certdock",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo for the static build");
    assert!(status.success(), "static release build failed: {status}");
    let bin = dir.join(TARGET).join("release/certdock");
    if let Ok(o) = Command::new("ldd").arg(&bin).output() {
        // "statically linked" for a static PIE, "not a dynamic executable" for a static binary.
        let says = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            says.contains("statically linked") || says.contains("not a dynamic executable"),
            "{} is dynamically linked:\n{says}",
            bin.display()
        );
    }
    bin
}

/// The `Dockerfile`'s final stage, reading the root filesystem from the build context instead
/// of the build stage (which needs the rust image from a registry).
fn final_stage() -> String {
    let text = std::fs::read_to_string(manifest_dir().join("Dockerfile")).expect("Dockerfile");
    let start = text.rfind("\nFROM scratch").expect("a FROM scratch stage");
    let stage = &text[start + 1..];
    assert!(
        stage.contains("--from=build /rootfs/"),
        "the final stage copies /rootfs/ from the build stage"
    );
    stage
        .replace("--from=build ", "")
        .replace(" /rootfs/", " rootfs/")
}

/// Builds the image once per test process (and once per content across processes); returns
/// its tag.
pub fn scratch_image() -> String {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(build_scratch_image).clone()
}

fn build_scratch_image() -> String {
    // Test binaries run in parallel: one builds, the others wait and then find the image.
    let lock = File::create(std::env::temp_dir().join("certdock-test-scratch-image.lock"))
        .expect("lock file");
    lock.lock().expect("lock");
    let bin = static_binary();
    let ctx = tempfile::tempdir().expect("build context");
    let rootfs = ctx.path().join("rootfs");
    let status = Command::new(manifest_dir().join("scripts/rootfs.sh"))
        .arg(&bin)
        .arg(&rootfs)
        .status()
        .expect("run scripts/rootfs.sh");
    assert!(status.success(), "scripts/rootfs.sh failed");
    let dockerfile = final_stage();
    std::fs::write(ctx.path().join("Dockerfile"), &dockerfile).expect("write Dockerfile");

    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(dockerfile.as_bytes());
    hash_tree(&rootfs, &rootfs, &mut digest);
    let tag = format!(
        "{IMAGE_REPO}:{}",
        &hex::encode(digest.finish().as_ref())[..16]
    );
    let exists = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &tag])
        .output()
        .expect("docker is installed");
    if exists.status.success() {
        return tag;
    }
    let out = Command::new("docker")
        .args(["build", "--quiet", "--tag", &tag, "--label"])
        .arg(format!("{}={}", TEST_LABEL.0, TEST_LABEL.1))
        .arg(ctx.path())
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// Names, modes and contents of every file under `dir`, in order.
fn hash_tree(root: &Path, dir: &Path, digest: &mut ring::digest::Context) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read rootfs")
        .map(|e| e.expect("rootfs entry").path())
        .collect();
    entries.sort();
    for path in entries {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let rel = path.strip_prefix(root).expect("under root");
        digest.update(rel.to_string_lossy().as_bytes());
        digest.update(&meta.permissions().mode().to_le_bytes());
        if meta.is_dir() {
            hash_tree(root, &path, digest);
        } else {
            digest.update(&std::fs::read(&path).expect("read file"));
        }
    }
}

/// Runs the docker CLI; panics with its output on failure. Returns stdout, trimmed.
pub fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes named containers and volumes on drop (never images: the scratch image is reused).
#[derive(Default)]
pub struct CliCleanup {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
}

impl Drop for CliCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            if std::thread::panicking() {
                let _ = Command::new("docker")
                    .args(["logs", "--tail", "100", c])
                    .status();
            }
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        for v in &self.volumes {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
    }
}
