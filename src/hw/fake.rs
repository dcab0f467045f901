//! Fakes at the hardware boundary, for tests and dry runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{BoxFuture, CommandOutput, CommandRunner, ConsoleFactory, ConsoleIo, Error};

/// A scripted board: prints `banner` when the console is opened, then echoes every line it
/// receives and answers it with the reply of the first matching rule.
#[derive(Debug, Clone, Default)]
pub struct FakeConsole {
    /// Printed as soon as the console is opened.
    pub banner: String,
    /// `(pattern on the received line, reply)`, first match wins; unmatched lines are ignored.
    pub rules: Vec<(Regex, String)>,
}

impl FakeConsole {
    /// A board printing `banner` on open.
    pub fn new(banner: impl Into<String>) -> FakeConsole {
        FakeConsole {
            banner: banner.into(),
            rules: Vec::new(),
        }
    }

    /// Adds a rule; `pattern` must be a valid regex (test code).
    pub fn on(mut self, pattern: &str, reply: impl Into<String>) -> FakeConsole {
        match Regex::new(pattern) {
            Ok(re) => self.rules.push((re, reply.into())),
            Err(e) => tracing::error!("invalid fake console pattern {pattern:?}: {e}"),
        }
        self
    }
}

impl ConsoleFactory for FakeConsole {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn ConsoleIo>, Error>> {
        let board = self.clone();
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                let (read, mut write) = tokio::io::split(theirs);
                if write.write_all(board.banner.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    // Echo like a terminal does.
                    if write
                        .write_all(format!("{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Some((_, reply)) = board.rules.iter().find(|(re, _)| re.is_match(&line))
                        && write.write_all(reply.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
            Ok(Box::new(ours) as Box<dyn ConsoleIo>)
        })
    }
}

/// A [`CommandRunner`] that records commands and succeeds, except for commands containing
/// one of `failing`.
#[derive(Debug, Clone, Default)]
pub struct FakeRunner {
    /// Every command run, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Substrings of commands that fail.
    pub failing: Vec<String>,
}

impl FakeRunner {
    /// The commands run so far.
    pub fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl CommandRunner for FakeRunner {
    fn run<'a>(
        &'a self,
        command: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<CommandOutput, Error>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(command.to_owned());
            if self.failing.iter().any(|f| command.contains(f.as_str())) {
                return Err(Error::Failed {
                    command: command.to_owned(),
                    code: Some(1),
                    output: String::new(),
                });
            }
            Ok(CommandOutput::default())
        })
    }
}
