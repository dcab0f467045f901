//! The scheduler loop: the effectful shell around the pure [`plan()`](super::plan()).
//!
//! [`Scheduler::run`] is event-driven. It sleeps on the App's wake-up `Notify` (a submission,
//! a job ending, a device changing: everything that goes through [`App::changed`]) and, only
//! when a queued job has a queue timeout, on a timer for the earliest deadline. There is no
//! polling interval. Each wake runs one [`pass`](Scheduler::pass):
//!
//! 1. read the rows in one store call ([`StoreRows`]), then, off the store lock, the device
//!    checks from the templates' cache ([`AsyncTemplates::check_devices`]: rendered once per
//!    dictionary or template change), and [`convert`] both into a [`Snapshot`](super::Snapshot);
//! 2. [`plan()`](super::plan()) and [`apply`] every decision through the store, publishing
//!    each [`Changes`](crate::store::Changes) with [`App::changed_without_wake`];
//! 3. reconcile: every Scheduled job without a task gets one ([`JobTask`]); Canceling jobs get
//!    their token fired, or are finished Canceled when they never started.
//!
//! Cancellation is a [`CancellationToken`] per job, a child of the appliance's shutdown token:
//! a job that becomes Canceling on the event bus has its token fired, and shutting down fires
//! them all. At start-up [`recover`] closes what the previous run left open.
//!
//! [`AsyncTemplates::check_devices`]: crate::devicetype::AsyncTemplates::check_devices
//! [`JobTask`]: super::job_task

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::apply::{HEALTH_CHECK_USER, apply};
use super::job_task::{JobRunner, JobTask, Running, lock, recover};
use super::snapshot::{StoreRows, apply_workers, convert};
use crate::app::App;
use crate::events::Event;
use crate::model::{JobId, JobState};
use crate::store::{self, Job};

/// The scheduler loop and its job tasks.
pub struct Scheduler {
    /// The appliance: store, templates, events, wake-up.
    app: App,
    /// What runs each job.
    runner: Arc<dyn JobRunner>,
    /// Fired on shutdown; every job token is a child of it.
    shutdown: CancellationToken,
    /// The job tasks, awaited on shutdown.
    tracker: TaskTracker,
    /// Jobs with a task.
    running: Running,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.running_jobs())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler for `app` running jobs with `runner`, stopping when `shutdown` fires.
    pub fn new(app: App, runner: Arc<dyn JobRunner>, shutdown: CancellationToken) -> Scheduler {
        Scheduler {
            app,
            runner,
            shutdown,
            tracker: TaskTracker::new(),
            running: Arc::default(),
        }
    }

    /// The jobs that currently have a task, sorted.
    pub fn running_jobs(&self) -> Vec<JobId> {
        let mut ids: Vec<JobId> = lock(&self.running).keys().copied().collect();
        ids.sort();
        ids
    }

    /// Recovers from the previous run, then schedules until the shutdown token fires; then
    /// cancels every job (their dispatchers power the boards off) and waits for the tasks.
    pub async fn run(self) {
        let mut events = self.app.events().subscribe();
        match recover(&self.app, self.runner.as_ref()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "finished jobs left over by the previous run"),
            Err(err) => tracing::error!(error = %err, "recovering jobs of the previous run"),
        }
        if let Err(err) = ensure_health_user(&self.app).await {
            tracing::error!(error = %err, "creating the health-check user");
        }
        let wake = self.app.scheduler_wakeup();
        'outer: loop {
            let deadline = self.pass().await;
            let mut timer: Pin<Box<dyn Future<Output = ()> + Send>> = match deadline {
                Some(at) => Box::pin(sleep_until(at)),
                None => Box::pin(std::future::pending()),
            };
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => break 'outer,
                    () = wake.notified() => break,
                    () = &mut timer => break,
                    event = events.recv() => match event {
                        Ok(published) => self.on_event(&published.event),
                        // Missed events: the pass reconciles Canceling jobs from the store.
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "scheduler lagged behind the event bus");
                            break;
                        }
                        Err(RecvError::Closed) => {}
                    },
                }
            }
        }
        tracing::info!(jobs = ?self.running_jobs(), "scheduler stopping; canceling running jobs");
        self.tracker.close();
        // Job tokens are children of the shutdown token, so every job is canceling now.
        self.tracker.wait().await;
        tracing::info!("scheduler stopped");
    }

    /// Fires the token of a job that became Canceling.
    fn on_event(&self, event: &Event) {
        if let Event::Job(change) = event
            && change.state == JobState::Canceling
            && let Some(token) = lock(&self.running).get(&change.id)
        {
            tracing::info!(job = %change.id, "canceling job");
            token.cancel();
        }
    }

    /// One scheduling pass; returns the earliest queue-timeout deadline still ahead.
    pub async fn pass(&self) -> Option<OffsetDateTime> {
        // One store call reads the rows; the device checks come after it, off the store lock,
        // from the templates' cache (a device is rendered again only when its dictionary or a
        // template it reads changed).
        let rows = match self.app.store().call(StoreRows::load).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::error!(error = %err, "reading the scheduler snapshot");
                return None;
            }
        };
        let dictionaries = rows
            .raw
            .devices
            .iter()
            .map(|slot| slot.device.dictionary.clone())
            .collect();
        let checks = match self.app.templates().check_devices(dictionaries).await {
            Ok(checks) => checks,
            Err(err) => {
                tracing::error!(error = %err, "checking the device dictionaries");
                return None;
            }
        };
        let now = OffsetDateTime::now_utc();
        let mut converted = convert(&rows.raw, &rows.people, &checks, now);
        apply_workers(
            &mut converted.snapshot,
            &rows.workers,
            &self.app.config().instance,
        );
        let decisions = super::plan(&converted.snapshot, now);
        let deadline = converted
            .snapshot
            .jobs
            .iter()
            .filter_map(|j| j.queue_deadline)
            .filter(|d| *d >= now)
            .min();
        let known: HashSet<JobId> = lock(&self.running).keys().copied().collect();
        let unchecked = converted.unchecked_unknown();
        let health_checks = converted.health_checks;
        let applied = self
            .app
            .store()
            .call(move |s| Ok(apply(s, &decisions, &health_checks, &unchecked, &known)))
            .await;
        let applied = match applied {
            Ok(a) => a,
            Err(err) => {
                tracing::error!(error = %err, "applying scheduling decisions");
                return deadline;
            }
        };
        // Published without waking this loop: the pass already acted on its own changes, and
        // a second pass would only hold the store while the new jobs try to start.
        for changes in &applied.changes {
            self.app.changed_without_wake(changes);
        }
        for id in applied.canceling {
            if let Some(token) = lock(&self.running).get(&id) {
                token.cancel();
            }
        }
        for (job, device) in applied.to_start {
            self.spawn_job(job, device);
        }
        deadline
    }

    /// Starts the task that runs one Scheduled job.
    fn spawn_job(&self, job: Job, device: store::Device) {
        let id = job.id;
        let token = self.shutdown.child_token();
        lock(&self.running).insert(id, token.clone());
        let span = tracing::info_span!("job", job_id = %id, device = %device.hostname);
        let task = JobTask {
            app: self.app.clone(),
            runner: Arc::clone(&self.runner),
            running: Arc::clone(&self.running),
            cancel: token,
        };
        self.tracker
            .spawn(async move { task.run(job, device).await }.instrument(span));
    }
}

/// Sleeps until the wall-clock time `at`.
async fn sleep_until(at: OffsetDateTime) {
    let left = at - OffsetDateTime::now_utc();
    // A little past the deadline: plan() cancels jobs whose deadline is strictly before now.
    let left = std::time::Duration::try_from(left).unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(1)).await;
}

/// Creates the health-check submitter if it does not exist yet.
async fn ensure_health_user(app: &App) -> Result<(), store::Error> {
    app.store()
        .call(|s| {
            if s.user(HEALTH_CHECK_USER)?.is_none() {
                s.create_user(&store::NewUser::named(HEALTH_CHECK_USER))?;
            }
            Ok(())
        })
        .await
}
