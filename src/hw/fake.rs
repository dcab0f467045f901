//! Fakes at the hardware boundary, for tests and dry runs: a scripted console, a command
//! runner and a power backend that record what they were asked, an emulator launcher, and a
//! [`BoardFactory`] assembling boards from them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::{
    Board, BoardConsole, BoardFactory, BoxFuture, CommandOutput, CommandRunner, ConsoleFactory,
    ConsoleIo, Emulator, Error, Launcher, Power, PowerState, ProcessLauncher, Transcript,
};
use crate::devicetype::DeviceConfig;

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

/// A [`Power`] that records every transition in order, with the (tokio) time it happened.
#[derive(Debug, Clone, Default)]
pub struct FakePower {
    /// Every transition, in order.
    pub log: Arc<Mutex<Vec<(PowerState, Instant)>>>,
    /// Minimum off-time of a cycle.
    pub min_off: Duration,
}

impl FakePower {
    /// The transitions so far.
    pub fn transitions(&self) -> Vec<PowerState> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(s, _)| *s)
            .collect()
    }
}

impl Power for FakePower {
    fn set<'a>(
        &'a self,
        state: PowerState,
        _timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            out.command(match state {
                PowerState::On => "fake power on",
                PowerState::Off => "fake power off",
            });
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((state, Instant::now()));
            Ok(())
        })
    }

    fn min_off_time(&self) -> Duration {
        self.min_off
    }
}

/// A [`Launcher`] whose emulators are `console`; records the command lines it was given.
#[derive(Debug, Clone)]
pub struct FakeLauncher {
    /// The console every emulator gets.
    pub console: Arc<dyn ConsoleFactory>,
    /// Every command line launched, in order.
    pub launched: Arc<Mutex<Vec<String>>>,
}

impl Launcher for FakeLauncher {
    fn launch(&self, command: &str) -> Result<Emulator, Error> {
        self.launched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(command.to_owned());
        Ok(Emulator::attached(Arc::clone(&self.console)))
    }
}

/// A [`BoardFactory`] of fakes. Each part left `None` is the device's real one: its power
/// commands through `runner`, its `connection_command` console, emulator processes.
#[derive(Debug, Clone)]
pub struct FakeBoards {
    /// Runs power and user commands.
    pub runner: Arc<dyn CommandRunner>,
    /// The console of every board.
    pub console: Option<Arc<dyn ConsoleFactory>>,
    /// The power of every board.
    pub power: Option<Arc<dyn Power>>,
    /// Starts emulators.
    pub launcher: Option<Arc<dyn Launcher>>,
}

impl Default for FakeBoards {
    fn default() -> Self {
        FakeBoards {
            runner: Arc::new(FakeRunner::default()),
            console: None,
            power: None,
            launcher: None,
        }
    }
}

impl FakeBoards {
    /// Boards whose commands go to `runner` and whose console is `console`.
    pub fn new(runner: Arc<dyn CommandRunner>, console: Arc<dyn ConsoleFactory>) -> FakeBoards {
        FakeBoards {
            runner,
            console: Some(console),
            ..FakeBoards::default()
        }
    }
}

impl BoardFactory for FakeBoards {
    fn board(&self, device: &DeviceConfig) -> Result<Board, Error> {
        let power = match &self.power {
            Some(p) => Arc::clone(p),
            None => Arc::new(super::command_power(
                device,
                Arc::clone(&self.runner),
                Duration::ZERO,
            )),
        };
        let console = match &self.console {
            Some(factory) => Some(BoardConsole {
                describe: "fake console".to_owned(),
                factory: Arc::clone(factory),
            }),
            None => super::device_console(device)?,
        };
        let launcher = match &self.launcher {
            Some(l) => Arc::clone(l),
            None => Arc::new(ProcessLauncher),
        };
        Ok(Board::new(
            power,
            console,
            Arc::clone(&self.runner),
            launcher,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::power::Silent;

    #[tokio::test]
    async fn a_cycle_keeps_the_board_off_for_the_minimum_off_time() {
        let power = FakePower {
            min_off: Duration::from_millis(30),
            ..FakePower::default()
        };
        let how = power.cycle(Duration::from_secs(10), &Silent).await.unwrap();
        assert_eq!(how, crate::hw::Cycle::OffOn);
        assert_eq!(power.transitions(), [PowerState::Off, PowerState::On]);
        let log = power.log.lock().unwrap().clone();
        assert!(log[1].1 - log[0].1 >= Duration::from_millis(30), "{log:?}");
    }
}
