//! An append-only log of JSON records, one per line, that survives `kill -9` at any instant.
//!
//! A record is durable once `append` returns (the data is fsynced). A crash mid-append leaves at
//! most one torn last line without its newline; readers ignore it and the next writer seals it
//! with a newline first, so one torn record never hides the ones after it. Several processes may
//! share a journal: writers hold the state lock, readers catch up with [`Journal::refresh`].
//!
//! A *reserving* journal (the inventory's) keeps zeroed space after its last record and
//! writes new records into it, so that an append does not grow the file: ext4 then need not
//! write the inode on every fsync, only the data block (one disk write instead of two). A NUL
//! byte where a record would start marks the end of the records; NULs followed by records
//! (appended by a release that did not reserve) are skipped. A journal without NULs (every
//! earlier release's) reads as before and gets its reserve at its next append.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Zeroed bytes a reserving journal writes after its records when it runs out of room: one
/// growth of the file (and inode write) per about 800 inventory records.
const RESERVE: usize = 256 << 10;

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
    /// Shared with writers waiting for their fsync (see [`Journal::append_unsynced`]).
    file: Arc<File>,
    /// Bytes of the file already parsed (always just after a newline).
    read_to: u64,
    /// Inode seen at open: when the file is replaced (a restored state directory), readers start over.
    ino: u64,
    /// Writes into zeroed space after the records (see the module documentation).
    reserve: bool,
    /// The file's length when this journal last read or wrote it: while it is unchanged, a
    /// reserving journal's news can only be records written into the reserve at `read_to`.
    seen_len: u64,
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
        Self::open_unread_with(path, false)
    }

    /// [`Journal::open_unread`] for a reserving journal (see the module documentation).
    pub fn open_unread_reserving(path: &Path) -> io::Result<Self> {
        Self::open_unread_with(path, true)
    }

    fn open_unread_with(path: &Path, reserve: bool) -> io::Result<Self> {
        let file = Self::open_file(path, reserve)?;
        let ino = file.metadata()?.ino();
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            read_to: 0,
            ino,
            reserve,
            seen_len: 0,
            _records: PhantomData,
        })
    }

    /// Opens the journal and hands every complete record to `each`, one at a time: a long
    /// journal is never all in memory at once.
    pub fn open_each(path: &Path, each: impl FnMut(T)) -> io::Result<Self> {
        let mut journal = Self::open_unread(path)?;
        journal.read_all(each)?;
        Ok(journal)
    }

    /// [`Journal::open_each`] for a reserving journal (see the module documentation).
    pub fn open_each_reserving(path: &Path, each: impl FnMut(T)) -> io::Result<Self> {
        let mut journal = Self::open_unread_reserving(path)?;
        journal.read_all(each)?;
        Ok(journal)
    }

    /// A reserving journal writes at a position of its own (`O_APPEND` would ignore it).
    fn open_file(path: &Path, reserve: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(reserve)
            .append(!reserve)
            .create(true)
            .mode(0o600)
            .open(path)
    }

    /// Reads everything there is (at open).
    fn read_all(&mut self, each: impl FnMut(T)) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        self.read_each(each)?;
        self.seen_len = len;
        Ok(())
    }

    /// Appends records and fsyncs. The caller holds the state lock when other processes may write.
    /// Returns whether this reader is past them (see [`Journal::append_unsynced`]).
    pub fn append(&mut self, records: &[T]) -> io::Result<bool> {
        let (sync, past) = self.append_unsynced(records)?;
        sync.sync_data()?;
        Ok(past)
    }

    /// Writes records without waiting for the disk. They are durable once the returned handle's
    /// `sync_data` succeeds, which the caller may run after releasing its in-memory locks (but
    /// still holding the state lock), so that readers of the index do not wait for the disk.
    ///
    /// The flag is true when this reader had read everything before them: it is then moved past
    /// them, so [`Journal::refresh`] never hands a writer back its own records (the caller
    /// applies them itself). When it is false another process appended since the last read, and
    /// refresh returns those and these alike.
    pub fn append_unsynced(&mut self, records: &[T]) -> io::Result<(Arc<File>, bool)> {
        if records.is_empty() {
            return Ok((self.file.clone(), false));
        }
        // One `stat` says both whether the file was replaced and (the caller holding the state
        // lock, nobody else appends) where it ends.
        let (ino, len) = ino_len(&self.path)?;
        self.reopen_if(ino)?;
        let (at, caught_up, seal) = self.write_position(len)?;
        let mut buf = Vec::with_capacity(records.len() * 256);
        if seal {
            // Seal the torn record a crashed writer left, so ours starts on a line of its own.
            buf.push(b'\n');
        }
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let end = at + buf.len() as u64;
        if self.reserve {
            if end > len {
                // Out of room: the next reserve goes out with these records.
                buf.resize(buf.len() + RESERVE, 0);
            }
            self.file.write_all_at(&buf, at)?;
            if caught_up {
                // Otherwise the length stays unseen: the records before these are news.
                self.seen_len = len.max(at + buf.len() as u64);
            }
        } else {
            (&*self.file).write_all(&buf)?;
        }
        if caught_up {
            self.read_to = end;
        }
        Ok((self.file.clone(), caught_up))
    }

    /// Where the next records go in a file of `len` bytes, whether everything before is read
    /// (`read_to` is always just after a newline), and whether a torn record must be sealed.
    fn write_position(&mut self, len: u64) -> io::Result<(u64, bool, bool)> {
        if !self.reserve {
            let caught_up = len == self.read_to;
            let seal = len > 0 && !caught_up && !self.ends_with_newline(len)?;
            return Ok((len, caught_up, seal));
        }
        if !self.has_news(len)? {
            return Ok((self.read_to, true, false));
        }
        // Records this reader has not read (another process's, or a torn one): ours go after
        // the last byte that is not reserve.
        let mut rest = vec![0u8; len.saturating_sub(self.read_to) as usize];
        self.file.read_exact_at(&mut rest, self.read_to)?;
        Ok(match rest.iter().rposition(|&b| b != 0) {
            Some(i) => (self.read_to + i as u64 + 1, false, rest[i] != b'\n'),
            None => (self.read_to, true, false),
        })
    }

    /// Makes everything written so far durable (one fsync covers every earlier byte).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Writes records to the kernel without an fsync: they survive the process being killed
    /// (`kill -9`), and are durable after the next [`Journal::append`] or [`Journal::sync`].
    pub fn write_records(&mut self, records: &[T]) -> io::Result<()> {
        self.append_unsynced(records).map(|_| ())
    }

    /// Whether the file (now `len` bytes) may hold records this reader has not read.
    fn has_news(&self, len: u64) -> io::Result<bool> {
        if len == self.read_to {
            return Ok(false);
        }
        if !self.reserve || len != self.seen_len {
            return Ok(true);
        }
        // Same length: only a record written into the reserve, right where reading stopped.
        let mut first = [0u8; 1];
        let n = self.file.read_at(&mut first, self.read_to)?;
        Ok(n == 1 && first[0] != 0)
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
        let (ino, len) = ino_len(&self.path)?;
        if self.reopen_if(ino)? {
            return Ok(false);
        }
        // Nothing written since the last read (the common case: one `stat`, and for a
        // reserving journal one byte read): no read at all.
        if self.has_news(len)? {
            self.read_each(each)?;
            self.seen_len = len;
        }
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
            let mut f = &*self.file;
            f.seek(SeekFrom::Start(c.from))?;
            f.read_to_end(&mut tail)?;
            // Only whole records: nobody writes now, so a line without its newline is torn.
            let whole = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let tail = &tail[..whole];
            c.file.write_all(tail)?;
            c.file.sync_data()?;
            std::fs::rename(&c.tmp, &self.path)?;
            super::atomic::sync_dir(self.path.parent().unwrap_or(Path::new(".")))?;
            self.file = Arc::new(Self::open_file(&self.path, self.reserve)?);
            self.ino = self.file.metadata()?.ino();
            self.read_to = c.len + tail.len() as u64;
            self.seen_len = self.read_to;
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

    /// Reopens the journal when the file at its path is no longer `ino` (it was replaced).
    fn reopen_if(&mut self, ino: u64) -> io::Result<bool> {
        if ino == self.ino {
            return Ok(false);
        }
        self.file = Arc::new(Self::open_file(&self.path, self.reserve)?);
        self.ino = ino;
        self.read_to = 0;
        self.seen_len = 0;
        Ok(true)
    }

    fn ends_with_newline(&mut self, len: u64) -> io::Result<bool> {
        let mut last = [0u8; 1];
        self.file.read_exact_at(&mut last, len - 1)?;
        Ok(last[0] == b'\n')
    }

    fn read_each(&mut self, mut each: impl FnMut(T)) -> io::Result<()> {
        let mut f = &*self.file;
        f.seek(SeekFrom::Start(self.read_to))?;
        let mut reader = BufReader::with_capacity(64 * 1024, f);
        let mut line = Vec::new();
        loop {
            // Reserve where a record would start: the end, unless records follow it.
            let zeros = skip_zeros(&mut reader)?;
            if zeros > 0 {
                if reader.fill_buf()?.is_empty() {
                    break;
                }
                self.read_to += zeros;
            }
            line.clear();
            let n = read_line(&mut reader, &mut line)?;
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

/// Inode and length of the file at `path`, without asking for its times. A stat that reads
/// them makes ext4 (multigrain timestamps, Linux 6.13 and later) give the file a fresh
/// fine-grained mtime at its next write, and that dirty inode is then written by the
/// fdatasync too: a stat per request would cost every issuance's fsync a second disk write.
fn ino_len(path: &Path) -> io::Result<(u64, u64)> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    match statx(
        CWD,
        path,
        AtFlags::empty(),
        StatxFlags::INO | StatxFlags::SIZE,
    ) {
        Ok(st) => Ok((st.stx_ino, st.stx_size)),
        // Kernels before statx (4.11).
        Err(rustix::io::Errno::NOSYS) => {
            let meta = std::fs::metadata(path)?;
            Ok((meta.ino(), meta.len()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Consumes NUL bytes (reserve) at the reader's position; returns how many.
fn skip_zeros(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf()?;
        let zeros = buf.iter().take_while(|&&b| b == 0).count();
        let more = zeros == buf.len() && !buf.is_empty();
        reader.consume(zeros);
        total += zeros as u64;
        if !more {
            return Ok(total);
        }
    }
}

/// Reads up to and including a newline, stopping early (without consuming it) at a NUL: a
/// record torn inside the reserve ends there, not a megabyte later.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(n);
        }
        match buf.iter().position(|&b| b == b'\n' || b == 0) {
            Some(i) => {
                let newline = buf[i] == b'\n';
                let take = if newline { i + 1 } else { i };
                line.extend_from_slice(&buf[..take]);
                reader.consume(take);
                return Ok(n + take);
            }
            None => {
                let len = buf.len();
                line.extend_from_slice(buf);
                reader.consume(len);
                n += len;
            }
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
