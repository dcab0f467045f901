//! pdudaemon's HTTP API, served by lavabox on its own listener (`[hw] pdudaemon_listen`,
//! default `127.0.0.1:16421`: loopback only unless configured, as pdudaemon has no
//! authentication), so dictionaries and scripts written for a pdudaemon point at the
//! appliance unchanged and drive its relays.
//!
//! `GET /power/control/{on,off,reboot}?hostname=H&port=P[&delay=S]` or `?alias=A`: `H` (or
//! `A`) is a device's hostname whose dictionary chooses a native power backend
//! (`lavabox_power: gpio`, `rpi`, `i2c` or `usb_port`); `port` is required with `hostname`,
//! as by pdudaemon, and is otherwise free (the device's dictionary names its line). The answer
//! is pdudaemon's: `200 OK - accepted request` once the request is queued, `500 Invalid
//! request` for anything it cannot do. Requests for one device run in order, one at a time,
//! on that device's queue, as pdudaemon keeps one queue per PDU; a reboot keeps the board
//! off `delay` seconds (default 5) and at least its minimum off-time.
//!
//! Only `hw` picks the backend: this module resolves the hostname to a rendered device
//! configuration and asks [`crate::hw::Boards::power`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::mpsc;

use crate::app::App;
use crate::hw::{Power, PowerState};

/// pdudaemon's answer to a queued request.
pub const ACCEPTED: &str = "OK - accepted request";
/// pdudaemon's answer to anything else.
pub const INVALID: &str = "Invalid request";
/// pdudaemon's default reboot delay.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(5);
/// How long one switch may take.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A queued request.
struct Request {
    command: Command,
    power: Arc<dyn Power>,
    delay: Duration,
}

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Switch on.
    On,
    /// Switch off.
    Off,
    /// Off, the delay, on.
    Reboot,
}

impl Command {
    /// Parses the path's last segment.
    pub fn parse(s: &str) -> Option<Command> {
        match s {
            "on" => Some(Command::On),
            "off" => Some(Command::Off),
            "reboot" => Some(Command::Reboot),
            _ => None,
        }
    }
}

/// The parts of a request's query that matter, checked as pdudaemon checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The device.
    pub hostname: String,
    /// The reboot delay, if given.
    pub delay: Option<Duration>,
}

/// Reads `hostname`+`port` or `alias`, and `delay`, from a query.
pub fn target(query: &HashMap<String, String>) -> Result<Target, String> {
    let hostname = match (query.get("alias"), query.get("hostname"), query.get("port")) {
        (Some(alias), None, _) if !alias.is_empty() => alias.clone(),
        (None, Some(host), Some(port)) if !host.is_empty() && !port.is_empty() => host.clone(),
        (None, Some(_), None) => return Err("hostname without port".into()),
        _ => return Err("needs hostname and port, or alias".into()),
    };
    let delay = match query.get("delay") {
        None => None,
        Some(d) => match d.parse::<f64>() {
            Ok(s) if (0.0..=3600.0).contains(&s) => Some(Duration::from_secs_f64(s)),
            _ => return Err(format!("delay '{d}' is not a number of seconds")),
        },
    };
    Ok(Target { hostname, delay })
}

#[derive(Clone)]
struct Served {
    app: App,
    boards: crate::hw::Boards,
    queues: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Request>>>>,
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let gate = crate::net::http::fitted("pdudaemon API", app.config().http.limits);
    let boards = crate::hw::Boards::from_config(&app.config().hw);
    let served = Served {
        app,
        boards,
        queues: Arc::default(),
    };
    let router = Router::new()
        .route("/power/control/{command}", get(control))
        .with_state(served);
    crate::net::http::serve(listener, router, gate, shutdown).await;
}

async fn control(
    State(served): State<Served>,
    Path(command): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, &'static str) {
    match accept(&served, &command, &query).await {
        Ok(()) => (StatusCode::OK, ACCEPTED),
        Err(reason) => {
            tracing::warn!(command, ?query, reason, "pdudaemon API request refused");
            (StatusCode::INTERNAL_SERVER_ERROR, INVALID)
        }
    }
}

/// Resolves and queues one request.
async fn accept(
    served: &Served,
    command: &str,
    query: &HashMap<String, String>,
) -> Result<(), String> {
    let command = Command::parse(command).ok_or_else(|| format!("unknown command '{command}'"))?;
    let target = target(query)?;
    let power = resolve(served, &target.hostname).await?;
    let delay = target.delay.unwrap_or(DEFAULT_DELAY);
    let mut queues = served.queues.lock().unwrap_or_else(PoisonError::into_inner);
    let request = Request {
        command,
        power,
        delay,
    };
    let request = match queues.get(&target.hostname) {
        Some(queue) => match queue.send(request) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::SendError(r)) => r,
        },
        None => request,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_queue(target.hostname.clone(), rx));
    tx.send(request)
        .map_err(|_| "the queue stopped".to_owned())?;
    queues.insert(target.hostname, tx);
    Ok(())
}

/// The power of device `hostname`, which must choose a native (locally switched) backend.
async fn resolve(served: &Served, hostname: &str) -> Result<Arc<dyn Power>, String> {
    let h = hostname.to_owned();
    let device = served
        .app
        .store()
        .call(move |s| s.device(&h))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no device '{hostname}'"))?;
    let dictionary = device
        .dictionary
        .ok_or_else(|| format!("device '{hostname}' has no dictionary"))?;
    let rendered = served
        .app
        .templates()
        .call(move |t| t.render(&dictionary, &crate::devicetype::Context::new()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let local = matches!(
        crate::hw::power::spec::parse(&rendered.config.raw, Duration::ZERO)?,
        Some(spec) if !matches!(spec.backend, crate::hw::power::spec::Backend::Pdudaemon { .. })
    );
    if !local {
        return Err(format!(
            "device '{hostname}' has no relay of the appliance's (lavabox_power gpio, rpi, i2c or usb_port)"
        ));
    }
    let boards = served.boards.clone();
    tokio::task::spawn_blocking(move || boards.power(&rendered.config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Runs one device's requests in order.
async fn run_queue(hostname: String, mut rx: mpsc::UnboundedReceiver<Request>) {
    let silent = crate::hw::power::Silent;
    while let Some(r) = rx.recv().await {
        let done = match r.command {
            Command::On => r.power.set(PowerState::On, SWITCH_TIMEOUT, &silent).await,
            Command::Off => r.power.set(PowerState::Off, SWITCH_TIMEOUT, &silent).await,
            Command::Reboot => match r.power.set(PowerState::Off, SWITCH_TIMEOUT, &silent).await {
                Ok(()) => {
                    tokio::time::sleep(r.delay.max(r.power.min_off_time())).await;
                    r.power.set(PowerState::On, SWITCH_TIMEOUT, &silent).await
                }
                Err(e) => Err(e),
            },
        };
        match done {
            Ok(()) => {
                tracing::info!(device = %hostname, command = ?r.command, "pdudaemon API request done")
            }
            Err(e) => {
                tracing::error!(device = %hostname, command = ?r.command, error = %e, "pdudaemon API request failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn queries_are_read_as_pdudaemon_reads_them() {
        assert_eq!(
            target(&q(&[("hostname", "b1"), ("port", "3"), ("delay", "2")])),
            Ok(Target {
                hostname: "b1".into(),
                delay: Some(Duration::from_secs(2))
            })
        );
        assert_eq!(target(&q(&[("alias", "b1")])).unwrap().hostname, "b1");
        assert!(target(&q(&[("hostname", "b1")])).is_err());
        assert!(target(&q(&[])).is_err());
        assert!(target(&q(&[("alias", "b"), ("delay", "soon")])).is_err());
        assert_eq!(Command::parse("reboot"), Some(Command::Reboot));
        assert_eq!(Command::parse("cycle"), None);
    }
}
