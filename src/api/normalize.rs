//! Path normalisation in front of the whole router, doing what LAVA's front server and Django
//! do before a view sees a request:
//! - repeated slashes are merged (Apache/nginx `merge_slashes`; SQUAD's XML-RPC backend
//!   posts to `//RPC2`);
//! - a path without its trailing slash that is unknown, while the slash form is a known
//!   route, answers Django's `APPEND_SLASH` 301 to the slash form, query kept (SQUAD's REST
//!   backend asks `jobs/<id>`).
//!
//! Whether a path is known is asked of the router itself, so no route list is kept twice: a
//! request with [`PROBE`], a method no route registers, reaches no handler and answers 405 on
//! a known path and the 404 fallback on an unknown one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use tower::{Service, ServiceExt as _};

/// The method of a route-existence probe: no route registers it, so no handler runs.
const PROBE: &str = "LAVABOX-PROBE";

/// `path` with every run of slashes merged into one.
pub fn merge_slashes(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains("//") {
        return path.into();
    }
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out.into()
}

/// Where Django's `APPEND_SLASH` would send `uri` (path and query), if it were known.
pub fn with_slash(uri: &Uri) -> Option<String> {
    let path = uri.path();
    if path.ends_with('/') {
        return None;
    }
    Some(match uri.query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    })
}

/// The router behind the normalisation; see the module documentation.
#[derive(Clone)]
pub struct NormalizePath {
    inner: Router,
}

impl NormalizePath {
    /// Normalises paths in front of `inner`.
    pub fn new(inner: Router) -> NormalizePath {
        NormalizePath { inner }
    }
}

/// `uri` with its path replaced by `path` (query kept).
fn replace_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

async fn is_known(router: Router, path_and_query: &str) -> bool {
    let Ok(method) = Method::from_bytes(PROBE.as_bytes()) else {
        return false;
    };
    let Ok(probe) = Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(Body::empty())
    else {
        return false;
    };
    match router.oneshot(probe).await {
        Ok(response) => response.status() != StatusCode::NOT_FOUND,
        Err(never) => match never {},
    }
}

impl Service<Request<Body>> for NormalizePath {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let router = self.inner.clone();
        Box::pin(async move {
            let merged = merge_slashes(request.uri().path()).into_owned();
            if merged != request.uri().path()
                && let Some(uri) = replace_path(request.uri(), &merged)
            {
                *request.uri_mut() = uri;
            }
            let uri = request.uri().clone();
            let response = router.clone().oneshot(request).await?;
            if response.status() != StatusCode::NOT_FOUND {
                return Ok(response);
            }
            let Some(target) = with_slash(&uri) else {
                return Ok(response);
            };
            if is_known(
                router.clone(),
                uri.path_and_query().map_or("", |p| p.as_str()),
            )
            .await
                || !is_known(router, &target).await
            {
                return Ok(response);
            }
            let Ok(location) = HeaderValue::from_str(&target) else {
                return Ok(response);
            };
            let mut redirect = Response::new(Body::empty());
            *redirect.status_mut() = StatusCode::MOVED_PERMANENTLY;
            redirect.headers_mut().insert(header::LOCATION, location);
            Ok(redirect)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};

    #[test]
    fn slashes_merge() {
        assert_eq!(merge_slashes("//RPC2"), "/RPC2");
        assert_eq!(merge_slashes("/api//v0.2///jobs/"), "/api/v0.2/jobs/");
        assert_eq!(merge_slashes("/api/v0.2/jobs/"), "/api/v0.2/jobs/");
    }

    #[test]
    fn the_slash_form_keeps_the_query() {
        let uri: Uri = "/api/v0.2/jobs/4?limit=1".parse().unwrap();
        assert_eq!(
            with_slash(&uri).as_deref(),
            Some("/api/v0.2/jobs/4/?limit=1")
        );
        assert_eq!(with_slash(&"/api/v0.2/jobs/".parse().unwrap()), None);
    }

    fn app() -> NormalizePath {
        NormalizePath::new(
            Router::new()
                .route("/RPC2", post(|| async { "rpc" }))
                .route("/jobs/{id}/", get(|| async { "job" }))
                .route("/results/{id}/csv", get(|| async { StatusCode::NOT_FOUND })),
        )
    }

    async fn send(method: &str, uri: &str) -> Response<Body> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        app().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn double_slashes_reach_the_route() {
        assert_eq!(send("POST", "//RPC2").await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_known_path_without_its_slash_is_redirected() {
        let r = send("GET", "/jobs/4?x=1").await;
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()[header::LOCATION], "/jobs/4/?x=1");
        assert_eq!(send("GET", "/jobs/4/").await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_paths_and_handler_404s_stay_404() {
        assert_eq!(
            send("GET", "/nothing").await.status(),
            StatusCode::NOT_FOUND
        );
        // The route exists without a slash: its own 404 is the answer.
        assert_eq!(
            send("GET", "/results/4/csv").await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
