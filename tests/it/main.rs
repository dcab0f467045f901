//! Integration tests: one binary, one module per interface.

mod cli;
mod common;
mod devicetype;
mod dispatch;
mod events;
mod health_check;
mod jobs;
mod lab;
mod lavacli;
mod notify;
mod rest;
mod rest_write;
mod validate;
mod xmlrpc;
