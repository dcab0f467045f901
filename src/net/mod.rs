//! What every TCP listener of lavabox shares so that no client can hold the appliance: the
//! connection limits ([`limits`]: a cap on open connections that closes the longest-idle one
//! to admit a new one, a header-read and an idle timeout, an accept loop that survives
//! `EMFILE`, a bounded shutdown) and the HTTP server built on them ([`http`]).
//!
//! The API listener is the first user; the pdudaemon API, telnet consoles and the MultiNode
//! coordinator are meant to take their [`limits::Gate`] and [`limits::accept`] from here (a
//! raw-TCP protocol marks its connections busy and idle itself, as [`http`] does per request).

pub mod http;
pub mod limits;

pub use limits::{Gate, Limits};
