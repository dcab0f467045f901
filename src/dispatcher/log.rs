//! The job log as the dispatcher writes it: entries are queued in memory and one blocking
//! writer thread writes them, so no file I/O happens on the runtime's workers.
//!
//! When the writer acts (the rule [`Queue::next`] decides, unit-tested below):
//!
//! - Queued entries are written within [`WRITE_DELAY`] of the first of them being queued, so
//!   a console streaming 150 lines a second costs about ten `write`s a second, and clients
//!   following the log (`scheduler.jobs.logs`, `/api/v0.2/jobs/<id>/logs/`, which read the
//!   file) see each line within that delay.
//! - Written lines are synced to disk [`SYNC_INTERVAL`] after the first unsynced write, not
//!   per batch: one `fdatasync` per burst of console lines cost most of a board's CPU and
//!   wears an SD card.
//! - [`JobLog::sync`] writes and syncs everything queued before it at once; the runner awaits
//!   it at the end of every top-level action, and the writer syncs when the job's last handle
//!   is dropped.
//!
//! Durability rule: a crash or power cut loses at most the last [`SYNC_INTERVAL`] of console
//! lines of an action still running, never a finished result: test results go to SQLite on
//! their own, and the log up to each action's end is on disk before the next action starts.
//!
//! A producer wakes the writer only when the writer sleeps with nothing to do, so a streaming
//! console costs no wake-up per line. The queue is bounded ([`MAX_QUEUED_BYTES`]): if the disk
//! stalls, further entries are dropped and counted, and the log says how many once the writer
//! catches up, rather than the appliance running out of memory.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::store::joblog::{Entry, JobLogWriter, Level};

/// How long a queued entry may wait before it is written (and visible to log readers).
pub const WRITE_DELAY: Duration = Duration::from_millis(100);
/// How long a written line may stay unsynced.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The most message text queued before entries are dropped (a stalled disk).
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// A cheap-to-clone handle that appends entries to one job's log.
#[derive(Debug, Clone)]
pub struct JobLog {
    /// `None`: a log that discards everything.
    queue: Option<Arc<Producer>>,
}

/// The writer task; await [`LogTask::finish`] once every [`JobLog`] is dropped.
#[derive(Debug)]
pub struct LogTask {
    handle: JoinHandle<()>,
}

impl LogTask {
    /// Waits until every entry sent so far is written and synced.
    pub async fn finish(self) {
        let _ = self.handle.await;
    }
}

/// The queue shared by the handles and the writer.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue inconsistent: every change
        // under it is a push or a take.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Owned by the handles together; dropping the last one closes the queue.
#[derive(Debug)]
struct Producer {
    shared: Arc<Shared>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// What is waiting for the writer.
#[derive(Debug, Default)]
struct Queue {
    entries: Vec<Entry>,
    /// When the oldest of `entries` was queued.
    oldest: Option<Instant>,
    /// Approximate size of `entries`, for the bound.
    bytes: usize,
    /// Entries refused since the last take because the queue was full.
    dropped: u64,
    /// Callers of [`JobLog::sync`] waiting for the next sync.
    syncs: Vec<oneshot::Sender<()>>,
    /// The writer sleeps until something happens: the next push must wake it.
    writer_idle: bool,
    /// Every handle is gone.
    closed: bool,
}

/// What the writer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Sleep until woken: nothing is queued and nothing is unsynced.
    Idle,
    /// Sleep until this moment unless woken.
    Until(Instant),
    /// Take the queue and write it, syncing if `sync`.
    Write {
        /// Sync after writing.
        sync: bool,
    },
}

/// What the writer took from the queue.
#[derive(Debug, Default)]
struct Taken {
    entries: Vec<Entry>,
    dropped: u64,
    syncs: Vec<oneshot::Sender<()>>,
    closed: bool,
}

impl Queue {
    /// Queues `entry`; returns whether the writer must be woken.
    fn push(&mut self, entry: Entry, now: Instant) -> bool {
        let size = match &entry.msg {
            serde_json::Value::String(s) => s.len(),
            _ => 256,
        } + 64;
        if self.bytes + size > MAX_QUEUED_BYTES {
            self.dropped += 1;
            return false;
        }
        self.bytes += size;
        self.oldest.get_or_insert(now);
        self.entries.push(entry);
        std::mem::take(&mut self.writer_idle)
    }

    /// Asks for a write and sync of everything queued so far; the caller wakes the writer,
    /// even from a timed sleep.
    fn request_sync(&mut self, done: oneshot::Sender<()>) {
        self.syncs.push(done);
        self.writer_idle = false;
    }

    /// The writer's rule, given when its oldest unsynced write happened.
    fn next(&self, unsynced_since: Option<Instant>, now: Instant) -> Next {
        if self.closed || !self.syncs.is_empty() {
            return Next::Write { sync: true };
        }
        let sync_due = unsynced_since.map(|t| t + SYNC_INTERVAL);
        let write_due = self.oldest.map(|t| t + WRITE_DELAY);
        if sync_due.is_some_and(|t| t <= now) {
            return Next::Write { sync: true };
        }
        if write_due.is_some_and(|t| t <= now) {
            return Next::Write { sync: false };
        }
        match write_due.into_iter().chain(sync_due).min() {
            None => Next::Idle,
            Some(at) => Next::Until(at),
        }
    }

    /// Empties the queue for a write.
    fn take(&mut self) -> Taken {
        self.oldest = None;
        self.bytes = 0;
        Taken {
            entries: std::mem::take(&mut self.entries),
            dropped: std::mem::take(&mut self.dropped),
            syncs: std::mem::take(&mut self.syncs),
            closed: self.closed,
        }
    }
}

/// The writer thread: waits for [`Queue::next`] to say write, writes, syncs, and ends once the
/// queue is closed and drained.
fn run_writer(mut writer: JobLogWriter, shared: &Shared) {
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let (taken, sync) = {
            let mut queue = shared.lock();
            loop {
                let now = Instant::now();
                match queue.next(unsynced_since, now) {
                    Next::Write { sync } => break (queue.take(), sync),
                    Next::Idle => {
                        queue.writer_idle = true;
                        queue = shared
                            .wake
                            .wait(queue)
                            .unwrap_or_else(PoisonError::into_inner);
                        queue.writer_idle = false;
                    }
                    Next::Until(at) => {
                        queue = shared
                            .wake
                            .wait_timeout(queue, at.saturating_duration_since(now))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
            }
        };
        let mut entries = taken.entries;
        if taken.dropped > 0 {
            entries.push(Entry::now(
                Level::Warning,
                format!(
                    "{} job log entries dropped: writing the log could not keep up",
                    taken.dropped
                ),
            ));
        }
        if !entries.is_empty() {
            if let Err(e) = writer.write_batch(&entries) {
                tracing::warn!("job log {}: {e}", writer.path().display());
            }
            unsynced_since.get_or_insert_with(Instant::now);
        }
        if sync
            && unsynced_since.take().is_some()
            && let Err(e) = writer.sync()
        {
            tracing::warn!("job log {}: {e}", writer.path().display());
        }
        for done in taken.syncs {
            let _ = done.send(());
        }
        if taken.closed {
            return;
        }
    }
}

impl JobLog {
    /// Opens `path` for appending and starts the writer.
    pub async fn open(path: std::path::PathBuf) -> Result<(JobLog, LogTask), String> {
        let writer = tokio::task::spawn_blocking(move || JobLogWriter::open(path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(JobLog::start(writer))
    }

    fn start(writer: JobLogWriter) -> (JobLog, LogTask) {
        let shared = Arc::new(Shared::default());
        let producer = Producer {
            shared: shared.clone(),
        };
        let handle = tokio::task::spawn_blocking(move || run_writer(writer, &shared));
        (
            JobLog {
                queue: Some(Arc::new(producer)),
            },
            LogTask { handle },
        )
    }

    /// A log that discards everything (tests).
    pub fn discard() -> JobLog {
        JobLog { queue: None }
    }

    /// Appends `entry`.
    pub fn entry(&self, entry: Entry) {
        let Some(producer) = &self.queue else {
            return;
        };
        let wake = producer.shared.lock().push(entry, Instant::now());
        if wake {
            producer.shared.wake.notify_one();
        }
    }

    /// Writes and syncs everything appended before this call; returns once it is on disk (at
    /// once for a discarding log, or if the writer is gone).
    pub async fn sync(&self) {
        let Some(producer) = &self.queue else {
            return;
        };
        let (done, synced) = oneshot::channel();
        producer.shared.lock().request_sync(done);
        producer.shared.wake.notify_one();
        let _ = synced.await;
    }

    /// Appends a text line at `level`.
    pub fn line(&self, level: Level, msg: impl Into<String>) {
        self.entry(Entry::now(level, msg));
    }

    /// `info`.
    pub fn info(&self, msg: impl Into<String>) {
        self.line(Level::Info, msg);
    }

    /// `debug`.
    pub fn debug(&self, msg: impl Into<String>) {
        self.line(Level::Debug, msg);
    }

    /// `error`.
    pub fn error(&self, msg: impl Into<String>) {
        self.line(Level::Error, msg);
    }

    /// `results`, with a mapping as the message.
    pub fn results(&self, msg: serde_json::Value) {
        let mut entry = Entry::now(Level::Results, "");
        entry.msg = msg;
        self.entry(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::joblog::read_lines;

    fn entry(msg: &str) -> Entry {
        Entry::now(Level::Target, msg)
    }

    #[test]
    fn writes_wait_for_the_delay_and_syncs_for_the_interval() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        assert_eq!(q.next(None, t0), Next::Idle);

        // The first entry wakes an idle writer, later ones do not.
        q.writer_idle = true;
        assert!(q.push(entry("a"), t0));
        assert!(!q.push(entry("b"), t0 + Duration::from_millis(50)));
        assert_eq!(q.next(None, t0), Next::Until(t0 + WRITE_DELAY));
        assert_eq!(q.next(None, t0 + WRITE_DELAY), Next::Write { sync: false });
        let taken = q.take();
        assert_eq!(taken.entries.len(), 2);
        assert!(!taken.closed);

        // Written but unsynced: the writer sleeps until the sync is due, then syncs.
        let written = t0 + WRITE_DELAY;
        assert_eq!(
            q.next(Some(written), written),
            Next::Until(written + SYNC_INTERVAL)
        );
        assert_eq!(
            q.next(Some(written), written + SYNC_INTERVAL),
            Next::Write { sync: true }
        );

        // A streaming console: the next write comes before the sync is due.
        let later = written + Duration::from_millis(500);
        q.push(entry("c"), later);
        assert_eq!(
            q.next(Some(written), later),
            Next::Until(later + WRITE_DELAY)
        );
        // The sync deadline wins when it comes first.
        let late = written + SYNC_INTERVAL - Duration::from_millis(10);
        let mut q2 = Queue::default();
        q2.push(entry("d"), late);
        assert_eq!(
            q2.next(Some(written), late),
            Next::Until(written + SYNC_INTERVAL)
        );
        assert_eq!(
            q2.next(Some(written), written + SYNC_INTERVAL),
            Next::Write { sync: true }
        );
    }

    #[test]
    fn a_sync_request_or_the_end_acts_at_once() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.push(entry("a"), t0);
        let (done, _synced) = oneshot::channel();
        q.request_sync(done);
        assert_eq!(q.next(None, t0), Next::Write { sync: true });
        let taken = q.take();
        assert_eq!((taken.entries.len(), taken.syncs.len()), (1, 1));

        let mut q = Queue {
            closed: true,
            ..Queue::default()
        };
        assert_eq!(q.next(None, t0), Next::Write { sync: true });
        assert!(q.take().closed);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        let big = "x".repeat(MAX_QUEUED_BYTES / 4);
        for _ in 0..3 {
            q.push(entry(&big), t0);
        }
        q.writer_idle = true;
        assert!(!q.push(entry(&big), t0), "a dropped entry wakes nobody");
        q.push(entry(&big), t0);
        let taken = q.take();
        assert_eq!((taken.entries.len(), taken.dropped), (3, 2));
        assert!(q.push(entry("room again"), t0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_are_written_in_order_and_synced_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.yaml");
        let (log, task) = JobLog::open(path.clone()).await.unwrap();
        for i in 0..500 {
            log.line(Level::Target, format!("line {i}"));
        }
        log.sync().await;
        // Everything logged before the sync is in the file now, without waiting for the end.
        let lines = read_lines(&path, 0, None).unwrap();
        assert_eq!(lines.len(), 500);
        assert!(lines[499].text.contains("\"line 499\""));
        log.info("after the sync");
        let other = log.clone();
        drop(log);
        other.info("from a clone");
        drop(other);
        task.finish().await;
        let lines = read_lines(&path, 0, None).unwrap();
        assert_eq!(lines.len(), 502);
        assert!(
            lines
                .iter()
                .take(500)
                .enumerate()
                .all(|(i, l)| l.text.contains(&format!("\"line {i}\"")))
        );
        assert!(lines[501].text.contains("from a clone"));
    }

    #[tokio::test]
    async fn a_discarding_log_syncs_at_once() {
        let log = JobLog::discard();
        log.info("nowhere");
        log.sync().await;
    }
}
