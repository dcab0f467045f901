//! [`ApiError`]: every way a REST request fails, mapped to LAVA's status codes and JSON
//! bodies (`{"detail": ...}` from Django REST framework, `{"message": ...}` from LAVA's own
//! views, `{"field": ["..."]}` from filter validation). Internal errors are logged here once
//! and answered with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A failed REST request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a DRF-style body (`{"detail": ...}` or a field error mapping).
    #[error("bad request: {0}")]
    BadRequest(Value),
    /// 400 with LAVA's `{"message": ...}` body (submission errors).
    #[error("bad request: {0}")]
    Message(String),
    /// 401 with `WWW-Authenticate: Token`.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 403 with a detail message.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 404 `Not found.`
    #[error("not found")]
    NotFound,
    /// 405 for a method the route does not take (the method's name).
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// 500; the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 `{"detail": text}`.
    pub fn detail(text: impl Into<String>) -> ApiError {
        ApiError::BadRequest(json!({ "detail": text.into() }))
    }

    /// A 400 `{field: [text]}`, as django-filter reports an invalid filter value.
    pub fn field(field: &str, text: impl Into<String>) -> ApiError {
        let mut map = serde_json::Map::new();
        map.insert(field.to_owned(), json!([text.into()]));
        ApiError::BadRequest(Value::Object(map))
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(err: crate::store::Error) -> ApiError {
        match err {
            crate::store::Error::NotFound { .. } => ApiError::NotFound,
            other => ApiError::Internal(format!("{:#}", anyhow::Error::new(other))),
        }
    }
}

impl From<crate::store::joblog::Error> for ApiError {
    fn from(err: crate::store::joblog::Error) -> ApiError {
        ApiError::Internal(format!("{:#}", anyhow::Error::new(err)))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest(body) => (StatusCode::BAD_REQUEST, body),
            ApiError::Message(text) => (StatusCode::BAD_REQUEST, json!({ "message": text })),
            ApiError::Unauthorized(text) => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({ "detail": text })),
                )
                    .into_response();
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Token"),
                );
                return response;
            }
            ApiError::Forbidden(text) => (StatusCode::FORBIDDEN, json!({ "detail": text })),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({ "detail": "Not found." })),
            ApiError::MethodNotAllowed(method) => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "detail": format!("Method \"{method}\" not allowed.") }),
            ),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "REST request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "detail": "A server error occurred." }),
                )
            }
        };
        (status, axum::Json(body)).into_response()
    }
}

/// The fallback for unknown paths under the API prefix.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The fallback for a known path asked with a method it does not take, worded as DRF's.
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
