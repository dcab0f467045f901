//! Checks beyond the schemas: LAVA's `extra_checks` (timeouts, MultiNode roles, namespaces),
//! the server's submission checks that need no database, the MultiNode split's own checks and
//! the dispatcher's early validation that would make a job end Incomplete at once.

use std::collections::HashSet;

use super::schema::{Path, Report};
use super::timeout::Timeout;
use super::yaml::Node;

/// The action items, each with its first (type) key and body; empty items are skipped.
pub(crate) fn action_bodies(root: &Node) -> Vec<(usize, &Node, &str, &Node)> {
    let mut out = Vec::new();
    for (i, item) in root
        .get("actions")
        .and_then(Node::as_seq)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        for (key, body) in item.as_map().unwrap_or(&[]) {
            if let Some(k) = key.as_str() {
                out.push((i, key, k, body));
            }
        }
    }
    out
}

fn duration(node: Option<&Node>) -> Option<std::time::Duration> {
    node.and_then(Timeout::from_node).map(|t| t.duration)
}

/// Runs every check, adding problems to `report`.
pub(crate) fn check(root: &Node, report: &mut Report) {
    let top = Path::ROOT;
    check_priority(root, report);
    check_visibility(root, report);
    check_timeouts(root, report);
    check_actions(root, report);
    check_notify(root, report);
    check_multinode(root, report);
    let _ = top;
}

fn check_priority(root: &Node, report: &mut Report) {
    let Some(node) = root.get("priority") else {
        return;
    };
    let path = Path::ROOT;
    let path = path.key("priority");
    let expected = Some("high, medium, low or an integer from 0 to 100");
    if let Some(name) = node.as_str() {
        if !["high", "medium", "low"].contains(&name) {
            report.push(path, node, "not a valid value", expected);
        }
        return;
    }
    match node.as_int() {
        Some(n) if (0..=100).contains(&n) => {}
        Some(n) => report.push(
            path,
            node,
            format!("Invalid job priority: {n}. Should be in [0, 100]"),
            expected,
        ),
        None => report.push(path, node, "not a valid value", expected),
    }
}

fn check_visibility(root: &Node, report: &mut Report) {
    if let Some(group) = root.get("visibility").and_then(|v| v.get("group"))
        && group.as_seq().is_some_and(<[Node]>::is_empty)
    {
        let path = Path::ROOT;
        let path = path.key("visibility");
        report.push(
            path.key("group"),
            group,
            "No known groups were found in the visibility list.",
            Some("at least one group name"),
        );
    }
}

fn check_timeouts(root: &Node, report: &mut Report) {
    let Some(timeouts) = root.get("timeouts") else {
        return;
    };
    let Some(job) = duration(timeouts.get("job")) else {
        return;
    };
    let root_path = Path::ROOT;
    let tpath = root_path.key("timeouts");
    let global = |key: &str, node: &Node, report: &mut Report| {
        if duration(Some(node)).is_some_and(|d| d > job) {
            report.push(
                tpath.key(key),
                node,
                "Global timeout is larger than job timeout",
                Some("at most the job timeout"),
            );
        }
    };
    for key in ["action", "connection"] {
        if let Some(node) = timeouts.get(key) {
            global(key, node, report);
        }
    }
    for key in ["actions", "connections"] {
        let path = tpath.key(key);
        for (name, node) in timeouts.get(key).and_then(Node::as_map).unwrap_or(&[]) {
            if duration(Some(node)).is_some_and(|d| d > job) {
                report.push(
                    path.key_node(name),
                    node,
                    "Global timeout is larger than job timeout",
                    Some("at most the job timeout"),
                );
            }
        }
    }
    let apath = root_path.key("actions");
    for (i, key, _, body) in action_bodies(root) {
        if let Some(t) = body.get("timeout")
            && duration(Some(t)).is_some_and(|d| d > job)
        {
            let item = apath.index(i);
            let kind = item.key_node(key);
            report.push(
                kind.key("timeout"),
                t,
                "Action timeout is larger than job timeout",
                Some("at most the job timeout"),
            );
        }
    }
}

fn is_integral(node: &Node) -> bool {
    node.as_int().is_some()
}

fn check_actions(root: &Node, report: &mut Report) {
    let root_path = Path::ROOT;
    let apath = root_path.key("actions");
    let Some(items) = root.get("actions").and_then(Node::as_seq) else {
        return;
    };
    let mut with_namespace = 0;
    for (i, item) in items.iter().enumerate() {
        let ipath = apath.index(i);
        let Some(entries) = item.as_map() else {
            continue;
        };
        if entries.is_empty() {
            report.push(
                ipath,
                item,
                "empty action",
                Some("one of deploy, boot, test, command"),
            );
            continue;
        }
        // LAVA counts the namespace of the first key of each item.
        if entries
            .first()
            .is_some_and(|(_, body)| body.get("namespace").is_some())
        {
            with_namespace += 1;
        }
        for (key, body) in entries {
            let bpath = ipath.key_node(key);
            for name in ["failure_retry", "repeat"] {
                if let Some(n) = body.get(name)
                    && n.as_number().is_some()
                    && !is_integral(n)
                {
                    report.push(bpath.key(name), n, "expected int", Some("an integer"));
                }
            }
            if body.has("failure_retry") && body.has("repeat") {
                report.push(
                    bpath.key("repeat"),
                    body,
                    "Unable to use repeat and failure_retry, use a repeat block",
                    None::<String>,
                );
            }
            if key.as_str() == Some("test") {
                check_definition_names(body, bpath, report);
            }
        }
    }
    if with_namespace > 0 && with_namespace != items.len() {
        report.push(
            apath,
            root.get("actions").unwrap_or(root),
            "When using namespaces, every action should have a namespace",
            None::<String>,
        );
    }
}

fn check_definition_names(body: &Node, path: Path<'_>, report: &mut Report) {
    let Some(defs) = body.get("definitions").and_then(Node::as_seq) else {
        return;
    };
    let dpath = path.key("definitions");
    let mut seen = HashSet::new();
    for (i, def) in defs.iter().enumerate() {
        // The server's `_validate_vcs_parameters` (the job schema only knows `shallow` when
        // not strict, as an unknown key).
        if def.has("revision")
            && let Some(shallow) = def.get("shallow")
            && shallow.as_bool() == Some(true)
        {
            report.push(
                dpath.index(i).key("shallow"),
                shallow,
                "When 'revision' is used, 'shallow' shouldn't be 'True'",
                Some("false, or no `revision`"),
            );
        }
        let Some(name) = def.get("name") else {
            continue;
        };
        let Some(text) = name.as_str() else {
            continue;
        };
        let item = dpath.index(i);
        if text == "lava" {
            report.push(
                item.key("name"),
                name,
                "The \"lava\" test definition name is reserved.",
                Some("another name"),
            );
        }
        if !seen.insert(text) {
            report.push(
                item.key("name"),
                name,
                "Test definition names need to be unique.",
                Some("a name not used by another definition of this block"),
            );
        }
    }
}

fn check_notify(root: &Node, report: &mut Report) {
    let Some(recipients) = root
        .get("notify")
        .and_then(|n| n.get("recipients"))
        .and_then(Node::as_seq)
    else {
        return;
    };
    let root_path = Path::ROOT;
    let npath = root_path.key("notify");
    let rpath = npath.key("recipients");
    for (i, recipient) in recipients.iter().enumerate() {
        let Some(to) = recipient.get("to") else {
            continue;
        };
        let item = rpath.index(i);
        let to_path = item.key("to");
        match to.get("method").and_then(Node::as_str) {
            Some("email") if !to.has("email") && !to.has("user") => report.push(
                to_path,
                to,
                "No valid user or email address specified.",
                Some("an `email` or `user` key"),
            ),
            Some("irc") if !to.has("handle") && !to.has("user") => report.push(
                to_path,
                to,
                "No valid user or IRC handle specified.",
                Some("a `handle` or `user` key"),
            ),
            _ => {}
        }
    }
}

fn check_multinode(root: &Node, report: &mut Report) {
    let root_path = Path::ROOT;
    let multinode = root.get("protocols").and_then(|p| p.get("lava-multinode"));
    let is_multinode = multinode.is_some_and(Node::is_truthy);
    for extra in ["device_type", "environment", "context", "tags"] {
        let value = root.get(extra);
        let set = value.is_some_and(Node::is_truthy);
        if set && is_multinode {
            report.push(
                root_path.key(extra),
                value.unwrap_or(root),
                format!("\"{extra}\" should not be used with multinode"),
                Some("this key inside the role definitions"),
            );
        }
        if extra == "device_type" && !set && !is_multinode {
            report.push(
                root_path.key(extra),
                root,
                "\"device_type\" or multinode should be defined",
                Some("a `device_type` key or a lava-multinode protocol"),
            );
        }
    }
    let Some(multinode) = multinode.filter(|_| is_multinode) else {
        return;
    };
    let apath = root_path.key("actions");
    for (i, key, _, body) in action_bodies(root) {
        if !body.has("role") {
            let item = apath.index(i);
            report.push(
                item.key_node(key),
                body,
                "Every action of a multinode job should have roles",
                Some("a `role` list"),
            );
        }
    }
    let ppath = root_path.key("protocols");
    let mpath = ppath.key("lava-multinode");
    let rpath = mpath.key("roles");
    let Some(roles) = multinode.get("roles").and_then(Node::as_map) else {
        return;
    };
    let names: Vec<&str> = roles.iter().filter_map(|(k, _)| k.as_str()).collect();
    let mut host_role: Option<(&str, &Node)> = None;
    for (name, role) in roles {
        let path = rpath.key_node(name);
        if let Some(count) = role.get("count")
            && count.as_number().is_some()
            && !is_integral(count)
        {
            report.push(path.key("count"), count, "expected int", Some("an integer"));
        }
        let host = role.get("host_role").and_then(Node::as_str);
        let expect = role.get("expect_role");
        match (host, expect) {
            (Some(h), _) if !names.contains(&h) => report.at(
                path.key("host_role"),
                role,
                format!("'host_role' '{h}' does not exist"),
            ),
            (Some(_), None) => report.at(
                path,
                role,
                "'expect_role' is required when 'host_role' is used",
            ),
            (Some(_), Some(e)) => {
                if let Some(e) = e.as_str().filter(|e| !names.contains(e)) {
                    report.at(
                        path.key("expect_role"),
                        role,
                        format!("'expect_role' '{e}' does not exist"),
                    );
                }
            }
            (None, Some(e)) => report.at(
                path.key("expect_role"),
                e,
                "'expect_role' without 'host_role'",
            ),
            (None, None) => {}
        }
        if let Some(h) = host {
            host_role = Some((h, role));
        }
        if role.get("request").and_then(Node::as_str) == Some("lava-start")
            && role.get("expect_role").and_then(Node::as_str) == name.as_str()
        {
            report.at(
                path.key("expect_role"),
                role,
                "expect_role must not match the role declaring lava_start",
            );
        }
        let count = role.get("count").and_then(Node::as_int).unwrap_or(0);
        if count > 0 {
            let Some(role_name) = name.as_str() else {
                continue;
            };
            let has_action = action_bodies(root).iter().any(|(_, _, _, body)| {
                body.get("role")
                    .and_then(Node::as_seq)
                    .is_some_and(|r| r.iter().any(|n| n.as_str() == Some(role_name)))
            });
            if !has_action {
                report.push(
                    path,
                    role,
                    format!("role '{role_name}' has no actions"),
                    Some("at least one action listing this role"),
                );
            }
        }
    }
    // LAVA checks the count of the last role named as a host_role.
    if let Some((host, _)) = host_role
        && let Some((key, role)) = roles.iter().find(|(k, _)| k.as_str() == Some(host))
        && role.get("count").and_then(Node::as_int) != Some(1)
    {
        report.at(
            rpath.key_node(key).key("count"),
            role,
            "The count for a role designated as a host_role must be 1.",
        );
    }
    if let Some(vland) = root.get("protocols").and_then(|p| p.get("lava-vland")) {
        let vpath = ppath.key("lava-vland");
        for (name, role) in roles {
            let count = role.get("count").and_then(Node::as_int);
            let Some(role_name) = name.as_str().filter(|_| role.as_map().is_some()) else {
                continue;
            };
            if count != Some(1) {
                report.at(
                    rpath.key_node(name).key("count"),
                    role,
                    "vland protocol only supports one device per role.",
                );
            } else if !vland.has(role_name) {
                report.push(
                    vpath.key(role_name),
                    vland,
                    format!("no vland definition for role '{role_name}'"),
                    Some("a key for every role"),
                );
            }
        }
    }
}
