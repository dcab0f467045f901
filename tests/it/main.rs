//! Integration tests: one binary, one module per interface.

mod cli;
mod devicetype;
mod lab;
mod rest;
mod validate;
