//! Wiring: [`App::build`] opens what the appliance's services share (store, device-type
//! templates); [`App::bind`] binds its listeners (HTTP, TFTP, ZMQ) and reports their
//! addresses in a [`Bound`], so a test runs the whole appliance on ephemeral ports; and
//! [`Bound::run`] (or [`App::run`], both at once) runs the services until the `shutdown`
//! future it is given completes, so tests can stop it without signals (mini-redis style).
//! `cli::serve` wires the real signals (SIGTERM from systemd, SIGINT from Ctrl-C).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::Config;
use crate::devicetype::{AsyncTemplates, TemplateDir, Templates};
use crate::dispatcher::{Dispatcher, DispatcherConfig};
use crate::events::Bus;
use crate::events::WorkerChange;
use crate::scheduler::{JobRunner, Scheduler};
use crate::store::Changes;
use crate::store::{AsyncStore, Store, WorkerState, WorkerStatus};
use crate::tftp;

/// The line logged once the appliance is ready; tests and scripts wait for it.
pub const READY: &str = "lavabox ready";

/// The longest a stop may take once the shutdown signal came: the HTTP listener's grace
/// period (`[http] shutdown_grace_seconds`, at most 60 s) runs inside it, as do the running
/// jobs reaching their safe point (canceled, boards powered off by their own bounded
/// commands). What is still running then is left: the next start's recovery closes those jobs
/// and powers their boards off, as after a crash. systemd's `TimeoutStopSec=90` is well above.
pub const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Everything the appliance's services share.
#[derive(Debug, Clone)]
pub struct App {
    /// The validated configuration.
    config: Arc<Config>,
    /// The database, for async callers.
    store: AsyncStore,
    /// Device-type templates: the data directory, the configured directories, then the
    /// compiled-in ones; rendered off the runtime, device checks cached.
    templates: AsyncTemplates,
    /// Where every state change is published.
    events: Bus,
    /// Wakes the scheduler loop: a submission, a job ending, a device changing.
    wake: Arc<tokio::sync::Notify>,
    /// The ZMQ publisher's port as bound (an ephemeral `zmq_port = 0` becomes the real one),
    /// which clients are told to subscribe to.
    event_port: Arc<std::sync::atomic::AtomicU16>,
}

impl App {
    /// Creates the data directory and opens (migrating) the database, off the runtime
    /// threads. Installs the process's TLS provider first ([`crate::tls`]): the services
    /// built on this `App` make HTTPS clients.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        crate::tls::install_tls_provider();
        let data_dir = config.data_dir.clone();
        let db = config.database_path();
        let instance = config.instance.clone();
        let template_dirs = config.template_dirs.clone();
        let (store, template_dirs) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            // Templates and health checks written through the APIs go to the data directory
            // (never /etc), which is therefore looked up first.
            let dirs: Vec<TemplateDir> =
                std::iter::once(TemplateDir::Admin(data_dir.join("device-types")))
                    .chain(template_dirs.into_iter().map(template_dir))
                    .collect();
            std::fs::create_dir_all(&data_dir).map_err(|source| crate::exitcode::DataDirError {
                path: data_dir.clone(),
                source,
            })?;
            let mut store =
                Store::open(&db).with_context(|| format!("opening database {}", db.display()))?;
            // The appliance is its own worker, and its devices' worker host; clients list it
            // even before `serve` runs.
            store
                .ensure_own_worker(&instance)
                .with_context(|| format!("registering the appliance's worker `{instance}`"))?;
            Ok((store, dirs))
        })
        .await
        .context("opening the database")??;
        let templates = Templates::from_dirs(template_dirs).with_builtin();
        let event_port = config.events.zmq_port;
        Ok(App {
            config: Arc::new(config),
            store: AsyncStore::new(store),
            templates: AsyncTemplates::new(templates),
            events: Bus::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
            event_port: Arc::new(std::sync::atomic::AtomicU16::new(event_port)),
        })
    }

    /// LAVA's `EVENT_SOCKET` (`scheduler.get_publisher_event_socket`,
    /// `system.master_config`): `tcp://*:<port>` with the port the publisher bound.
    pub fn event_socket(&self) -> String {
        format!(
            "tcp://*:{}",
            self.event_port.load(std::sync::atomic::Ordering::Relaxed)
        )
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database handle.
    pub fn store(&self) -> &AsyncStore {
        &self.store
    }

    /// The event bus.
    pub fn events(&self) -> &Bus {
        &self.events
    }

    /// Publishes what a store call changed and wakes the scheduler if anything did. Every
    /// caller that changes job or device state goes through here (or through
    /// [`App::changed_without_wake`]).
    pub fn changed(&self, changes: &Changes) {
        if !changes.is_empty() {
            self.events.publish(changes);
            self.wake_scheduler();
        }
    }

    /// Publishes what a store call changed without waking the scheduler: for the scheduler's
    /// own changes that free nothing (the decisions a pass applied, a job going Running), where
    /// another pass would only hold the store while the new jobs try to start.
    pub fn changed_without_wake(&self, changes: &Changes) {
        if !changes.is_empty() {
            self.events.publish(changes);
        }
    }

    /// Publishes a worker's new state or health (LAVA's `.worker` event) and wakes the
    /// scheduler, whose devices may have become usable or unusable.
    pub fn worker_changed(&self, status: &WorkerStatus) {
        self.events.publish_worker(WorkerChange {
            hostname: status.hostname.clone(),
            state: status.state,
            health: status.health,
        });
        self.wake_scheduler();
    }

    /// Records the appliance's own worker (named after `instance`) as Online or Offline.
    /// Failure is logged, not fatal: the worker row is informational for clients, and the
    /// scheduler treats a missing row as online.
    async fn set_own_worker(&self, state: WorkerState) {
        let name = self.config.instance.clone();
        match self
            .store
            .call(move |s| s.set_worker_running(&name, state, crate::model::LAVA_VERSION))
            .await
        {
            Ok(Some(status)) => self.worker_changed(&status),
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, ?state, "recording the appliance's worker"),
        }
    }

    /// Wakes the scheduler loop (a new job was submitted, a device became usable).
    pub fn wake_scheduler(&self) {
        self.wake.notify_one();
    }

    /// What the scheduler loop waits on.
    pub fn scheduler_wakeup(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }

    /// The device-type templates, for async callers (every read and render on the blocking
    /// pool).
    pub fn templates(&self) -> &AsyncTemplates {
        &self.templates
    }

    /// What the dispatcher needs, from the configuration: the TFTP root, a work directory
    /// under the data directory, and the address boards reach the appliance on.
    pub fn dispatcher_config(&self) -> DispatcherConfig {
        DispatcherConfig {
            tftp_root: self.config.tftp.root.clone(),
            work_dir: self.config.data_dir.join("work"),
            mirror_dir: self.config.data_dir.join("git-mirrors"),
            server_ip: self.config.tftp.server_ip,
        }
    }

    /// Serves until `shutdown` completes, then stops cleanly: running jobs are canceled
    /// (their boards powered off) and every task is awaited.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.bind().await?.run(shutdown).await
    }

    /// [`App::run`] with another job runner (benchmarks and tests put a fake at the
    /// dispatcher boundary).
    pub async fn run_with(
        self,
        runner: Arc<dyn JobRunner>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.bind_with(runner).await?.run(shutdown).await
    }

    /// Binds every listener the appliance serves on (HTTP, TFTP, ZMQ) with the real
    /// dispatcher, without serving yet: [`Bound`] says which addresses were bound (port 0 in
    /// the configuration: any free port), and [`Bound::run`] serves.
    pub async fn bind(self) -> anyhow::Result<Bound> {
        let dispatcher = Dispatcher::new(
            self.dispatcher_config(),
            self.store.clone(),
            self.templates.clone(),
        )
        .with_boards(Arc::new(crate::hw::Boards::from_config(&self.config.hw)));
        self.bind_with(Arc::new(dispatcher)).await
    }

    /// [`App::bind`] with another job runner.
    pub async fn bind_with(self, runner: Arc<dyn JobRunner>) -> anyhow::Result<Bound> {
        // TFTP: boards fetch kernels from here.
        let tftp_root = self.config.tftp.root.clone();
        tokio::fs::create_dir_all(&tftp_root)
            .await
            .with_context(|| format!("creating the TFTP root {}", tftp_root.display()))?;
        let tftp_listen = self.config.tftp.listen;
        let tftp = match tftp::Server::bind(tftp_listen, &tftp_root).await {
            Ok(server) => {
                let addr = server
                    .local_addr()
                    .context("reading the TFTP server's address")?;
                tracing::info!(listen = %addr, root = %tftp_root.display(), "TFTP server listening");
                Some((server, addr))
            }
            Err(err) if !self.config.tftp.listen_explicit => {
                tracing::warn!(
                    listen = %tftp_listen,
                    error = %err,
                    "TFTP server disabled: cannot bind the default address (port 69 needs root or \
                     CAP_NET_BIND_SERVICE); U-Boot boards cannot network-boot"
                );
                None
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("binding the TFTP server to {tftp_listen}"));
            }
        };

        // HTTP API: XML-RPC, REST, results exports and the /ws/ event stream on one listener,
        // bound before READY so clients can connect as soon as it is logged.
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .with_context(|| format!("binding the HTTP listener to {}", self.config.listen))?;
        let http_addr = listener
            .local_addr()
            .context("reading the HTTP listener's address")?;

        // Events out of the box: the lava-publisher-compatible ZMQ socket. It may not stop
        // the appliance: a taken port is a warning.
        let publisher = match crate::events::zmq::Publisher::start(&self) {
            Ok(publisher) => {
                if let Some(port) = publisher.port() {
                    self.event_port
                        .store(port, std::sync::atomic::Ordering::Relaxed);
                }
                Some(publisher)
            }
            Err(err) => {
                tracing::warn!(error = %err, "ZMQ event publisher disabled");
                None
            }
        };
        // pdudaemon's API for the boards' relays (crate::pdudaemon).
        let pdudaemon = bind_pdudaemon(&self.config.hw).await?;
        // The job notifications (off the job's path), listening from now on.
        let notifier = crate::notify::Notifier::start(&self);
        Ok(Bound {
            pdudaemon,
            app: self,
            runner,
            listener,
            http_addr,
            tftp,
            publisher,
            notifier,
        })
    }
}

/// An [`App`] whose listeners are bound but not yet served ([`App::bind`]): tests learn the
/// addresses of a whole appliance on ephemeral ports, then [`Bound::run`] it.
pub struct Bound {
    app: App,
    runner: Arc<dyn JobRunner>,
    listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    tftp: Option<(tftp::Server, SocketAddr)>,
    publisher: Option<crate::events::zmq::Publisher>,
    notifier: crate::notify::Notifier,
    pdudaemon: Option<(tokio::net::TcpListener, SocketAddr)>,
}

/// Binds the served pdudaemon API's listener: a taken default port is a warning, a taken
/// configured one stops start-up.
async fn bind_pdudaemon(
    hw: &crate::config::HwConfig,
) -> anyhow::Result<Option<(tokio::net::TcpListener, SocketAddr)>> {
    let Some(addr) = hw.pdudaemon_listen else {
        return Ok(None);
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            let bound = listener.local_addr()?;
            tracing::info!(listen = %bound, "pdudaemon API listening");
            Ok(Some((listener, bound)))
        }
        Err(err) if !hw.pdudaemon_listen_explicit => {
            tracing::warn!(listen = %addr, error = %err, "pdudaemon API disabled: cannot bind the default address");
            Ok(None)
        }
        Err(err) => Err(err).with_context(|| format!("binding the pdudaemon API to {addr}")),
    }
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("http_addr", &self.http_addr)
            .field("zmq_addr", &self.zmq_addr())
            .field("tftp_addr", &self.tftp_addr())
            .finish_non_exhaustive()
    }
}

impl Bound {
    /// The application the services share.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Where the HTTP API (XML-RPC, REST, results, `/ws/`) listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the ZMQ event publisher listens, if it could bind.
    pub fn zmq_addr(&self) -> Option<SocketAddr> {
        let port = self.publisher.as_ref()?.port()?;
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Where the TFTP server listens, if it could bind.
    pub fn tftp_addr(&self) -> Option<SocketAddr> {
        self.tftp.as_ref().map(|(_, addr)| *addr)
    }

    /// Where the served pdudaemon API listens, if it is on and could bind.
    pub fn pdudaemon_addr(&self) -> Option<SocketAddr> {
        self.pdudaemon.as_ref().map(|(_, addr)| *addr)
    }

    /// Replaces the notifier's settings (tests shorten the callback retries).
    pub fn notify_with(&mut self, settings: crate::notify::Settings) {
        self.notifier = crate::notify::Notifier::start_with(&self.app, settings);
    }

    /// Every notification delivery outcome from now on.
    pub fn notify_outcomes(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::notify::Outcome>> {
        self.notifier.outcomes()
    }

    /// Serves until `shutdown` completes, then stops cleanly: running jobs are canceled
    /// (their boards powered off) and every task is awaited.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Bound {
            app,
            runner,
            listener,
            http_addr,
            tftp,
            publisher,
            notifier,
            pdudaemon,
        } = self;
        let version = app.store.call(|s| s.schema_version()).await?;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();

        if let Some((server, _)) = tftp {
            let stop = stop.clone();
            tracker.spawn(async move {
                if let Err(err) = server.run(stop.cancelled_owned()).await {
                    tracing::error!(error = %err, "the TFTP server stopped");
                }
            });
        }

        // The scheduler loop and its job tasks (which run the dispatcher).
        let scheduler = Scheduler::new(app.clone(), runner, stop.clone());
        tracker.spawn(scheduler.run().instrument(tracing::info_span!("scheduler")));

        {
            let app = app.clone();
            let stop = stop.clone();
            tracker.spawn(async move {
                if let Err(err) = crate::api::serve(listener, app, stop.cancelled_owned()).await {
                    tracing::error!(error = %err, "the HTTP server stopped");
                }
            });
        }

        if let Some((listener, _)) = pdudaemon {
            let app = app.clone();
            let stop = stop.clone();
            tracker.spawn(crate::pdudaemon::serve(
                listener,
                app,
                stop.cancelled_owned(),
            ));
        }

        // After the publisher, so the Online `.worker` event reaches its subscribers.
        app.set_own_worker(WorkerState::Online).await;

        tracker.close();
        tracing::info!(
            instance = %app.config.instance,
            listen = %http_addr,
            data_dir = %app.config.data_dir.display(),
            schema_version = version,
            "{READY}"
        );
        crate::sdnotify::ready(&format!("serving on {http_addr}"));
        shutdown.await;
        tracing::info!("shutting down");
        crate::sdnotify::stopping();
        // Listeners stop accepting at once; requests in flight get the grace period; the
        // scheduler cancels running jobs, which power their boards off.
        stop.cancel();
        if tokio::time::timeout(STOP_DEADLINE, tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                deadline_seconds = STOP_DEADLINE.as_secs(),
                "services still stopping at the stop deadline: leaving them (the next start \
                 recovers their jobs and powers their boards off)"
            );
        }
        app.set_own_worker(WorkerState::Offline).await;
        // Relays, expander outputs and USB ports back to their safe state.
        crate::hw::power_shutdown();
        drop(notifier);
        drop(publisher);
        // Dropping the last handle closes the connection, which checkpoints the WAL.
        drop(app);
        tracing::info!("lavabox stopped");
        Ok(())
    }
}

/// How a configured template directory counts: the package's shipped directories provide
/// templates only, every other one (an admin's) health checks too. Compared by canonical path
/// so `./device-types` in the source tree is recognised.
fn template_dir(dir: std::path::PathBuf) -> TemplateDir {
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let this = canonical(&dir);
    if crate::config::shipped_template_dirs()
        .iter()
        .any(|shipped| canonical(shipped) == this)
    {
        TemplateDir::Shipped(dir)
    } else {
        TemplateDir::Admin(dir)
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, so a
/// signal arriving before the future is first polled is not lost.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, RawConfig};

    /// The default configuration in `dir`, every listener on an ephemeral port.
    fn ephemeral(dir: &tempfile::TempDir) -> Config {
        let mut config = Config::from_raw(RawConfig::default(), None).unwrap();
        config.apply(&Overrides {
            data_dir: Some(dir.path().join("data")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
        });
        config.events.zmq_port = 0;
        config.tftp.listen = "127.0.0.1:0".parse().unwrap();
        config.tftp.listen_explicit = true;
        config
    }

    #[tokio::test]
    async fn runs_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let config = ephemeral(&dir);
        let app = App::build(config).await.unwrap();
        let store = app.store().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        assert_eq!(
            store.call(|s| s.schema_version()).await.unwrap(),
            crate::store::SCHEMA_VERSION
        );
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(dir.path().join("data/lavabox.db").is_file());
    }

    #[tokio::test]
    async fn bind_reports_the_ephemeral_addresses_it_serves_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = ephemeral(&dir);
        let bound = App::build(config).await.unwrap().bind().await.unwrap();
        let http = bound.http_addr();
        assert_ne!(http.port(), 0);
        assert_ne!(bound.zmq_addr().unwrap().port(), 0);
        assert_ne!(bound.tftp_addr().unwrap().port(), 0);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(async {
            let _ = rx.await;
        }));
        // The listener was bound before `run`: a client connects at once.
        let mut stream = tokio::net::TcpStream::connect(http).await.unwrap();
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(
                b"GET /api/v0.2/system/version/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
