//! Workers over REST: the list and detail from `store::workers`, the superuser's create,
//! update and delete, and each worker's `dispatcher.yaml` (`config/`) and `env.yaml`
//! (`env/`).
//!
//! LAVA keeps those two files under `/etc/lava-server/dispatcher.d/<worker>/`; lavabox keeps
//! them in the store, so they live in the data directory and survive a restart. A worker has
//! no API token here (no remote workers), so no `token` field is ever sent.

use axum::Json;
use axum::extract::{MatchedPath, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use super::admin::{Admin, AdminFields, Fields, create, created, delete, write_error};
use super::filter::{self, CHOICE, FieldSpec, Filterable, Kind, TEXT, Val};
use super::page::Params;
use crate::app::App;
use crate::pyfmt::drf_datetime;
use crate::store::{Worker, WorkerFile, WorkerHealth, WorkerUpdate};

/// A filterable field of a worker: text, or one of LAVA's display names (case-sensitive).
const fn field(name: &'static str, choices: Option<&'static [&'static str]>) -> FieldSpec {
    match choices {
        None => FieldSpec {
            name,
            kind: Kind::Text,
            lookups: TEXT,
        },
        Some(names) => FieldSpec {
            name,
            kind: Kind::Choice(names, true),
            lookups: CHOICE,
        },
    }
}

const WORKER_FIELDS: &[FieldSpec] = &[
    field("hostname", None),
    field("description", None),
    field("state", Some(&["Online", "Offline"])),
    field("health", Some(&["Active", "Maintenance", "Retired"])),
];

impl Filterable for Worker {
    fn values(&self, field: &str) -> Vec<Val> {
        vec![match field {
            "hostname" => Val::Text(self.hostname.clone()),
            "description" => self.description.clone().map_or(Val::Null, Val::Text),
            "state" => Val::Text(self.state.as_str().to_owned()),
            "health" => Val::Text(self.health.as_str().to_owned()),
            _ => Val::Null,
        }]
    }
}

/// The wire form of a worker (`WorkerSerializer`).
fn worker_json(worker: &Worker) -> Value {
    json!({
        "hostname": worker.hostname,
        "state": worker.state.as_str(),
        "health": worker.health.as_str(),
        "description": worker.description,
        "last_ping": worker.last_ping.map(drf_datetime),
        "job_limit": worker.job_limit,
        "version": worker.version,
    })
}

/// `GET /workers/`.
pub async fn list(State(app): State<App>, params: Params) -> Result<Json<Value>, ApiError> {
    let conds = filter::parse(&params, WORKER_FIELDS)?;
    let page = params.page();
    let mut workers = app.store().call(|s| s.workers()).await?;
    workers.retain(|w| filter::matches(w, &conds));
    if let Some((field, desc)) = filter::ordering(&params, &["hostname", "state", "health"]) {
        filter::sort_by_field(&mut workers, field, desc);
    }
    let count = workers.len() as u64;
    let results = page.slice(workers).iter().map(worker_json).collect();
    Ok(Json(params.paginated(page, count, results)))
}

async fn find(app: &App, hostname: String) -> Result<Worker, ApiError> {
    app.store()
        .call(move |s| s.worker(&hostname))
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /workers/<hostname>/`.
pub async fn detail(
    State(app): State<App>,
    Path(hostname): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(worker_json(&find(&app, hostname).await?)))
}

/// A worker health given by its display name, as LAVA's `ChoiceField` reads it.
fn health(fields: &Fields) -> Result<Option<WorkerHealth>, ApiError> {
    let Some(text) = fields.text("health")?.flatten() else {
        return Ok(None);
    };
    WorkerHealth::ALL
        .into_iter()
        .find(|h| h.as_str() == text)
        .map(Some)
        .ok_or_else(|| ApiError::field("health", format!("\"{text}\" is not a valid choice.")))
}

/// `POST /workers/`: `hostname` required; `description`, `health` optional.
pub async fn create_worker(
    State(app): State<App>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let hostname = fields.required("hostname")?;
    let description = fields.text("description")?.flatten();
    let health = health(&fields)?.unwrap_or(WorkerHealth::Active);
    let worker = create(&app, "hostname", move |s| {
        s.create_worker(&hostname, description.as_deref(), health)
    })
    .await?;
    Ok(created(worker_json(&worker)))
}

/// `PUT`/`PATCH /workers/<hostname>/`: `description`, `health` and `job_limit` change when
/// given; a health change is announced like every other.
pub async fn update_worker(
    State(app): State<App>,
    Path(hostname): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Json<Value>, ApiError> {
    let update = WorkerUpdate {
        description: fields.text("description")?.flatten(),
        health: health(&fields)?,
        job_limit: fields.number("job_limit")?,
    };
    let (worker, status) = app
        .store()
        .call(move |s| {
            let status = s.update_worker(&hostname, &update)?;
            let worker = s.worker(&hostname)?;
            Ok(worker.map(|w| (w, status)))
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    if let Some(status) = status {
        app.worker_changed(&status);
    }
    Ok(Json(worker_json(&worker)))
}

/// `DELETE /workers/<hostname>/`; the appliance's own worker cannot go, since it is the one
/// running every device.
pub async fn delete_worker(
    State(app): State<App>,
    _admin: Admin,
    Path(hostname): Path<String>,
) -> Result<Response, ApiError> {
    if hostname == app.config().instance {
        return Err(ApiError::detail(format!(
            "Worker '{hostname}' is this appliance and cannot be deleted"
        )));
    }
    delete(&app, move |s| s.delete_worker(&hostname)).await
}

/// Which per-worker file a `config/` or `env/` route serves, with its field and file names.
#[derive(Clone, Copy)]
struct FileRoute {
    which: WorkerFile,
    field: &'static str,
    kind: &'static str,
    file_name: &'static str,
}

const CONFIG: FileRoute = FileRoute {
    which: WorkerFile::Config,
    field: "config",
    kind: "dispatcher",
    file_name: "dispatcher.yaml",
};

const ENV: FileRoute = FileRoute {
    which: WorkerFile::Env,
    field: "env",
    kind: "env",
    file_name: "env.yaml",
};

/// The file a `config/` or `env/` route serves, from the route that matched.
fn file_route(path: &MatchedPath) -> FileRoute {
    if path.as_str().ends_with("/env/") {
        ENV
    } else {
        CONFIG
    }
}

/// `GET /workers/<hostname>/config/` (`dispatcher.yaml`) and `/env/` (`env.yaml`).
pub async fn file(
    State(app): State<App>,
    matched: MatchedPath,
    Path(hostname): Path<String>,
) -> Result<Response, ApiError> {
    let route = file_route(&matched);
    let worker = find(&app, hostname).await?;
    let Some(text) = worker.file(route.which) else {
        return Err(ApiError::detail(format!(
            "Worker '{}' does not have '{}' file",
            worker.hostname, route.kind
        )));
    };
    let mut response = text.to_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename={}", route.file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `POST /workers/<hostname>/config/` with `config`, `/env/` with `env`.
pub async fn set_file(
    State(app): State<App>,
    matched: MatchedPath,
    Path(hostname): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let route = file_route(&matched);
    let text = fields.required(route.field)?;
    app.store()
        .call(move |s| Ok(s.set_worker_file(&hostname, route.which, Some(&text))))
        .await?
        .map_err(|err| write_error(err, route.field))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "message": "content successfully updated" })),
    )
        .into_response())
}
