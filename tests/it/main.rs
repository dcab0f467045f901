//! Integration tests: one binary, one module per interface.

mod cli;
mod devicetype;
mod events;
mod lab;
mod notify;
mod validate;
