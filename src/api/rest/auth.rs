//! The REST side of [`crate::api::auth`]: [`Caller`] as an axum extractor with DRF's answers
//! to bad credentials (the web session cookie counts for reads only), [`ActingCaller`] for a
//! GET that acts, and [`require_user`] for writes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;
use crate::access::{Caller, CallerUser};
use crate::api::auth::{self, AuthError, Cookie};
use crate::app::App;

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        match err {
            AuthError::Malformed => ApiError::Unauthorized("Invalid token header."),
            AuthError::InvalidToken => ApiError::Unauthorized("Invalid token."),
            AuthError::Store(err) => err.into(),
        }
    }
}

/// The decoded query string (empty when it cannot be decoded: the handlers' own query
/// extractors report that).
pub fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|axum::extract::Query(pairs)| pairs)
        .unwrap_or_default()
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
        // Reads may come from the web UI's links; writes need explicit credentials.
        let cookie = if parts.method.is_safe() {
            Cookie::Accepted
        } else {
            Cookie::Refused
        };
        Ok(auth::request_caller(app, &parts.headers, &query_pairs(&parts.uri), cookie).await?)
    }
}

/// The caller of a `GET` that changes something (LAVA's `GET /jobs/<id>/cancel/`): explicit
/// credentials only, never the session cookie, which another site's page could make a
/// browser send with a plain link.
pub struct ActingCaller(pub Caller);

impl FromRequestParts<App> for ActingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<ActingCaller, ApiError> {
        let query = query_pairs(&parts.uri);
        let caller = auth::request_caller(app, &parts.headers, &query, Cookie::Refused).await?;
        Ok(ActingCaller(caller))
    }
}

/// The user, or 401 as DRF answers an unauthenticated write.
pub fn require_user(caller: &Caller) -> Result<&CallerUser, ApiError> {
    caller.user.as_ref().ok_or(ApiError::Unauthorized(
        "Authentication credentials were not provided.",
    ))
}
