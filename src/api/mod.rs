//! The HTTP edge: LAVA's REST API and results export URLs (and, from the `xmlrpc` branch,
//! XML-RPC and the router composition).

pub mod rest;
pub mod results;
