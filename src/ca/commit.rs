//! Group commit of the inventory: concurrent issuances share one write and one fsync.
//!
//! An fsync costs far more than a signature, so one fsync per certificate would cap the CA at
//! the disk's fsync rate whatever the cores. Instead records queue up, and one caller at a time
//! (the leader: the first that finds no batch in flight) takes every record queued so far,
//! appends them with ONE write and ONE fsync under the state lock (taken per batch, so other
//! processes sharing the state directory still never interleave with us), and only then answers
//! each caller. Records queued while it waits for the disk form the next batch, which the
//! leader starts before it returns. A certificate is therefore never handed out before its
//! record is durable, exactly as with one fsync per record.
//!
//! There is no writer thread: waking one per batch, and the answer's tokio worker from it,
//! were the largest item of an API issuance's CPU after the signature (thread switches). An
//! async leader writes on its own tokio worker when the runtime has another worker to go on
//! with (there is one leader at a time, so the disk holds at most one worker) and the state
//! lock is free at once; otherwise (one worker, or the lock held by another process, maybe for
//! long) the batch goes to the blocking pool. A blocking caller (the CLI) writes on its thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::runtime::{Handle, RuntimeFlavor};

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
    fn into_error(self, state_dir: &Path) -> CaError {
        match self {
            Failure::Collision => CaError::Internal("serial collision".into()),
            Failure::Io(e) => CaError::io(state_dir, std::io::Error::other(e)),
            Failure::Internal(e) => CaError::Internal(e),
        }
    }
}

type Outcome = Result<(), Failure>;

/// How a caller is answered: a blocked thread or an async task.
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

/// The records waiting for a batch.
#[derive(Default)]
struct Queue {
    pending: Vec<Job>,
    /// A leader is writing a batch (or about to): queued records wait for it.
    leading: bool,
}

struct Shared {
    state_dir: PathBuf,
    inventory: Arc<Mutex<Inventory>>,
    queue: Mutex<Queue>,
    /// The state lock file, kept open between batches; only the leader uses it.
    lock_file: Mutex<Option<StateLockFile>>,
}

/// The group commit of one [`super::local::LocalCa`]'s inventory.
pub struct Committer {
    shared: Arc<Shared>,
}

impl Committer {
    pub fn new(state_dir: PathBuf, inventory: Arc<Mutex<Inventory>>) -> Committer {
        Committer {
            shared: Arc::new(Shared {
                state_dir,
                inventory,
                queue: Mutex::default(),
                lock_file: Mutex::default(),
            }),
        }
    }

    /// A record to write; the answer says when (and whether) it is durable.
    pub fn submit(&self, record: IssuedRecord) -> Durable {
        Durable {
            record: Some(record),
            shared: self.shared.clone(),
        }
    }
}

/// A record on its way to disk. Nothing is queued until it is waited for, so both a blocking
/// thread and an async task can wait (each in its own way).
#[must_use = "a record is only written when waited for"]
pub struct Durable {
    record: Option<IssuedRecord>,
    shared: Arc<Shared>,
}

/// Where a leader runs, so what it may do there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Polled by a tokio worker: must not wait for another process's lock.
    Worker,
    /// A thread that may block (the CLI, the blocking pool).
    Thread,
}

impl Durable {
    /// Queues the record; true when the caller must lead the next batch.
    fn enqueue(&mut self, reply: Reply) -> Result<bool, CaError> {
        let record = self
            .record
            .take()
            .ok_or_else(|| CaError::Internal("a record waited for twice".into()))?;
        let mut q = self.shared.queue();
        q.pending.push(Job { record, reply });
        Ok(!std::mem::replace(&mut q.leading, true))
    }

    /// Blocks until the record is durable.
    pub fn wait(mut self) -> Result<(), CaError> {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.enqueue(Reply::Blocking(tx))? {
            lead(self.shared.clone(), Place::Thread);
        }
        match rx.recv() {
            Ok(outcome) => outcome.map_err(|f| f.into_error(&self.shared.state_dir)),
            Err(_) => Err(CaError::Internal(
                "the inventory batch ended before answering".into(),
            )),
        }
    }

    /// Waits, without blocking the thread on another process, until the record is durable.
    pub async fn await_durable(mut self) -> Result<(), CaError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Queued and led within one poll: a dropped request cannot leave a batch unled.
        if self.enqueue(Reply::Async(tx))? {
            lead(self.shared.clone(), Place::Worker);
        }
        match rx.await {
            Ok(outcome) => outcome.map_err(|f| f.into_error(&self.shared.state_dir)),
            Err(_) => Err(CaError::Internal(
                "the inventory batch ended before answering".into(),
            )),
        }
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Only a list of jobs and a flag, each left whole: a panic elsewhere cannot tear it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a tokio worker may wait for the disk itself: there are others to go on meanwhile.
fn worker_may_write() -> bool {
    Handle::try_current().is_ok_and(|h| {
        h.runtime_flavor() == RuntimeFlavor::MultiThread && h.metrics().num_workers() >= 2
    })
}

/// What a batch left behind.
enum Next {
    /// Nothing queued: leadership given up.
    Done,
    /// Records queued meanwhile: this leader must see to the next batch.
    More,
    /// The state lock is held elsewhere and this place may not wait for it.
    Blocked,
}

/// Writes batches until none is queued, or hands the next one on (see the module documentation).
fn lead(shared: Arc<Shared>, place: Place) {
    loop {
        let next = if place == Place::Worker && !worker_may_write() {
            Next::Blocked
        } else {
            write_next(&shared, place == Place::Thread)
        };
        match next {
            Next::Done => return,
            Next::Blocked => {
                // Only a worker gets here, so there is a runtime.
                tokio::task::spawn_blocking(move || lead(shared, Place::Thread));
                return;
            }
            Next::More => match Handle::try_current() {
                // The caller's own answer need not wait: the next batch is a task of its own.
                Ok(h) => {
                    h.spawn(async move { lead(shared, Place::Worker) });
                    return;
                }
                // A thread of the CLI: nobody else would write them.
                Err(_) => continue,
            },
        }
    }
}

/// One batch: the state lock, every queued record (up to [`MAX_BATCH`]) written with one
/// fsync, each caller answered. `wait`: whether to wait for the state lock if it is held.
fn write_next(shared: &Shared, wait: bool) -> Next {
    let Some((replies, outcomes)) = write_locked(shared, wait) else {
        return Next::Blocked;
    };
    // Answered with the state lock released: the next batch need not wait for the wake-ups.
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        reply.send(outcome);
    }
    let mut q = shared.queue();
    if q.pending.is_empty() {
        q.leading = false;
        Next::Done
    } else {
        Next::More
    }
}

/// The locked part of [`write_next`]: each caller's reply with its outcome, or None when the
/// lock is held elsewhere and `wait` is false (nothing taken from the queue then).
fn write_locked(shared: &Shared, wait: bool) -> Option<(Vec<Reply>, Vec<Outcome>)> {
    let mut lock_file = shared
        .lock_file
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let file = match &mut *lock_file {
        Some(f) => Ok(f),
        None => StateLockFile::open(&shared.state_dir).map(|f| lock_file.insert(f)),
    };
    let held = match file.and_then(|f| {
        if wait {
            f.exclusive().map(Some)
        } else {
            f.try_exclusive()
        }
    }) {
        Ok(Some(held)) => Ok(held),
        Ok(None) => return None,
        Err(e) => Err(Failure::Io(e.to_string())),
    };
    // Taken with the lock held: whatever queued while it was awaited joins this batch.
    let batch: Vec<Job> = {
        let mut q = shared.queue();
        let n = q.pending.len().min(MAX_BATCH);
        q.pending.drain(..n).collect()
    };
    let n = batch.len();
    let (records, replies): (Vec<IssuedRecord>, Vec<Reply>) =
        batch.into_iter().map(|j| (j.record, j.reply)).unzip();
    let outcomes = match held {
        Ok(_held) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_batch(&shared.inventory, records)
        }))
        .unwrap_or_else(|_| vec![Err(Failure::Internal("the inventory batch panicked".into())); n]),
        Err(f) => vec![Err(f); n],
    };
    Some((replies, outcomes))
}

/// Appends one batch with one fsync, the state lock held. Returns one outcome per record, in
/// order.
fn write_batch(inventory: &Mutex<Inventory>, records: Vec<IssuedRecord>) -> Vec<Outcome> {
    let n = records.len();
    let fail_all = |f: Failure| vec![Err(f); n];
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
        let c = Committer::new(dir.path().to_path_buf(), inv.clone());
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
        let c = Committer::new(dir.path().to_path_buf(), inv);
        let waits: Vec<_> = (0..20)
            .map(|i| c.submit(rec(&format!("{i:04x}"))).await_durable())
            .collect();
        for w in futures_util::future::join_all(waits).await {
            w.unwrap();
        }
        assert_eq!(Inventory::open(dir.path()).unwrap().len(), 20);
    }

    /// On workers that may write themselves: tasks on both workers, batches led inline and
    /// handed on as tasks while others queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_on_several_workers_all_get_durable_records() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Arc::new(Mutex::new(Inventory::open(dir.path()).unwrap()));
        let c = Arc::new(Committer::new(dir.path().to_path_buf(), inv));
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let c = c.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        c.submit(rec(&format!("{t:02x}{i:04x}")))
                            .await_durable()
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(Inventory::open(dir.path()).unwrap().len(), 400);
    }

    /// A worker never waits for a state lock another process holds: the batch goes to the
    /// blocking pool, and is written (and answered) once the lock is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_state_lock_held_elsewhere_is_waited_for_off_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Arc::new(Mutex::new(Inventory::open(dir.path()).unwrap()));
        let c = Committer::new(dir.path().to_path_buf(), inv);
        let other = crate::store::lock::StateLock::exclusive(dir.path()).unwrap();
        let mut waiting = Box::pin(c.submit(rec("0001")).await_durable());
        // The first poll queues the record and leads: the lock is taken, so it cannot finish.
        assert!(futures_util::poll!(&mut waiting).is_pending());
        assert_eq!(Inventory::open(dir.path()).unwrap().len(), 0);
        drop(other);
        waiting.await.unwrap();
        assert_eq!(Inventory::open(dir.path()).unwrap().len(), 1);
    }
}
