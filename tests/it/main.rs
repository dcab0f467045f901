//! Integration tests: one binary, one module per interface.

mod cli;
mod devicetype;
mod dispatch;
mod lab;
mod lavacli;
mod rest;
mod validate;
mod xmlrpc;
