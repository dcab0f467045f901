//! The WebSocket form of the event stream, `GET /ws/`, as lava-publisher serves it (and as
//! lavacli ≥ 2020.9 reads it): every event is one text frame holding a JSON array of the
//! five ZMQ strings.
//!
//! Each connection subscribes to the bus and renders for itself; a client that reads too
//! slowly loses the oldest events (logged), never slows the bus.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::broadcast::error::RecvError;

use super::message::Renderer;
use crate::app::App;

/// The `/ws/` route, to merge into the HTTP API router.
pub fn router() -> Router<App> {
    Router::new().route("/ws/", get(upgrade))
}

/// Upgrades the request and streams events until the client goes away.
async fn upgrade(State(app): State<App>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| stream(app, socket))
}

async fn stream(app: App, mut socket: WebSocket) {
    let mut events = app.events().subscribe();
    let renderer = Renderer::new(app.config().events.topic.clone());
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(published) => {
                    let message = renderer.render(&published);
                    if socket.send(WsMessage::Text(message.to_ws_text().into())).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "WebSocket event client fell behind; events lost");
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                // Clients only listen; pings are answered by axum. Close or error: stop.
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
