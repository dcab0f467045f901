//! The local web UI, served by `lavabox serve` on the API listener: server-rendered pages
//! (minijinja `*.html` templates compiled in, in an HTML-auto-escaping environment of their
//! own), every action a plain form guarded against CSRF ([`session::guard`]), a little
//! vendored htmx for live fragments and our own `app.js` for the job log viewer, and live
//! updates by Server-Sent Events fed from the event bus and the job log file.
//!
//! Pages keep LAVA's URL shapes where LAVA has the page (`/scheduler/job/<id>`,
//! `/scheduler/device/<name>`, `/results/<job>`), so links labs and CI systems already post
//! keep working. Who may see what is the APIs' rule: jobs through `submit::find_job` and
//! `Caller::viewer`, devices through `access::may_use_device`; submissions, cancels and
//! resubmits go through `submit`, the one path. The plain log download
//! (`/scheduler/job/<id>/log_file/plain`) and the `/results/<job>/…` exports belong to other
//! modules; pages link to them.

mod account;
pub mod assets;
mod dashboard;
mod devices;
pub mod first_boot;
mod follow;
mod jobs;
pub mod logindex;
pub mod password;
pub mod session;
mod view;

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;

use crate::app::App;
use crate::store;
use crate::submit::SubmitError;

pub use session::Visitor;

/// The UI's routes; mounted by `api::router`.
pub fn router() -> Router<App> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/scheduler/", get(dashboard::page))
        .route("/scheduler/live", get(dashboard::live))
        .route("/scheduler/alljobs", get(jobs::list))
        .route("/scheduler/job/{id}", get(jobs::page))
        .route("/scheduler/job/{id}/lines", get(jobs::lines))
        .route("/scheduler/job/{id}/search", get(jobs::search))
        .route("/scheduler/job/{id}/live", get(jobs::live))
        .route("/scheduler/job/{id}/cancel", post(jobs::cancel))
        .route("/scheduler/job/{id}/resubmit", post(jobs::resubmit))
        .route(
            "/scheduler/jobsubmit",
            get(jobs::submit_page).post(jobs::submit),
        )
        .route("/scheduler/jobsubmit/validate", post(jobs::validate))
        .route("/results/{job}", get(jobs::results))
        .route("/results/{job}/{suite}", get(jobs::suite_results))
        .route("/scheduler/alldevices", get(devices::list))
        .route("/scheduler/device/{name}", get(devices::page))
        .route("/scheduler/device/{name}/health", post(devices::set_health))
        .route("/scheduler/device/{name}/tags", post(devices::set_tags))
        .route(
            "/scheduler/devices/add",
            get(devices::add_page).post(devices::add),
        )
        .route("/scheduler/device_types/add", post(devices::add_type))
        .route(
            "/accounts/login",
            get(account::login_page).post(account::login),
        )
        .route("/accounts/logout", post(account::logout))
        .route(
            "/accounts/password",
            get(first_boot::password_page).post(first_boot::change_password),
        )
        .route(
            "/api/tokens/",
            get(account::tokens).post(account::create_token),
        )
        .route("/api/tokens/{id}/delete", post(account::delete_token))
        .route_layer(axum::middleware::from_fn(session::guard))
        .route("/static/{name}", get(assets::serve))
}

/// The templates, compiled in. `.html` names get HTML auto-escaping (minijinja's default by
/// extension); nothing here marks request data `|safe`.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("error.html", include_str!("templates/error.html")),
        ("dashboard.html", include_str!("templates/dashboard.html")),
        ("_dashboard.html", include_str!("templates/_dashboard.html")),
        ("jobs.html", include_str!("templates/jobs.html")),
        ("job.html", include_str!("templates/job.html")),
        ("results.html", include_str!("templates/results.html")),
        ("submit.html", include_str!("templates/submit.html")),
        ("_problems.html", include_str!("templates/_problems.html")),
        ("devices.html", include_str!("templates/devices.html")),
        ("device.html", include_str!("templates/device.html")),
        ("device_add.html", include_str!("templates/device_add.html")),
        ("login.html", include_str!("templates/login.html")),
        ("tokens.html", include_str!("templates/tokens.html")),
        ("password.html", include_str!("templates/password.html")),
    ] {
        if let Err(err) = env.add_template(name, text) {
            // A template that does not compile is a build defect; the unit test below
            // catches it, and the page answers 500 rather than the process dying.
            tracing::error!(template = name, error = %err, "web template does not compile");
        }
    }
    env
});

/// Why a page could not be shown; each is a page with its status.
#[derive(Debug, thiserror::Error)]
pub enum Page {
    /// 404, with what was not found (also what a caller may not see: hidden is absent).
    #[error("{0}")]
    NotFound(String),
    /// 403: logged in but not allowed, or a CSRF refusal.
    #[error("{0}")]
    Forbidden(String),
    /// 400: bad form input.
    #[error("{0}")]
    BadRequest(String),
    /// A page that needs a login: redirect to the login form.
    #[error("login required")]
    Login(String),
    /// 500: logged once, shown without the cause.
    #[error("{0}")]
    Internal(String),
}

impl From<store::Error> for Page {
    fn from(err: store::Error) -> Page {
        match err {
            store::Error::NotFound { kind, name } => {
                Page::NotFound(format!("{kind} {name} not found"))
            }
            other => Page::Internal(format!("{other:#}")),
        }
    }
}

impl From<SubmitError> for Page {
    fn from(err: SubmitError) -> Page {
        match err {
            SubmitError::JobNotFound(id) | SubmitError::JobHidden { job: id, .. } => {
                Page::NotFound(format!("Job {id} not found"))
            }
            SubmitError::AuthRequired => Page::Login(String::new()),
            SubmitError::PermissionDenied => Page::Forbidden(err.to_string()),
            SubmitError::Store(e) => Page::from(e),
            other => Page::BadRequest(other.to_string()),
        }
    }
}

impl From<logindex::Error> for Page {
    fn from(err: logindex::Error) -> Page {
        Page::Internal(format!("{:#}", anyhow::Error::from(err)))
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            Page::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            Page::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            Page::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            Page::Login(next) => {
                let to = format!("/accounts/login?next={}", view::url_encode(next));
                return axum::response::Redirect::to(&to).into_response();
            }
            Page::Internal(cause) => {
                tracing::error!(%cause, "web page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
            }
        };
        let message = match &self {
            Page::Internal(_) => {
                "Internal Server Error (contact server administrator for details)".to_owned()
            }
            other => other.to_string(),
        };
        let ctx =
            minijinja::context! { title, message => message.clone(), status => status.as_u16() };
        let body = TEMPLATES
            .get_template("error.html")
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|_| message.clone());
        (status, Html(body)).into_response()
    }
}

/// Renders template `name` with `ctx` plus what every page shows (the visitor's name and
/// rights, the CSRF token), setting the visitor's first CSRF cookie if due.
fn render(name: &str, visitor: &Visitor, ctx: serde_json::Value) -> Result<Response, Page> {
    let html = render_text(name, visitor, ctx)?;
    let mut response = Html(html).into_response();
    if let Some(cookie) = &visitor.set_cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn render_text(name: &str, visitor: &Visitor, ctx: serde_json::Value) -> Result<String, Page> {
    let mut ctx = match ctx {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    ctx.insert("csrf".into(), visitor.csrf.clone().into());
    ctx.insert(
        "me".into(),
        match &visitor.caller.user {
            Some(u) => serde_json::json!({ "username": u.username, "superuser": u.is_superuser }),
            None => serde_json::Value::Null,
        },
    );
    TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(jinja_value(&serde_json::Value::Object(ctx))))
        .map_err(|err| Page::Internal(format!("rendering {name}: {err:#}")))
}

/// A page's JSON context as a template value (the crate's minijinja has no serde feature).
fn jinja_value(value: &serde_json::Value) -> minijinja::Value {
    use minijinja::Value;
    use serde_json::Value as J;
    match value {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => items.iter().map(jinja_value).collect(),
        J::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), jinja_value(v)))
                .collect::<std::collections::BTreeMap<String, Value>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_escapes_html() {
        for name in [
            "base.html",
            "error.html",
            "dashboard.html",
            "_dashboard.html",
            "jobs.html",
            "job.html",
            "results.html",
            "submit.html",
            "_problems.html",
            "devices.html",
            "device.html",
            "device_add.html",
            "login.html",
            "tokens.html",
        ] {
            TEMPLATES
                .get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        let page = render_text(
            "login.html",
            &Visitor {
                caller: crate::access::Caller::anonymous(),
                csrf: "c".repeat(64),
                session: None,
                set_cookie: None,
            },
            serde_json::json!({ "next": "/x", "username": "<b>" }),
        )
        .unwrap();
        assert!(
            page.contains(&format!("name=\"csrf\" value=\"{}\"", "c".repeat(64))),
            "{page}"
        );
        assert!(
            page.contains("&lt;b&gt;") && !page.contains("<b>"),
            "{page}"
        );
        let html = TEMPLATES
            .get_template("error.html")
            .unwrap()
            .render(minijinja::context! { title => "t", message => "<script>x</script>", status => 400 })
            .unwrap();
        assert!(html.contains("&lt;script&gt;x&lt;"), "{html}");
        assert!(!html.contains("<script>x"));
    }
}
