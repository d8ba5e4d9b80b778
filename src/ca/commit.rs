//! Group commit of the inventory: concurrent issuances share one write and one fsync.
//!
//! An fsync costs far more than a signature, so one fsync per certificate would cap the CA at
//! the disk's fsync rate whatever the cores. Instead one writer thread drains every record
//! queued so far, appends them with ONE write and ONE fsync under the state lock (taken per
//! batch, so other processes sharing the state directory still never interleave with us), and
//! only then acknowledges each caller. Records queued while it waits for the disk form the next
//! batch. A certificate is therefore never handed out before its record is durable, exactly as
//! with one fsync per record; a lone caller pays one thread hand-off more than before.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use super::CaError;
use crate::store::inventory::{Inventory, IssuedRecord};
use crate::store::lock::StateLockFile;

/// More than this many records wait for the next batch (bounds one write's size).
const MAX_BATCH: usize = 4096;

/// Why a record was not written; cloned to every caller of a failed batch.
#[derive(Debug, Clone)]
enum Failure {
    /// The serial is already in the inventory (2^-127 odds; refused rather than reused).
    Collision,
    Io(String),
    Internal(String),
}

impl Failure {
    fn into_error(self, state_dir: &std::path::Path) -> CaError {
        match self {
            Failure::Collision => CaError::Internal("serial collision".into()),
            Failure::Io(e) => CaError::io(state_dir, std::io::Error::other(e)),
            Failure::Internal(e) => CaError::Internal(e),
        }
    }
}

type Outcome = Result<(), Failure>;

/// How the writer answers: a blocked thread or an async task.
enum Reply {
    Blocking(SyncSender<Outcome>),
    Async(tokio::sync::oneshot::Sender<Outcome>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        // The caller may be gone (a dropped request): its record is durable all the same.
        match self {
            Reply::Blocking(tx) => drop(tx.send(outcome)),
            Reply::Async(tx) => drop(tx.send(outcome)),
        }
    }
}

struct Job {
    record: IssuedRecord,
    reply: Reply,
}

/// The handle to the writer thread of one [`super::local::LocalCa`].
pub struct Committer {
    state_dir: PathBuf,
    jobs: Sender<Job>,
}

impl Committer {
    /// Starts the writer thread; it ends when the committer is dropped.
    pub fn start(state_dir: PathBuf, inventory: Arc<Mutex<Inventory>>) -> Committer {
        let (tx, rx) = mpsc::channel();
        let dir = state_dir.clone();
        std::thread::Builder::new()
            .name("certdock-inventory".into())
            // It only formats JSON lines and waits for the disk.
            .stack_size(256 * 1024)
            .spawn(move || writer(&dir, &inventory, &rx))
            .expect("spawn the inventory writer thread");
        Committer {
            state_dir,
            jobs: tx,
        }
    }

    /// Queues a record; the answer says when (and whether) it is durable.
    pub fn submit(&self, record: IssuedRecord) -> Durable {
        Durable {
            record: Some(record),
            jobs: self.jobs.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}

/// A record on its way to disk. Nothing is sent until it is waited for, so both a blocking
/// thread and an async task can wait (each in its own way).
#[must_use = "a record is only written when waited for"]
pub struct Durable {
    record: Option<IssuedRecord>,
    jobs: Sender<Job>,
    state_dir: PathBuf,
}

impl Durable {
    fn send(&mut self, reply: Reply) -> Result<(), CaError> {
        let stopped = || CaError::Internal("the inventory writer has stopped".into());
        let record = self.record.take().ok_or_else(stopped)?;
        self.jobs.send(Job { record, reply }).map_err(|_| stopped())
    }

    /// Blocks until the record is durable.
    pub fn wait(mut self) -> Result<(), CaError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Reply::Blocking(tx))?;
        match rx.recv() {
            Ok(outcome) => outcome.map_err(|f| f.into_error(&self.state_dir)),
            Err(_) => Err(CaError::Internal(
                "the inventory writer stopped before answering".into(),
            )),
        }
    }

    /// Waits, without blocking the thread, until the record is durable.
    pub async fn await_durable(mut self) -> Result<(), CaError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Reply::Async(tx))?;
        match rx.await {
            Ok(outcome) => outcome.map_err(|f| f.into_error(&self.state_dir)),
            Err(_) => Err(CaError::Internal(
                "the inventory writer stopped before answering".into(),
            )),
        }
    }
}

fn writer(state_dir: &std::path::Path, inventory: &Mutex<Inventory>, jobs: &Receiver<Job>) {
    // The lock file stays open between batches.
    let mut lock_file: Option<StateLockFile> = None;
    // Blocks for the first record, then takes whatever else has queued up meanwhile: while
    // one batch waits for the disk, the next one gathers.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let (records, replies): (Vec<IssuedRecord>, Vec<Reply>) =
            batch.into_iter().map(|j| (j.record, j.reply)).unzip();
        let outcomes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_batch(state_dir, &mut lock_file, inventory, records)
        }))
        .unwrap_or_else(|_| {
            vec![Err(Failure::Internal("the inventory writer panicked".into())); n]
        });
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            reply.send(outcome);
        }
    }
}

/// Appends one batch with one fsync. Returns one outcome per record, in order.
fn write_batch(
    state_dir: &std::path::Path,
    lock_file: &mut Option<StateLockFile>,
    inventory: &Mutex<Inventory>,
    records: Vec<IssuedRecord>,
) -> Vec<Outcome> {
    let n = records.len();
    let fail_all = |f: Failure| vec![Err(f); n];
    let lock_file = match lock_file {
        Some(f) => f,
        None => match StateLockFile::open(state_dir) {
            Ok(f) => lock_file.insert(f),
            Err(e) => return fail_all(Failure::Io(e.to_string())),
        },
    };
    let _lock = match lock_file.exclusive() {
        Ok(l) => l,
        Err(e) => return fail_all(Failure::Io(e.to_string())),
    };
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(n);
    let (sync, written) = {
        let Ok(mut inv) = inventory.lock() else {
            return fail_all(Failure::Internal("inventory lock poisoned".into()));
        };
        let mut fresh: Vec<IssuedRecord> = Vec::with_capacity(n);
        for r in records {
            if inv.contains(&r.serial) || fresh.iter().any(|o| o.serial == r.serial) {
                outcomes.push(Err(Failure::Collision));
            } else {
                outcomes.push(Ok(()));
                fresh.push(r);
            }
        }
        match inv.write_issued(fresh) {
            Ok(w) => w,
            Err(e) => return fail_all(Failure::Io(e.to_string())),
        }
    };
    // The fsync runs without the inventory mutex: a renewal checking a client certificate
    // against the index need not wait for the disk.
    if let Err(e) = sync.sync_data() {
        return fail_all(Failure::Io(e.to_string()));
    }
    match inventory.lock() {
        Ok(mut inv) => inv.apply_issued(written),
        Err(_) => return fail_all(Failure::Internal("inventory lock poisoned".into())),
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::requester::Requester;

    fn rec(serial: &str) -> IssuedRecord {
        IssuedRecord::sample(serial, Requester::Other("test".into()))
    }

    #[test]
    fn concurrent_records_are_all_durable_and_a_repeated_serial_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Arc::new(Mutex::new(Inventory::open(dir.path()).unwrap()));
        let c = Committer::start(dir.path().to_path_buf(), inv.clone());
        std::thread::scope(|s| {
            for t in 0..8 {
                let c = &c;
                s.spawn(move || {
                    for i in 0..50 {
                        c.submit(rec(&format!("{t:02x}{i:04x}"))).wait().unwrap();
                    }
                });
            }
        });
        assert!(
            c.submit(rec("000001")).wait().is_err(),
            "a serial is never recorded twice"
        );
        // What is on disk, read by a fresh reader, not this process's index.
        assert_eq!(Inventory::open(dir.path()).unwrap().len(), 400);
        assert_eq!(inv.lock().unwrap().len(), 400);
    }

    #[tokio::test]
    async fn async_waiters_get_their_answer_after_the_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Arc::new(Mutex::new(Inventory::open(dir.path()).unwrap()));
        let c = Committer::start(dir.path().to_path_buf(), inv);
        let waits: Vec<_> = (0..20)
            .map(|i| c.submit(rec(&format!("{i:04x}"))).await_durable())
            .collect();
        for w in futures_util::future::join_all(waits).await {
            w.unwrap();
        }
        assert_eq!(Inventory::open(dir.path()).unwrap().len(), 20);
    }
}
