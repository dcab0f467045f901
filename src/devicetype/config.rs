//! The typed device configuration read from a rendered device dictionary.
//!
//! Field names follow the rendered YAML keys (LAVA's), with `-` written as `_`. Values that
//! LAVA accepts as "a string or a list" are always lists here. Whatever the dispatcher needs and
//! is not typed here stays reachable through [`DeviceConfig::raw`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Error;
use super::node::Node;

/// Top-level keys LAVA's device schema allows; anything else makes the configuration invalid.
const TOP_LEVEL_KEYS: &[&str] = &[
    "character_delays",
    "commands",
    "constants",
    "adb_serial_number",
    "fastboot_serial_number",
    "fastboot_options",
    "fastboot_via_uboot",
    "device_info",
    "static_info",
    "storage_info",
    "environment",
    "flash_cmds_order",
    "parameters",
    "board_id",
    "usb_vendor_id",
    "usb_product_id",
    "usb_sleep",
    "usb_filesystem_label",
    "usb_serial_driver",
    "actions",
    "timeouts",
    "available_architectures",
    "uuu_usb_otg_path",
    "uuu_usb_otg_path_command",
    "uuu_corrupt_boot_media_command",
    // lavabox's own: the native power backend's variables (hw::power::spec), rendered by
    // base.jinja2 only when a dictionary sets `lavabox_power`.
    "lavabox_power",
];

/// One entry of `device_info`, `static_info` or `storage_info`: e.g. `board_id`,
/// `usb_vendor_id`, `usb_product_id`, or a storage method name → block device.
/// Values are text; a nested value is kept as its JSON text.
pub type InfoEntry = BTreeMap<String, String>;

/// Everything the dispatcher needs to know about one device, from its rendered dictionary.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// How to reach and control the board (`commands`).
    pub commands: Commands,
    /// Strings to send and to wait for (`constants`).
    pub constants: Constants,
    /// Delays between characters typed on the console (`character_delays`).
    pub character_delays: CharacterDelays,
    /// Load addresses and attached media (`parameters`).
    pub parameters: Parameters,
    /// The deploy and boot methods the device offers (`actions`).
    pub actions: Actions,
    /// Default timeouts of named actions and connections (`timeouts`).
    pub timeouts: Timeouts,
    /// USB devices that appear when the board runs (`device_info`).
    pub device_info: Vec<InfoEntry>,
    /// Devices permanently attached to the board, such as probes (`static_info`).
    pub static_info: Vec<InfoEntry>,
    /// Scratch storage the test shell may use (`storage_info`).
    pub storage_info: Vec<InfoEntry>,
    /// Variables exported to the test shell (`environment`).
    pub environment: BTreeMap<String, String>,
    /// Guest architectures a QEMU device can run (`available_architectures`).
    pub available_architectures: Vec<String>,
    /// `board_id`: serial number of a board seen over USB (microcontroller boards).
    pub board_id: Option<String>,
    /// `usb_vendor_id`: 4 hex digits.
    pub usb_vendor_id: Option<String>,
    /// `usb_product_id`: 4 hex digits.
    pub usb_product_id: Option<String>,
    /// `usb_sleep`: seconds to wait for the USB device to appear.
    pub usb_sleep: Option<u64>,
    /// The whole rendered document, for keys not typed here.
    pub raw: serde_norway::Value,
}

/// `commands`: console connections, power control and admin-defined commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    /// The single console command (`connect`, from `connection_command`).
    pub connect: Option<String>,
    /// Named console connections (`connections`, from `connection_list`), when there are several.
    pub connections: BTreeMap<String, Connection>,
    /// Whether jobs must name a connection (`must_use_connection`).
    pub must_use_connection: bool,
    /// `hard_reset` (from `hard_reset_command`).
    pub hard_reset: Vec<String>,
    /// `soft_reboot` (from `soft_reboot_command`).
    pub soft_reboot: Vec<String>,
    /// `power_off` (from `power_off_command`).
    pub power_off: Vec<String>,
    /// `power_on` (from `power_on_command`).
    pub power_on: Vec<String>,
    /// `pre_power_command`: run before power-on.
    pub pre_power: Vec<String>,
    /// `pre_os_command`: run before the OS boots.
    pub pre_os: Vec<String>,
    /// `recovery_mode` (from `recovery_mode_command`).
    pub recovery_mode: Vec<String>,
    /// `recovery_exit` (from `recovery_exit_command`).
    pub recovery_exit: Vec<String>,
    /// Commands a job's `command:` action may run by name (`users`, from `user_commands`).
    pub users: BTreeMap<String, UserCommand>,
}

impl Commands {
    /// The command that opens the main console: `connect`, else the connection tagged
    /// `primary`, else the only connection.
    pub fn primary_connect(&self) -> Option<&str> {
        if let Some(connect) = &self.connect {
            return Some(connect);
        }
        if let Some(c) = self
            .connections
            .values()
            .find(|c| c.tags.iter().any(|t| t == "primary"))
        {
            return Some(&c.connect);
        }
        match self.connections.values().collect::<Vec<_>>().as_slice() {
            [only] => Some(&only.connect),
            _ => None,
        }
    }
}

/// One entry of `commands.connections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The command that opens this console.
    pub connect: String,
    /// Its tags; `primary` marks the main console.
    pub tags: Vec<String>,
}

/// One entry of `commands.users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCommand {
    /// The command run by the job action (`do`).
    pub do_command: String,
    /// The command run when the job ends, to undo it (`undo`).
    pub undo_command: Option<String>,
}

/// `constants`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constants {
    /// `posix`: how the test shell runs on the board.
    pub posix: PosixConstants,
    /// `u-boot`: how U-Boot is interrupted and how it fails.
    pub uboot: UBootConstants,
    /// `shutdown-message`: printed by the OS when it reboots.
    pub shutdown_message: String,
    /// `kernel-start-message`: a regular expression that marks the kernel starting.
    pub kernel_start_message: String,
    /// `default-shell-prompt`: the prompt set before the test shell starts.
    pub default_shell_prompt: String,
    /// `spawn_maxread`: console read size in bytes (kept for compatibility).
    pub spawn_maxread: Option<u64>,
    /// `failure_retry`: default number of attempts of retried actions.
    pub failure_retry: u64,
    /// `boot_retry`: override of the number of boot attempts.
    pub boot_retry: Option<u64>,
}

/// `constants.posix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixConstants {
    /// `lava_test_sh_cmd`: the shell that runs test scripts.
    pub lava_test_sh_cmd: String,
    /// `lava_test_results_dir`: where results go; `%s` is the job id.
    pub lava_test_results_dir: String,
    /// `lava_test_shell_file`: the shell start-up file.
    pub lava_test_shell_file: String,
}

/// `constants.u-boot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootConstants {
    /// `interrupt-prompt`: U-Boot's autoboot countdown message.
    pub interrupt_prompt: String,
    /// `interrupt-character`: sent to stop autoboot.
    pub interrupt_character: String,
    /// `interrupt_ctrl_list`: control characters sent instead (e.g. `c` for Ctrl-C).
    pub interrupt_ctrl_list: Vec<String>,
    /// `interrupt-newline`: whether a newline follows the interrupt character.
    pub interrupt_newline: bool,
    /// `final-message`: U-Boot's last words before the kernel.
    pub final_message: String,
    /// `error-messages`: output that means the boot failed.
    pub error_messages: Vec<String>,
}

/// `character_delays`, in milliseconds in the YAML.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CharacterDelays {
    /// Between characters sent to the bootloader (`boot`).
    pub boot: Option<Duration>,
    /// Between characters sent to the test shell (`test`).
    pub test: Option<Duration>,
}

/// `parameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters {
    /// Addresses used with `bootz` (zImage kernels).
    pub bootz: Option<LoadAddresses>,
    /// Addresses used with `bootm` (uImage kernels).
    pub bootm: Option<LoadAddresses>,
    /// Addresses used with `booti` (arm64 Image kernels).
    pub booti: Option<LoadAddresses>,
    /// `text_offset`, for arm64 kernels.
    pub text_offset: Option<String>,
}

impl Parameters {
    /// The load addresses for a kernel of `kind`, if the device type defines them.
    pub fn addresses(&self, kind: KernelType) -> Option<&LoadAddresses> {
        match kind {
            KernelType::Zimage => self.bootz.as_ref(),
            KernelType::Uimage => self.bootm.as_ref(),
            KernelType::Image => self.booti.as_ref(),
        }
    }
}

/// The kernel `type:` of a job's deploy action, which picks the U-Boot boot command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelType {
    /// `zimage` → `bootz`.
    Zimage,
    /// `uimage` → `bootm`.
    Uimage,
    /// `image` → `booti`.
    Image,
}

impl KernelType {
    /// Parses a job's kernel `type:` value (`zimage`, `uimage`, `image`).
    pub fn from_job(value: &str) -> Option<Self> {
        match value {
            "zimage" => Some(KernelType::Zimage),
            "uimage" => Some(KernelType::Uimage),
            "image" => Some(KernelType::Image),
            _ => None,
        }
    }

    /// The U-Boot command that boots this kind of kernel, which `{BOOTX}` stands for.
    pub fn boot_command(self) -> &'static str {
        match self {
            KernelType::Zimage => "bootz",
            KernelType::Uimage => "bootm",
            KernelType::Image => "booti",
        }
    }
}

/// Where U-Boot loads each file, as the text substituted for `{KERNEL_ADDR}` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadAddresses {
    /// `{KERNEL_ADDR}`.
    pub kernel: String,
    /// `{RAMDISK_ADDR}`.
    pub ramdisk: String,
    /// `{DTB_ADDR}`.
    pub dtb: String,
    /// `{TEE_ADDR}`.
    pub tee: Option<String>,
}

/// `actions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// `actions.deploy`.
    pub deploy: DeployActions,
    /// `actions.boot`.
    pub boot: BootActions,
}

/// `actions.deploy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployActions {
    /// Connection kinds usable while deploying.
    pub connections: BTreeSet<String>,
    /// Deploy methods offered (`tftp`, `image`, `nfs`, ...).
    pub methods: BTreeSet<String>,
    /// `parameters`.
    pub parameters: DeployParameters,
    /// `methods.image.parameters.guest`: the QEMU scratch disk.
    pub image_guest: Option<GuestDisk>,
    /// `methods.ssh`.
    pub ssh: Option<SshParameters>,
}

/// `actions.deploy.parameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployParameters {
    /// `add_header`: e.g. `u-boot` (add a U-Boot header to ramdisks that need one).
    pub add_header: Option<String>,
    /// `mkimage_arch`: the `mkimage -A` architecture.
    pub mkimage_arch: Option<String>,
    /// `append_dtb`: append the DTB to the kernel.
    pub append_dtb: bool,
    /// `use_xip`: execute-in-place kernels.
    pub use_xip: bool,
}

/// `actions.deploy.methods.image.parameters.guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDisk {
    /// `size` in MiB.
    pub size_mb: u64,
    /// `interface`, e.g. `ide` or `virtio`.
    pub interface: String,
    /// `driveid`.
    pub driveid: String,
}

/// `actions.deploy.methods.ssh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshParameters {
    /// Options given to both ssh and scp.
    pub options: Vec<String>,
    /// `host`; empty when the device is not reached over ssh.
    pub host: String,
    /// `port`.
    pub port: u64,
    /// `user`.
    pub user: String,
    /// `identity_file`.
    pub identity_file: String,
}

/// `actions.boot`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootActions {
    /// Connection kinds usable while booting.
    pub connections: BTreeSet<String>,
    /// Boot methods offered (`u-boot`, `qemu`, `minimal`, ...).
    pub methods: BTreeSet<String>,
    /// `methods.u-boot`.
    pub uboot: Option<UBootMethod>,
    /// `methods.qemu`.
    pub qemu: Option<QemuMethod>,
    /// `methods.qemu-nfs`.
    pub qemu_nfs: Option<QemuMethod>,
}

/// `actions.boot.methods.u-boot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootMethod {
    /// `parameters`.
    pub parameters: UBootParameters,
    /// The command sets a job picks with `commands: <name>` (`ramdisk`, `nfs`, ...), with their
    /// placeholders (`{KERNEL_ADDR}`, ...) still in them.
    pub commands: BTreeMap<String, Vec<String>>,
}

/// `actions.boot.methods.u-boot.parameters`. Where a value is missing the dispatcher falls
/// back to `constants.u-boot`; [`DeviceConfig::uboot_interrupt`] applies that rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootParameters {
    /// `bootloader_prompt`: the U-Boot prompt, e.g. `=>`.
    pub bootloader_prompt: String,
    /// `interrupt_prompt`: the autoboot message to interrupt.
    pub interrupt_prompt: Option<String>,
    /// `interrupt_char`: what to send to stop autoboot (the shipped templates give `""`,
    /// so just a newline is sent, as in LAVA).
    pub interrupt_char: Option<String>,
    /// `interrupt_ctrl_list`: control characters to send instead (e.g. `c` for Ctrl-C).
    pub interrupt_ctrl_list: Option<Vec<String>>,
    /// `needs_interrupt`: whether autoboot must be stopped.
    pub needs_interrupt: bool,
}

/// How to stop U-Boot's autoboot and reach its prompt, with LAVA's fallbacks applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootInterrupt {
    /// Whether to interrupt at all; if not, just wait for `bootloader_prompt`.
    pub needs_interrupt: bool,
    /// The autoboot message to wait for before interrupting.
    pub interrupt_prompt: String,
    /// Control characters to send (each sent as Ctrl plus that character); when empty, send `interrupt_char`.
    pub ctrl_chars: Vec<String>,
    /// The text to send to stop autoboot.
    pub interrupt_char: String,
    /// Whether `interrupt_char` is followed by a newline.
    pub newline: bool,
    /// The prompt that means U-Boot is ready for commands.
    pub bootloader_prompt: String,
}

/// `actions.boot.methods.qemu` or `qemu-nfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuMethod {
    /// `parameters.command`: the emulator binary, e.g. `qemu-system-x86_64`.
    pub command: String,
    /// `parameters.options`: command-line options, one string each (may hold several words).
    pub options: Vec<String>,
    /// `parameters.extra`: the job context's `extra_options`.
    pub extra: Vec<String>,
    /// `parameters.boot_options`: root and console an installer should use.
    pub boot_options: BTreeMap<String, String>,
    /// `parameters.append` (`qemu-nfs`): kernel arguments for an NFS root.
    pub append: BTreeMap<String, String>,
}

/// `timeouts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Default timeouts of actions by name (`timeouts.actions`).
    pub actions: BTreeMap<String, Duration>,
    /// Default timeouts of connections (prompt waits) by action name (`timeouts.connections`).
    pub connections: BTreeMap<String, Duration>,
}

impl DeviceConfig {
    /// Reads a rendered device configuration (YAML text).
    pub fn from_yaml(yaml: &str) -> Result<Self, Error> {
        let raw = super::yaml::parse(yaml).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            Error::Yaml {
                line,
                text: line
                    .checked_sub(1)
                    .and_then(|i| yaml.lines().nth(i))
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned(),
                message: e.to_string(),
            }
        })?;
        Self::from_value(raw)
    }

    /// Reads an already parsed configuration.
    pub fn from_value(raw: serde_norway::Value) -> Result<Self, Error> {
        let root = Node::root(&raw);
        if !matches!(raw, serde_norway::Value::Mapping(_)) {
            return Err(root.error("expected a mapping of device settings"));
        }
        for key in root.keys()? {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                return Err(Error::config(&key, "extra keys not allowed"));
            }
        }
        let commands = match root.get("commands")? {
            Some(n) => commands(&n)?,
            None => Commands::default(),
        };
        let actions = match root.get("actions")? {
            Some(n) => actions(&n)?,
            None => Actions::default(),
        };
        if actions
            .deploy
            .ssh
            .as_ref()
            .is_some_and(|s| !s.host.is_empty())
            && !(commands.power_off.is_empty()
                && commands.power_on.is_empty()
                && commands.hard_reset.is_empty())
        {
            return Err(Error::config(
                "commands",
                "when the primary connection is ssh, power control commands (power_off, power_on, hard_reset) must not be given",
            ));
        }
        for key in ["usb_vendor_id", "usb_product_id"] {
            if let Some(n) = root.get_some(key)?
                && n.text()?.chars().count() != 4
            {
                return Err(n.error("expected 4 characters"));
            }
        }
        let config = DeviceConfig {
            constants: constants(&root.require("constants")?)?,
            character_delays: match root.get("character_delays")? {
                Some(n) => character_delays(&n)?,
                None => CharacterDelays::default(),
            },
            parameters: match root.get("parameters")? {
                Some(n) => parameters(&n)?,
                None => Parameters::default(),
            },
            timeouts: match root.get("timeouts")? {
                Some(n) => timeouts(&n)?,
                None => Timeouts::default(),
            },
            device_info: info_list(root.get("device_info")?)?,
            static_info: info_list(root.get("static_info")?)?,
            storage_info: info_list(root.get("storage_info")?)?,
            environment: match root.get("environment")? {
                Some(n) => info_entry(&n)?,
                None => BTreeMap::new(),
            },
            available_architectures: match root.get("available_architectures")? {
                Some(n) => n.text_list()?,
                None => Vec::new(),
            },
            board_id: optional_text(&root, "board_id")?,
            usb_vendor_id: optional_text(&root, "usb_vendor_id")?,
            usb_product_id: optional_text(&root, "usb_product_id")?,
            usb_sleep: match root.get_some("usb_sleep")? {
                Some(n) => Some(n.unsigned()?),
                None => None,
            },
            commands,
            actions,
            raw: serde_norway::Value::Null,
        };
        Ok(DeviceConfig { raw, ..config })
    }
}

impl DeviceConfig {
    /// How to interrupt U-Boot, if the device boots with U-Boot: the boot method's parameters,
    /// falling back to `constants.u-boot` as LAVA's dispatcher does.
    pub fn uboot_interrupt(&self) -> Option<UBootInterrupt> {
        let params = &self.actions.boot.uboot.as_ref()?.parameters;
        let constants = &self.constants.uboot;
        Some(UBootInterrupt {
            needs_interrupt: params.needs_interrupt,
            interrupt_prompt: params
                .interrupt_prompt
                .clone()
                .unwrap_or_else(|| constants.interrupt_prompt.clone()),
            ctrl_chars: params
                .interrupt_ctrl_list
                .clone()
                .unwrap_or_else(|| constants.interrupt_ctrl_list.clone()),
            interrupt_char: params
                .interrupt_char
                .clone()
                .unwrap_or_else(|| constants.interrupt_character.clone()),
            newline: constants.interrupt_newline,
            bootloader_prompt: params.bootloader_prompt.clone(),
        })
    }
}

fn commands(node: &Node<'_>) -> Result<Commands, Error> {
    let list = |key: &str| -> Result<Vec<String>, Error> {
        node.get(key)?.map_or(Ok(Vec::new()), |n| n.commands())
    };
    let mut connections = BTreeMap::new();
    if let Some(n) = node.get("connections")? {
        for (name, c) in n.entries()? {
            let tags = match c.get("tags")? {
                Some(t) => t.commands()?,
                None => Vec::new(),
            };
            connections.insert(
                name,
                Connection {
                    connect: c.require("connect")?.text()?,
                    tags,
                },
            );
        }
    }
    let mut users = BTreeMap::new();
    if let Some(n) = node.get("users")? {
        for (name, u) in n.entries()? {
            let undo_command = match u.get_some("undo")? {
                Some(undo) => Some(undo.text()?),
                None => None,
            };
            users.insert(
                name,
                UserCommand {
                    do_command: u.require("do")?.text()?,
                    undo_command,
                },
            );
        }
    }
    Ok(Commands {
        connect: match node.get_some("connect")? {
            Some(n) => Some(n.text()?),
            None => None,
        },
        connections,
        must_use_connection: match node.get_some("must_use_connection")? {
            Some(n) => n.boolean()?,
            None => false,
        },
        hard_reset: list("hard_reset")?,
        soft_reboot: list("soft_reboot")?,
        power_off: list("power_off")?,
        power_on: list("power_on")?,
        pre_power: list("pre_power_command")?,
        pre_os: list("pre_os_command")?,
        recovery_mode: list("recovery_mode")?,
        recovery_exit: list("recovery_exit")?,
        users,
    })
}

fn constants(node: &Node<'_>) -> Result<Constants, Error> {
    let posix = node.require("posix")?;
    let uboot = node.require("u-boot")?;
    Ok(Constants {
        posix: PosixConstants {
            lava_test_sh_cmd: posix.require("lava_test_sh_cmd")?.text()?,
            lava_test_results_dir: posix.require("lava_test_results_dir")?.text()?,
            lava_test_shell_file: posix.require("lava_test_shell_file")?.text_or_empty()?,
        },
        uboot: UBootConstants {
            interrupt_prompt: uboot.require("interrupt-prompt")?.text()?,
            interrupt_character: uboot.require("interrupt-character")?.text_or_empty()?,
            interrupt_ctrl_list: match uboot.get("interrupt_ctrl_list")? {
                Some(n) => n.text_list()?,
                None => Vec::new(),
            },
            interrupt_newline: match uboot.get_some("interrupt-newline")? {
                Some(n) => n.boolean()?,
                None => true,
            },
            final_message: uboot.require("final-message")?.text()?,
            error_messages: match uboot.get("error-messages")? {
                Some(n) => n.text_list()?,
                None => Vec::new(),
            },
        },
        shutdown_message: node.require("shutdown-message")?.text()?,
        kernel_start_message: node.require("kernel-start-message")?.text()?,
        default_shell_prompt: node.require("default-shell-prompt")?.text()?,
        spawn_maxread: match node.get_some("spawn_maxread")? {
            Some(n) => Some(n.unsigned()?),
            None => None,
        },
        failure_retry: match node.get_some("failure_retry")? {
            Some(n) => n.unsigned()?,
            None => 1,
        },
        boot_retry: match node.get_some("boot_retry")? {
            Some(n) => Some(n.unsigned()?),
            None => None,
        },
    })
}

fn character_delays(node: &Node<'_>) -> Result<CharacterDelays, Error> {
    let millis = |key: &str| -> Result<Option<Duration>, Error> {
        Ok(match node.get_some(key)? {
            Some(n) => Some(Duration::from_millis(n.unsigned()?)),
            None => None,
        })
    };
    Ok(CharacterDelays {
        boot: millis("boot")?,
        test: millis("test")?,
    })
}

fn parameters(node: &Node<'_>) -> Result<Parameters, Error> {
    let addresses = |key: &str| -> Result<Option<LoadAddresses>, Error> {
        let Some(n) = node.get_some(key)? else {
            return Ok(None);
        };
        Ok(Some(LoadAddresses {
            kernel: n.require("kernel")?.text()?,
            ramdisk: n.require("ramdisk")?.text()?,
            dtb: n.require("dtb")?.text()?,
            tee: match n.get_some("tee")? {
                Some(t) => Some(t.text()?),
                None => None,
            },
        }))
    };
    Ok(Parameters {
        bootz: addresses("bootz")?,
        bootm: addresses("bootm")?,
        booti: addresses("booti")?,
        text_offset: match node.get_some("text_offset")? {
            Some(n) => Some(n.text()?),
            None => None,
        },
    })
}

fn actions(node: &Node<'_>) -> Result<Actions, Error> {
    let deploy = node.require("deploy")?;
    let deploy_methods = deploy.require("methods")?;
    let boot = node.require("boot")?;
    let boot_methods = boot.require("methods")?;
    let deploy_parameters = match deploy.get("parameters")? {
        Some(p) => DeployParameters {
            add_header: match p.get_some("add_header")? {
                Some(n) => Some(n.text()?),
                None => None,
            },
            mkimage_arch: match p.get_some("mkimage_arch")? {
                Some(n) => Some(n.text()?),
                None => None,
            },
            append_dtb: match p.get_some("append_dtb")? {
                Some(n) => n.boolean()?,
                None => false,
            },
            use_xip: match p.get_some("use_xip")? {
                Some(n) => n.boolean()?,
                None => false,
            },
        },
        None => DeployParameters::default(),
    };
    let image_guest = match deploy_methods.get_some("image")? {
        Some(image) => match image.get_some("parameters")? {
            Some(p) => match p.get_some("guest")? {
                Some(g) => Some(GuestDisk {
                    size_mb: g.require("size")?.unsigned()?,
                    interface: g.require("interface")?.text()?,
                    driveid: g.require("driveid")?.text()?,
                }),
                None => None,
            },
            None => None,
        },
        None => None,
    };
    let ssh = match deploy_methods.get_some("ssh")? {
        Some(s) => Some(SshParameters {
            options: match s.get("options")? {
                Some(n) => n.text_list()?,
                None => Vec::new(),
            },
            host: match s.get("host")? {
                Some(n) => n.text_or_empty()?,
                None => String::new(),
            },
            port: match s.get_some("port")? {
                Some(n) => n.unsigned()?,
                None => 22,
            },
            user: match s.get_some("user")? {
                Some(n) => n.text()?,
                None => "root".to_owned(),
            },
            identity_file: match s.get("identity_file")? {
                Some(n) => n.text_or_empty()?,
                None => String::new(),
            },
        }),
        None => None,
    };
    let uboot = match boot_methods.get_some("u-boot")? {
        Some(n) => Some(uboot_method(&n)?),
        None => None,
    };
    Ok(Actions {
        deploy: DeployActions {
            connections: keys_of(deploy.get("connections")?)?,
            methods: deploy_methods.keys()?.into_iter().collect(),
            parameters: deploy_parameters,
            image_guest,
            ssh,
        },
        boot: BootActions {
            connections: boot.require("connections")?.keys()?.into_iter().collect(),
            methods: boot_methods.keys()?.into_iter().collect(),
            uboot,
            qemu: match boot_methods.get_some("qemu")? {
                Some(n) => Some(qemu_method(&n)?),
                None => None,
            },
            qemu_nfs: match boot_methods.get_some("qemu-nfs")? {
                Some(n) => Some(qemu_method(&n)?),
                None => None,
            },
        },
    })
}

fn uboot_method(node: &Node<'_>) -> Result<UBootMethod, Error> {
    let p = node.require("parameters")?;
    let mut commands = BTreeMap::new();
    for (name, set) in node.entries()? {
        if name == "parameters" {
            continue;
        }
        if let Some(list) = set.get("commands")? {
            commands.insert(name, list.commands()?);
        }
    }
    Ok(UBootMethod {
        parameters: UBootParameters {
            bootloader_prompt: p.require("bootloader_prompt")?.text()?,
            interrupt_prompt: match p.get_some("interrupt_prompt")? {
                Some(n) => Some(n.text()?),
                None => None,
            },
            interrupt_char: match p.get("interrupt_char")? {
                Some(n) => Some(n.text_or_empty()?),
                None => None,
            },
            interrupt_ctrl_list: match p.get("interrupt_ctrl_list")? {
                Some(n) => Some(n.text_list()?),
                None => None,
            },
            needs_interrupt: match p.get_some("needs_interrupt")? {
                Some(n) => n.boolean()?,
                None => true,
            },
        },
        commands,
    })
}

fn qemu_method(node: &Node<'_>) -> Result<QemuMethod, Error> {
    let p = node.require("parameters")?;
    let text_map = |key: &str| -> Result<BTreeMap<String, String>, Error> {
        let mut map = BTreeMap::new();
        if let Some(n) = p.get(key)? {
            for (k, v) in n.entries()? {
                map.insert(k, v.text_or_empty()?);
            }
        }
        Ok(map)
    };
    Ok(QemuMethod {
        command: p.require("command")?.text()?,
        options: match p.get("options")? {
            Some(n) => n.text_list()?,
            None => Vec::new(),
        },
        extra: match p.get("extra")? {
            Some(n) => n.commands()?,
            None => Vec::new(),
        },
        boot_options: text_map("boot_options")?,
        append: text_map("append")?,
    })
}

fn timeouts(node: &Node<'_>) -> Result<Timeouts, Error> {
    let map = |key: &str| -> Result<BTreeMap<String, Duration>, Error> {
        let mut out = BTreeMap::new();
        if let Some(n) = node.get(key)? {
            for (name, t) in n.entries()? {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                    return Err(t.error("action names are lower-case letters and dashes"));
                }
                out.insert(name, t.timeout()?);
            }
        }
        Ok(out)
    };
    Ok(Timeouts {
        actions: map("actions")?,
        connections: map("connections")?,
    })
}

fn optional_text(node: &Node<'_>, key: &str) -> Result<Option<String>, Error> {
    match node.get_some(key)? {
        Some(n) => Ok(Some(n.text()?)),
        None => Ok(None),
    }
}

fn keys_of(node: Option<Node<'_>>) -> Result<BTreeSet<String>, Error> {
    Ok(match node {
        Some(n) => n.keys()?.into_iter().collect(),
        None => BTreeSet::new(),
    })
}

fn info_list(node: Option<Node<'_>>) -> Result<Vec<InfoEntry>, Error> {
    match node {
        Some(n) => n.items()?.iter().map(info_entry).collect(),
        None => Ok(Vec::new()),
    }
}

fn info_entry(node: &Node<'_>) -> Result<InfoEntry, Error> {
    let mut entry = BTreeMap::new();
    for (key, value) in node.entries()? {
        let text = match value.text_or_empty() {
            Ok(text) => text,
            Err(_) => value.json_text()?,
        };
        entry.insert(key, text);
    }
    Ok(entry)
}
