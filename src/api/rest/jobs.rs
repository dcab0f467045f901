//! `/jobs/` and `/jobs/<id>/`: the job list (django-filter filters pushed down to SQL where
//! the store can evaluate them), one job, its log and its metadata. Test results are in
//! [`super::suites`], submission and cancel in [`super::submission`].

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::filter::{
    self, CHOICE, Cond, EXACT, FieldSpec, Filterable, Kind, NUMBER, TEXT, TIME, Val,
};
use super::page::Params;
use super::pyfmt::drf_datetime;
use super::{ApiError, Caller};
use crate::app::App;
use crate::model::{JobId, JobState};
use crate::store::{Job, JobFilter, JobOrder, JobOrderField, Visibility};

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
pub(super) async fn visible(app: &App, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let id = job_id(id)?.to_string();
    let caller = caller.clone();
    app.store()
        .call(move |s| Ok(crate::submit::find_job(s, &caller, &id)))
        .await?
        .map_err(|err| match err {
            crate::submit::SubmitError::Store(err) => err.into(),
            _ => ApiError::NotFound,
        })
}

/// The job the `{id}` path segment names, once the caller may see it (404 otherwise):
/// the authorise-and-load step of every `/jobs/<id>/...` read, done once here.
#[derive(Debug)]
pub struct VisibleJob(pub Job);

impl FromRequestParts<App> for VisibleJob {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<VisibleJob, ApiError> {
        let Path(segments) = Path::<HashMap<String, String>>::from_request_parts(parts, app)
            .await
            .map_err(|_| ApiError::NotFound)?;
        let id = segments.get("id").ok_or(ApiError::NotFound)?;
        let caller = Caller::from_request_parts(parts, app).await?;
        visible(app, &caller, id).await.map(VisibleJob)
    }
}

/// `GET /jobs/<id>/`.
pub async fn detail(
    State(app): State<App>,
    VisibleJob(job): VisibleJob,
) -> Result<Json<Value>, ApiError> {
    let ids = app.store().call(|s| Ids::load(s)).await?;
    Ok(Json(job_json(&job, &ids)))
}

pub(super) fn with_headers(
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
pub(super) fn int_param(params: &Params, name: &str) -> Option<u64> {
    params.get(name).and_then(|v| v.trim().parse::<u64>().ok())
}

/// `GET /jobs/<id>/logs/?start=&end=`: the YAML log lines, 404 when there are none.
pub async fn logs(
    State(app): State<App>,
    VisibleJob(job): VisibleJob,
    params: Params,
) -> Result<Response, ApiError> {
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
    VisibleJob(job): VisibleJob,
) -> Result<Json<Value>, ApiError> {
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
