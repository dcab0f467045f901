//! Command-line interface: `lavabox serve`, `validate` and the admin commands.
//!
//! Errors are printed once, with their whole context chain, and give a non-zero exit code.

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The lavabox command line.
#[derive(Debug, Parser)]
#[command(
    name = "lavabox",
    version,
    about = "A LAVA-compatible board-farm controller"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate LAVA job definitions; prints one line per file.
    Validate {
        /// Job definition files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files } => validate::run(&files),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lavabox: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
