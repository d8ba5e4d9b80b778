//! An append-only log of JSON records, one per line, that survives `kill -9` at any instant.
//!
//! A record is durable once `append` returns (the data is fsynced). A crash mid-append leaves at
//! most one torn last line without its newline; readers ignore it and the next writer seals it
//! with a newline first, so one torn record never hides the ones after it. Several processes may
//! share a journal: writers hold the state lock, readers catch up with [`Journal::refresh`].

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where a compaction starts (see [`Journal::compaction_base`]).
pub struct CompactionBase {
    tmp: PathBuf,
    from: u64,
    ino: u64,
}

/// A compaction between its two halves (see [`Journal::compaction_base`]).
pub struct Compaction {
    tmp: PathBuf,
    file: File,
    /// Where in the old journal the records written to `file` end.
    from: u64,
    /// The old journal's inode: another process must not have replaced it meanwhile.
    ino: u64,
    len: u64,
}

impl Compaction {
    /// The first half: `records` (standing for the journal up to `base`) to a new file beside
    /// it, fsynced, while appends go on.
    pub fn write<T: Serialize>(base: CompactionBase, records: &[T]) -> io::Result<Compaction> {
        let mut buf = Vec::with_capacity(records.len() * 256);
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&base.tmp)?;
        file.write_all(&buf)?;
        file.sync_data()?;
        Ok(Compaction {
            tmp: base.tmp,
            file,
            from: base.from,
            ino: base.ino,
            len: buf.len() as u64,
        })
    }
}

pub struct Journal<T> {
    path: PathBuf,
    file: File,
    /// Bytes of the file already parsed (always just after a newline).
    read_to: u64,
    /// Inode seen at open: when the file is replaced (a restored state directory), readers start over.
    ino: u64,
    _records: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens (creating, mode 0600) the journal and returns every complete record in it.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<T>)> {
        let mut records = Vec::new();
        let journal = Self::open_each(path, |r| records.push(r))?;
        Ok((journal, records))
    }

    /// Opens (creating) the journal without reading it.
    pub fn open_unread(path: &Path) -> io::Result<Self> {
        let file = Self::open_file(path)?;
        let ino = file.metadata()?.ino();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            read_to: 0,
            ino,
            _records: PhantomData,
        })
    }

    /// Opens the journal and hands every complete record to `each`, one at a time: a long
    /// journal is never all in memory at once.
    pub fn open_each(path: &Path, each: impl FnMut(T)) -> io::Result<Self> {
        let mut journal = Self::open_unread(path)?;
        journal.read_each(each)?;
        Ok(journal)
    }

    fn open_file(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
    }

    /// Appends records and fsyncs. The caller holds the state lock when other processes may write.
    pub fn append(&mut self, records: &[T]) -> io::Result<()> {
        self.write_records(records)?;
        self.file.sync_data()
    }

    /// Writes records without waiting for the disk. They are durable once the returned handle's
    /// `sync_data` succeeds, which the caller may run after releasing its in-memory locks (but
    /// still holding the state lock), so that readers of the index do not wait for the disk.
    pub fn append_unsynced(&mut self, records: &[T]) -> io::Result<File> {
        self.write_records(records)?;
        self.file.try_clone()
    }

    /// Makes everything written so far durable (one fsync covers every earlier byte).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Writes records to the kernel without an fsync: they survive the process being killed
    /// (`kill -9`), and are durable after the next [`Journal::append`] or [`Journal::sync`].
    pub fn write_records(&mut self, records: &[T]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.reopen_if_replaced()?;
        let mut buf = Vec::with_capacity(records.len() * 256);
        let len = self.file.metadata()?.len();
        if len > 0 && !self.ends_with_newline(len)? {
            // Seal the torn record a crashed writer left, so ours starts on a line of its own.
            buf.push(b'\n');
        }
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        Ok(())
    }

    /// Records appended (by anyone) since the last read. Returns `Err` only on I/O failure.
    /// When the file was replaced (a restored state directory) it returns `Ok(None)`: reload
    /// everything.
    pub fn refresh(&mut self) -> io::Result<Option<Vec<T>>> {
        let mut records = Vec::new();
        Ok(self.refresh_each(|r| records.push(r))?.then_some(records))
    }

    /// [`Journal::refresh`], one record at a time; false when the file was replaced (nothing
    /// was read: reload everything).
    pub fn refresh_each(&mut self, each: impl FnMut(T)) -> io::Result<bool> {
        if self.reopen_if_replaced()? {
            return Ok(false);
        }
        self.read_each(each)?;
        Ok(true)
    }

    /// Replaces the journal with exactly `records` (both halves of a compaction at once; a new
    /// file, fsynced, renamed into place), for a store that keeps only what is live and has read
    /// everything first (the ACME store at start-up).
    pub fn compact(&mut self, records: &[T]) -> io::Result<()> {
        let c = Compaction::write(self.compaction_base(), records)?;
        self.finish_compaction(c).map(|_| ())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a compaction of what was read so far starts: records that stand for everything up
    /// to here go to [`Compaction::write`] (no lock needed); [`Journal::finish_compaction`] then
    /// carries over what was appended since and renames the new file into place.
    pub fn compaction_base(&self) -> CompactionBase {
        CompactionBase {
            tmp: self.path.with_extension("compacting"),
            from: self.read_to,
            ino: self.ino,
        }
    }

    /// The second half, with the state lock held (no writer appends meanwhile): copies the
    /// whole records appended since the first half, fsyncs, and renames the new file over the
    /// journal. A crash before the rename leaves the old journal, after it the new one; either
    /// holds every record. Returns the records carried over (this reader may not have read
    /// them yet: another process's, appended since).
    pub fn finish_compaction(&mut self, mut c: Compaction) -> io::Result<Vec<T>> {
        let result = (|| {
            if std::fs::metadata(&self.path)?.ino() != c.ino {
                return Err(io::Error::other(
                    "the journal was replaced during its compaction",
                ));
            }
            let mut tail = Vec::new();
            let mut f = &self.file;
            f.seek(SeekFrom::Start(c.from))?;
            f.read_to_end(&mut tail)?;
            // Only whole records: nobody writes now, so a line without its newline is torn.
            let whole = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let tail = &tail[..whole];
            c.file.write_all(tail)?;
            c.file.sync_data()?;
            std::fs::rename(&c.tmp, &self.path)?;
            super::atomic::sync_dir(self.path.parent().unwrap_or(Path::new(".")))?;
            self.file = Self::open_file(&self.path)?;
            self.ino = self.file.metadata()?.ino();
            self.read_to = c.len + tail.len() as u64;
            Ok(tail
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&c.tmp);
        }
        result
    }

    fn reopen_if_replaced(&mut self) -> io::Result<bool> {
        let ino = std::fs::metadata(&self.path)?.ino();
        if ino == self.ino {
            return Ok(false);
        }
        self.file = Self::open_file(&self.path)?;
        self.ino = ino;
        self.read_to = 0;
        Ok(true)
    }

    fn ends_with_newline(&mut self, len: u64) -> io::Result<bool> {
        let mut last = [0u8; 1];
        self.file.read_exact_at(&mut last, len - 1)?;
        Ok(last[0] == b'\n')
    }

    fn read_each(&mut self, mut each: impl FnMut(T)) -> io::Result<()> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(self.read_to))?;
        let mut reader = BufReader::with_capacity(64 * 1024, f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            // Only whole lines count: a line without its newline is being written, or was torn.
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            self.read_to += n as u64;
            let record = &line[..n - 1];
            if record.is_empty() {
                continue;
            }
            match serde_json::from_slice(record) {
                Ok(r) => each(r),
                // A torn record later sealed by a newline: skip it, keep the rest.
                Err(e) => {
                    tracing::warn!(journal = %self.path.display(), error = %e, "skipping an unreadable journal line")
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
        crate::store::atomic::write_atomic(&p, b"7\n8\n", crate::store::atomic::Mode::Secret)
            .unwrap();
        assert_eq!(
            reader.refresh().unwrap(),
            None,
            "a replaced file asks readers to reload"
        );
    }
}
