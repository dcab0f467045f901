//! The XML-RPC method table: every method of LAVA 2023.01 that lavabox serves, with LAVA's
//! argument handling, return shapes and fault codes/strings.
//!
//! Names are dispatched by one `match` in [`dispatch`]; [`METHODS`] is the sorted list that
//! `system.listMethods` returns and must name exactly the arms of that match.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde_json::json;
use time::OffsetDateTime;
use time::macros::format_description;

use super::codec::Value;
use crate::api::auth::Caller;
use crate::app::App;
use crate::jobdef;
use crate::model::{DeviceHealth, DeviceState, JobHealth, JobId, JobState};
use crate::store::{
    self, Device, DeviceType, DeviceTypeUpdate, DeviceUpdate, HealthDenominator, Job, JobFilter,
    JobOrder, JobOrderField, NewDevice, NewDeviceType, Store, TestCase,
};
use crate::submit::{self, SubmitError, Submitted};

/// An XML-RPC fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `faultCode`.
    pub code: i64,
    /// `faultString`.
    pub message: String,
}

impl Fault {
    /// A fault with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Fault {
        Fault {
            code,
            message: message.into(),
        }
    }
}

impl From<SubmitError> for Fault {
    fn from(e: SubmitError) -> Fault {
        if let SubmitError::Store(inner) = &e {
            return store_error(inner);
        }
        Fault::new(e.code(), e.to_string())
    }
}

fn store_error(e: &store::Error) -> Fault {
    match e {
        store::Error::NotFound { kind, name } => {
            Fault::new(404, format!("{kind} '{name}' was not found."))
        }
        store::Error::AlreadyExists { .. } => Fault::new(400, format!("Bad request: {e}")),
        store::Error::Invalid { .. } => Fault::new(400, format!("Bad request: {e}")),
        other => {
            tracing::error!(error = %other, "store call failed");
            Fault::new(
                -32603,
                format!(
                    "Internal Server Error (contact server administrator for details): {other}"
                ),
            )
        }
    }
}

impl From<store::Error> for Fault {
    fn from(e: store::Error) -> Fault {
        store_error(&e)
    }
}

/// What a method call runs with.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The application.
    pub app: App,
    /// Who is calling.
    pub caller: Caller,
}

type R = Result<Value, Fault>;

/// Every method served, sorted (the answer of `system.listMethods`).
pub const METHODS: &[&str] = &[
    "results.get_testcase_results_csv",
    "results.get_testcase_results_yaml",
    "results.get_testjob_metadata",
    "results.get_testjob_results_csv",
    "results.get_testjob_results_yaml",
    "results.get_testjob_suites_list_csv",
    "results.get_testjob_suites_list_yaml",
    "results.get_testsuite_results_count",
    "results.get_testsuite_results_csv",
    "results.get_testsuite_results_yaml",
    "scheduler.aliases.add",
    "scheduler.aliases.delete",
    "scheduler.aliases.list",
    "scheduler.aliases.show",
    "scheduler.all_device_types",
    "scheduler.all_devices",
    "scheduler.all_jobs",
    "scheduler.cancel_job",
    "scheduler.device_types.add",
    "scheduler.device_types.aliases.add",
    "scheduler.device_types.aliases.delete",
    "scheduler.device_types.aliases.list",
    "scheduler.device_types.get_health_check",
    "scheduler.device_types.get_template",
    "scheduler.device_types.list",
    "scheduler.device_types.set_template",
    "scheduler.device_types.show",
    "scheduler.device_types.update",
    "scheduler.devices.add",
    "scheduler.devices.get_dictionary",
    "scheduler.devices.list",
    "scheduler.devices.set_dictionary",
    "scheduler.devices.show",
    "scheduler.devices.tags.add",
    "scheduler.devices.tags.delete",
    "scheduler.devices.tags.list",
    "scheduler.devices.update",
    "scheduler.export_device_dictionary",
    "scheduler.get_device_config",
    "scheduler.get_device_status",
    "scheduler.get_device_type_by_alias",
    "scheduler.get_publisher_event_socket",
    "scheduler.get_recent_jobs_for_device",
    "scheduler.get_recent_jobs_for_device_type",
    "scheduler.import_device_dictionary",
    "scheduler.job_details",
    "scheduler.job_health",
    "scheduler.job_output",
    "scheduler.job_state",
    "scheduler.jobs.cancel",
    "scheduler.jobs.configuration",
    "scheduler.jobs.definition",
    "scheduler.jobs.list",
    "scheduler.jobs.logs",
    "scheduler.jobs.queue",
    "scheduler.jobs.resubmit",
    "scheduler.jobs.show",
    "scheduler.jobs.submit",
    "scheduler.jobs.validate",
    "scheduler.pending_jobs_by_device_type",
    "scheduler.put_into_maintenance_mode",
    "scheduler.put_into_online_mode",
    "scheduler.resubmit_job",
    "scheduler.submit_job",
    "scheduler.tags.add",
    "scheduler.tags.list",
    "scheduler.tags.show",
    "scheduler.validate_yaml",
    "scheduler.workers.list",
    "scheduler.workers.show",
    "system.api_version",
    "system.getCapabilities",
    "system.listMethods",
    "system.master_config",
    "system.methodHelp",
    "system.methodSignature",
    "system.multicall",
    "system.user_can_submit_to_types",
    "system.user_can_view_devices",
    "system.user_can_view_jobs",
    "system.version",
    "system.whoami",
];

/// The positional arguments of one call.
struct Args<'a> {
    method: &'a str,
    v: Vec<Value>,
}

impl Args<'_> {
    /// Refuses calls with more than `n` arguments (Python's `TypeError`).
    fn at_most(&self, n: usize) -> Result<(), Fault> {
        if self.v.len() > n {
            return Err(Fault::new(
                -32603,
                format!(
                    "Internal Server Error (contact server administrator for details): {}() takes at most {n} positional arguments but {} were given",
                    self.method,
                    self.v.len()
                ),
            ));
        }
        Ok(())
    }

    fn missing(&self, i: usize, what: &str) -> Fault {
        Fault::new(
            -32603,
            format!(
                "Internal Server Error (contact server administrator for details): {}() missing required positional argument {}: '{what}'",
                self.method,
                i + 1
            ),
        )
    }

    fn wrong(&self, what: &str, expected: &str, got: &Value) -> Fault {
        Fault::new(
            400,
            format!(
                "Bad request: '{what}' must be {expected}, not {}",
                got.type_name()
            ),
        )
    }

    fn present(&self, i: usize) -> Option<&Value> {
        match self.v.get(i) {
            None | Some(Value::Nil) => None,
            Some(v) => Some(v),
        }
    }

    fn req(&self, i: usize, what: &str) -> Result<&Value, Fault> {
        self.v.get(i).ok_or_else(|| self.missing(i, what))
    }

    fn string(&self, i: usize, what: &str) -> Result<String, Fault> {
        match self.req(i, what)? {
            Value::String(s) => Ok(s.clone()),
            Value::Int(n) => Ok(n.to_string()),
            other => Err(self.wrong(what, "a string", other)),
        }
    }

    fn opt_string(&self, i: usize, what: &str) -> Result<Option<String>, Fault> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Int(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.wrong(what, "a string", other)),
        }
    }

    fn opt_bool(&self, i: usize, what: &str, default: bool) -> Result<bool, Fault> {
        match self.present(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(n)) => Ok(*n != 0),
            Some(other) => Err(self.wrong(what, "a boolean", other)),
        }
    }

    fn opt_bool_tri(&self, i: usize, what: &str) -> Result<Option<bool>, Fault> {
        match self.present(i) {
            None => Ok(None),
            Some(_) => self.opt_bool(i, what, false).map(Some),
        }
    }

    fn opt_int(&self, i: usize, what: &str) -> Result<Option<i64>, Fault> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.wrong(what, "an integer", &Value::String(s.clone()))),
            Some(other) => Err(self.wrong(what, "an integer", other)),
        }
    }

    /// A job id: int, or string (`"12"` or MultiNode `"12.1"`).
    fn job_id(&self, i: usize) -> Result<String, Fault> {
        match self.req(i, "job_id")? {
            Value::Int(n) => Ok(n.to_string()),
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Value::String(_) | Value::Nil => Err(Fault::new(
                400,
                "Bad request: TestJob id was not specified.",
            )),
            other => Err(self.wrong("job_id", "an integer or a string", other)),
        }
    }

    fn list(&self, i: usize, what: &str) -> Result<Vec<Value>, Fault> {
        match self.req(i, what)? {
            Value::Array(items) => Ok(items.clone()),
            _ => Err(Fault::new(
                400,
                format!("Bad request: {what} must be a list"),
            )),
        }
    }
}

async fn db<T, F>(ctx: &Ctx, f: F) -> Result<T, Fault>
where
    F: FnOnce(&mut Store) -> Result<T, Fault> + Send + 'static,
    T: Send + 'static,
{
    ctx.app
        .store()
        .call(move |s| Ok(f(s)))
        .await
        .map_err(Fault::from)?
}

fn need_user(ctx: &Ctx) -> Result<&str, Fault> {
    ctx.caller.username().ok_or_else(|| {
        Fault::new(
            401,
            "Authentication with user and token required for this API.",
        )
    })
}

fn need_superuser(ctx: &Ctx, perm: &str) -> Result<(), Fault> {
    let name = need_user(ctx)?;
    if ctx.caller.is_superuser() {
        Ok(())
    } else {
        Err(Fault::new(
            403,
            format!("User '{name}' is missing permission {perm} ."),
        ))
    }
}

fn ids(list: &[Value]) -> Value {
    Value::Array(list.to_vec())
}

fn submitted(s: Submitted) -> Value {
    match s {
        Submitted::Single(id) => Value::Int(id.0),
        Submitted::MultiNode(subs) => ids(&subs
            .into_iter()
            .map(|(_, sub)| Value::String(sub))
            .collect::<Vec<_>>()),
    }
}

fn job_key(job: &Job) -> Value {
    match &job.sub_id {
        Some(sub) => Value::str(sub.clone()),
        None => Value::Int(job.id.0),
    }
}

/// `str(datetime)` of an aware UTC datetime, as LAVA's verbose `jobs.list` returns.
fn py_str_time(t: Option<OffsetDateTime>) -> Value {
    let Some(t) = t else { return Value::Nil };
    let t = t.to_offset(time::UtcOffset::UTC);
    let base = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let mut s = t.format(base).unwrap_or_default();
    if t.microsecond() != 0 {
        s.push_str(&format!(".{:06}", t.microsecond()));
    }
    s.push_str("+00:00");
    Value::String(s)
}

fn visibility_str(v: &store::Visibility) -> String {
    match v {
        store::Visibility::Public => "Public".into(),
        store::Visibility::Personal => "Personal".into(),
        store::Visibility::Group(g) => format!("Group ({})", g.join(", ")),
    }
}

fn find_job(s: &Store, caller: &Caller, id: &str) -> Result<Job, Fault> {
    submit::find_job(s, caller, id).map_err(Fault::from)
}

fn may_view_device(caller: &Caller, d: &Device) -> bool {
    submit::may_submit_to(caller, d)
}

fn find_device(s: &Store, caller: &Caller, hostname: &str) -> Result<Device, Fault> {
    let d = s
        .device(hostname)?
        .ok_or_else(|| Fault::new(404, format!("Device '{hostname}' was not found.")))?;
    if !may_view_device(caller, &d) {
        return Err(Fault::new(
            403,
            format!(
                "Device '{hostname}' not available to user '{}'.",
                caller.display_name()
            ),
        ));
    }
    Ok(d)
}

fn find_device_type(s: &Store, caller: &Caller, name: &str) -> Result<DeviceType, Fault> {
    match s.device_type(name)? {
        Some(dt) if dt.display || caller.is_superuser() => Ok(dt),
        _ => Err(Fault::new(
            404,
            format!("Device-type '{name}' was not found."),
        )),
    }
}

fn legacy_device_status(d: &Device) -> &'static str {
    match (d.state, d.health) {
        (_, DeviceHealth::Retired) => "retired",
        (DeviceState::Reserved, _) => "reserved",
        (DeviceState::Running, _) => "running",
        (DeviceState::Idle, DeviceHealth::Good | DeviceHealth::Unknown) => "idle",
        (DeviceState::Idle, _) => "offline",
    }
}

fn health_from_upper(s: &str) -> Option<DeviceHealth> {
    DeviceHealth::ALL
        .iter()
        .copied()
        .find(|h| h.as_str().to_ascii_uppercase() == s)
}

fn worker_name(ctx: &Ctx) -> String {
    ctx.app.config().instance.clone()
}

fn binary(s: impl Into<String>) -> Value {
    Value::Base64(s.into().into_bytes())
}

fn yaml_text(v: &serde_json::Value) -> String {
    serde_norway::to_string(v).unwrap_or_default()
}

/// Test-case export dict (LAVA's `export_testcase`).
fn case_dict(c: &TestCase) -> serde_json::Value {
    let metadata: serde_json::Value = c
        .metadata
        .as_deref()
        .and_then(|m| serde_norway::from_str::<serde_json::Value>(m).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "name": c.name,
        "job": c.job.0.to_string(),
        "suite": c.suite,
        "result": c.result.as_str(),
        "measurement": c.measurement.map_or("None".to_owned(), |m| m.to_string()),
        "unit": c.units,
        "level": c.test_set.clone().unwrap_or_default(),
        "url": format!("/results/testcase/{}", c.id.0),
        "id": c.id.0.to_string(),
        "logged": py_str_time(Some(c.logged)).as_string(),
        "log_start_line": c.start_log_line.map_or("None".to_owned(), |n| n.to_string()),
        "log_end_line": c.end_log_line.map_or("None".to_owned(), |n| n.to_string()),
        "metadata": metadata,
    })
}

impl Value {
    fn as_string(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            _ => String::new(),
        }
    }
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn cases_csv(cases: &[TestCase]) -> String {
    const HEADER: [&str; 15] = [
        "job",
        "suite",
        "result",
        "measurement",
        "unit",
        "duration",
        "timeout",
        "logged",
        "level",
        "metadata",
        "url",
        "name",
        "id",
        "log_start_line",
        "log_end_line",
    ];
    let mut out = HEADER.map(csv_quote).join(",");
    out.push_str("\r\n");
    for c in cases {
        let d = case_dict(c);
        let row: Vec<String> = HEADER
            .iter()
            .map(|k| {
                let v = match d.get(*k) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Object(m)) if m.is_empty() => String::new(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                csv_quote(&v)
            })
            .collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The job for a `results.*` call: LAVA answers 401 for jobs the caller may not see.
fn results_job(s: &Store, caller: &Caller, id: &str) -> Result<Job, Fault> {
    match submit::find_job(s, caller, id) {
        Ok(job) => Ok(job),
        Err(SubmitError::JobNotFound(_)) => Err(Fault::new(404, "Specified job not found.")),
        Err(SubmitError::JobHidden { .. }) => Err(Fault::new(
            401,
            format!("Permission denied for user to job {id}"),
        )),
        Err(e) => Err(e.into()),
    }
}

fn job_show(job: &Job) -> Value {
    Value::object([
        ("id", job_key(job)),
        ("description", Value::str(job.description.clone())),
        ("device", Value::opt_str(job.actual_device.clone())),
        (
            "device_type",
            Value::opt_str(job.requested_device_type.clone()),
        ),
        ("health_check", Value::Bool(job.health_check)),
        ("pipeline", Value::Bool(true)),
        ("health", Value::str(job.health.as_str())),
        ("state", Value::str(job.state.as_str())),
        ("submitter", Value::str(job.submitter.clone())),
        ("submit_time", Value::datetime(job.submit_time)),
        ("start_time", Value::opt_datetime(job.start_time)),
        ("end_time", Value::opt_datetime(job.end_time)),
        (
            "tags",
            Value::Array(job.tags.iter().cloned().map(Value::String).collect()),
        ),
        ("visibility", Value::str(visibility_str(&job.visibility))),
        (
            "failure_comment",
            Value::opt_str(job.failure_comment.clone()),
        ),
    ])
}

fn job_details(job: &Job) -> Value {
    Value::object([
        ("id", Value::Int(job.id.0)),
        ("sub_id", Value::str(job.sub_id.clone().unwrap_or_default())),
        ("target_group", Value::opt_str(job.target_group.clone())),
        ("submitter_username", Value::str(job.submitter.clone())),
        ("description", Value::str(job.description.clone())),
        ("definition", Value::str(job.definition.clone())),
        (
            "original_definition",
            Value::str(job.original_definition.clone()),
        ),
        (
            "multinode_definition",
            Value::str(job.multinode_definition.clone()),
        ),
        ("priority", Value::Int(i64::from(job.priority.value()))),
        ("health_check", Value::Bool(job.health_check)),
        (
            "is_public",
            Value::Bool(job.visibility == store::Visibility::Public),
        ),
        (
            "requested_device_type_id",
            Value::opt_str(job.requested_device_type.clone()),
        ),
        (
            "actual_device_id",
            Value::opt_str(job.actual_device.clone()),
        ),
        ("submit_time", Value::datetime(job.submit_time)),
        ("start_time", Value::opt_datetime(job.start_time)),
        ("end_time", Value::opt_datetime(job.end_time)),
        (
            "failure_comment",
            Value::opt_str(job.failure_comment.clone()),
        ),
        ("pipeline_compatibility", Value::Int(0)),
        (
            "status",
            Value::str(job.state.legacy_status(job.health).as_str()),
        ),
        ("state", Value::str(job.state.as_str())),
        ("health", Value::str(job.health.as_str())),
        (
            "absolute_url",
            Value::str(format!("/scheduler/job/{}", job.id.0)),
        ),
        ("is_pipeline", Value::Bool(true)),
    ])
}

fn validate_result(definition: &str, mode: jobdef::Mode) -> Value {
    match jobdef::parse_str_mode(definition, mode) {
        Ok(_) => Value::Struct(Vec::new()),
        Err(problems) => {
            let Some(p) = problems.first() else {
                return Value::Struct(Vec::new());
            };
            let mut parts: Vec<String> = Vec::new();
            for seg in &p.path.0 {
                match seg {
                    jobdef::error::Segment::Key(k) => parts.push(k.clone()),
                    jobdef::error::Segment::Index(n) => match parts.last_mut() {
                        Some(last) => last.push_str(&format!("[{n}]")),
                        None => parts.push(format!("[{n}]")),
                    },
                }
            }
            let path: Vec<String> = parts
                .iter()
                .map(|s| format!("'{}'", s.replace('\'', "\\'")))
                .collect();
            Value::object([
                ("path", Value::str(format!("[{}]", path.join(", ")))),
                ("msg", Value::str(p.describe())),
            ])
        }
    }
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = R> + Send + 'a>>;

/// Runs method `name` with `params` for `ctx`.
pub fn dispatch<'a>(ctx: &'a Ctx, name: &'a str, params: Vec<Value>) -> BoxFut<'a> {
    Box::pin(async move {
        let a = Args {
            method: name,
            v: params,
        };
        call(ctx, name, a).await
    })
}

#[allow(clippy::too_many_lines)]
async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        // ----- system.* -----
        "system.listMethods" => Ok(Value::Array(
            METHODS.iter().map(|m| Value::str(*m)).collect(),
        )),
        "system.methodHelp" => {
            let m = a.string(0, "method_name")?;
            Ok(Value::str(if METHODS.contains(&m.as_str()) {
                format!("{m}: see LAVA 2023.01 XML-RPC documentation")
            } else {
                String::new()
            }))
        }
        "system.methodSignature" => {
            let m = a.string(0, "method_name")?;
            Ok(match m.as_str() {
                "system.methodHelp" => Value::Array(vec![Value::str("str"), Value::str("str")]),
                "system.multicall" => Value::Array(vec![Value::str("array"), Value::str("array")]),
                m if METHODS.contains(&m) => Value::str("undef"),
                _ => Value::str(""),
            })
        }
        "system.multicall" => {
            let calls = match a.req(0, "subcalls")? {
                Value::Array(c) => c.clone(),
                _ => {
                    return Err(Fault::new(
                        -32602,
                        "system.multicall expected a list of methods to call",
                    ));
                }
            };
            let mut out = Vec::with_capacity(calls.len());
            for sub in calls {
                let r = multicall_one(ctx, sub).await;
                out.push(match r {
                    Ok(v) => Value::Array(vec![v]),
                    Err(f) => Value::object([
                        ("faultCode", Value::Int(f.code)),
                        ("faultString", Value::str(f.message)),
                    ]),
                });
            }
            Ok(Value::Array(out))
        }
        "system.getCapabilities" => {
            let spec = |url: &str, v: i64| {
                Value::object([("specUrl", Value::str(url)), ("specVersion", Value::Int(v))])
            };
            Ok(Value::object([
                (
                    "introspect",
                    spec(
                        "http://xmlrpc-c.sourceforge.net/xmlrpc-c/introspection.html",
                        1,
                    ),
                ),
                (
                    "faults_interop",
                    spec(
                        "http://xmlrpc-epi.sourceforge.net/specs/rfc.fault_codes.php",
                        20010516,
                    ),
                ),
                (
                    "auth_token",
                    spec("https://validation.linaro.org/api/help/", 1),
                ),
            ]))
        }
        "system.version" => Ok(Value::str("2023.01")),
        "system.api_version" => Ok(Value::Int(2)),
        "system.whoami" => Ok(Value::opt_str(caller.username().map(str::to_owned))),
        "system.master_config" => {
            let cfg = ctx.app.config();
            Ok(Value::object([
                ("EVENT_TOPIC", Value::str(cfg.events.topic.clone())),
                (
                    "EVENT_SOCKET",
                    Value::str(format!("tcp://*:{}", cfg.events.zmq_port)),
                ),
                ("EVENT_NOTIFICATION", Value::Bool(true)),
                ("LOG_SIZE_LIMIT", Value::Int(10)),
            ]))
        }
        "system.user_can_view_jobs"
        | "system.user_can_view_devices"
        | "system.user_can_submit_to_types" => {
            a.at_most(2)?;
            let list = a.list(0, "job_list")?;
            let target = target_user(ctx, &a).await?;
            let name = name.to_owned();
            db(ctx, move |s| {
                let mut out = Vec::new();
                match name.as_str() {
                    "system.user_can_view_jobs" => {
                        for v in list {
                            let key = match &v {
                                Value::Int(n) => n.to_string(),
                                Value::String(s) => s.clone(),
                                _ => continue,
                            };
                            match submit::find_job(s, &target, &key) {
                                Ok(_) => out.push((key, Value::Bool(true))),
                                Err(SubmitError::JobHidden { .. }) => {
                                    out.push((key, Value::Bool(false)))
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    "system.user_can_view_devices" => {
                        let devices = s.devices(true)?;
                        let mut per_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                        for v in list {
                            let Value::String(h) = v else { continue };
                            if let Some(d) = devices.iter().find(|d| d.hostname == h) {
                                per_type.entry(d.device_type.clone()).or_default().push(
                                    Value::Struct(vec![(
                                        d.hostname.clone(),
                                        Value::object([
                                            ("visible", Value::Bool(may_view_device(&target, d))),
                                            ("is_pipeline", Value::Bool(true)),
                                            ("exclusive", Value::Bool(true)),
                                        ]),
                                    )]),
                                );
                            }
                        }
                        out = per_type
                            .into_iter()
                            .map(|(k, v)| (k, Value::Array(v)))
                            .collect();
                    }
                    _ => {
                        let devices = s.devices(false)?;
                        for v in list {
                            let Value::String(t) = v else { continue };
                            if let Some(dt) = s.device_type(&t)? {
                                let ok = (dt.display || target.is_superuser())
                                    && devices.iter().any(|d| {
                                        d.device_type == dt.name
                                            && submit::may_submit_to(&target, d)
                                    });
                                out.push((t, Value::Bool(ok)));
                            }
                        }
                    }
                }
                Ok(Value::Struct(out))
            })
            .await
        }

        // ----- scheduler.jobs.* and legacy submission -----
        "scheduler.jobs.submit" | "scheduler.submit_job" => {
            a.at_most(1)?;
            let def = a.string(0, "job_data")?;
            Ok(submitted(submit::submit(&ctx.app, &caller, &def).await?))
        }
        "scheduler.jobs.resubmit" | "scheduler.resubmit_job" => {
            a.at_most(1)?;
            let id = a.job_id(0)?;
            Ok(submitted(submit::resubmit(&ctx.app, &caller, &id).await?))
        }
        "scheduler.jobs.cancel" | "scheduler.cancel_job" => {
            a.at_most(1)?;
            let id = a.job_id(0)?;
            submit::cancel(&ctx.app, &caller, &id).await?;
            Ok(Value::Bool(true))
        }
        "scheduler.jobs.validate" => {
            a.at_most(2)?;
            let def = a.string(0, "definition")?;
            let mode = if a.opt_bool(1, "strict", false)? {
                jobdef::Mode::Strict
            } else {
                jobdef::Mode::Lenient
            };
            tokio::task::spawn_blocking(move || validate_result(&def, mode))
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))
        }
        "scheduler.validate_yaml" => {
            a.at_most(1)?;
            let def = a.string(0, "yaml_string")?;
            match tokio::task::spawn_blocking(move || jobdef::parse_str(&def).map(|_| ()))
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?
            {
                Ok(()) => Ok(Value::Nil),
                Err(problems) => Err(Fault::new(
                    400,
                    format!(
                        "Invalid YAML submission: {}",
                        problems
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ),
                )),
            }
        }
        "scheduler.jobs.list" => {
            a.at_most(6)?;
            let state = match a.opt_string(0, "state")? {
                None => None,
                Some(s) => Some(
                    s.parse::<JobState>()
                        .map_err(|_| Fault::new(400, format!("Invalid state '{s}'")))?,
                ),
            };
            let health = match a.opt_string(1, "health")? {
                None => None,
                Some(h) => Some(
                    h.parse::<JobHealth>()
                        .map_err(|_| Fault::new(400, format!("Invalid health '{h}'")))?,
                ),
            };
            let start = a.opt_int(2, "start")?.unwrap_or(0).max(0);
            let limit = a.opt_int(3, "limit")?.unwrap_or(25).clamp(0, 100);
            let since = a.opt_int(4, "since")?.unwrap_or(0);
            let verbose = a.opt_bool(5, "verbose", false)?;
            let filter = JobFilter {
                states: state.into_iter().collect(),
                health,
                ended_since: (since > 0)
                    .then(|| OffsetDateTime::now_utc() - time::Duration::minutes(since)),
                viewer: caller.viewer(),
                order: JobOrder {
                    field: JobOrderField::Id,
                    descending: true,
                },
                offset: u64::try_from(start).unwrap_or(0),
                limit: Some(u64::try_from(limit).unwrap_or(0)),
                ..JobFilter::default()
            };
            let jobs = db(ctx, move |s| Ok(s.jobs(&filter)?)).await?;
            Ok(Value::Array(
                jobs.iter()
                    .map(|j| {
                        let mut m = vec![
                            ("id".to_owned(), job_key(j)),
                            ("description".to_owned(), Value::str(j.description.clone())),
                            (
                                "device_type".to_owned(),
                                Value::opt_str(j.requested_device_type.clone()),
                            ),
                            ("health".to_owned(), Value::str(j.health.as_str())),
                            ("state".to_owned(), Value::str(j.state.as_str())),
                            ("submitter".to_owned(), Value::str(j.submitter.clone())),
                        ];
                        if verbose {
                            m.push((
                                "actual_device".into(),
                                Value::opt_str(j.actual_device.clone()),
                            ));
                            m.push(("start_time".into(), py_str_time(j.start_time)));
                            m.push(("end_time".into(), py_str_time(j.end_time)));
                            m.push((
                                "error_msg".into(),
                                Value::opt_str(j.failure_comment.clone()),
                            ));
                            m.push((
                                "error_type".into(),
                                Value::opt_str(j.error_type.map(|e| e.as_str())),
                            ));
                        }
                        Value::Struct(m)
                    })
                    .collect(),
            ))
        }
        "scheduler.jobs.queue" => {
            a.at_most(3)?;
            let types: Vec<String> = match a.present(0) {
                None => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
                Some(other) => return Err(a.wrong("device_types", "a list", other)),
            };
            let start = a.opt_int(1, "start")?.unwrap_or(0).max(0);
            let limit = a.opt_int(2, "limit")?.unwrap_or(25).clamp(0, 100);
            let filter = JobFilter {
                states: vec![JobState::Submitted],
                requested_device_types: types,
                viewer: caller.viewer(),
                order: JobOrder {
                    field: JobOrderField::Id,
                    descending: true,
                },
                offset: u64::try_from(start).unwrap_or(0),
                limit: Some(u64::try_from(limit).unwrap_or(0)),
                ..JobFilter::default()
            };
            let jobs = db(ctx, move |s| Ok(s.jobs(&filter)?)).await?;
            Ok(Value::Array(
                jobs.iter()
                    .map(|j| {
                        Value::object([
                            ("id", job_key(j)),
                            ("description", Value::str(j.description.clone())),
                            (
                                "requested_device_type",
                                Value::opt_str(j.requested_device_type.clone()),
                            ),
                            ("submitter", Value::str(j.submitter.clone())),
                        ])
                    })
                    .collect(),
            ))
        }
        "scheduler.jobs.show"
        | "scheduler.jobs.definition"
        | "scheduler.job_details"
        | "scheduler.job_health"
        | "scheduler.job_state"
        | "scheduler.jobs.configuration" => {
            a.at_most(1)?;
            let id = a.job_id(0)?;
            let job = db(ctx, move |s| find_job(s, &caller, &id)).await?;
            Ok(match name {
                "scheduler.jobs.show" => job_show(&job),
                "scheduler.jobs.definition" => Value::str(if job.multinode_definition.is_empty() {
                    job.original_definition.clone()
                } else {
                    job.multinode_definition.clone()
                }),
                "scheduler.job_details" => job_details(&job),
                "scheduler.jobs.configuration" => {
                    if !matches!(
                        job.state,
                        JobState::Running | JobState::Canceling | JobState::Finished
                    ) {
                        return Err(Fault::new(
                            404,
                            format!("Job '{}' has not started yet", job.id.0),
                        ));
                    }
                    let dir = ctx.app.config().job_dir(job.id);
                    let read = |f: &str| match std::fs::read(dir.join(f)) {
                        Ok(b) => Value::Base64(b),
                        Err(_) => Value::Nil,
                    };
                    Value::Array(vec![
                        Value::Base64(job.definition.clone().into_bytes()),
                        read("device.yaml"),
                        read("dispatcher.yaml"),
                        read("env.yaml"),
                        read("env-dut.yaml"),
                    ])
                }
                _ => {
                    let (k, v) = if name == "scheduler.job_health" {
                        ("job_health", job.health.as_str())
                    } else {
                        ("job_state", job.state.as_str())
                    };
                    let mut m = vec![
                        ("job_id".to_owned(), Value::Int(job.id.0)),
                        (k.to_owned(), Value::str(v)),
                    ];
                    if let Some(sub) = &job.sub_id {
                        m.push(("sub_id".into(), Value::str(sub.clone())));
                    }
                    Value::Struct(m)
                }
            })
        }
        "scheduler.jobs.logs" => {
            a.at_most(3)?;
            let id = a.job_id(0)?;
            let start = u64::try_from(a.opt_int(1, "start")?.unwrap_or(0).max(0)).unwrap_or(0);
            let end = a
                .opt_int(2, "end")?
                .map(|e| u64::try_from(e.max(0)).unwrap_or(0));
            db(ctx, move |s| {
                let job = find_job(s, &caller, &id)?;
                let finished = job.state == JobState::Finished;
                let data = match s.job_log(job.id)? {
                    Some(entry) => store::joblog::read_text(&entry.path, start, end)
                        .map_err(|e| Fault::new(-32603, format!("Internal Server Error (contact server administrator for details): {e}")))?,
                    None => String::new(),
                };
                let data = if data.is_empty() { "[]".to_owned() } else { data };
                Ok(Value::Array(vec![Value::Bool(finished), binary(data)]))
            })
            .await
        }
        "scheduler.job_output" => {
            a.at_most(2)?;
            let id = a.job_id(0)?;
            let offset = u64::try_from(a.opt_int(1, "offset")?.unwrap_or(0).max(0)).unwrap_or(0);
            db(ctx, move |s| {
                let job = find_job(s, &caller, &id)?;
                let entry = s
                    .job_log(job.id)?
                    .ok_or_else(|| Fault::new(404, "Job output not found."))?;
                let bytes = std::fs::read(&entry.path)
                    .map_err(|_| Fault::new(404, "Job output not found."))?;
                let from = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                Ok(Value::Base64(
                    bytes.get(from..).unwrap_or_default().to_vec(),
                ))
            })
            .await
        }
        "scheduler.all_jobs" => {
            let filter = JobFilter {
                states: vec![
                    JobState::Submitted,
                    JobState::Scheduling,
                    JobState::Scheduled,
                    JobState::Running,
                    JobState::Canceling,
                ],
                viewer: caller.viewer(),
                ..JobFilter::default()
            };
            let jobs = db(ctx, move |s| Ok(s.jobs(&filter)?)).await?;
            Ok(Value::Array(
                jobs.iter()
                    .map(|j| {
                        Value::Array(vec![
                            Value::Int(j.id.0),
                            Value::str(j.description.clone()),
                            Value::str(j.state.legacy_status(j.health).as_str().to_lowercase()),
                            Value::opt_str(j.actual_device.clone()),
                            Value::opt_str(j.requested_device_type.clone()),
                            Value::opt_str(j.sub_id.clone()),
                        ])
                    })
                    .collect(),
            ))
        }
        "scheduler.pending_jobs_by_device_type" => {
            a.at_most(1)?;
            let all = a.opt_bool(0, "all", false)?;
            db(ctx, move |s| {
                let mut counts: BTreeMap<String, i64> = BTreeMap::new();
                for dt in s.device_types()? {
                    if all || dt.display {
                        counts.insert(dt.name, 0);
                    }
                }
                let filter = JobFilter {
                    states: vec![JobState::Submitted],
                    ..JobFilter::default()
                };
                for j in s.jobs(&filter)? {
                    if let Some(c) = j.requested_device_type.and_then(|t| counts.get_mut(&t)) {
                        *c += 1;
                    }
                }
                Ok(Value::Struct(
                    counts
                        .into_iter()
                        .map(|(k, v)| (k, Value::Int(v)))
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.get_recent_jobs_for_device" | "scheduler.get_recent_jobs_for_device_type" => {
            a.at_most(3)?;
            let target = a.opt_string(0, "device")?.unwrap_or_default();
            if target.is_empty() {
                let what = if name.ends_with("device") {
                    "device"
                } else {
                    "device_type"
                };
                return Err(Fault::new(
                    400,
                    format!("Bad request: {what} was not specified."),
                ));
            }
            let count = a.opt_int(1, "count")?.unwrap_or(1);
            if count < 0 {
                return Err(Fault::new(400, "Bad request: count must not be negative."));
            }
            let restrict = a.opt_bool(2, "restrict_to_user", false)?;
            let by_device = name.ends_with("device");
            db(ctx, move |s| {
                let mut filter = JobFilter {
                    states: vec![JobState::Finished],
                    viewer: caller.viewer(),
                    order: JobOrder {
                        field: JobOrderField::EndTime,
                        descending: true,
                    },
                    limit: Some(u64::try_from(count).unwrap_or(0)),
                    submitter: if restrict {
                        caller.username().map(str::to_owned)
                    } else {
                        None
                    },
                    ..JobFilter::default()
                };
                if by_device {
                    find_device(s, &caller, &target)?;
                    filter.actual_device = Some(target);
                } else {
                    find_device_type(s, &caller, &target)?;
                    filter.requested_device_types = vec![target];
                }
                Ok(Value::Array(
                    s.jobs(&filter)?
                        .iter()
                        .map(|j| {
                            let mut m = vec![
                                ("id".to_owned(), Value::Int(j.id.0)),
                                ("description".to_owned(), Value::str(j.description.clone())),
                                (
                                    "status".to_owned(),
                                    Value::str(j.state.legacy_status(j.health).as_str()),
                                ),
                            ];
                            if !by_device {
                                m.push(("device".into(), Value::opt_str(j.actual_device.clone())));
                            }
                            Value::Struct(m)
                        })
                        .collect(),
                ))
            })
            .await
        }

        // ----- devices -----
        "scheduler.all_devices" => {
            db(ctx, move |s| {
                Ok(Value::Array(
                    s.devices(false)?
                        .iter()
                        .filter(|d| may_view_device(&caller, d))
                        .map(|d| {
                            Value::Array(vec![
                                Value::str(d.hostname.clone()),
                                Value::str(d.device_type.clone()),
                                Value::str(legacy_device_status(d)),
                                d.current_job.map_or(Value::Nil, |j| Value::Int(j.0)),
                                Value::Bool(true),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.all_device_types" => {
            db(ctx, move |s| {
                let devices = s.devices(false)?;
                Ok(Value::Array(
                    s.device_types()?
                        .iter()
                        .filter(|dt| dt.display || caller.is_superuser())
                        .map(|dt| {
                            let of: Vec<&Device> = devices
                                .iter()
                                .filter(|d| d.device_type == dt.name)
                                .collect();
                            let idle = of
                                .iter()
                                .filter(|d| legacy_device_status(d) == "idle")
                                .count();
                            let busy = of.iter().filter(|d| d.state != DeviceState::Idle).count();
                            let offline = of
                                .iter()
                                .filter(|d| legacy_device_status(d) == "offline")
                                .count();
                            Value::object([
                                ("name", Value::str(dt.name.clone())),
                                ("idle", Value::Int(i64::try_from(idle).unwrap_or(0))),
                                ("busy", Value::Int(i64::try_from(busy).unwrap_or(0))),
                                ("offline", Value::Int(i64::try_from(offline).unwrap_or(0))),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.get_device_status" => {
            a.at_most(1)?;
            let h = a.opt_string(0, "hostname")?.unwrap_or_default();
            if h.is_empty() {
                return Err(Fault::new(400, "Bad request: Hostname was not specified."));
            }
            db(ctx, move |s| {
                let d = find_device(s, &caller, &h)?;
                Ok(Value::object([
                    ("hostname", Value::str(d.hostname.clone())),
                    ("status", Value::str(legacy_device_status(&d))),
                    ("job", d.current_job.map_or(Value::Nil, |j| Value::Int(j.0))),
                    ("offline_since", Value::Nil),
                    ("offline_by", Value::Nil),
                    ("is_pipeline", Value::Bool(true)),
                ]))
            })
            .await
        }
        "scheduler.put_into_maintenance_mode" | "scheduler.put_into_online_mode" => {
            a.at_most(3)?;
            let h = a.opt_string(0, "hostname")?.unwrap_or_default();
            if h.is_empty() {
                return Err(Fault::new(400, "Bad request: Hostname was not specified."));
            }
            if a.opt_string(1, "reason")?.unwrap_or_default().is_empty() {
                return Err(Fault::new(400, "Bad request: Reason was not specified."));
            }
            need_user(ctx)?;
            let health = if name.ends_with("maintenance_mode") {
                DeviceHealth::Maintenance
            } else {
                DeviceHealth::Unknown
            };
            let changes = db(ctx, move |s| {
                find_device(s, &caller, &h)?;
                if !caller.is_superuser() {
                    return Err(Fault::new(
                        403,
                        format!(
                            "User '{}' is missing permission lava_scheduler_app.change_device .",
                            caller.display_name()
                        ),
                    ));
                }
                Ok(s.set_device_health(&h, health)?)
            })
            .await?;
            ctx.app.changed(&changes);
            Ok(Value::Nil)
        }
        "scheduler.devices.list" => {
            a.at_most(2)?;
            let show_all = a.opt_bool(0, "show_all", false)?;
            a.opt_bool(1, "offline_info", false)?;
            db(ctx, move |s| {
                let mut devices = s.devices(show_all)?;
                devices.sort_by(|x, y| x.hostname.cmp(&y.hostname));
                Ok(Value::Array(
                    devices
                        .iter()
                        .filter(|d| may_view_device(&caller, d))
                        .map(|d| {
                            Value::object([
                                ("hostname", Value::str(d.hostname.clone())),
                                ("type", Value::str(d.device_type.clone())),
                                ("health", Value::str(d.health.as_str())),
                                ("state", Value::str(d.state.as_str())),
                                (
                                    "current_job",
                                    d.current_job.map_or(Value::Nil, |j| Value::Int(j.0)),
                                ),
                                ("pipeline", Value::Bool(true)),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.devices.show" => {
            a.at_most(1)?;
            let h = a.string(0, "hostname")?;
            let worker = worker_name(ctx);
            db(ctx, move |s| {
                let d = find_device(s, &caller, &h)?;
                let health_job = s
                    .device_type(&d.device_type)?
                    .is_some_and(|dt| !dt.disable_health_check);
                Ok(Value::object([
                    ("hostname", Value::str(d.hostname.clone())),
                    ("device_type", Value::str(d.device_type.clone())),
                    ("health", Value::str(d.health.as_str())),
                    ("state", Value::str(d.state.as_str())),
                    ("health_job", Value::Bool(health_job)),
                    (
                        "description",
                        Value::str(d.description.clone().unwrap_or_default()),
                    ),
                    ("pipeline", Value::Bool(true)),
                    ("has_device_dict", Value::Bool(d.dictionary.is_some())),
                    (
                        "worker",
                        Value::str(d.worker_name.clone().unwrap_or(worker)),
                    ),
                    (
                        "current_job",
                        d.current_job.map_or(Value::Nil, |j| Value::Int(j.0)),
                    ),
                    (
                        "tags",
                        Value::Array(d.tags.iter().cloned().map(Value::String).collect()),
                    ),
                ]))
            })
            .await
        }
        "scheduler.devices.add" => {
            a.at_most(8)?;
            let hostname = a.string(0, "hostname")?;
            let type_name = a.string(1, "type_name")?;
            let worker = a.string(2, "worker_hostname")?;
            let user = a.opt_string(3, "user_name")?;
            let group = a.opt_string(4, "group_name")?;
            let public = a.opt_bool(5, "public", true)?;
            let health = match a.opt_string(6, "health")? {
                None => DeviceHealth::Unknown,
                Some(h) => {
                    health_from_upper(&h).ok_or_else(|| Fault::new(400, "Invalid health"))?
                }
            };
            let description = a.opt_string(7, "description")?;
            need_superuser(ctx, "lava_scheduler_app.add_device")?;
            if worker != worker_name(ctx) {
                return Err(Fault::new(404, format!("Unable to find worker '{worker}'")));
            }
            let changes_hint = hostname.clone();
            db(ctx, move |s| {
                if s.device_type(&type_name)?.is_none() {
                    return Err(Fault::new(
                        404,
                        format!("Unable to find device-type '{type_name}'"),
                    ));
                }
                if s.device(&hostname)?.is_some() {
                    return Err(Fault::new(400, "Bad request: device already exists?"));
                }
                let mut new = NewDevice::new(hostname, type_name);
                new.worker_name = Some(worker);
                new.owner_user = user;
                new.owner_group = group;
                new.is_public = public;
                new.health = health;
                new.description = description;
                s.create_device(&new)?;
                Ok(())
            })
            .await?;
            tracing::info!(device = %changes_hint, "device added");
            ctx.app.wake_scheduler();
            Ok(Value::Nil)
        }
        "scheduler.devices.update" => {
            a.at_most(8)?;
            let hostname = a.string(0, "hostname")?;
            let worker = a.opt_string(1, "worker_hostname")?;
            let user = a.opt_string(2, "user_name")?;
            let group = a.opt_string(3, "group_name")?;
            let public = a.opt_bool_tri(4, "public")?;
            let health = match a.opt_string(5, "health")? {
                None => None,
                Some(h) => Some(
                    health_from_upper(&h)
                        .ok_or_else(|| Fault::new(400, format!("Health '{h}' is invalid")))?,
                ),
            };
            let description = a.opt_string(6, "description")?;
            let device_type = a.opt_string(7, "device_type")?;
            need_superuser(ctx, "lava_scheduler_app.change_device")?;
            let changes = db(ctx, move |s| {
                find_device(s, &caller, &hostname)?;
                let update = DeviceUpdate {
                    device_type,
                    description: description.map(Some),
                    worker_name: worker.map(Some),
                    is_public: public,
                    owner_user: user.map(Some),
                    owner_group: group.map(Some),
                };
                s.update_device(&hostname, &update)?;
                match health {
                    Some(h) => Ok(s.set_device_health(&hostname, h)?),
                    None => Ok(store::Changes::default()),
                }
            })
            .await?;
            ctx.app.changed(&changes);
            ctx.app.wake_scheduler();
            Ok(Value::Nil)
        }
        "scheduler.devices.get_dictionary"
        | "scheduler.get_device_config"
        | "scheduler.export_device_dictionary" => {
            a.at_most(3)?;
            let h = a.string(0, "hostname")?;
            let (render, ctx_arg) = match name {
                "scheduler.devices.get_dictionary" => {
                    (a.opt_bool(1, "render", false)?, a.opt_string(2, "context")?)
                }
                "scheduler.get_device_config" => (true, a.opt_string(1, "context")?),
                _ => (false, None),
            };
            let legacy_config = name == "scheduler.get_device_config";
            let dict = db(ctx, move |s| {
                let d = match find_device(s, &caller, &h) {
                    Err(f) if legacy_config && f.code == 403 => {
                        return Err(Fault::new(
                            401,
                            format!("Permission denied for user to device {h}"),
                        ));
                    }
                    other => other?,
                };
                d.dictionary.ok_or_else(|| {
                    Fault::new(404, format!("Device '{h}' does not have a configuration"))
                })
            })
            .await?;
            if !render {
                return Ok(binary(dict));
            }
            let context = match ctx_arg {
                None => crate::devicetype::Context::new(),
                Some(text) => match serde_norway::from_str::<serde_json::Value>(&text) {
                    Ok(serde_json::Value::Object(m)) => m,
                    Ok(serde_json::Value::Null) => crate::devicetype::Context::new(),
                    _ => {
                        return Err(Fault::new(
                            400,
                            "Job Context '{}' is not valid: not a mapping",
                        ));
                    }
                },
            };
            let templates = ctx.app.templates().clone();
            let rendered =
                tokio::task::spawn_blocking(move || templates.render_yaml(&dict, &context))
                    .await
                    .map_err(|e| Fault::new(-32603, e.to_string()))?
                    .map_err(|e| {
                        Fault::new(
                            400,
                            format!("Unable to render the device configuration: {e}"),
                        )
                    })?;
            Ok(binary(rendered))
        }
        "scheduler.devices.set_dictionary" | "scheduler.import_device_dictionary" => {
            a.at_most(2)?;
            let h = a.string(0, "hostname")?;
            let dict = a.string(1, "dictionary")?;
            need_superuser(ctx, "lava_scheduler_app.change_device")?;
            let legacy = name == "scheduler.import_device_dictionary";
            let h2 = h.clone();
            db(ctx, move |s| {
                find_device(s, &caller, &h2)?;
                s.set_device_dictionary(&h2, &dict)?;
                Ok(())
            })
            .await?;
            ctx.app.wake_scheduler();
            Ok(if legacy {
                Value::str(format!("Device dictionary updated for {h}"))
            } else {
                Value::Bool(true)
            })
        }
        "scheduler.devices.tags.add"
        | "scheduler.devices.tags.delete"
        | "scheduler.devices.tags.list" => {
            let h = a.string(0, "hostname")?;
            if name.ends_with("list") {
                a.at_most(1)?;
                return db(ctx, move |s| {
                    let d = find_device(s, &caller, &h)?;
                    Ok(Value::Array(
                        d.tags.into_iter().map(Value::String).collect(),
                    ))
                })
                .await;
            }
            a.at_most(2)?;
            let tag = a.string(1, "name")?;
            need_superuser(ctx, "lava_scheduler_app.change_device")?;
            let add = name.ends_with("add");
            db(ctx, move |s| {
                let d = find_device(s, &caller, &h)?;
                let exists = s.tags()?.iter().any(|t| t.name == tag);
                if add {
                    if !exists {
                        s.create_tag(&tag, None)?;
                    }
                    if !d.tags.contains(&tag) {
                        s.add_device_tag(&h, &tag)?;
                    }
                } else {
                    if !exists {
                        return Err(Fault::new(404, format!("Tag '{tag}' was not found.")));
                    }
                    s.remove_device_tag(&h, &tag)?;
                }
                Ok(Value::Nil)
            })
            .await
        }

        // ----- device types -----
        "scheduler.device_types.list" => {
            a.at_most(1)?;
            let show_all = a.opt_bool(0, "show_all", false)?;
            let templates = ctx.app.templates().clone();
            let template_names = tokio::task::spawn_blocking(move || templates.device_types())
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?
                .unwrap_or_default();
            db(ctx, move |s| {
                let devices = s.devices(false)?;
                let mut out = Vec::new();
                let types = s.device_types()?;
                for dt in types
                    .iter()
                    .filter(|dt| dt.display || caller.is_superuser())
                {
                    let n = devices.iter().filter(|d| d.device_type == dt.name).count();
                    out.push(Value::object([
                        ("name", Value::str(dt.name.clone())),
                        ("devices", Value::Int(i64::try_from(n).unwrap_or(0))),
                        ("installed", Value::Bool(true)),
                        ("template", Value::Bool(template_names.contains(&dt.name))),
                    ]));
                }
                if show_all {
                    for t in template_names
                        .iter()
                        .filter(|t| !types.iter().any(|dt| &dt.name == *t))
                    {
                        out.push(Value::object([
                            ("name", Value::str(t.clone())),
                            ("devices", Value::Int(0)),
                            ("installed", Value::Bool(false)),
                            ("template", Value::Bool(true)),
                        ]));
                    }
                }
                Ok(Value::Array(out))
            })
            .await
        }
        "scheduler.device_types.show" => {
            a.at_most(1)?;
            let n = a.string(0, "name")?;
            let templates = ctx.app.templates().clone();
            let tn = n.clone();
            let has_template =
                tokio::task::spawn_blocking(move || templates.template_source(&tn).is_ok())
                    .await
                    .unwrap_or(false);
            db(ctx, move |s| {
                let dt = find_device_type(s, &caller, &n)?;
                let aliases: Vec<Value> = s
                    .aliases()?
                    .into_iter()
                    .filter(|(_, t)| *t == dt.name)
                    .map(|(a, _)| Value::String(a))
                    .collect();
                let devices: Vec<Value> = s
                    .devices(false)?
                    .into_iter()
                    .filter(|d| d.device_type == dt.name && may_view_device(&caller, d))
                    .map(|d| Value::String(d.hostname))
                    .collect();
                Ok(Value::object([
                    ("name", Value::str(dt.name.clone())),
                    ("description", Value::opt_str(dt.description.clone())),
                    ("display", Value::Bool(dt.display)),
                    ("health_disabled", Value::Bool(dt.disable_health_check)),
                    (
                        "health_denominator",
                        Value::str(dt.health_denominator.as_str()),
                    ),
                    (
                        "health_frequency",
                        Value::Int(i64::from(dt.health_frequency)),
                    ),
                    ("aliases", Value::Array(aliases)),
                    ("devices", Value::Array(devices)),
                    ("default_template", Value::Bool(has_template)),
                ]))
            })
            .await
        }
        "scheduler.device_types.add" | "scheduler.device_types.update" => {
            let is_add = name.ends_with("add");
            a.at_most(if is_add { 6 } else { 7 })?;
            let n = a.string(0, "name")?;
            let description = a.opt_string(1, "description")?;
            let display = a.opt_bool_tri(2, "display")?;
            let owners_only = a.opt_bool_tri(3, "owners_only")?;
            let freq = a.opt_int(4, "health_frequency")?;
            let denom = match a.opt_string(5, "health_denominator")? {
                None => None,
                Some(d) => Some(d.parse::<HealthDenominator>().map_err(|_| {
                    Fault::new(
                        400,
                        format!("Bad request: invalid health_denominator '{d}'"),
                    )
                })?),
            };
            let disabled = if is_add {
                None
            } else {
                a.opt_bool_tri(6, "health_disabled")?
            };
            let freq = match freq {
                None => None,
                Some(f) => Some(
                    u32::try_from(f)
                        .map_err(|_| Fault::new(400, "Bad request: invalid health_frequency"))?,
                ),
            };
            need_superuser(ctx, "lava_scheduler_app.change_devicetype")?;
            db(ctx, move |s| {
                if is_add {
                    if s.device_type(&n)?.is_some() {
                        return Err(Fault::new(
                            400,
                            "Bad request: device-type name is already used.",
                        ));
                    }
                    let mut new = NewDeviceType::named(n);
                    new.description = description;
                    new.display = display.unwrap_or(true);
                    new.owners_only = owners_only.unwrap_or(false);
                    if let Some(f) = freq {
                        new.health_frequency = f;
                    }
                    if let Some(d) = denom {
                        new.health_denominator = d;
                    }
                    s.create_device_type(&new)?;
                } else {
                    find_device_type(s, &caller, &n)?;
                    s.update_device_type(
                        &n,
                        &DeviceTypeUpdate {
                            description: description.map(Some),
                            health_frequency: freq,
                            health_denominator: denom,
                            disable_health_check: disabled,
                            display,
                            owners_only,
                        },
                    )?;
                }
                Ok(Value::Nil)
            })
            .await
        }
        "scheduler.device_types.get_template" | "scheduler.device_types.get_health_check" => {
            a.at_most(1)?;
            let n = a.string(0, "name")?;
            if n.starts_with('.') || n.contains('/') || n.contains('\\') {
                return Err(Fault::new(400, "Invalid device-type"));
            }
            let templates = ctx.app.templates().clone();
            let health = name.ends_with("health_check");
            let found = tokio::task::spawn_blocking(move || {
                if health {
                    let stem = n.strip_suffix(".yaml").unwrap_or(&n).to_owned();
                    templates.health_check(&stem).ok().flatten().ok_or(n)
                } else {
                    templates.template_source(&n).map_err(|_| n)
                }
            })
            .await
            .map_err(|e| Fault::new(-32603, e.to_string()))?;
            match found {
                Ok(text) => Ok(binary(text)),
                Err(n) if health => {
                    Err(Fault::new(404, format!("Health-check '{n}' was not found")))
                }
                Err(n) => Err(Fault::new(404, format!("Device-type '{n}' was not found"))),
            }
        }
        "scheduler.device_types.set_template" => {
            a.at_most(2)?;
            let n = a.string(0, "name")?;
            let config = a.string(1, "config")?;
            if n.starts_with('.') || n.contains('/') || n.contains('\\') || n.is_empty() {
                return Err(Fault::new(400, "Invalid device-type"));
            }
            need_superuser(ctx, "lava_scheduler_app.change_devicetype")?;
            let Some(dir) = ctx
                .app
                .templates()
                .writable_dir()
                .map(std::path::Path::to_path_buf)
            else {
                return Err(Fault::new(
                    400,
                    "Bad request: no writable device-type directory is configured",
                ));
            };
            let file = if n.ends_with(".jinja2") {
                n
            } else {
                format!("{n}.jinja2")
            };
            tokio::fs::write(dir.join(&file), config)
                .await
                .map_err(|e| {
                    Fault::new(
                        400,
                        format!("Unable to write device-type configuration: {e}"),
                    )
                })?;
            Ok(Value::Nil)
        }
        "scheduler.device_types.aliases.add"
        | "scheduler.device_types.aliases.delete"
        | "scheduler.device_types.aliases.list" => {
            let dt = a.string(0, "name")?;
            if name.ends_with("list") {
                a.at_most(1)?;
                return db(ctx, move |s| {
                    let dt = find_device_type(s, &caller, &dt)?;
                    Ok(Value::Array(
                        s.aliases()?
                            .into_iter()
                            .filter(|(_, t)| *t == dt.name)
                            .map(|(a, _)| Value::String(a))
                            .collect(),
                    ))
                })
                .await;
            }
            a.at_most(2)?;
            let alias = a.string(1, "alias")?;
            need_superuser(ctx, "lava_scheduler_app.change_devicetype")?;
            let add = name.ends_with("add");
            db(ctx, move |s| {
                find_device_type(s, &caller, &dt)?;
                if add {
                    s.add_alias(&alias, &dt)?;
                } else {
                    match s.aliases()?.iter().find(|(a, _)| *a == alias) {
                        Some((_, t)) if *t == dt => s.remove_alias(&alias)?,
                        _ => {
                            return Err(Fault::new(404, format!("Alias '{alias}' was not found.")));
                        }
                    }
                }
                Ok(Value::Nil)
            })
            .await
        }
        "scheduler.get_device_type_by_alias" => {
            a.at_most(1)?;
            let alias = a.string(0, "alias")?;
            db(ctx, move |s| {
                let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                for (a, t) in s.aliases()? {
                    if a.contains(&alias) {
                        out.entry(a).or_default().push(Value::String(t));
                    }
                }
                Ok(Value::Struct(
                    out.into_iter().map(|(k, v)| (k, Value::Array(v))).collect(),
                ))
            })
            .await
        }

        // ----- aliases, tags -----
        "scheduler.aliases.list" => {
            db(ctx, move |s| {
                Ok(Value::Array(
                    s.aliases()?
                        .into_iter()
                        .map(|(a, _)| Value::String(a))
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.aliases.show" => {
            a.at_most(1)?;
            let alias = a.string(0, "name")?;
            db(ctx, move |s| {
                let (a, t) = s
                    .aliases()?
                    .into_iter()
                    .find(|(a, _)| *a == alias)
                    .ok_or_else(|| Fault::new(404, format!("Alias '{alias}' was not found.")))?;
                let visible = s
                    .device_type(&t)?
                    .is_some_and(|dt| dt.display || caller.is_superuser());
                Ok(Value::object([
                    ("name", Value::String(a)),
                    (
                        "device_type",
                        Value::String(if visible { t } else { String::new() }),
                    ),
                ]))
            })
            .await
        }
        "scheduler.aliases.add" => {
            a.at_most(2)?;
            let alias = a.string(0, "name")?;
            let dt = a.string(1, "device_type_name")?;
            need_superuser(ctx, "lava_scheduler_app.add_alias")?;
            db(ctx, move |s| {
                if s.device_type(&dt)?.is_none() {
                    return Err(Fault::new(
                        400,
                        format!("Bad request: device-type '{dt}' does not exist"),
                    ));
                }
                if s.aliases()?.iter().any(|(a, _)| *a == alias) {
                    return Err(Fault::new(
                        400,
                        format!("Bad request: alias '{alias}' already exists"),
                    ));
                }
                s.add_alias(&alias, &dt)?;
                Ok(Value::Nil)
            })
            .await
        }
        "scheduler.aliases.delete" => {
            a.at_most(1)?;
            let alias = a.string(0, "name")?;
            need_superuser(ctx, "lava_scheduler_app.delete_alias")?;
            db(ctx, move |s| {
                if !s.aliases()?.iter().any(|(a, _)| *a == alias) {
                    return Err(Fault::new(404, format!("Alias '{alias}' was not found.")));
                }
                s.remove_alias(&alias)?;
                Ok(Value::Nil)
            })
            .await
        }
        "scheduler.tags.list" => {
            db(ctx, move |s| {
                Ok(Value::Array(
                    s.tags()?
                        .into_iter()
                        .map(|t| {
                            Value::object([
                                ("name", Value::String(t.name)),
                                ("description", Value::opt_str(t.description)),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.tags.show" => {
            a.at_most(1)?;
            let tag = a.string(0, "name")?;
            db(ctx, move |s| {
                let t = s
                    .tags()?
                    .into_iter()
                    .find(|t| t.name == tag)
                    .ok_or_else(|| Fault::new(404, format!("Tag '{tag}' was not found.")))?;
                let devices: Vec<Value> = s
                    .devices(true)?
                    .into_iter()
                    .filter(|d| d.tags.contains(&tag) && may_view_device(&caller, d))
                    .map(|d| Value::String(d.hostname))
                    .collect();
                Ok(Value::object([
                    ("name", Value::String(t.name)),
                    ("description", Value::opt_str(t.description)),
                    ("devices", Value::Array(devices)),
                ]))
            })
            .await
        }
        "scheduler.tags.add" => {
            a.at_most(2)?;
            let tag = a.string(0, "name")?;
            let description = a.opt_string(1, "description")?;
            need_superuser(ctx, "lava_scheduler_app.add_tag")?;
            db(ctx, move |s| {
                if s.tags()?.iter().any(|t| t.name == tag) {
                    return Err(Fault::new(400, "Bad request: tag already exists?"));
                }
                s.create_tag(&tag, description.as_deref())?;
                Ok(Value::Nil)
            })
            .await
        }

        // ----- workers: the appliance is the one worker -----
        "scheduler.workers.list" => {
            a.at_most(1)?;
            Ok(Value::Array(vec![Value::str(worker_name(ctx))]))
        }
        "scheduler.workers.show" => {
            a.at_most(1)?;
            let h = a.string(0, "hostname")?;
            if h.contains('/') {
                return Err(Fault::new(400, "Invalid worker name"));
            }
            let me = worker_name(ctx);
            if h != me {
                return Err(Fault::new(404, format!("Worker '{h}' was not found.")));
            }
            let superuser = caller.is_superuser();
            let devices = db(ctx, move |s| {
                Ok(s.devices(true)?
                    .into_iter()
                    .filter(|d| d.worker_name.as_deref().is_none_or(|w| w == h))
                    .map(|d| Value::String(d.hostname))
                    .collect::<Vec<_>>())
            })
            .await?;
            let mut m = vec![
                ("hostname".to_owned(), Value::str(me)),
                (
                    "description".to_owned(),
                    Value::str("lavabox appliance (built-in worker)"),
                ),
                ("state".to_owned(), Value::str("Online")),
                ("health".to_owned(), Value::str("Active")),
                ("devices".to_owned(), Value::Array(devices)),
                (
                    "last_ping".to_owned(),
                    Value::datetime(OffsetDateTime::now_utc()),
                ),
                ("job_limit".to_owned(), Value::Int(0)),
                ("version".to_owned(), Value::str("2023.01")),
                ("default_config".to_owned(), Value::Bool(true)),
                ("default_env".to_owned(), Value::Bool(true)),
                ("default_env_dut".to_owned(), Value::Bool(true)),
            ];
            if superuser {
                m.push(("token".into(), Value::str("")));
            }
            Ok(Value::Struct(m))
        }
        "scheduler.get_publisher_event_socket" => Ok(Value::str(format!(
            "tcp://*:{}",
            ctx.app.config().events.zmq_port
        ))),

        // ----- results.* -----
        n if n.starts_with("results.") && METHODS.contains(&n) => results(ctx, n, a).await,
        _ => Err(Fault::new(-32601, format!("No such method: '{name}'"))),
    }
}

async fn target_user(ctx: &Ctx, a: &Args<'_>) -> Result<Caller, Fault> {
    let me = need_user(ctx)?.to_owned();
    let Some(other) = a.opt_string(1, "username")? else {
        return Ok(ctx.caller.clone());
    };
    if other == me {
        return Ok(ctx.caller.clone());
    }
    if !ctx.caller.is_superuser() {
        return Err(Fault::new(
            401,
            "Permission denied: only superusers may check other users.",
        ));
    }
    db(ctx, move |s| {
        let user = s
            .user(&other)?
            .ok_or_else(|| Fault::new(404, format!("Username {other} not found")))?;
        let groups = s.user_groups(&other)?.into_iter().map(|g| g.name).collect();
        Ok(Caller {
            user: Some(crate::api::auth::CallerUser {
                id: user.id,
                username: user.username,
                is_superuser: user.is_superuser,
                groups,
            }),
        })
    })
    .await
}

async fn multicall_one(ctx: &Ctx, sub: Value) -> R {
    let bad = |m: &str| Err(Fault::new(-32602, m.to_owned()));
    let Value::Struct(members) = sub else {
        return bad("system.multicall expected struct");
    };
    let mut method = None;
    let mut params = None;
    let mut extra = Vec::new();
    for (k, v) in members {
        match k.as_str() {
            "methodName" => method = Some(v),
            "params" => params = Some(v),
            _ => extra.push(format!("'{k}'")),
        }
    }
    let Some(method) = method else {
        return bad("system.multicall methodName not specified");
    };
    let Value::String(method) = method else {
        return bad("system.multicall methodName must be a string");
    };
    let Some(params) = params else {
        return bad("system.multicall params not specified");
    };
    let Value::Array(params) = params else {
        return bad("system.multicall params must be an array");
    };
    if !extra.is_empty() {
        extra.sort();
        return bad(&format!(
            "system.multicall specified additional arguments [{}]",
            extra.join(", ")
        ));
    }
    if method == "system.multicall" {
        return bad("system.multicall cannot be nested");
    }
    dispatch(ctx, &method, params).await
}

async fn results(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    need_user(ctx)?;
    let caller = ctx.caller.clone();
    let id = match a.present(0) {
        Some(Value::Int(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(Fault::new(
                400,
                "Bad request: TestJob id was not specified.",
            ));
        }
    };
    let suite = if name.contains("testsuite") || name.contains("testcase") {
        Some(a.string(1, "suite_name")?)
    } else {
        None
    };
    let case = if name.contains("testcase") {
        Some(a.string(2, "case_name")?)
    } else {
        None
    };
    let (limit, offset) = if name.contains("testsuite_results_") && !name.ends_with("count") {
        (a.opt_int(2, "limit")?, a.opt_int(3, "offset")?)
    } else {
        (None, None)
    };
    let name = name.to_owned();
    db(ctx, move |s| {
        let job = results_job(s, &caller, &id)?;
        if name == "results.get_testjob_metadata" {
            return Ok(Value::Array(
                s.job_metadata(job.id)?
                    .into_iter()
                    .map(|(k, v)| Value::Struct(vec![(k, Value::String(v))]))
                    .collect(),
            ));
        }
        if name.starts_with("results.get_testjob_suites_list") {
            let suites = s.test_suites(job.id)?;
            if name.ends_with("yaml") {
                let list: Vec<serde_json::Value> = suites
                    .iter()
                    .map(|t| json!({"name": t.name, "job": job.id.0.to_string(), "id": t.id.0.to_string()}))
                    .collect();
                return Ok(Value::String(yaml_text(&serde_json::Value::Array(list))));
            }
            let mut out = "\"name\",\"job\",\"id\"\r\n".to_owned();
            for t in suites {
                out.push_str(&format!("{},{},{}\r\n", csv_quote(&t.name), csv_quote(&job.id.0.to_string()), csv_quote(&t.id.0.to_string())));
            }
            return Ok(Value::String(out));
        }
        if let Some(suite) = &suite
            && !s.test_suites(job.id)?.iter().any(|t| &t.name == suite)
        {
            return Err(Fault::new(404, "Specified test suite not found."));
        }
        if name == "results.get_testsuite_results_count" {
            let n = s.count_test_cases(job.id, suite.as_deref())?;
            return Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        }
        let offset = u64::try_from(offset.unwrap_or(0).max(0)).unwrap_or(0);
        let limit = limit.and_then(|l| u64::try_from(l).ok());
        let mut cases = s.test_cases(job.id, suite.as_deref(), offset, limit)?;
        if let Some(case) = &case {
            cases.retain(|c| &c.name == case);
            if cases.is_empty() {
                return Err(Fault::new(404, "Specified test case not found."));
            }
        }
        if name.ends_with("csv") {
            Ok(Value::String(cases_csv(&cases)))
        } else {
            let list: Vec<serde_json::Value> = cases.iter().map(case_dict).collect();
            Ok(Value::String(yaml_text(&serde_json::Value::Array(list))))
        }
    })
    .await
}

/// A job id from a store id.
pub fn job_id(n: i64) -> JobId {
    JobId(n)
}
