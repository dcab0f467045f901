//! LAVA timeouts: `{minutes: 5}`-style mappings turned into [`Duration`]s.

use std::collections::BTreeMap;
use std::time::Duration;

use super::yaml::Node;

/// One timeout: a duration, and whether a test block that hits it is skipped instead of failing
/// the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// How long.
    pub duration: Duration,
    /// `skip: true`: the job continues after this block times out.
    pub skip: bool,
}

impl Timeout {
    /// Reads a timeout mapping; `None` unless it is valid (exactly one unit key with an
    /// integer ≥ 1, optional boolean `skip`).
    pub(crate) fn from_node(node: &Node) -> Option<Timeout> {
        let mut duration = None;
        let mut skip = false;
        let mut units = 0;
        for (key, value) in node.as_map()? {
            let factor = match key.as_str()? {
                "days" => 86_400.0,
                "hours" => 3_600.0,
                "minutes" => 60.0,
                "seconds" => 1.0,
                "skip" => {
                    skip = value.as_bool()?;
                    continue;
                }
                _ => return None,
            };
            units += 1;
            let n = value.as_int().filter(|n| *n >= 1)?;
            duration = Duration::try_from_secs_f64(n as f64 * factor).ok();
        }
        if units != 1 {
            return None;
        }
        Some(Timeout {
            duration: duration?,
            skip,
        })
    }
}

/// The job's `timeouts:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole job (required).
    pub job: Timeout,
    /// Default for every action.
    pub action: Option<Timeout>,
    /// Default for every connection (prompt wait).
    pub connection: Option<Timeout>,
    /// Cancel the job if it is still queued after this long.
    pub queue: Option<Timeout>,
    /// Per internal action name, e.g. `http-download`.
    pub actions: BTreeMap<String, Timeout>,
    /// Per internal action name, for connections.
    pub connections: BTreeMap<String, Timeout>,
}

/// LAVA's built-in action timeout when nothing else sets one.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// LAVA's MultiNode system timeout (coordinator calls during setup).
pub const MULTINODE_SYSTEM_TIMEOUT: Duration = Duration::from_secs(90);

impl Timeouts {
    pub(crate) fn from_node(node: &Node) -> Option<Timeouts> {
        let named = |key: &str| -> BTreeMap<String, Timeout> {
            node.get(key)
                .and_then(Node::as_map)
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), Timeout::from_node(v)?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Timeouts {
            job: Timeout::from_node(node.get("job")?)?,
            action: node.get("action").and_then(Timeout::from_node),
            connection: node.get("connection").and_then(Timeout::from_node),
            queue: node.get("queue").and_then(Timeout::from_node),
            actions: named("actions"),
            connections: named("connections"),
        })
    }
}
