//! Boot methods, one file each ([`uboot`], [`qemu`], [`minimal`]), and what they share:
//! placeholder substitution and the login (LAVA's `auto-login-action` and `login-action`),
//! which watches kernel messages on the way to the prompt.

pub mod minimal;
pub mod qemu;
pub mod uboot;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::JobError;
use super::connection::WaitError;
use super::job::{JobCtx, wait_error};
use super::kernel_messages;
use super::lava_suite::ActionResult;
use crate::model::ErrorType;
use crate::pipeline::step::{LoginWork, Pattern};
use crate::store::joblog::Level;

/// How long a kernel panic's end marker is waited for before the job fails with the panic's
/// first line: a kernel booted with `panic=N` reboots without printing it.
const PANIC_END_WAIT: Duration = Duration::from_secs(5);

/// Replaces `{NAME}` placeholders; `None` when one of them has no value (LAVA's
/// `substitute(drop=True)` drops such commands).
pub(in crate::dispatcher) fn substitute(
    command: &str,
    values: &BTreeMap<&str, String>,
) -> Option<String> {
    const KNOWN: &[&str] = &[
        "SERVER_IP",
        "KERNEL_ADDR",
        "KERNEL",
        "RAMDISK_ADDR",
        "RAMDISK",
        "DTB_ADDR",
        "DTB",
        "BOOTX",
        "TEE_ADDR",
        "TEE",
        "ROOT",
        "ROOT_PART",
        "NFSROOTFS",
        "NFS_SERVER_IP",
        "PRESEED_CONFIG",
        "PRESEED_LOCAL",
        "LAVA_MAC",
        "BOOTSCRIPT",
    ];
    let mut out = command.to_owned();
    for key in KNOWN {
        let placeholder = format!("{{{key}}}");
        if out.contains(&placeholder) {
            let value = values.get(key)?;
            out = out.replace(&placeholder, value);
        }
    }
    Some(out)
}

impl JobCtx<'_> {
    /// Logs in (LAVA's `auto-login-action` and its `login-action`): waits for the login
    /// prompt, or for a shell prompt when there is no auto-login, watching for kernel
    /// messages on the way; then sends the credentials and waits for the shell prompt.
    pub(super) async fn login(
        &mut self,
        login: &LoginWork,
        namespace: Option<&str>,
    ) -> Result<(), JobError> {
        let node = &login.node;
        let wait = node.connection_timeout;
        let err = wait_error("auto-login-action", wait);
        if !login.first.is_empty() {
            let level = format!("{}.1", node.level);
            self.watch_kernel(&login.first, wait, &level, namespace)
                .await?;
        }
        let Some(auto) = &login.auto_login else {
            return Ok(());
        };
        let conn = self.conn()?;
        conn.sendline(&auto.username).await.map_err(&err)?;
        if let Some((prompt, password)) = &auto.password {
            conn.expect(&[prompt.get().clone()], wait)
                .await
                .map_err(&err)?;
            conn.sendline(password).await.map_err(&err)?;
        }
        for c in &auto.login_commands {
            conn.sendline(c).await.map_err(&err)?;
        }
        if !login.prompts.is_empty() {
            let prompts: Vec<_> = login.prompts.iter().map(|p| p.get().clone()).collect();
            conn.expect(&prompts, wait).await.map_err(&err)?;
        }
        Ok(())
    }

    /// Waits for one of `targets` while noting the kernel messages printed before it, and
    /// records them as LAVA does (`kernel-messages`, and `login-action` at `level`). A kernel
    /// panic fails the job at once with the panic's text.
    async fn watch_kernel(
        &mut self,
        targets: &[Pattern],
        wait: Duration,
        level: &str,
        namespace: Option<&str>,
    ) -> Result<(), JobError> {
        let started = Instant::now();
        let kinds = &*kernel_messages::KINDS;
        let mut patterns = kernel_messages::start_patterns();
        patterns.extend(targets.iter().map(|t| t.get().clone()));
        let log = self.log.clone();
        let err = wait_error("auto-login-action", wait);
        let conn = self.conn()?;
        let mut found = Vec::new();
        let mut halt = None;
        loop {
            let start = conn.expect(&patterns, wait).await.map_err(&err)?;
            let Some(kind) = kinds.get(start.index) else {
                break;
            };
            let mut ends = vec![kind.end.clone()];
            ends.extend(targets.iter().map(|t| t.get().clone()));
            // A kernel that panics with `panic=N` reboots before printing the end marker.
            let end_wait = if kind.fatal {
                wait.min(PANIC_END_WAIT)
            } else {
                wait
            };
            let (rest, at_target) = match conn.expect(&ends, end_wait).await {
                Ok(end) if end.index == 0 => (format!("{}{}", end.before, end.text), false),
                Ok(_) => {
                    log.line(Level::Warning, "Unable to match end of the kernel message");
                    (String::new(), true)
                }
                Err(WaitError::Timeout) if kind.fatal => (String::new(), false),
                Err(e) => return Err(err(e)),
            };
            let text = kernel_messages::message(&start.before, &start.text, &rest);
            let what = kernel_messages::classify(start.index, &text);
            if kind.fatal {
                log.error(format!("login-action: kernel '{what}'"));
                halt = Some(text.clone());
            } else {
                log.line(Level::Warning, format!("login-action: kernel '{what}'"));
            }
            found.push(serde_json::json!({"kind": what, "message": text}));
            if kind.fatal || at_target {
                break;
            }
        }
        let mut checked =
            ActionResult::new(kernel_messages::NAME, level, namespace, started.elapsed())
                .with("extra", found.clone());
        checked.passed = halt.is_none();
        self.record_action(checked).await;
        if let Some(text) = halt {
            return Err(JobError::new(ErrorType::Job, text));
        }
        let login = ActionResult::new("login-action", level, namespace, started.elapsed());
        let login = if found.is_empty() {
            login.with("success", "No kernel warnings or errors detected.")
        } else {
            log.line(Level::Warning, "Kernel warnings or errors detected.");
            login.with("fail", found)
        };
        self.record_action(login).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_drops_commands_with_unset_placeholders() {
        let mut v = BTreeMap::new();
        v.insert("KERNEL_ADDR", "0x40400000".to_owned());
        v.insert("KERNEL", "7/zImage".to_owned());
        assert_eq!(
            substitute("tftp {KERNEL_ADDR} {KERNEL}", &v).as_deref(),
            Some("tftp 0x40400000 7/zImage")
        );
        assert_eq!(substitute("tftp {DTB_ADDR} {DTB}", &v), None);
        assert_eq!(
            substitute("setenv x ${filesize}", &v).as_deref(),
            Some("setenv x ${filesize}")
        );
    }
}
