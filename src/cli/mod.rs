//! Command-line interface: `lavabox serve`, `validate` and the admin commands.
//!
//! Errors are printed once, with their whole context chain, and give a non-zero exit code.
//! One file per command family: [`serve`] (the daemon), `admin` (users, groups, tokens,
//! device types, devices), `query` (saved result queries) and `validate`.

mod admin;
pub mod describe;
mod query;
pub mod serve;
mod table;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
pub use query::{QueryAdd, QueryCommand};

/// The lavabox command line.
#[derive(Debug, Parser)]
#[command(
    name = "lavabox",
    version,
    about = "A LAVA-compatible board-farm controller"
)]
pub struct Cli {
    /// Configuration file (default: /etc/lavabox/lavabox.toml if it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Data directory (database, job logs); overrides the configuration file.
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance until SIGTERM or Ctrl-C.
    Serve {
        /// HTTP listen address, overriding the configuration file.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
    },
    /// Validate LAVA job definitions; prints one line per file.
    Validate {
        /// Refuse unknown keys everywhere, as LAVA's `strict` validation does (default:
        /// lenient, as at submission).
        #[arg(long)]
        strict: bool,
        /// Job definition files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Build the pipeline of jobs for a device without running anything (LAVA's pipeline
    /// description); exits non-zero naming the action the device cannot run.
    Describe {
        /// Job definition files (YAML).
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
        /// A device of the data directory.
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "dictionary",
            conflicts_with = "dictionary"
        )]
        device: Option<String>,
        /// A device dictionary file instead of a stored device.
        #[arg(long, value_name = "FILE")]
        dictionary: Option<PathBuf>,
        /// Device-type template directories looked up first (e.g. LAVA's
        /// /usr/share/lava-server/device-types).
        #[arg(long, value_name = "DIR")]
        templates: Vec<PathBuf>,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage device types.
    #[command(subcommand, name = "device-type")]
    DeviceType(DeviceTypeCommand),
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manage saved result queries (run by results.run_query and notify's compare).
    #[command(subcommand)]
    Query(QueryCommand),
}

/// `lavabox user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        /// Login name.
        name: String,
        /// Make the user a superuser.
        #[arg(long)]
        superuser: bool,
        /// E-mail address.
        #[arg(long, value_name = "E")]
        email: Option<String>,
    },
    /// List users.
    List,
    /// Set a user's web UI password, read from the first line of stdin (stored only as an
    /// argon2id hash; the user's browser sessions end).
    Passwd {
        /// Login name.
        name: String,
    },
}

/// `lavabox group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Add {
        /// Group name.
        name: String,
    },
    /// Add a user to a group.
    AddMember {
        /// Group name.
        group: String,
        /// Username.
        user: String,
    },
    /// List groups and their members.
    List,
}

/// `lavabox token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user; prints only the secret, once.
    Add {
        /// Username.
        name: String,
        /// What the token is for.
        #[arg(long, value_name = "D", default_value = "")]
        description: String,
    },
    /// List a user's tokens (never their secrets).
    List {
        /// Username.
        name: String,
    },
    /// Store a secret the user's notification callbacks send when their `token:` is NAME
    /// (LAVA sends the named token's secret); the secret is read from the first line of
    /// standard input, so it never shows in the process list.
    SecretSet {
        /// Username.
        user: String,
        /// The name callbacks use in `token:`.
        name: String,
    },
    /// List the names of a user's callback secrets (never the secrets).
    SecretList {
        /// Username.
        user: String,
    },
    /// Remove a user's callback secret.
    SecretRemove {
        /// Username.
        user: String,
        /// Its name.
        name: String,
    },
}

/// `lavabox device-type ...`
#[derive(Debug, Subcommand)]
pub enum DeviceTypeCommand {
    /// Create a device type.
    Add(DeviceTypeAdd),
    /// List device types.
    List,
}

/// Arguments of `device-type add`.
#[derive(Debug, Args)]
pub struct DeviceTypeAdd {
    /// Name, e.g. beaglebone-black.
    pub name: String,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Run a health check every N hours or jobs.
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub health_frequency: u32,
    /// Unit of --health-frequency: hours or jobs.
    #[arg(long, value_name = "UNIT", default_value = "hours")]
    pub health_denominator: String,
    /// Never run health checks on devices of this type.
    #[arg(long)]
    pub no_health_check: bool,
}

/// `lavabox device ...`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Create a device of an existing type from a device dictionary.
    Add(DeviceAdd),
    /// List devices.
    List {
        /// Include retired devices.
        #[arg(long)]
        all: bool,
    },
    /// Set a device's health (Good, Unknown, Looping, Bad, Maintenance, Retired).
    SetHealth {
        /// Hostname.
        name: String,
        /// New health.
        health: String,
    },
}

/// Arguments of `device add`.
#[derive(Debug, Args)]
pub struct DeviceAdd {
    /// Hostname.
    pub name: String,
    /// Device type (must exist).
    #[arg(long = "type", value_name = "TYPE")]
    pub device_type: String,
    /// Device dictionary file (Jinja2).
    #[arg(long, value_name = "FILE")]
    pub dictionary: PathBuf,
    /// Worker name.
    #[arg(long)]
    pub worker: Option<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Initial health (default Unknown, so a health check runs first).
    #[arg(long)]
    pub health: Option<String>,
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line (journal and console), and an exit code systemd's
            // RestartPreventExitStatus knows (crate::exitcode).
            eprintln!("{}", crate::exitcode::error_line(&err));
            ExitCode::from(crate::exitcode::Failure::of(&err).code())
        }
    }
}

/// Loads the configuration the global options point at.
fn load_config(
    cli_config: Option<&std::path::Path>,
    overrides: &Overrides,
) -> anyhow::Result<Config> {
    Config::load(cli_config, overrides).context("loading the configuration")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut overrides = Overrides {
        data_dir: cli.data,
        listen: None,
    };
    match cli.command {
        Command::Validate { strict, files } => validate::run(
            &files,
            if strict {
                crate::jobdef::Mode::Strict
            } else {
                crate::jobdef::Mode::Lenient
            },
        ),
        Command::Describe {
            jobs,
            device,
            dictionary,
            templates,
        } => {
            let config = load_config(cli.config.as_deref(), &overrides)?;
            let source = match (&device, &dictionary) {
                (Some(d), _) => describe::DeviceSource::Stored(d),
                (None, Some(f)) => describe::DeviceSource::Dictionary(f),
                (None, None) => anyhow::bail!("give --device NAME or --dictionary FILE"),
            };
            describe::run(&config, &jobs, source, &templates)
        }
        Command::Serve { listen } => {
            overrides.listen = listen;
            let config = load_config(cli.config.as_deref(), &overrides)?;
            serve::main(config)
        }
        command => {
            let config = load_config(cli.config.as_deref(), &overrides)?;
            admin::init_logging(&config);
            admin::run(&config, command)
        }
    }
}
