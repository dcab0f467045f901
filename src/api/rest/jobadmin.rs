//! `PUT`/`PATCH`/`DELETE /jobs/<id>/`, the superuser's (LAVA gives these actions
//! `IsSuperUser`: anonymous callers get 401, other users 403).
//!
//! Updates change only the fields outside the job's life cycle (`description`, `priority`,
//! `failure_comment`): states, devices and definitions move only through the scheduler, so
//! a request giving another value to one of those is refused with a 400 on that field rather
//! than silently ignored. A delete is refused while the job may hold a device.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiError;
use super::admin::{Admin, AdminFields};
use super::jobs::job_value;
use crate::app::App;
use crate::model::{JobId, Priority};
use crate::store::{self, Job, JobRecordUpdate};

/// The job fields lavabox lets the superuser change (the rest move through the scheduler).
const EDITABLE: &[&str] = &["description", "priority", "failure_comment"];

/// A job store error as the REST answer: a refused delete is a 400 with its reason.
fn job_error(err: store::Error) -> ApiError {
    match err {
        store::Error::Invalid { reason, .. } => ApiError::detail(reason),
        other => other.into(),
    }
}

/// The job of a `/jobs/<id>/` path, as the superuser sees every job.
async fn find(app: &App, id: &str) -> Result<Job, ApiError> {
    let id = JobId(id.parse().map_err(|_| ApiError::NotFound)?);
    app.store()
        .call(move |s| s.job(id))
        .await?
        .ok_or(ApiError::NotFound)
}

/// `PUT`/`PATCH /jobs/<id>/`: 200 with the job as `GET` shows it.
pub async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Json<Value>, ApiError> {
    let job = find(&app, &id).await?;
    // A field of the job's wire form given with another value: refused, not ignored, so a
    // client never believes it moved a job's state. Sending a field unchanged (a `PUT` of
    // the object as read) is fine.
    let current = job_value(&app, &job).await?;
    if let Some((name, _)) = current.as_object().and_then(|object| {
        object.iter().find(|(k, v)| {
            !EDITABLE.contains(&k.as_str()) && fields.get(k).is_some_and(|x| x != *v)
        })
    }) {
        return Err(ApiError::field(
            name,
            "lavabox changes this field only through the scheduler",
        ));
    }
    let priority = match fields.number("priority")? {
        None => None,
        Some(n) => Some(Priority::new(n.into()).ok_or_else(|| {
            ApiError::field(
                "priority",
                "Ensure this value is less than or equal to 100.",
            )
        })?),
    };
    let update = JobRecordUpdate {
        description: fields.text("description")?.map(Option::unwrap_or_default),
        priority,
        failure_comment: fields.text("failure_comment")?,
    };
    let id = job.id;
    app.store()
        .call(move |s| s.update_job_record(id, &update))
        .await?;
    if priority.is_some() {
        // The queue order changed.
        app.wake_scheduler();
    }
    let job = find(&app, &id.to_string()).await?;
    job_value(&app, &job).await.map(Json)
}

/// `DELETE /jobs/<id>/`: 204, the job's results and log go with it.
pub async fn delete(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = find(&app, &id).await?.id;
    app.store()
        .call(move |s| Ok(s.delete_job(id)))
        .await?
        .map_err(job_error)?;
    // The job's directory (its log, the configuration it ran with) by the one path rule;
    // removed after the record, on the blocking pool (tokio::fs).
    let dir = app.config().job_dir(id);
    if let Err(err) = tokio::fs::remove_dir_all(&dir).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        // The record is gone; leftover files only cost disk space.
        tracing::warn!(path = %dir.display(), error = %err, "removing a deleted job's files");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
