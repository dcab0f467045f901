//! The XML-RPC method table: every method of LAVA 2023.01 that lavabox serves, with LAVA's
//! argument handling, return shapes and fault codes/strings.
//!
//! [`METHODS`] is the sorted list that `system.listMethods` returns; [`dispatch`] refuses any
//! other name with LAVA's "No such method" fault and routes the rest to one module per family
//! (`system`, `jobs`, `devices`, `device_types`, `workers`, `tags`, `aliases`, `results`).
//! Arguments are read through [`args::Args`], which applies Python's rules for missing and
//! surplus positional arguments.

use super::codec::{Value, cut};
use crate::access::{self, Caller};
use crate::app::App;
use crate::jobdef;
use crate::model::{DeviceHealth, DeviceState, JobHealth, JobId, JobState};
use crate::pyfmt;
use crate::store::{
    self, Device, DeviceType, DeviceTypeUpdate, DeviceUpdate, HealthDenominator, Job, JobFilter,
    JobOrder, JobOrderField, NewDevice, NewDeviceType, Store,
};
use crate::submit::{self, SubmitError, Submitted};
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use time::OffsetDateTime;

mod admin;
mod aliases;
mod args;
mod device_types;
mod devices;
mod jobs;
mod results;
mod system;
mod tags;
mod workers;
use args::{Args, Page};

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
            Fault::new(404, format!("{kind} '{}' was not found.", cut(name)))
        }
        store::Error::AlreadyExists { .. } => Fault::new(400, format!("Bad request: {e}")),
        store::Error::Invalid { .. } => Fault::new(400, format!("Bad request: {e}")),
        other => internal_error("store call failed", other),
    }
}

/// LAVA's fault for an unexpected server-side failure. The cause is logged here, once, and
/// not sent: it is internal detail (database text, file paths) no client can act on.
fn internal_error(what: &str, cause: &dyn std::error::Error) -> Fault {
    let mut chain = cause.to_string();
    let mut source = cause.source();
    while let Some(inner) = source {
        chain.push_str(": ");
        chain.push_str(&inner.to_string());
        source = inner.source();
    }
    tracing::error!(error = %chain, "{what}");
    Fault::new(
        -32603,
        "Internal Server Error (contact server administrator for details)",
    )
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
    "results.make_custom_query",
    "results.refresh_all_queries",
    "results.refresh_query",
    "results.run_query",
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
    "scheduler.device_types.set_health_check",
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
    "scheduler.tags.delete",
    "scheduler.tags.list",
    "scheduler.tags.show",
    "scheduler.validate_pipeline_devices",
    "scheduler.validate_yaml",
    "scheduler.workers.add",
    "scheduler.workers.get_config",
    "scheduler.workers.get_env",
    "scheduler.workers.get_env_dut",
    "scheduler.workers.list",
    "scheduler.workers.set_config",
    "scheduler.workers.set_env",
    "scheduler.workers.set_env_dut",
    "scheduler.workers.show",
    "scheduler.workers.update",
    "system.api_version",
    "system.assign_perm_device",
    "system.assign_perm_device_type",
    "system.getCapabilities",
    "system.listMethods",
    "system.master_config",
    "system.methodHelp",
    "system.methodSignature",
    "system.multicall",
    "system.pipeline_network_map",
    "system.revoke_perm_device",
    "system.revoke_perm_device_type",
    "system.set_user_groups",
    "system.user_can_submit_to_types",
    "system.user_can_view_bundles",
    "system.user_can_view_devices",
    "system.user_can_view_jobs",
    "system.version",
    "system.whoami",
];

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

/// The module that serves a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    System,
    Admin,
    Jobs,
    Devices,
    DeviceTypes,
    Workers,
    Tags,
    Aliases,
    Results,
}

/// Which family serves `name`, a name known to be in [`METHODS`].
fn family(name: &str) -> Family {
    if matches!(
        name,
        "system.set_user_groups"
            | "system.assign_perm_device"
            | "system.revoke_perm_device"
            | "system.assign_perm_device_type"
            | "system.revoke_perm_device_type"
            | "system.pipeline_network_map"
    ) {
        return Family::Admin;
    }
    if name.starts_with("system.") {
        return Family::System;
    }
    if name.starts_with("results.") {
        return Family::Results;
    }
    let rest = name.strip_prefix("scheduler.").unwrap_or(name);
    match rest.split_once('.') {
        Some(("jobs", _)) => Family::Jobs,
        Some(("devices", _)) => Family::Devices,
        Some(("device_types", _)) => Family::DeviceTypes,
        Some(("workers", _)) => Family::Workers,
        Some(("tags", _)) => Family::Tags,
        Some(("aliases", _)) => Family::Aliases,
        // The legacy flat `scheduler.*` namespace.
        _ => match rest {
            "get_publisher_event_socket" => Family::System,
            "all_device_types" | "get_device_type_by_alias" => Family::DeviceTypes,
            "all_devices"
            | "get_device_status"
            | "put_into_maintenance_mode"
            | "put_into_online_mode"
            | "get_device_config"
            | "export_device_dictionary"
            | "import_device_dictionary"
            | "validate_pipeline_devices" => Family::Devices,
            _ => Family::Jobs,
        },
    }
}

/// LAVA's answer for a name it does not serve.
fn no_such_method(name: &str) -> Fault {
    Fault::new(-32601, format!("No such method: '{}'", cut(name)))
}

/// The methods that take no argument: Python refuses any with a `TypeError`, which LAVA
/// answers as an internal-error fault.
const NO_ARGUMENTS: &[&str] = &[
    "results.refresh_all_queries",
    "scheduler.aliases.list",
    "scheduler.all_device_types",
    "scheduler.all_devices",
    "scheduler.all_jobs",
    "scheduler.get_publisher_event_socket",
    "scheduler.tags.list",
    "scheduler.workers.list",
    "system.api_version",
    "system.getCapabilities",
    "system.listMethods",
    "system.master_config",
    "system.version",
    "system.whoami",
];

async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    if METHODS.binary_search(&name).is_err() {
        return Err(no_such_method(name));
    }
    if NO_ARGUMENTS.contains(&name) {
        a.at_most(0)?;
    }
    match family(name) {
        Family::System => system::call(ctx, name, a).await,
        Family::Admin => admin::call(ctx, name, a).await,
        Family::Jobs => jobs::call(ctx, name, a).await,
        Family::Devices => devices::call(ctx, name, a).await,
        Family::DeviceTypes => device_types::call(ctx, name, a).await,
        Family::Workers => workers::call(ctx, name, a).await,
        Family::Tags => tags::call(ctx, name, a).await,
        Family::Aliases => aliases::call(ctx, name, a).await,
        Family::Results => results::call(ctx, name, a).await,
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

fn job_key(job: &Job) -> Value {
    match &job.sub_id {
        Some(sub) => Value::str(sub.clone()),
        None => Value::Int(job.id.0),
    }
}

/// `str(datetime)` of an aware UTC datetime, as LAVA's verbose `jobs.list` returns; nil
/// when unset.
fn py_str_time(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Nil, |t| Value::String(pyfmt::py_datetime(t)))
}

fn find_job(s: &Store, caller: &Caller, id: &str) -> Result<Job, Fault> {
    submit::find_job(s, caller, id).map_err(Fault::from)
}

fn may_view_device(caller: &Caller, d: &Device) -> bool {
    access::may_use_device(caller, d)
}

fn find_device(s: &Store, caller: &Caller, hostname: &str) -> Result<Device, Fault> {
    let d = s
        .device(hostname)?
        .ok_or_else(|| Fault::new(404, format!("Device '{}' was not found.", cut(hostname))))?;
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
            format!("Device-type '{}' was not found.", cut(name)),
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

fn binary(s: impl Into<String>) -> Value {
    Value::Base64(s.into().into_bytes())
}

/// A job id from a store id.
pub fn job_id(n: i64) -> JobId {
    JobId(n)
}

fn worker_name(ctx: &Ctx) -> String {
    ctx.app.config().instance.clone()
}

fn yaml_text(v: &serde_json::Value) -> String {
    serde_norway::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_failures_keep_their_cause_from_the_client() {
        let corrupt = || store::Error::Corrupt {
            table: "jobs",
            detail: "state 99".into(),
        };
        let want = Fault::new(
            -32603,
            "Internal Server Error (contact server administrator for details)",
        );
        assert_eq!(Fault::from(corrupt()), want);
        assert_eq!(Fault::from(SubmitError::Store(corrupt())), want);
        assert_eq!(SubmitError::Store(corrupt()).to_string(), want.message);
        // Errors the caller can act on keep their text.
        assert_eq!(
            Fault::from(store::Error::NotFound {
                kind: "Device",
                name: "bbb01".into(),
            }),
            Fault::new(404, "Device 'bbb01' was not found.")
        );
    }

    #[test]
    fn methods_are_sorted_and_unique() {
        assert!(
            METHODS.windows(2).all(|w| w[0] < w[1]),
            "METHODS must be sorted"
        );
    }

    #[test]
    fn families_follow_the_namespace() {
        let cases = [
            ("system.version", Family::System),
            ("system.set_user_groups", Family::Admin),
            ("scheduler.get_publisher_event_socket", Family::System),
            ("scheduler.jobs.list", Family::Jobs),
            ("scheduler.pending_jobs_by_device_type", Family::Jobs),
            ("scheduler.get_recent_jobs_for_device", Family::Jobs),
            ("scheduler.all_devices", Family::Devices),
            ("scheduler.devices.tags.add", Family::Devices),
            ("scheduler.validate_pipeline_devices", Family::Devices),
            ("scheduler.all_device_types", Family::DeviceTypes),
            ("scheduler.device_types.aliases.list", Family::DeviceTypes),
            ("scheduler.workers.set_env_dut", Family::Workers),
            ("scheduler.tags.delete", Family::Tags),
            ("scheduler.aliases.show", Family::Aliases),
            ("results.run_query", Family::Results),
        ];
        for (name, family_expected) in cases {
            assert!(METHODS.contains(&name), "{name} is served");
            assert_eq!(family(name), family_expected, "{name}");
        }
    }
}
