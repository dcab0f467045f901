//! Hardware boundary: small async traits for what the dispatcher does to a board, their real
//! backends, and fakes for tests.
//!
//! - [`CommandRunner`]: LAVA's power, reset and user commands (`sh -c`, with a timeout, the
//!   whole process group killed on timeout or drop). Backend: [`ShellRunner`].
//! - [`ConsoleFactory`]: opens the board's serial console as a byte stream ([`ConsoleIo`]).
//!   Backends: [`CommandConsole`] (the dictionary's `connection_command`, a child process
//!   with piped stdio such as `telnet host port` or `lab/board console NAME`) and
//!   [`SerialConsole`] (a tty device configured by mio-serial, read through
//!   [`on_demand::OnDemandFd`], which keeps it out of epoll while output streams).
//! - [`fake`]: [`fake::FakeConsole`] (a scripted board over `tokio::io::duplex`) and
//!   [`fake::FakeRunner`] (records commands).
//!
//! Architecture invariant: only this module spawns board processes or touches `/dev`.

pub mod fake;
pub mod on_demand;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, Command};

/// A boxed future, so the traits stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors at the hardware boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command could not be started.
    #[error("cannot start '{command}'")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command ran longer than allowed and was killed.
    #[error("'{command}' timed out after {seconds} seconds")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        seconds: u64,
    },
    /// The command exited with a failure status.
    #[error("'{command}' failed with exit code {code:?}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit code (`None` when killed by a signal).
        code: Option<i32>,
        /// What it printed.
        output: String,
    },
    /// The serial device could not be opened.
    #[error("cannot open serial device {path}; check the cable and permissions")]
    Serial {
        /// The device path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: mio_serial::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for '{command}' failed")]
    Wait {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether opening the console again later may succeed: a serial device node vanishes
    /// while a board powering its USB adapter is off and comes back with it. A process that
    /// cannot be started, or that exited behind a one-shot console, stays gone.
    pub fn may_come_back(&self) -> bool {
        matches!(self, Error::Serial { .. })
    }
}

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Standard output and standard error, in that order.
    pub output: String,
}

/// Runs LAVA's power, reset and user commands.
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    /// Runs `command` through the shell; fails on a non-zero exit or after `timeout`.
    fn run<'a>(
        &'a self,
        command: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<CommandOutput, Error>>;
}

/// [`CommandRunner`] running `sh -c COMMAND` in its own process group.
#[derive(Debug, Clone, Default)]
pub struct ShellRunner {
    /// Working directory of the commands (the process's own when `None`).
    pub dir: Option<PathBuf>,
}

/// Kills the process group of `pid` (the child leads its own group).
async fn kill_group(pid: u32) {
    // No libc here (unsafe is forbidden): `kill` is in every base system.
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// `sh -c SCRIPT` in its own process group (so a timeout or power-off kills everything it
/// started), killed when dropped, in `dir` if given; stdout and stderr are the caller's to set.
fn shell(script: &str, dir: Option<&PathBuf>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd
}

/// Starts `script` with piped stdin and stdout (the console), stderr discarded.
fn spawn_console(
    script: &str,
    command: &str,
    dir: Option<&PathBuf>,
) -> Result<(Child, ChildStdin, on_demand::OnDemandFd<std::fs::File>), Error> {
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

impl CommandRunner for ShellRunner {
    fn run<'a>(
        &'a self,
        command: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<CommandOutput, Error>> {
        Box::pin(async move {
            let child = shell(command, self.dir.as_ref())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| Error::Spawn {
                    command: command.to_owned(),
                    source,
                })?;
            let pid = child.id();
            match tokio::time::timeout(timeout, child.wait_with_output()).await {
                Ok(Ok(out)) => {
                    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                    output.push_str(&String::from_utf8_lossy(&out.stderr));
                    if out.status.success() {
                        Ok(CommandOutput { output })
                    } else {
                        Err(Error::Failed {
                            command: command.to_owned(),
                            code: out.status.code(),
                            output,
                        })
                    }
                }
                Ok(Err(source)) => Err(Error::Wait {
                    command: command.to_owned(),
                    source,
                }),
                Err(_) => {
                    if let Some(pid) = pid {
                        kill_group(pid).await;
                    }
                    Err(Error::Timeout {
                        command: command.to_owned(),
                        seconds: timeout.as_secs(),
                    })
                }
            }
        })
    }
}

/// A console byte stream.
pub trait ConsoleIo: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> ConsoleIo for T {}

/// Opens a board's console; called again to re-attach when the console went away.
pub trait ConsoleFactory: Send + Sync + std::fmt::Debug {
    /// A fresh connection to the console.
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn ConsoleIo>, Error>>;
}

/// A child process whose stdin/stdout are the console. Killed (with its process group) when
/// dropped.
#[derive(Debug)]
pub struct ChildConsole {
    child: Child,
    stdin: ChildStdin,
    stdout: on_demand::OnDemandFd<std::fs::File>,
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
            kill_group(pid).await;
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
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

/// [`ConsoleFactory`] for a local serial device (8N1, no flow control).
#[derive(Debug, Clone)]
pub struct SerialConsole {
    /// The tty, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// Baud rate.
    pub baud: u32,
}

impl ConsoleFactory for SerialConsole {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn ConsoleIo>, Error>> {
        Box::pin(async move {
            let path = self.path.to_string_lossy().into_owned();
            // Opened non-blocking, 8N1, no flow control, exclusive (TIOCEXCL).
            let port = mio_serial::SerialStream::open(&mio_serial::new(path, self.baud)).map_err(
                |source| Error::Serial {
                    path: self.path.clone(),
                    source,
                },
            )?;
            let port = on_demand::OnDemandFd::new(port);
            Ok(Box::new(port) as Box<dyn ConsoleIo>)
        })
    }
}

/// The console backend for a dictionary `connection_command`: a bare `/dev/…` path (optionally
/// followed by a baud rate) is opened natively as a serial port, anything else is run.
pub fn console_for(connection_command: &str, dir: Option<PathBuf>) -> Box<dyn ConsoleFactory> {
    let mut words = connection_command.split_whitespace();
    if let Some(first) = words.next()
        && first.starts_with("/dev/")
    {
        let baud = words.next().and_then(|b| b.parse().ok()).unwrap_or(115_200);
        let rest = words.next();
        if rest.is_none() {
            return Box::new(SerialConsole {
                path: PathBuf::from(first),
                baud,
            });
        }
    }
    Box::new(CommandConsole {
        command: connection_command.to_owned(),
        dir,
    })
}

/// Starts `sh -c "exec COMMAND"` (an emulator whose stdio is the console) in its own process
/// group; returns the child, to be killed and waited for by the caller, and its stdio.
pub fn spawn_piped(command: &str) -> Result<(Child, Box<dyn ConsoleIo>), Error> {
    let (child, stdin, stdout) = spawn_console(&format!("exec {command}"), command, None)?;
    Ok((child, Box::new(tokio::io::join(stdout, stdin))))
}

/// A [`ConsoleFactory`] handing out one already open stream (an emulator's stdio); opening it
/// again fails, since a process that went away cannot be re-attached.
pub struct OnceConsole {
    io: std::sync::Mutex<Option<Box<dyn ConsoleIo>>>,
}

impl OnceConsole {
    /// Wraps `io`.
    pub fn new(io: Box<dyn ConsoleIo>) -> OnceConsole {
        OnceConsole {
            io: std::sync::Mutex::new(Some(io)),
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
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        Box::pin(async move {
            io.ok_or_else(|| Error::Spawn {
                command: "console".into(),
                source: std::io::Error::other("the process behind the console exited"),
            })
        })
    }
}

impl Drop for ChildConsole {
    fn drop(&mut self) {
        // kill_on_drop only reaches the direct child; the console command may have children
        // of its own (socat behind a script).
        if let Some(pid) = self.child.id()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{pid}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shell_runner_captures_output_and_status() {
        let r = ShellRunner::default();
        let out = r
            .run("echo hi; echo err >&2", Duration::from_secs(10))
            .await;
        assert_eq!(out.unwrap().output, "hi\nerr\n");
        let err = r.run("exit 3", Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(err, Error::Failed { code: Some(3), .. }), "{err}");
    }

    #[tokio::test]
    async fn shell_runner_kills_on_timeout() {
        let r = ShellRunner::default();
        let err = r
            .run("sleep 30 & sleep 30", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn command_console_pipes_stdio() {
        let f = console_for("cat", None);
        let mut c = f.open().await.unwrap();
        c.write_all(b"ping\n").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping\n");
    }

    #[test]
    fn serial_paths_open_natively() {
        let f = console_for("/dev/ttyUSB0 9600", None);
        assert!(format!("{f:?}").contains("SerialConsole"));
        let f = console_for("telnet localhost 7000", None);
        assert!(format!("{f:?}").contains("CommandConsole"));
    }
}
