//! `results.*`: test results of a job as YAML/CSV strings. LAVA answers 401, not 403, for jobs
//! the caller may not see.
//!
//! Saved queries: lavabox has no query editor, so no user owns a saved query; `run_query` and
//! `refresh_query` answer LAVA's "does not exist" faults and `refresh_all_queries` has nothing
//! to refresh. `make_custom_query` is not served yet (see ARCHITECTURE.md).

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    need_user(ctx)?;
    match name {
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
