//! LAVA's results export URLs under `/results/` (lava_results_app): a job's or a suite's
//! test cases as CSV or YAML, the suite summary, job metadata and test-case counts, with
//! LAVA's exact columns, quoting and key order (`shared/reference/rest.md`).
//!
//! Access: the caller's token (`Authorization: Token`) or, for clients without one,
//! `?user=<name>&token=<secret>`; a job the caller may not see is 403, an unknown job or
//! suite 404. Exports are available while the job runs. The job-wide CSV and YAML stream
//! suite by suite in chunks, so a job with many thousands of cases is never held in memory.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_norway::{Mapping, Value};

use crate::access::Caller;
use crate::api::auth::{self, AuthError};
use crate::api::rest::ApiError;
use crate::api::rest::pyfmt::{csv_field, csv_row, yaml_dump};
use crate::app::App;
use crate::model::{JobId, SuiteId, TestCaseId};
use crate::pyfmt::{py_datetime, py_decimal, py_repr, py_repr_mapping};
use crate::store::{Job, TestCase};
use crate::submit::SubmitError;

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

/// Test cases read per store call while streaming: big enough that a 10,000-case export
/// takes a handful of queries, small enough that one chunk's rows and text stay well under
/// a megabyte on the appliance.
const CHUNK: u64 = 2000;

/// One test case as LAVA's `export_testcase` presents it: the stored case plus its metadata
/// mapping, parsed once and borrowed by both renderings.
#[derive(Debug)]
pub struct ExportCase<'a> {
    case: &'a TestCase,
    metadata: Mapping,
}

fn line(line: Option<u64>, out: &mut String) {
    // LAVA tests the value for truth, so line 0 is written as empty too.
    if let Some(n) = line.filter(|n| *n > 0) {
        let _ = write!(out, "{n}");
    }
}

impl<'a> ExportCase<'a> {
    /// The export view of a stored case.
    pub fn new(case: &'a TestCase) -> ExportCase<'a> {
        // JSON when the store has it: decoding YAML per case made big exports slow.
        let metadata = match case.metadata_json.as_deref() {
            Some(json) => serde_json::from_str::<Value>(json).ok(),
            None => case
                .metadata
                .as_deref()
                .and_then(|text| serde_norway::from_str::<Value>(text).ok()),
        }
        .and_then(|value| match value {
            Value::Mapping(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default();
        ExportCase { case, metadata }
    }

    fn measurement(&self) -> String {
        self.case
            .measurement
            .map_or_else(|| "None".to_owned(), py_decimal)
    }

    /// The YAML mapping (PyYAML sorts the keys when dumping).
    pub fn into_value(self) -> Value {
        let case = self.case;
        let s = |v: String| Value::String(v);
        let mut lines = (String::new(), String::new());
        line(case.start_log_line, &mut lines.0);
        line(case.end_log_line, &mut lines.1);
        let level = self
            .metadata
            .get("level")
            .cloned()
            .unwrap_or_else(|| s(String::new()));
        let mut map = Mapping::new();
        map.insert("name".into(), s(case.name.clone()));
        map.insert("job".into(), s(case.job.to_string()));
        map.insert("suite".into(), s(case.suite.clone()));
        map.insert("result".into(), s(case.result.as_str().to_owned()));
        map.insert("measurement".into(), s(self.measurement()));
        map.insert("unit".into(), s(case.units.clone()));
        map.insert("level".into(), level);
        map.insert("url".into(), s(format!("/results/testcase/{}", case.id)));
        map.insert("id".into(), s(case.id.to_string()));
        map.insert("logged".into(), s(py_datetime(case.logged)));
        map.insert("log_start_line".into(), s(lines.0));
        map.insert("log_end_line".into(), s(lines.1));
        map.insert("metadata".into(), Value::Mapping(self.metadata));
        Value::Mapping(map)
    }

    /// Appends the CSV row (`all` = every field quoted).
    pub fn csv(&self, all: bool, out: &mut String) {
        let case = self.case;
        let mut scratch = String::with_capacity(128);
        let field = |text: &str, out: &mut String| {
            csv_field(text, all, out);
            out.push(',');
        };
        let _ = write!(scratch, "{}", case.job);
        field(&scratch, out);
        field(&case.suite, out);
        field(case.result.as_str(), out);
        field(&self.measurement(), out);
        field(&case.units, out);
        field("", out);
        field("", out);
        field(&py_datetime(case.logged), out);
        scratch.clear();
        match self.metadata.get("level") {
            None => {}
            Some(Value::String(level)) => scratch.push_str(level),
            Some(other) => py_repr(other, &mut scratch),
        }
        field(&scratch, out);
        scratch.clear();
        py_repr_mapping(&self.metadata, &mut scratch);
        field(&scratch, out);
        scratch.clear();
        let _ = write!(scratch, "/results/testcase/{}", case.id);
        field(&scratch, out);
        field(&case.name, out);
        scratch.clear();
        let _ = write!(scratch, "{}", case.id);
        field(&scratch, out);
        scratch.clear();
        line(case.start_log_line, &mut scratch);
        field(&scratch, out);
        scratch.clear();
        line(case.end_log_line, &mut scratch);
        csv_field(&scratch, all, out);
        out.push_str("\r\n");
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
            .map(|c| ExportCase::new(c).into_value())
            .collect(),
    );
    yaml_dump(&list, out);
}

/// Appends the cases as items of a YAML list without the `[]` of an empty list: the job
/// export is the concatenation of one `yaml.dump([case])` per case.
pub fn yaml_items(cases: &[TestCase], out: &mut String) {
    for case in cases {
        yaml_dump(
            &Value::Sequence(vec![ExportCase::new(case).into_value()]),
            out,
        );
    }
}

/// The job a results URL names (`12` or MultiNode `12.1`), if the caller may see it
/// (403 otherwise, 404 when there is no such job). Credentials come from the headers,
/// from `?user=&token=` or from the web UI's session cookie.
pub async fn visible_job(
    app: &App,
    headers: &HeaderMap,
    query: &[(String, String)],
    job: &str,
) -> Result<Job, ApiError> {
    // A download link of the web UI: its session cookie counts.
    let caller = match auth::request_caller(app, headers, query, auth::Cookie::Accepted).await {
        Ok(caller) => caller,
        // LAVA looks at query credentials only for jobs that are not public, so bad ones
        // leave the caller anonymous: a public job is still served, a hidden one is 403.
        Err(AuthError::InvalidToken) if auth::parse_authorization(headers)?.is_none() => {
            Caller::anonymous()
        }
        Err(err) => return Err(err.into()),
    };
    let key = job.to_owned();
    app.store()
        .call(move |s| Ok(crate::submit::find_job(s, &caller, &key)))
        .await?
        .map_err(|err| match err {
            SubmitError::JobHidden { .. } => {
                ApiError::Forbidden("You do not have permission to perform this action.")
            }
            SubmitError::Store(err) => err.into(),
            _ => ApiError::NotFound,
        })
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

/// What a streamed export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV after a header row; `all` quotes every field (`QUOTE_ALL`), else minimal quoting.
    Csv {
        /// Quote every field.
        all: bool,
        /// Write the header row first.
        header: bool,
    },
    /// YAML list items, nothing at all for no cases (the job export: one `yaml.dump([case])`
    /// per case).
    YamlItems,
    /// A YAML list, `[]` for no cases (`yaml.dump(cases)`).
    YamlList,
}

/// Which test cases an export covers: a job's, or one suite's, in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The job (the caller's access is checked before).
    pub job: JobId,
    /// One suite by name, or every suite.
    pub suite: Option<String>,
    /// Cases skipped first.
    pub offset: u64,
    /// At most this many cases; `None` for all.
    pub limit: Option<u64>,
}

impl Selection {
    /// Every case of `job`.
    pub fn job(job: JobId) -> Selection {
        Selection {
            job,
            suite: None,
            offset: 0,
            limit: None,
        }
    }
}

/// Renders one chunk of cases in `format`.
fn render(cases: &[TestCase], format: Format, out: &mut String) {
    match format {
        Format::Csv { all, .. } => {
            for case in cases {
                ExportCase::new(case).csv(all, out);
            }
        }
        Format::YamlItems | Format::YamlList => yaml_items(cases, out),
    }
}

/// Streams the cases of `selection` in LAVA's order (suite by suite, then by id), reading
/// [`CHUNK`] cases per store call and rendering them on the blocking pool, so neither the
/// store lock nor an async worker is held while a chunk is formatted and memory stays
/// bounded however many cases the job has. Cases recorded while the export runs are
/// included if they sort after the cursor: results are readable while the job runs.
pub fn stream_cases(app: App, selection: Selection, format: Format) -> Body {
    struct State {
        app: App,
        selection: Selection,
        format: Format,
        after: Option<(SuiteId, TestCaseId)>,
        sent: u64,
        first: bool,
        done: bool,
    }
    async fn next(st: &mut State) -> Result<Option<String>, crate::store::Error> {
        if st.done {
            return Ok(None);
        }
        let want = st
            .selection
            .limit
            .map_or(CHUNK, |l| l.saturating_sub(st.sent).min(CHUNK));
        let cases = if want == 0 {
            Vec::new()
        } else {
            let (job, suite, after) = (st.selection.job, st.selection.suite.clone(), st.after);
            let offset = if after.is_none() {
                st.selection.offset
            } else {
                0
            };
            st.app
                .store()
                .call(move |s| s.test_cases_after(job, suite.as_deref(), after, offset, want))
                .await?
        };
        let n = cases.len() as u64;
        st.done = n < want || want == 0;
        st.sent += n;
        st.after = cases.last().map(|c| (c.suite_id, c.id));
        let (first, format) = (std::mem::take(&mut st.first), st.format);
        let out = tokio::task::spawn_blocking(move || {
            let mut out = String::with_capacity(cases.len() * 200 + 200);
            match format {
                Format::Csv { all, header: true } if first => csv_header(all, &mut out),
                Format::YamlList if first && cases.is_empty() => out.push_str("[]\n"),
                _ => {}
            }
            render(&cases, format, &mut out);
            out
        })
        .await
        .map_err(crate::store::Error::Task)?;
        Ok(Some(out))
    }
    let state = State {
        app,
        selection,
        format,
        after: None,
        sent: 0,
        first: true,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            match next(&mut st).await {
                Ok(None) => return None,
                Ok(Some(out)) if out.is_empty() => continue,
                Ok(Some(out)) => return Some((Ok(Bytes::from(out)), st)),
                Err(err) => {
                    // The status line has gone out: failing the body makes the client see a
                    // broken transfer instead of a silently short export.
                    tracing::error!(error = %err, job = %st.selection.job, "results export failed");
                    st.done = true;
                    return Some((Err(std::io::Error::other(err.to_string())), st));
                }
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

fn valid_suite_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn malformed_query() -> ApiError {
    ApiError::detail("Malformed query string.")
}

/// The path segments and query string of a `/results/...` request.
async fn request_parts(
    parts: &mut Parts,
    app: &App,
) -> Result<(HashMap<String, String>, Vec<(String, String)>), ApiError> {
    let Path(segments) = Path::<HashMap<String, String>>::from_request_parts(parts, app)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let Query(query) = Query::<Vec<(String, String)>>::from_request_parts(parts, app)
        .await
        .map_err(|_| malformed_query())?;
    Ok((segments, query))
}

/// The job the `{job}` path segment names, once the caller may see it: the authorise-and-load
/// step of every `/results/<job>/...` export, done once here.
struct ResultsJob(Job);

impl FromRequestParts<App> for ResultsJob {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<ResultsJob, ApiError> {
        let (segments, query) = request_parts(parts, app).await?;
        let job = segments.get("job").ok_or(ApiError::NotFound)?;
        visible_job(app, &parts.headers, &query, job)
            .await
            .map(ResultsJob)
    }
}

/// The cases of `/results/<job>/<suite>/...` in the requested window, once the caller may
/// see the job; 404 unless the job has that suite.
struct SuiteCases(Selection);

impl SuiteCases {
    fn suite(&self) -> &str {
        self.0.suite.as_deref().unwrap_or_default()
    }
}

impl FromRequestParts<App> for SuiteCases {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<SuiteCases, ApiError> {
        let (segments, query) = request_parts(parts, app).await?;
        let (Some(job), Some(suite)) = (segments.get("job"), segments.get("suite")) else {
            return Err(ApiError::NotFound);
        };
        let job = visible_job(app, &parts.headers, &query, job).await?;
        if !valid_suite_name(suite) {
            return Err(ApiError::NotFound);
        }
        let (offset, limit) = window(&query)?;
        let (id, name) = (job.id, suite.clone());
        let exists = app
            .store()
            .call(move |s| Ok(s.test_suites(id)?.iter().any(|t| t.name == name)))
            .await?;
        if !exists {
            return Err(ApiError::NotFound);
        }
        Ok(SuiteCases(Selection {
            job: job.id,
            suite: Some(suite.clone()),
            offset,
            limit,
        }))
    }
}

/// A YAML document as a download.
fn yaml_attachment(value: &Value, filename: &str) -> Response {
    let mut out = String::new();
    yaml_dump(value, &mut out);
    attachment("text/yaml", filename, Body::from(out))
}

async fn job_csv(State(app): State<App>, ResultsJob(job): ResultsJob) -> Response {
    let format = Format::Csv {
        all: false,
        header: true,
    };
    let body = stream_cases(app, Selection::job(job.id), format);
    attachment("text/csv", &format!("lava_{}.csv", job.id), body)
}

async fn job_yaml(State(app): State<App>, ResultsJob(job): ResultsJob) -> Response {
    let body = stream_cases(app, Selection::job(job.id), Format::YamlItems);
    attachment("text/yaml", &format!("lava_{}.yaml", job.id), body)
}

async fn job_summary(
    State(app): State<App>,
    ResultsJob(job): ResultsJob,
) -> Result<Response, ApiError> {
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
    Ok(yaml_attachment(
        &Value::Sequence(list),
        &format!("lava_{id}_summary.yaml"),
    ))
}

async fn job_metadata(
    State(app): State<App>,
    ResultsJob(job): ResultsJob,
) -> Result<Response, ApiError> {
    let id = job.id;
    let entries = app.store().call(move |s| s.job_metadata(id)).await?;
    if entries.is_empty() {
        return Err(ApiError::NotFound);
    }
    let mut map = Mapping::new();
    for (name, value) in entries {
        map.insert(Value::String(name), Value::String(value));
    }
    Ok(yaml_attachment(
        &Value::Mapping(map),
        &format!("lava_metadata_{id}.yaml"),
    ))
}

async fn suite_csv(State(app): State<App>, cases: SuiteCases) -> Response {
    let filename = format!("lava_{}.csv", cases.suite());
    let format = Format::Csv {
        all: true,
        header: true,
    };
    attachment("text/csv", &filename, stream_cases(app, cases.0, format))
}

async fn suite_stream_csv(State(app): State<App>, cases: SuiteCases) -> Response {
    let filename = format!("lava_stream_{}.csv", cases.suite());
    let format = Format::Csv {
        all: false,
        header: false,
    };
    attachment("text/csv", &filename, stream_cases(app, cases.0, format))
}

async fn suite_yaml(State(app): State<App>, cases: SuiteCases) -> Response {
    let filename = format!("lava_{}.yaml", cases.suite());
    let body = stream_cases(app, cases.0, Format::YamlList);
    attachment("text/yaml", &filename, body)
}

async fn suite_count(
    State(app): State<App>,
    SuiteCases(selection): SuiteCases,
) -> Result<Response, ApiError> {
    let count = app
        .store()
        .call(move |s| s.count_test_cases(selection.job, selection.suite.as_deref()))
        .await?;
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
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| malformed_query())?;
    let id = case.parse::<i64>().map_err(|_| ApiError::NotFound)?;
    let found = app
        .store()
        .call(move |s| s.test_case(TestCaseId(id)))
        .await?
        .ok_or(ApiError::NotFound)?;
    visible_job(&app, &headers, &query, &found.job.to_string()).await?;
    Ok(yaml_attachment(
        &ExportCase::new(&found).into_value(),
        &format!("lava_{id}.yaml"),
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
            metadata_json: None,
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

    /// A measured case whose metadata has a level and a value with a comma and quotes.
    fn ping() -> TestCase {
        let mut c = case();
        c.id = TestCaseId(312);
        c.name = "ping".into();
        c.result = TestResult::Fail;
        c.measurement = Some(12.5);
        c.units = "ms".into();
        c.metadata = Some("case: ping\nlevel: 1.4.3.1\nnote: 'a, \"b\"'\n".into());
        c.start_log_line = None;
        c.end_log_line = None;
        c
    }

    #[test]
    fn csv_quotes_metadata_with_commas_and_quotes_and_takes_the_level_from_it() {
        let (mut minimal, mut all) = (String::new(), String::new());
        ExportCase::new(&ping()).csv(false, &mut minimal);
        ExportCase::new(&ping()).csv(true, &mut all);
        assert_eq!(
            minimal,
            "42,0_smoke,fail,12.5000000000,ms,,,2023-01-10 10:00:00.123456+00:00,1.4.3.1,\
             \"{'case': 'ping', 'level': '1.4.3.1', 'note': 'a, \"\"b\"\"'}\",\
             /results/testcase/312,ping,312,,\r\n"
        );
        assert_eq!(
            all,
            "\"42\",\"0_smoke\",\"fail\",\"12.5000000000\",\"ms\",\"\",\"\",\
             \"2023-01-10 10:00:00.123456+00:00\",\"1.4.3.1\",\
             \"{'case': 'ping', 'level': '1.4.3.1', 'note': 'a, \"\"b\"\"'}\",\
             \"/results/testcase/312\",\"ping\",\"312\",\"\",\"\"\r\n"
        );
    }

    #[test]
    fn yaml_dumps_metadata_with_commas_and_quotes_as_pyyaml_does() {
        let mut out = String::new();
        yaml_cases(&[case(), ping()], &mut out);
        assert_eq!(
            out,
            "- id: '311'\n  job: '42'\n  level: ''\n  log_end_line: '120'\n  \
             log_start_line: '118'\n  logged: '2023-01-10 10:00:00.123456+00:00'\n  \
             measurement: None\n  metadata:\n    case: boot-ok\n    definition: 0_smoke\n    \
             result: pass\n  name: boot-ok\n  result: pass\n  suite: 0_smoke\n  unit: ''\n  \
             url: /results/testcase/311\n\
             - id: '312'\n  job: '42'\n  level: 1.4.3.1\n  log_end_line: ''\n  \
             log_start_line: ''\n  logged: '2023-01-10 10:00:00.123456+00:00'\n  \
             measurement: '12.5000000000'\n  metadata:\n    case: ping\n    level: 1.4.3.1\n    \
             note: a, \"b\"\n  name: ping\n  result: fail\n  suite: 0_smoke\n  unit: ms\n  \
             url: /results/testcase/312\n"
        );
    }

    #[test]
    fn json_metadata_renders_as_yaml_metadata_does() {
        let from_yaml = case();
        let mut from_json = case();
        from_json.metadata_json =
            Some(r#"{"case":"boot-ok","definition":"0_smoke","result":"pass"}"#.into());
        let (mut a, mut b) = (String::new(), String::new());
        ExportCase::new(&from_yaml).csv(true, &mut a);
        ExportCase::new(&from_json).csv(true, &mut b);
        assert_eq!(a, b);
        let (mut a, mut b) = (String::new(), String::new());
        yaml_cases(&[from_yaml], &mut a);
        yaml_cases(&[from_json], &mut b);
        assert_eq!(a, b);
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
