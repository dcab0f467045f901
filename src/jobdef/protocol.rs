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

/// `protocols.lava-lxc`, typed as LAVA's job schema has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lxc {
    /// `name`: the container's name, the job id appended unless `persist`.
    pub name: String,
    /// `template` (LAVA's default: `download`).
    pub template: String,
    /// `distribution` (e.g. `debian`).
    pub distribution: String,
    /// `release` (a string, e.g. `bookworm`).
    pub release: String,
    /// `arch`.
    pub arch: Option<String>,
    /// `mirror`.
    pub mirror: Option<String>,
    /// `security_mirror`.
    pub security_mirror: Option<String>,
    /// `verbose`: lxc-create without `-q`.
    pub verbose: bool,
    /// `persist`: the container outlives the job and the next job of that name reuses it.
    pub persist: bool,
    /// `timeout` of the protocol's calls.
    pub timeout: Option<Timeout>,
}

impl Lxc {
    /// The container's name for job `job_id` (LAVA: `<name>-<job id>` unless persistent).
    pub fn container_name(&self, job_id: i64) -> String {
        if self.persist {
            self.name.clone()
        } else {
            format!("{}-{job_id}", self.name)
        }
    }

    /// The typed protocol from its mapping, or what is wrong and where
    /// (`protocols.lava-lxc.<key>: …`).
    pub fn from_node(node: &Node) -> Result<Lxc, String> {
        const AT: &str = "protocols.lava-lxc";
        if node.as_map().is_none() {
            return Err(format!("{AT}: must be a mapping"));
        }
        let text = |key: &str, required: bool| -> Result<Option<String>, String> {
            match node.get(key) {
                None if required => Err(format!("{AT}.{key}: is required")),
                None => Ok(None),
                Some(v) => match v.as_str() {
                    Some(s) if s.trim().is_empty() => Err(format!("{AT}.{key}: must not be empty")),
                    Some(s) => Ok(Some(s.to_owned())),
                    None => Err(format!("{AT}.{key}: must be a string")),
                },
            }
        };
        let flag = |key: &str| -> Result<bool, String> {
            match node.get(key) {
                None => Ok(false),
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| format!("{AT}.{key}: must be true or false")),
            }
        };
        let name = text("name", true)?.unwrap_or_default();
        if !crate::hw::lxc::valid_name(&name) {
            return Err(format!(
                "{AT}.name: '{name}' is not a usable container name (letters, digits, '-', '_' \
                 and '.', at most 64, not starting with '-' or '.')"
            ));
        }
        let template = text("template", false)?.unwrap_or_else(|| "download".to_owned());
        if !crate::hw::lxc::valid_name(&template) {
            return Err(format!(
                "{AT}.template: '{template}' is not a template name"
            ));
        }
        Ok(Lxc {
            name,
            template,
            distribution: text("distribution", true)?.unwrap_or_default(),
            release: text("release", true)?.unwrap_or_default(),
            arch: text("arch", false)?,
            mirror: text("mirror", false)?,
            security_mirror: text("security_mirror", false)?,
            verbose: flag("verbose")?,
            persist: flag("persist")?,
            timeout: node.get("timeout").and_then(Timeout::from_node),
        })
    }
}

impl Protocols {
    /// The job's typed `lava-lxc` protocol: `None` without one, an error saying where when
    /// it is unusable.
    pub fn lxc_protocol(&self) -> Option<Result<Lxc, String>> {
        self.lxc.as_ref().map(Lxc::from_node)
    }
}

#[cfg(test)]
mod lxc_tests {
    use super::*;

    fn lxc(text: &str) -> Result<Lxc, String> {
        let node = crate::jobdef::yaml::load(text).unwrap();
        Lxc::from_node(&node)
    }

    #[test]
    fn the_protocol_has_lavas_defaults_and_names() {
        let p = lxc("{name: probe, distribution: debian, release: bookworm}").unwrap();
        assert_eq!(p.template, "download");
        assert!(!p.persist && !p.verbose);
        assert_eq!(p.container_name(42), "probe-42");
        let p = lxc(
            "{name: probe, template: debian, distribution: debian, release: '12', arch: amd64, \
             mirror: 'http://deb.debian.org/debian', persist: true, verbose: true}",
        )
        .unwrap();
        assert_eq!(p.container_name(42), "probe");
        assert_eq!(p.release, "12");
        assert_eq!(p.mirror.as_deref(), Some("http://deb.debian.org/debian"));
        assert!(p.verbose);
    }

    #[test]
    fn problems_say_where() {
        assert_eq!(
            lxc("{distribution: debian, release: x}").unwrap_err(),
            "protocols.lava-lxc.name: is required"
        );
        assert!(
            lxc("{name: '../etc', distribution: debian, release: x}")
                .unwrap_err()
                .starts_with("protocols.lava-lxc.name: '../etc' is not a usable container name")
        );
        assert_eq!(
            lxc("{name: a, distribution: debian, release: [x]}").unwrap_err(),
            "protocols.lava-lxc.release: must be a string"
        );
        assert_eq!(
            lxc("{name: a, distribution: debian, release: x, persist: maybe}").unwrap_err(),
            "protocols.lava-lxc.persist: must be true or false"
        );
    }
}
