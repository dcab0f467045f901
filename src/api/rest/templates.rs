//! `POST /devicetypes/<name>/template/` and `/health_check/`: a superuser replaces a device
//! type's Jinja2 template or health-check job definition.
//!
//! The file goes to the first template directory (`<data_dir>/device-types`, see
//! `App::build`) through [`crate::devicetype::Templates::write`]; templates are read from
//! disk at every lookup, so the next render and the next health check use it, and it survives
//! a restart.

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin::Fields;
use super::{ApiError, Caller};
use crate::app::App;
use crate::devicetype::FileKind;

/// LAVA's answer to a logged-in caller without the `change_device` permission.
const INSUFFICIENT: &str = "Insufficient permissions. Please contact system administrator.";

/// The checks LAVA makes before writing a device type's file: a logged-in caller (401), who
/// is the superuser (403), a visible device type (404), and a non-empty `field` (400 with
/// `missing`). Returns the field's text.
async fn checked_text(
    app: &App,
    caller: &Caller,
    name: &str,
    (headers, body): (&HeaderMap, &Bytes),
    (field, missing): (&'static str, &'static str),
) -> Result<String, ApiError> {
    let user = super::auth::require_user(caller)?;
    if !user.is_superuser {
        return Err(ApiError::Forbidden(INSUFFICIENT));
    }
    let owned = name.to_owned();
    app.store()
        .call(move |s| s.device_type(&owned))
        .await?
        .ok_or(ApiError::NotFound)?;
    Fields::read(headers, body)?
        .text(field)?
        .flatten()
        .ok_or_else(|| ApiError::BadRequest(json!({ field: missing })))
}

async fn write(
    app: &App,
    kind: FileKind,
    name: String,
    text: String,
) -> Result<Response, ApiError> {
    app.templates()
        .call(move |templates| templates.write(kind, &name, &text))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err| match err {
            crate::devicetype::Error::Write { source, .. } => ApiError::detail(format!(
                "Unable to write device-type configuration: {source}"
            )),
            other => ApiError::detail(other.to_string()),
        })?;
    // A new health check or template can make a device schedulable again.
    app.wake_scheduler();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /devicetypes/<name>/template/` with `template` and `/health_check/` with `config`
/// (the route that matched says which): 204.
pub async fn set(
    State(app): State<App>,
    caller: Caller,
    matched: MatchedPath,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (kind, field) = if matched.as_str().ends_with("/template/") {
        (
            FileKind::Template,
            ("template", "Device type template is required."),
        )
    } else {
        (
            FileKind::HealthCheck,
            ("config", "Health check configuration is required."),
        )
    };
    let text = checked_text(&app, &caller, &name, (&headers, &body), field).await?;
    write(&app, kind, name, text).await
}
