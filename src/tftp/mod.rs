//! Built-in read-only TFTP server with per-job roots.
//!
//! Boards that network-boot (U-Boot's `tftp`, PXE) fetch kernels, ramdisks and device
//! trees from here. LAVA's dispatcher stages each job's files in `<tftp_root>/<job-id>/`
//! and the bootloader asks for `<job-id>/zImage`, so one [`Server`] serves one root
//! directory and every job lives below it.
//!
//! What it implements: RFC 1350 reads (octet and netascii), the option extension of
//! RFC 2347 with `blksize` (RFC 2348), `tsize` and `timeout` (RFC 2349), block-number
//! rollover for files over 65535 blocks, retransmission with bounded retries, and one
//! ephemeral socket per transfer as the protocol requires.
//! What it refuses: writes (error 2), paths leaving the root by `..`, by an absolute path
//! or through a symlink (error 2), and missing files (error 1).
//!
//! Layout: [`packet`] is the pure wire codec; `server` owns sockets and files. The server
//! never blocks the runtime: file access goes through `tokio::fs`.
//! Like mini-redis, the caller binds ([`Server::bind`]) and owns shutdown
//! ([`Server::run`] takes the shutdown future).

pub mod packet;
mod server;
#[cfg(test)]
mod tests;

pub use server::Server;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors that stop the TFTP server itself (one failing transfer never does).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("binding TFTP server to {addr} failed (port 69 needs root or CAP_NET_BIND_SERVICE)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The root directory is missing or not a directory.
    #[error("TFTP root {path} is not a usable directory")]
    Root {
        /// The root given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The listening socket failed repeatedly.
    #[error("TFTP server socket failed")]
    Socket(#[source] std::io::Error),
}

/// Result of the TFTP server's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
