//! Integration tests: one binary, one module per interface.

mod cli;
mod devicetype;
mod dispatch;
mod jobs;
mod lab;
mod lavacli;
mod rest;
mod validate;
mod xmlrpc;
