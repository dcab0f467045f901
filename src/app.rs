//! Wiring: [`App::build`] opens what the appliance's services share (store, device-type
//! templates), and [`App::run`] runs the services until the `shutdown` future it is given
//! completes, so tests can stop it without signals (mini-redis style). `cli::serve` wires
//! the real signals (SIGTERM from systemd, SIGINT from Ctrl-C).

use std::future::Future;
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
}

impl App {
    /// Creates the data directory and opens (migrating) the database, off the runtime
    /// threads.
    pub async fn build(config: Config) -> anyhow::Result<App> {
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
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
            let mut store =
                Store::open(&db).with_context(|| format!("opening database {}", db.display()))?;
            // The appliance is its own worker; clients list it even before `serve` runs.
            store
                .ensure_worker(&instance)
                .with_context(|| format!("registering the appliance's worker `{instance}`"))?;
            Ok((store, dirs))
        })
        .await
        .context("opening the database")??;
        let templates = Templates::from_dirs(template_dirs).with_builtin();
        Ok(App {
            config: Arc::new(config),
            store: AsyncStore::new(store),
            templates: AsyncTemplates::new(templates),
            events: Bus::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
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
            server_ip: self.config.tftp.server_ip,
        }
    }

    /// Serves until `shutdown` completes, then stops cleanly: running jobs are canceled
    /// (their boards powered off) and every task is awaited.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let dispatcher = Dispatcher::new(
            self.dispatcher_config(),
            self.store.clone(),
            self.templates.clone(),
        );
        self.run_with(Arc::new(dispatcher), shutdown).await
    }

    /// [`App::run`] with another job runner (benchmarks and tests put a fake at the
    /// dispatcher boundary).
    pub async fn run_with(
        self,
        runner: Arc<dyn JobRunner>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let version = self.store.call(|s| s.schema_version()).await?;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();

        // TFTP: boards fetch kernels from here.
        let tftp_root = self.config.tftp.root.clone();
        tokio::fs::create_dir_all(&tftp_root)
            .await
            .with_context(|| format!("creating the TFTP root {}", tftp_root.display()))?;
        let tftp_listen = self.config.tftp.listen;
        match tftp::Server::bind(tftp_listen, &tftp_root).await {
            Ok(server) => {
                tracing::info!(listen = %tftp_listen, root = %tftp_root.display(), "TFTP server listening");
                let stop = stop.clone();
                tracker.spawn(async move {
                    if let Err(err) = server.run(stop.cancelled_owned()).await {
                        tracing::error!(error = %err, "the TFTP server stopped");
                    }
                });
            }
            Err(err) if !self.config.tftp.listen_explicit => tracing::warn!(
                listen = %tftp_listen,
                error = %err,
                "TFTP server disabled: cannot bind the default address (port 69 needs root or \
                 CAP_NET_BIND_SERVICE); U-Boot boards cannot network-boot"
            ),
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("binding the TFTP server to {tftp_listen}"));
            }
        }

        // The scheduler loop and its job tasks (which run the dispatcher).
        let scheduler = Scheduler::new(self.clone(), runner, stop.clone());
        tracker.spawn(scheduler.run().instrument(tracing::info_span!("scheduler")));

        // HTTP API: XML-RPC, REST, results exports and the /ws/ event stream on one listener,
        // bound before READY so clients can connect as soon as it is logged.
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .with_context(|| format!("binding the HTTP listener to {}", self.config.listen))?;
        let http_addr = listener
            .local_addr()
            .context("reading the HTTP listener's address")?;
        {
            let app = self.clone();
            let stop = stop.clone();
            tracker.spawn(async move {
                if let Err(err) = crate::api::serve(listener, app, stop.cancelled_owned()).await {
                    tracing::error!(error = %err, "the HTTP server stopped");
                }
            });
        }

        // Events out of the box: the lava-publisher-compatible ZMQ socket and the job
        // notifications. Neither may stop the appliance: a taken port is a warning.
        let publisher = match crate::events::zmq::Publisher::start(&self) {
            Ok(publisher) => Some(publisher),
            Err(err) => {
                tracing::warn!(error = %err, "ZMQ event publisher disabled");
                None
            }
        };
        let notifier = crate::notify::Notifier::start(&self);
        // After the publisher, so the Online `.worker` event reaches its subscribers.
        self.set_own_worker(WorkerState::Online).await;

        tracker.close();
        tracing::info!(
            instance = %self.config.instance,
            listen = %http_addr,
            data_dir = %self.config.data_dir.display(),
            schema_version = version,
            "{READY}"
        );
        shutdown.await;
        tracing::info!("shutting down");
        stop.cancel();
        tracker.wait().await;
        self.set_own_worker(WorkerState::Offline).await;
        drop(notifier);
        drop(publisher);
        // Dropping the last handle closes the connection, which checkpoints the WAL.
        drop(self);
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

    #[tokio::test]
    async fn runs_until_shutdown() {
        // As `lavabox serve` does before it builds the app.
        crate::tls::install_tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_raw(RawConfig::default(), None).unwrap();
        config.apply(&Overrides {
            data_dir: Some(dir.path().join("data")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
        });
        config.events.zmq_port = 0;
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
}
