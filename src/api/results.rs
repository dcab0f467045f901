//! LAVA's results export URLs under `/results/` (lava_results_app): a job's or a suite's
//! test cases as CSV or YAML, the suite summary, job metadata and test-case counts, with
//! LAVA's exact columns, quoting and key order (`shared/reference/rest.md`).
//!
//! Access: the caller's token (`Authorization: Token`) or, for clients without one,
//! `?user=<name>&token=<secret>`; a job the caller may not see is 403, an unknown job or
//! suite 404. Exports are available while the job runs. The job-wide CSV and YAML stream
//! suite by suite in chunks, so a job with many thousands of cases is never held in memory.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_norway::{Mapping, Value};

use crate::api::rest::pyfmt::{csv_row, py_datetime, py_decimal, py_repr, yaml_dump};
use crate::api::rest::{ApiError, Caller};
use crate::app::App;
use crate::model::{JobId, TestCaseId};
use crate::store::{Job, TestCase, TestSuite};

/// The CSV columns, in LAVA's order.
pub const CSV_FIELDS: [&str; 15] = [
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

/// Test cases read per store call while streaming.
const CHUNK: u64 = 1000;

/// One test case as LAVA's `export_testcase` presents it: every value a string except the
/// metadata mapping.
#[derive(Debug, Clone)]
pub struct ExportCase {
    name: String,
    job: String,
    suite: String,
    result: String,
    measurement: String,
    unit: String,
    level: Value,
    url: String,
    id: String,
    logged: String,
    log_start_line: String,
    log_end_line: String,
    metadata: Mapping,
}

fn line(line: Option<u64>) -> String {
    // LAVA tests the value for truth, so line 0 is written as empty too.
    match line {
        Some(n) if n > 0 => n.to_string(),
        _ => String::new(),
    }
}

impl ExportCase {
    /// The export view of a stored case.
    pub fn new(case: &TestCase) -> ExportCase {
        let metadata = case
            .metadata
            .as_deref()
            .and_then(|text| serde_norway::from_str::<Value>(text).ok())
            .and_then(|value| match value {
                Value::Mapping(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default();
        let level = metadata
            .get("level")
            .cloned()
            .unwrap_or_else(|| Value::String(String::new()));
        ExportCase {
            name: case.name.clone(),
            job: case.job.to_string(),
            suite: case.suite.clone(),
            result: case.result.as_str().to_owned(),
            measurement: case
                .measurement
                .map_or_else(|| "None".to_owned(), py_decimal),
            unit: case.units.clone(),
            level,
            url: format!("/results/testcase/{}", case.id),
            id: case.id.to_string(),
            logged: py_datetime(case.logged),
            log_start_line: line(case.start_log_line),
            log_end_line: line(case.end_log_line),
            metadata,
        }
    }

    /// The YAML mapping (PyYAML sorts the keys when dumping).
    pub fn to_value(&self) -> Value {
        let mut map = Mapping::new();
        let s = |v: &str| Value::String(v.to_owned());
        map.insert(s("name"), s(&self.name));
        map.insert(s("job"), s(&self.job));
        map.insert(s("suite"), s(&self.suite));
        map.insert(s("result"), s(&self.result));
        map.insert(s("measurement"), s(&self.measurement));
        map.insert(s("unit"), s(&self.unit));
        map.insert(s("level"), self.level.clone());
        map.insert(s("url"), s(&self.url));
        map.insert(s("id"), s(&self.id));
        map.insert(s("logged"), s(&self.logged));
        map.insert(s("log_start_line"), s(&self.log_start_line));
        map.insert(s("log_end_line"), s(&self.log_end_line));
        map.insert(s("metadata"), Value::Mapping(self.metadata.clone()));
        Value::Mapping(map)
    }

    /// Appends the CSV row (`all` = every field quoted).
    pub fn csv(&self, all: bool, out: &mut String) {
        let level = match &self.level {
            Value::String(s) => s.clone(),
            other => {
                let mut text = String::new();
                py_repr(other, &mut text);
                text
            }
        };
        let mut metadata = String::new();
        py_repr(&Value::Mapping(self.metadata.clone()), &mut metadata);
        let fields = [
            self.job.as_str(),
            &self.suite,
            &self.result,
            &self.measurement,
            &self.unit,
            "",
            "",
            &self.logged,
            &level,
            &metadata,
            &self.url,
            &self.name,
            &self.id,
            &self.log_start_line,
            &self.log_end_line,
        ];
        csv_row(fields, all, out);
    }
}

/// Appends the CSV header row.
pub fn csv_header(all: bool, out: &mut String) {
    csv_row(CSV_FIELDS, all, out);
}

/// `yaml.dump(list_of_cases)` for these cases (`[]` when there are none).
pub fn yaml_cases(cases: &[TestCase], out: &mut String) {
    let list = Value::Sequence(
        cases
            .iter()
            .map(|c| ExportCase::new(c).to_value())
            .collect(),
    );
    yaml_dump(&list, out);
}

/// Appends the cases as items of a YAML list without the `[]` of an empty list: the job
/// export is the concatenation of one `yaml.dump([case])` per case.
pub fn yaml_items(cases: &[TestCase], out: &mut String) {
    for case in cases {
        yaml_dump(
            &Value::Sequence(vec![ExportCase::new(case).to_value()]),
            out,
        );
    }
}

/// The job a results URL names (`12` or MultiNode `12.1`), if the caller may see it.
/// Credentials come from the headers or from `?user=&token=`.
pub async fn visible_job(
    app: &App,
    headers: &HeaderMap,
    query: &[(String, String)],
    job: &str,
) -> Result<Job, ApiError> {
    let caller = Caller::from_headers(app, headers).await?;
    let key = job.to_owned();
    let viewer = caller.viewer();
    let found = app
        .store()
        .call(move |s| {
            let job = if key.contains('.') {
                s.job_by_sub_id(&key)?
            } else {
                match key.parse::<i64>() {
                    Ok(id) => s.job(JobId(id))?,
                    Err(_) => None,
                }
            };
            match job {
                Some(job) => {
                    let visible = s.can_view_job(job.id, viewer)?;
                    Ok(Some((job, visible)))
                }
                None => Ok(None),
            }
        })
        .await?;
    let (job, visible) = found.ok_or(ApiError::NotFound)?;
    if visible {
        return Ok(job);
    }
    let get = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if caller == Caller::Anonymous
        && let (Some(user), Some(token)) = (get("user"), get("token"))
        && let Ok(other) = Caller::from_token(app, Some(user), token).await
    {
        let viewer = other.viewer();
        let id = job.id;
        if app
            .store()
            .call(move |s| s.can_view_job(id, viewer))
            .await?
        {
            return Ok(job);
        }
    }
    Err(ApiError::Forbidden(
        "You do not have permission to perform this action.",
    ))
}

/// A downloadable response.
fn attachment(content_type: &'static str, filename: &str, body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// What a streamed job export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV; `true` quotes every field.
    Csv(bool),
    /// YAML list items.
    Yaml,
}

/// Streams every test case of `job`, suite by suite (LAVA's order), in chunks. The CSV
/// header comes first.
pub fn stream_job(app: App, job: JobId, format: Format) -> Body {
    struct State {
        app: App,
        job: JobId,
        format: Format,
        suites: Option<Vec<TestSuite>>,
        suite: usize,
        offset: u64,
        header: bool,
    }
    let state = State {
        app,
        job,
        format,
        suites: None,
        suite: 0,
        offset: 0,
        header: matches!(format, Format::Csv(_)),
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let mut out = String::new();
        if st.header {
            st.header = false;
            if let Format::Csv(all) = st.format {
                csv_header(all, &mut out);
            }
        }
        if st.suites.is_none() {
            let job = st.job;
            match st.app.store().call(move |s| s.test_suites(job)).await {
                Ok(suites) => st.suites = Some(suites),
                Err(err) => {
                    tracing::error!(error = %err, "results export: listing suites");
                    return None;
                }
            }
        }
        loop {
            let suites = st.suites.as_deref().unwrap_or(&[]);
            let Some(suite) = suites.get(st.suite) else {
                return (!out.is_empty()).then(|| (Ok::<_, std::io::Error>(Bytes::from(out)), st));
            };
            let (job, name, offset) = (st.job, suite.name.clone(), st.offset);
            let cases = match st
                .app
                .store()
                .call(move |s| s.test_cases(job, Some(&name), offset, Some(CHUNK)))
                .await
            {
                Ok(cases) => cases,
                Err(err) => {
                    tracing::error!(error = %err, "results export: reading test cases");
                    return None;
                }
            };
            if (cases.len() as u64) < CHUNK {
                st.suite += 1;
                st.offset = 0;
            } else {
                st.offset += CHUNK;
            }
            match st.format {
                Format::Csv(all) => {
                    for case in &cases {
                        ExportCase::new(case).csv(all, &mut out);
                    }
                }
                Format::Yaml => yaml_items(&cases, &mut out),
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), st));
            }
        }
    });
    Body::from_stream(stream)
}

/// `limit`/`offset` as lava_results_app reads them: `limit=0` (the default) means all.
fn window(query: &[(String, String)]) -> Result<(u64, Option<u64>), ApiError> {
    let get = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &str| -> Result<u64, ApiError> {
        match get(name) {
            None | Some("") => Ok(0),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| ApiError::detail(format!("{name} must be a non-negative integer"))),
        }
    };
    let offset = number("offset")?;
    let limit = number("limit")?;
    Ok((offset, (limit > 0).then_some(limit)))
}

type Query = axum::extract::Query<Vec<(String, String)>>;

fn query(
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|axum::extract::Query(pairs)| pairs)
        .map_err(|_| ApiError::detail("Malformed query string."))
}

fn valid_suite_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn job_csv(
    State(app): State<App>,
    Path(job): Path<String>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let job = visible_job(&app, &headers, &query(q)?, &job).await?;
    let body = stream_job(app, job.id, Format::Csv(false));
    Ok(attachment(
        "text/csv",
        &format!("lava_{}.csv", job.id),
        body,
    ))
}

async fn job_yaml(
    State(app): State<App>,
    Path(job): Path<String>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let job = visible_job(&app, &headers, &query(q)?, &job).await?;
    let body = stream_job(app, job.id, Format::Yaml);
    Ok(attachment(
        "text/yaml",
        &format!("lava_{}.yaml", job.id),
        body,
    ))
}

async fn job_summary(
    State(app): State<App>,
    Path(job): Path<String>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let job = visible_job(&app, &headers, &query(q)?, &job).await?;
    let id = job.id;
    let suites = app.store().call(move |s| s.test_suites(id)).await?;
    let list = suites
        .iter()
        .map(|suite| {
            let mut map = Mapping::new();
            map.insert("id".into(), Value::String(suite.id.to_string()));
            map.insert("job".into(), Value::String(suite.job.to_string()));
            map.insert("name".into(), Value::String(suite.name.clone()));
            Value::Mapping(map)
        })
        .collect();
    let mut out = String::new();
    yaml_dump(&Value::Sequence(list), &mut out);
    Ok(attachment(
        "text/yaml",
        &format!("lava_{id}_summary.yaml"),
        Body::from(out),
    ))
}

async fn job_metadata(
    State(app): State<App>,
    Path(job): Path<String>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let job = visible_job(&app, &headers, &query(q)?, &job).await?;
    let id = job.id;
    let entries = app.store().call(move |s| s.job_metadata(id)).await?;
    if entries.is_empty() {
        return Err(ApiError::NotFound);
    }
    let mut map = Mapping::new();
    for (name, value) in entries {
        map.insert(Value::String(name), Value::String(value));
    }
    let mut out = String::new();
    yaml_dump(&Value::Mapping(map), &mut out);
    Ok(attachment(
        "text/yaml",
        &format!("lava_metadata_{id}.yaml"),
        Body::from(out),
    ))
}

/// The suite's cases in the requested window, after the access and existence checks.
async fn suite_cases(
    app: &App,
    headers: &HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
    job: &str,
    suite: &str,
) -> Result<(Job, Vec<TestCase>), ApiError> {
    let query = query(q)?;
    let job = visible_job(app, headers, &query, job).await?;
    if !valid_suite_name(suite) {
        return Err(ApiError::NotFound);
    }
    let (offset, limit) = window(&query)?;
    let (id, name) = (job.id, suite.to_owned());
    let cases = app
        .store()
        .call(move |s| {
            if !s.test_suites(id)?.iter().any(|t| t.name == name) {
                return Ok(None);
            }
            s.test_cases(id, Some(&name), offset, limit).map(Some)
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((job, cases))
}

async fn suite_csv(
    State(app): State<App>,
    Path((job, suite)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, cases) = suite_cases(&app, &headers, q, &job, &suite).await?;
    let mut out = String::new();
    csv_header(true, &mut out);
    for case in &cases {
        ExportCase::new(case).csv(true, &mut out);
    }
    Ok(attachment(
        "text/csv",
        &format!("lava_{suite}.csv"),
        Body::from(out),
    ))
}

async fn suite_stream_csv(
    State(app): State<App>,
    Path((job, suite)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, cases) = suite_cases(&app, &headers, q, &job, &suite).await?;
    let mut out = String::new();
    for case in &cases {
        ExportCase::new(case).csv(false, &mut out);
    }
    Ok(attachment(
        "text/csv",
        &format!("lava_stream_{suite}.csv"),
        Body::from(out),
    ))
}

async fn suite_yaml(
    State(app): State<App>,
    Path((job, suite)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, cases) = suite_cases(&app, &headers, q, &job, &suite).await?;
    let mut out = String::new();
    yaml_cases(&cases, &mut out);
    Ok(attachment(
        "text/yaml",
        &format!("lava_{suite}.yaml"),
        Body::from(out),
    ))
}

async fn suite_count(
    State(app): State<App>,
    Path((job, suite)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query(q)?;
    let job = visible_job(&app, &headers, &query, &job).await?;
    if !valid_suite_name(&suite) {
        return Err(ApiError::NotFound);
    }
    let id = job.id;
    let count = app
        .store()
        .call(move |s| {
            if !s.test_suites(id)?.iter().any(|t| t.name == suite) {
                return Ok(None);
            }
            s.count_test_cases(id, Some(&suite)).map(Some)
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut response = count.to_string().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

async fn testcase_yaml(
    State(app): State<App>,
    Path(case): Path<String>,
    headers: HeaderMap,
    q: Result<Query, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query(q)?;
    let id = case.parse::<i64>().map_err(|_| ApiError::NotFound)?;
    let found = app
        .store()
        .call(move |s| s.test_case(TestCaseId(id)))
        .await?
        .ok_or(ApiError::NotFound)?;
    visible_job(&app, &headers, &query, &found.job.to_string()).await?;
    let mut out = String::new();
    yaml_dump(&ExportCase::new(&found).to_value(), &mut out);
    Ok(attachment(
        "text/yaml",
        &format!("lava_{id}.yaml"),
        Body::from(out),
    ))
}

/// The `/results/...` export routes; give them their state with `.with_state(app)`.
pub fn router() -> Router<App> {
    Router::new()
        .route("/results/testcase/{case}/yaml", get(testcase_yaml))
        .route("/results/{job}/csv", get(job_csv))
        .route("/results/{job}/yaml", get(job_yaml))
        .route("/results/{job}/yaml_summary", get(job_summary))
        .route("/results/{job}/metadata", get(job_metadata))
        .route("/results/{job}/{suite}/csv", get(suite_csv))
        .route("/results/{job}/{suite}/stream/csv", get(suite_stream_csv))
        .route("/results/{job}/{suite}/yaml", get(suite_yaml))
        .route("/results/{job}/{suite}/+testcase-count", get(suite_count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SuiteId, TestResult};

    fn case() -> TestCase {
        TestCase {
            id: TestCaseId(311),
            job: JobId(42),
            suite_id: SuiteId(7),
            suite: "0_smoke".into(),
            test_set: None,
            name: "boot-ok".into(),
            result: TestResult::Pass,
            measurement: None,
            units: String::new(),
            metadata: Some("case: boot-ok\ndefinition: 0_smoke\nresult: pass\n".into()),
            start_log_line: Some(118),
            end_log_line: Some(120),
            logged: time::macros::datetime!(2023-01-10 10:00:00.123456 UTC),
        }
    }

    #[test]
    fn csv_row_matches_lava() {
        let mut out = String::new();
        csv_header(false, &mut out);
        ExportCase::new(&case()).csv(false, &mut out);
        assert_eq!(
            out,
            "job,suite,result,measurement,unit,duration,timeout,logged,level,metadata,url,name,id,log_start_line,log_end_line\r\n\
             42,0_smoke,pass,None,,,,2023-01-10 10:00:00.123456+00:00,,\"{'case': 'boot-ok', 'definition': '0_smoke', 'result': 'pass'}\",/results/testcase/311,boot-ok,311,118,120\r\n"
        );
    }

    #[test]
    fn yaml_matches_pyyaml() {
        let mut c = case();
        c.measurement = Some(12.5);
        c.units = "seconds".into();
        c.start_log_line = Some(0);
        let mut out = String::new();
        yaml_cases(&[c], &mut out);
        assert_eq!(
            out,
            "- id: '311'\n  job: '42'\n  level: ''\n  log_end_line: '120'\n  log_start_line: ''\n  \
             logged: '2023-01-10 10:00:00.123456+00:00'\n  measurement: '12.5000000000'\n  \
             metadata:\n    case: boot-ok\n    definition: 0_smoke\n    result: pass\n  \
             name: boot-ok\n  result: pass\n  suite: 0_smoke\n  unit: seconds\n  \
             url: /results/testcase/311\n"
        );
        let mut empty = String::new();
        yaml_cases(&[], &mut empty);
        assert_eq!(empty, "[]\n");
    }
}
