//! A local serial device as a console (8N1, no flow control, exclusive), opened by mio-serial.

use std::path::PathBuf;

use super::on_demand::OnDemandFd;
use super::{ConsoleFactory, ConsoleIo};
use crate::hw::{BoxFuture, Error};

/// [`ConsoleFactory`] for a local serial device.
#[derive(Debug, Clone)]
pub struct SerialConsole {
    /// The tty, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// Baud rate.
    pub baud: u32,
}

impl ConsoleFactory for SerialConsole {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn ConsoleIo>, Error>> {
        Box::pin(async move {
            let path = self.path.to_string_lossy().into_owned();
            // Opened non-blocking, 8N1, no flow control, exclusive (TIOCEXCL).
            let port = mio_serial::SerialStream::open(&mio_serial::new(path, self.baud)).map_err(
                |source| Error::Serial {
                    path: self.path.clone(),
                    source,
                },
            )?;
            Ok(Box::new(OnDemandFd::new(port)) as Box<dyn ConsoleIo>)
        })
    }
}
