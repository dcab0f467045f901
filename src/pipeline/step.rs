//! What the dispatcher does for each top-level block, typed: [`Work`] carries every choice the
//! pipeline made (which files to download at which level, which prompts to wait for, already
//! compiled, which tree nodes time each wait), so the dispatcher matches a variant instead of
//! looking actions up by name, and nothing it is handed can still be refused.

use regex::Regex;

use super::{Error, Node};
use crate::devicetype::DeviceConfig;
use crate::jobdef::action::boot::Login;
use crate::jobdef::action::deploy::{Compression, KernelType, Resource, TmpfsImage};
use crate::jobdef::action::test::TestDefinition;
use crate::jobdef::yaml;
use crate::model::ErrorType;

/// A compiled regular expression (a prompt, a bootloader message).
#[derive(Debug, Clone)]
pub struct Pattern(Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Pattern {
    /// `text` as a regular expression; an invalid one is a Job error naming `what`.
    pub fn regex(what: &str, text: &str) -> Result<Pattern, Error> {
        Regex::new(text).map(Pattern).map_err(|e| {
            Error::job(format!(
                "invalid regular expression in {what} '{text}': {e}"
            ))
        })
    }

    /// `text` matched literally.
    pub fn literal(text: &str) -> Pattern {
        // An escaped string is always a valid expression.
        Pattern(Regex::new(&regex::escape(text)).unwrap_or_else(|_| never()))
    }

    /// The compiled expression.
    pub fn get(&self) -> &Regex {
        &self.0
    }
}

fn never() -> Regex {
    Regex::new("$^").expect("a constant valid regex")
}

/// How a download is decompressed (`compression: zip` is refused by the pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip.
    Gz,
    /// xz.
    Xz,
    /// bzip2.
    Bz2,
    /// zstd.
    Zstd,
}

impl Codec {
    /// The codec of `compression`; `None` for one the appliance cannot decompress.
    pub fn of(compression: Compression) -> Option<Codec> {
        match compression {
            Compression::Gz => Some(Codec::Gz),
            Compression::Xz => Some(Codec::Xz),
            Compression::Bz2 => Some(Codec::Bz2),
            Compression::Zstd => Some(Codec::Zstd),
            Compression::Zip => None,
        }
    }

    /// The YAML spelling (and file suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Gz => "gz",
            Codec::Xz => "xz",
            Codec::Bz2 => "bz2",
            Codec::Zstd => "zstd",
        }
    }
}

/// One file to download.
#[derive(Debug, Clone, PartialEq)]
pub struct Download {
    /// The job's name for it (`kernel`, `ramdisk`, an image's key).
    pub label: String,
    /// Where from, and the checksums to verify.
    pub resource: Resource,
    /// How to decompress it.
    pub codec: Option<Codec>,
    /// The level of its `http-download` action (under its `download-retry`).
    pub level: String,
}

/// A TFTP deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct TftpWork {
    /// The kernel.
    pub kernel: Download,
    /// Its type (`bootz`, `booti`…), when the job names it.
    pub kernel_type: Option<KernelType>,
    /// The device tree.
    pub dtb: Option<Download>,
    /// The ramdisk, and whether the test overlay goes into it.
    pub ramdisk: Option<(Download, bool)>,
    /// Kernel modules (downloaded, not installed).
    pub modules: Option<Download>,
    /// OP-TEE.
    pub tee: Option<Download>,
}

/// One image of a tmpfs deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageWork {
    /// The image as the job gives it.
    pub image: TmpfsImage,
    /// Its download.
    pub download: Download,
    /// Whether the test overlay is appended to it (a cpio initrd).
    pub add_overlay: bool,
}

/// Stopping U-Boot's autoboot.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupt {
    /// The autoboot message.
    pub prompt: Pattern,
    /// What to send.
    pub text: String,
    /// Whether a newline follows it.
    pub newline: bool,
}

/// A U-Boot boot.
#[derive(Debug, Clone, PartialEq)]
pub struct UBootWork {
    /// The commands, placeholders still in them.
    pub commands: Vec<String>,
    /// U-Boot's prompt.
    pub prompt: Pattern,
    /// How to stop autoboot, when it must be.
    pub interrupt: Option<Interrupt>,
    /// Messages that mean a command failed.
    pub errors: Vec<Pattern>,
    /// What the kernel prints first (waited for after the last command).
    pub kernel_start: Pattern,
    /// `bootloader-overlay`.
    pub overlay: Node,
    /// `reset-device`.
    pub reset: Node,
    /// `bootloader-interrupt`.
    pub interrupt_node: Node,
    /// `bootloader-commands`.
    pub commands_node: Node,
    /// Logging in; `None` for `method: bootloader`, which stops at the bootloader's prompt
    /// after its commands.
    pub login: Option<LoginWork>,
}

/// A QEMU boot.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuWork {
    /// The emulator and its options (the deployed images are appended).
    pub command: Vec<String>,
    /// Logging in.
    pub login: LoginWork,
}

/// A minimal boot.
#[derive(Debug, Clone, PartialEq)]
pub struct MinimalWork {
    /// `reset-device`, when the job resets the board.
    pub reset: Option<Node>,
    /// Logging in.
    pub login: LoginWork,
}

/// Automatic login.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoLoginWork {
    /// User name.
    pub username: String,
    /// Password prompt and password.
    pub password: Option<(Pattern, String)>,
    /// Commands sent after logging in.
    pub login_commands: Vec<String>,
}

/// Waiting for the board to be logged in (`auto-login-action`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginWork {
    /// `auto-login-action`.
    pub node: Node,
    /// What is waited for first (the login prompt, else the shell prompts), watching kernel
    /// messages on the way.
    pub first: Vec<Pattern>,
    /// Automatic login.
    pub auto_login: Option<AutoLoginWork>,
    /// Shell prompts.
    pub prompts: Vec<Pattern>,
}

/// A `from: git` definition's repository, as the dispatcher clones it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// Clone URL (git://, http(s)://, file://, or a local path).
    pub repository: String,
    /// `branch:` to check out.
    pub branch: Option<String>,
    /// `revision:` to check out after cloning.
    pub revision: Option<String>,
    /// `--depth=1`: LAVA clones shallow unless `shallow: false` or a revision is asked.
    pub shallow: bool,
    /// `history: false` removes `.git` from the copy on the board.
    pub history: bool,
}

/// A `from: url` definition's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSource {
    /// The tar archive's URL.
    pub url: String,
    /// Its compression (the pipeline refuses one the appliance cannot decompress).
    pub codec: Option<Codec>,
}

/// Where one test definition comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DefSource {
    /// `from: inline`: the document itself.
    Inline(yaml::Node),
    /// `from: git`.
    Git(GitSource),
    /// `from: url`.
    Url(UrlSource),
}

impl DefSource {
    /// LAVA's name of the action that fetches it.
    pub fn action_name(&self) -> &'static str {
        match self {
            DefSource::Inline(_) => "inline-repo-action",
            DefSource::Git(_) => "git-repo-action",
            DefSource::Url(_) => "url-repo-action",
        }
    }

    /// `from:` as the job writes it.
    pub fn from(&self) -> &'static str {
        match self {
            DefSource::Inline(_) => "inline",
            DefSource::Git(_) => "git",
            DefSource::Url(_) => "url",
        }
    }
}

/// One test definition of a test shell stage, and the deploy-time actions that put it into
/// the overlay (LAVA's `test-definition` children).
#[derive(Debug, Clone, PartialEq)]
pub struct TestDef {
    /// The job's entry.
    pub definition: TestDefinition,
    /// Where it comes from.
    pub source: DefSource,
    /// `<from>-repo-action` (its level is the definition's uuid, `<job>_<level>`).
    pub repo: Node,
    /// `test-overlay`.
    pub overlay: Node,
    /// `test-install-overlay`.
    pub install: Node,
    /// `test-runscript-overlay`.
    pub runscript: Node,
}

/// A lava-test-shell block.
#[derive(Debug, Clone, PartialEq)]
pub struct TestShellWork {
    /// Its stage number (test blocks of the job, counted from 0).
    pub stage: usize,
    /// `lava-test-shell`.
    pub node: Node,
    /// Its definitions.
    pub tests: Vec<TestDef>,
}

/// What an interactive command's failure message raises instead of a failed case.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureWork {
    /// The message (a regular expression).
    pub message: Pattern,
    /// `exception:` (InfrastructureError, JobError, TestError) and its `error:` text.
    pub raise: Option<(ErrorType, Option<String>)>,
}

/// One step of an interactive script.
#[derive(Debug, Clone, PartialEq)]
pub enum InteractiveStepWork {
    /// `delay:` seconds.
    Delay(u64),
    /// A command (or none: just wait) and what its output means.
    Command {
        /// What to send (`{SERVER_IP}`, `{JOB_ID}` and captured groups substituted).
        command: Option<String>,
        /// Test case name; an unnamed command that fails fails the job.
        name: Option<String>,
        /// Wait for a prompt after a success or failure message.
        wait_for_prompt: bool,
        /// Messages meaning success (named groups become substitutions).
        successes: Vec<Pattern>,
        /// Messages meaning failure.
        failures: Vec<FailureWork>,
    },
}

/// One interactive script.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptWork {
    /// Its name (suite `<stage>_<name>`).
    pub name: String,
    /// The prompts of the program driven.
    pub prompts: Vec<Pattern>,
    /// `echo: discard`.
    pub echo_discard: bool,
    /// The steps.
    pub steps: Vec<InteractiveStepWork>,
}

/// A `test: interactive` block.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractiveWork {
    /// The test block's number among the job's test blocks (LAVA's `stage`).
    pub stage: usize,
    /// `lava-test-interactive`.
    pub node: Node,
    /// The scripts.
    pub scripts: Vec<ScriptWork>,
}

/// One monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorWork {
    /// Suite name (LAVA: the name, spaces as `-`, lower case).
    pub suite: String,
    /// Starts the watch.
    pub start: Pattern,
    /// Ends it.
    pub end: Pattern,
    /// A result line (named groups `test_case_id`, `result`, `measurement`, `units`).
    pub pattern: Pattern,
    /// Result words → pass/fail/skip/unknown.
    pub fixupdict: Vec<(String, String)>,
}

/// A `test: monitors` block.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorsWork {
    /// `lava-test-monitor`.
    pub node: Node,
    /// The monitors, in order.
    pub monitors: Vec<MonitorWork>,
}

/// A user command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandWork {
    /// The job's name for it.
    pub name: String,
    /// The dictionary's `do` command.
    pub command: String,
}

/// A `deploy: {to: lxc}` (the `lava-lxc` protocol's container).
#[derive(Debug, Clone, PartialEq)]
pub struct LxcDeployWork {
    /// The job's `protocols.lava-lxc`.
    pub protocol: crate::jobdef::protocol::Lxc,
    /// `packages:` installed with apt-get inside the container.
    pub packages: Vec<String>,
    /// The board's USB devices the udev rule hands to the container (`device_info`).
    pub devices: Vec<crate::hw::lxc::DeviceMatch>,
    /// Whether the test overlay is copied into the container.
    pub overlay: bool,
    /// `lxc-create-action`.
    pub create: Node,
    /// `lxc-create-udev-rule-action`.
    pub udev: Node,
    /// `lxc-start`.
    pub start: Node,
    /// `lxc-apt-update` and `lxc-apt-install`, when there are packages.
    pub apt: Option<(Node, Node)>,
}

/// A `boot: {method: lxc}`.
#[derive(Debug, Clone, PartialEq)]
pub struct LxcBootWork {
    /// The job's `protocols.lava-lxc`.
    pub protocol: crate::jobdef::protocol::Lxc,
    /// `lxc-start`.
    pub start: Node,
    /// `lxc-add-static`: the board's `device_info` and `static_info` devices already
    /// present, passed into the container.
    pub devices: Vec<crate::hw::lxc::DeviceMatch>,
    /// `connect-lxc`.
    pub connect: Node,
    /// The shell prompts (`expect-shell-connection`).
    pub prompts: Vec<Pattern>,
}

/// What one top-level block does.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// `deploy: {to: tftp}`.
    Tftp(Box<TftpWork>),
    /// `deploy: {to: tmpfs}`.
    Tmpfs(Vec<ImageWork>),
    /// `boot: {method: u-boot}`.
    UBoot(Box<UBootWork>),
    /// `boot: {method: qemu}`.
    Qemu(Box<QemuWork>),
    /// `boot: {method: minimal}`.
    Minimal(Box<MinimalWork>),
    /// `test: {definitions: …}`.
    TestShell(Box<TestShellWork>),
    /// `test: {interactive: …}`.
    Interactive(Box<InteractiveWork>),
    /// `test: {monitors: …}`.
    Monitors(Box<MonitorsWork>),
    /// `command:`.
    Command(CommandWork),
    /// `deploy: {to: lxc}`.
    LxcDeploy(Box<LxcDeployWork>),
    /// `boot: {method: lxc}`.
    LxcBoot(Box<LxcBootWork>),
}

/// The node of `root`'s tree named `name` (the pipeline built it, so its absence is a bug).
pub(super) fn node(root: &Node, name: &str) -> Result<Node, Error> {
    root.find(name).cloned().ok_or_else(|| Error {
        error_type: ErrorType::Bug,
        message: format!("the {} tree has no {name} action", root.name),
    })
}

/// The `n`-th download of a deploy tree, at the level of its `download-retry`'s
/// `http-download` (the pipeline built the tree, so a missing one is a bug).
pub(super) fn download(
    root: &Node,
    n: usize,
    label: &str,
    resource: &Resource,
) -> Result<Download, Error> {
    let level = root
        .children
        .iter()
        .filter(|c| c.name == "download-retry")
        .nth(n)
        .and_then(|retry| retry.children.first())
        .map(|c| c.level.clone())
        .ok_or_else(|| Error {
            error_type: ErrorType::Bug,
            message: format!("the {} tree has no download number {}", root.name, n + 1),
        })?;
    Ok(Download {
        label: label.to_owned(),
        resource: resource.clone(),
        codec: resource.compression.and_then(Codec::of),
        level,
    })
}

/// The login of a boot block, its prompts compiled.
pub(super) fn login(root: &Node, login: &Login) -> Result<LoginWork, Error> {
    let prompts = login
        .prompts
        .iter()
        .map(|p| Pattern::regex("prompts", p))
        .collect::<Result<Vec<_>, _>>()?;
    let auto_login = match &login.auto_login {
        None => None,
        Some(auto) => Some(AutoLoginWork {
            username: auto.username.clone(),
            password: match &auto.password {
                Some(pw) => Some((
                    Pattern::regex("password_prompt", &pw.prompt)?,
                    pw.password.clone(),
                )),
                None => None,
            },
            login_commands: auto.login_commands.clone(),
        }),
    };
    let first = match &login.auto_login {
        Some(auto) => vec![Pattern::regex("login_prompt", &auto.login_prompt)?],
        None => prompts.clone(),
    };
    Ok(LoginWork {
        node: node(root, "auto-login-action")?,
        first,
        auto_login,
        prompts,
    })
}

/// The U-Boot work of a block (its method checked by the caller).
pub(super) fn uboot(
    root: &Node,
    boot: &crate::jobdef::action::boot::UBootBoot,
    device: &DeviceConfig,
) -> Result<UBootWork, Error> {
    let login = login(root, &boot.login)?;
    uboot_commands(root, &boot.commands, device, Some(login))
}

/// The work of `method: bootloader` with `bootloader: u-boot`: the commands, then the prompt.
pub(super) fn bootloader(
    root: &Node,
    commands: Vec<String>,
    device: &DeviceConfig,
) -> Result<UBootWork, Error> {
    use crate::jobdef::action::boot::BootCommands;
    uboot_commands(root, &BootCommands::Literal(commands), device, None)
}

fn uboot_commands(
    root: &Node,
    commands: &crate::jobdef::action::boot::BootCommands,
    device: &DeviceConfig,
    login: Option<LoginWork>,
) -> Result<UBootWork, Error> {
    use crate::jobdef::action::boot::BootCommands;
    let Some(method) = &device.actions.boot.uboot else {
        return Err(Error::job(
            "boot method u-boot is not supported by this device type",
        ));
    };
    let commands = match commands {
        BootCommands::Named(name) => method
            .commands
            .get(name.as_str())
            .cloned()
            .unwrap_or_default(),
        BootCommands::Literal(list) => list.clone(),
    };
    let prompt = Pattern::regex("bootloader_prompt", &method.parameters.bootloader_prompt)?;
    let interrupt = match device.uboot_interrupt().filter(|i| i.needs_interrupt) {
        Some(int) => Some(Interrupt {
            prompt: Pattern::regex("interrupt_prompt", &int.interrupt_prompt)?,
            text: if int.interrupt_char.is_empty() {
                " ".to_owned()
            } else {
                int.interrupt_char.clone()
            },
            newline: int.newline,
        }),
        None => None,
    };
    let kernel_start = &device.constants.kernel_start_message;
    let kernel_start = if kernel_start.is_empty() {
        "Linux version [0-9]"
    } else {
        kernel_start
    };
    Ok(UBootWork {
        commands,
        prompt,
        interrupt,
        errors: device
            .constants
            .uboot
            .error_messages
            .iter()
            .map(|e| Pattern::literal(e))
            .collect(),
        kernel_start: Pattern::regex("kernel-start-message", kernel_start)?,
        overlay: node(root, "bootloader-overlay")?,
        reset: node(root, "reset-device")?,
        interrupt_node: node(root, "bootloader-interrupt")?,
        commands_node: node(root, "bootloader-commands")?,
        login,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_prompt_is_a_job_error_naming_it() {
        let err = Pattern::regex("prompts", "root@(none").unwrap_err();
        assert_eq!(err.error_type, ErrorType::Job);
        assert!(
            err.message
                .starts_with("invalid regular expression in prompts 'root@(none': "),
            "{}",
            err.message
        );
        assert!(Pattern::literal("a(b").get().is_match("xa(by"));
    }
}
