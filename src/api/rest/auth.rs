//! Who is calling: [`Caller`], from `Authorization: Token <secret>` (Django REST
//! framework's `TokenAuthentication`, looked up by secret alone) or, for the results export
//! URLs, from `?user=<name>&token=<secret>`. Other schemes are ignored, as DRF ignores them,
//! so the caller is anonymous.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::ApiError;
use crate::app::App;
use crate::store::{User, Viewer};

/// The authenticated user of a request, or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials: public objects only, no writes.
    Anonymous,
    /// A user with a valid token.
    User(User),
}

impl Caller {
    /// The store's view restriction for this caller (superusers see everything).
    pub fn viewer(&self) -> Viewer {
        match self {
            Caller::Anonymous => Viewer::Anonymous,
            Caller::User(user) if user.is_superuser => Viewer::Anyone,
            Caller::User(user) => Viewer::User(user.id),
        }
    }

    /// The username, `""` when anonymous (as `/system/whoami/` reports it).
    pub fn username(&self) -> &str {
        match self {
            Caller::Anonymous => "",
            Caller::User(user) => &user.username,
        }
    }

    /// Whether the caller is a superuser.
    pub fn is_superuser(&self) -> bool {
        matches!(self, Caller::User(user) if user.is_superuser)
    }

    /// The user, or 401 as DRF answers an unauthenticated write.
    pub fn require_user(&self) -> Result<&User, ApiError> {
        match self {
            Caller::User(user) => Ok(user),
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "Authentication credentials were not provided.",
            )),
        }
    }

    /// Resolves the `Authorization` header.
    pub async fn from_headers(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let value = value.to_str().map_err(|_| {
            ApiError::Unauthorized(
                "Invalid token header. Token string should not contain invalid characters.",
            )
        })?;
        let mut words = value.split_whitespace();
        match words.next() {
            Some(scheme) if scheme.eq_ignore_ascii_case("token") => {}
            _ => return Ok(Caller::Anonymous),
        }
        let Some(secret) = words.next() else {
            return Err(ApiError::Unauthorized(
                "Invalid token header. No credentials provided.",
            ));
        };
        if words.next().is_some() {
            return Err(ApiError::Unauthorized(
                "Invalid token header. Token string should not contain spaces.",
            ));
        }
        Self::from_token(app, None, secret).await
    }

    /// Resolves a token secret (and the username, when the client named one).
    pub async fn from_token(
        app: &App,
        username: Option<&str>,
        secret: &str,
    ) -> Result<Caller, ApiError> {
        let secret = secret.to_owned();
        let username = username.map(str::to_owned);
        let user = app
            .store()
            .call(move |s| match username {
                Some(name) => s.authenticate(&name, &secret),
                None => s.authenticate_token(&secret),
            })
            .await?;
        user.map(Caller::User)
            .ok_or(ApiError::Unauthorized("Invalid token."))
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
        Caller::from_headers(app, &parts.headers).await
    }
}
