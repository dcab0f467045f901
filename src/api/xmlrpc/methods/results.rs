//! `results.*`: test results of a job as YAML/CSV strings. LAVA answers 401, not 403, for jobs
//! the caller may not see.
//!
//! Saved queries (`store::SavedQuery`, created with `lavabox query add`): `run_query` runs
//! one live with the caller's job visibility, if the caller may use it (LAVA's
//! `is_accessible_by`: owner, the query's group, superusers). Results are never cached, so
//! `refresh_query` and `refresh_all_queries` check what LAVA checks and stamp
//! `last_updated`.
//!
//! `make_custom_query(entity, conditions, limit=200)` runs a query built from LAVA's condition
//! string: `store::QuerySpec` (pure) types it, `Store::custom_query` runs it with the caller's
//! job visibility, and the rows come back as LAVA's model dicts.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::{ConditionError, Problem, QueryJob, QueryRows, QuerySpec, SavedQuery};

pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    need_user(ctx)?;
    match name {
        "results.make_custom_query" => return custom_query(ctx, &a).await,
        "results.run_query" => return run_query(ctx, &a).await,
        "results.refresh_query" => return refresh_query(ctx, &a).await,
        "results.refresh_all_queries" => return refresh_all_queries(ctx, &a).await,
        _ => {}
    }
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
        let mut out = String::new();
        if name.ends_with("csv") {
            // LAVA's `csv.DictWriter(quoting=QUOTE_ALL)` over `export_testcase`.
            crate::api::results::csv_header(true, &mut out);
            for case in &cases {
                crate::api::results::ExportCase::new(case).csv(true, &mut out);
            }
        } else {
            crate::api::results::yaml_cases(&cases, &mut out);
        }
        Ok(Value::String(out))
    })
    .await
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
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

/// The saved query `name` of `username` (default: the caller) that the caller may use, with
/// LAVA's faults: `missing` when there is none, `denied` when the caller may not use it.
async fn accessible_query(
    ctx: &Ctx,
    name: String,
    username: Option<String>,
    (missing, denied): (i64, i64),
) -> Result<SavedQuery, Fault> {
    let owner = username
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| ctx.caller.display_name().to_owned());
    let (n, o) = (name.clone(), owner.clone());
    let query = db(ctx, move |s| Ok(s.saved_query(&o, &n)?))
        .await?
        .ok_or_else(|| {
            Fault::new(
                missing,
                format!("Query with name {name} owned by user {owner} does not exist."),
            )
        })?;
    let user = ctx.caller.user.as_ref();
    let allowed = user.is_some_and(|u| query.accessible_by(&u.username, u.is_superuser, &u.groups));
    if !allowed {
        return Err(Fault::new(
            denied,
            format!("Permission denied for user to query {name}"),
        ));
    }
    Ok(query)
}

/// `run_query(query_name, limit=200, username=None)`: the rows, as `make_custom_query`'s.
async fn run_query(ctx: &Ctx, a: &Args<'_>) -> R {
    a.at_most(3)?;
    let name = a.string(0, "query_name")?;
    let limit = a.opt_int(1, "limit")?.unwrap_or(200);
    let username = a.opt_string(2, "username")?;
    let query = accessible_query(ctx, name, username, (404, 403)).await?;
    let limit = u32::try_from(limit.min(i64::from(u32::MAX)))
        .map_err(|_| internal("Negative indexing is not supported."))?;
    let viewer = ctx.caller.viewer();
    db(ctx, move |s| {
        let rows = s.run_saved_query(&query, viewer, limit)?;
        Ok(Value::Array(rows_value(rows)))
    })
    .await
}

/// LAVA refuses to refresh a live query (it has no materialized view).
fn refresh_refused(query: &SavedQuery) -> Option<Fault> {
    query.is_live.then(|| {
        Fault::new(
            400,
            format!(
                "Query with name {} owned by user {} cannot be refreshed since it's a live query.",
                query.name, query.owner
            ),
        )
    })
}

/// `refresh_query(query_name, username=None)`: results are always live, so a refresh only
/// stamps `last_updated`, after LAVA's checks.
async fn refresh_query(ctx: &Ctx, a: &Args<'_>) -> R {
    a.at_most(2)?;
    let name = a.string(0, "query_name")?;
    let username = a.opt_string(1, "username")?;
    let query = accessible_query(ctx, name, username, (400, 401)).await?;
    if let Some(fault) = refresh_refused(&query) {
        return Err(fault);
    }
    db(ctx, move |s| {
        s.refresh_saved_query(query.id)?;
        Ok(Value::Nil)
    })
    .await
}

/// `refresh_all_queries()`: superusers only; stamps every non-live query.
async fn refresh_all_queries(ctx: &Ctx, a: &Args<'_>) -> R {
    a.at_most(0)?;
    if !ctx.caller.is_superuser() {
        return Err(Fault::new(
            401,
            format!(
                "Permission denied for user {}. Must be a superuser to refresh all queries.",
                ctx.caller.display_name()
            ),
        ));
    }
    db(ctx, |s| {
        for query in s.saved_queries()? {
            if !query.is_live {
                s.refresh_saved_query(query.id)?;
            }
        }
        Ok(Value::Nil)
    })
    .await
}

/// LAVA's answer for an entity that is not a queryable content type.
const BAD_ENTITY: &str = "Wrong table name in entity parameter. Please refer to query docs.";
/// LAVA's answer for a field the condition's table does not have.
const BAD_FIELD: &str =
    "Conditions URL incorrect: Field does not exist. Please refer to query docs.";

/// An exception LAVA does not turn into its own fault: its dispatcher's internal error.
fn internal(msg: impl std::fmt::Display) -> Fault {
    Fault::new(
        -32603,
        format!("Internal Server Error (contact server administrator for details): {msg}"),
    )
}

/// LAVA's fault for a query that cannot be parsed: the 400s it raises itself, the internal
/// error its dispatcher gives for the exceptions it does not catch.
fn condition_fault(err: ConditionError) -> Fault {
    match err {
        ConditionError::Entity(_) => Fault::new(400, BAD_ENTITY),
        ConditionError::Condition { problem, .. } => match problem {
            Problem::Field { .. } => Fault::new(400, BAD_FIELD),
            Problem::Structure => internal("Conditions URL incorrect. Please refer to query docs."),
            Problem::Table(_) => {
                internal("Wrong table name in entity param. Please refer to query docs.")
            }
            Problem::Operator(op) => internal(format!("Unsupported lookup '{op}'")),
            Problem::Time(v) => internal(format!(
                "['“{v}” value has an invalid format. It must be in YYYY-MM-DD HH:MM[:ss[.uuuuuu]][TZ] format.']"
            )),
            Problem::Number(v) => internal(format!("['“{v}” value must be a decimal number.']")),
        },
    }
}

/// Parses `make_custom_query`'s arguments (`store::QuerySpec`), with LAVA's faults.
fn parse_query(entity: &str, conditions: &str) -> Result<QuerySpec, Fault> {
    QuerySpec::parse(entity, conditions).map_err(condition_fault)
}

/// `make_custom_query(entity, conditions, limit=200)`.
async fn custom_query(ctx: &Ctx, a: &Args<'_>) -> R {
    a.at_most(3)?;
    let entity_name = a.string(0, "entity")?;
    let conditions = a.string(1, "conditions")?;
    let limit = a.opt_int(2, "limit")?.unwrap_or(200);
    let spec = parse_query(&entity_name, &conditions)?;
    let limit = u32::try_from(limit.min(i64::from(u32::MAX)))
        .map_err(|_| internal("Negative indexing is not supported."))?;
    let viewer = ctx.caller.viewer();
    db(ctx, move |s| {
        let rows = s.custom_query(spec.entity(), spec.conditions(), viewer, limit)?;
        Ok(Value::Array(rows_value(rows)))
    })
    .await
}

/// Django's per-instance state, which LAVA's marshaller sends as part of each row.
fn model_state() -> Value {
    Value::object([
        ("db", Value::str("default")),
        ("adding", Value::Bool(false)),
        ("fields_cache", Value::Struct(Vec::new())),
    ])
}

fn opt_int(n: Option<i64>) -> Value {
    n.map_or(Value::Nil, Value::Int)
}

/// The rows as LAVA returns them: each model instance's attribute dict.
fn rows_value(rows: QueryRows) -> Vec<Value> {
    match rows {
        QueryRows::Jobs(jobs) => jobs.into_iter().map(job_row).collect(),
        QueryRows::Suites(suites) => suites
            .into_iter()
            .map(|t| {
                Value::object([
                    ("_state", model_state()),
                    ("id", Value::Int(t.id)),
                    ("job_id", Value::Int(t.job_id)),
                    ("name", Value::str(t.name)),
                    ("testsuite_ptr_id", Value::Int(t.id)),
                ])
            })
            .collect(),
        QueryRows::Cases(cases) => cases
            .into_iter()
            .map(|c| {
                Value::object([
                    ("_state", model_state()),
                    ("id", Value::Int(c.id)),
                    ("name", Value::str(c.name)),
                    ("units", Value::str(c.units)),
                    ("result", Value::Int(c.result)),
                    (
                        "measurement",
                        c.measurement.map_or(Value::Nil, Value::Double),
                    ),
                    ("metadata", Value::opt_str(c.metadata)),
                    ("suite_id", Value::Int(c.suite_id)),
                    ("start_log_line", opt_int(c.start_log_line)),
                    ("end_log_line", opt_int(c.end_log_line)),
                    ("test_set_id", opt_int(c.test_set_id)),
                    ("logged", Value::datetime(c.logged)),
                    ("testcase_ptr_id", Value::Int(c.id)),
                ])
            })
            .collect(),
    }
}

fn job_row(q: QueryJob) -> Value {
    let j = q.job;
    // LAVA's row has only `is_public`; personal and group jobs are both not public.
    let is_public = matches!(j.visibility, store::Visibility::Public);
    let queue_timeout = j
        .queue_timeout
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Value::object([
        ("_state", model_state()),
        ("id", Value::Int(j.id.0)),
        ("sub_id", Value::str(j.sub_id.unwrap_or_default())),
        ("is_public", Value::Bool(is_public)),
        ("target_group", Value::opt_str(j.target_group)),
        ("submitter_id", Value::Int(q.submitter_id)),
        ("description", Value::str(j.description)),
        ("health_check", Value::Bool(j.health_check)),
        // Device types and devices are keyed by name in LAVA, so their ids are names.
        (
            "requested_device_type_id",
            Value::opt_str(j.requested_device_type),
        ),
        ("actual_device_id", Value::opt_str(j.actual_device)),
        ("submit_time", Value::datetime(j.submit_time)),
        ("start_time", Value::opt_datetime(j.start_time)),
        ("end_time", Value::opt_datetime(j.end_time)),
        ("state", Value::Int(j.state.code())),
        ("health", Value::Int(j.health.code())),
        ("priority", Value::Int(i64::from(j.priority.value()))),
        ("definition", Value::str(j.definition)),
        ("original_definition", Value::str(j.original_definition)),
        ("multinode_definition", Value::str(j.multinode_definition)),
        ("queue_timeout", opt_int(queue_timeout)),
        ("failure_comment", Value::opt_str(j.failure_comment)),
        ("testjob_ptr_id", Value::Int(j.id.0)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(entity: &str, conditions: &str) -> (i64, String) {
        let f = parse_query(entity, conditions).expect_err(conditions);
        (f.code, f.message)
    }

    #[test]
    fn refuses_bad_strings_with_lavas_faults() {
        for e in ["device", "TestJob", "", "namedtestattribute"] {
            assert_eq!(fault(e, ""), (400, BAD_ENTITY.to_owned()));
        }
        let (code, msg) = fault("testjob", "a__b__c__d__e");
        assert_eq!(code, -32603);
        assert!(msg.ends_with("Conditions URL incorrect. Please refer to query docs."));
        assert_eq!(
            fault("testjob", "nope__exact__1"),
            (400, BAD_FIELD.to_owned())
        );
        assert_eq!(
            fault("testcase", "testsuite__result__exact__1"),
            (400, BAD_FIELD.to_owned())
        );
        let (code, msg) = fault("testjob", "device__hostname__exact__x");
        assert_eq!(code, -32603);
        assert!(msg.contains("Wrong table name"), "{msg}");
        let (code, msg) = fault("testjob", "state__ne__Running");
        assert_eq!(code, -32603);
        assert!(msg.ends_with("Unsupported lookup 'ne'"), "{msg}");
        let (code, msg) = fault("testjob", "end_time__gt__yesterday");
        assert_eq!(code, -32603);
        assert!(
            msg.contains("“yesterday” value has an invalid format"),
            "{msg}"
        );
        let (code, msg) = fault("testcase", "measurement__gt__fast");
        assert_eq!(code, -32603);
        assert!(
            msg.contains("“fast” value must be a decimal number"),
            "{msg}"
        );
        // A structure error wins over a field error earlier in the string.
        let (code, _) = fault("testjob", "nope__1,x");
        assert_eq!(code, -32603);
    }
}
