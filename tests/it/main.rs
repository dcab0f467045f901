//! Integration tests: one binary, one module per interface.

mod cli;
mod devicetype;
mod jobs;
mod lab;
mod validate;
