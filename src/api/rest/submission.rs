//! Job submission over REST: submit, resubmit, validate and cancel, through the one
//! submission path ([`crate::submit`]) every API shares.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::require_user;
use super::jobs::visible;
use super::{ApiError, Caller};
use crate::app::App;
use crate::jobdef::Mode;
use crate::model::JobState;

/// A JSON or form body's fields (DRF accepts both).
pub(super) fn body_fields(
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

/// The `definition` field of a JSON or form body; `missing` is the 400 body LAVA's view
/// answers when it is absent or empty.
fn definition(
    headers: &axum::http::HeaderMap,
    body: &[u8],
    missing: Value,
) -> Result<String, ApiError> {
    definition_and_fields(headers, body, missing).map(|(definition, _)| definition)
}

/// [`definition`] and the rest of the body's fields.
fn definition_and_fields(
    headers: &axum::http::HeaderMap,
    body: &[u8],
    missing: Value,
) -> Result<(String, HashMap<String, Value>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mut fields = body_fields(content_type, body)?;
    match fields.remove("definition") {
        Some(Value::String(s)) if !s.is_empty() => Ok((s, fields)),
        _ => Err(ApiError::BadRequest(missing)),
    }
}

/// Python's truth value of a body field, as LAVA's `if strict:` reads it: any non-empty
/// form text (even `false`) is true, JSON `false`, `0`, `""` and `null` are not.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// The first problem of a failed validation, as LAVA's one-message answers show it.
fn first_problem(problems: &[crate::jobdef::Problem]) -> String {
    problems
        .first()
        .map_or_else(|| "invalid definition".to_owned(), |p| p.describe())
}

/// Runs a validator off the async workers; `Ok(())` or the first problem.
async fn verdict(
    check: impl FnOnce() -> Result<(), Vec<crate::jobdef::Problem>> + Send + 'static,
) -> Result<Result<(), String>, ApiError> {
    crate::submit::parse_limited(move || check().map_err(|p| first_problem(&p)))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))
}

/// `POST /jobs/validate/` (`definition`, `strict`): always 200 with the verdict, 400 when
/// the definition is missing. `strict` refuses unknown keys everywhere (`jobdef::Mode`).
pub async fn validate(
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let (definition, fields) = definition_and_fields(
        &headers,
        &body,
        json!({ "definition": "Test job definition is required." }),
    )?;
    let mode = if truthy(fields.get("strict")) {
        Mode::Strict
    } else {
        Mode::Lenient
    };
    let verdict = verdict(move || crate::jobdef::validate_str_mode(&definition, mode)).await?;
    Ok(Json(match verdict {
        Ok(()) => json!({ "message": "Job valid." }),
        Err(text) => json!({ "message": format!("Job invalid: {text}") }),
    }))
}

/// `POST /jobs/validate_testdef/` (`definition`): always 200 with the verdict (LAVA's
/// misspelt "defnition" included, clients match it), 400 when the definition is missing.
pub async fn validate_testdef(
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let definition = definition(
        &headers,
        &body,
        json!({ "definition": "Test definition is required." }),
    )?;
    let verdict = verdict(move || crate::jobdef::validate_testdef(&definition)).await?;
    Ok(Json(match verdict {
        Ok(()) => json!({ "message": "Test definition valid." }),
        Err(text) => json!({ "message": format!("Test defnition invalid: {text}") }),
    }))
}

/// `GET /jobs/<id>/cancel/`: the submitter or a superuser may cancel; a job already
/// Canceling or Finished is left alone and the answer is the same.
pub async fn cancel(
    State(app): State<App>,
    super::auth::ActingCaller(caller): super::auth::ActingCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    if matches!(job.state, JobState::Canceling | JobState::Finished) {
        return Ok(Json(json!({ "message": "Job cancel signal sent." })));
    }
    let allowed = caller
        .user
        .as_ref()
        .is_some_and(|user| user.is_superuser || user.username == job.submitter);
    if !allowed {
        return Err(ApiError::Forbidden(
            "You do not have permission to perform this action.",
        ));
    }
    let changes = app.store().call(move |s| s.cancel_job(job.id)).await?;
    app.changed(&changes);
    Ok(Json(json!({ "message": "Job cancel signal sent." })))
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
    require_user(&caller)?;
    let definition = definition(
        &headers,
        &body,
        json!({ "definition": ["This field is required."] }),
    )?;
    submitted(crate::submit::submit(&app, &caller, &definition).await)
}

/// `POST /jobs/<id>/resubmit/`: same answer as a submission.
pub async fn resubmit(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible(&app, &caller, &id).await?;
    require_user(&caller)?;
    submitted(crate::submit::resubmit(&app, &caller, &job.id.to_string()).await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::truthy;

    #[test]
    fn strict_is_read_with_python_truth() {
        for (value, want) in [
            (None, false),
            (Some(json!(null)), false),
            (Some(json!(false)), false),
            (Some(json!(0)), false),
            (Some(json!("")), false),
            (Some(json!(true)), true),
            (Some(json!(1)), true),
            (Some(json!("false")), true),
            (Some(json!("1")), true),
        ] {
            assert_eq!(truthy(value.as_ref()), want, "{value:?}");
        }
    }
}
