//! Who is calling: the credentials LAVA's clients send, checked against the store, turned
//! into the one [`Caller`] every API uses (XML-RPC, REST, the `/results/` exports and job logs).
//!
//! - XML-RPC: `Authorization: Basic base64(username:token)` ([`basic_caller`]); any other
//!   scheme is refused there, as LAVA refuses it.
//! - REST, results URLs and logs ([`request_caller`]): `Authorization: Token <secret>`
//!   (DRF's `TokenAuthentication`, looked up by secret alone), `Authorization: Basic
//!   user:token`, or, for clients that cannot set headers, `?user=<name>&token=<secret>`.
//!   Unknown schemes are ignored (the caller is anonymous), as DRF ignores them.
//! - The web UI's session cookie ([`session_caller`]): pages, and — where the request
//!   asks for it with [`Cookie::Accepted`] — REST reads, results exports and log downloads,
//!   so a logged-in browser can follow the UI's own download links to a private job. It is
//!   never accepted for a request that changes something outside the UI's CSRF-checked
//!   forms (REST writes, REST's `GET …/cancel/`): a page of another site could make the
//!   browser send it (DRF likewise takes sessions only with a CSRF check).
//!
//! Secrets are compared only as SHA-256 digests inside the store, so the comparison time
//! does not depend on how much of a guess was right, and they are never logged:
//! [`Credentials`] has a redacting `Debug`, and nothing here formats a secret.
//!
//! What an authenticated caller may see and use is not decided here but in
//! [`crate::access`] (devices, and the job-view restriction [`Caller::viewer`]).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;

use crate::access::{Caller, CallerUser};
use crate::app::App;
use crate::store;

/// `WWW-Authenticate` value LAVA sends with an XML-RPC 401.
pub const XMLRPC_REALM: &str = "Basic realm=\"XML-RPC Authentication token\"";

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

/// Reads the `Authorization` header of a REST, results or log request: `Token <secret>`
/// or `Basic base64(user:token)`. `Ok(None)` without a header or with another scheme (DRF
/// leaves those to other authenticators, so the caller is anonymous); a `Token` or `Basic`
/// header that cannot be read is [`AuthError::Malformed`].
pub fn parse_authorization(headers: &HeaderMap) -> Result<Option<Credentials>, AuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let mut words = value.split_whitespace();
    let scheme = words.next().unwrap_or("");
    if scheme.eq_ignore_ascii_case("basic") {
        return parse_basic(headers);
    }
    if !scheme.eq_ignore_ascii_case("token") {
        return Ok(None);
    }
    // DRF: exactly one word after the scheme.
    match (words.next(), words.next()) {
        (Some(secret), None) => Ok(Some(Credentials {
            username: None,
            secret: secret.to_owned(),
        })),
        _ => Err(AuthError::Malformed),
    }
}

/// The `?user=<name>&token=<secret>` credentials of a query string (the last value of each
/// wins, as Django's `QueryDict.get` does); `None` unless both are present.
pub fn parse_query(pairs: &[(String, String)]) -> Option<Credentials> {
    let get = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match (get("user"), get("token")) {
        (Some(user), Some(token)) if !user.is_empty() && !token.is_empty() => Some(Credentials {
            username: Some(user.to_owned()),
            secret: token.to_owned(),
        }),
        _ => None,
    }
}

/// An authenticated user as every API sees them: the store's user with their groups.
fn caller_user(s: &mut store::Store, user: store::User) -> Result<CallerUser, store::Error> {
    let groups = s.user_groups(&user.username)?;
    Ok(CallerUser {
        id: user.id,
        username: user.username,
        is_superuser: user.is_superuser,
        groups: groups.into_iter().map(|g| g.name).collect(),
    })
}

/// Whether a request may be authorised by the web UI's session cookie when it carries no
/// explicit credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cookie {
    /// A read: the session cookie stands for its user.
    Accepted,
    /// A request that acts: only explicit credentials count.
    Refused,
}

/// The caller a web session secret stands for: its user with their groups, or anonymous
/// for an unknown or expired session (a stale cookie is not an error).
pub async fn session_caller(app: &App, secret: String) -> Result<Caller, store::Error> {
    app.store()
        .call(move |s| {
            let Some(session) = s.session(&secret)? else {
                return Ok(Caller::anonymous());
            };
            Ok(Caller {
                user: Some(caller_user(s, session.user)?),
            })
        })
        .await
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
            Ok(Some(caller_user(s, user)?))
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

/// The caller of a REST, results-export or log request: the `Authorization` header
/// ([`parse_authorization`]) or else the `?user=&token=` query ([`parse_query`]); without
/// either, the web session cookie where `cookie` accepts it; else anonymous.
pub async fn request_caller(
    app: &App,
    headers: &HeaderMap,
    query: &[(String, String)],
    cookie: Cookie,
) -> Result<Caller, AuthError> {
    match parse_authorization(headers)?.or_else(|| parse_query(query)) {
        Some(c) => authenticate(app, c).await,
        None => match crate::web::session::session_secret(headers) {
            Some(secret) if cookie == Cookie::Accepted => {
                Ok(session_caller(app, secret.to_owned()).await?)
            }
            _ => Ok(Caller::anonymous()),
        },
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
    fn parses_any_rest_scheme() {
        let c = parse_authorization(&headers("Token abc")).unwrap().unwrap();
        assert_eq!((c.username, c.secret.as_str()), (None, "abc"));
        let enc = base64::engine::general_purpose::STANDARD.encode("bob:xyz");
        let c = parse_authorization(&headers(&format!("Basic {enc}")))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_deref(), c.secret.as_str()),
            (Some("bob"), "xyz")
        );
        // Other schemes are someone else's: anonymous, as in DRF.
        assert!(
            parse_authorization(&headers("Bearer abc"))
                .unwrap()
                .is_none()
        );
        assert!(parse_authorization(&HeaderMap::new()).unwrap().is_none());
        for bad in ["Token", "Token a b", "Basic !!!"] {
            assert!(
                matches!(
                    parse_authorization(&headers(bad)),
                    Err(AuthError::Malformed)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_query_credentials() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let c = parse_query(&pairs(&[("user", "a"), ("token", "t1"), ("token", "t2")])).unwrap();
        assert_eq!(
            (c.username.as_deref(), c.secret.as_str()),
            (Some("a"), "t2")
        );
        assert!(parse_query(&pairs(&[("user", "a")])).is_none());
        assert!(parse_query(&pairs(&[("user", ""), ("token", "t")])).is_none());
    }
}
