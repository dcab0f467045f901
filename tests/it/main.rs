//! Integration tests: one binary, one module per interface.

#[macro_use]
mod common;
mod abuse;
mod appliance;
mod cli;
mod clients;
mod devicetype;
mod dispatch;
mod events;
mod health_check;
mod job_path;
mod jobs;
mod lab;
mod lavacli;
mod lxc;
mod notify;
mod power;
mod rest;
mod rest_write;
mod testdef;
mod validate;
mod webui;
mod xmlrpc;
