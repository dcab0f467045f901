//! socat joining two ptys linked under `/dev`: the USB serial adapter and the board behind it
//! that the dispatch tests and the console bench both need.
//!
//! The integration tests and the bench are separate crates, so each includes this file with
//! `#[path]` rather than through `tests/it/main.rs`.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// A socat whose links exist, and the rest of its `-d -d` log.
pub struct Socat {
    /// The process; it is killed when dropped.
    pub child: Child,
    /// What socat logs after its transfer loop started; dropping it closes the pipe.
    pub log: Lines<BufReader<ChildStderr>>,
}

/// The board's end of the pty pair whose console end is `console`.
pub fn board_path(console: &Path) -> PathBuf {
    PathBuf::from(format!("{}-board", console.display()))
}

/// Starts socat linking `console` and [`board_path`]`(console)`, and returns once it reports
/// its transfer loop, which it enters only after both links exist.
pub async fn start(console: &Path) -> std::io::Result<Socat> {
    let mut child = Command::new("socat")
        .arg("-d")
        .arg("-d")
        .arg(format!("pty,raw,echo=0,link={}", console.display()))
        .arg(format!(
            "pty,raw,echo=0,link={}",
            board_path(console).display()
        ))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = child.stderr.take().expect("socat's stderr is piped");
    let mut log = BufReader::new(stderr).lines();
    while let Some(line) = log.next_line().await? {
        if line.contains("starting data transfer loop") {
            return Ok(Socat { child, log });
        }
    }
    Err(std::io::Error::other(format!(
        "socat exited before linking {}",
        console.display()
    )))
}
