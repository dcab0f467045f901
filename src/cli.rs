//! Command-line entry point (placeholder replaced by the CLI work).

use std::process::ExitCode;

/// Runs the command line.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
