//! LAVA's REST API v0.2 (and the same routes under v0.1) as Django REST framework serves
//! them in LAVA 2023.01: `{"count", "next", "previous", "results"}` limit/offset pages,
//! django-filter query filters, `?ordering=`, `{"detail": ...}` errors, token
//! authentication (`Authorization: Token <secret>`), and anonymous read access to public
//! objects only. See `shared/reference/rest.md`.
//!
//! The module converts store types into wire JSON by hand: the store's types stay free of
//! serde (architecture invariant: only `api/` knows wire formats).

mod admin;
mod auth;
mod error;
mod filter;
mod jobs;
mod notifications;
mod objects;
mod page;
pub mod pyfmt;
mod submission;
mod suites;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use crate::api::auth::Caller;
pub use error::ApiError;

use crate::app::App;

/// Largest request body accepted (LAVA's web server allows 2.5 MiB submissions).
pub const BODY_LIMIT: usize = 2_621_440;

/// The LAVA version this API reports and imitates.
pub const LAVA_VERSION: &str = "2023.01";

/// The routes of one API version, relative to its prefix.
fn versioned() -> Router<App> {
    Router::new()
        .route("/jobs/", get(jobs::list).post(submission::submit))
        .route("/jobs/validate/", axum::routing::post(submission::validate))
        .route("/jobs/{id}/", get(jobs::detail))
        .route("/jobs/{id}/logs/", get(jobs::logs))
        .route("/jobs/{id}/metadata/", get(jobs::metadata))
        .route("/jobs/{id}/notifications/", get(notifications::list))
        .route("/jobs/{id}/tests/", get(suites::tests))
        .route("/jobs/{id}/suites/", get(suites::suites))
        .route("/jobs/{id}/suites/{suite}/", get(suites::suite))
        .route("/jobs/{id}/suites/{suite}/tests/", get(suites::suite_tests))
        .route(
            "/jobs/{id}/suites/{suite}/tests/{case}/",
            get(suites::suite_test),
        )
        .route("/jobs/{id}/suites/{suite}/csv/", get(suites::suite_csv))
        .route("/jobs/{id}/suites/{suite}/yaml/", get(suites::suite_yaml))
        .route("/jobs/{id}/csv/", get(suites::csv))
        .route("/jobs/{id}/yaml/", get(suites::yaml))
        .route("/jobs/{id}/junit/", get(suites::junit))
        .route("/jobs/{id}/tap13/", get(suites::tap13))
        .route("/jobs/{id}/cancel/", get(submission::cancel))
        .route(
            "/jobs/{id}/resubmit/",
            axum::routing::post(submission::resubmit),
        )
        .route(
            "/devices/",
            get(objects::devices).post(admin::create_device),
        )
        .route(
            "/devices/{hostname}/",
            get(objects::device)
                .put(admin::update_device)
                .patch(admin::update_device)
                .delete(admin::delete_device),
        )
        .route(
            "/devices/{hostname}/dictionary/",
            get(objects::dictionary).post(admin::set_dictionary),
        )
        .route(
            "/devicetypes/",
            get(objects::device_types).post(admin::create_device_type),
        )
        .route(
            "/devicetypes/{name}/",
            get(objects::device_type)
                .put(admin::update_device_type)
                .patch(admin::update_device_type)
                .delete(admin::delete_device_type),
        )
        .route("/devicetypes/{name}/template/", get(objects::template))
        .route(
            "/devicetypes/{name}/health_check/",
            get(objects::health_check),
        )
        .route("/workers/", get(objects::workers))
        .route("/workers/{hostname}/", get(objects::worker))
        .route("/tags/", get(objects::tags).post(admin::create_tag))
        .route("/tags/{id}/", get(objects::tag))
        .route("/aliases/", get(objects::aliases).post(admin::create_alias))
        .route(
            "/aliases/{name}/",
            get(objects::alias).delete(admin::delete_alias),
        )
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
