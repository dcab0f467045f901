//! `lavabox validate FILE...`: one line per file, exit 0 only if every file is valid.

use std::path::PathBuf;
use std::process::ExitCode;

/// PLACEHOLDER for the integration contract; the job-definition work replaces the body.
pub fn run(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let _ = files;
    anyhow::bail!("validation is not built yet")
}
