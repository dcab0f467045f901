//! The job log as the dispatcher writes it: entries go over a channel to one blocking writer,
//! so no file I/O happens on the runtime's workers.

use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::joblog::{Entry, JobLogWriter, Level};

/// The most entries written (and synced) together.
const MAX_BATCH: usize = 1024;

/// A cheap-to-clone handle that appends entries to one job's log.
#[derive(Debug, Clone)]
pub struct JobLog {
    tx: mpsc::UnboundedSender<Entry>,
}

/// The writer task; await [`LogTask::finish`] once every [`JobLog`] is dropped.
#[derive(Debug)]
pub struct LogTask {
    handle: JoinHandle<()>,
}

impl LogTask {
    /// Waits until every entry sent so far is written.
    pub async fn finish(self) {
        let _ = self.handle.await;
    }
}

impl JobLog {
    /// Opens `path` for appending and starts the writer.
    pub async fn open(path: PathBuf) -> Result<(JobLog, LogTask), String> {
        let writer = tokio::task::spawn_blocking(move || JobLogWriter::open(path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(JobLog::start(writer))
    }

    fn start(mut writer: JobLogWriter) -> (JobLog, LogTask) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Entry>();
        let handle = tokio::task::spawn_blocking(move || {
            // Everything queued while the last batch was synced goes in the next one: a
            // console streaming at 115200 baud makes ~150 lines a second, and one fdatasync
            // per line would wear an SD card and cost a core.
            let mut batch = Vec::new();
            while let Some(entry) = rx.blocking_recv() {
                batch.push(entry);
                while batch.len() < MAX_BATCH
                    && let Ok(entry) = rx.try_recv()
                {
                    batch.push(entry);
                }
                if let Err(e) = writer.append_batch(&batch) {
                    tracing::warn!("job log {}: {e}", writer.path().display());
                }
                batch.clear();
            }
        });
        (JobLog { tx }, LogTask { handle })
    }

    /// A log that discards everything (tests).
    pub fn discard() -> JobLog {
        let (tx, _rx) = mpsc::unbounded_channel();
        JobLog { tx }
    }

    /// Appends `entry`.
    pub fn entry(&self, entry: Entry) {
        let _ = self.tx.send(entry);
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
