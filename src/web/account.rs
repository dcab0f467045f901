//! Logging in and out, and the visitor's API tokens (`/api/tokens/`, LAVA's page): the same
//! tokens `api::auth` checks, created and deleted through the store, each secret shown once.

use axum::extract::{Form, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::store::TokenId;

use super::session::session_cookie;
use super::{Page, Visitor, password, render, view};

/// Where to go after logging in: a path on this server, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// `?next=` of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    /// Set after a password change (`web::first_boot`).
    changed: Option<String>,
}

/// `GET /accounts/login`.
pub async fn login_page(
    State(app): State<App>,
    visitor: Visitor,
    Query(q): Query<NextQuery>,
) -> Result<Response, Page> {
    // The appliance's first-boot admin, until its password is changed.
    let first_boot = super::first_boot::notice(&app).await;
    render(
        "login.html",
        &visitor,
        json!({
            "next": safe_next(q.next.as_deref()),
            "username": "",
            "changed": q.changed.is_some(),
            "first_boot": first_boot.map(|c| json!({ "user": c.user, "password": c.password })),
        }),
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /accounts/login`: checks the password (argon2, on the blocking pool; an unknown
/// user costs the same as a wrong password), starts a session and sets its cookie.
pub async fn login(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<LoginForm>,
) -> Result<Response, Page> {
    let name = form.username.trim().to_owned();
    let lookup = name.clone();
    let found = app.store().call(move |s| s.password_of(&lookup)).await?;
    let (user, phc) = match found {
        Some((user, phc)) => (Some(user), Some(phc)),
        None => (None, None),
    };
    let ok = password::verify_blocking(form.password, phc).await;
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(username = %name, "web login refused");
        let mut r = render(
            "login.html",
            &visitor,
            json!({
                "next": safe_next(form.next.as_deref()),
                "username": name,
                "error": "Please enter a correct username and password.",
            }),
        )?;
        *r.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        return Ok(r);
    };
    let id = user.id;
    let secret = app.store().call(move |s| s.create_session(id)).await?;
    tracing::info!(username = %user.username, "web login");
    let mut r = Redirect::to(&safe_next(form.next.as_deref())).into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, session_cookie(Some(&secret)));
    Ok(r)
}

/// `POST /accounts/logout`: ends the session (its row goes) and clears the cookie.
pub async fn logout(State(app): State<App>, visitor: Visitor) -> Result<Response, Page> {
    if let Some(secret) = visitor.session.clone() {
        app.store().call(move |s| s.delete_session(&secret)).await?;
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, session_cookie(None));
    Ok(r)
}

async fn tokens_page(
    app: &App,
    visitor: &Visitor,
    secret: Option<String>,
) -> Result<Response, Page> {
    let Some(user) = visitor.caller.username().map(str::to_owned) else {
        return Err(Page::Login("/api/tokens/".into()));
    };
    let tokens = app.store().call(move |s| s.tokens(&user)).await?;
    render(
        "tokens.html",
        visitor,
        json!({
            "tokens": tokens.iter().map(|t| json!({
                "id": t.id.0,
                "description": t.description,
                "created": view::time(t.created),
                "last_used": t.last_used.map(view::time),
            })).collect::<Vec<_>>(),
            "secret": secret,
        }),
    )
}

/// `GET /api/tokens/`.
pub async fn tokens(State(app): State<App>, visitor: Visitor) -> Result<Response, Page> {
    tokens_page(&app, &visitor, None).await
}

/// The new-token form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    description: String,
}

/// `POST /api/tokens/`: a new token; its secret is shown on this answer only.
pub async fn create_token(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<TokenForm>,
) -> Result<Response, Page> {
    let Some(user) = visitor.caller.username().map(str::to_owned) else {
        return Err(Page::Login("/api/tokens/".into()));
    };
    let created = app
        .store()
        .call(move |s| s.create_token(&user, form.description.trim()))
        .await?;
    let mut r = tokens_page(&app, &visitor, Some(created.secret)).await?;
    // The secret is on this page only: keep it out of caches and the history.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// `POST /api/tokens/<id>/delete`.
pub async fn delete_token(
    State(app): State<App>,
    visitor: Visitor,
    Path(id): Path<i64>,
) -> Result<Response, Page> {
    let Some(user) = visitor.caller.username().map(str::to_owned) else {
        return Err(Page::Login("/api/tokens/".into()));
    };
    app.store()
        .call(move |s| s.delete_token(&user, TokenId(id)))
        .await?;
    Ok(Redirect::to("/api/tokens/").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/scheduler/job/3")), "/scheduler/job/3");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", "job"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
