//! An emulator (QEMU) whose stdio is the board's console. hw owns its process: [`Emulator`]
//! keeps the child and kills its process group when stopped or dropped, so no caller holds a
//! board process.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::process::Child;

use super::child::spawn_console;
use super::{ConsoleFactory, ConsoleIo};
use crate::hw::command::kill_group;
use crate::hw::{BoxFuture, Error};

/// Starts emulators.
pub trait Launcher: Send + Sync + std::fmt::Debug {
    /// Starts `command`, an emulator whose stdin and stdout are the console.
    fn launch(&self, command: &str) -> Result<Emulator, Error>;
}

/// [`Launcher`] running `sh -c "exec COMMAND"` in its own process group, dying with lavabox.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessLauncher;

impl Launcher for ProcessLauncher {
    fn launch(&self, command: &str) -> Result<Emulator, Error> {
        let (child, stdin, stdout) = spawn_console(&format!("exec {command}"), command, None)?;
        let io: Box<dyn ConsoleIo> = Box::new(tokio::io::join(stdout, stdin));
        Ok(Emulator {
            console: Arc::new(OnceConsole::new(io)),
            process: Some(child),
        })
    }
}

/// A running emulator: its console and, for a real one, its process.
#[derive(Debug)]
pub struct Emulator {
    console: Arc<dyn ConsoleFactory>,
    process: Option<Child>,
}

impl Emulator {
    /// An emulator without a process of ours (a fake, or one started elsewhere).
    pub fn attached(console: Arc<dyn ConsoleFactory>) -> Emulator {
        Emulator {
            console,
            process: None,
        }
    }

    /// Its console.
    pub fn console(&self) -> Arc<dyn ConsoleFactory> {
        Arc::clone(&self.console)
    }

    /// Kills the emulator's process group and waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.process.take() {
            if let Some(pid) = child.id() {
                kill_group(pid);
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(pid) = self.process.as_ref().and_then(Child::id) {
            kill_group(pid);
        }
    }
}

/// A [`ConsoleFactory`] handing out one already open stream (an emulator's stdio); opening it
/// again fails, since a process that went away cannot be re-attached.
pub struct OnceConsole {
    io: Mutex<Option<Box<dyn ConsoleIo>>>,
}

impl OnceConsole {
    /// Wraps `io`.
    pub fn new(io: Box<dyn ConsoleIo>) -> OnceConsole {
        OnceConsole {
            io: Mutex::new(Some(io)),
        }
    }
}

impl std::fmt::Debug for OnceConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceConsole").finish_non_exhaustive()
    }
}

impl ConsoleFactory for OnceConsole {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn ConsoleIo>, Error>> {
        let io = self
            .io
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Box::pin(async move { io.ok_or(Error::ConsoleGone) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_emulator_console_opens_once_and_stops_with_its_process() {
        let emulator = ProcessLauncher.launch("cat").unwrap();
        let console = emulator.console();
        let mut io = console.open().await.unwrap();
        io.write_all(b"hi\n").await.unwrap();
        let mut buf = [0u8; 3];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi\n");
        assert!(matches!(console.open().await, Err(Error::ConsoleGone)));
        emulator.stop().await;
        // The process is gone: its stdout reaches end of file.
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
