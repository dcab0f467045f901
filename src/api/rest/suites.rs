//! A job's test results over REST: suites and test cases (paginated, filtered), one suite,
//! and the CSV, YAML, JUnit and TAP13 exports. The CSV/YAML bytes come from
//! [`crate::api::results`], shared with the `/results/` URLs.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::ApiError;
use super::filter::{self, CHOICE, FieldSpec, Filterable, Kind, NUMBER, TEXT, TIME, Val};
use super::jobs::{VisibleJob, int_param, with_headers};
use super::page::Params;
use crate::api::results::{Format, Selection, stream_cases};
use crate::app::App;
use crate::model::{JobId, SuiteId, TestCaseId, TestResult};
use crate::pyfmt::{drf_datetime, py_decimal, py_float};
use crate::store::{TestCase, TestSuite};

/// The wire form of a suite.
#[derive(Debug, Serialize)]
struct SuiteJson<'a> {
    id: i64,
    resource_uri: String,
    name: &'a str,
    job: i64,
}

fn suite_json(params: &Params, suite: &TestSuite) -> Value {
    serde_json::to_value(SuiteJson {
        id: suite.id.0,
        resource_uri: format!("{}/jobs/{}/suites/{}/", params.base(), suite.job, suite.id),
        name: &suite.name,
        job: suite.job.0,
    })
    .unwrap_or(Value::Null)
}

/// The wire form of a test case (`TestCaseSerializer`).
#[derive(Debug, Serialize)]
struct CaseJson<'a> {
    id: i64,
    result: &'static str,
    resource_uri: String,
    unit: &'a str,
    name: &'a str,
    measurement: Option<String>,
    metadata: Option<&'a str>,
    start_log_line: Option<u64>,
    end_log_line: Option<u64>,
    logged: String,
    suite: i64,
    test_set: Option<i64>,
}

fn case_json(params: &Params, case: &TestCase) -> Value {
    serde_json::to_value(CaseJson {
        id: case.id.0,
        result: case.result.as_str(),
        resource_uri: format!(
            "{}/jobs/{}/suites/{}/tests/{}/",
            params.base(),
            case.job,
            case.suite_id,
            case.id
        ),
        unit: &case.units,
        name: &case.name,
        measurement: case.measurement.map(py_decimal),
        metadata: case.metadata.as_deref(),
        start_log_line: case.start_log_line,
        end_log_line: case.end_log_line,
        logged: drf_datetime(case.logged),
        suite: case.suite_id.0,
        test_set: None,
    })
    .unwrap_or(Value::Null)
}

const SUITE_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "id",
        kind: Kind::Int,
        lookups: &["exact", "lt", "gt"],
    },
    FieldSpec {
        name: "name",
        kind: Kind::Text,
        lookups: TEXT,
    },
];

impl Filterable for TestSuite {
    fn values(&self, field: &str) -> Vec<Val> {
        vec![match field {
            "id" => Val::Int(self.id.0),
            "name" => Val::Text(self.name.clone()),
            _ => Val::Null,
        }]
    }
}

const RESULTS: &[&str] = &["pass", "fail", "skip", "unknown"];
const CASE_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "id",
        kind: Kind::Int,
        lookups: NUMBER,
    },
    FieldSpec {
        name: "result",
        kind: Kind::Choice(RESULTS, false),
        lookups: CHOICE,
    },
    FieldSpec {
        name: "start_log_line",
        kind: Kind::Int,
        lookups: NUMBER,
    },
    FieldSpec {
        name: "end_log_line",
        kind: Kind::Int,
        lookups: NUMBER,
    },
    FieldSpec {
        name: "logged",
        kind: Kind::Time,
        lookups: TIME,
    },
    FieldSpec {
        name: "measurement",
        kind: Kind::Float,
        lookups: NUMBER,
    },
    FieldSpec {
        name: "metadata",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "units",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "name",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "suite__name",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "suite__id",
        kind: Kind::Int,
        lookups: NUMBER,
    },
    FieldSpec {
        name: "test_set__name",
        kind: Kind::Text,
        lookups: TEXT,
    },
];

impl Filterable for TestCase {
    fn values(&self, field: &str) -> Vec<Val> {
        let line = |l: Option<u64>| {
            l.map_or(Val::Null, |l| {
                Val::Int(i64::try_from(l).unwrap_or(i64::MAX))
            })
        };
        vec![match field {
            "id" => Val::Int(self.id.0),
            "result" => Val::Text(self.result.as_str().to_owned()),
            "start_log_line" => line(self.start_log_line),
            "end_log_line" => line(self.end_log_line),
            "logged" => Val::Time(self.logged),
            "measurement" => self.measurement.map_or(Val::Null, Val::Float),
            "metadata" => self.metadata.clone().map_or(Val::Null, Val::Text),
            "units" => Val::Text(self.units.clone()),
            "name" => Val::Text(self.name.clone()),
            "suite__name" => Val::Text(self.suite.clone()),
            "suite__id" => Val::Int(self.suite_id.0),
            "test_set__name" => self.test_set.clone().map_or(Val::Null, Val::Text),
            _ => Val::Null,
        }]
    }
}

/// `GET /jobs/<id>/suites/`.
pub async fn suites(
    State(app): State<App>,
    VisibleJob(job): VisibleJob,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let conds = filter::parse(&params, SUITE_FIELDS)?;
    let page = params.page();
    let mut all: Vec<TestSuite> = app
        .store()
        .call(move |s| s.test_suites(job.id))
        .await?
        .into_iter()
        .filter(|s| filter::matches(s, &conds))
        .collect();
    if let Some((field, desc)) = filter::ordering(&params, &["id", "name"]) {
        filter::sort_by_field(&mut all, field, desc);
    }
    let count = all.len() as u64;
    let results = page
        .slice(all)
        .iter()
        .map(|s| suite_json(&params, s))
        .collect();
    Ok(Json(params.paginated(page, count, results)))
}

/// The suite the `{suite}` path segment names (a row id) of a job the caller may see;
/// 404 otherwise.
#[derive(Debug)]
pub struct VisibleSuite(pub TestSuite);

impl FromRequestParts<App> for VisibleSuite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<VisibleSuite, ApiError> {
        let VisibleJob(job) = VisibleJob::from_request_parts(parts, app).await?;
        let Path(segments) = Path::<HashMap<String, String>>::from_request_parts(parts, app)
            .await
            .map_err(|_| ApiError::NotFound)?;
        let suite_id = segments
            .get("suite")
            .and_then(|s| s.parse::<i64>().ok())
            .map(SuiteId)
            .ok_or(ApiError::NotFound)?;
        app.store()
            .call(move |s| {
                Ok(s.test_suites(job.id)?
                    .into_iter()
                    .find(|t| t.id == suite_id))
            })
            .await?
            .map(VisibleSuite)
            .ok_or(ApiError::NotFound)
    }
}

/// `GET /jobs/<id>/suites/<suite>/`.
pub async fn suite(VisibleSuite(suite): VisibleSuite, params: Params) -> Json<Value> {
    Json(suite_json(&params, &suite))
}

/// A page of test cases of `job` (one suite if given), filtered and ordered.
async fn case_page(
    app: &App,
    job: JobId,
    suite: Option<String>,
    params: &Params,
) -> Result<Value, ApiError> {
    let conds = filter::parse(params, CASE_FIELDS)?;
    let ordering = filter::ordering(
        params,
        &[
            "id",
            "name",
            "result",
            "logged",
            "start_log_line",
            "end_log_line",
            "measurement",
        ],
    );
    let page = params.page();
    let simple = conds.is_empty() && ordering.is_none_or(|(f, d)| f == "id" && !d);
    let (count, cases) = app
        .store()
        .call(move |s| {
            if simple {
                let count = s.count_test_cases(job, suite.as_deref())?;
                let cases = s.test_cases(job, suite.as_deref(), page.offset, Some(page.limit))?;
                return Ok((count, cases));
            }
            let mut all: Vec<TestCase> = s
                .test_cases(job, suite.as_deref(), 0, None)?
                .into_iter()
                .filter(|c| filter::matches(c, &conds))
                .collect();
            if let Some((field, desc)) = ordering {
                filter::sort_by_field(&mut all, field, desc);
            }
            Ok((all.len() as u64, page.slice(all)))
        })
        .await?;
    let results = cases.iter().map(|c| case_json(params, c)).collect();
    Ok(params.paginated(page, count, results))
}

/// `GET /jobs/<id>/tests/`.
pub async fn tests(
    State(app): State<App>,
    VisibleJob(job): VisibleJob,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(case_page(&app, job.id, None, &params).await?))
}

/// `GET /jobs/<id>/suites/<suite>/tests/`.
pub async fn suite_tests(
    State(app): State<App>,
    VisibleSuite(suite): VisibleSuite,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        case_page(&app, suite.job, Some(suite.name), &params).await?,
    ))
}

/// `GET /jobs/<id>/suites/<suite>/tests/<case>/`.
pub async fn suite_test(
    State(app): State<App>,
    VisibleSuite(suite): VisibleSuite,
    Path(segments): Path<HashMap<String, String>>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let case = segments.get("case").map_or("", String::as_str);
    let case_id = case
        .parse::<i64>()
        .map(TestCaseId)
        .map_err(|_| ApiError::NotFound)?;
    let found = app
        .store()
        .call(move |s| s.test_case(case_id))
        .await?
        .filter(|c| c.suite_id == suite.id)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(case_json(&params, &found)))
}

/// `GET /jobs/<id>/suites/<suite>/csv|yaml/`: the suite's cases, `limit`/`offset` honoured.
fn suite_export(
    app: App,
    suite: TestSuite,
    params: &Params,
    format: Format,
    extension: &str,
) -> Response {
    let filename = format!("suite_{}.{extension}", suite.name);
    let selection = Selection {
        job: suite.job,
        suite: Some(suite.name),
        offset: int_param(params, "offset").unwrap_or(0),
        limit: int_param(params, "limit").filter(|l| *l > 0),
    };
    export(app, selection, format, filename)
}

/// A streamed export of `selection` as an attachment named `filename`.
fn export(app: App, selection: Selection, format: Format, filename: String) -> Response {
    let body = stream_cases(app, selection, format);
    with_headers(body.into_response(), content_type(format), Some(filename))
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Csv { .. } => "application/csv",
        Format::YamlItems | Format::YamlList => "application/yaml",
    }
}

/// Every field quoted, header first: the REST CSV exports.
const REST_CSV: Format = Format::Csv {
    all: true,
    header: true,
};

/// `GET /jobs/<id>/suites/<suite>/csv/`.
pub async fn suite_csv(
    State(app): State<App>,
    VisibleSuite(suite): VisibleSuite,
    params: Params,
) -> Response {
    suite_export(app, suite, &params, REST_CSV, "csv")
}

/// `GET /jobs/<id>/suites/<suite>/yaml/`.
pub async fn suite_yaml(
    State(app): State<App>,
    VisibleSuite(suite): VisibleSuite,
    params: Params,
) -> Response {
    suite_export(app, suite, &params, Format::YamlList, "yaml")
}

/// `GET /jobs/<id>/csv/`: every case, every field quoted, streamed.
pub async fn csv(State(app): State<App>, VisibleJob(job): VisibleJob) -> Response {
    let filename = format!("job_{}.csv", job.id);
    export(app, Selection::job(job.id), REST_CSV, filename)
}

/// `GET /jobs/<id>/yaml/`: every case as one YAML list (`[]` when there are none).
pub async fn yaml(State(app): State<App>, VisibleJob(job): VisibleJob) -> Response {
    let filename = format!("job_{}.yaml", job.id);
    export(app, Selection::job(job.id), Format::YamlList, filename)
}

/// Every suite of a visible job with its cases, for JUnit and TAP: one query, grouped.
async fn all_cases(app: &App, job: JobId) -> Result<Vec<(TestSuite, Vec<TestCase>)>, ApiError> {
    let (suites, cases) = app
        .store()
        .call(move |s| {
            Ok((
                s.test_suites(job)?,
                s.test_cases_after(job, None, None, 0, u64::MAX)?,
            ))
        })
        .await?;
    let mut grouped: Vec<(TestSuite, Vec<TestCase>)> = suites
        .into_iter()
        .map(|suite| (suite, Vec::new()))
        .collect();
    for case in cases {
        // Both lists are in suite order, so a case's suite is at or after the last one.
        if let Some(slot) = grouped
            .iter_mut()
            .find(|(suite, _)| suite.id == case.suite_id)
        {
            slot.1.push(case);
        }
    }
    Ok(grouped)
}

fn xml_escape(text: &str, out: &mut String) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
}

/// The `duration` of a case's result metadata, in seconds.
fn duration(case: &TestCase) -> Option<f64> {
    let meta: serde_norway::Value = serde_norway::from_str(case.metadata.as_deref()?).ok()?;
    match meta.get("duration")? {
        serde_norway::Value::Number(n) => n.as_f64(),
        serde_norway::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `GET /jobs/<id>/junit/?classname_prefix=`.
pub async fn junit(
    State(app): State<App>,
    VisibleJob(job): VisibleJob,
    params: Params,
) -> Result<Response, ApiError> {
    let prefix = params.get("classname_prefix").unwrap_or("").to_owned();
    let suites = all_cases(&app, job.id).await?;
    Ok(with_headers(
        junit_xml(&suites, &prefix).into_response(),
        "application/xml",
        None,
    ))
}

/// Python's `str()` of a sum of durations as junit_xml writes it: `0` when no case has one.
fn total_time(durations: impl Iterator<Item = f64>) -> String {
    let mut any = false;
    let total: f64 = durations.inspect(|_| any = true).sum();
    if any { py_float(total) } else { "0".to_owned() }
}

/// LAVA's JUnit report (junit_xml's `to_xml_report_string`): the root and every suite carry
/// their totals (errors, failures, tests, time), which JUnit readers such as
/// lava-gitlab-runner's take as the verdict.
fn junit_xml(suites: &[(TestSuite, Vec<TestCase>)], prefix: &str) -> String {
    let all = || suites.iter().flat_map(|(_, cases)| cases.iter());
    let failures = all().filter(|c| c.result == TestResult::Fail).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = write!(
        out,
        "<testsuites disabled=\"0\" errors=\"0\" failures=\"{failures}\" tests=\"{}\" time=\"{}\">",
        all().count(),
        total_time(all().filter_map(duration))
    );
    for (suite, cases) in suites {
        let failures = cases
            .iter()
            .filter(|c| c.result == TestResult::Fail)
            .count();
        let skipped = cases
            .iter()
            .filter(|c| c.result == TestResult::Skip)
            .count();
        out.push_str("<testsuite name=\"");
        xml_escape(&suite.name, &mut out);
        let _ = write!(
            out,
            "\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">",
            cases.len(),
            total_time(cases.iter().filter_map(duration))
        );
        let classname = if prefix.is_empty() {
            suite.name.clone()
        } else {
            format!("{prefix}_{}", suite.name)
        };
        for case in cases {
            out.push_str("<testcase name=\"");
            xml_escape(&case.name, &mut out);
            out.push_str("\" classname=\"");
            xml_escape(&classname, &mut out);
            out.push('"');
            if let Some(d) = duration(case) {
                let _ = write!(out, " time=\"{d}\"");
            }
            out.push('>');
            match case.result {
                TestResult::Fail => {
                    let _ = write!(
                        out,
                        "<failure type=\"failure\" message=\"failed\">log lines {}-{}</failure>",
                        case.start_log_line.unwrap_or(0),
                        case.end_log_line.unwrap_or(0)
                    );
                }
                TestResult::Skip => out.push_str("<skipped/>"),
                _ => {}
            }
            out.push_str("</testcase>");
        }
        out.push_str("</testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

/// `GET /jobs/<id>/tap13/`.
pub async fn tap13(
    State(app): State<App>,
    VisibleJob(job): VisibleJob,
) -> Result<Response, ApiError> {
    let suites = all_cases(&app, job.id).await?;
    let total: usize = suites.iter().map(|(_, c)| c.len()).sum();
    let mut out = format!("TAP version 13\n1..{total}\n");
    let mut n = 0;
    for (suite, cases) in &suites {
        let _ = writeln!(out, "# TAP results for {}", suite.name);
        for case in cases {
            n += 1;
            let status = if case.result == TestResult::Pass || case.result == TestResult::Skip {
                "ok"
            } else {
                "not ok"
            };
            let _ = write!(out, "{status} {n} {}", case.name);
            match case.result {
                TestResult::Skip => out.push_str(" # SKIP test skipped"),
                TestResult::Unknown => out.push_str(" # TODO unknown result"),
                _ => {}
            }
            out.push('\n');
        }
    }
    Ok(with_headers(out.into_response(), "application/yaml", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: i64, name: &str, result: TestResult, duration: Option<&str>) -> TestCase {
        TestCase {
            id: TestCaseId(id),
            job: JobId(7),
            suite_id: SuiteId(1),
            suite: "0_smoke".into(),
            test_set: None,
            name: name.into(),
            result,
            measurement: None,
            units: String::new(),
            metadata: duration.map(|d| format!("case: {name}\nduration: '{d}'\n")),
            metadata_json: None,
            start_log_line: Some(3),
            end_log_line: Some(4),
            logged: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn junit_root_carries_the_totals_junit_readers_decide_on() {
        let suite = TestSuite {
            id: SuiteId(1),
            job: JobId(7),
            name: "0_smoke".into(),
        };
        let cases = vec![
            case(1, "ok", TestResult::Pass, Some("1.25")),
            case(2, "bad", TestResult::Fail, Some("0.50")),
            case(3, "later", TestResult::Skip, None),
        ];
        let xml = junit_xml(&[(suite, cases)], "");
        assert!(
            xml.contains(
                "<testsuites disabled=\"0\" errors=\"0\" failures=\"1\" tests=\"3\" time=\"1.75\">"
            ),
            "{xml}"
        );
        assert!(xml.contains("skipped=\"1\" time=\"1.75\">"), "{xml}");
        let empty = junit_xml(&[], "");
        assert!(
            empty.contains("failures=\"0\" tests=\"0\" time=\"0\""),
            "{empty}"
        );
    }
}
