//! Typed action blocks: the keys every action shares, and one enum variant per action type.

pub mod boot;
pub mod deploy;
pub mod test;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use super::timeout::Timeout;
use super::yaml::Node;

pub use boot::Boot;
pub use deploy::Deploy;
pub use test::Test;

/// One action of the job's `actions:` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Position in the job's `actions:` list.
    pub index: usize,
    /// Line of the action in the job text.
    pub line: u32,
    /// Keys every action type shares.
    pub common: Common,
    /// What the action does.
    pub kind: ActionKind,
    /// The action's mapping as written (the value under `deploy:`, `boot:`, …).
    pub raw: Node,
}

/// The action type and its typed parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// `deploy:` put software where the device can use it.
    Deploy(Deploy),
    /// `boot:` start the device.
    Boot(Boot),
    /// `test:` run tests.
    Test(Test),
    /// `command:` run a device-dictionary user command on the worker.
    Command(Command),
}

impl ActionKind {
    /// The YAML key: `deploy`, `boot`, `test` or `command`.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Deploy(_) => "deploy",
            ActionKind::Boot(_) => "boot",
            ActionKind::Test(_) => "test",
            ActionKind::Command(_) => "command",
        }
    }
}

/// `command: {name: …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Name of the user command in the device dictionary (`commands.users.<name>`).
    pub name: String,
}

/// How often an action block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// Once (the device's default retry count may still apply).
    #[default]
    Default,
    /// `failure_retry: N`: up to N tries, stopping at the first success.
    FailureRetry(NonZeroU32),
    /// `repeat: N`: N runs whatever happens.
    Repeat(NonZeroU32),
}

/// Keys every action block may carry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Common {
    /// `namespace`: groups actions that share deployment data.
    pub namespace: Option<String>,
    /// `connection-namespace`: use the connection of another namespace.
    pub connection_namespace: Option<String>,
    /// `role`: MultiNode roles this action runs for (in sub-jobs, the one role).
    pub role: Vec<String>,
    /// `timeout`: this block's timeout.
    pub timeout: Option<Timeout>,
    /// `timeouts`: per internal action name inside this block.
    pub timeouts: BTreeMap<String, Timeout>,
    /// `failure_retry` / `repeat` (they cannot be combined).
    pub retry: Retry,
    /// `failure_retry_interval`: wait between tries (LAVA's default is 1 s).
    pub failure_retry_interval: Option<Duration>,
    /// `protocols`: per-action protocol calls, as written.
    pub protocols: Option<Node>,
}

fn count(node: Option<&Node>) -> Option<NonZeroU32> {
    let n = node?.as_int()?;
    NonZeroU32::new(u32::try_from(n).ok()?)
}

impl Common {
    pub(crate) fn from_node(node: &Node) -> Common {
        let retry = match (count(node.get("failure_retry")), count(node.get("repeat"))) {
            (Some(n), None) => Retry::FailureRetry(n),
            (None, Some(n)) => Retry::Repeat(n),
            _ => Retry::Default,
        };
        Common {
            namespace: string(node, "namespace"),
            connection_namespace: string(node, "connection-namespace"),
            role: strings(node, "role"),
            timeout: node.get("timeout").and_then(Timeout::from_node),
            timeouts: node
                .get("timeouts")
                .and_then(Node::as_map)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), Timeout::from_node(v)?)))
                        .collect()
                })
                .unwrap_or_default(),
            retry,
            failure_retry_interval: node
                .get("failure_retry_interval")
                .and_then(Node::as_number)
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            protocols: node.get("protocols").cloned(),
        }
    }
}

/// The string under `key`.
pub(crate) fn string(node: &Node, key: &str) -> Option<String> {
    node.get(key)?.as_str().map(str::to_owned)
}

/// The string or list of strings under `key` (empty when absent).
pub(crate) fn strings(node: &Node, key: &str) -> Vec<String> {
    match node.get(key) {
        Some(n) => string_list(n),
        None => Vec::new(),
    }
}

/// A string or a list of strings.
pub(crate) fn string_list(node: &Node) -> Vec<String> {
    match (node.as_str(), node.as_seq()) {
        (Some(s), _) => vec![s.to_owned()],
        (None, Some(items)) => items
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The boolean under `key` (false when absent).
pub(crate) fn flag(node: &Node, key: &str) -> bool {
    node.get(key).and_then(Node::as_bool).unwrap_or(false)
}
