//! Who is browsing, and the CSRF rule for every form.
//!
//! A login sets `lavabox_session`, a random secret whose SHA-256 is the session's row
//! (`store::Session`); cookie flags `HttpOnly; SameSite=Lax; Path=/` (Lax, not Strict: the
//! job links labs post in mails and CI systems are top-level navigations that must arrive
//! logged in). [`Visitor`] turns it into the same [`Caller`] the APIs build from tokens, so
//! pages and APIs apply one visibility rule.
//!
//! CSRF ([`guard`], on every unsafe request to a page route): a request is refused unless
//! (1) `Sec-Fetch-Site`, when sent, is `same-origin` or `none`, (2) `Origin`, when sent, is
//! this server's own origin, and (3) it carries the form field `csrf` or the header
//! `X-CSRF-Token` equal to [`csrf_token`] of its cookies: derived from the session secret, or
//! for visitors not logged in from the `lavabox_csrf` cookie set with the first page. Browsers
//! on plain `http://` send no `Sec-Fetch-*` headers to a LAN address, so (2) and (3) do the work
//! there; (3) also stops clients that send neither header.

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::access::Caller;
use crate::app::App;

use super::Page;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "lavabox_session";
/// The pre-login CSRF cookie's name.
pub const CSRF_COOKIE: &str = "lavabox_csrf";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The header carrying the CSRF token (the page's own `fetch` calls).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The largest form body the guard reads (the API's own cap).
const MAX_FORM: usize = crate::api::MAX_BODY;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| is_secret(v))
}

/// Secrets are 64 lower-case hex digits; anything else is not ours.
fn is_secret(v: &str) -> bool {
    v.len() == 64
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh random secret (64 hex digits).
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The CSRF token of a request with these cookies: derived from the session secret when
/// there is a session cookie, else from the `lavabox_csrf` cookie; `None` with neither.
pub fn csrf_token(headers: &HeaderMap) -> Option<String> {
    let secret = cookie(headers, SESSION_COOKIE).or_else(|| cookie(headers, CSRF_COOKIE))?;
    Some(token_of(secret))
}

fn token_of(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"lavabox-csrf\0");
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

/// `Set-Cookie` for a session (`secret`) or, with `None`, one that ends it.
pub fn session_cookie(secret: Option<&str>) -> HeaderValue {
    let value = match secret {
        Some(s) => format!("{SESSION_COOKIE}={s}; HttpOnly; SameSite=Lax; Path=/"),
        None => format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Why the CSRF guard refused a request (shown to the visitor).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// `Sec-Fetch-Site` says another site sent it.
    #[error("the form was sent from another site (Sec-Fetch-Site: {0})")]
    CrossSite(String),
    /// `Origin` is not this server.
    #[error("the form was sent from another origin ({0})")]
    Origin(String),
    /// No token, or not this visitor's.
    #[error(
        "the form's CSRF token is missing or does not match this browser's session; reload the page and try again"
    )]
    Token,
}

/// The header checks, (1) and (2): pure, over the request's headers.
pub fn check_headers(headers: &HeaderMap) -> Result<(), CsrfError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(CsrfError::CrossSite(site.to_owned()));
    }
    if let Some(origin) = text("origin") {
        let host = text("host").unwrap_or("");
        let ours = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.strip_prefix(scheme) == Some(host));
        if host.is_empty() || !ours {
            return Err(CsrfError::Origin(origin.to_owned()));
        }
    }
    Ok(())
}

/// The token check, (3): `sent` (field or header) against the cookies' token.
pub fn check_token(headers: &HeaderMap, sent: Option<&str>) -> Result<(), CsrfError> {
    match (csrf_token(headers), sent) {
        (Some(want), Some(got)) if constant_eq(want.as_bytes(), got.as_bytes()) => Ok(()),
        _ => Err(CsrfError::Token),
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `csrf` field of an urlencoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded_parse(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Middleware on every page route: unsafe methods must pass the CSRF rule.
pub async fn guard(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    if let Err(err) = check_headers(request.headers()) {
        return Page::Forbidden(err.to_string()).into_response();
    }
    let (parts, body) = request.into_parts();
    let header_token = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => return Page::BadRequest("the form is too large".into()).into_response(),
    };
    let sent = header_token.or_else(|| form_field(&bytes, CSRF_FIELD));
    if let Err(err) = check_token(&parts.headers, sent.as_deref()) {
        return Page::Forbidden(err.to_string()).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The session secret a request's cookie carries, if any (not yet checked).
pub fn session_secret(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// The visitor of a page: their [`Caller`] (from the session cookie) and the CSRF token
/// their forms carry. A visitor without any cookie gets a `lavabox_csrf` cookie with the page
/// ([`Visitor::set_cookie`]).
#[derive(Debug, Clone)]
pub struct Visitor {
    /// Who it is, as every API sees them.
    pub caller: Caller,
    /// The token the page's forms carry.
    pub csrf: String,
    /// The session secret, when logged in (logout ends it).
    pub session: Option<String>,
    /// A `Set-Cookie` the page must send (the first visit's CSRF cookie).
    pub set_cookie: Option<HeaderValue>,
}

impl FromRequestParts<App> for Visitor {
    type Rejection = Page;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Visitor, Page> {
        let session = session_secret(&parts.headers).map(str::to_owned);
        let caller = match &session {
            None => Caller::anonymous(),
            Some(secret) => crate::api::auth::session_caller(app, secret.clone()).await?,
        };
        let (csrf, set_cookie) = match csrf_token(&parts.headers) {
            Some(token) => (token, None),
            None => {
                let secret = new_secret().map_err(|e| Page::Internal(e.to_string()))?;
                let cookie = format!("{CSRF_COOKIE}={secret}; HttpOnly; SameSite=Lax; Path=/");
                (token_of(&secret), HeaderValue::from_str(&cookie).ok())
            }
        };
        Ok(Visitor {
            session: session.filter(|_| caller.user.is_some()),
            caller,
            csrf,
            set_cookie,
        })
    }
}

/// A tiny `application/x-www-form-urlencoded` reader (no extra crate: axum's `Form` does the
/// same through serde for handlers; the guard needs one field before the handler runs).
mod url {
    pub fn form_urlencoded_parse(body: &[u8]) -> Vec<(String, String)> {
        body.split(|&b| b == b'&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let mut it = pair.splitn(2, |&b| b == b'=');
                let k = decode(it.next().unwrap_or_default());
                let v = decode(it.next().unwrap_or_default());
                (k, v)
            })
            .collect()
    }

    fn decode(raw: &[u8]) -> String {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'+' => out.push(b' '),
                b'%' if i + 3 <= raw.len() => {
                    let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const S: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const C: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    #[test]
    fn reads_only_our_secrets_from_cookies() {
        let h = headers(&[("cookie", &format!("a=b; {SESSION_COOKIE}={S}; x=1"))]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some(S));
        let h = headers(&[("cookie", &format!("{SESSION_COOKIE}=short"))]);
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
        assert_eq!(cookie(&HeaderMap::new(), SESSION_COOKIE), None);
    }

    #[test]
    fn the_token_follows_the_session_else_the_csrf_cookie() {
        let anon = headers(&[("cookie", &format!("{CSRF_COOKIE}={C}"))]);
        let both = headers(&[(
            "cookie",
            &format!("{CSRF_COOKIE}={C}; {SESSION_COOKIE}={S}"),
        )]);
        assert_eq!(csrf_token(&anon), Some(token_of(C)));
        assert_eq!(csrf_token(&both), Some(token_of(S)));
        assert_eq!(csrf_token(&HeaderMap::new()), None);
        assert!(check_token(&both, Some(&token_of(S))).is_ok());
        assert_eq!(
            check_token(&both, Some(&token_of(C))),
            Err(CsrfError::Token)
        );
        assert_eq!(check_token(&both, None), Err(CsrfError::Token));
        assert_eq!(
            check_token(&HeaderMap::new(), Some(&token_of(S))),
            Err(CsrfError::Token)
        );
    }

    #[test]
    fn header_checks_refuse_other_sites_and_origins() {
        let ok = headers(&[("host", "pi:8000"), ("origin", "http://pi:8000")]);
        assert!(check_headers(&ok).is_ok());
        assert!(check_headers(&headers(&[("host", "pi:8000")])).is_ok());
        let evil = headers(&[("host", "pi:8000"), ("origin", "http://evil.example")]);
        assert!(matches!(check_headers(&evil), Err(CsrfError::Origin(_))));
        let port = headers(&[("host", "pi:8000"), ("origin", "http://pi:8001")]);
        assert!(matches!(check_headers(&port), Err(CsrfError::Origin(_))));
        let site = headers(&[("host", "pi"), ("sec-fetch-site", "cross-site")]);
        assert!(matches!(check_headers(&site), Err(CsrfError::CrossSite(_))));
        let same = headers(&[("host", "pi"), ("sec-fetch-site", "same-origin")]);
        assert!(check_headers(&same).is_ok());
    }

    #[test]
    fn form_fields_are_decoded() {
        let body = b"a=1&csrf=ab%2Bc+d&x";
        assert_eq!(form_field(body, "csrf").as_deref(), Some("ab+c d"));
        assert_eq!(form_field(body, "x").as_deref(), Some(""));
        assert_eq!(form_field(b"csrf=%zz%4", "csrf").as_deref(), Some("%zz%4"));
    }
}
