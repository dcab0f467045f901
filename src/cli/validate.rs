//! `lavabox validate [--strict] FILE...`: one line per file, exit 0 only if every file is
//! valid. `--strict` checks as LAVA's `strict` validation (unknown keys refused everywhere).
//!
//! A valid file prints `FILE: ok`; an invalid one prints one line per problem,
//! `FILE: error at PATH (line N): message (expected …)`. An unreadable file is reported the same
//! way and does not stop the others.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::jobdef;

/// Validates each file in `mode` and prints the outcome; the exit code is 0 only if all are
/// valid.
pub fn run(files: &[PathBuf], mode: jobdef::Mode) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut all_ok = true;
    for file in files {
        let name = file.display();
        let bytes = match read_limited(file) {
            Ok(bytes) => bytes,
            Err(err) => {
                all_ok = false;
                writeln!(
                    out,
                    "{name}: error at (file) (line 0): cannot read file: {err}"
                )?;
                continue;
            }
        };
        if bytes.len() > jobdef::MAX_JOB_SIZE {
            // Only the first bytes were read; say how big the file really is.
            all_ok = false;
            let size = std::fs::metadata(file).map_or(bytes.len() as u64, |m| m.len());
            writeln!(
                out,
                "{name}: error at (root) (line 1): job definition is too large: {size} bytes (at most {})",
                jobdef::MAX_JOB_SIZE
            )?;
            continue;
        }
        match jobdef::parse_mode(&bytes, mode) {
            Ok(_) => writeln!(out, "{name}: ok")?,
            Err(problems) => {
                all_ok = false;
                for problem in problems {
                    writeln!(out, "{name}: {problem}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads at most one byte more than the size limit, so a huge file is refused without being
/// read whole.
fn read_limited(file: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let handle = std::fs::File::open(file)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(jobdef::MAX_JOB_SIZE).unwrap_or(u64::MAX) + 1;
    handle.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}
