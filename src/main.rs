//! The `lavabox` binary: parses the command line and hands over to [`lavabox::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    lavabox::cli::main()
}
