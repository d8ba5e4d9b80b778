//! Watches files certdock owns or reads: the output directory (a deleted or altered file is
//! rewritten) and the config file (settings reload without a restart).

use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// What changed on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Something under the output directory changed: check our files.
    Outputs,
    /// The config file changed: reload settings.
    Config,
}

/// Keeps the OS watches alive; dropping it stops them.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

/// Starts watching `out` (recursively) and `config` (its directory, since editors replace files
/// by rename). Events arrive on the returned channel, coalesced by the receiver's reader.
pub fn watch_files(
    out: &Path,
    config: Option<&Path>,
) -> notify::Result<(FileWatch, mpsc::UnboundedReceiver<FileChange>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let out_dir = out.to_path_buf();
    let config_file: Option<PathBuf> = config.map(Path::to_path_buf);
    let config_name = config_file
        .as_ref()
        .and_then(|c| c.file_name().map(|n| n.to_os_string()));
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        for path in &event.paths {
            let is_config = config_name
                .as_ref()
                .is_some_and(|n| path.file_name() == Some(n.as_os_str()));
            let change = if is_config {
                FileChange::Config
            } else if path.starts_with(&out_dir) {
                // Our own temporary files come and go on every write; they are not worth a look.
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".tmp"))
                {
                    continue;
                }
                FileChange::Outputs
            } else {
                continue;
            };
            let _ = tx.send(change);
        }
    })?;
    std::fs::create_dir_all(out).map_err(notify::Error::io)?;
    watcher.watch(out, RecursiveMode::Recursive)?;
    if let Some(dir) = config_file.as_ref().and_then(|c| c.parent()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok((FileWatch { _watcher: watcher }, rx))
}
