//! LAVA job definitions: submission YAML → validated, typed [`JobDefinition`] (pure, no I/O).
//!
//! [`parse_mode`] accepts exactly what LAVA 2023.01 accepts and runs: its job schemas
//! (`lava_common/schemas`, chosen per `deploy.to`, `boot.method` and test kind), the checks the
//! server makes at submission that need no database (priority range, notify recipients,
//! MultiNode roles, VLAN names, metadata values), the MultiNode split's own checks and the
//! dispatcher's early validation (repeat with failure_retry, reserved test names). It reports
//! every problem it finds, each with its YAML path, line and what was expected.
//!
//! The YAML is read the way LAVA reads it (PyYAML `safe_load`, YAML 1.1: `yes` is a boolean,
//! `2023-01-01` a date), with bounds on size ([`MAX_JOB_SIZE`]), nesting and alias expansion so
//! hostile input is refused quickly.
//!
//! Architecture invariant: this module does no I/O and knows nothing about the database, the
//! scheduler or devices; checks that need those (device type exists, user may submit, groups
//! and users exist, tags exist) belong to the caller.

pub mod action;
mod checks;
pub mod error;
pub mod multinode;
pub mod notify;
mod parse;
pub mod protocol;
mod schema;
pub mod timeout;
pub mod yaml;

use std::fmt;

use crate::model::Priority;

pub use action::{Action, ActionKind};
pub use error::{Problem, YamlPath};
pub use multinode::{SubJob, expand_multinode};
pub use notify::Notify;
pub use parse::{
    MAX_JOB_SIZE, parse, parse_mode, parse_str, parse_str_mode, validate_str_mode, validate_testdef,
};
pub use protocol::Protocols;
pub use schema::job::CONTEXT_VARIABLES;
pub use timeout::{Timeout, Timeouts};
pub use yaml::{Node, Value};

/// How strictly LAVA's job schema treats keys it does not know (LAVA's `strict` argument to
/// `lava_common.schemas.validate`).
///
/// The server's own submission schema applies in both modes, and it refuses unknown keys in
/// some places (the top level, `timeouts`, `context`, `protocols`, `auto_login`, inline test
/// definitions, interactive and monitor tests, …) whatever the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `strict=False`: unknown keys are tolerated wherever only the job schema looks. What LAVA
    /// applies to submissions, and the default of `scheduler.jobs.validate` and REST `validate`.
    Lenient,
    /// `strict=True`: every key the job schema does not know is refused.
    Strict,
}

/// Who may see a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Everyone.
    Public,
    /// Only the submitter.
    Personal,
    /// Members of all these groups (never empty).
    Group(Vec<String>),
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Visibility::Public => f.write_str("public"),
            Visibility::Personal => f.write_str("personal"),
            Visibility::Group(groups) => write!(f, "group: {}", groups.join(", ")),
        }
    }
}

/// A validated LAVA job definition.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefinition {
    /// The YAML text as submitted (stored as the job's definition).
    pub source: String,
    /// The parsed document.
    pub root: Node,
    /// `job_name` (1–200 characters), LAVA's job description.
    pub job_name: String,
    /// `device_type`; `None` only for MultiNode jobs (roles carry it).
    pub device_type: Option<String>,
    /// `priority` (default medium, 50).
    pub priority: Priority,
    /// `visibility`.
    pub visibility: Visibility,
    /// `timeouts`.
    pub timeouts: Timeouts,
    /// `tags`: the device must have all of them.
    pub tags: Vec<String>,
    /// `metadata`, values as written (strings or integers).
    pub metadata: Vec<(String, Node)>,
    /// `context`: variables for the device-type template (allowed names only).
    pub context: Vec<(String, Node)>,
    /// `secrets`: mapping hidden from the public definition.
    pub secrets: Option<Node>,
    /// `environment`: mapping exported into the test shell.
    pub environment: Option<Node>,
    /// `notify`.
    pub notify: Option<Notify>,
    /// `protocols`.
    pub protocols: Protocols,
    /// `reboot_to_fastboot`.
    pub reboot_to_fastboot: Option<bool>,
    /// The actions, in order. A list item with several keys gives several actions (LAVA runs
    /// each key).
    pub actions: Vec<Action>,
}

impl JobDefinition {
    /// Whether this is a MultiNode group definition.
    pub fn is_multinode(&self) -> bool {
        self.protocols.multinode.is_some()
    }
}

#[cfg(test)]
mod tests;
