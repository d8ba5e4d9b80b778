//! Tests of the journal (`store::journal`): torn records, other writers, the reserve.

use super::*;

#[test]
fn records_come_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.log");
    let (mut j, none) = Journal::<u32>::open(&p).unwrap();
    assert!(none.is_empty());
    j.append(&[1, 2]).unwrap();
    j.append(&[3]).unwrap();
    let (_, all) = Journal::<u32>::open(&p).unwrap();
    assert_eq!(all, vec![1, 2, 3]);
}

#[test]
fn a_torn_last_record_is_ignored_and_sealed_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.log");
    std::fs::write(&p, b"1\n2\n{\"torn").unwrap();
    let (mut j, recs) = Journal::<u32>::open(&p).unwrap();
    assert_eq!(recs, vec![1, 2]);
    j.append(&[3]).unwrap();
    let (_, all) = Journal::<u32>::open(&p).unwrap();
    assert_eq!(all, vec![1, 2, 3]);
}

#[test]
fn a_reader_sees_what_another_writer_appended() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.log");
    let (mut reader, _) = Journal::<u32>::open(&p).unwrap();
    let (mut writer, _) = Journal::<u32>::open(&p).unwrap();
    writer.append(&[7]).unwrap();
    assert_eq!(reader.refresh().unwrap(), Some(vec![7]));
    assert_eq!(reader.refresh().unwrap(), Some(vec![]));
    crate::store::atomic::write_atomic(&p, b"7\n8\n", crate::store::atomic::Mode::Secret).unwrap();
    assert_eq!(
        reader.refresh().unwrap(),
        None,
        "a replaced file asks readers to reload"
    );
}

fn reserving(p: &Path) -> (Journal<u32>, Vec<u32>) {
    let mut all = Vec::new();
    let j = Journal::open_each_reserving(p, |r| all.push(r)).unwrap();
    (j, all)
}

#[test]
fn a_reserving_journal_writes_into_its_reserve_without_growing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.log");
    // A journal of an earlier release: no reserve. It reads as before.
    std::fs::write(&p, b"1\n2\n").unwrap();
    let (mut j, recs) = reserving(&p);
    assert_eq!(recs, vec![1, 2]);
    assert!(j.append(&[3]).unwrap(), "read to its end: not handed back");
    let len = std::fs::metadata(&p).unwrap().len();
    assert_eq!(len, 6 + RESERVE as u64, "records, then the reserve");
    assert!(j.append(&[4, 5]).unwrap());
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        len,
        "written into the reserve"
    );
    assert_eq!(
        j.refresh().unwrap(),
        Some(vec![]),
        "a writer's own records stay its own"
    );
    assert_eq!(reserving(&p).1, vec![1, 2, 3, 4, 5]);
    let (_, plain) = Journal::<u32>::open(&p).unwrap();
    assert_eq!(
        plain,
        vec![1, 2, 3, 4, 5],
        "a plain reader stops at the reserve too"
    );
    // What every earlier release counted as records: the lines.
    let text = std::fs::read(&p).unwrap();
    assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 5);
}

#[test]
fn readers_see_records_written_into_the_reserve_and_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.log");
    let (mut reader, _) = reserving(&p);
    let (mut writer, _) = reserving(&p);
    writer.append(&[1]).unwrap();
    assert_eq!(reader.refresh().unwrap(), Some(vec![1]));
    writer.append(&[2]).unwrap();
    assert_eq!(
        reader.refresh().unwrap(),
        Some(vec![2]),
        "same length, new record"
    );
    assert_eq!(reader.refresh().unwrap(), Some(vec![]));
    // An earlier release appends (O_APPEND) after the reserve, sealing what it takes for a
    // torn line first.
    let mut old = OpenOptions::new().append(true).open(&p).unwrap();
    old.write_all(b"\n3\n").unwrap();
    assert_eq!(reader.refresh().unwrap(), Some(vec![3]));
    // The writer has not read 3: it writes after it, and hands back both.
    assert!(!writer.append(&[4]).unwrap());
    assert_eq!(writer.refresh().unwrap(), Some(vec![3, 4]));
    assert_eq!(reader.refresh().unwrap(), Some(vec![4]));
    assert_eq!(reserving(&p).1, vec![1, 2, 3, 4]);
}

#[test]
fn a_record_torn_in_the_reserve_is_ignored_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.log");
    let (mut j, _) = reserving(&p);
    j.append(&[1]).unwrap();
    // A crash in the middle of a write into the reserve: a prefix, then zeros.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(b"{\"to", 2).unwrap();
    let (mut again, recs) = reserving(&p);
    assert_eq!(recs, vec![1]);
    assert!(
        !again.append(&[2]).unwrap(),
        "the torn record was not read past"
    );
    assert_eq!(reserving(&p).1, vec![1, 2]);
    assert_eq!(again.refresh().unwrap(), Some(vec![2]));
}
