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
mod jobadmin;
mod jobs;
mod notifications;
mod objects;
mod page;
mod permissions;
pub mod pyfmt;
mod submission;
mod suites;
mod templates;
mod token;
mod workers;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use crate::access::Caller;
pub use error::ApiError;

use crate::app::App;

/// Largest request body accepted (LAVA's web server allows 2.5 MiB submissions).
pub const BODY_LIMIT: usize = 2_621_440;

/// The routes of one API version, relative to its prefix.
fn versioned() -> Router<App> {
    Router::new()
        .route("/jobs/", get(jobs::list).post(submission::submit))
        .route("/jobs/validate/", post(submission::validate))
        .route(
            "/jobs/validate_testdef/",
            post(submission::validate_testdef),
        )
        .route(
            "/jobs/{id}/",
            get(jobs::detail)
                .put(jobadmin::update)
                .patch(jobadmin::update)
                .delete(jobadmin::delete),
        )
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
        .route("/jobs/{id}/resubmit/", post(submission::resubmit))
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
        .route("/devices/validate/", post(admin::validate_dictionary))
        .route("/devices/{hostname}/set_health/", post(admin::set_health))
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
        .route(
            "/devicetypes/{name}/template/",
            get(objects::template).post(templates::set),
        )
        .route(
            "/devicetypes/{name}/health_check/",
            get(objects::health_check).post(templates::set),
        )
        .route("/workers/", get(workers::list).post(workers::create_worker))
        .route(
            "/workers/{hostname}/",
            get(workers::detail)
                .put(workers::update_worker)
                .patch(workers::update_worker)
                .delete(workers::delete_worker),
        )
        .route(
            "/workers/{hostname}/config/",
            get(workers::file).post(workers::set_file),
        )
        .route(
            "/workers/{hostname}/env/",
            get(workers::file).post(workers::set_file),
        )
        .route("/tags/", get(objects::tags).post(admin::create_tag))
        .route(
            "/tags/{id}/",
            get(objects::tag)
                .put(admin::update_tag)
                .patch(admin::update_tag)
                .delete(admin::delete_tag),
        )
        .route("/aliases/", get(objects::aliases).post(admin::create_alias))
        .route(
            "/aliases/{name}/",
            get(objects::alias)
                .put(admin::update_alias)
                .patch(admin::update_alias)
                .delete(admin::delete_alias),
        )
        .route(
            "/permissions/devices/",
            get(permissions::devices).post(permissions::create_device),
        )
        .route(
            "/permissions/devices/{id}/",
            get(permissions::device)
                .put(permissions::update_device)
                .patch(permissions::update_device)
                .delete(permissions::delete_device),
        )
        .route(
            "/permissions/devicetypes/",
            get(permissions::device_types).post(permissions::create_device_type),
        )
        .route(
            "/permissions/devicetypes/{id}/",
            get(permissions::device_type)
                .put(permissions::device_type)
                .patch(permissions::device_type)
                .delete(permissions::device_type),
        )
        .route("/token/", post(token::obtain))
        .route("/system/version/", get(objects::version))
        .route("/system/whoami/", get(objects::whoami))
        .route("/system/master_config/", get(objects::master_config))
        // After every route: it applies to the routes added so far.
        .method_not_allowed_fallback(error::method_not_allowed)
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
