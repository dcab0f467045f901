//! The validation pipeline: bytes → text → YAML tree → schema and checks → typed definition.

use crate::model::{Priority, PriorityName};

use super::action::boot::BootMethod;
use super::action::deploy::DeployTo;
use super::action::{Action, ActionKind, Boot, Command, Common, Deploy, Test};
use super::checks;
use super::error::{Problem, YamlPath};
use super::notify::Notify;
use super::protocol::Protocols;
use super::schema::{self, Path, Report};
use super::timeout::Timeouts;
use super::yaml::{self, Node};
use super::{JobDefinition, Mode, Visibility};

/// Largest submission accepted, in bytes: Django's default request body limit
/// (`DATA_UPLOAD_MAX_MEMORY_SIZE`, 2.5 MiB), which LAVA does not change.
pub const MAX_JOB_SIZE: usize = 2_621_440;

fn whole_file(line: u32, column: u32, message: String) -> Problem {
    Problem {
        path: YamlPath::root(),
        line,
        column,
        message,
        expected: None,
    }
}

/// Validates a job definition given as bytes (as uploaded), leniently as LAVA does at
/// submission ([`Mode::Lenient`]).
pub fn parse(bytes: &[u8]) -> Result<JobDefinition, Vec<Problem>> {
    parse_mode(bytes, Mode::Lenient)
}

/// Validates a job definition given as text, leniently as LAVA does at submission
/// ([`Mode::Lenient`]).
pub fn parse_str(text: &str) -> Result<JobDefinition, Vec<Problem>> {
    parse_str_mode(text, Mode::Lenient)
}

/// Validates a job definition given as bytes (as uploaded) in `mode`.
pub fn parse_mode(bytes: &[u8], mode: Mode) -> Result<JobDefinition, Vec<Problem>> {
    if bytes.len() > MAX_JOB_SIZE {
        return Err(vec![whole_file(
            1,
            1,
            format!(
                "job definition is too large: {} bytes (at most {MAX_JOB_SIZE})",
                bytes.len()
            ),
        )]);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str_mode(text, mode),
        Err(e) => {
            let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let column = String::from_utf8_lossy(good.get(line_start..).unwrap_or_default())
                .chars()
                .count()
                + 1;
            Err(vec![whole_file(
                u32::try_from(line).unwrap_or(u32::MAX),
                u32::try_from(column).unwrap_or(u32::MAX),
                format!(
                    "job definition is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            )])
        }
    }
}

/// Validates a job definition given as text in `mode`.
pub fn parse_str_mode(text: &str, mode: Mode) -> Result<JobDefinition, Vec<Problem>> {
    if text.len() > MAX_JOB_SIZE {
        return parse_mode(text.as_bytes(), mode);
    }
    let root = checked(text, mode)?;
    build(text, root).ok_or_else(|| {
        vec![whole_file(
            1,
            1,
            "job definition passed validation but could not be typed (lavabox bug)".to_owned(),
        )]
    })
}

/// Validates a job definition given as text in `mode` without building the typed
/// definition: what the validation APIs answer, at the cost of the YAML tree alone (the typed
/// definition copies every action and the text).
pub fn validate_str_mode(text: &str, mode: Mode) -> Result<(), Vec<Problem>> {
    if text.len() > MAX_JOB_SIZE {
        return parse_mode(text.as_bytes(), mode).map(drop);
    }
    checked(text, mode).map(drop)
}

/// The YAML tree of `text` once the schema and the server's checks found nothing wrong.
fn checked(text: &str, mode: Mode) -> Result<Node, Vec<Problem>> {
    let root = load(text)?;
    let mut report = Report::new(mode);
    if root.as_map().is_none() {
        report.push(
            Path::ROOT,
            &root,
            "expected a dictionary",
            Some("a job definition mapping"),
        );
        return Err(report.problems);
    }
    schema::job::JOB.check(&root, Path::ROOT, &mut report);
    check_action_bodies(&root, &mut report);
    checks::check(&root, &mut report);
    if !report.problems.is_empty() {
        let mut problems = report.problems;
        problems.sort_by_key(|p| (p.line, p.column));
        problems.dedup();
        return Err(problems);
    }
    Ok(root)
}

/// The YAML tree of `text`, or the parser's error as a whole-file problem.
fn load(text: &str) -> Result<Node, Vec<Problem>> {
    yaml::load(text).map_err(|e| {
        vec![whole_file(
            e.mark.line,
            e.mark.column,
            format!("invalid YAML: {}", e.message),
        )]
    })
}

/// Validates a Lava-Test Test Definition 1.0 file (what `/jobs/validate_testdef/` checks):
/// LAVA's test-definition schema, extra keys allowed as LAVA allows them.
pub fn validate_testdef(text: &str) -> Result<(), Vec<Problem>> {
    if text.len() > MAX_JOB_SIZE {
        return Err(vec![whole_file(
            1,
            1,
            format!("test definition is too large: {} bytes", text.len()),
        )]);
    }
    let root = load(text)?;
    let mut report = Report::new(Mode::Lenient);
    schema::test::testdef_file().check(&root, Path::ROOT, &mut report);
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(report.problems)
    }
}

/// Normalizes a LAVA action type name to its schema module name (`u-boot` → `u_boot`).
fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

fn lookup<'a>(table: &'a [(&'static str, schema::Sch)], name: &str) -> Option<&'a schema::Sch> {
    let module = module_name(name);
    table.iter().find(|(m, _)| *m == module).map(|(_, s)| s)
}

/// Which test schema LAVA picks for a test block, if any.
fn test_kind(body: &Node) -> Option<&'static str> {
    if body.has("definitions") {
        Some(if body.has("docker") {
            "docker"
        } else {
            "definition"
        })
    } else if body.has("interactive") {
        Some("interactive")
    } else if body.has("monitors") {
        Some("monitor")
    } else {
        None
    }
}

fn check_action_bodies(root: &Node, report: &mut Report) {
    let apath = Path::ROOT.key("actions");
    let Some(items) = root.get("actions").and_then(Node::as_seq) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let ipath = apath.index(i);
        for (key, body) in item.as_map().unwrap_or(&[]) {
            let Some(kind) = key.as_str() else { continue };
            let bpath = ipath.key(kind);
            if body.as_map().is_none() {
                continue; // reported by the job schema
            }
            match kind {
                "deploy" => {
                    let to = body.get("to");
                    match to
                        .and_then(Node::as_str)
                        .and_then(|t| lookup(&schema::deploy::DEPLOY, t))
                    {
                        Some(sch) => sch.check(body, bpath, report),
                        None => report.push(
                            bpath.key("to"),
                            to.unwrap_or(body),
                            "unknown action type",
                            Some(format!(
                                "one of: {}",
                                DeployTo::ALL
                                    .iter()
                                    .map(|t| t.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        ),
                    }
                }
                "boot" => {
                    let method = body.get("method");
                    match method
                        .and_then(Node::as_str)
                        .and_then(|m| lookup(&schema::boot::BOOT, m))
                    {
                        Some(sch) => sch.check(body, bpath, report),
                        None => report.push(
                            bpath.key("method"),
                            method.unwrap_or(body),
                            "unknown action type",
                            Some(format!(
                                "one of: {}",
                                BootMethod::ALL
                                    .iter()
                                    .map(|t| t.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        ),
                    }
                }
                "test" => match test_kind(body).and_then(|k| lookup(&schema::test::TEST, k)) {
                    Some(sch) => sch.check(body, bpath, report),
                    None => report.push(
                        bpath,
                        body,
                        "invalid action",
                        Some("a `definitions`, `interactive` or `monitors` key"),
                    ),
                },
                "command" => schema::test::COMMAND.check(body, bpath, report),
                _ => {} // reported by the job schema
            }
        }
    }
}

fn build(text: &str, root: Node) -> Option<JobDefinition> {
    let priority = match root.get("priority") {
        None => Priority::DEFAULT,
        Some(p) => match p.as_str() {
            Some(name) => Priority::from(name.parse::<PriorityName>().ok()?),
            None => Priority::new(i64::try_from(p.as_int()?).ok()?)?,
        },
    };
    let visibility = match root.get("visibility")? {
        n if n.as_str() == Some("public") => Visibility::Public,
        n if n.as_str() == Some("personal") => Visibility::Personal,
        // `{}`: LAVA hides the job from everyone but its submitter, like `personal`.
        n if !n.has("group") => Visibility::Personal,
        n => Visibility::Group(super::action::strings(n, "group")),
    };
    let pairs = |key: &str| -> Vec<(String, Node)> {
        root.get(key)
            .and_then(Node::as_map)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut actions = Vec::new();
    for (index, item) in root.get("actions")?.as_seq()?.iter().enumerate() {
        for (key, body) in item.as_map()? {
            let kind = match key.as_str()? {
                "deploy" => ActionKind::Deploy(Deploy::from_node(
                    DeployTo::from_name(body.get("to")?.as_str()?)?,
                    body,
                )?),
                "boot" => ActionKind::Boot(Boot::from_node(
                    BootMethod::from_name(body.get("method")?.as_str()?)?,
                    body,
                )?),
                "test" => ActionKind::Test(Test::from_node(body)?),
                "command" => ActionKind::Command(Command {
                    name: body.get("name")?.as_str()?.to_owned(),
                }),
                _ => return None,
            };
            actions.push(Action {
                index,
                line: key.mark.line,
                common: Common::from_node(body),
                kind,
                raw: body.clone(),
            });
        }
    }
    Some(JobDefinition {
        source: text.to_owned(),
        job_name: root.get("job_name")?.as_str()?.to_owned(),
        device_type: root
            .get("device_type")
            .and_then(Node::as_str)
            .map(str::to_owned),
        priority,
        visibility,
        timeouts: Timeouts::from_node(root.get("timeouts")?)?,
        tags: super::action::strings(&root, "tags"),
        metadata: pairs("metadata"),
        context: pairs("context"),
        secrets: root.get("secrets").cloned(),
        environment: root.get("environment").cloned(),
        notify: match root.get("notify") {
            Some(n) => Some(Notify::from_node(n)?),
            None => None,
        },
        protocols: Protocols::from_node(root.get("protocols"))?,
        reboot_to_fastboot: root.get("reboot_to_fastboot").and_then(Node::as_bool),
        actions,
        root,
    })
}
