//! lavabox: a LAVA-compatible board-farm controller that runs the whole stack on one small box.
//!
//! See `ARCHITECTURE.md` at the repository root for the module map and the invariants.

pub mod access;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod devicetype;
pub mod dispatcher;
pub mod events;
pub mod exitcode;
pub mod hw;
pub mod jobdef;
pub mod model;
pub mod net;
pub mod notify;
pub mod pdudaemon;
pub mod pipeline;
pub mod pyfmt;
pub mod scheduler;
pub mod sdnotify;
pub mod store;
pub mod submit;
pub mod testdef;
pub mod testshell;
pub mod tftp;
pub mod tls;
pub mod web;
