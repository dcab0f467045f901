//! The ZMQ publisher: LAVA's `lava-publisher` `PUB` socket (`tcp://*:5500` by default).
//!
//! Two stages, so neither the bus nor the async runtime ever waits for libzmq:
//! a tokio task subscribes to the [`Bus`], renders each event into a [`Message`] (from the
//! change record alone, no store call) and hands it over a bounded channel to a dedicated thread that owns the socket and
//! sends the five frames. A `PUB` socket drops messages for slow subscribers at its high-water
//! mark instead of blocking, and the hand-over channel drops (and counts) messages when the
//! thread falls behind, so a stalled network costs events, never a job's progress — as LAVA's
//! non-blocking producers do.
//!
//! Rendered messages are also broadcast in-process ([`Publisher::messages`]), which the
//! benchmark and other in-process consumers use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Bus;
use super::message::{Message, Renderer};
use crate::app::App;
use crate::config::Config;

/// Messages waiting for the socket thread before new ones are dropped.
const HANDOVER: usize = 10_000;
/// The socket's send high-water mark per subscriber, as LAVA's publisher.
const SNDHWM: i32 = 10_000;

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be created or configured.
    #[error("cannot create the ZMQ publisher socket")]
    Socket(#[source] ::zmq::Error),
    /// The endpoint could not be bound (port in use, bad address).
    #[error("cannot bind the ZMQ publisher to {endpoint} (is the port in use?)")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// libzmq's error.
        #[source]
        source: ::zmq::Error,
    },
    /// The socket thread could not be started.
    #[error("cannot start the ZMQ publisher thread")]
    Thread(#[source] std::io::Error),
}

/// The address clients are told to subscribe to (`scheduler.get_publisher_event_socket`,
/// `system.master_config`): LAVA's `EVENT_SOCKET` form, `tcp://*:<port>`; lavacli replaces
/// the `*` with the server's host name.
pub fn publisher_address(config: &Config) -> String {
    format!("tcp://*:{}", config.events.zmq_port)
}

/// A running publisher. Dropping it stops the render task and the socket thread and closes
/// the socket.
#[derive(Debug)]
pub struct Publisher {
    /// The endpoint actually bound (the real port when `0` was configured).
    endpoint: String,
    /// Rendered messages, for in-process consumers.
    feed: broadcast::Sender<Arc<Message>>,
    /// Messages dropped because the socket thread was behind.
    dropped: Arc<AtomicU64>,
    /// Stops the render task when the publisher is dropped.
    _stop: DropGuard,
}

impl Publisher {
    /// Binds `tcp://*:<[events] zmq_port>` (port `0`: any free port) and starts publishing
    /// the app's bus. Must be called inside a tokio runtime.
    pub fn start(app: &App) -> Result<Publisher, Error> {
        let port = app.config().events.zmq_port;
        let endpoint = if port == 0 {
            "tcp://*:*".to_owned()
        } else {
            format!("tcp://*:{port}")
        };
        let renderer = Renderer::new(app.config().events.topic.clone());
        Publisher::start_on(app.events(), renderer, &endpoint)
    }

    /// Binds `endpoint` (ZMQ syntax; `tcp://127.0.0.1:*` picks a free port) and publishes
    /// every event of `bus`, rendered by `renderer`.
    pub fn start_on(bus: &Bus, renderer: Renderer, endpoint: &str) -> Result<Publisher, Error> {
        let socket = bind(endpoint)?;
        let bound = socket
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| endpoint.to_owned());
        let (tx, rx) = mpsc::channel::<Arc<Message>>(HANDOVER);
        std::thread::Builder::new()
            .name("zmq-publisher".into())
            .spawn(move || send_loop(socket, rx))
            .map_err(Error::Thread)?;
        let (feed, _) = broadcast::channel(HANDOVER);
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        tokio::spawn(render_loop(
            bus.subscribe(),
            renderer,
            tx,
            feed.clone(),
            Arc::clone(&dropped),
            stop.clone(),
        ));
        tracing::info!(endpoint = %bound, "ZMQ event publisher listening");
        Ok(Publisher {
            endpoint: bound,
            feed,
            dropped,
            _stop: stop.drop_guard(),
        })
    }

    /// The bound endpoint, e.g. `tcp://0.0.0.0:5500`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bound TCP port.
    pub fn port(&self) -> Option<u16> {
        self.endpoint.rsplit(':').next()?.parse().ok()
    }

    /// A subscription to the rendered messages, in publishing order.
    pub fn messages(&self) -> broadcast::Receiver<Arc<Message>> {
        self.feed.subscribe()
    }

    /// How many messages were dropped because the socket thread fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Creates, configures and binds the `PUB` socket.
fn bind(endpoint: &str) -> Result<::zmq::Socket, Error> {
    let context = ::zmq::Context::new();
    let socket = context.socket(::zmq::PUB).map_err(Error::Socket)?;
    // Do not keep unsent messages around at close: shutdown must be prompt.
    socket.set_linger(0).map_err(Error::Socket)?;
    socket.set_sndhwm(SNDHWM).map_err(Error::Socket)?;
    // LAVA's heartbeat settings: dead subscribers are noticed within 15 s.
    socket.set_heartbeat_ivl(5_000).map_err(Error::Socket)?;
    socket
        .set_heartbeat_timeout(15_000)
        .map_err(Error::Socket)?;
    socket.set_heartbeat_ttl(15_000).map_err(Error::Socket)?;
    socket.bind(endpoint).map_err(|source| Error::Bind {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    Ok(socket)
}

/// The socket thread: sends until every sender is gone.
fn send_loop(socket: ::zmq::Socket, mut rx: mpsc::Receiver<Arc<Message>>) {
    while let Some(message) = rx.blocking_recv() {
        if let Err(err) = socket.send_multipart(message.frames(), 0) {
            tracing::warn!(error = %err, topic = %message.topic, "ZMQ send failed");
        }
    }
    tracing::debug!("ZMQ publisher thread stopped");
}

/// The render task: bus event → message → socket thread and in-process feed.
async fn render_loop(
    mut events: broadcast::Receiver<Arc<super::Published>>,
    renderer: Renderer,
    tx: mpsc::Sender<Arc<Message>>,
    feed: broadcast::Sender<Arc<Message>>,
    dropped: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    loop {
        let published = tokio::select! {
            _ = stop.cancelled() => break,
            received = events.recv() => match received {
                Ok(published) => published,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "event publisher fell behind the bus; events lost");
                    dropped.fetch_add(n, Ordering::Relaxed);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        let message = Arc::new(renderer.render(&published));
        if tx.try_send(Arc::clone(&message)).is_err() {
            let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if total.is_power_of_two() {
                tracing::warn!(total, "ZMQ publisher thread behind; messages dropped");
            }
        }
        // No in-process subscriber is not an error.
        let _ = feed.send(message);
    }
}
