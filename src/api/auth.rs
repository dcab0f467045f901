//! Who is calling: the credentials LAVA's clients send, checked against the store, as one
//! [`Caller`] both APIs use.
//!
//! - XML-RPC: `Authorization: Basic base64(username:token)` ([`basic_caller`]).
//! - REST: `Authorization: Token <secret>` ([`token_caller`]).
//! - Results URLs: `?user=<name>&token=<secret>` ([`query_caller`]).
//!
//! Secrets are never logged: [`Credentials`] has a redacting `Debug`.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;

use crate::app::App;
use crate::model::UserId;
use crate::store::{self, Viewer};

/// `WWW-Authenticate` value LAVA sends with an XML-RPC 401.
pub const XMLRPC_REALM: &str = "Basic realm=\"XML-RPC Authentication token\"";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerUser {
    /// Database id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Superusers may see and change everything.
    pub is_superuser: bool,
    /// Names of the groups the user belongs to.
    pub groups: Vec<String>,
}

/// The caller of an API request: anonymous or a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// `None` for anonymous callers.
    pub user: Option<CallerUser>,
}

impl Caller {
    /// An anonymous caller.
    pub fn anonymous() -> Caller {
        Caller { user: None }
    }

    /// The store's view restriction for this caller.
    pub fn viewer(&self) -> Viewer {
        match &self.user {
            None => Viewer::Anonymous,
            Some(u) if u.is_superuser => Viewer::Anyone,
            Some(u) => Viewer::User(u.id),
        }
    }

    /// The username, if authenticated.
    pub fn username(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.username.as_str())
    }

    /// Whether the caller is a superuser.
    pub fn is_superuser(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.is_superuser)
    }

    /// Whether the caller belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.groups.iter().any(|g| g == group))
    }

    /// The name LAVA uses for the caller in messages (`AnonymousUser` when anonymous).
    pub fn display_name(&self) -> &str {
        self.username().unwrap_or("AnonymousUser")
    }
}

/// Why credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The `Authorization` header cannot be read (HTTP 400).
    #[error("Invalid HTTP_AUTHORIZATION header")]
    Malformed,
    /// Unknown user/token pair or inactive user (HTTP 401).
    #[error("Invalid token")]
    InvalidToken,
    /// The store failed.
    #[error("checking credentials failed")]
    Store(#[from] store::Error),
}

/// A username and token secret as sent by a client.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username (`None` for REST's bare `Token` scheme).
    pub username: Option<String>,
    /// The token secret.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Reads `Authorization: Basic …` (XML-RPC). `Ok(None)` when there is no header.
pub fn parse_basic(headers: &HeaderMap) -> Result<Option<Credentials>, AuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, payload) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload.trim().as_bytes())
        .map_err(|_| AuthError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let (user, secret) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
    Ok(Some(Credentials {
        username: Some(user.to_owned()),
        secret: secret.to_owned(),
    }))
}

/// Reads `Authorization: Token <secret>` (REST). `Ok(None)` when there is no header.
pub fn parse_token(headers: &HeaderMap) -> Result<Option<Credentials>, AuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, secret) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("token") || secret.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(Some(Credentials {
        username: None,
        secret: secret.trim().to_owned(),
    }))
}

/// Checks `credentials` against the store (bumping the token's last use) and loads groups.
pub async fn authenticate(app: &App, credentials: Credentials) -> Result<Caller, AuthError> {
    let found = app
        .store()
        .call(move |s| {
            let user = match &credentials.username {
                Some(name) => s.authenticate(name, &credentials.secret)?,
                None => s.authenticate_token(&credentials.secret)?,
            };
            let Some(user) = user.filter(|u| u.is_active) else {
                return Ok(None);
            };
            let groups = s.user_groups(&user.username)?;
            Ok(Some(CallerUser {
                id: user.id,
                username: user.username,
                is_superuser: user.is_superuser,
                groups: groups.into_iter().map(|g| g.name).collect(),
            }))
        })
        .await?;
    found
        .map(|user| Caller { user: Some(user) })
        .ok_or(AuthError::InvalidToken)
}

/// The caller of an XML-RPC request (anonymous without a header).
pub async fn basic_caller(app: &App, headers: &HeaderMap) -> Result<Caller, AuthError> {
    match parse_basic(headers)? {
        None => Ok(Caller::anonymous()),
        Some(c) => authenticate(app, c).await,
    }
}

/// The caller of a REST request (anonymous without a header).
pub async fn token_caller(app: &App, headers: &HeaderMap) -> Result<Caller, AuthError> {
    match parse_token(headers)? {
        None => Ok(Caller::anonymous()),
        Some(c) => authenticate(app, c).await,
    }
}

/// The caller given by `?user=&token=` query parameters (anonymous when absent).
pub async fn query_caller(
    app: &App,
    user: Option<&str>,
    token: Option<&str>,
) -> Result<Caller, AuthError> {
    match (user, token) {
        (Some(user), Some(token)) => {
            authenticate(
                app,
                Credentials {
                    username: Some(user.to_owned()),
                    secret: token.to_owned(),
                },
            )
            .await
        }
        _ => Ok(Caller::anonymous()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn parses_basic() {
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x");
        let c = parse_basic(&headers(&format!("Basic {enc}")))
            .unwrap()
            .unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.secret, "s3cret:x");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(parse_basic(&HeaderMap::new()).unwrap().is_none());
        for bad in ["Basic", "Bearer abc", "Basic !!!", "Basic bm9jb2xvbg=="] {
            assert!(matches!(
                parse_basic(&headers(bad)),
                Err(AuthError::Malformed)
            ));
        }
    }

    #[test]
    fn parses_token() {
        let c = parse_token(&headers("Token abc")).unwrap().unwrap();
        assert_eq!(c.secret, "abc");
        assert!(parse_token(&headers("Basic abc")).is_err());
    }
}
