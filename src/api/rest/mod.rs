//! LAVA's REST API v0.2 (and the same routes under v0.1) as Django REST framework serves
//! them in LAVA 2023.01: `{"count", "next", "previous", "results"}` limit/offset pages,
//! django-filter query filters, `?ordering=`, `{"detail": ...}` errors, token
//! authentication (`Authorization: Token <secret>`), and anonymous read access to public
//! objects only. See `shared/reference/rest.md`.
//!
//! The module converts store types into wire JSON by hand: the store's types stay free of
//! serde (architecture invariant: only `api/` knows wire formats).

mod auth;
mod error;
mod filter;
mod jobs;
mod notifications;
mod objects;
mod page;
pub mod pyfmt;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use auth::Caller;
pub use error::ApiError;

use crate::app::App;

/// Largest request body accepted (LAVA's web server allows 2.5 MiB submissions).
pub const BODY_LIMIT: usize = 2_621_440;

/// The LAVA version this API reports and imitates.
pub const LAVA_VERSION: &str = "2023.01";

/// The routes of one API version, relative to its prefix.
fn versioned() -> Router<App> {
    Router::new()
        .route("/jobs/", get(jobs::list).post(jobs::submit))
        .route("/jobs/validate/", axum::routing::post(jobs::validate))
        .route("/jobs/{id}/", get(jobs::detail))
        .route("/jobs/{id}/logs/", get(jobs::logs))
        .route("/jobs/{id}/metadata/", get(jobs::metadata))
        .route("/jobs/{id}/notifications/", get(notifications::list))
        .route("/jobs/{id}/tests/", get(jobs::tests))
        .route("/jobs/{id}/suites/", get(jobs::suites))
        .route("/jobs/{id}/suites/{suite}/", get(jobs::suite))
        .route("/jobs/{id}/suites/{suite}/tests/", get(jobs::suite_tests))
        .route(
            "/jobs/{id}/suites/{suite}/tests/{case}/",
            get(jobs::suite_test),
        )
        .route("/jobs/{id}/suites/{suite}/csv/", get(jobs::suite_csv))
        .route("/jobs/{id}/suites/{suite}/yaml/", get(jobs::suite_yaml))
        .route("/jobs/{id}/csv/", get(jobs::csv))
        .route("/jobs/{id}/yaml/", get(jobs::yaml))
        .route("/jobs/{id}/junit/", get(jobs::junit))
        .route("/jobs/{id}/tap13/", get(jobs::tap13))
        .route("/jobs/{id}/cancel/", get(jobs::cancel))
        .route("/jobs/{id}/resubmit/", axum::routing::post(jobs::resubmit))
        .route("/devices/", get(objects::devices))
        .route("/devices/{hostname}/", get(objects::device))
        .route("/devices/{hostname}/dictionary/", get(objects::dictionary))
        .route("/devicetypes/", get(objects::device_types))
        .route("/devicetypes/{name}/", get(objects::device_type))
        .route("/devicetypes/{name}/template/", get(objects::template))
        .route(
            "/devicetypes/{name}/health_check/",
            get(objects::health_check),
        )
        .route("/workers/", get(objects::workers))
        .route("/workers/{hostname}/", get(objects::worker))
        .route("/tags/", get(objects::tags))
        .route("/tags/{id}/", get(objects::tag))
        .route("/aliases/", get(objects::aliases))
        .route("/aliases/{name}/", get(objects::alias))
        .route("/system/version/", get(objects::version))
        .route("/system/whoami/", get(objects::whoami))
        .route("/system/master_config/", get(objects::master_config))
        .fallback(error::not_found)
}

/// The REST API routes (`/api/v0.2/...` and `/api/v0.1/...`), with the body size cap; give
/// them their state with `.with_state(app)` (as [`crate::api::router`] does).
pub fn router() -> Router<App> {
    Router::new()
        .nest("/api/v0.2", versioned())
        .nest("/api/v0.1", versioned())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}
