//! The delivery ledger: the earlier releases' file, the journal, its compaction, torn writes.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::core::names::CertName;

/// A ledger as every earlier release wrote it (`STATE/managed/ledger.json`, no journal).
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// What a reader of the directory sees: the ledger as loaded from disk.
fn on_disk(
    path: &Path,
) -> (
    BTreeMap<String, String>,
    BTreeMap<Identity, String>,
    BTreeMap<Identity, SystemTime>,
) {
    let l = DeliveryLedger::load(path);
    (l.copied, l.published, l.orphaned_since)
}

fn in_memory(
    l: &DeliveryLedger,
) -> (
    BTreeMap<String, String>,
    BTreeMap<Identity, String>,
    BTreeMap<Identity, SystemTime>,
) {
    (
        l.copied.clone(),
        l.published.clone(),
        l.orphaned_since.clone(),
    )
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

    // One change: one line in the journal, ledger.json as it was.
    l.note_published(&named("web"), "80-0f00ba12".into());
    l.save(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), EARLIER);
    let journal = journal_path(&path);
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        "{\"published\":[\"web\",\"80-0f00ba12\"]}\n"
    );
    assert_eq!(mode(&journal), 0o600);
    assert_eq!(on_disk(&path), in_memory(&l));

    // Redeliveries, one per save: once the journal holds MIN_JOURNAL changes (more than the
    // ledger's entries), ledger.json is whole again, in the earlier format, and the journal empty.
    let mut saves = 0;
    while std::fs::metadata(&journal).unwrap().len() > 0 {
        saves += 1;
        l.note_copied([("0123abcd".to_string(), format!("v{saves}"))]);
        l.save(&path).unwrap();
        assert!(saves < MIN_JOURNAL, "compacted after {MIN_JOURNAL} changes");
    }
    assert_eq!(saves, MIN_JOURNAL - 1, "the web line and the redeliveries");
    let written: LedgerFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut expected: LedgerFile = serde_json::from_str(EARLIER).unwrap();
    expected.published.remove("Not A Name!");
    expected
        .published
        .insert("web".into(), "80-0f00ba12".into());
    expected
        .copied
        .insert("0123abcd".into(), format!("v{saves}"));
    assert_eq!(written, expected);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(on_disk(&path), in_memory(&l));
}

#[test]
fn an_unchanged_ledger_is_not_written_and_every_change_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let mut l = DeliveryLedger::load(&path);
    l.save(&path).unwrap();
    assert!(
        !path.exists() && !journal_path(&path).exists(),
        "nothing changed: nothing written"
    );

    let changes: [&dyn Fn(&mut DeliveryLedger); 7] = [
        &|l| l.note_copied([("c1".into(), "v2".into())]),
        &|l| l.note_published(&named("api"), "v2".into()),
        &|l| l.orphaned(&named("api"), SystemTime::now()),
        &|l| l.wanted(|_| true),
        &|l| l.retain_copied(|_| false),
        &|l| l.unpublished(&named("api")),
        &|l| {
            l.orphaned(&named("gone"), SystemTime::now());
            l.forget(&named("gone"));
        },
    ];
    l.note_copied([("c1".into(), "v1".into())]);
    l.note_published(&named("api"), "v1".into());
    l.save(&path).unwrap();
    for (i, change) in changes.iter().enumerate() {
        let before = on_disk(&path);
        change(&mut l);
        l.save(&path).unwrap();
        assert_eq!(on_disk(&path), in_memory(&l), "change {i} saved");
        if i < 6 {
            assert_ne!(on_disk(&path), before, "change {i} changed something");
        }
        // The same change again changes nothing.
        let len = std::fs::metadata(journal_path(&path)).unwrap().len();
        change(&mut l);
        assert!(l.dirty.is_empty() || i == 6, "change {i} repeated");
        l.save(&path).unwrap();
        if i < 6 {
            assert_eq!(std::fs::metadata(journal_path(&path)).unwrap().len(), len);
        }
    }
}

#[test]
fn a_torn_journal_line_and_a_compaction_cut_short_lose_nothing_written_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let journal = journal_path(&path);
    let mut l = DeliveryLedger::load(&path);
    l.note_copied([("c1".into(), "v1".into())]);
    l.note_published(&named("api"), "v1".into());
    l.save(&path).unwrap();
    let saved = in_memory(&l);

    // A crash mid-append: a torn last line is ignored, and the next save seals it.
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend_from_slice(b"{\"copied\":[\"c2\",\"v");
    std::fs::write(&journal, &bytes).unwrap();
    assert_eq!(on_disk(&path), saved);
    let mut l = DeliveryLedger::load(&path);
    l.note_copied([("c3".into(), "v1".into())]);
    l.save(&path).unwrap();
    assert_eq!(on_disk(&path), in_memory(&l));
    assert!(!l.copied().contains_key("c2"));

    // ledger.json written whole, the journal not emptied (as after a crash between the two;
    // here its compaction fails: its temporary file's name is taken by a directory). The
    // journal then ends with the last change, and applying it again gives the same ledger.
    let blocker = journal.with_extension("compacting");
    std::fs::create_dir(&blocker).unwrap();
    let mut version = 0;
    loop {
        version += 1;
        l.note_copied([("c1".to_string(), format!("v{version}"))]);
        if l.save(&path).is_err() {
            break;
        }
        assert!(version <= MIN_JOURNAL, "compaction tried");
    }
    let json: LedgerFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        json.copied["c1"],
        format!("v{version}"),
        "ledger.json written"
    );
    assert!(
        !std::fs::read(&journal).unwrap().is_empty(),
        "the journal not emptied"
    );
    assert_eq!(on_disk(&path), in_memory(&l));
    std::fs::remove_dir(&blocker).unwrap();
    l.note_copied([("c1".to_string(), "last".to_string())]);
    l.save(&path).unwrap();
    assert!(
        std::fs::read(&journal).unwrap().is_empty(),
        "compacted at the next save"
    );
    assert_eq!(on_disk(&path), in_memory(&l));

    // An unreadable journal (not ours) is ignored; ledger.json still reads.
    std::fs::write(&journal, b"\xff\xfe not json\n").unwrap();
    assert_eq!(DeliveryLedger::load(&path).copied().len(), 2);
}
