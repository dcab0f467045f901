//! `/jobs/...`: the job list and detail, logs, metadata, test suites and cases, the results
//! exports (CSV, YAML, JUnit, TAP13), validation and cancel.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::filter::{
    self, CHOICE, Cond, EXACT, FieldSpec, Filterable, Kind, NUMBER, TEXT, TIME, Val,
};
use super::page::Params;
use super::pyfmt::{drf_datetime, py_decimal};
use super::{ApiError, Caller};
use crate::api::results::{ExportCase, Format, csv_header, stream_job, yaml_cases};
use crate::app::App;
use crate::model::{JobId, JobState, SuiteId, TestCaseId, TestResult};
use crate::store::{Job, JobFilter, JobOrder, JobOrderField, TestCase, TestSuite, Visibility};

const STATES: &[&str] = &[
    "Submitted",
    "Scheduling",
    "Scheduled",
    "Running",
    "Canceling",
    "Finished",
];
const HEALTHS: &[&str] = &["Unknown", "Complete", "Incomplete", "Canceled"];

/// The job filters of LAVA's `TestJobFilter`.
const JOB_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "id",
        kind: Kind::Int,
        lookups: NUMBER,
    },
    FieldSpec {
        name: "submit_time",
        kind: Kind::Time,
        lookups: TIME,
    },
    FieldSpec {
        name: "start_time",
        kind: Kind::Time,
        lookups: TIME,
    },
    FieldSpec {
        name: "end_time",
        kind: Kind::Time,
        lookups: TIME,
    },
    FieldSpec {
        name: "health_check",
        kind: Kind::Bool,
        lookups: EXACT,
    },
    FieldSpec {
        name: "target_group",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "state",
        kind: Kind::Choice(STATES, true),
        lookups: CHOICE,
    },
    FieldSpec {
        name: "health",
        kind: Kind::Choice(HEALTHS, true),
        lookups: CHOICE,
    },
    FieldSpec {
        name: "priority",
        kind: Kind::Int,
        lookups: NUMBER,
    },
    FieldSpec {
        name: "description",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "definition",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "original_definition",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "multinode_definition",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "failure_comment",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "requested_device_type",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "requested_device_type__name",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "actual_device",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "actual_device__hostname",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "submitter__username",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "tags__name",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "viewing_groups__name",
        kind: Kind::Text,
        lookups: TEXT,
    },
];

impl Filterable for Job {
    fn values(&self, field: &str) -> Vec<Val> {
        let text = |s: &str| Val::Text(s.to_owned());
        let opt_text = |s: &Option<String>| s.as_deref().map_or(Val::Null, text);
        let time = |t: Option<time::OffsetDateTime>| t.map_or(Val::Null, Val::Time);
        vec![match field {
            "id" => Val::Int(self.id.0),
            "submit_time" => Val::Time(self.submit_time),
            "start_time" => time(self.start_time),
            "end_time" => time(self.end_time),
            "health_check" => Val::Bool(self.health_check),
            "target_group" => opt_text(&self.target_group),
            "state" => text(self.state.as_str()),
            "health" => text(self.health.as_str()),
            "priority" => Val::Int(i64::from(self.priority.value())),
            "description" => text(&self.description),
            "definition" => text(&self.definition),
            "original_definition" => text(&self.original_definition),
            "multinode_definition" => text(&self.multinode_definition),
            "failure_comment" => opt_text(&self.failure_comment),
            "requested_device_type" | "requested_device_type__name" => {
                opt_text(&self.requested_device_type)
            }
            "actual_device" | "actual_device__hostname" => opt_text(&self.actual_device),
            "submitter__username" => text(&self.submitter),
            "tags__name" => return self.tags.iter().map(|t| text(t)).collect(),
            "viewing_groups__name" => {
                return match &self.visibility {
                    Visibility::Group(groups) => groups.iter().map(|g| text(g)).collect(),
                    _ => Vec::new(),
                };
            }
            _ => Val::Null,
        }]
    }
}

/// Moves the conditions the store can evaluate in SQL into `filter`; returns the rest.
fn push_down(conds: Vec<Cond>, filter: &mut JobFilter) -> Vec<Cond> {
    let mut rest = Vec::new();
    for cond in conds {
        let text = |v: &Val| match v {
            Val::Text(t) => Some(t.clone()),
            _ => None,
        };
        let pushed = match cond.field {
            "state" if filter.states.is_empty() => cond.any_of().is_some_and(|vals| {
                let states: Vec<JobState> = vals
                    .iter()
                    .filter_map(|v| text(v).and_then(|t| t.parse().ok()))
                    .collect();
                let ok = states.len() == vals.len();
                if ok {
                    filter.states = states;
                }
                ok
            }),
            "health" if filter.health.is_none() => {
                match cond.exact().and_then(text).and_then(|t| t.parse().ok()) {
                    Some(h) => {
                        filter.health = Some(h);
                        true
                    }
                    None => false,
                }
            }
            "submitter__username" if filter.submitter.is_none() => {
                match cond.exact().and_then(text) {
                    Some(name) => {
                        filter.submitter = Some(name);
                        true
                    }
                    None => false,
                }
            }
            "requested_device_type" | "requested_device_type__name"
                if filter.requested_device_types.is_empty() =>
            {
                match cond.any_of() {
                    Some(vals) => {
                        filter.requested_device_types =
                            vals.iter().filter_map(|v| text(v)).collect();
                        true
                    }
                    None => false,
                }
            }
            "actual_device" | "actual_device__hostname" if filter.actual_device.is_none() => {
                match cond.exact().and_then(text) {
                    Some(name) => {
                        filter.actual_device = Some(name);
                        true
                    }
                    None => false,
                }
            }
            "health_check" if filter.health_check.is_none() => match cond.exact() {
                Some(Val::Bool(b)) => {
                    filter.health_check = Some(*b);
                    true
                }
                _ => false,
            },
            "target_group" if filter.target_group.is_none() => match cond.exact().and_then(text) {
                Some(group) => {
                    filter.target_group = Some(group);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if !pushed {
            rest.push(cond);
        }
    }
    rest
}

/// The wire form of a job (`TestJobSerializer`).
#[derive(Debug, Serialize)]
struct JobJson<'a> {
    id: i64,
    submitter: &'a str,
    viewing_groups: Vec<i64>,
    description: &'a str,
    health_check: bool,
    requested_device_type: Option<&'a str>,
    tags: Vec<i64>,
    actual_device: Option<&'a str>,
    submit_time: String,
    start_time: Option<String>,
    end_time: Option<String>,
    state: &'static str,
    health: &'static str,
    priority: u8,
    definition: &'a str,
    original_definition: &'a str,
    multinode_definition: &'a str,
    failure_tags: [i64; 0],
    failure_comment: Option<&'a str>,
}

/// Tag and group ids by name, for the id lists in job objects.
#[derive(Debug, Default)]
struct Ids {
    tags: HashMap<String, i64>,
    groups: HashMap<String, i64>,
}

impl Ids {
    fn load(s: &crate::store::Store) -> Result<Ids, crate::store::Error> {
        Ok(Ids {
            tags: s.tags()?.into_iter().map(|t| (t.name, t.id.0)).collect(),
            groups: s.groups()?.into_iter().map(|g| (g.name, g.id.0)).collect(),
        })
    }
}

fn job_json(job: &Job, ids: &Ids) -> Value {
    let groups = match &job.visibility {
        Visibility::Group(names) => names
            .iter()
            .filter_map(|n| ids.groups.get(n).copied())
            .collect(),
        _ => Vec::new(),
    };
    let wire = JobJson {
        id: job.id.0,
        submitter: &job.submitter,
        viewing_groups: groups,
        description: &job.description,
        health_check: job.health_check,
        requested_device_type: job.requested_device_type.as_deref(),
        tags: job
            .tags
            .iter()
            .filter_map(|t| ids.tags.get(t).copied())
            .collect(),
        actual_device: job.actual_device.as_deref(),
        submit_time: drf_datetime(job.submit_time),
        start_time: job.start_time.map(drf_datetime),
        end_time: job.end_time.map(drf_datetime),
        state: job.state.as_str(),
        health: job.health.as_str(),
        priority: job.priority.value(),
        definition: &job.definition,
        original_definition: &job.original_definition,
        multinode_definition: &job.multinode_definition,
        failure_tags: [],
        failure_comment: job.failure_comment.as_deref(),
    };
    serde_json::to_value(wire).unwrap_or(Value::Null)
}

/// `GET /jobs/`.
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let conds = filter::parse(&params, JOB_FIELDS)?;
    let page = params.page();
    let order = match filter::ordering(&params, &["id", "submit_time", "start_time", "end_time"]) {
        Some((field, descending)) => JobOrder {
            field: match field {
                "submit_time" => JobOrderField::SubmitTime,
                "start_time" => JobOrderField::StartTime,
                "end_time" => JobOrderField::EndTime,
                _ => JobOrderField::Id,
            },
            descending,
        },
        None => JobOrder {
            field: JobOrderField::Id,
            descending: false,
        },
    };
    let mut filter = JobFilter {
        viewer: caller.viewer(),
        order,
        ..JobFilter::default()
    };
    let rest = push_down(conds, &mut filter);
    let (count, results) = app
        .store()
        .call(move |s| {
            let ids = Ids::load(s)?;
            let (count, jobs) = if rest.is_empty() {
                let count = s.count_jobs(&filter)?;
                let mut filter = filter;
                filter.offset = page.offset;
                filter.limit = Some(page.limit);
                (count, s.jobs(&filter)?)
            } else {
                let all: Vec<Job> = s
                    .jobs(&filter)?
                    .into_iter()
                    .filter(|j| filter::matches(j, &rest))
                    .collect();
                (all.len() as u64, page.slice(all))
            };
            Ok((
                count,
                jobs.iter().map(|j| job_json(j, &ids)).collect::<Vec<_>>(),
            ))
        })
        .await?;
    Ok(Json(params.paginated(page, count, results)))
}

/// Parses a job id path segment; anything else is 404, as Django's URL patterns would not
/// match it.
fn job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse::<i64>()
        .map(JobId)
        .map_err(|_| ApiError::NotFound)
}

/// The job, if it exists and the caller may see it (404 otherwise, as the view's queryset
/// hides it).
async fn visible(app: &App, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let id = job_id(id)?;
    let viewer = caller.viewer();
    app.store()
        .call(move |s| match s.job(id)? {
            Some(job) if s.can_view_job(id, viewer)? => Ok(Some(job)),
            _ => Ok(None),
        })
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /jobs/<id>/`.
pub async fn detail(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    let ids = app.store().call(|s| Ids::load(s)).await?;
    Ok(Json(job_json(&job, &ids)))
}

fn with_headers(
    mut response: Response,
    content_type: &'static str,
    filename: Option<String>,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(name) = filename
        && let Ok(value) = HeaderValue::from_str(&format!("attachment; filename={name}"))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// LAVA's `safe_str2int`: a bad number is treated as absent.
fn int_param(params: &Params, name: &str) -> Option<u64> {
    params.get(name).and_then(|v| v.trim().parse::<u64>().ok())
}

/// `GET /jobs/<id>/logs/?start=&end=`: the YAML log lines, 404 when there are none.
pub async fn logs(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    let start = int_param(&params, "start").unwrap_or(0);
    let end = int_param(&params, "end");
    let data_dir = app.config().data_dir.clone();
    let job_id = job.id;
    let text = app
        .store()
        .call(move |s| {
            let Some(entry) = s.job_log(job_id)? else {
                return Ok(None);
            };
            let path = if entry.path.is_absolute() {
                entry.path
            } else {
                data_dir.join(entry.path)
            };
            Ok(Some(crate::store::joblog::read_text(&path, start, end)))
        })
        .await?
        .transpose()?
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::NotFound)?;
    Ok(with_headers(
        text.into_response(),
        "application/yaml",
        Some(format!("job_{}.yaml", job.id)),
    ))
}

/// `GET /jobs/<id>/metadata/`.
pub async fn metadata(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    let entries = app.store().call(move |s| s.job_metadata(job.id)).await?;
    let list: Vec<Value> = entries
        .into_iter()
        .map(|(name, value)| {
            let mut map = serde_json::Map::new();
            map.insert(name, Value::String(value));
            Value::Object(map)
        })
        .collect();
    Ok(Json(json!({ "metadata": list })))
}

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
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let job = visible(&app, &caller, &id).await?;
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

/// The suite `suite` (a row id) of a visible job.
async fn find_suite(
    app: &App,
    caller: &Caller,
    id: &str,
    suite: &str,
) -> Result<TestSuite, ApiError> {
    let job = visible(app, caller, id).await?;
    let suite_id = suite
        .parse::<i64>()
        .map(SuiteId)
        .map_err(|_| ApiError::NotFound)?;
    app.store()
        .call(move |s| {
            Ok(s.test_suites(job.id)?
                .into_iter()
                .find(|t| t.id == suite_id))
        })
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /jobs/<id>/suites/<suite>/`.
pub async fn suite(
    State(app): State<App>,
    caller: Caller,
    Path((id, suite)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let suite = find_suite(&app, &caller, &id, &suite).await?;
    Ok(Json(suite_json(&params, &suite)))
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
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    Ok(Json(case_page(&app, job.id, None, &params).await?))
}

/// `GET /jobs/<id>/suites/<suite>/tests/`.
pub async fn suite_tests(
    State(app): State<App>,
    caller: Caller,
    Path((id, suite)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let suite = find_suite(&app, &caller, &id, &suite).await?;
    Ok(Json(
        case_page(&app, suite.job, Some(suite.name), &params).await?,
    ))
}

/// `GET /jobs/<id>/suites/<suite>/tests/<case>/`.
pub async fn suite_test(
    State(app): State<App>,
    caller: Caller,
    Path((id, suite, case)): Path<(String, String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let suite = find_suite(&app, &caller, &id, &suite).await?;
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

/// The suite's cases for the REST suite exports (`limit`/`offset` honoured).
async fn suite_export_cases(
    app: &App,
    caller: &Caller,
    id: &str,
    suite: &str,
    params: &Params,
) -> Result<(TestSuite, Vec<TestCase>), ApiError> {
    let suite = find_suite(app, caller, id, suite).await?;
    let limit = int_param(params, "limit").filter(|l| *l > 0);
    let offset = int_param(params, "offset").unwrap_or(0);
    let (job, name) = (suite.job, suite.name.clone());
    let cases = app
        .store()
        .call(move |s| s.test_cases(job, Some(&name), offset, limit))
        .await?;
    Ok((suite, cases))
}

/// `GET /jobs/<id>/suites/<suite>/csv/`.
pub async fn suite_csv(
    State(app): State<App>,
    caller: Caller,
    Path((id, suite)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let (suite, cases) = suite_export_cases(&app, &caller, &id, &suite, &params).await?;
    let mut out = String::new();
    csv_header(true, &mut out);
    for case in &cases {
        ExportCase::new(case).csv(true, &mut out);
    }
    Ok(with_headers(
        out.into_response(),
        "application/csv",
        Some(format!("suite_{}.csv", suite.name)),
    ))
}

/// `GET /jobs/<id>/suites/<suite>/yaml/`.
pub async fn suite_yaml(
    State(app): State<App>,
    caller: Caller,
    Path((id, suite)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let (suite, cases) = suite_export_cases(&app, &caller, &id, &suite, &params).await?;
    let mut out = String::new();
    yaml_cases(&cases, &mut out);
    Ok(with_headers(
        out.into_response(),
        "application/yaml",
        Some(format!("suite_{}.yaml", suite.name)),
    ))
}

/// `GET /jobs/<id>/csv/`: every case, every field quoted, streamed.
pub async fn csv(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    let body = stream_job(app, job.id, Format::Csv(true));
    Ok(with_headers(
        body.into_response(),
        "application/csv",
        Some(format!("job_{}.csv", job.id)),
    ))
}

/// `GET /jobs/<id>/yaml/`: every case as one YAML list (`[]` when there are none).
pub async fn yaml(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    let job_id = job.id;
    let any = app
        .store()
        .call(move |s| s.count_test_cases(job_id, None))
        .await?
        > 0;
    let body = if any {
        stream_job(app, job.id, Format::Yaml)
    } else {
        Body::from("[]\n")
    };
    Ok(with_headers(
        body.into_response(),
        "application/yaml",
        Some(format!("job_{}.yaml", job.id)),
    ))
}

/// Every suite of a visible job with its cases, for JUnit and TAP.
async fn all_cases(app: &App, job: JobId) -> Result<Vec<(TestSuite, Vec<TestCase>)>, ApiError> {
    Ok(app
        .store()
        .call(move |s| {
            s.test_suites(job)?
                .into_iter()
                .map(|suite| {
                    let cases = s.test_cases(job, Some(&suite.name), 0, None)?;
                    Ok((suite, cases))
                })
                .collect::<Result<Vec<_>, crate::store::Error>>()
        })
        .await?)
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
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    let prefix = params.get("classname_prefix").unwrap_or("").to_owned();
    let suites = all_cases(&app, job.id).await?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuites>");
    for (suite, cases) in &suites {
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
            "\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            cases.len()
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
    Ok(with_headers(out.into_response(), "application/xml", None))
}

/// `GET /jobs/<id>/tap13/`.
pub async fn tap13(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible(&app, &caller, &id).await?;
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

/// A JSON or form body's fields (DRF accepts both).
fn body_fields(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HashMap<String, Value>, ApiError> {
    let is_json = content_type.is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map.into_iter().collect()),
            Ok(_) => Err(ApiError::detail("Invalid data. Expected a dictionary.")),
            Err(err) => Err(ApiError::detail(format!("JSON parse error - {err}"))),
        }
    } else {
        let pairs: Vec<(String, String)> = axum::extract::Query::try_from_uri(
            &format!("/?{}", String::from_utf8_lossy(body))
                .parse()
                .map_err(|_| ApiError::detail("Malformed form data."))?,
        )
        .map(|axum::extract::Query(p)| p)
        .map_err(|_| ApiError::detail("Malformed form data."))?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect())
    }
}

/// `POST /jobs/validate/` (`definition`, `strict`): always 200 with the verdict, 400 when
/// the definition is missing.
pub async fn validate(
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let fields = body_fields(content_type, &body)?;
    let definition = match fields.get("definition") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::BadRequest(
                json!({ "definition": "Test job definition is required." }),
            ));
        }
    };
    let verdict =
        tokio::task::spawn_blocking(move || crate::jobdef::parse_str(&definition).map(|_| ()))
            .await
            .map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(Json(match verdict {
        Ok(()) => json!({ "message": "Job valid." }),
        Err(problems) => {
            let text = problems
                .first()
                .map_or_else(|| "invalid job definition".to_owned(), |p| p.describe());
            json!({ "message": format!("Job invalid: {text}") })
        }
    }))
}

/// `GET /jobs/<id>/cancel/`: the submitter or a superuser may cancel; a job already
/// Canceling or Finished is left alone and the answer is the same.
pub async fn cancel(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    if matches!(job.state, JobState::Canceling | JobState::Finished) {
        return Ok(Json(json!({ "message": "Job cancel signal sent." })));
    }
    let allowed = match &caller {
        Caller::User(user) => user.is_superuser || user.username == job.submitter,
        Caller::Anonymous => false,
    };
    if !allowed {
        return Err(ApiError::Forbidden(
            "You do not have permission to perform this action.",
        ));
    }
    let changes = app.store().call(move |s| s.cancel_job(job.id)).await?;
    app.changed(&changes);
    Ok(Json(json!({ "message": "Job cancel signal sent." })))
}

/// The shared submission path's view of the caller (with the user's groups).
async fn submitter(app: &App, caller: &Caller) -> Result<crate::api::auth::Caller, ApiError> {
    let user = caller.require_user()?.clone();
    let name = user.username.clone();
    let groups = app
        .store()
        .call(move |s| s.user_groups(&name))
        .await?
        .into_iter()
        .map(|g| g.name)
        .collect();
    Ok(crate::api::auth::Caller {
        user: Some(crate::api::auth::CallerUser {
            id: user.id,
            username: user.username,
            is_superuser: user.is_superuser,
            groups,
        }),
    })
}

/// LAVA's REST answer to a submission: 201 with the new ids (MultiNode ids as `"12.0"`).
fn submitted(
    result: Result<crate::submit::Submitted, crate::submit::SubmitError>,
) -> Result<Response, ApiError> {
    use crate::submit::{SubmitError, Submitted};
    match result {
        Ok(Submitted::Single(id)) => Ok((
            axum::http::StatusCode::CREATED,
            Json(json!({ "message": "job(s) successfully submitted", "job_ids": [id.0] })),
        )
            .into_response()),
        Ok(Submitted::MultiNode(subs)) => {
            let ids: Vec<&str> = subs.iter().map(|(_, sub)| sub.as_str()).collect();
            Ok((
                axum::http::StatusCode::CREATED,
                Json(json!({ "message": "job(s) successfully submitted", "job_ids": ids })),
            )
                .into_response())
        }
        Err(SubmitError::AuthRequired) => Err(ApiError::Unauthorized(
            "Authentication credentials were not provided.",
        )),
        Err(SubmitError::JobNotFound(_)) | Err(SubmitError::JobHidden { .. }) => {
            Err(ApiError::NotFound)
        }
        Err(SubmitError::PermissionDenied) => Err(ApiError::Forbidden(
            "You do not have permission to perform this action.",
        )),
        Err(SubmitError::Store(err)) => Err(err.into()),
        Err(err @ SubmitError::DeviceUnavailable(_)) => Err(ApiError::Message(format!(
            "Devices unavailable: {}",
            err.to_string().trim_start_matches("Device unavailable: ")
        ))),
        Err(err @ SubmitError::Problem(_)) => Err(ApiError::Message(err.to_string())),
        Err(err) => Err(ApiError::Message(format!("job submission failed: {err}"))),
    }
}

/// `POST /jobs/` with `definition`: 201 `{"message", "job_ids"}`.
pub async fn submit(
    State(app): State<App>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let shared = submitter(&app, &caller).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let fields = body_fields(content_type, &body)?;
    let definition = match fields.get("definition") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::BadRequest(
                json!({ "definition": ["This field is required."] }),
            ));
        }
    };
    submitted(crate::submit::submit(&app, &shared, &definition).await)
}

/// `POST /jobs/<id>/resubmit/`: same answer as a submission.
pub async fn resubmit(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    let shared = submitter(&app, &caller).await?;
    submitted(crate::submit::resubmit(&app, &shared, &job.id.to_string()).await)
}
