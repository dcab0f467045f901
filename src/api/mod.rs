//! The HTTP edge: LAVA's XML-RPC endpoint (`/RPC2`) and REST API on one axum router, served
//! on one listener.
//!
//! Architecture invariant: this is the only module that knows the wire formats (XML-RPC,
//! JSON); it talks to the rest of lavabox through [`App`], the store and [`crate::submit`].

pub mod auth;
pub mod large;
pub mod normalize;
pub mod plain_log;
pub mod rest;
pub mod results;
pub mod xmlrpc;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

use crate::app::App;

pub use large::LARGE_BODY;

/// Largest request body accepted: Django's `DATA_UPLOAD_MAX_MEMORY_SIZE` (2.5 MiB), which
/// LAVA keeps.
pub const MAX_BODY: usize = 2_621_440;

/// How long one request may take before the server answers 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The whole HTTP API for `app`, behind the path normalisation LAVA's front server and
/// Django apply ([`normalize`]: merged slashes, `APPEND_SLASH`'s 301).
pub fn router(app: App) -> Router {
    let routes = Router::new()
        .merge(xmlrpc::router())
        .merge(rest::router())
        .merge(results::router())
        .merge(plain_log::router())
        .merge(crate::events::ws::router())
        .merge(crate::web::router())
        .with_state(app);
    Router::new().fallback_service(normalize::NormalizePath::new(routes))
}

/// Serves [`router`] on `listener` until `shutdown` completes, under `[http]`'s connection
/// limits ([`crate::net::http::serve`]: header and idle timeouts, the connection cap fitted
/// to the descriptor limit, a shutdown bounded by the grace period) and its cap on large
/// requests ([`large`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gate = crate::net::http::fitted("HTTP API", app.config().http.limits);
    let large_requests = large::LargeRequests::new(&app.config().http);
    let body_stall = app.config().http.limits.header_timeout;
    // The large-request queue sits outside the request timeout: waiting for a permit is
    // bounded by the queue's length, the timeout applies to reading and handling.
    let router = router(app).layer((
        TraceLayer::new_for_http(),
        axum::middleware::from_fn_with_state(large_requests, large::gate),
        RequestBodyLimitLayer::new(MAX_BODY),
        // A body that stalls is as bad as a header that does: it would hold a large-request
        // permit until the request timeout.
        RequestBodyTimeoutLayer::new(body_stall),
        #[allow(deprecated)]
        TimeoutLayer::new(REQUEST_TIMEOUT),
    ));
    crate::net::http::serve(listener, router, gate, shutdown).await;
    Ok(())
}
