//! Job-level `protocols:`: MultiNode roles (typed), LXC, VLANd, xnbd.

use crate::jobdef::action::{string, strings};
use crate::jobdef::timeout::Timeout;
use crate::jobdef::yaml::Node;

/// How a MultiNode role gets its machine.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleKind {
    /// A device of this type per instance.
    Device {
        /// Device type name.
        device_type: String,
        /// Replaces the job-level `environment` for this role.
        environment: Option<Node>,
    },
    /// A dynamic connection riding on another role's device (no device of its own).
    Connection {
        /// Connection kind, e.g. `ssh`.
        connection: String,
        /// The role whose device it connects to (its count is 1).
        host_role: String,
        /// The role whose `lava_start` it waits for.
        expect_role: String,
        /// e.g. `lava-start`: delay the start until `expect_role` signals.
        request: Option<String>,
    },
}

/// One MultiNode role.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    /// Role name.
    pub name: String,
    /// Instances (sub-jobs) of this role; 0 is allowed.
    pub count: u32,
    /// Device or connection.
    pub kind: RoleKind,
    /// Context variables for the role's device template.
    pub context: Option<Node>,
    /// Device tags required for this role.
    pub tags: Vec<String>,
    /// If this role's job fails, cancel the group.
    pub essential: bool,
    /// Role timeout (for `lava-start` waits).
    pub timeout: Option<Timeout>,
    /// The role mapping as written.
    pub raw: Node,
}

/// `protocols.lava-multinode`.
#[derive(Debug, Clone, PartialEq)]
pub struct Multinode {
    /// Default timeout of coordinator calls.
    pub timeout: Option<Timeout>,
    /// Roles in document order (which is the sub-job order).
    pub roles: Vec<Role>,
    /// The protocol mapping as written.
    pub raw: Node,
}

/// `protocols.lava-xnbd.port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XnbdPort {
    /// Pick a free port.
    Auto,
    /// This port.
    Port(i64),
}

/// `protocols.lava-xnbd`.
#[derive(Debug, Clone, PartialEq)]
pub struct Xnbd {
    /// Port of the NBD server.
    pub port: XnbdPort,
    /// Protocol timeout.
    pub timeout: Option<Timeout>,
}

/// The job's `protocols:`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Protocols {
    /// MultiNode, when the job is a group.
    pub multinode: Option<Multinode>,
    /// LXC container settings (single or per role), as written.
    pub lxc: Option<Node>,
    /// VLANd per-role VLANs, as written.
    pub vland: Option<Node>,
    /// xnbd.
    pub xnbd: Option<Xnbd>,
}

impl Protocols {
    pub(crate) fn from_node(node: Option<&Node>) -> Option<Protocols> {
        let Some(node) = node else {
            return Some(Protocols::default());
        };
        let multinode = match node.get("lava-multinode") {
            None => None,
            Some(mn) => {
                let mut roles = Vec::new();
                for (name, role) in mn.get("roles")?.as_map()? {
                    let kind = match string(role, "device_type") {
                        Some(device_type) => RoleKind::Device {
                            device_type,
                            environment: role.get("environment").cloned(),
                        },
                        None => RoleKind::Connection {
                            connection: string(role, "connection")?,
                            host_role: string(role, "host_role")?,
                            expect_role: string(role, "expect_role")?,
                            request: string(role, "request"),
                        },
                    };
                    roles.push(Role {
                        name: name.as_str()?.to_owned(),
                        count: u32::try_from(role.get("count")?.as_int()?).ok()?,
                        kind,
                        context: role.get("context").cloned(),
                        tags: strings(role, "tags"),
                        essential: role
                            .get("essential")
                            .and_then(Node::as_bool)
                            .unwrap_or(false),
                        timeout: role.get("timeout").and_then(Timeout::from_node),
                        raw: role.clone(),
                    });
                }
                Some(Multinode {
                    timeout: mn.get("timeout").and_then(Timeout::from_node),
                    roles,
                    raw: mn.clone(),
                })
            }
        };
        let xnbd = match node.get("lava-xnbd") {
            None => None,
            Some(x) => Some(Xnbd {
                port: match x.get("port")?.as_str() {
                    Some(_) => XnbdPort::Auto,
                    None => XnbdPort::Port(i64::try_from(x.get("port")?.as_int()?).ok()?),
                },
                timeout: x.get("timeout").and_then(Timeout::from_node),
            }),
        };
        Some(Protocols {
            multinode,
            lxc: node.get("lava-lxc").cloned(),
            vland: node.get("lava-vland").cloned(),
            xnbd,
        })
    }
}
