use super::*;

fn rec(serial: &str) -> IssuedRecord {
    IssuedRecord::sample(serial, Requester::Cli)
}

fn record_issued(inv: &mut Inventory, records: Vec<IssuedRecord>) {
    let (file, written) = inv.write_issued(records).unwrap();
    file.sync_data().unwrap();
    inv.apply_issued(written);
}

#[test]
fn a_journal_written_by_the_previous_release_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // Lines exactly as the release before the typed requester wrote them.
    let old = concat!(
        r#"{"kind":"issued","serial":"7f01","name":"web","sans":["web","10.0.0.1"],"usage":"server,client","not_before":0,"not_after":100,"requester":"cli"}"#,
        "\n",
        r#"{"kind":"issued","serial":"7f02","name":"agent-1","sans":["agent-1"],"usage":"client","not_before":0,"not_after":100,"requester":"api:agent-token:0a1b","agent_scope":["team.internal"]}"#,
        "\n",
        r#"{"kind":"issued","serial":"7f03","name":"agent-1","sans":["agent-1"],"usage":"client","not_before":0,"not_after":100,"requester":"renew:7f02","agent_scope":[]}"#,
        "\n",
        r#"{"kind":"issued","serial":"7f04","name":"x","sans":["x"],"usage":"server","not_before":0,"not_after":100,"requester":"test"}"#,
        "\n",
        r#"{"kind":"revoked","serial":"7f01","at":50}"#,
        "\n",
    );
    std::fs::write(dir.path().join("inventory.log"), old).unwrap();
    let inv = Inventory::open(dir.path()).unwrap();
    assert_eq!(inv.len(), 4);
    let get = |s: &str| inv.get(s).unwrap();
    assert_eq!(get("7f01").record.requester, Requester::Cli);
    assert_eq!(get("7f01").revoked_at, Some(50));
    assert_eq!(
        get("7f02").record.requester,
        Requester::AgentToken("0a1b".into())
    );
    assert_eq!(
        get("7f02").record.agent_scope,
        Some(vec![NameRule::parse("team.internal").unwrap()])
    );
    assert_eq!(
        get("7f03").record.requester,
        Requester::Renewal("7f02".into())
    );
    assert_eq!(
        get("7f04").record.requester,
        Requester::Other("test".into())
    );
    // And written back in the same form.
    let line = serde_json::to_string(&Record::Issued(get("7f02").record.clone())).unwrap();
    assert!(
        line.contains(r#""requester":"api:agent-token:0a1b""#),
        "{line}"
    );
}

#[test]
fn renewals_are_followed_through_revoked_and_expired_links_and_names_gather_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = Inventory::open(dir.path()).unwrap();
    let renewed =
        |serial: &str, from: &str| IssuedRecord::sample(serial, Requester::Renewal(from.into()));
    let mut other = rec("b1");
    other.name = "other".into();
    let mut other_renewed = renewed("b2", "b1");
    other_renewed.name = "other".into();
    record_issued(
        &mut inv,
        vec![
            rec("a1"),
            renewed("a2", "a1"),
            renewed("a3", "a2"),
            renewed("a4", "a3"),
            renewed("a5", "a1"),
            other,
            other_renewed,
        ],
    );
    assert!(inv.record_revoked("a2", 10).unwrap());
    assert_eq!(inv.live_renewals_of("a1", 20), vec!["a3", "a4", "a5"]);
    assert_eq!(inv.live_renewals_of("a4", 20), Vec::<String>::new());
    assert_eq!(inv.live_of_name("web", 20), vec!["a1", "a3", "a4", "a5"]);
    assert_eq!(
        inv.live_of_name("web", 100),
        Vec::<String>::new(),
        "expired"
    );
    let revoked = inv
        .record_revoked_all(&["a3".into(), "zz".into(), "a4".into()], 30)
        .unwrap();
    assert_eq!(revoked, vec!["a3", "a4"]);
    let inv = Inventory::open(dir.path()).unwrap();
    assert_eq!(inv.get("a4").unwrap().revoked_at, Some(30));
    assert_eq!(inv.live_of_name("web", 20), vec!["a1", "a5"]);
}

#[test]
fn issued_and_revoked_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = Inventory::open(dir.path()).unwrap();
    record_issued(&mut inv, vec![rec("01"), rec("02")]);
    assert!(inv.record_revoked("02", 50).unwrap());
    assert!(!inv.record_revoked("99", 50).unwrap());
    let inv = Inventory::open(dir.path()).unwrap();
    assert_eq!(inv.len(), 2);
    assert_eq!(inv.get("02").unwrap().revoked_at, Some(50));
    assert_eq!(inv.revoked_unexpired(60).len(), 1);
    assert_eq!(
        inv.revoked_unexpired(100).len(),
        0,
        "expired revocations leave the CRL"
    );
}

fn valid_until(serial: &str, not_after: i64) -> IssuedRecord {
    let mut r = rec(serial);
    r.not_before = not_after - 100;
    r.not_after = not_after;
    r
}

#[test]
fn compaction_keeps_what_lives_with_its_revocation_and_other_readers_follow() {
    let dir = tempfile::tempdir().unwrap();
    let now = 10 * KEEP_EXPIRED_SECS;
    let mut inv = Inventory::open(dir.path()).unwrap();
    let mut reader = Inventory::open(dir.path()).unwrap();
    let dead: Vec<_> = (0..3 * COMPACT_SLACK)
        .map(|i| valid_until(&format!("d{i}"), now - KEEP_EXPIRED_SECS - 1))
        .collect();
    record_issued(&mut inv, dead);
    record_issued(
        &mut inv,
        vec![
            valid_until("live", now + 100),
            valid_until("recent", now - 10),
            valid_until("gone", now + 100),
        ],
    );
    assert!(inv.record_revoked("gone", now - 5).unwrap());
    inv.refresh().unwrap();
    assert!(inv.compaction_due(now));
    assert_eq!(inv.compact(now).unwrap(), (3 * COMPACT_SLACK + 4, 4));
    assert!(!inv.compaction_due(now));
    assert_eq!(inv.len(), 3, "live, recently expired (lineage), revoked");
    assert_eq!(inv.get("gone").unwrap().revoked_at, Some(now - 5));
    assert!(inv.get("d0").is_none());
    // Another process's handle sees the replaced journal and reloads it.
    reader.refresh().unwrap();
    assert_eq!(reader.len(), 3);
    assert_eq!(reader.get("gone").unwrap().revoked_at, Some(now - 5));
    // Appends after a compaction land in the new journal.
    record_issued(&mut inv, vec![valid_until("next", now + 100)]);
    let reopened = Inventory::open(dir.path()).unwrap();
    assert_eq!(reopened.len(), 4);
}

#[test]
fn records_waiting_for_their_fsync_survive_a_compaction_started_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let now = 10 * KEEP_EXPIRED_SECS;
    let mut inv = Inventory::open(dir.path()).unwrap();
    record_issued(&mut inv, vec![valid_until("old", now + 100)]);
    // The writer has written a batch and waits for the disk (no `apply_issued` yet) when
    // the compaction takes its records.
    let (file, written) = inv
        .write_issued(vec![valid_until("pending", now + 100)])
        .unwrap();
    let (records, base) = inv.compaction_records(now).unwrap();
    let prepared = Compaction::write(base, &records).unwrap();
    inv.finish_compaction(prepared, records.len()).unwrap();
    file.sync_data().unwrap();
    inv.apply_issued(written);
    let reopened = Inventory::open(dir.path()).unwrap();
    assert!(
        reopened.get("pending").is_some(),
        "a record lost by compaction"
    );
    assert_eq!(reopened.len(), 2);
}

#[test]
fn opening_at_a_time_skips_long_expired_records() {
    let dir = tempfile::tempdir().unwrap();
    let now = 10 * KEEP_EXPIRED_SECS;
    let mut inv = Inventory::open(dir.path()).unwrap();
    record_issued(
        &mut inv,
        vec![
            valid_until("old", now - KEEP_EXPIRED_SECS - 1),
            valid_until("new", now + 1),
        ],
    );
    assert!(
        inv.record_revoked("old", now - KEEP_EXPIRED_SECS - 5)
            .unwrap()
    );
    let live = Inventory::open_live(dir.path(), now).unwrap();
    assert_eq!(live.len(), 1);
    assert!(live.get("new").is_some());
    assert_eq!(
        Inventory::open(dir.path()).unwrap().len(),
        2,
        "open keeps all"
    );
}

#[test]
fn what_another_process_appends_during_a_compaction_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let now = 10 * KEEP_EXPIRED_SECS;
    let mut inv = Inventory::open(dir.path()).unwrap();
    let mut other = Inventory::open(dir.path()).unwrap();
    record_issued(
        &mut inv,
        vec![
            valid_until("dead", now - KEEP_EXPIRED_SECS - 1),
            valid_until("live", now + 100),
        ],
    );
    let (records, base) = inv.compaction_records(now).unwrap();
    let prepared = Compaction::write(base, &records).unwrap();
    // Meanwhile another process issues and revokes.
    other.refresh().unwrap();
    record_issued(&mut other, vec![valid_until("late", now + 100)]);
    assert!(other.record_revoked("live", now).unwrap());
    let (_, after) = inv.finish_compaction(prepared, records.len()).unwrap();
    assert_eq!(after, 3, "live, late, and the revocation");
    assert_eq!(inv.get("live").unwrap().revoked_at, Some(now));
    assert!(inv.get("late").is_some());
    let reopened = Inventory::open(dir.path()).unwrap();
    assert_eq!(reopened.len(), 2);
    assert!(reopened.get("dead").is_none());
    assert_eq!(reopened.get("live").unwrap().revoked_at, Some(now));
    assert!(!dir.path().join("inventory.compacting").exists());
}
