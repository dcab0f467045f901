//! Hardware boundary: what the dispatcher does to a board, behind small traits, with their
//! real backends and fakes.
//!
//! - [`Board`]: one device's power ([`power::Power`]), console ([`ConsoleFactory`]), command
//!   runner ([`CommandRunner`]) and emulator; the dispatcher sees nothing else of a board.
//! - [`BoardFactory`]: makes a device's [`Board`] from its rendered [`DeviceConfig`].
//!   [`Boards`] is the real one; [`fake::FakeBoards`] builds boards from fakes.
//! - [`command`]: how board processes start (own process group, parent-death signal) and
//!   [`ShellRunner`], LAVA's power, reset and user commands through `sh -c`.
//! - [`power`]: [`power::Power`] and LAVA's command backend [`power::command::CommandPower`].
//! - [`console`]: [`ConsoleSpec`] (a `connection_command` parsed once), the serial and
//!   child-process backends, and [`console::emulator`] (QEMU's stdio, with its process).
//! - [`fake`]: `FakeConsole`, `FakeRunner`, `FakePower`, `FakeLauncher`, `FakeBoards`.
//!
//! Architecture invariants: only this module spawns board processes or touches `/dev`, and
//! only this module decides which backend drives a board.

pub mod command;
pub mod console;
mod error;
pub mod fake;
pub mod lxc;
pub mod power;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::devicetype::DeviceConfig;

pub use self::command::{CommandOutput, CommandRunner, ShellRunner};
pub use self::console::child::{ChildConsole, CommandConsole};
pub use self::console::emulator::{Emulator, Launcher, OnceConsole, ProcessLauncher};
pub use self::console::on_demand;
pub use self::console::serial::SerialConsole;
pub use self::console::{ConsoleFactory, ConsoleIo, ConsoleSpec};
pub use self::error::{Error, ErrorKind};
pub use self::power::{Cycle, Power, PowerState, Transcript};

/// A boxed future, so the traits stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A board's console: how it is described (for the job log) and its factory.
#[derive(Debug, Clone)]
pub struct BoardConsole {
    /// What opens it, e.g. the `connection_command`.
    pub describe: String,
    /// Opens it.
    pub factory: Arc<dyn ConsoleFactory>,
}

/// One device's hardware: power, console, commands and emulator.
#[derive(Debug)]
pub struct Board {
    power: Arc<dyn Power>,
    console: Option<BoardConsole>,
    commands: Arc<dyn CommandRunner>,
    launcher: Arc<dyn Launcher>,
    emulator: Option<Emulator>,
    containers: Arc<dyn lxc::Containers>,
}

impl Board {
    /// A board of these parts.
    pub fn new(
        power: Arc<dyn Power>,
        console: Option<BoardConsole>,
        commands: Arc<dyn CommandRunner>,
        launcher: Arc<dyn Launcher>,
    ) -> Board {
        Board {
            power,
            console,
            commands,
            launcher,
            emulator: None,
            containers: Arc::new(lxc::LxcTools::default()),
        }
    }

    /// The same board with its LXC containers (the `lava-lxc` protocol) driven by
    /// `containers` instead of the LXC tools.
    pub fn with_containers(mut self, containers: Arc<dyn lxc::Containers>) -> Board {
        self.containers = containers;
        self
    }

    /// The containers jobs on this board create beside it.
    pub fn containers(&self) -> Arc<dyn lxc::Containers> {
        Arc::clone(&self.containers)
    }

    /// Its power.
    pub fn power(&self) -> &dyn Power {
        &*self.power
    }

    /// Its console ([`Error::NoConsole`] when the dictionary names none).
    pub fn console(&self) -> Result<&BoardConsole, Error> {
        self.console.as_ref().ok_or(Error::NoConsole)
    }

    /// Runs the dictionary's user commands.
    pub fn commands(&self) -> &dyn CommandRunner {
        &*self.commands
    }

    /// Starts the emulator `command` (stopping one this board already runs) and returns its
    /// console.
    pub async fn start_emulator(
        &mut self,
        command: &str,
    ) -> Result<Arc<dyn ConsoleFactory>, Error> {
        self.stop_emulator().await;
        let emulator = self.launcher.launch(command)?;
        let console = emulator.console();
        self.emulator = Some(emulator);
        Ok(console)
    }

    /// Whether the board runs an emulator started by [`Board::start_emulator`].
    pub fn runs_emulator(&self) -> bool {
        self.emulator.is_some()
    }

    /// Stops the board's emulator, if it runs one; whether it did.
    pub async fn stop_emulator(&mut self) -> bool {
        match self.emulator.take() {
            Some(emulator) => {
                emulator.stop().await;
                true
            }
            None => false,
        }
    }
}

/// Makes the [`Board`] of a device.
pub trait BoardFactory: Send + Sync + std::fmt::Debug {
    /// The board `device` describes; [`Error::Config`] when its configuration names no
    /// usable backend.
    fn board(&self, device: &DeviceConfig) -> Result<Board, Error>;
}

/// LAVA's power backend for `device`: its command lists, run by `runner`, the board kept off
/// at least `min_off` in a cycle that switches it off and on.
pub fn command_power(
    device: &DeviceConfig,
    runner: Arc<dyn CommandRunner>,
    min_off: Duration,
) -> power::command::CommandPower {
    power::command::CommandPower {
        runner,
        on: device.commands.power_on.clone(),
        off: device.commands.power_off.clone(),
        hard_reset: device.commands.hard_reset.clone(),
        min_off,
    }
}

/// The console `device`'s `connection_command` describes, parsed into its backend.
pub fn device_console(device: &DeviceConfig) -> Result<Option<BoardConsole>, Error> {
    let Some(command) = device.commands.primary_connect() else {
        return Ok(None);
    };
    let spec: ConsoleSpec = command
        .parse()
        .map_err(|e: console::SpecError| Error::Config(e.to_string()))?;
    Ok(Some(BoardConsole {
        describe: command.to_owned(),
        factory: Arc::from(spec.factory(None)),
    }))
}

/// The real [`BoardFactory`]: dictionary commands through `sh`, consoles from the
/// `connection_command`, emulators as child processes; what the dictionaries do not say comes
/// from the appliance's `[hw]` configuration ([`Boards::from_config`]).
#[derive(Debug, Clone, Default)]
pub struct Boards {
    /// Runs power and user commands.
    pub runner: ShellRunner,
    /// The shortest time a board stays off in a power cycle (`[hw] min_off_seconds`).
    pub min_off: Duration,
    /// Where native power backends look (`[hw] sysfs_root`, `pdudaemon_url`).
    pub env: power::channels::Env,
}

impl Boards {
    /// The boards the appliance's configuration describes.
    pub fn from_config(config: &crate::config::HwConfig) -> Boards {
        Boards {
            runner: ShellRunner::default(),
            min_off: config.min_off,
            env: power_env(config),
        }
    }

    /// The power of `device`: its `lavabox_power` backend (one channel per line, owned by
    /// the process) when the dictionary chooses one, else LAVA's power commands.
    pub fn power(&self, device: &DeviceConfig) -> Result<Arc<dyn Power>, Error> {
        let default_min_off = if self.min_off.is_zero() {
            power::relay::Settings::default().min_off
        } else {
            self.min_off
        };
        match power::spec::parse(&device.raw, default_min_off).map_err(Error::Config)? {
            Some(spec) => power::channels::CHANNELS.power(&spec, &self.env),
            None => {
                let runner: Arc<dyn CommandRunner> = Arc::new(self.runner.clone());
                Ok(Arc::new(command_power(device, runner, self.min_off)))
            }
        }
    }
}

/// The native power backends' view of the `[hw]` configuration.
pub fn power_env(config: &crate::config::HwConfig) -> power::channels::Env {
    let mut env = power::channels::Env::default();
    if let Some(root) = &config.sysfs_root {
        env.sysfs = root.clone();
    }
    if let Some(url) = &config.pdudaemon_url {
        env.pdu_url = url.clone();
    }
    env
}

/// The add-time check of a dictionary's native power (`lavabox_power`): its variables, and
/// that the line, bus, hub port or URL they name exists on this machine. `Ok` carries
/// warnings to pass on (a Raspberry Pi's ganged USB ports); `Err` the reason it is refused.
pub fn check_power(
    device: &DeviceConfig,
    config: &crate::config::HwConfig,
) -> Result<Vec<String>, String> {
    match power::spec::parse(&device.raw, power::relay::Settings::default().min_off)? {
        Some(spec) => power::channels::check(&spec, &power_env(config)),
        None => Ok(Vec::new()),
    }
}

/// Writes every open power channel's safe state (the appliance is stopping).
pub fn power_shutdown() {
    power::channels::CHANNELS.shutdown();
}

impl BoardFactory for Boards {
    fn board(&self, device: &DeviceConfig) -> Result<Board, Error> {
        let runner: Arc<dyn CommandRunner> = Arc::new(self.runner.clone());
        Ok(Board::new(
            self.power(device)?,
            device_console(device)?,
            runner,
            Arc::new(ProcessLauncher),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devicetype::Templates;

    fn device(dictionary: &str) -> DeviceConfig {
        Templates::builtin()
            .render(dictionary, &serde_json::Map::new())
            .unwrap()
            .config
    }

    #[test]
    fn the_appliance_configuration_sets_the_minimum_off_time() {
        let dev = device(
            "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set power_on_command = 'on' %}\n{% set power_off_command = 'off' %}\n",
        );
        let hw = crate::config::HwConfig {
            min_off: Duration::from_secs(3),
            ..Default::default()
        };
        let board = Boards::from_config(&hw).board(&dev).unwrap();
        assert_eq!(board.power().min_off_time(), Duration::from_secs(3));
        let board = Boards::default().board(&dev).unwrap();
        assert_eq!(board.power().min_off_time(), Duration::ZERO);
    }

    #[test]
    fn the_factory_picks_the_console_backend_from_the_dictionary() {
        let serial = device(
            "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set connection_command = '/dev/ttyUSB0 9600' %}\n",
        );
        let board = Boards::default().board(&serial).unwrap();
        let console = board.console().unwrap();
        assert!(format!("{:?}", console.factory).contains("SerialConsole"));
        assert_eq!(console.describe, "/dev/ttyUSB0 9600");
        let bad = device(
            "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set connection_command = '/dev/ttyUSB0 fast' %}\n",
        );
        let err = Boards::default().board(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "connection_command '/dev/ttyUSB0 fast': 'fast' is not a baud rate"
        );
        let qemu = device("{% extends 'qemu.jinja2' %}\n");
        let board = Boards::default().board(&qemu).unwrap();
        assert!(matches!(board.console(), Err(Error::NoConsole)));
    }
}
