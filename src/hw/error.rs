//! The hardware boundary's one error type, and what kind of failure each variant is.

use std::path::PathBuf;

/// Errors at the hardware boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command could not be started.
    #[error("cannot start '{command}'")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command ran longer than allowed and was killed.
    #[error("'{command}' timed out after {seconds} seconds")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        seconds: u64,
    },
    /// The command exited with a failure status.
    #[error("'{command}' failed with exit code {code:?}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit code (`None` when killed by a signal).
        code: Option<i32>,
        /// What it printed.
        output: String,
    },
    /// The serial device could not be opened.
    #[error("cannot open serial device {path}; check the cable and permissions")]
    Serial {
        /// The device path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: mio_serial::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for '{command}' failed")]
    Wait {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The device's configuration does not describe a usable board part.
    #[error("{0}")]
    Config(String),
    /// The board has no power control at all (no power or reset commands).
    #[error("the device has no power or reset commands")]
    NoPowerControl,
    /// The board has no console (no `connection_command`).
    #[error("the device has no connection_command")]
    NoConsole,
    /// The process behind a one-shot console (an emulator's stdio) is gone.
    #[error("the process behind the console exited")]
    ConsoleGone,
}

/// What kind of failure an [`Error`] is, for callers that decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The part is missing now but may come back (a USB serial adapter powered by the board).
    Gone,
    /// An operation ran out of time.
    Timeout,
    /// An operation ran and failed, or could not start.
    Failed,
    /// The device's configuration is wrong or incomplete: retrying cannot help.
    Config,
}

impl Error {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Serial { .. } => ErrorKind::Gone,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Spawn { .. } | Error::Failed { .. } | Error::Wait { .. } => ErrorKind::Failed,
            Error::ConsoleGone => ErrorKind::Failed,
            Error::Config(_) | Error::NoPowerControl | Error::NoConsole => ErrorKind::Config,
        }
    }

    /// Whether opening the console again later may succeed: a serial device node vanishes
    /// while a board powering its USB adapter is off and comes back with it. A process that
    /// cannot be started, or that exited behind a one-shot console, stays gone.
    pub fn may_come_back(&self) -> bool {
        self.kind() == ErrorKind::Gone
    }

    /// What the failing command printed, if it got that far.
    pub fn output(&self) -> Option<&str> {
        match self {
            Error::Failed { output, .. } => Some(output),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_vanished_serial_device_may_come_back() {
        let serial = Error::Serial {
            path: "/dev/ttyUSB0".into(),
            source: mio_serial::Error::new(mio_serial::ErrorKind::NoDevice, "gone"),
        };
        assert!(serial.may_come_back());
        assert!(!Error::ConsoleGone.may_come_back());
        assert_eq!(Error::NoConsole.kind(), ErrorKind::Config);
        let timeout = Error::Timeout {
            command: "x".into(),
            seconds: 1,
        };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
    }
}
