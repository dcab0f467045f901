//! Typed `boot:` blocks. U-Boot, QEMU and minimal are typed in full (lavabox runs them); every
//! other `method:` LAVA 2023.01 knows is validated and kept as written.

use super::deploy::names;
use super::{flag, string, string_list, strings};
use crate::jobdef::yaml::Node;
use std::fmt;

names!(
    /// Every boot `method:` LAVA 2023.01 validates.
    BootMethod {
        /// `barebox`.
        Barebox = "barebox",
        /// `bootloader`.
        Bootloader = "bootloader",
        /// `cmsis-dap`.
        CmsisDap = "cmsis-dap",
        /// `depthcharge`.
        Depthcharge = "depthcharge",
        /// `dfu`.
        Dfu = "dfu",
        /// `docker`.
        Docker = "docker",
        /// `fastboot`.
        Fastboot = "fastboot",
        /// `fvp`.
        Fvp = "fvp",
        /// `gdb`.
        Gdb = "gdb",
        /// `grub`.
        Grub = "grub",
        /// `grub-efi`.
        GrubEfi = "grub-efi",
        /// `ipxe`.
        Ipxe = "ipxe",
        /// `jlink`.
        Jlink = "jlink",
        /// `kexec`.
        Kexec = "kexec",
        /// `lxc`.
        Lxc = "lxc",
        /// `minimal`.
        Minimal = "minimal",
        /// `monitor`.
        Monitor = "monitor",
        /// `musca`.
        Musca = "musca",
        /// `new_connection`.
        NewConnection = "new_connection",
        /// `openocd`.
        Openocd = "openocd",
        /// `pyocd`.
        Pyocd = "pyocd",
        /// `qemu`.
        Qemu = "qemu",
        /// `qemu-iso`.
        QemuIso = "qemu-iso",
        /// `qemu-nfs`.
        QemuNfs = "qemu-nfs",
        /// `recovery`.
        Recovery = "recovery",
        /// `schroot`.
        Schroot = "schroot",
        /// `ssh`.
        Ssh = "ssh",
        /// `u-boot`.
        UBoot = "u-boot",
        /// `uefi`.
        Uefi = "uefi",
        /// `uefi-menu`.
        UefiMenu = "uefi-menu",
        /// `uuu`.
        Uuu = "uuu",
    }
);

/// `auto_login:` log in on the serial console after boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoLogin {
    /// Text that asks for the user name (never empty).
    pub login_prompt: String,
    /// User name to type.
    pub username: String,
    /// Password prompt and password, when a password is needed.
    pub password: Option<Password>,
    /// Commands to run right after logging in.
    pub login_commands: Vec<String>,
}

/// A password prompt and its answer (they come together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Password {
    /// Text that asks for the password.
    pub prompt: String,
    /// The password.
    pub password: String,
}

impl AutoLogin {
    fn from_node(node: &Node) -> Option<AutoLogin> {
        Some(AutoLogin {
            login_prompt: string(node, "login_prompt")?,
            username: string(node, "username")?,
            password: match (string(node, "password_prompt"), string(node, "password")) {
                (Some(prompt), Some(password)) => Some(Password { prompt, password }),
                _ => None,
            },
            login_commands: strings(node, "login_commands"),
        })
    }
}

/// `transfer_overlay:` fetch the overlay over the network from the booted system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOverlay {
    /// e.g. `wget -S --progress=dot:giga`.
    pub download_command: String,
    /// e.g. `tar -C / -xzf`.
    pub unpack_command: String,
    /// e.g. `nfs`.
    pub transfer_method: Option<String>,
}

impl TransferOverlay {
    fn from_node(node: &Node) -> Option<TransferOverlay> {
        Some(TransferOverlay {
            download_command: string(node, "download_command")?,
            unpack_command: string(node, "unpack_command")?,
            transfer_method: string(node, "transfer_method"),
        })
    }
}

/// What every shell-reaching boot shares: prompts, login, overlay transfer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Login {
    /// Shell prompts to wait for (a single string is a one-element list).
    pub prompts: Vec<String>,
    /// Automatic login.
    pub auto_login: Option<AutoLogin>,
    /// Overlay transfer.
    pub transfer_overlay: Option<TransferOverlay>,
}

impl Login {
    fn from_node(node: &Node) -> Login {
        Login {
            prompts: strings(node, "prompts"),
            auto_login: node.get("auto_login").and_then(AutoLogin::from_node),
            transfer_overlay: node
                .get("transfer_overlay")
                .and_then(TransferOverlay::from_node),
        }
    }
}

/// U-Boot `commands:`: a command set of the device type, or literal commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootCommands {
    /// A named set from the device dictionary, e.g. `ramdisk`, `nfs`.
    Named(String),
    /// Commands typed as written.
    Literal(Vec<String>),
}

/// `boot: {method: u-boot}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootBoot {
    /// What to type at the U-Boot prompt.
    pub commands: BootCommands,
    /// Prompts, login, overlay transfer.
    pub login: Login,
    /// Boot through a generated boot script.
    pub use_bootscript: bool,
}

/// `boot: {method: qemu}`.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuBoot {
    /// `media: tmpfs`.
    pub media_tmpfs: bool,
    /// Prompts, login, overlay transfer.
    pub login: Login,
    /// Run QEMU from a docker image, as written.
    pub docker: Option<Node>,
}

/// `boot: {method: minimal}`: power on and wait, no bootloader interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinimalBoot {
    /// Prompts, login, overlay transfer.
    pub login: Login,
    /// Run the device's `pre_power_command` first.
    pub pre_power_command: bool,
    /// Run the device's `pre_os_command` first.
    pub pre_os_command: bool,
    /// Power-cycle the device (LAVA's default is true).
    pub reset: bool,
}

/// A typed `boot:` block.
#[derive(Debug, Clone, PartialEq)]
pub enum Boot {
    /// `method: u-boot`.
    UBoot(UBootBoot),
    /// `method: qemu`.
    Qemu(QemuBoot),
    /// `method: minimal`.
    Minimal(MinimalBoot),
    /// Any other valid method; parameters as written.
    Other {
        /// Which.
        method: BootMethod,
        /// The block as written.
        params: Node,
    },
}

impl Boot {
    /// The `method:` value.
    pub fn method(&self) -> BootMethod {
        match self {
            Boot::UBoot(_) => BootMethod::UBoot,
            Boot::Qemu(_) => BootMethod::Qemu,
            Boot::Minimal(_) => BootMethod::Minimal,
            Boot::Other { method, .. } => *method,
        }
    }

    pub(crate) fn from_node(method: BootMethod, node: &Node) -> Option<Boot> {
        Some(match method {
            BootMethod::UBoot => {
                let commands = node.get("commands")?;
                Boot::UBoot(UBootBoot {
                    commands: match commands.as_str() {
                        Some(name) => BootCommands::Named(name.to_owned()),
                        None => BootCommands::Literal(string_list(commands)),
                    },
                    login: Login::from_node(node),
                    use_bootscript: flag(node, "use_bootscript"),
                })
            }
            BootMethod::Qemu => Boot::Qemu(QemuBoot {
                media_tmpfs: node.get("media").and_then(Node::as_str) == Some("tmpfs"),
                login: Login::from_node(node),
                docker: node.get("docker").cloned(),
            }),
            BootMethod::Minimal => Boot::Minimal(MinimalBoot {
                login: Login::from_node(node),
                pre_power_command: flag(node, "pre_power_command"),
                pre_os_command: flag(node, "pre_os_command"),
                reset: node.get("reset").and_then(Node::as_bool).unwrap_or(true),
            }),
            other => Boot::Other {
                method: other,
                params: node.clone(),
            },
        })
    }
}
