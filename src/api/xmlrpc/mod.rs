//! LAVA's XML-RPC endpoint: `POST /RPC2` (trailing slash optional).
//!
//! [`codec`] reads and writes the wire format; [`methods`] is the method table. HTTP-level
//! errors (bad `Authorization` header → 400, unknown token → 401) are plain HTTP responses as
//! in LAVA; everything else is a `methodResponse`, faults included, with status 200.

pub mod codec;
pub mod methods;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::api::auth::{self, AuthError, XMLRPC_REALM};
use crate::app::App;

pub use codec::{MethodCall, Value};
pub use methods::Fault;

/// The `/RPC2` routes (state: [`App`]).
pub fn router() -> Router<App> {
    Router::new()
        .route("/RPC2", get(help).post(endpoint))
        .route("/RPC2/", get(help).post(endpoint))
        // axum's own 2 MB default would refuse submissions LAVA accepts (up to 2.5 MiB).
        .layer(DefaultBodyLimit::max(crate::api::MAX_BODY))
}

async fn help() -> Redirect {
    Redirect::to("/api/help/")
}

fn xml(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        )],
        body,
    )
        .into_response()
}

/// Turns an authentication failure into LAVA's HTTP response.
fn auth_failure(err: AuthError) -> Response {
    match err {
        AuthError::Malformed => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
        AuthError::InvalidToken => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, XMLRPC_REALM)],
            err.to_string(),
        )
            .into_response(),
        AuthError::Store(e) => {
            tracing::error!(error = %e, "authentication failed");
            xml(codec::encode_fault(
                -32603,
                "Internal Server Error (contact server administrator for details): database error",
            ))
        }
    }
}

/// A `methodResponse` fault, as every API answers one (HTTP 200).
pub fn fault_response(code: i64, message: &str) -> Response {
    xml(codec::encode_fault(code, message))
}

/// Most characters of a decoding error repeated in its fault (the XML parser's own messages
/// may quote the input).
const DECODE_ERROR_IN_FAULT: usize = 300;

async fn endpoint(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    // LAVA redirects an empty POST to the help page as it does a GET; an XML-RPC client
    // cannot follow that, so it gets the fault of a request that is not XML-RPC.
    if body.iter().all(u8::is_ascii_whitespace) {
        return fault_response(-32700, "parse error. not well formed: empty request body");
    }
    let caller = match auth::basic_caller(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return auth_failure(e),
    };
    let call = match codec::decode_call(&body) {
        Ok(call) => call,
        Err(e) => {
            let mut text = e.to_string();
            if let Some((end, _)) = text.char_indices().nth(DECODE_ERROR_IN_FAULT) {
                text.truncate(end);
                text.push('…');
            }
            return fault_response(-32700, &format!("parse error. not well formed: {text}"));
        }
    };
    // The decoded call holds what is needed; a 2 MiB body is not kept alongside it.
    drop(body);
    let ctx = methods::Ctx { app, caller };
    match methods::dispatch(&ctx, &call.name, call.params).await {
        Ok(v) => xml(codec::encode_response(&v)),
        Err(f) => xml(codec::encode_fault(f.code, &f.message)),
    }
}
