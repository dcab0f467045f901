//! An HTTP/1.1 server for an axum [`Router`] under a listener's [`Limits`]: every connection
//! is admitted through a [`Gate`], timed by its [`Conn`] marks (a request marks it busy until
//! its response body has been written), and the shutdown is bounded.
//!
//! Shutdown: the listener is closed at once (new clients are refused by the kernel), idle
//! connections are closed, connections with a request in flight finish it (keep-alive off);
//! after [`Limits::shutdown_grace`] the rest are dropped, so [`serve`] always returns within
//! the grace period of its shutdown signal.
//!
//! axum's own `serve` has no header or idle timeout and no connection cap, which is what
//! this replaces; the connection itself is still hyper's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::limits::{self, Busy, Conn, Gate, Limits, TrackedIo};

/// The most a connection buffers: a request header must fit in it.
pub const MAX_BUF: usize = 32 * 1024;

/// Serves `router` on `listener` under `gate`'s limits until `shutdown` completes, then
/// stops as the module says.
///
/// Accepted connections get `TCP_NODELAY`: API answers are small writes, and without it
/// Nagle's algorithm holds a response's last segment until the client's delayed ACK
/// (about 40 ms on Linux), which dominated the latency of small requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    gate: Gate,
    shutdown: impl Future<Output = ()>,
) {
    let limits = *gate.limits();
    let stopping = CancellationToken::new();
    let dropping = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer, conn) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = limits::accept(&listener, &gate) => accepted,
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "setting TCP_NODELAY on an API connection");
        }
        tracker.spawn(connection(
            tcp,
            conn,
            router.clone(),
            stopping.clone(),
            dropping.clone(),
            peer,
        ));
    }
    // Stop accepting at once: from here the kernel refuses new clients.
    drop(listener);
    tracker.close();
    tracing::info!(
        open = gate.open(),
        grace_seconds = limits.shutdown_grace.as_secs_f64(),
        "HTTP listener closed; finishing the requests in flight"
    );
    stopping.cancel();
    if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = gate.open(),
            "requests still in flight after the shutdown grace period: closing their connections"
        );
        dropping.cancel();
        tracker.wait().await;
    }
}

/// Serves one connection until it ends, times out, is closed to admit another, or the
/// shutdown reaches it.
async fn connection(
    tcp: TcpStream,
    conn: Arc<Conn>,
    router: Router,
    stopping: CancellationToken,
    dropping: CancellationToken,
    peer: std::net::SocketAddr,
) {
    let io = TokioIo::new(TrackedIo::new(tcp, Arc::clone(&conn)));
    let service = {
        let conn = Arc::clone(&conn);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = conn.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Guarded {
                        inner: body,
                        _busy: busy,
                    })
                }))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's default (~400 KB) would let each slow header hold that much; LAVA's requests
    // carry small headers (nginx allows 32 KiB too), and bodies stream through it.
    http.max_buf_size(MAX_BUF);
    let served = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(served);
    let mut graceful = false;
    loop {
        let deadline = conn.deadline();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "HTTP connection ended");
                }
                break;
            }
            () = conn.closed() => {
                tracing::debug!(%peer, "closing an idle HTTP connection to admit a new one");
                break;
            }
            () = dropping.cancelled() => break,
            () = stopping.cancelled(), if !graceful => {
                if conn.is_idle() {
                    break;
                }
                graceful = true;
                served.as_mut().graceful_shutdown();
            }
            () = conn.changed() => {}
            () = timer => {
                if conn.expired() {
                    tracing::debug!(%peer, "closing an HTTP connection that timed out");
                    break;
                }
            }
        }
    }
    // An upgraded connection (the `/ws/` event stream) lives on in its handler's task.
    conn.detach();
}

/// A response body that keeps its connection marked busy until it has been written.
struct Guarded {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The limits of a listener as the configuration states them, fitted to the process's
/// descriptor limit (raised to its hard limit first); a cut cap is logged once.
pub fn fitted(name: &'static str, limits: Limits) -> Gate {
    let mut limits = limits;
    if let Some(soft) = limits::raise_fd_limit() {
        let fitted = limits::fit_to_fd_limit(limits.max_connections, soft);
        if fitted < limits.max_connections {
            tracing::warn!(
                listener = name,
                max_connections = limits.max_connections,
                nofile = soft,
                using = fitted,
                "[http] max_connections does not fit the open-file limit (LimitNOFILE): \
                 using fewer"
            );
            limits.max_connections = fitted;
        }
    }
    Gate::new(name, limits)
}
