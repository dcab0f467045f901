//! `results.*`: test results of a job as YAML/CSV strings. LAVA answers 401, not 403, for jobs
//! the caller may not see.
//!
//! Saved queries: lavabox has no query editor, so no user owns a saved query; `run_query` and
//! `refresh_query` answer LAVA's "does not exist" faults and `refresh_all_queries` has nothing
//! to refresh.
//!
//! `make_custom_query(entity, conditions, limit=200)` runs a query built from LAVA's condition
//! string: [`parse_query`] (pure) types it, `Store::custom_query` runs it with the caller's
//! job visibility, and the rows come back as LAVA's model dicts.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::{Condition, Entity, Field, Operand, Operator, QueryJob, QueryRows};

pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    need_user(ctx)?;
    match name {
        "results.make_custom_query" => return custom_query(ctx, &a).await,
        "results.run_query" | "results.refresh_query" => return saved_query(ctx, name, &a),
        "results.refresh_all_queries" => {
            a.at_most(0)?;
            if !ctx.caller.is_superuser() {
                return Err(Fault::new(
                    401,
                    "Permission denied for user to refresh all queries",
                ));
            }
            return Ok(Value::Nil);
        }
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
        if name.ends_with("csv") {
            Ok(Value::String(cases_csv(&cases)))
        } else {
            let list: Vec<serde_json::Value> = cases.iter().map(case_dict).collect();
            Ok(Value::String(yaml_text(&serde_json::Value::Array(list))))
        }
    })
    .await
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
    // The same columns, in the same order, as the /results/ CSV export.
    const HEADER: [&str; 15] = crate::api::results::CSV_FIELDS;
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

/// `run_query(name, limit=200, username=nil)` / `refresh_query(name, username=nil)`: no user
/// owns a saved query on lavabox, so the named one never exists.
fn saved_query(ctx: &Ctx, name: &str, a: &Args<'_>) -> R {
    let run = name == "results.run_query";
    a.at_most(if run { 3 } else { 2 })?;
    let query = a.string(0, "query_name")?;
    if run {
        a.opt_int(1, "limit")?;
    }
    let owner = a
        .opt_string(if run { 2 } else { 1 }, "username")?
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| ctx.caller.display_name().to_owned());
    Err(Fault::new(
        if run { 404 } else { 400 },
        format!("Query with name {query} owned by user {owner} does not exist."),
    ))
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

/// The table a condition names (LAVA's condition content types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Entity(Entity),
    NamedTestAttribute,
}

fn entity(name: &str) -> Option<Entity> {
    match name {
        "testjob" => Some(Entity::TestJob),
        "testsuite" => Some(Entity::TestSuite),
        "testcase" => Some(Entity::TestCase),
        _ => None,
    }
}

/// LAVA's choice labels → stored codes; an unknown label matches nothing (LAVA uses -1).
fn choice(labels: &[(&str, i64)], value: &str) -> Operand {
    Operand::Int(
        labels
            .iter()
            .find(|(l, _)| *l == value)
            .map_or(-1, |(_, c)| *c),
    )
}

/// A datetime value as Django's DateTimeField accepts it (`YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]`,
/// or `T` for the space), taken as UTC.
fn parse_time(value: &str) -> Result<OffsetDateTime, Fault> {
    use time::PrimitiveDateTime;
    let v = value.replacen('T', " ", 1);
    let formats = [
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    for f in formats {
        if let Ok(t) = PrimitiveDateTime::parse(&v, f) {
            return Ok(t.assume_utc());
        }
    }
    if let Ok(d) = time::Date::parse(&v, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    Err(internal(format!(
        "['“{value}” value has an invalid format. It must be in YYYY-MM-DD HH:MM[:ss[.uuuuuu]][TZ] format.']"
    )))
}

/// Types one field of `table` with its value; `None` when the table has no such field.
fn field(table: Table, name: &str, value: &str) -> Result<Option<(Field, Operand)>, Fault> {
    let text = || Operand::Text(value.to_owned());
    let entity = match table {
        Table::NamedTestAttribute => return Ok(Some((Field::Attribute(name.to_owned()), text()))),
        Table::Entity(e) => e,
    };
    Ok(Some(match (entity, name) {
        (Entity::TestJob, "submitter") => (Field::Submitter, text()),
        (Entity::TestJob, "start_time") => (Field::StartTime, Operand::Time(parse_time(value)?)),
        (Entity::TestJob, "end_time") => (Field::EndTime, Operand::Time(parse_time(value)?)),
        (Entity::TestJob, "state") => (
            Field::State,
            choice(
                &[
                    ("Submitted", 0),
                    ("Scheduling", 1),
                    ("Scheduled", 2),
                    ("Running", 3),
                    ("Canceling", 4),
                    ("Finished", 5),
                ],
                value,
            ),
        ),
        (Entity::TestJob, "health") => (
            Field::Health,
            choice(
                &[
                    ("Unknown", 0),
                    ("Complete", 1),
                    ("Incomplete", 2),
                    ("Canceled", 3),
                ],
                value,
            ),
        ),
        (Entity::TestJob, "actual_device") => (Field::ActualDevice, text()),
        (Entity::TestJob, "requested_device_type") => (Field::RequestedDeviceType, text()),
        // LAVA: "False" is false, anything else true.
        (Entity::TestJob, "health_check") => (
            Field::HealthCheck,
            Operand::Int(i64::from(value != "False")),
        ),
        (Entity::TestJob, "priority") => (
            Field::Priority,
            choice(&[("Low", 0), ("Medium", 50), ("High", 100)], value),
        ),
        (Entity::TestJob, "description") => (Field::Description, text()),
        (Entity::TestSuite, "name") => (Field::SuiteName, text()),
        (Entity::TestCase, "name") => (Field::CaseName, text()),
        (Entity::TestCase, "result") => (
            Field::CaseResult,
            choice(
                &[
                    ("Test passed", 0),
                    ("Test failed", 1),
                    ("Test skipped", 2),
                    ("Unknown outcome", 3),
                ],
                value,
            ),
        ),
        (Entity::TestCase, "measurement") => {
            (
                Field::Measurement,
                Operand::Real(value.trim().parse::<f64>().map_err(|_| {
                    internal(format!("['“{value}” value must be a decimal number.']"))
                })?),
            )
        }
        _ => return Ok(None),
    }))
}

fn operator(name: &str) -> Result<Operator, Fault> {
    match name {
        "exact" => Ok(Operator::Exact),
        "iexact" => Ok(Operator::IExact),
        "icontains" => Ok(Operator::IContains),
        "gt" => Ok(Operator::Gt),
        "lt" => Ok(Operator::Lt),
        // LAVA offers `ne` in its editor but Django has no such lookup, so it fails too.
        other => Err(internal(format!("Unsupported lookup '{other}'"))),
    }
}

/// Parses `make_custom_query`'s arguments as LAVA does: conditions split on `,`, each on `__`
/// into `field__value`, `field__operator__value` (both on `entity`) or
/// `table__field__operator__value`. Structure errors come first for all conditions, then
/// field errors, in LAVA's order.
fn parse_query(entity_name: &str, conditions: &str) -> Result<(Entity, Vec<Condition>), Fault> {
    let entity = entity(entity_name).ok_or_else(|| Fault::new(400, BAD_ENTITY))?;
    if conditions.is_empty() {
        return Ok((entity, Vec::new()));
    }
    let mut raw = Vec::new();
    for cond in conditions.split(',') {
        let parts: Vec<&str> = cond.split("__").collect();
        let (table, rest) = match parts.as_slice() {
            [f, v] => (Table::Entity(entity), [*f, "exact", *v]),
            [f, o, v] => (Table::Entity(entity), [*f, *o, *v]),
            [t, f, o, v] => {
                let table = match *t {
                    "namedtestattribute" => Table::NamedTestAttribute,
                    t => Table::Entity(entity_of_condition(t)?),
                };
                (table, [*f, *o, *v])
            }
            _ => {
                return Err(internal(
                    "Conditions URL incorrect. Please refer to query docs.",
                ));
            }
        };
        raw.push((table, rest));
    }
    raw.into_iter()
        .map(|(table, [f, o, v])| {
            let (field, value) = field(table, f, v)?.ok_or_else(|| Fault::new(400, BAD_FIELD))?;
            Ok(Condition {
                field,
                operator: operator(o)?,
                value,
            })
        })
        .collect::<Result<_, Fault>>()
        .map(|c| (entity, c))
}

fn entity_of_condition(name: &str) -> Result<Entity, Fault> {
    entity(name)
        .ok_or_else(|| internal("Wrong table name in entity param. Please refer to query docs."))
}

/// `make_custom_query(entity, conditions, limit=200)`.
async fn custom_query(ctx: &Ctx, a: &Args<'_>) -> R {
    a.at_most(3)?;
    let entity_name = a.string(0, "entity")?;
    let conditions = a.string(1, "conditions")?;
    let limit = a.opt_int(2, "limit")?.unwrap_or(200);
    let (entity, conditions) = parse_query(&entity_name, &conditions)?;
    let limit = u32::try_from(limit.min(i64::from(u32::MAX)))
        .map_err(|_| internal("Negative indexing is not supported."))?;
    let viewer = ctx.caller.viewer();
    db(ctx, move |s| {
        let rows = s.custom_query(entity, &conditions, viewer, limit)?;
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

    fn ok(entity: &str, conditions: &str) -> (Entity, Vec<Condition>) {
        parse_query(entity, conditions).expect(conditions)
    }

    fn fault(entity: &str, conditions: &str) -> (i64, String) {
        let f = parse_query(entity, conditions).expect_err(conditions);
        (f.code, f.message)
    }

    #[test]
    fn parses_lava_condition_strings() {
        let (e, c) = ok(
            "testcase",
            "testsuite__name__exact__1_custom-tests,testcase__result__exact__Test failed,\
             testjob__end_time__gt__2017-04-26 00:00:00",
        );
        assert_eq!(e, Entity::TestCase);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].field, Field::SuiteName);
        assert_eq!(c[0].value, Operand::Text("1_custom-tests".into()));
        assert_eq!(
            (c[1].field.clone(), c[1].value.clone()),
            (Field::CaseResult, Operand::Int(1))
        );
        assert_eq!(c[2].operator, Operator::Gt);
        assert!(matches!(c[2].value, Operand::Time(t) if t.year() == 2017 && t.hour() == 0));
        // Two parts: the entity's field, exact.
        let (_, c) = ok("testjob", "submitter__kernel-ci");
        assert_eq!(c[0].field, Field::Submitter);
        assert_eq!(c[0].operator, Operator::Exact);
        // Three parts: the entity's field with an operator; unknown choices match nothing.
        let (_, c) = ok("testjob", "health__iexact__Bogus");
        assert_eq!(
            (c[0].operator, c[0].value.clone()),
            (Operator::IExact, Operand::Int(-1))
        );
        let (_, c) = ok("testjob", "health_check__False,priority__High");
        assert_eq!(c[0].value, Operand::Int(0));
        assert_eq!(c[1].value, Operand::Int(100));
        let (_, c) = ok("testsuite", "namedtestattribute__build__icontains__4");
        assert_eq!(c[0].field, Field::Attribute("build".into()));
        assert!(ok("testjob", "").1.is_empty());
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
        let (code, _) = fault("testjob", "end_time__gt__yesterday");
        assert_eq!(code, -32603);
        let (code, _) = fault("testcase", "measurement__gt__fast");
        assert_eq!(code, -32603);
        // A structure error wins over a field error earlier in the string.
        let (code, _) = fault("testjob", "nope__1,x");
        assert_eq!(code, -32603);
    }
}
