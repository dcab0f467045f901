//! The HTTP edge: LAVA's XML-RPC endpoint (`/RPC2`) and REST API on one axum router, served
//! on one listener.
//!
//! Architecture invariant: this is the only module that knows the wire formats (XML-RPC,
//! JSON); it talks to the rest of lavabox through [`App`], the store and [`crate::submit`].

pub mod auth;
pub mod rest;
pub mod results;
pub mod xmlrpc;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;

/// Largest request body accepted: Django's `DATA_UPLOAD_MAX_MEMORY_SIZE` (2.5 MiB), which
/// LAVA keeps.
pub const MAX_BODY: usize = 2_621_440;

/// How long one request may take before the server answers 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The whole HTTP API for `app`.
pub fn router(app: App) -> Router {
    Router::new()
        .merge(xmlrpc::router())
        .merge(rest::router())
        .merge(results::router())
        .merge(crate::events::ws::router())
        .merge(crate::web::router())
        .with_state(app)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then drains open requests.
///
/// Accepted connections get `TCP_NODELAY`: API answers are small writes, and without it
/// Nagle's algorithm holds a response's last segment until the client's delayed ACK
/// (about 40 ms on Linux), which dominated the latency of small requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(app).layer((
        TraceLayer::new_for_http(),
        RequestBodyLimitLayer::new(MAX_BODY),
        #[allow(deprecated)]
        TimeoutLayer::new(REQUEST_TIMEOUT),
    ));
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "setting TCP_NODELAY on an API connection");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
