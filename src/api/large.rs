//! At most a few requests with a large body at once: a 2 MiB job costs tens of megabytes while
//! it is decoded, parsed and validated, and `scheduler.validate_yaml` needs no token, so
//! without this a handful of anonymous clients could take a small box's memory.
//!
//! A request whose body may exceed [`LARGE_BODY`] (its `Content-Length` says so, or it has no
//! length: chunked) waits for one of [`HttpConfig::large_requests`] permits *before* its body
//! is read, so a waiting request costs only its connection. At most
//! [`HttpConfig::large_request_queue`] wait; beyond that the request is refused at once: an
//! XML-RPC fault 503 on `/RPC2`, HTTP 503 with `Retry-After` elsewhere. The wait is bounded by
//! the queue's length; the request timeout ([`crate::api::REQUEST_TIMEOUT`]) starts with the
//! permit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::config::HttpConfig;

/// A body larger than this needs a permit: small requests (every query, cancel, small job)
/// never wait behind large ones.
pub const LARGE_BODY: u64 = 16 * 1024;

/// Seconds a refused client is told to wait.
const RETRY_AFTER: &str = "5";

/// The permits and the queue, shared by every connection of a listener.
#[derive(Debug, Clone)]
pub struct LargeRequests {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// Whether a request with these headers may carry a large body.
fn is_large(request: &Request) -> bool {
    let headers = request.headers();
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(length) => length > LARGE_BODY,
        // No (valid) length: chunked, or a body without framing hyper will refuse anyway.
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

impl LargeRequests {
    /// The limits of `[http]`.
    pub fn new(config: &HttpConfig) -> LargeRequests {
        LargeRequests {
            permits: Arc::new(Semaphore::new(config.large_requests)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: config.large_request_queue,
        }
    }

    /// Takes a place in the queue, if one is free.
    fn enqueue(&self) -> Option<Waiting> {
        let mut now = self.waiting.load(Ordering::Acquire);
        loop {
            if now >= self.max_waiting {
                return None;
            }
            match self.waiting.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Waiting {
                        waiting: Arc::clone(&self.waiting),
                    });
                }
                Err(seen) => now = seen,
            }
        }
    }
}

/// A place in the queue, given back when dropped.
struct Waiting {
    waiting: Arc<AtomicUsize>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The middleware: small requests pass, large ones wait for a permit or are refused.
pub async fn gate(State(large): State<LargeRequests>, request: Request, next: Next) -> Response {
    if !is_large(&request) {
        return next.run(request).await;
    }
    // A free permit is taken without queueing.
    if let Ok(permit) = Arc::clone(&large.permits).try_acquire_owned() {
        let response = next.run(request).await;
        drop(permit);
        return response;
    }
    let Some(place) = large.enqueue() else {
        tracing::warn!(
            path = request.uri().path(),
            "refusing a large request: the queue of large requests is full"
        );
        return refused(request.uri().path());
    };
    let Ok(permit) = Arc::clone(&large.permits).acquire_owned().await else {
        return refused(request.uri().path());
    };
    drop(place);
    let response = next.run(request).await;
    drop(permit);
    response
}

/// The answer to a large request that found the queue full.
fn refused(path: &str) -> Response {
    let message = "Service Unavailable: too many large requests (job submissions or \
                   validations) in progress; retry later";
    if path.trim_end_matches('/') == "/RPC2" {
        let mut response = crate::api::xmlrpc::fault_response(503, message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
        return response;
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER)],
        axum::Json(serde_json::json!({ "detail": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = axum::http::Request::builder().method("POST").uri("/RPC2");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn large_is_by_declared_length_or_chunked() {
        assert!(!is_large(&request(&[("content-length", "16384")])));
        assert!(is_large(&request(&[("content-length", "16385")])));
        assert!(is_large(&request(&[("transfer-encoding", "chunked")])));
        assert!(!is_large(&request(&[])));
    }

    #[test]
    fn the_queue_is_bounded_and_places_come_back() {
        let large = LargeRequests::new(&HttpConfig {
            large_requests: 1,
            large_request_queue: 2,
            ..HttpConfig::default()
        });
        let a = large.enqueue();
        let b = large.enqueue();
        assert!(a.is_some() && b.is_some());
        assert!(large.enqueue().is_none());
        drop(a);
        assert!(large.enqueue().is_some());
    }
}
