//! The job pipeline: a validated [`JobDefinition`] and a device's [`DeviceConfig`] → the tree
//! of actions LAVA would run, with LAVA's action names, levels, resolved timeouts and retries.
//!
//! [`build`] is pure. It refuses, at validation time, everything this appliance cannot run
//! ([`Error`] with LAVA's error class), so the dispatcher never starts a job it would abandon
//! half way. [`Pipeline::describe`] prints the tree for the job log and for snapshot tests.
//!
//! Each block carries its typed [`Work`] ([`step`]): the dispatcher matches it and never
//! looks actions up by name, so refusing what the appliance cannot run happens here only.
//!
//! Architecture invariant: no I/O, no tokio, nothing from `hw`, `store` or `dispatcher`.

mod lxc;
pub mod step;

use std::fmt::Write as _;
use std::time::Duration;

use crate::devicetype::DeviceConfig;
use crate::jobdef::action::boot::{Boot, BootCommands, BootMethod};
use crate::jobdef::action::deploy::Deploy;
use crate::jobdef::action::test::{Test, TestDefSource};

pub use self::step::Work;
use self::step::{
    Codec, CommandWork, DefSource, GitSource, ImageWork, MinimalWork, QemuWork, TestDef,
    TestShellWork, TftpWork, UrlSource,
};
use crate::jobdef::action::test::TestDefinition;
use crate::jobdef::action::{ActionKind, Retry};
use crate::jobdef::timeout::DEFAULT_ACTION_TIMEOUT;
use crate::jobdef::{Action, JobDefinition};
use crate::model::ErrorType;

/// LAVA's default connection (prompt wait) timeout when nothing sets one.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a job cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// LAVA's error class (`Job` for the definition, `Configuration` for the device).
    pub error_type: ErrorType,
    /// What is wrong.
    pub message: String,
}

impl Error {
    fn job(message: impl Into<String>) -> Error {
        Error {
            error_type: ErrorType::Job,
            message: message.into(),
        }
    }

    fn config(message: impl Into<String>) -> Error {
        Error {
            error_type: ErrorType::Configuration,
            message: message.into(),
        }
    }
}

/// How often a top-level block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Up to `tries` times, stopping at the first success (`failure_retry`, `boot_retry`).
    UntilSuccess {
        /// Maximum number of tries (≥ 1).
        tries: u32,
        /// Wait between tries.
        interval: Duration,
    },
    /// Exactly `times` times, failing at the end if any run failed (`repeat`).
    Repeat {
        /// Number of runs (≥ 1).
        times: u32,
    },
}

/// One action of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// LAVA's level, e.g. `1`, `2.3`.
    pub level: String,
    /// LAVA's action name, e.g. `tftp-deploy`, `uboot-commands`.
    pub name: String,
    /// The action timeout (bounded by its parent's and the job's).
    pub timeout: Duration,
    /// The per-wait connection timeout (bounded by the action timeout).
    pub connection_timeout: Duration,
    /// Sub-actions, in order.
    pub children: Vec<Node>,
}

impl Node {
    /// The descendant (or self) named `name`, depth first.
    pub fn find(&self, name: &str) -> Option<&Node> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

/// One top-level block of the job (one `actions:` entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// The job's action.
    pub action: Action,
    /// Its action tree; the root is the block's top-level LAVA action.
    pub root: Node,
    /// What the dispatcher does for it.
    pub work: Work,
    /// Retry or repeat policy.
    pub runs: Runs,
    /// `timeout: {skip: true}`: a timeout of this block does not fail the job.
    pub skip_on_timeout: bool,
}

/// The job's whole pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The job timeout.
    pub job_timeout: Duration,
    /// Top-level blocks, in order, followed by nothing: `finalize` is implicit.
    pub blocks: Vec<Block>,
}

impl Pipeline {
    /// A text rendering of the tree: one line per action with level, name and timeouts.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "job timeout: {}", secs(self.job_timeout));
        for block in &self.blocks {
            let runs = match block.runs {
                Runs::UntilSuccess { tries: 1, .. } => String::new(),
                Runs::UntilSuccess { tries, interval } => {
                    format!(" [failure_retry {tries}, interval {}]", secs(interval))
                }
                Runs::Repeat { times } => format!(" [repeat {times}]"),
            };
            let skip = if block.skip_on_timeout { " [skip]" } else { "" };
            describe_node(&mut out, &block.root, 0, &format!("{runs}{skip}"));
        }
        let _ = writeln!(out, "{}: finalize", self.blocks.len() + 1);
        out
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn describe_node(out: &mut String, node: &Node, depth: usize, extra: &str) {
    let _ = writeln!(
        out,
        "{:indent$}{}: {} (timeout {}, connection {}){}",
        "",
        node.level,
        node.name,
        secs(node.timeout),
        secs(node.connection_timeout),
        extra,
        indent = depth * 2
    );
    for child in &node.children {
        describe_node(out, child, depth + 1, "");
    }
}

/// The timeout settings that apply to one block.
struct Resolver<'a> {
    job: &'a JobDefinition,
    device: &'a DeviceConfig,
    action: &'a Action,
    job_timeout: Duration,
}

impl Resolver<'_> {
    /// LAVA precedence: default → device `timeouts.actions.<name>` → job `timeouts.action` →
    /// job `timeouts.actions.<name>` → block `timeout` (every action of the block) → block
    /// `timeouts.<name>`; bounded by `parent` and the job.
    fn action(&self, name: &str, parent: Duration) -> Duration {
        let mut t = DEFAULT_ACTION_TIMEOUT;
        if let Some(d) = self.device.timeouts.actions.get(name) {
            t = *d;
        }
        if let Some(a) = self.job.timeouts.action {
            t = a.duration;
        }
        if let Some(a) = self.job.timeouts.actions.get(name) {
            t = a.duration;
        }
        if let Some(a) = self.action.common.timeout {
            t = a.duration;
        }
        if let Some(a) = self.action.common.timeouts.get(name) {
            t = a.duration;
        }
        t.min(parent).min(self.job_timeout)
    }

    fn connection(&self, name: &str, action: Duration) -> Duration {
        let mut t = DEFAULT_CONNECTION_TIMEOUT;
        if let Some(d) = self.device.timeouts.connections.get(name) {
            t = *d;
        }
        if let Some(c) = self.job.timeouts.connection {
            t = c.duration;
        }
        if let Some(c) = self.job.timeouts.connections.get(name) {
            t = c.duration;
        }
        t.min(action)
    }

    fn node(&self, level: String, name: &str, parent: Duration) -> Node {
        let timeout = self.action(name, parent);
        Node {
            level,
            name: name.to_owned(),
            timeout,
            connection_timeout: self.connection(name, timeout),
            children: Vec::new(),
        }
    }

    /// A top-level node with the given children names (each may have its own children).
    fn tree(&self, index: usize, name: &str, children: &[(&str, &[&str])]) -> Node {
        let level = (index + 1).to_string();
        let mut root = self.node(level.clone(), name, self.job_timeout);
        for (i, (child, grandchildren)) in children.iter().enumerate() {
            let child_level = format!("{level}.{}", i + 1);
            let mut node = self.node(child_level.clone(), child, root.timeout);
            for (j, g) in grandchildren.iter().enumerate() {
                let g_level = format!("{child_level}.{}", j + 1);
                node.children.push(self.node(g_level, g, root.timeout));
            }
            root.children.push(node);
        }
        root
    }
}

fn unsupported(what: &str) -> Error {
    Error::job(format!("{what} is not supported on this appliance"))
}

/// Builds the pipeline of `job` for `device`, or says why it cannot run here.
pub fn build(job: &JobDefinition, device: &DeviceConfig) -> Result<Pipeline, Error> {
    if job.is_multinode() {
        return Err(unsupported("MultiNode"));
    }
    let job_timeout = job.timeouts.job.duration;
    let mut blocks = Vec::with_capacity(job.actions.len());
    let mut stages = 0;
    let mut tests_seen = 0;
    let shell_defs = shell_definitions(job);
    // LAVA puts every definition into the overlay of the deploy before the first test block
    // (`lava-overlay` → `test-definition`); without a deploy the first test block holds them.
    let first_test = job
        .actions
        .iter()
        .position(|a| matches!(&a.kind, ActionKind::Test(Test::Definitions { .. })));
    let host = first_test.map(|t| {
        job.actions[..t]
            .iter()
            .rposition(|a| matches!(a.kind, ActionKind::Deploy(_)))
            .unwrap_or(t)
    });
    let mut def_nodes: std::collections::VecDeque<[Node; 4]> = Default::default();
    for (position, action) in job.actions.iter().enumerate() {
        let r = Resolver {
            job,
            device,
            action,
            job_timeout,
        };
        let i = action.index;
        let (root, work, is_boot) = match &action.kind {
            ActionKind::Deploy(deploy) => {
                let overlay = (host == Some(position)).then_some(shell_defs.as_slice());
                let (root, work) = deploy_tree(&r, i, deploy, device, overlay)?;
                def_nodes.extend(definition_nodes(&root));
                (root, work, false)
            }
            ActionKind::Boot(boot) => {
                let (root, work) = boot_tree(&r, i, boot, device)?;
                (root, work, true)
            }
            ActionKind::Test(test) => {
                let mut root = test_tree_root(&r, i, test)?;
                if host == Some(position) {
                    root.children
                        .insert(0, overlay_node(&r, &shell_defs, root.timeout));
                    renumber(&mut root, &(i + 1).to_string());
                    def_nodes.extend(definition_nodes(&root));
                }
                let work = test_work(&root, test, stages, tests_seen, &mut def_nodes)?;
                tests_seen += 1;
                if matches!(test, Test::Definitions { .. }) {
                    stages += 1;
                }
                (root, work, false)
            }
            ActionKind::Command(cmd) => {
                let Some(user) = device.commands.users.get(&cmd.name) else {
                    return Err(Error::job(format!("Unknown user command '{}'", cmd.name)));
                };
                let work = Work::Command(CommandWork {
                    name: cmd.name.clone(),
                    command: user.do_command.clone(),
                });
                (r.tree(i, "user-command", &[]), work, false)
            }
        };
        let default_tries = if is_boot {
            device
                .constants
                .boot_retry
                .unwrap_or(device.constants.failure_retry)
        } else {
            device.constants.failure_retry
        };
        let interval = action
            .common
            .failure_retry_interval
            .unwrap_or(Duration::from_secs(1));
        let runs = match action.common.retry {
            Retry::Default => Runs::UntilSuccess {
                tries: u32::try_from(default_tries.max(1)).unwrap_or(u32::MAX),
                interval,
            },
            Retry::FailureRetry(n) => Runs::UntilSuccess {
                tries: n.get(),
                interval,
            },
            Retry::Repeat(n) => Runs::Repeat { times: n.get() },
        };
        blocks.push(Block {
            action: action.clone(),
            root,
            work,
            runs,
            skip_on_timeout: action.common.timeout.is_some_and(|t| t.skip),
        });
    }
    Ok(Pipeline {
        job_timeout,
        blocks,
    })
}

/// Every definition of the job's test shell blocks, in job order (their index is the
/// `<index>_<name>` of the test run).
fn shell_definitions(job: &JobDefinition) -> Vec<&TestDefinition> {
    job.actions
        .iter()
        .filter_map(|a| match &a.kind {
            ActionKind::Test(Test::Definitions { definitions, .. }) => Some(definitions),
            _ => None,
        })
        .flatten()
        .collect()
}

fn repo_action(d: &TestDefinition) -> &'static str {
    match d.source {
        TestDefSource::Git { .. } => "git-repo-action",
        TestDefSource::Url { .. } => "url-repo-action",
        TestDefSource::Inline(_) => "inline-repo-action",
    }
}

/// LAVA's `lava-overlay` → `test-definition` → per definition its repo action,
/// `test-overlay`, `test-install-overlay`, `test-runscript-overlay` (levels are set by
/// [`renumber`] once the node is in its tree).
fn overlay_node(r: &Resolver<'_>, defs: &[&TestDefinition], parent: Duration) -> Node {
    let mut lava = r.node(String::new(), "lava-overlay", parent);
    let mut td = r.node(String::new(), "test-definition", parent);
    for d in defs {
        for name in [
            repo_action(d),
            "test-overlay",
            "test-install-overlay",
            "test-runscript-overlay",
        ] {
            td.children.push(r.node(String::new(), name, parent));
        }
    }
    lava.children.push(td);
    lava
}

/// Gives `node` the level `level` and its descendants theirs (`level.1`, `level.2`…).
fn renumber(node: &mut Node, level: &str) {
    node.level = level.to_owned();
    for (i, child) in node.children.iter_mut().enumerate() {
        renumber(child, &format!("{level}.{}", i + 1));
    }
}

/// The four overlay actions of each definition under `root`'s `test-definition`, in order.
fn definition_nodes(root: &Node) -> Vec<[Node; 4]> {
    let Some(td) = root.find("test-definition") else {
        return Vec::new();
    };
    td.children
        .chunks_exact(4)
        .map(|c| [c[0].clone(), c[1].clone(), c[2].clone(), c[3].clone()])
        .collect()
}

fn download_children(names: &[&str]) -> Vec<(&'static str, &'static [&'static str])> {
    names
        .iter()
        .map(|_| ("download-retry", &["http-download"][..]))
        .collect()
}

fn deploy_tree(
    r: &Resolver<'_>,
    index: usize,
    deploy: &Deploy,
    device: &DeviceConfig,
    overlay: Option<&[&TestDefinition]>,
) -> Result<(Node, Work), Error> {
    let methods = &device.actions.deploy.methods;
    match deploy {
        Deploy::Tftp(tftp) => {
            if !methods.contains("tftp") {
                return Err(Error::job(
                    "deploy to tftp is not supported by this device type",
                ));
            }
            if tftp.nfs.is_some() {
                return Err(unsupported("deploy to tftp with an NFS root"));
            }
            let mut names = vec!["kernel"];
            if tftp.dtb.is_some() {
                names.push("dtb");
            }
            if tftp.ramdisk.is_some() {
                names.push("ramdisk");
            }
            if tftp.modules.is_some() {
                names.push("modules");
            }
            if tftp.tee.is_some() {
                names.push("tee");
            }
            if tftp.preseed.is_some() {
                names.push("preseed");
            }
            for resource in [
                Some(&tftp.kernel.resource),
                tftp.dtb.as_ref(),
                tftp.ramdisk.as_ref().map(|r| &r.resource),
                tftp.modules.as_ref(),
                tftp.tee.as_ref(),
                tftp.preseed.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                check_resource(resource)?;
            }
            let mut children = download_children(&names);
            children.push((
                "prepare-tftp-overlay",
                &["extract-nfsrootfs", "compress-ramdisk"][..],
            ));
            children.push(("lxc-create-udev-rule-action", &[]));
            children.push(("deploy-device-env", &[]));
            let mut root = r.tree(index, "tftp-deploy", &children);
            if let Some(defs) = overlay {
                let node = overlay_node(r, defs, root.timeout);
                if let Some(prepare) = root
                    .children
                    .iter_mut()
                    .find(|c| c.name == "prepare-tftp-overlay")
                {
                    prepare.children.insert(1, node);
                }
                renumber(&mut root, &(index + 1).to_string());
            }
            // Downloads in the order of the tree's download-retry actions.
            let mut n = 0;
            let mut next = |label: &str, resource| {
                n += 1;
                step::download(&root, n - 1, label, resource)
            };
            let work = TftpWork {
                kernel: next("kernel", &tftp.kernel.resource)?,
                kernel_type: tftp.kernel.kind,
                dtb: tftp.dtb.as_ref().map(|d| next("dtb", d)).transpose()?,
                ramdisk: match &tftp.ramdisk {
                    Some(d) => Some((
                        next("ramdisk", &d.resource)?,
                        d.install_overlay != Some(false),
                    )),
                    None => None,
                },
                modules: tftp
                    .modules
                    .as_ref()
                    .map(|d| next("modules", d))
                    .transpose()?,
                tee: tftp.tee.as_ref().map(|d| next("tee", d)).transpose()?,
            };
            Ok((root, Work::Tftp(Box::new(work))))
        }
        Deploy::Tmpfs(tmpfs) => {
            if tmpfs.images.is_empty() {
                return Err(Error::job("deploy to tmpfs needs at least one image"));
            }
            for image in &tmpfs.images {
                check_resource(&image.resource)?;
            }
            let names: Vec<&str> = tmpfs.images.iter().map(|i| i.name.as_str()).collect();
            let mut children = download_children(&names);
            children.push(("apply-overlay-guest", &[]));
            children.push(("deploy-device-env", &[]));
            let mut root = r.tree(index, "deployimages", &children);
            if let Some(defs) = overlay {
                let node = overlay_node(r, defs, root.timeout);
                let at = root.children.len() - 2;
                root.children.insert(at, node);
                renumber(&mut root, &(index + 1).to_string());
            }
            let images = tmpfs
                .images
                .iter()
                .enumerate()
                .map(|(n, image)| {
                    let lava_overlay = image
                        .resource
                        .overlays
                        .as_ref()
                        .and_then(|o| o.get("lava"))
                        .is_some_and(|l| l.is_truthy());
                    Ok(ImageWork {
                        download: step::download(&root, n, &image.name, &image.resource)?,
                        // LAVA 2023.01's tmpfs schema has no `overlays:`; a cpio initrd (by
                        // its conventional names) gets the overlay so the test shell can run.
                        add_overlay: lava_overlay
                            || matches!(image.name.as_str(), "initrd" | "ramdisk"),
                        image: image.clone(),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Ok((root, Work::Tmpfs(images)))
        }
        Deploy::Other {
            to: crate::jobdef::action::deploy::DeployTo::Lxc,
            params,
        } => lxc::deploy(r, index, params, device, overlay),
        Deploy::Other { to, .. } => Err(unsupported(&format!("deploy to {}", to.as_str()))),
    }
}

fn check_resource(resource: &crate::jobdef::action::deploy::Resource) -> Result<(), Error> {
    let url = resource.url.as_str();
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file://")) {
        return Err(unsupported(&format!("downloading '{url}'")));
    }
    if resource.archive_tar {
        return Err(unsupported("archive: tar"));
    }
    if let Some(c) = resource.compression
        && c.as_str() == "zip"
    {
        return Err(unsupported("compression: zip"));
    }
    Ok(())
}

fn login_children(login: &crate::jobdef::action::boot::Login) -> Result<(), Error> {
    if login.transfer_overlay.is_some() {
        return Err(unsupported("transfer_overlay"));
    }
    Ok(())
}

fn boot_tree(
    r: &Resolver<'_>,
    index: usize,
    boot: &Boot,
    device: &DeviceConfig,
) -> Result<(Node, Work), Error> {
    match boot {
        Boot::UBoot(uboot) => {
            login_children(&uboot.login)?;
            let Some(method) = &device.actions.boot.uboot else {
                return Err(Error::job(
                    "boot method u-boot is not supported by this device type",
                ));
            };
            if uboot.use_bootscript {
                return Err(unsupported("use_bootscript"));
            }
            if let BootCommands::Named(name) = &uboot.commands
                && !method.commands.contains_key(name)
            {
                return Err(Error::job(format!(
                    "u-boot command set '{name}' is not defined for this device type"
                )));
            }
            if device.commands.primary_connect().is_none() {
                return Err(Error::config("the device has no connection_command"));
            }
            let root = r.tree(
                index,
                "uboot-action",
                &[
                    ("uboot-prepare-kernel", &[]),
                    ("bootloader-overlay", &[]),
                    ("connect-device", &[]),
                    (
                        "uboot-commands",
                        &[
                            "reset-device",
                            "bootloader-interrupt",
                            "bootloader-commands",
                            "auto-login-action",
                            "expect-shell-connection",
                            "export-device-env",
                        ],
                    ),
                ],
            );
            let work = step::uboot(&root, uboot, device)?;
            Ok((root, Work::UBoot(Box::new(work))))
        }
        Boot::Qemu(qemu) => {
            login_children(&qemu.login)?;
            if qemu.docker.is_some() {
                return Err(unsupported("boot qemu in docker"));
            }
            let Some(method) = &device.actions.boot.qemu else {
                return Err(Error::job(
                    "boot method qemu is not supported by this device type",
                ));
            };
            let root = r.tree(
                index,
                "boot-image-retry",
                &[(
                    "boot-qemu-image",
                    &[
                        "execute-qemu",
                        "auto-login-action",
                        "expect-shell-connection",
                        "export-device-env",
                    ],
                )],
            );
            let mut command = vec![method.command.clone()];
            command.extend(method.options.iter().cloned());
            command.extend(method.extra.iter().cloned());
            let work = QemuWork {
                command,
                login: step::login(&root, &qemu.login)?,
            };
            Ok((root, Work::Qemu(Box::new(work))))
        }
        Boot::Minimal(minimal) => {
            login_children(&minimal.login)?;
            if device.commands.primary_connect().is_none() {
                return Err(Error::config("the device has no connection_command"));
            }
            let root = r.tree(
                index,
                "minimal-boot",
                &[
                    ("connect-device", &[]),
                    ("reset-device", &[]),
                    ("auto-login-action", &[]),
                    ("expect-shell-connection", &[]),
                    ("export-device-env", &[]),
                ],
            );
            let work = MinimalWork {
                reset: if minimal.reset {
                    Some(step::node(&root, "reset-device")?)
                } else {
                    None
                },
                login: step::login(&root, &minimal.login)?,
            };
            Ok((root, Work::Minimal(Box::new(work))))
        }
        Boot::Other {
            method: BootMethod::Bootloader,
            params,
        } => {
            if params.get("bootloader").and_then(|b| b.as_str()) != Some("u-boot") {
                return Err(unsupported("boot method bootloader other than u-boot"));
            }
            if device.actions.boot.uboot.is_none() {
                return Err(Error::job(
                    "boot method bootloader is not supported by this device type",
                ));
            }
            if device.commands.primary_connect().is_none() {
                return Err(Error::config("the device has no connection_command"));
            }
            let commands: Vec<String> = params
                .get("commands")
                .and_then(|c| c.as_seq())
                .map(|c| {
                    c.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let root = r.tree(
                index,
                "bootloader-action",
                &[
                    ("bootloader-overlay", &[]),
                    ("connect-device", &[]),
                    (
                        "bootloader-retry",
                        &[
                            "reset-device",
                            "bootloader-interrupt",
                            "bootloader-commands",
                        ],
                    ),
                ],
            );
            let work = step::bootloader(&root, commands, device)?;
            Ok((root, Work::UBoot(Box::new(work))))
        }
        Boot::Other {
            method: BootMethod::Lxc,
            params,
        } => lxc::boot(r, index, params, device),
        Boot::Other { method, .. } => Err(unsupported(&format!("boot method {}", method.as_str()))),
    }
}

fn test_tree_root(r: &Resolver<'_>, index: usize, test: &Test) -> Result<Node, Error> {
    match test {
        Test::Definitions { docker, .. } => {
            if docker.is_some() {
                return Err(unsupported("test in docker"));
            }
            Ok(r.tree(index, "lava-test-retry", &[("lava-test-shell", &[])]))
        }
        Test::Monitors(_) => Ok(r.tree(
            index,
            "lava-test-monitor-retry",
            &[("lava-test-monitor", &[])],
        )),
        Test::Interactive(_) => Ok(r.tree(
            index,
            "lava-test-interactive-retry",
            &[("lava-test-interactive", &[])],
        )),
    }
}

fn interactive_work(
    root: &Node,
    scripts: &[crate::jobdef::action::test::Interactive],
    stage: usize,
) -> Result<Work, Error> {
    use self::step::Pattern;
    use self::step::{FailureWork, InteractiveStepWork, InteractiveWork, ScriptWork};
    let mut out = Vec::with_capacity(scripts.len());
    for script in scripts {
        let prompts = script
            .prompts
            .iter()
            .map(|p| Pattern::regex("prompts", p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut steps = Vec::new();
        for step in &script.script {
            if !step.multinode.is_empty() {
                return Err(unsupported("MultiNode calls in interactive tests"));
            }
            if let Some(d) = step.delay {
                steps.push(InteractiveStepWork::Delay(u64::try_from(d).unwrap_or(0)));
                continue;
            }
            let failures = step
                .failures
                .iter()
                .map(|f| {
                    let raise = match f.exception.as_deref() {
                        None => None,
                        Some("InfrastructureError") => Some(ErrorType::Infrastructure),
                        Some("JobError") => Some(ErrorType::Job),
                        Some("TestError") => Some(ErrorType::Test),
                        Some(other) => {
                            return Err(Error::job(format!(
                                "interactive failure exception '{other}' is not one of \
                                 InfrastructureError, JobError, TestError"
                            )));
                        }
                    };
                    Ok(FailureWork {
                        message: Pattern::regex("failures", &f.message)?,
                        raise: raise.map(|t| (t, f.error.clone())),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            steps.push(InteractiveStepWork::Command {
                command: step.command.clone(),
                name: step.name.clone(),
                wait_for_prompt: step.wait_for_prompt,
                successes: step
                    .successes
                    .iter()
                    .map(|m| Pattern::regex("successes", m))
                    .collect::<Result<Vec<_>, _>>()?,
                failures,
            });
        }
        out.push(ScriptWork {
            name: script.name.clone(),
            prompts,
            echo_discard: script.echo_discard,
            steps,
        });
    }
    Ok(Work::Interactive(Box::new(InteractiveWork {
        stage,
        node: step::node(root, "lava-test-interactive")?,
        scripts: out,
    })))
}

fn monitors_work(
    root: &Node,
    monitors: &[crate::jobdef::action::test::Monitor],
) -> Result<Work, Error> {
    use self::step::{MonitorWork, MonitorsWork, Pattern};
    let monitors = monitors
        .iter()
        .map(|m| {
            Ok(MonitorWork {
                suite: m.name.replace(' ', "-").to_lowercase(),
                start: Pattern::regex("start", &m.start)?,
                end: Pattern::regex("end", &m.end)?,
                pattern: Pattern::regex("pattern", &m.pattern)?,
                fixupdict: m.fixupdict.clone(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Work::Monitors(Box::new(MonitorsWork {
        node: step::node(root, "lava-test-monitor")?,
        monitors,
    })))
}

fn test_work(
    root: &Node,
    test: &Test,
    stage: usize,
    test_index: usize,
    def_nodes: &mut std::collections::VecDeque<[Node; 4]>,
) -> Result<Work, Error> {
    let definitions = match test {
        Test::Definitions { definitions, .. } => definitions,
        Test::Interactive(scripts) => return interactive_work(root, scripts, test_index),
        Test::Monitors(monitors) => return monitors_work(root, monitors),
    };
    let mut tests = Vec::with_capacity(definitions.len());
    for d in definitions {
        let source = def_source(d)?;
        let Some([repo, overlay, install, runscript]) = def_nodes.pop_front() else {
            return Err(Error {
                error_type: ErrorType::Bug,
                message: format!("no overlay actions for test definition '{}'", d.name),
            });
        };
        tests.push(TestDef {
            definition: d.clone(),
            source,
            repo,
            overlay,
            install,
            runscript,
        });
    }
    Ok(Work::TestShell(Box::new(TestShellWork {
        stage,
        node: step::node(root, "lava-test-shell")?,
        tests,
    })))
}

/// The typed source of a definition; a path that would leave the repository is a Job error.
fn def_source(d: &TestDefinition) -> Result<DefSource, Error> {
    let path = std::path::Path::new(&d.path);
    if d.path.is_empty()
        || path.is_absolute()
        || path.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
    {
        return Err(Error::job(format!(
            "test definition '{}': path '{}' must be relative and stay inside the repository",
            d.name, d.path
        )));
    }
    Ok(match &d.source {
        TestDefSource::Inline(document) => DefSource::Inline(document.clone()),
        TestDefSource::Git {
            repository,
            branch,
            revision,
            history,
            shallow,
        } => DefSource::Git(GitSource {
            repository: repository.clone(),
            branch: branch.clone(),
            revision: revision.clone(),
            // LAVA: a revision needs history; otherwise `shallow` (default true).
            shallow: revision.is_none() && shallow.unwrap_or(true),
            history: history.unwrap_or(true),
        }),
        TestDefSource::Url {
            repository,
            compression,
        } => {
            let codec = match compression.as_str() {
                "gz" | "tgz" => Some(Codec::Gz),
                "xz" => Some(Codec::Xz),
                "bz2" => Some(Codec::Bz2),
                "zstd" => Some(Codec::Zstd),
                "none" | "" => None,
                other => {
                    return Err(unsupported(&format!(
                        "test definition archive compression '{other}'"
                    )));
                }
            };
            if !(repository.starts_with("http://")
                || repository.starts_with("https://")
                || repository.starts_with("file://"))
            {
                return Err(unsupported(&format!("downloading '{repository}'")));
            }
            DefSource::Url(UrlSource {
                url: repository.clone(),
                codec,
            })
        }
    })
}

#[cfg(test)]
mod tests;
