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

/// The longest line kept for the log; the rest of a longer line is dropped.
const MAX_LINE: usize = 64 * 1024;
/// One console read; a tty hands out at most this much (`N_TTY_BUF_SIZE`) at a time anyway.
const READ_SIZE: usize = 4096;
/// After a read that emptied the console's buffer, the next one waits this long after it, so
/// a streaming console is read in chunks of ~50 ms of output (~20 reads a second at 115200
/// baud) rather than once per UART or USB packet (100-200 a second). A read that filled the
/// buffer is followed at once, so fast consoles never overflow the kernel's buffer; a prompt
/// is seen at most this much later.
const READ_PACE: Duration = Duration::from_millis(50);
/// For this long after something is sent, reads are not paced: the board's echo and reply
/// (a U-Boot prompt after `setenv`) are awaited, and pacing would add up to [`READ_PACE`] to
/// every command of a bootloader's command list. The output a command starts (a kernel
/// booting) is paced again once this has passed.
const EAGER_AFTER_SEND: Duration = Duration::from_millis(20);
/// How much unmatched console text is kept for pattern matching.
const MAX_BUFFER: usize = 256 * 1024;
/// How many times in a row a closed console is re-opened without receiving anything.
const MAX_REOPEN: u32 = 20;
/// How long a send waits for a console that went away to come back; the action's timeout
/// around it is usually shorter.
const REATTACH_TO_SEND: Duration = Duration::from_secs(120);

/// When the read after one of `n` bytes at `now` may start: at once after a read that filled
/// the buffer or within the window after a send, else [`READ_PACE`] later.
fn next_read(n: usize, now: Instant, eager_until: Option<Instant>) -> Option<Instant> {
    let eager = eager_until.is_some_and(|until| now < until);
    (n < READ_SIZE && !eager).then(|| now + READ_PACE)
}

/// Logs every line `bytes` completes as `target`; keeps the unfinished rest in `partial`.
fn log_received(partial: &mut Vec<u8>, log: &JobLog, bytes: &[u8]) {
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let (line, after) = rest.split_at(end);
        rest = &after[1..];
        let text = if partial.is_empty() {
            target_text(&line[..line.len().min(MAX_LINE)])
        } else {
            keep_partial(partial, line);
            let text = target_text(partial);
            partial.clear();
            text
        };
        log.line(Level::Target, text);
    }
    keep_partial(partial, rest);
}

/// Adds `bytes` to the unfinished line, up to [`MAX_LINE`].
fn keep_partial(partial: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_LINE.saturating_sub(partial.len());
    partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// A received line as logged: decoded, without its trailing `\r`s.
fn target_text(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_owned()
}

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
    read_buf: Box<[u8; READ_SIZE]>,
    /// When the next read may start (see [`READ_PACE`]).
    next_read: Option<Instant>,
    /// Until when reads are not paced (see [`EAGER_AFTER_SEND`]).
    eager_until: Option<Instant>,
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
            read_buf: Box::new([0; READ_SIZE]),
            next_read: None,
            eager_until: None,
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
    pub async fn read_chunk(&mut self, deadline: Instant) -> Result<Option<&[u8]>, WaitError> {
        Ok(self.read_some(deadline).await?.map(|n| &self.read_buf[..n]))
    }

    /// Reads into `read_buf` and logs the lines received; returns how many bytes came, or
    /// `None` at `deadline`.
    async fn read_some(&mut self, deadline: Instant) -> Result<Option<usize>, WaitError> {
        if let Some(at) = self.next_read.take()
            && at > Instant::now()
        {
            tokio::time::sleep_until(at.min(deadline)).await;
        }
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
                    self.next_read = next_read(n, Instant::now(), self.eager_until);
                    log_received(&mut self.partial, &self.log, &self.read_buf[..n]);
                    return Ok(Some(n));
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
            match self.read_some(deadline).await? {
                None => return Err(WaitError::Timeout),
                Some(n) => {
                    self.buffer
                        .push_str(&String::from_utf8_lossy(&self.read_buf[..n]));
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
        io.flush().await?;
        // The reply is read as soon as it comes (see `EAGER_AFTER_SEND`).
        self.next_read = None;
        self.eager_until = Some(Instant::now() + EAGER_AFTER_SEND);
        Ok(())
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
    async fn received_lines_are_logged_whole_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.yaml");
        let (log, task) = JobLog::open(path.clone()).await.unwrap();
        let mut partial = Vec::new();
        for chunk in [
            &b"one\r\ntw"[..],
            b"o\r\r\nthree\nfo",
            b"ur",
            b"\n",
            &[b'x'; MAX_LINE + 10],
            b"\ny\xff\n",
        ] {
            log_received(&mut partial, &log, chunk);
        }
        log_received(&mut partial, &log, b"prompt# ");
        assert_eq!(partial, b"prompt# ");
        drop(log);
        task.finish().await;
        let lines = crate::store::joblog::read_lines(&path, 0, None).unwrap();
        let msgs: Vec<String> = lines
            .iter()
            .map(|l| l.text.split("\"msg\": ").nth(1).unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            msgs[..4],
            [r#""one"}"#, r#""two"}"#, r#""three"}"#, r#""four"}"#]
        );
        assert_eq!(
            msgs[4].len(),
            MAX_LINE + 3,
            "a long line is cut at MAX_LINE"
        );
        assert_eq!(msgs[5], "\"y\u{fffd}\"}");
        assert_eq!(msgs.len(), 6);
        assert!(lines.iter().all(|l| l.text.contains("\"lvl\": \"target\"")));
    }

    #[tokio::test]
    async fn a_send_lifts_the_read_pacing_for_the_reply() {
        let board = FakeConsole::new("=> ").on("^version$", "U-Boot 2023.01\n=> ");
        let mut c = Connection::open(Arc::new(board), JobLog::discard())
            .await
            .unwrap();
        let prompt = [Regex::new("=> ").unwrap()];
        c.expect(&prompt, Duration::from_secs(5)).await.unwrap();
        assert!(c.next_read.is_some(), "a short read paces the next one");
        c.sendline("version").await.unwrap();
        assert!(c.next_read.is_none(), "the reply is not paced");
        assert!(c.eager_until.is_some());
        let reply = c
            .expect(&[Regex::new("U-Boot 20").unwrap()], Duration::from_secs(5))
            .await
            .unwrap();
        assert!(reply.before.contains("version"), "{reply:?}");
    }

    #[test]
    fn reads_are_paced_after_short_reads_outside_the_window_after_a_send() {
        let now = Instant::now();
        let later = Some(now + EAGER_AFTER_SEND);
        assert_eq!(next_read(10, now, None), Some(now + READ_PACE));
        assert_eq!(next_read(10, now, Some(now)), Some(now + READ_PACE));
        assert_eq!(next_read(10, now, later), None, "within the window");
        assert_eq!(next_read(READ_SIZE, now, None), None, "a full read");
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
