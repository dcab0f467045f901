//! Board processes: how lavabox starts them (a shell in its own process group that dies with
//! lavabox) and how it runs LAVA's power, reset and user commands ([`CommandRunner`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::Command;

use super::{BoxFuture, Error};

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

/// Kills the process group led by `pid` (every board process leads its own group). A group
/// that is already gone is not an error.
pub(crate) fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// util-linux's `setpriv`, which sets the parent-death signal and then executes the command
/// (`unsafe` is forbidden here, so no `pre_exec` can call `prctl` in the child). Looked up
/// once; without it board processes still get their own group but do not die with lavabox.
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            let found = ["/usr/bin/setpriv", "/bin/setpriv"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists());
            if found.is_none() {
                tracing::warn!(
                    "setpriv (util-linux) not found: board processes will outlive a crash"
                );
            }
            found
        })
        .as_deref()
}

/// `sh -c SCRIPT` in its own process group (so a timeout or power-off kills everything it
/// started), sent SIGKILL when lavabox dies (`setpriv --pdeathsig KILL`), killed when dropped,
/// in `dir` if given; stdio is the caller's to set.
///
/// The parent-death signal fires when the *thread* that forked the child exits, not the
/// process: call this (and spawn the command) from a runtime worker thread, which lives as
/// long as the runtime, never from a `spawn_blocking` thread, which exits after idling.
pub(crate) fn shell(script: &str, dir: Option<&PathBuf>) -> Command {
    let mut cmd = match setpriv() {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--", "sh", "-c"]);
            cmd
        }
        None => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c");
            cmd
        }
    };
    cmd.arg(script).process_group(0).kill_on_drop(true);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd
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
                        kill_group(pid);
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn board_processes_die_with_the_thread_that_started_them() {
        if setpriv().is_none() {
            return;
        }
        // A runtime on a thread of its own starts `sleep`, which is then forgotten (so no
        // kill-on-drop), and the thread ends: the parent-death signal must kill it.
        let pid = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use tokio::io::AsyncBufReadExt as _;
                let mut child = shell("echo started; exec sleep 30", None)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let pid = child.id().unwrap();
                // The shell runs, so setpriv has set the signal before executing it.
                let stdout = child.stdout.take().unwrap();
                let mut line = String::new();
                tokio::io::BufReader::new(stdout)
                    .read_line(&mut line)
                    .await
                    .unwrap();
                std::mem::forget(child);
                pid
            })
        })
        .join()
        .unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(pid, nix::sys::signal::Signal::SIGKILL, false)
        );
    }
}
