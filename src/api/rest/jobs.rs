//! `/jobs/` and `/jobs/<id>/`: the job list (every django-filter condition evaluated by the
//! store in SQL, with the count and the page), one job, its log and its metadata. Test results are in
//! [`super::suites`], submission and cancel in [`super::submission`].

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::filter::{self, CHOICE, Cond, EXACT, FieldSpec, Kind, NUMBER, Operand, TEXT, TIME, Val};
use super::page::Params;
use super::{ApiError, Caller};
use crate::app::App;
use crate::model::{JobHealth, JobId, JobState};
use crate::pyfmt::drf_datetime;
use crate::store::{
    Case, Cmp, Job, JobCond, JobFilter, JobInt, JobOrder, JobOrderField, JobText, JobTime,
    TextMatch, Visibility,
};

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

/// A validated condition as the store's [`JobCond`]: every job field is a column or a
/// membership the store evaluates in SQL, so the list never filters rows in Rust.
/// `parse` has already checked that each value has its field's kind.
fn store_cond(cond: &Cond) -> Result<JobCond, ApiError> {
    let text_field = match cond.field {
        "target_group" => Some(JobText::TargetGroup),
        "description" => Some(JobText::Description),
        "definition" => Some(JobText::Definition),
        "original_definition" => Some(JobText::OriginalDefinition),
        "multinode_definition" => Some(JobText::MultinodeDefinition),
        "failure_comment" => Some(JobText::FailureComment),
        "requested_device_type" | "requested_device_type__name" => {
            Some(JobText::RequestedDeviceType)
        }
        "actual_device" | "actual_device__hostname" => Some(JobText::ActualDevice),
        "submitter__username" => Some(JobText::Submitter),
        "tags__name" => Some(JobText::Tag),
        "viewing_groups__name" => Some(JobText::ViewingGroup),
        _ => None,
    };
    let int_field = match cond.field {
        "id" => Some(JobInt::Id),
        "priority" => Some(JobInt::Priority),
        _ => None,
    };
    let time_field = match cond.field {
        "submit_time" => Some(JobTime::Submit),
        "start_time" => Some(JobTime::Start),
        "end_time" => Some(JobTime::End),
        _ => None,
    };
    let cmp = match cond.lookup {
        "lt" => Cmp::Lt,
        "lte" => Cmp::Lte,
        "gt" => Cmp::Gt,
        "gte" => Cmp::Gte,
        _ => Cmp::Eq,
    };
    let unexpected = || {
        ApiError::Internal(format!(
            "job filter {}__{} has no SQL form",
            cond.field, cond.lookup
        ))
    };
    let values = match cond.operand() {
        Operand::One(v) => std::slice::from_ref(v),
        Operand::Many(vs) => vs.as_slice(),
        Operand::IsNull(null) => {
            return time_field
                .map(|f| JobCond::TimeIsNull(f, *null))
                .ok_or_else(unexpected);
        }
    };
    let many = matches!(cond.operand(), Operand::Many(_));
    let texts = || -> Result<Vec<String>, ApiError> {
        values
            .iter()
            .map(|v| match v {
                Val::Text(t) => Ok(t.clone()),
                _ => Err(unexpected()),
            })
            .collect()
    };
    if let Some(field) = text_field {
        let mut texts = texts()?;
        let (how, case) = match cond.lookup {
            "in" => return Ok(JobCond::TextIn(field, texts)),
            "exact" => (TextMatch::Exact, Case::Sensitive),
            "iexact" => (TextMatch::Exact, Case::Insensitive),
            "contains" => (TextMatch::Contains, Case::Sensitive),
            "icontains" => (TextMatch::Contains, Case::Insensitive),
            "startswith" => (TextMatch::StartsWith, Case::Sensitive),
            "istartswith" => (TextMatch::StartsWith, Case::Insensitive),
            "endswith" => (TextMatch::EndsWith, Case::Sensitive),
            "iendswith" => (TextMatch::EndsWith, Case::Insensitive),
            _ => return Err(unexpected()),
        };
        return match (texts.pop(), texts.is_empty()) {
            (Some(text), true) => Ok(JobCond::Text(field, how, case, text)),
            _ => Err(unexpected()),
        };
    }
    if let Some(field) = int_field {
        let ints = values
            .iter()
            .map(|v| match v {
                Val::Int(n) => Ok(*n),
                _ => Err(unexpected()),
            })
            .collect::<Result<Vec<i64>, _>>()?;
        return match (many, ints.as_slice()) {
            (true, _) => Ok(JobCond::IntIn(field, ints)),
            (false, [n]) => Ok(JobCond::Int(field, cmp, *n)),
            _ => Err(unexpected()),
        };
    }
    if let Some(field) = time_field {
        return match values {
            [Val::Time(t)] if !many => Ok(JobCond::Time(field, cmp, *t)),
            _ => Err(unexpected()),
        };
    }
    match cond.field {
        "health_check" => match values {
            [Val::Bool(b)] => Ok(JobCond::HealthCheck(*b)),
            _ => Err(unexpected()),
        },
        "state" => Ok(JobCond::State(
            texts()?
                .iter()
                .map(|t| t.parse::<JobState>().map_err(|_| unexpected()))
                .collect::<Result<_, _>>()?,
        )),
        "health" => Ok(JobCond::Health(
            texts()?
                .iter()
                .map(|t| t.parse::<JobHealth>().map_err(|_| unexpected()))
                .collect::<Result<_, _>>()?,
        )),
        _ => Err(unexpected()),
    }
}

/// The wire form of a job (`TestJobSerializer`). Fields are declared in name order: that
/// is the order the API has always written them in (serde_json's sorted maps), and the
/// list serialises these structs directly rather than through a `Value` map.
#[derive(Debug, Serialize)]
struct JobJson<'a> {
    actual_device: Option<&'a str>,
    definition: &'a str,
    description: &'a str,
    end_time: Option<String>,
    failure_comment: Option<&'a str>,
    failure_tags: [i64; 0],
    health: &'static str,
    health_check: bool,
    id: i64,
    multinode_definition: &'a str,
    original_definition: &'a str,
    priority: u8,
    requested_device_type: Option<&'a str>,
    start_time: Option<String>,
    state: &'static str,
    submit_time: String,
    submitter: &'a str,
    tags: Vec<i64>,
    viewing_groups: Vec<i64>,
}

/// Tag and group ids by name, for the id lists in job objects.
#[derive(Debug, Default)]
struct Ids {
    tags: HashMap<String, i64>,
    groups: HashMap<String, i64>,
}

impl Ids {
    /// Whether rendering `jobs` needs any id (most pages have no tags or viewing groups,
    /// and then no tag or group table is read).
    fn needed(jobs: &[Job]) -> bool {
        jobs.iter()
            .any(|j| !j.tags.is_empty() || matches!(j.visibility, Visibility::Group(_)))
    }

    fn load(s: &mut crate::store::Store) -> Result<Ids, crate::store::Error> {
        Ok(Ids {
            tags: s.tags()?.into_iter().map(|t| (t.name, t.id.0)).collect(),
            groups: s.groups()?.into_iter().map(|g| (g.name, g.id.0)).collect(),
        })
    }
}

fn job_json<'a>(job: &'a Job, ids: &Ids) -> JobJson<'a> {
    let groups = match &job.visibility {
        Visibility::Group(names) => names
            .iter()
            .filter_map(|n| ids.groups.get(n).copied())
            .collect(),
        _ => Vec::new(),
    };
    JobJson {
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
    }
}

/// `GET /jobs/`.
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
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
    let filter = JobFilter {
        viewer: caller.viewer(),
        order,
        conds: conds.iter().map(store_cond).collect::<Result<_, _>>()?,
        offset: page.offset,
        limit: Some(page.limit),
        ..JobFilter::default()
    };
    let (count, jobs, ids) = app
        .store()
        .call(move |s| {
            let count = s.count_jobs(&filter)?;
            let jobs = s.jobs(&filter)?;
            let ids = if Ids::needed(&jobs) {
                Ids::load(s)?
            } else {
                Ids::default()
            };
            Ok((count, jobs, ids))
        })
        .await?;
    // Rendered after the store call, so the store is not held while formatting.
    let results: Vec<JobJson<'_>> = jobs.iter().map(|j| job_json(j, &ids)).collect();
    Ok(Json(params.page_body(page, count, results)).into_response())
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
) -> Result<Response, ApiError> {
    let ids = job_ids(&app, &job).await?;
    Ok(Json(job_json(&job, &ids)).into_response())
}

/// The tag and group ids `job`'s wire form needs (none are read when it has neither).
async fn job_ids(app: &App, job: &Job) -> Result<Ids, ApiError> {
    Ok(if Ids::needed(std::slice::from_ref(job)) {
        app.store().call(Ids::load).await?
    } else {
        Ids::default()
    })
}

/// `job` as `GET /jobs/<id>/` shows it, as a JSON value (for the superuser's edits).
pub(super) async fn job_value(app: &App, job: &Job) -> Result<Value, ApiError> {
    let ids = job_ids(app, job).await?;
    serde_json::to_value(job_json(job, &ids)).map_err(|e| ApiError::Internal(e.to_string()))
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
    // The path rule, not a row: the file the dispatcher writes. Read on the blocking pool
    // (never inside a store call); a job that has not started has no file, hence a 404.
    let path = app.config().job_log_path(job.id);
    let text = crate::store::joblog::read_text_blocking(path, start, end).await?;
    if text.is_empty() {
        return Err(ApiError::NotFound);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conds(query: &[(&str, &str)]) -> Vec<JobCond> {
        let mut params = Params::default();
        params.pairs = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        filter::parse(&params, JOB_FIELDS)
            .unwrap()
            .iter()
            .map(|c| store_cond(c).unwrap())
            .collect()
    }

    #[test]
    fn every_job_filter_has_an_sql_form() {
        for spec in JOB_FIELDS {
            let value = match spec.kind {
                Kind::Int => "7",
                Kind::Time => "2023-01-10T10:00:00Z",
                Kind::Bool => "true",
                Kind::Choice(names, _) => names[0],
                Kind::Text | Kind::Float => "x",
            };
            for lookup in spec.lookups {
                let key = format!("{}__{lookup}", spec.name);
                let value = if *lookup == "isnull" { "false" } else { value };
                assert_eq!(conds(&[(&key, value)]).len(), 1, "{key}={value}");
            }
            assert_eq!(conds(&[(spec.name, value)]).len(), 1, "{}", spec.name);
        }
    }

    #[test]
    fn lookups_become_typed_conditions() {
        assert_eq!(
            conds(&[("state", "Submitted"), ("id__gt", "10")]),
            vec![
                JobCond::State(vec![JobState::Submitted]),
                JobCond::Int(JobInt::Id, Cmp::Gt, 10)
            ]
        );
        assert_eq!(
            conds(&[("health__in", "Complete,Canceled"), ("id__in", "3,4")]),
            vec![
                JobCond::Health(vec![JobHealth::Complete, JobHealth::Canceled]),
                JobCond::IntIn(JobInt::Id, vec![3, 4])
            ]
        );
        assert_eq!(
            conds(&[
                ("tags__name__istartswith", "USB"),
                ("end_time__isnull", "true")
            ]),
            vec![
                JobCond::Text(
                    JobText::Tag,
                    TextMatch::StartsWith,
                    Case::Insensitive,
                    "USB".into()
                ),
                JobCond::TimeIsNull(JobTime::End, true)
            ]
        );
        assert_eq!(
            conds(&[("actual_device", "q1"), ("health_check", "False")]),
            vec![
                JobCond::Text(
                    JobText::ActualDevice,
                    TextMatch::Exact,
                    Case::Sensitive,
                    "q1".into()
                ),
                JobCond::HealthCheck(false)
            ]
        );
    }
}
