//! `GET /jobs/<id>/notifications/`: a lavabox addition (LAVA keeps no delivery record) that
//! lists the outcome of every delivery of the job's `notify:` block, read-only, visible to
//! whoever may see the job. Paginated like every list of this API.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::page::Params;
use super::{ApiError, Caller};
use crate::app::App;
use crate::model::JobId;
use crate::pyfmt::drf_datetime;
use crate::store::{Notification, NotificationStatus};

/// The list.
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    // Anything but a job number is a 404, as for the other job routes.
    let id = id
        .parse::<i64>()
        .map(JobId)
        .map_err(|_| ApiError::NotFound)?;
    let viewer = caller.viewer();
    let rows = app
        .store()
        .call(move |s| match s.job(id)? {
            Some(_) if s.can_view_job(id, viewer)? => Ok(Some(s.notifications(id)?)),
            _ => Ok(None),
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    let page = params.page();
    let count = rows.len() as u64;
    let results = page.slice(rows).iter().map(notification_json).collect();
    Ok(Json(params.paginated(page, count, results)))
}

fn notification_json(n: &Notification) -> Value {
    let (attempts, error) = match &n.status {
        NotificationStatus::Pending => (0, None),
        NotificationStatus::Sent { attempts } => (*attempts, None),
        NotificationStatus::Failed { attempts, error } => (*attempts, Some(error.as_str())),
    };
    json!({
        "id": n.id.0,
        "job": n.job.0,
        "job_state": n.job_state.as_str(),
        "method": n.method.as_str(),
        "target": n.target,
        "status": n.status.as_str(),
        "attempts": attempts,
        "last_error": error,
        "created": drf_datetime(n.created),
        "updated": drf_datetime(n.updated),
    })
}
