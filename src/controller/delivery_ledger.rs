//! What was delivered where, persisted as `STATE/managed/ledger.json` so a restart neither
//! redelivers nor re-signals what is already in place.
//!
//! In memory it is kept in the form the plan reads (by [`Identity`], with times), and every
//! change goes through a method that marks it changed: a pass that changed nothing neither
//! serialises nor compares it (issue 17: at 1,000 identities that was a tenth of a pass). On
//! disk it keeps the format every earlier release wrote ([`LedgerFile`]).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::core::plan::Identity;
use crate::store::atomic::{Mode, write_if_changed};

/// The ledger as stored: keyed by identity file keys, times in Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LedgerFile {
    /// Container id → version copied into it.
    copied: BTreeMap<String, String>,
    /// Identity file key → version published under the output directory.
    published: BTreeMap<String, String>,
    /// Identity file key → Unix seconds when it stopped being wanted.
    orphaned_since: BTreeMap<String, u64>,
}

/// The delivery bookkeeping (see the module docs).
#[derive(Debug, Default)]
pub struct DeliveryLedger {
    copied: BTreeMap<String, String>,
    published: BTreeMap<Identity, String>,
    orphaned_since: BTreeMap<Identity, SystemTime>,
    /// Changed since it was loaded or last saved.
    changed: bool,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl DeliveryLedger {
    /// Reads `path`; a missing file is an empty ledger, an unreadable one too (logged: the
    /// deliveries it recorded are redone). Keys no identity has are dropped.
    pub fn load(path: &Path) -> Self {
        let file: LedgerFile = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring an unreadable delivery ledger; deliveries will be redone");
                LedgerFile::default()
            }),
            Err(_) => LedgerFile::default(),
        };
        fn by_id<V>((k, v): (String, V)) -> Option<(Identity, V)> {
            Some((Identity::from_file_key(&k)?, v))
        }
        Self {
            copied: file.copied,
            published: file.published.into_iter().filter_map(by_id).collect(),
            orphaned_since: file
                .orphaned_since
                .into_iter()
                .filter_map(by_id)
                .map(|(id, secs)| (id, SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
                .collect(),
            changed: false,
        }
    }

    /// Writes it to `path` (0600, atomically) when it changed since it was loaded or saved.
    pub fn save(&mut self, path: &Path) -> io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        let file = LedgerFile {
            copied: self.copied.clone(),
            published: self
                .published
                .iter()
                .map(|(id, v)| (id.file_key(), v.clone()))
                .collect(),
            orphaned_since: self
                .orphaned_since
                .iter()
                .map(|(id, t)| (id.file_key(), unix_secs(*t)))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        write_if_changed(path, &json, Mode::Secret)?;
        self.changed = false;
        Ok(())
    }

    /// Container id → version copied into it.
    pub fn copied(&self) -> &BTreeMap<String, String> {
        &self.copied
    }

    /// Versions now copied into containers, by container id.
    pub fn note_copied(&mut self, copies: impl IntoIterator<Item = (String, String)>) {
        for (container, version) in copies {
            if self.copied.get(&container) != Some(&version) {
                self.copied.insert(container, version);
                self.changed = true;
            }
        }
    }

    /// Forgets the copies of containers that are gone.
    pub fn retain_copied(&mut self, mut live: impl FnMut(&str) -> bool) {
        let before = self.copied.len();
        self.copied.retain(|id, _| live(id));
        self.changed |= self.copied.len() != before;
    }

    /// Identity → version published under the output directory.
    pub fn published(&self) -> &BTreeMap<Identity, String> {
        &self.published
    }

    pub fn note_published(&mut self, id: &Identity, version: String) {
        if self.published.get(id) != Some(&version) {
            self.published.insert(id.clone(), version);
            self.changed = true;
        }
    }

    /// The files of `id` under the output directory are gone or no longer ours.
    pub fn unpublished(&mut self, id: &Identity) {
        self.changed |= self.published.remove(id).is_some();
    }

    /// Identity → when it stopped being wanted.
    pub fn orphaned_since(&self) -> &BTreeMap<Identity, SystemTime> {
        &self.orphaned_since
    }

    /// No container wants `id` since `now` (kept in whole seconds, as stored).
    pub fn orphaned(&mut self, id: &Identity, now: SystemTime) {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs(now));
        if self.orphaned_since.insert(id.clone(), since) != Some(since) {
            self.changed = true;
        }
    }

    /// Identities some container wants again are no longer orphans.
    pub fn wanted(&mut self, mut wanted: impl FnMut(&Identity) -> bool) {
        if self.orphaned_since.is_empty() {
            return;
        }
        let before = self.orphaned_since.len();
        self.orphaned_since.retain(|id, _| !wanted(id));
        self.changed |= self.orphaned_since.len() != before;
    }

    /// `id` was forgotten: neither published nor orphaned.
    pub fn forget(&mut self, id: &Identity) {
        self.unpublished(id);
        self.changed |= self.orphaned_since.remove(id).is_some();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::names::CertName;

    /// A ledger as every earlier release wrote it (`STATE/managed/ledger.json`).
    const EARLIER: &str = r#"{
  "copied": {
    "0123abcd": "5a1e-0f00ba12"
  },
  "published": {
    "api": "77-0f00ba12",
    "_traefik-client": "78-0f00ba12",
    "Not A Name!": "79-0f00ba12"
  },
  "orphaned_since": {
    "old": 1700000000
  }
}"#;

    fn named(n: &str) -> Identity {
        Identity::Named(CertName::parse(n).unwrap())
    }

    #[test]
    fn reads_what_earlier_releases_wrote_and_writes_it_back_in_their_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        std::fs::write(&path, EARLIER).unwrap();
        let mut l = DeliveryLedger::load(&path);
        assert_eq!(l.copied()["0123abcd"], "5a1e-0f00ba12");
        assert_eq!(l.published()[&named("api")], "77-0f00ba12");
        assert_eq!(l.published()[&Identity::TraefikClient], "78-0f00ba12");
        assert_eq!(l.published().len(), 2, "a key no identity has is dropped");
        assert_eq!(
            l.orphaned_since()[&named("old")],
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );

        l.note_published(&named("web"), "80-0f00ba12".into());
        l.save(&path).unwrap();
        let written: LedgerFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut expected: LedgerFile = serde_json::from_str(EARLIER).unwrap();
        expected.published.remove("Not A Name!");
        expected
            .published
            .insert("web".into(), "80-0f00ba12".into());
        assert_eq!(written, expected);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unchanged_ledger_is_not_written_and_every_change_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut l = DeliveryLedger::load(&path);
        l.save(&path).unwrap();
        assert!(!path.exists(), "nothing changed: nothing written");

        let changes: [&dyn Fn(&mut DeliveryLedger); 6] = [
            &|l| l.note_copied([("c1".into(), "v2".into())]),
            &|l| l.note_published(&named("api"), "v2".into()),
            &|l| l.orphaned(&named("api"), SystemTime::now()),
            &|l| l.wanted(|_| true),
            &|l| l.retain_copied(|_| false),
            &|l| l.unpublished(&named("api")),
        ];
        l.note_copied([("c1".into(), "v1".into())]);
        l.note_published(&named("api"), "v1".into());
        l.save(&path).unwrap();
        for (i, change) in changes.iter().enumerate() {
            let before = std::fs::read(&path).unwrap();
            change(&mut l);
            l.save(&path).unwrap();
            assert_ne!(std::fs::read(&path).unwrap(), before, "change {i} saved");
            // The same change again changes nothing.
            change(&mut l);
            assert!(!l.changed, "change {i} repeated");
        }
    }
}
