//! A child process whose stdin and stdout are the console: the dictionary's
//! `connection_command` ([`CommandConsole`]), and the spawning shared with emulators.

use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin};

use super::on_demand::{self, OnDemandFd};
use super::{ConsoleFactory, ConsoleIo};
use crate::hw::command::{kill_group, shell};
use crate::hw::{BoxFuture, Error};

/// Starts `script` (see [`shell`]: own process group, dies with lavabox) with piped stdin and
/// stdout (the console), stderr discarded. `command` names it in errors.
pub(crate) fn spawn_console(
    script: &str,
    command: &str,
    dir: Option<&PathBuf>,
) -> Result<(Child, ChildStdin, OnDemandFd<std::fs::File>), Error> {
    let spawn_err = |source| Error::Spawn {
        command: command.to_owned(),
        source,
    };
    let mut child = shell(script, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn_err)?;
    let missing = || spawn_err(std::io::Error::other("child stdio was not piped"));
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stdout = on_demand::child_stdout(stdout).map_err(spawn_err)?;
    Ok((child, stdin, stdout))
}

/// A child process whose stdin/stdout are the console. Killed (with its process group) when
/// dropped.
#[derive(Debug)]
pub struct ChildConsole {
    child: Child,
    stdin: ChildStdin,
    stdout: OnDemandFd<std::fs::File>,
}

impl ChildConsole {
    /// Starts `sh -c COMMAND` with piped stdio in its own process group.
    pub fn spawn(command: &str, dir: Option<&PathBuf>) -> Result<ChildConsole, Error> {
        let (child, stdin, stdout) = spawn_console(command, command, dir)?;
        Ok(ChildConsole {
            child,
            stdin,
            stdout,
        })
    }

    /// Kills the process group and waits for the child to exit.
    pub async fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            kill_group(pid);
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

impl Drop for ChildConsole {
    fn drop(&mut self) {
        // kill_on_drop only reaches the direct child; the console command may have children
        // of its own (socat behind a script).
        if let Some(pid) = self.child.id() {
            kill_group(pid);
        }
    }
}

impl AsyncRead for ChildConsole {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChildConsole {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

/// [`ConsoleFactory`] running the dictionary's `connection_command`.
#[derive(Debug, Clone)]
pub struct CommandConsole {
    /// The command line, e.g. `telnet localhost 7000`.
    pub command: String,
    /// Working directory.
    pub dir: Option<PathBuf>,
}

impl ConsoleFactory for CommandConsole {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn ConsoleIo>, Error>> {
        Box::pin(async move {
            let console = ChildConsole::spawn(&self.command, self.dir.as_ref())?;
            Ok(Box::new(console) as Box<dyn ConsoleIo>)
        })
    }
}
