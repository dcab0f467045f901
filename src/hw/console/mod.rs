//! Board consoles: the byte stream a job talks to ([`ConsoleIo`]), the factories that open it
//! ([`ConsoleFactory`]) and the typed description a dictionary's `connection_command` is parsed
//! into once ([`ConsoleSpec`]), which picks the backend.
//!
//! Backends: [`serial::SerialConsole`] (a tty opened by mio-serial), [`child::CommandConsole`]
//! (a `connection_command` child process with piped stdio, such as `telnet host port`) and
//! [`emulator`] (an emulator whose stdio is the console, owned with its process). Every read
//! side is an [`on_demand::OnDemandFd`], in the runtime's epoll only while a read waits.

pub mod child;
pub mod emulator;
pub mod on_demand;
pub mod serial;

use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{BoxFuture, Error};

/// A console byte stream.
pub trait ConsoleIo: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> ConsoleIo for T {}

/// Opens a board's console; called again to re-attach when the console went away.
pub trait ConsoleFactory: Send + Sync + std::fmt::Debug {
    /// A fresh connection to the console.
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn ConsoleIo>, Error>>;
}

/// The serial line speed when a `/dev/…` console names none (LAVA's usual 115200 8N1).
pub const DEFAULT_BAUD: u32 = 115_200;

/// What a dictionary's `connection_command` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleSpec {
    /// `/dev/ttyUSB0 [BAUD]`: a local serial device, opened natively.
    Serial {
        /// The tty.
        path: PathBuf,
        /// Its speed.
        baud: u32,
    },
    /// Anything else: a command whose stdin and stdout are the console.
    Command(String),
}

/// Why a `connection_command` names no usable console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The command is empty.
    #[error("connection_command is empty")]
    Empty,
    /// `/dev/… WORD` where WORD is not a baud rate.
    #[error("connection_command '{command}': '{word}' is not a baud rate")]
    Baud {
        /// The whole command.
        command: String,
        /// The word after the device.
        word: String,
    },
    /// More than a device and a baud rate.
    #[error(
        "connection_command '{command}': a serial device takes only a baud rate, not '{extra}'"
    )]
    Extra {
        /// The whole command.
        command: String,
        /// The first surplus word.
        extra: String,
    },
}

impl FromStr for ConsoleSpec {
    type Err = SpecError;

    fn from_str(command: &str) -> Result<ConsoleSpec, SpecError> {
        let mut words = command.split_whitespace();
        let Some(first) = words.next() else {
            return Err(SpecError::Empty);
        };
        if !first.starts_with("/dev/") {
            return Ok(ConsoleSpec::Command(command.to_owned()));
        }
        let baud = match words.next() {
            None => DEFAULT_BAUD,
            Some(word) => word.parse().map_err(|_| SpecError::Baud {
                command: command.to_owned(),
                word: word.to_owned(),
            })?,
        };
        if let Some(extra) = words.next() {
            return Err(SpecError::Extra {
                command: command.to_owned(),
                extra: extra.to_owned(),
            });
        }
        Ok(ConsoleSpec::Serial {
            path: PathBuf::from(first),
            baud,
        })
    }
}

impl ConsoleSpec {
    /// The backend that opens this console; commands run in `dir` when given.
    pub fn factory(&self, dir: Option<PathBuf>) -> Box<dyn ConsoleFactory> {
        match self {
            ConsoleSpec::Serial { path, baud } => Box::new(serial::SerialConsole {
                path: path.clone(),
                baud: *baud,
            }),
            ConsoleSpec::Command(command) => Box::new(child::CommandConsole {
                command: command.clone(),
                dir,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn spec(s: &str) -> Result<ConsoleSpec, String> {
        s.parse::<ConsoleSpec>().map_err(|e| e.to_string())
    }

    #[test]
    fn connection_commands_parse_into_backends() {
        assert_eq!(
            spec("/dev/ttyUSB0 9600"),
            Ok(ConsoleSpec::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 9600
            })
        );
        assert_eq!(
            spec("/dev/ttyACM1"),
            Ok(ConsoleSpec::Serial {
                path: "/dev/ttyACM1".into(),
                baud: DEFAULT_BAUD
            })
        );
        assert_eq!(
            spec("telnet localhost 7000"),
            Ok(ConsoleSpec::Command("telnet localhost 7000".into()))
        );
        assert_eq!(
            spec("/dev/ttyUSB0 fast"),
            Err("connection_command '/dev/ttyUSB0 fast': 'fast' is not a baud rate".into())
        );
        assert_eq!(
            spec("/dev/ttyUSB0 115200 8N1"),
            Err(
                "connection_command '/dev/ttyUSB0 115200 8N1': a serial device takes only a baud rate, not '8N1'"
                    .into()
            )
        );
        assert_eq!(spec("  "), Err("connection_command is empty".into()));
    }

    #[test]
    fn specs_pick_their_backend() {
        let f = spec("/dev/ttyUSB0 9600").unwrap().factory(None);
        assert!(format!("{f:?}").contains("SerialConsole"));
        let f = spec("telnet localhost 7000").unwrap().factory(None);
        assert!(format!("{f:?}").contains("CommandConsole"));
    }

    #[tokio::test]
    async fn command_console_pipes_stdio() {
        let f = spec("cat").unwrap().factory(None);
        let mut c = f.open().await.unwrap();
        c.write_all(b"ping\n").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping\n");
    }
}
