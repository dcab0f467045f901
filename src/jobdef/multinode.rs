//! MultiNode: splitting a group definition into one sub-job per role instance, the way LAVA
//! 2023.01's `split_multinode_yaml` does.
//!
//! Sub-jobs come in role order (as written), `count` instances each; sub-job N later gets the
//! id `P.N` where P is the first sub-job's id. Each sub-job definition keeps `job_name`,
//! `timeouts`, `priority`, `visibility`, `notify`, `metadata`, `reboot_to_fastboot`; takes
//! `device_type`, `connection`, `host_role` and `context` from its role; keeps only the actions
//! listing its role (with `role` rewritten to that one role); and gets
//! `protocols.lava-multinode = {target_group, role, group_size, sub_id, <other role keys>,
//! <other lava-multinode keys such as timeout>}` plus its role's `lava-vland`/`lava-lxc` entry.

use super::JobDefinition;
use super::action::Action;
use super::yaml::{Mark, Node, Value};

/// One sub-job of a MultiNode group.
#[derive(Debug, Clone, PartialEq)]
pub struct SubJob {
    /// N in `P.N`: position in the group, counting across roles.
    pub sub_id: usize,
    /// The role it plays.
    pub role: String,
    /// Device type to schedule on; `None` for dynamic connections (no device of their own).
    pub device_type: Option<String>,
    /// `connection` of a dynamic-connection role.
    pub connection: Option<String>,
    /// `host_role` of a dynamic-connection role.
    pub host_role: Option<String>,
    /// The role's `context`.
    pub context: Option<Node>,
    /// Device tags the role requires.
    pub tags: Vec<String>,
    /// Whether the group is canceled when this sub-job fails.
    pub essential: bool,
    /// This role's actions, with `role` rewritten to this one role.
    pub actions: Vec<Action>,
    /// The sub-job definition, without `target_group` (see [`SubJob::definition_in_group`]).
    pub definition: Node,
}

impl SubJob {
    /// The sub-job definition with `protocols.lava-multinode.target_group` set (first key, as
    /// LAVA writes it).
    pub fn definition_in_group(&self, target_group: &str) -> Node {
        let mut def = self.definition.clone();
        if let Value::Map(entries) = &mut def.value {
            for (k, v) in entries.iter_mut() {
                if k.as_str() != Some("protocols") {
                    continue;
                }
                if let Value::Map(protocols) = &mut v.value {
                    for (pk, pv) in protocols.iter_mut() {
                        if pk.as_str() != Some("lava-multinode") {
                            continue;
                        }
                        if let Value::Map(params) = &mut pv.value {
                            params.insert(0, (s("target_group"), s(target_group)));
                        }
                    }
                }
            }
        }
        def
    }
}

fn s(text: &str) -> Node {
    Node {
        value: Value::Str(text.to_owned()),
        mark: Mark::default(),
    }
}

fn int(n: usize) -> Node {
    Node {
        value: Value::Int(i128::try_from(n).unwrap_or(i128::MAX)),
        mark: Mark::default(),
    }
}

fn map(entries: Vec<(Node, Node)>) -> Node {
    Node {
        value: Value::Map(entries),
        mark: Mark::default(),
    }
}

fn with_role(body: &Node, role: &str) -> Node {
    let mut body = body.clone();
    if let Value::Map(entries) = &mut body.value {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("role") {
                *v = s(role);
            }
        }
    }
    body
}

/// Splits a MultiNode job into its sub-jobs; a single-node job gives no sub-jobs.
pub fn expand_multinode(job: &JobDefinition) -> Vec<SubJob> {
    let Some(multinode) = &job.protocols.multinode else {
        return Vec::new();
    };
    let root = &job.root;
    let group_size: usize = multinode
        .roles
        .iter()
        .map(|r| usize::try_from(r.count).unwrap_or(0))
        .sum();
    let mut out = Vec::new();
    for role in &multinode.roles {
        let name = role.name.as_str();
        // Actions: every key of every item whose role list names this role.
        let mut actions = Vec::new();
        let mut action_nodes = Vec::new();
        for action in &job.actions {
            if action.common.role.iter().any(|r| r == name) {
                let mut action = action.clone();
                action.common.role = vec![name.to_owned()];
                action.raw = with_role(&action.raw, name);
                action_nodes.push(map(vec![(s(action.kind.name()), action.raw.clone())]));
                actions.push(action);
            }
        }
        // Protocol parameters, in LAVA's order.
        let mut params: Vec<(Node, Node)> = vec![
            (s("role"), s(name)),
            (s("group_size"), int(group_size)),
            (s("sub_id"), int(0)),
        ];
        for (k, v) in role.raw.as_map().unwrap_or(&[]) {
            let key = k.as_str().unwrap_or_default();
            if !["count", "device_type", "connection", "host_role", "context"].contains(&key) {
                params.push((k.clone(), v.clone()));
            }
        }
        for (k, v) in multinode.raw.as_map().unwrap_or(&[]) {
            if matches!(k.as_str(), Some("role" | "roles")) {
                continue;
            }
            match params.iter_mut().find(|(pk, _)| pk.as_str() == k.as_str()) {
                Some(slot) => slot.1 = v.clone(),
                None => params.push((k.clone(), v.clone())),
            }
        }
        let mut protocols = vec![];
        let per_role = |key: &str| {
            root.get("protocols")
                .and_then(|p| p.get(key))
                .and_then(|p| p.get(name))
                .cloned()
        };
        for _ in 0..role.count {
            let sub_id = out.len();
            let mut params = params.clone();
            for (k, v) in params.iter_mut() {
                if k.as_str() == Some("sub_id") {
                    *v = int(sub_id);
                }
            }
            protocols.clear();
            protocols.push((s("lava-multinode"), map(params)));
            if let Some(vland) = per_role("lava-vland") {
                protocols.push((s("lava-vland"), vland));
            }
            if let Some(lxc) = per_role("lava-lxc") {
                protocols.push((s("lava-lxc"), lxc));
            }
            let mut def: Vec<(Node, Node)> = vec![(
                s("actions"),
                Node {
                    value: Value::Seq(action_nodes.clone()),
                    mark: Mark::default(),
                },
            )];
            for key in [
                "job_name",
                "timeouts",
                "priority",
                "visibility",
                "notify",
                "metadata",
                "reboot_to_fastboot",
            ] {
                if let Some((k, v)) = root.entry(key) {
                    def.push((k.clone(), v.clone()));
                }
            }
            for key in ["device_type", "connection", "host_role", "context"] {
                if let Some((k, v)) = role.raw.entry(key) {
                    def.push((k.clone(), v.clone()));
                }
            }
            def.push((s("protocols"), map(protocols.clone())));
            let string = |key: &str| role.raw.get(key).and_then(Node::as_str).map(str::to_owned);
            out.push(SubJob {
                sub_id,
                role: name.to_owned(),
                device_type: string("device_type"),
                connection: string("connection"),
                host_role: string("host_role"),
                context: role.context.clone(),
                tags: role.tags.clone(),
                essential: role.essential,
                actions: actions.clone(),
                definition: map(def),
            });
        }
    }
    out
}
