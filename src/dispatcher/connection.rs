//! The expect engine over a board console: wait for regex patterns with a per-wait timeout,
//! send lines, log every received line (`target`) and every sent one (`input`). A console
//! that closes (a board powered off behind a ser2net-like relay) is re-opened.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::JobError;
use super::log::JobLog;
use crate::hw::{ConsoleFactory, ConsoleIo};
use crate::model::ErrorType;
use crate::store::joblog::Level;

/// How much unmatched console text is kept for pattern matching.
const MAX_BUFFER: usize = 256 * 1024;
/// How many times in a row a closed console is re-opened without receiving anything.
const MAX_REOPEN: u32 = 20;
/// How long a send waits for a console that went away to come back; the action's timeout
/// around it is usually shorter.
const REATTACH_TO_SEND: Duration = Duration::from_secs(120);

/// A failed wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// Nothing matched in time.
    Timeout,
    /// The console closed and could not be re-opened.
    Closed(String),
}

/// A pattern match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the pattern that matched.
    pub index: usize,
    /// The text before the match.
    pub before: String,
    /// The matched text.
    pub text: String,
}

/// One console connection of a job.
pub struct Connection {
    factory: Arc<dyn ConsoleFactory>,
    io: Option<Box<dyn ConsoleIo>>,
    buffer: String,
    partial: Vec<u8>,
    log: JobLog,
    char_delay: Option<Duration>,
    /// Consecutive re-opens without data.
    reopens: u32,
    /// Where console reads land; kept so a streaming console costs no allocation per read.
    read_buf: Box<[u8; 4096]>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("factory", &self.factory)
            .field("open", &self.io.is_some())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Opens the console.
    pub async fn open(factory: Arc<dyn ConsoleFactory>, log: JobLog) -> Result<Self, JobError> {
        let io = factory.open().await.map_err(|e| {
            JobError::new(
                ErrorType::Infrastructure,
                format!("Unable to connect to the console: {e}"),
            )
        })?;
        Ok(Connection {
            factory,
            io: Some(io),
            buffer: String::new(),
            partial: Vec::new(),
            log,
            char_delay: None,
            reopens: 0,
            read_buf: Box::new([0; 4096]),
        })
    }

    /// Delay between characters sent (the device's `character_delays`).
    pub fn set_char_delay(&mut self, delay: Option<Duration>) {
        self.char_delay = delay.filter(|d| !d.is_zero());
    }

    /// Drops the console (killing a console process).
    pub fn close(&mut self) {
        self.io = None;
    }

    fn log_received(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end_matches('\r')
                    .to_owned();
                self.partial.clear();
                self.log.line(Level::Target, line);
            } else if self.partial.len() < 64 * 1024 {
                self.partial.push(b);
            }
        }
    }

    /// Logs the unfinished line (a prompt) so the log shows what was matched.
    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.log.line(Level::Target, line);
        }
    }

    /// Opens the console again after it closed, retrying while it may come back: a USB
    /// serial adapter powered by the board vanishes from `/dev` while the board is off and
    /// returns with it. The caller bounds the wait with its deadline. Retrying the open with
    /// a short backoff is the portable way to notice the return: a `/dev` watch would need
    /// inotify, which nothing else here uses. A console that cannot come back fails at once.
    async fn reattach(&mut self) -> Result<Box<dyn ConsoleIo>, crate::hw::Error> {
        let mut backoff = Duration::from_millis(10);
        let mut reported = false;
        loop {
            match self.factory.open().await {
                Ok(io) => {
                    if reported {
                        self.log.debug("console back; re-attached");
                    }
                    return Ok(io);
                }
                Err(e) if !e.may_come_back() => return Err(e),
                Err(e) => {
                    if !reported {
                        self.log
                            .debug(format!("console gone ({e}); waiting for it to come back"));
                        reported = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
            }
        }
    }

    /// Reads what the console has, waiting until `deadline`. `Ok(None)` on timeout.
    pub async fn read_chunk(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, WaitError> {
        loop {
            if self.io.is_none() {
                if self.reopens >= MAX_REOPEN {
                    return Err(WaitError::Closed("the console closed".into()));
                }
                self.reopens += 1;
                match tokio::time::timeout_at(deadline, self.reattach()).await {
                    Err(_) => return Ok(None),
                    Ok(Ok(io)) => self.io = Some(io),
                    Ok(Err(e)) => return Err(WaitError::Closed(e.to_string())),
                }
            }
            let Some(io) = self.io.as_mut() else {
                continue;
            };
            match tokio::time::timeout_at(deadline, io.read(&mut self.read_buf[..])).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.io = None;
                    self.log.debug("console closed; re-attaching");
                }
                Ok(Ok(n)) => {
                    self.reopens = 0;
                    let chunk = self.read_buf[..n].to_vec();
                    self.log_received(&chunk);
                    return Ok(Some(chunk));
                }
            }
        }
    }

    /// Waits up to `timeout` for one of `patterns` in the console output.
    pub async fn expect(
        &mut self,
        patterns: &[Regex],
        timeout: Duration,
    ) -> Result<Match, WaitError> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = patterns
                .iter()
                .enumerate()
                .filter_map(|(i, re)| re.find(&self.buffer).map(|m| (i, m.start(), m.end())))
                .min_by_key(|(_, start, _)| *start);
            if let Some((index, start, end)) = found {
                let before = self.buffer[..start].to_owned();
                let text = self.buffer[start..end].to_owned();
                self.buffer.drain(..end);
                self.flush_partial();
                return Ok(Match {
                    index,
                    before,
                    text,
                });
            }
            match self.read_chunk(deadline).await? {
                None => return Err(WaitError::Timeout),
                Some(chunk) => {
                    self.buffer.push_str(&String::from_utf8_lossy(&chunk));
                    if self.buffer.len() > MAX_BUFFER {
                        let mut cut = self.buffer.len() - MAX_BUFFER / 2;
                        while !self.buffer.is_char_boundary(cut) {
                            cut += 1;
                        }
                        self.buffer.drain(..cut);
                    }
                }
            }
        }
    }

    /// Forgets unmatched output (before sending a command whose reply matters).
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// Sends `text` as is. A console that went away (a board powered off together with its
    /// USB serial adapter) is attached again once it is back, and `text` sent again.
    pub async fn send(&mut self, text: &str) -> Result<(), WaitError> {
        let failed = match self.write(text).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        self.io = None;
        match tokio::time::timeout(REATTACH_TO_SEND, self.reattach()).await {
            Ok(Ok(io)) => {
                self.io = Some(io);
                self.write(text).await.map_err(|e| {
                    WaitError::Closed(format!("writing to the re-attached console failed: {e}"))
                })
            }
            Ok(Err(e)) => Err(WaitError::Closed(format!(
                "writing to the console failed ({failed}) and it cannot be re-attached: {e}"
            ))),
            Err(_) => Err(WaitError::Closed(format!(
                "writing to the console failed ({failed}) and it did not come back within {} s",
                REATTACH_TO_SEND.as_secs()
            ))),
        }
    }

    async fn write(&mut self, text: &str) -> std::io::Result<()> {
        let delay = self.char_delay;
        let Some(io) = self.io.as_mut() else {
            return Err(std::io::Error::other("the console is not attached"));
        };
        match delay {
            None => io.write_all(text.as_bytes()).await?,
            Some(d) => {
                for b in text.as_bytes() {
                    io.write_all(std::slice::from_ref(b)).await?;
                    tokio::time::sleep(d).await;
                }
            }
        }
        io.flush().await
    }

    /// Sends `line` and a newline, logging it.
    pub async fn sendline(&mut self, line: &str) -> Result<(), WaitError> {
        self.log.line(Level::Input, format!("{line}\n"));
        self.send(&format!("{line}\n")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::fake::FakeConsole;

    #[tokio::test]
    async fn expect_matches_earliest_and_consumes() {
        let board = FakeConsole::new("U-Boot\nHit any key to stop autoboot\n=> ")
            .on("^version$", "U-Boot 2023.01\n=> ");
        let mut c = Connection::open(Arc::new(board), JobLog::discard())
            .await
            .unwrap();
        let pats = [
            Regex::new("=>").unwrap(),
            Regex::new("Hit any key").unwrap(),
        ];
        let m = c.expect(&pats, Duration::from_secs(5)).await.unwrap();
        assert_eq!(m.index, 1);
        let m = c.expect(&pats, Duration::from_secs(5)).await.unwrap();
        assert_eq!(m.index, 0);
        c.sendline("version").await.unwrap();
        let m = c
            .expect(&[Regex::new("U-Boot 20").unwrap()], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(m.text, "U-Boot 20");
    }

    #[tokio::test]
    async fn expect_times_out() {
        let mut c = Connection::open(Arc::new(FakeConsole::new("nothing\n")), JobLog::discard())
            .await
            .unwrap();
        let err = c
            .expect(&[Regex::new("never").unwrap()], Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err, WaitError::Timeout);
    }
}
