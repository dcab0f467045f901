//! `/scheduler/job/<id>/log_file/plain`: LAVA's plain job log download (the job's
//! `output.yaml` as an attachment `job_<id>.log`, `application/yaml`), which clients and
//! e-mails link to. The job's own visibility applies (403 for a hidden job, 404 for an
//! unknown one or one with no log yet); credentials as for the results exports (headers,
//! `?user=&token=` or the web UI's session cookie).
//!
//! The file is streamed from the path rule (`store::joblog::log_path`), so a long log is
//! never held in memory; a running job's log is served as far as it is written.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::io::ReaderStream;

use super::rest::ApiError;
use crate::app::App;

/// `GET /scheduler/job/<id>/log_file/plain`.
async fn plain(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = super::results::visible_job(&app, &headers, &query, &id).await?;
    let path = app.config().job_log_path(job.id);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::NotFound),
        Err(err) => {
            tracing::warn!(job = %job.id, path = %path.display(), error = %err, "opening a job log");
            return Err(ApiError::NotFound);
        }
    };
    let mut response = Body::from_stream(ReaderStream::new(file)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=job_{}.log", job.id)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The route, relative to the server root.
pub fn router() -> Router<App> {
    Router::new().route("/scheduler/job/{id}/log_file/plain", get(plain))
}
