//! `POST /token/` (`username`, `password`): LAVA hands out an API token for a user's
//! password.
//!
//! lavabox users have no passwords (accounts and tokens are made with `lavabox user add` and
//! `lavabox token add`), so no password can ever match: after DRF's checks for missing
//! fields, every request gets the 400 LAVA gives for bad credentials. Clients that call this
//! endpoint therefore see a clear refusal rather than a token they could not get otherwise.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::admin::Fields;

/// `POST /token/`.
pub async fn obtain(headers: HeaderMap, body: Bytes) -> ApiError {
    let fields = match Fields::read(&headers, &body) {
        Ok(fields) => fields,
        Err(err) => return err,
    };
    let mut missing = Map::new();
    for name in ["username", "password"] {
        if !matches!(fields.text(name), Ok(Some(Some(_)))) {
            missing.insert(name.to_owned(), json!(["This field is required."]));
        }
    }
    if !missing.is_empty() {
        return ApiError::BadRequest(Value::Object(missing));
    }
    ApiError::BadRequest(json!({
        "non_field_errors": ["Unable to log in with provided credentials."]
    }))
}
