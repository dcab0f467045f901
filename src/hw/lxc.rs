//! LXC containers beside the board (LAVA's `lava-lxc` protocol): the [`Containers`] trait the
//! dispatcher drives, its real backend [`LxcTools`] (Debian's `lxc-create`, `lxc-start`,
//! `lxc-attach`, `lxc-stop`, `lxc-destroy`, `lxc-info`, `lxc-device`, run as LAVA runs them)
//! and [`FakeContainers`] for unit tests at this boundary.
//!
//! Pure parts sit apart from the process calls: the argument lists ([`create_args`]), the
//! classification of a failed create ([`classify_create_failure`]), the udev rule text
//! ([`udev_rule`]) and the crash markers' names ([`marker_path`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::BoxFuture;
use super::console::ConsoleFactory;
use super::console::child::CommandConsole;
use crate::testshell::FileEntry;

/// What a container is made from (the job's `protocols.lava-lxc`, the container name
/// already decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The container's name (`<name>-<job id>`, or `<name>` when persistent).
    pub name: String,
    /// The lxc template (`download`, `debian`, …).
    pub template: String,
    /// `--dist` of the download template.
    pub distribution: String,
    /// The release (`bookworm`, `bullseye`, …).
    pub release: String,
    /// `--arch`.
    pub arch: Option<String>,
    /// `--mirror`.
    pub mirror: Option<String>,
    /// `--security-mirror`.
    pub security_mirror: Option<String>,
    /// Without it, `lxc-create -q`.
    pub verbose: bool,
}

/// Why a container operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LxcError {
    /// The LXC tools are not installed.
    #[error(
        "LXC is not installed on this dispatcher: '{tool}' was not found (install lxc and lxc-templates)"
    )]
    NotInstalled {
        /// The missing program.
        tool: String,
    },
    /// The template could not fetch its image or packages.
    #[error("Unable to fetch the lxc template '{template}' for container {name}: {reason}")]
    TemplateFetch {
        /// The container.
        name: String,
        /// The template.
        template: String,
        /// The template's own words.
        reason: String,
    },
    /// `lxc-create` failed for another reason.
    #[error("Unable to create lxc container {name}: {reason}")]
    CreateFailed {
        /// The container.
        name: String,
        /// What lxc-create printed last.
        reason: String,
    },
    /// Another lxc command failed.
    #[error("'{command}' failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and output.
        reason: String,
    },
    /// A command ran out of time and was killed.
    #[error("'{command}' timed out after {seconds} seconds")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        seconds: u64,
    },
}

/// What an `lxc-attach` command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOutput {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// stdout and stderr, interleaved as read.
    pub output: String,
}

/// LXC containers on this dispatcher.
pub trait Containers: Send + Sync + std::fmt::Debug {
    /// Whether the LXC tools are installed ([`LxcError::NotInstalled`] otherwise).
    fn installed(&self) -> BoxFuture<'_, Result<(), LxcError>>;
    /// Whether a container of that name exists.
    fn exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, LxcError>>;
    /// Creates the container (`lxc-create`); its output lines go to `output`.
    fn create<'a>(
        &'a self,
        spec: &'a ContainerSpec,
        timeout: Duration,
        output: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), LxcError>>;
    /// Starts it in the background and waits until it runs (`lxc-start -d`, `lxc-wait`).
    fn start<'a>(&'a self, name: &'a str, timeout: Duration)
    -> BoxFuture<'a, Result<(), LxcError>>;
    /// Runs `argv` inside it (`lxc-attach -n NAME -- ARGV`).
    fn attach<'a>(
        &'a self,
        name: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<AttachOutput, LxcError>>;
    /// An interactive shell inside it, as a console.
    fn shell(&self, name: &str) -> Arc<dyn ConsoleFactory>;
    /// Writes `entries` (paths relative to `/`) into its root file system.
    fn copy_in<'a>(
        &'a self,
        name: &'a str,
        entries: &'a [FileEntry],
    ) -> BoxFuture<'a, Result<(), LxcError>>;
    /// Passes the host's device node `node` into the running container (`lxc-device add`).
    fn add_device<'a>(
        &'a self,
        name: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), LxcError>>;
    /// Installs the udev rules file `rule` for `name` (and reloads udev); `None` removes it.
    fn udev_rule<'a>(
        &'a self,
        name: &'a str,
        rule: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), LxcError>>;
    /// The host device nodes of `devices` present now (by label, by serial number).
    fn present<'a>(&'a self, devices: &'a [DeviceMatch]) -> BoxFuture<'a, Vec<String>>;
    /// Stops it (`lxc-stop -k`); a stopped container is fine.
    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LxcError>>;
    /// Destroys it, stopping it first (`lxc-destroy -f`); a missing one is fine.
    fn destroy<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LxcError>>;
    /// `lxc-info`'s state (`RUNNING`, `STOPPED`).
    fn info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, LxcError>>;
}

/// `lxc-create`'s arguments for `spec`, as LAVA builds them: the download template takes
/// `--dist`/`--release`/`--arch`, the others `--release`/`--arch`/`--mirror`/`--security-mirror`.
pub fn create_args(spec: &ContainerSpec) -> Vec<String> {
    let mut args = Vec::new();
    if !spec.verbose {
        args.push("-q".to_owned());
    }
    args.extend(["-t".to_owned(), spec.template.clone()]);
    args.extend(["-n".to_owned(), spec.name.clone()]);
    args.push("--".to_owned());
    if spec.template == "download" {
        args.extend(["--dist".to_owned(), spec.distribution.clone()]);
        args.extend(["--release".to_owned(), spec.release.clone()]);
        if let Some(arch) = &spec.arch {
            args.extend(["--arch".to_owned(), arch.clone()]);
        }
    } else {
        args.extend(["--release".to_owned(), spec.release.clone()]);
        if let Some(arch) = &spec.arch {
            args.extend(["--arch".to_owned(), arch.clone()]);
        }
        if let Some(mirror) = &spec.mirror {
            args.push(format!("--mirror={mirror}"));
        }
        if let Some(mirror) = &spec.security_mirror {
            args.push(format!("--security-mirror={mirror}"));
        }
    }
    args
}

/// What a failed `lxc-create` of `spec` means, from its output: a template that could not
/// fetch what it needs, or another failure. The reason is the last meaningful line.
pub fn classify_create_failure(spec: &ContainerSpec, output: &str) -> LxcError {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let lower = output.to_lowercase();
    const FETCH: &[&str] = &[
        "failed to download",
        "unable to fetch",
        "couldn't download",
        "could not resolve",
        "temporary failure in name resolution",
        "failed getting release file",
        "failed to retrieve",
        "unable to fetch gpg key",
        "network is unreachable",
        "couldn't resolve host",
        "failed to connect",
    ];
    let fetch = FETCH
        .iter()
        .find_map(|needle| {
            lines
                .iter()
                .find(|l| l.to_lowercase().contains(needle))
                .copied()
        })
        .filter(|_| FETCH.iter().any(|n| lower.contains(n)));
    match fetch {
        Some(line) => LxcError::TemplateFetch {
            name: spec.name.clone(),
            template: spec.template.clone(),
            reason: line.to_owned(),
        },
        None => LxcError::CreateFailed {
            name: spec.name.clone(),
            reason: lines
                .iter()
                .rev()
                .find(|l| l.to_lowercase().contains("error") || l.contains("failed"))
                .or(lines.last())
                .map_or_else(|| "no output".to_owned(), |l| (*l).to_owned()),
        },
    }
}

/// One device of a dictionary's `device_info` a job may pass into its container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceMatch {
    /// `board_id`: the USB serial number (`ATTR{serial}`).
    pub board_id: Option<String>,
    /// `usb_vendor_id` (`ATTR{idVendor}`).
    pub usb_vendor_id: Option<String>,
    /// `usb_product_id` (`ATTR{idProduct}`).
    pub usb_product_id: Option<String>,
    /// `usb_serial_driver`: a USB serial adapter is matched on the tty it creates.
    pub usb_serial_driver: Option<String>,
    /// `fs_label` (`ENV{ID_FS_LABEL}`), for boards that appear as mass storage.
    pub fs_label: Option<String>,
}

/// The udev rules file that hands a board's USB devices to container `container` as they
/// appear (LAVA's `100-lava-<container>.rules`): one `ACTION=="add"` rule per device, matched
/// on the serial number or label (and vendor/product when given), running
/// `lxc-device -n <container> add /dev/$name`. `None` when no device can be matched.
pub fn udev_rule(container: &str, devices: &[DeviceMatch], lxc_device: &str) -> Option<String> {
    let mut out = String::new();
    for d in devices {
        let mut conds = vec!["ACTION==\"add\"".to_owned()];
        if let Some(label) = &d.fs_label {
            conds.push(format!("ENV{{ID_FS_LABEL}}==\"{}\"", udev_escape(label)));
        } else if let Some(serial) = &d.board_id {
            if d.usb_serial_driver.is_some() {
                conds.push("SUBSYSTEM==\"tty\"".to_owned());
                conds.push(format!("ATTRS{{serial}}==\"{}\"", udev_escape(serial)));
            } else {
                conds.push(format!("ATTR{{serial}}==\"{}\"", udev_escape(serial)));
            }
        } else if d.usb_vendor_id.is_none() {
            continue;
        }
        let attr = if d.usb_serial_driver.is_some() {
            "ATTRS"
        } else {
            "ATTR"
        };
        if let Some(v) = &d.usb_vendor_id {
            conds.push(format!("{attr}{{idVendor}}==\"{}\"", udev_escape(v)));
        }
        if let Some(p) = &d.usb_product_id {
            conds.push(format!("{attr}{{idProduct}}==\"{}\"", udev_escape(p)));
        }
        conds.push(format!(
            "RUN+=\"{lxc_device} -n {} add /dev/$name\"",
            udev_escape(container)
        ));
        out.push_str(&conds.join(", "));
        out.push('\n');
    }
    (!out.is_empty()).then_some(out)
}

/// Keeps a value from closing its udev string.
fn udev_escape(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\n').collect()
}

/// The udev rules file's name for `container`.
pub fn udev_rule_file(container: &str) -> String {
    format!("100-lava-{container}.rules")
}

/// Whether `name` is a usable container name (it becomes a directory and a udev word).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The crash marker of `container` under `dir` (`<data_dir>/lxc/`): written before the
/// container is created, removed once it is destroyed or kept on purpose (`persist`).
pub fn marker_path(dir: &Path, container: &str) -> PathBuf {
    dir.join(format!("{container}.creating"))
}

/// The containers whose markers are in `dir` (what a crash left).
pub fn leftovers(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".creating"))
                .filter(|n| valid_name(n))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Destroys every container a crash left (a marker in `dir`) and removes the markers.
pub async fn clean_leftovers(containers: &dyn Containers, dir: &Path) -> Vec<String> {
    let dir_owned = dir.to_owned();
    let names = tokio::task::spawn_blocking(move || leftovers(&dir_owned))
        .await
        .unwrap_or_default();
    let mut cleaned = Vec::new();
    for name in names {
        match containers.destroy(&name).await {
            Ok(()) => {
                let _ = tokio::fs::remove_file(marker_path(dir, &name)).await;
                tracing::info!(container = %name, "destroyed a container a crash left");
                cleaned.push(name);
            }
            Err(e) => tracing::warn!(container = %name, "cannot destroy a leftover container: {e}"),
        }
    }
    cleaned
}

/// The real backend: Debian's LXC tools, privileged containers under `lxc_path`.
#[derive(Debug, Clone)]
pub struct LxcTools {
    /// Where containers live (`lxc.lxcpath`, `/var/lib/lxc`).
    pub lxc_path: PathBuf,
    /// The directory of the lxc programs (`None`: `$PATH`).
    pub bin_dir: Option<PathBuf>,
    /// Where udev rules go (`/etc/udev/rules.d`).
    pub udev_dir: PathBuf,
    /// Where device nodes are (`/dev`).
    pub dev_dir: PathBuf,
}

impl Default for LxcTools {
    fn default() -> LxcTools {
        LxcTools {
            lxc_path: PathBuf::from("/var/lib/lxc"),
            bin_dir: None,
            udev_dir: PathBuf::from("/etc/udev/rules.d"),
            dev_dir: PathBuf::from("/dev"),
        }
    }
}

/// Kills a command's process group (lxc-create's debootstrap) when dropped, e.g. when the
/// job is canceled while it runs.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            super::command::kill_group(pid);
        }
    }
}

impl LxcTools {
    fn program(&self, tool: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(tool),
            None => PathBuf::from(tool),
        }
    }

    fn find(&self, tool: &str) -> Option<PathBuf> {
        match &self.bin_dir {
            Some(dir) => Some(dir.join(tool)).filter(|p| p.is_file()),
            None => std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(tool))
                    .find(|p| p.is_file())
            }),
        }
    }

    /// Runs `tool args…` to its end (own process group, killed with it on drop), stdout and
    /// stderr together, each line also given to `each`.
    async fn run(
        &self,
        tool: &str,
        args: &[String],
        timeout: Duration,
        each: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<AttachOutput, LxcError> {
        let line = format!("{tool} {}", args.join(" "));
        if self.find(tool).is_none() {
            return Err(LxcError::NotInstalled {
                tool: tool.to_owned(),
            });
        }
        let mut cmd = tokio::process::Command::new(self.program(tool));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| LxcError::Command {
            command: line.clone(),
            reason: e.to_string(),
        })?;
        let _guard = GroupGuard(child.id());
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut buf = [0u8; 4096];
            let mut ebuf = [0u8; 4096];
            let mut pending = String::new();
            loop {
                tokio::select! {
                    n = async { match stdout.as_mut() { Some(s) => s.read(&mut buf).await, None => std::future::pending().await } } => {
                        match n { Ok(0) | Err(_) => stdout = None, Ok(n) => { out.extend_from_slice(&buf[..n]); pending.push_str(&String::from_utf8_lossy(&buf[..n])); } }
                    }
                    n = async { match stderr.as_mut() { Some(s) => s.read(&mut ebuf).await, None => std::future::pending().await } } => {
                        match n { Ok(0) | Err(_) => stderr = None, Ok(n) => { err.extend_from_slice(&ebuf[..n]); pending.push_str(&String::from_utf8_lossy(&ebuf[..n])); } }
                    }
                }
                while let Some(i) = pending.find('\n') {
                    let l: String = pending.drain(..=i).collect();
                    each(l.trim_end());
                }
                if stdout.is_none() && stderr.is_none() {
                    break;
                }
            }
            if !pending.is_empty() {
                each(pending.trim_end());
            }
            let status = child.wait().await;
            out.extend_from_slice(&err);
            (status, out)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok((Ok(status), out)) => Ok(AttachOutput {
                code: status.code(),
                output: String::from_utf8_lossy(&out).into_owned(),
            }),
            Ok((Err(e), _)) => Err(LxcError::Command {
                command: line,
                reason: e.to_string(),
            }),
            Err(_) => Err(LxcError::Timeout {
                command: line,
                seconds: timeout.as_secs(),
            }),
        }
    }

    async fn checked(
        &self,
        tool: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<String, LxcError> {
        let out = self.run(tool, args, timeout, &|_| {}).await?;
        if out.code == Some(0) {
            Ok(out.output)
        } else {
            Err(LxcError::Command {
                command: format!("{tool} {}", args.join(" ")),
                reason: format!(
                    "exit code {:?}: {}",
                    out.code,
                    out.output.lines().last().unwrap_or("").trim()
                ),
            })
        }
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

const SHORT: Duration = Duration::from_secs(60);

impl Containers for LxcTools {
    fn installed(&self) -> BoxFuture<'_, Result<(), LxcError>> {
        Box::pin(async move {
            for tool in [
                "lxc-create",
                "lxc-start",
                "lxc-attach",
                "lxc-stop",
                "lxc-destroy",
            ] {
                let this = self.clone();
                let found = tokio::task::spawn_blocking(move || this.find(tool).is_some())
                    .await
                    .unwrap_or(false);
                if !found {
                    return Err(LxcError::NotInstalled {
                        tool: tool.to_owned(),
                    });
                }
            }
            Ok(())
        })
    }

    fn exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, LxcError>> {
        Box::pin(async move {
            let config = self.lxc_path.join(name).join("config");
            Ok(tokio::fs::metadata(config).await.is_ok())
        })
    }

    fn create<'a>(
        &'a self,
        spec: &'a ContainerSpec,
        timeout: Duration,
        output: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            let args = create_args(spec);
            let out = match self.run("lxc-create", &args, timeout, output).await {
                Ok(out) => out,
                Err(LxcError::Timeout { seconds, .. }) => {
                    return Err(LxcError::CreateFailed {
                        name: spec.name.clone(),
                        reason: format!("lxc-create timed out after {seconds} seconds"),
                    });
                }
                Err(e) => return Err(e),
            };
            if out.code == Some(0) {
                return Ok(());
            }
            Err(classify_create_failure(spec, &out.output))
        })
    }

    fn start<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.checked("lxc-start", &strings(&["-n", name, "-d"]), SHORT)
                .await?;
            let secs = timeout.as_secs().max(1).to_string();
            self.checked(
                "lxc-wait",
                &strings(&["-n", name, "-s", "RUNNING", "-t", &secs]),
                timeout + Duration::from_secs(5),
            )
            .await?;
            Ok(())
        })
    }

    fn attach<'a>(
        &'a self,
        name: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<AttachOutput, LxcError>> {
        Box::pin(async move {
            let mut args = strings(&[
                "-n",
                name,
                "--clear-env",
                "-v",
                "LANG=C",
                "-v",
                "LC_ALL=C",
                "-v",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "-v",
                "DEBIAN_FRONTEND=noninteractive",
                "--",
            ]);
            args.extend(argv.iter().cloned());
            self.run("lxc-attach", &args, timeout, &|_| {}).await
        })
    }

    fn shell(&self, name: &str) -> Arc<dyn ConsoleFactory> {
        let tool = self.program("lxc-attach");
        let q = crate::testshell::overlay::shell_quote;
        Arc::new(CommandConsole {
            // An interactive shell prints its prompt on stderr, which joins the console.
            command: format!(
                "exec {} -n {} --clear-env -v TERM=dumb -v HOME=/root -v PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -- /bin/bash -i 2>&1",
                q(&tool.to_string_lossy()),
                q(name)
            ),
            dir: None,
        })
    }

    fn copy_in<'a>(
        &'a self,
        name: &'a str,
        entries: &'a [FileEntry],
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            let rootfs = self.lxc_path.join(name).join("rootfs");
            let entries = entries.to_vec();
            tokio::task::spawn_blocking(move || write_entries(&rootfs, &entries))
                .await
                .map_err(|e| LxcError::Command {
                    command: "copying the overlay".into(),
                    reason: e.to_string(),
                })?
        })
    }

    fn add_device<'a>(
        &'a self,
        name: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.checked("lxc-device", &strings(&["-n", name, "add", node]), SHORT)
                .await
                .map(|_| ())
        })
    }

    fn udev_rule<'a>(
        &'a self,
        name: &'a str,
        rule: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            let path = self.udev_dir.join(udev_rule_file(name));
            let result = match rule {
                Some(text) => {
                    let _ = tokio::fs::create_dir_all(&self.udev_dir).await;
                    tokio::fs::write(&path, text).await
                }
                None => match tokio::fs::remove_file(&path).await {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    other => other,
                },
            };
            result.map_err(|e| LxcError::Command {
                command: format!("writing {}", path.display()),
                reason: e.to_string(),
            })?;
            // Without a running udev (a container host) the rule waits for the next start.
            if self.find("udevadm").is_some() {
                let _ = self
                    .run(
                        "udevadm",
                        &strings(&["control", "--reload-rules"]),
                        SHORT,
                        &|_| {},
                    )
                    .await;
            }
            Ok(())
        })
    }

    fn present<'a>(&'a self, devices: &'a [DeviceMatch]) -> BoxFuture<'a, Vec<String>> {
        let dev = self.dev_dir.clone();
        let devices = devices.to_vec();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || present_nodes(&dev, &devices))
                .await
                .unwrap_or_default()
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            if self.info(name).await.ok().as_deref() != Some("RUNNING") {
                return Ok(());
            }
            self.checked("lxc-stop", &strings(&["-k", "-n", name]), SHORT)
                .await
                .map(|_| ())
        })
    }

    fn destroy<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            if self.exists(name).await? {
                self.checked("lxc-destroy", &strings(&["-f", "-n", name]), SHORT)
                    .await?;
            }
            // A create killed half way leaves a directory lxc-destroy does not know.
            let dir = self.lxc_path.join(name);
            if tokio::fs::metadata(&dir).await.is_ok() {
                tokio::fs::remove_dir_all(&dir)
                    .await
                    .map_err(|e| LxcError::Command {
                        command: format!("removing {}", dir.display()),
                        reason: e.to_string(),
                    })?;
            }
            Ok(())
        })
    }

    fn info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, LxcError>> {
        Box::pin(async move {
            let out = self
                .checked("lxc-info", &strings(&["-s", "-H", "-n", name]), SHORT)
                .await?;
            Ok(out.trim().to_owned())
        })
    }
}

/// The device nodes under `dev` of `devices`: `disk/by-label/<fs_label>`, and the
/// `serial/by-id/` and `disk/by-id/` links whose name holds the serial number, resolved.
pub fn present_nodes(dev: &Path, devices: &[DeviceMatch]) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |p: PathBuf| {
        if let Ok(real) = std::fs::canonicalize(&p) {
            let s = real.display().to_string();
            if !out.contains(&s) {
                out.push(s);
            }
        }
    };
    for d in devices {
        if let Some(label) = &d.fs_label {
            let p = dev.join("disk/by-label").join(label);
            if valid_name(label) && p.exists() {
                push(p);
            }
        }
        if let Some(serial) = d.board_id.as_deref().filter(|s| !s.is_empty()) {
            for sub in ["serial/by-id", "disk/by-id"] {
                if let Ok(entries) = std::fs::read_dir(dev.join(sub)) {
                    for e in entries.flatten() {
                        if e.file_name().to_string_lossy().contains(serial) {
                            push(e.path());
                        }
                    }
                }
            }
        }
    }
    out
}

/// Writes the overlay entries under `root`, refusing any path that would leave it.
fn write_entries(root: &Path, entries: &[FileEntry]) -> Result<(), LxcError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |what: &Path, e: std::io::Error| LxcError::Command {
        command: format!("writing {}", what.display()),
        reason: e.to_string(),
    };
    if !root.is_dir() {
        return Err(LxcError::Command {
            command: "copying the overlay".into(),
            reason: format!("{} is not a container root file system", root.display()),
        });
    }
    for entry in entries {
        let rel = Path::new(&entry.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(LxcError::Command {
                command: "copying the overlay".into(),
                reason: format!("path '{}' leaves the container", entry.path),
            });
        }
        let path = root.join(rel);
        let kind = entry.mode & 0o170_000;
        let perm = entry.mode & 0o7777;
        if kind == crate::testshell::S_IFDIR {
            std::fs::create_dir_all(&path).map_err(|e| fail(&path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perm))
                .map_err(|e| fail(&path, e))?;
        } else if kind == crate::testshell::S_IFLNK {
            let target = String::from_utf8_lossy(&entry.data).into_owned();
            let _ = std::fs::remove_file(&path);
            std::os::unix::fs::symlink(target, &path).map_err(|e| fail(&path, e))?;
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| fail(&path, e))?;
            }
            std::fs::write(&path, &entry.data).map_err(|e| fail(&path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perm))
                .map_err(|e| fail(&path, e))?;
        }
    }
    Ok(())
}

/// A scripted stand-in for unit tests of the dispatcher's container steps: containers are
/// names in a set, every call is recorded, and a create can be made to fail.
#[derive(Debug, Default)]
pub struct FakeContainers {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    existing: Vec<String>,
    running: Vec<String>,
    calls: Vec<String>,
    fail_create: Option<LxcError>,
    not_installed: bool,
}

impl FakeContainers {
    /// Every call so far, as `verb name`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The containers that exist now.
    pub fn existing(&self) -> Vec<String> {
        self.lock().existing.clone()
    }

    /// The next create fails with `e`.
    pub fn fail_create(&self, e: LxcError) {
        self.lock().fail_create = Some(e);
    }

    /// The tools are missing.
    pub fn uninstall(&self) {
        self.lock().not_installed = true;
    }

    /// A container that exists already (a persistent one, a crash's leftover).
    pub fn add_existing(&self, name: &str) {
        self.lock().existing.push(name.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn call(&self, what: String) {
        self.lock().calls.push(what);
    }
}

impl Containers for FakeContainers {
    fn installed(&self) -> BoxFuture<'_, Result<(), LxcError>> {
        let missing = self.lock().not_installed;
        Box::pin(async move {
            if missing {
                Err(LxcError::NotInstalled {
                    tool: "lxc-create".into(),
                })
            } else {
                Ok(())
            }
        })
    }

    fn exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, LxcError>> {
        Box::pin(async move { Ok(self.lock().existing.iter().any(|n| n == name)) })
    }

    fn create<'a>(
        &'a self,
        spec: &'a ContainerSpec,
        _timeout: Duration,
        output: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.call(format!("create {}", spec.name));
            output(&format!("creating {}", spec.name));
            let mut state = self.lock();
            if let Some(e) = state.fail_create.take() {
                return Err(e);
            }
            state.existing.push(spec.name.clone());
            Ok(())
        })
    }

    fn start<'a>(
        &'a self,
        name: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.call(format!("start {name}"));
            self.lock().running.push(name.to_owned());
            Ok(())
        })
    }

    fn attach<'a>(
        &'a self,
        name: &'a str,
        argv: &'a [String],
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<AttachOutput, LxcError>> {
        Box::pin(async move {
            self.call(format!("attach {name} {}", argv.join(" ")));
            Ok(AttachOutput {
                code: Some(0),
                output: String::new(),
            })
        })
    }

    fn shell(&self, name: &str) -> Arc<dyn ConsoleFactory> {
        self.call(format!("shell {name}"));
        Arc::new(CommandConsole {
            command: "exec cat".into(),
            dir: None,
        })
    }

    fn copy_in<'a>(
        &'a self,
        name: &'a str,
        entries: &'a [FileEntry],
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.call(format!("copy {name} {}", entries.len()));
            Ok(())
        })
    }

    fn add_device<'a>(
        &'a self,
        name: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.call(format!("device {name} {node}"));
            Ok(())
        })
    }

    fn udev_rule<'a>(
        &'a self,
        name: &'a str,
        rule: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            match rule {
                Some(r) => self.call(format!("udev {name} {}", r.lines().count())),
                None => self.call(format!("udev {name} removed")),
            }
            Ok(())
        })
    }

    fn present<'a>(&'a self, _devices: &'a [DeviceMatch]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move { Vec::new() })
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.call(format!("stop {name}"));
            self.lock().running.retain(|n| n != name);
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LxcError>> {
        Box::pin(async move {
            self.call(format!("destroy {name}"));
            let mut state = self.lock();
            state.existing.retain(|n| n != name);
            state.running.retain(|n| n != name);
            Ok(())
        })
    }

    fn info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, LxcError>> {
        Box::pin(async move {
            let state = self.lock();
            Ok(if state.running.iter().any(|n| n == name) {
                "RUNNING".into()
            } else {
                "STOPPED".into()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(template: &str) -> ContainerSpec {
        ContainerSpec {
            name: "probe-42".into(),
            template: template.into(),
            distribution: "debian".into(),
            release: "bookworm".into(),
            arch: Some("amd64".into()),
            mirror: Some("http://deb.debian.org/debian".into()),
            security_mirror: None,
            verbose: false,
        }
    }

    #[test]
    fn create_arguments_follow_the_template() {
        assert_eq!(
            create_args(&spec("download")).join(" "),
            "-q -t download -n probe-42 -- --dist debian --release bookworm --arch amd64"
        );
        let mut debian = spec("debian");
        debian.verbose = true;
        debian.security_mirror = Some("http://sec".into());
        assert_eq!(
            create_args(&debian).join(" "),
            "-t debian -n probe-42 -- --release bookworm --arch amd64 \
             --mirror=http://deb.debian.org/debian --security-mirror=http://sec"
        );
    }

    #[test]
    fn a_download_that_cannot_reach_its_server_is_a_template_fetch_failure() {
        let out = "Downloading the image index\n\
                   ERROR: Failed to download http://images.linuxcontainers.org/meta/1.0/index-system\n\
                   lxc-create: probe-42: lxccontainer.c: create_run_template: 1628 Failed to create container from template\n";
        match classify_create_failure(&spec("download"), out) {
            LxcError::TemplateFetch {
                reason, template, ..
            } => {
                assert_eq!(template, "download");
                assert!(reason.contains("Failed to download"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let e = classify_create_failure(
            &spec("debian"),
            "lxc-create: x: Container already exists\nError: something broke\n",
        );
        assert_eq!(
            e,
            LxcError::CreateFailed {
                name: "probe-42".into(),
                reason: "Error: something broke".into()
            }
        );
        assert!(
            e.to_string()
                .starts_with("Unable to create lxc container probe-42")
        );
    }

    #[test]
    fn the_udev_rule_matches_each_device_and_adds_it_to_the_container() {
        let devices = [
            DeviceMatch {
                board_id: Some("0123ABC".into()),
                usb_vendor_id: Some("18d1".into()),
                usb_product_id: Some("4ee2".into()),
                ..DeviceMatch::default()
            },
            DeviceMatch {
                fs_label: Some("BOOT\"X".into()),
                ..DeviceMatch::default()
            },
            DeviceMatch::default(),
        ];
        let rule = udev_rule("probe-42", &devices, "/usr/bin/lxc-device").unwrap();
        assert_eq!(
            rule,
            "ACTION==\"add\", ATTR{serial}==\"0123ABC\", ATTR{idVendor}==\"18d1\", \
             ATTR{idProduct}==\"4ee2\", RUN+=\"/usr/bin/lxc-device -n probe-42 add /dev/$name\"\n\
             ACTION==\"add\", ENV{ID_FS_LABEL}==\"BOOTX\", \
             RUN+=\"/usr/bin/lxc-device -n probe-42 add /dev/$name\"\n"
        );
        assert_eq!(
            udev_rule("c", &[DeviceMatch::default()], "lxc-device"),
            None
        );
        let serial = DeviceMatch {
            board_id: Some("FT1".into()),
            usb_serial_driver: Some("ftdi_sio".into()),
            ..DeviceMatch::default()
        };
        assert_eq!(
            udev_rule("c", &[serial], "lxc-device").unwrap(),
            "ACTION==\"add\", SUBSYSTEM==\"tty\", ATTRS{serial}==\"FT1\", \
             RUN+=\"lxc-device -n c add /dev/$name\"\n"
        );
        assert_eq!(udev_rule_file("c"), "100-lava-c.rules");
    }

    #[test]
    fn names_and_markers() {
        assert!(valid_name("lxc-test-12"));
        assert!(!valid_name("../x"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(marker_path(dir.path(), "a-1"), "").unwrap();
        std::fs::write(dir.path().join("junk"), "").unwrap();
        assert_eq!(leftovers(dir.path()), vec!["a-1".to_owned()]);
    }

    #[tokio::test]
    async fn leftovers_are_destroyed_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(marker_path(dir.path(), "a-1"), "").unwrap();
        let fake = FakeContainers::default();
        fake.add_existing("a-1");
        fake.add_existing("kept");
        assert_eq!(clean_leftovers(&fake, dir.path()).await, vec!["a-1"]);
        assert_eq!(fake.existing(), vec!["kept"]);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn present_devices_are_found_by_label_and_serial() {
        let dev = tempfile::tempdir().unwrap();
        let by_id = dev.path().join("serial/by-id");
        std::fs::create_dir_all(&by_id).unwrap();
        std::fs::write(dev.path().join("ttyUSB3"), "").unwrap();
        std::os::unix::fs::symlink("../../ttyUSB3", by_id.join("usb-FTDI_X_AB12-if00")).unwrap();
        let found = present_nodes(
            dev.path(),
            &[
                DeviceMatch {
                    board_id: Some("AB12".into()),
                    ..DeviceMatch::default()
                },
                DeviceMatch {
                    fs_label: Some("NOPE".into()),
                    ..DeviceMatch::default()
                },
            ],
        );
        let want = std::fs::canonicalize(dev.path().join("ttyUSB3")).unwrap();
        assert_eq!(found, vec![want.display().to_string()]);
    }

    #[test]
    fn overlay_paths_never_leave_the_root_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let bad = [FileEntry::dir("../escape", 0o755)];
        assert!(write_entries(dir.path(), &bad).is_err());
        assert!(!dir.path().parent().unwrap().join("escape").exists());
        let good = [FileEntry::dir("lava-1", 0o755)];
        write_entries(dir.path(), &good).unwrap();
        assert!(dir.path().join("lava-1").is_dir());
    }
}
