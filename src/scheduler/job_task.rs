//! One job's life in the scheduler, and the start-up recovery of jobs a crash left open.
//!
//! Each job runs in its own task (tracked by the loop's `TaskTracker`): `start_job` → the
//! [`JobRunner`] (the dispatcher) → `finish_job`. A runner that panics ends the job
//! Incomplete with error type Bug, and the device is freed.
//!
//! At start-up [`recover`] finishes the jobs a crash or power cut left Scheduling, Scheduled,
//! Running or Canceling (Incomplete, Infrastructure, "lavabox restarted"), so no device stays
//! Reserved or Running, and powers their boards off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::dispatcher::{Dispatcher, JobRun};
use crate::model::lifecycle::JobEnd;
use crate::model::{ErrorType, JobId, JobState};
use crate::store::{self, Job, JobFilter};

/// The failure comment of jobs finished at start-up because lavabox stopped under them.
pub const RESTARTED: &str = "lavabox restarted";

/// What runs one job to its end. [`Dispatcher`] is the real one; tests and benchmarks can
/// put a fake at this boundary (the process and hardware boundary) to drive the loop.
pub trait JobRunner: Send + Sync + 'static {
    /// Runs `run` to its end; never fails (every failure is a [`JobEnd`]).
    fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd>;

    /// Powers `device` off (its dictionary's power-off commands, or the backend's safe state):
    /// at start-up, for the boards whose job a crash closed. Never fails; failures are logged.
    fn power_off(&self, device: store::Device) -> BoxFuture<'static, ()>;
}

impl JobRunner for Dispatcher {
    fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd> {
        let dispatcher = self.clone();
        Box::pin(async move { Dispatcher::run(&dispatcher, run).await })
    }

    fn power_off(&self, device: store::Device) -> BoxFuture<'static, ()> {
        let dispatcher = self.clone();
        Box::pin(async move { dispatcher.power_off_device(&device).await })
    }
}

/// Per-job cancel tokens of the jobs that have a task, shared by the loop and the tasks.
/// A std mutex: it is never held across an `.await`.
pub(super) type Running = Arc<Mutex<HashMap<JobId, CancellationToken>>>;

/// Locks the running map; a panic elsewhere while holding it leaves it usable.
pub(super) fn lock(
    running: &Running,
) -> std::sync::MutexGuard<'_, HashMap<JobId, CancellationToken>> {
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a job task needs.
pub(super) struct JobTask {
    /// The appliance.
    pub(super) app: App,
    /// What runs the job.
    pub(super) runner: Arc<dyn JobRunner>,
    /// Jobs with a task; this one removes itself when it ends.
    pub(super) running: Running,
    /// Fired when the job is canceled (or the appliance stops).
    pub(super) cancel: CancellationToken,
}

impl JobTask {
    /// Scheduled → Running → the runner → Finished, publishing each step.
    pub(super) async fn run(self, job: Job, device: store::Device) {
        let id = job.id;
        let started = self
            .app
            .store()
            .call(move |s| {
                let changes = s.start_job(id)?;
                Ok((changes, s.job(id)?))
            })
            .await;
        let end = match started {
            Ok((changes, Some(job))) if job.state == JobState::Running => {
                // Running frees nothing: publish without waking the scheduler.
                self.app.changed_without_wake(&changes);
                tracing::info!("job running");
                self.dispatch(job, device).await
            }
            Ok((changes, _)) => {
                // Canceled between scheduling and start: it never ran.
                self.app.changed(&changes);
                JobEnd::canceled("canceled before it started")
            }
            Err(err) => JobEnd::incomplete(ErrorType::Bug, format!("starting the job: {err}")),
        };
        let finished = self.app.store().call(move |s| s.finish_job(id, &end)).await;
        lock(&self.running).remove(&id);
        match finished {
            Ok(changes) => {
                tracing::info!("job finished");
                self.app.changed(&changes);
            }
            Err(err) => tracing::error!(error = %err, "recording the end of the job"),
        }
    }

    /// Runs the job through the runner in its own task, so a panic becomes a job end.
    async fn dispatch(&self, job: Job, device: store::Device) -> JobEnd {
        let log_path = self.app.config().job_log_path(job.id);
        if let Some(dir) = log_path.parent()
            && let Err(err) = tokio::fs::create_dir_all(dir).await
        {
            return JobEnd::incomplete(
                ErrorType::Infrastructure,
                format!("creating the job directory {}: {err}", dir.display()),
            );
        }
        let run = JobRun {
            job,
            device,
            log_path,
            cancel: self.cancel.clone(),
        };
        match tokio::spawn(self.runner.run(run)).await {
            Ok(end) => end,
            Err(err) => {
                tracing::error!(error = %err, "the dispatcher failed");
                JobEnd::incomplete(ErrorType::Bug, format!("the dispatcher failed: {err}"))
            }
        }
    }
}

/// How long start-up waits for the boards of closed jobs to power off, all together: each
/// command has its own timeout, this bounds a runner that hangs.
const RECOVERY_POWER_OFF: Duration = Duration::from_secs(120);

/// Finishes every job left Scheduling, Scheduled, Running or Canceling by a previous run
/// (Incomplete, Infrastructure, [`RESTARTED`]; Canceling ones end Canceled) and publishes
/// the changes. Their devices go Idle, with health Unknown so a health check runs first, and
/// are powered off through `runner` (concurrently, bounded by a timeout of two minutes): a board
/// a crash left running must not keep running its dead job. Returns how many jobs were
/// finished.
pub async fn recover(app: &App, runner: &dyn JobRunner) -> Result<usize, store::Error> {
    let (all, devices) = app
        .store()
        .call(|s| {
            let filter = JobFilter {
                states: vec![
                    JobState::Scheduling,
                    JobState::Scheduled,
                    JobState::Running,
                    JobState::Canceling,
                ],
                ..JobFilter::default()
            };
            let end = JobEnd::incomplete(ErrorType::Infrastructure, RESTARTED);
            let mut all = Vec::new();
            let mut devices: Vec<store::Device> = Vec::new();
            for job in s.jobs(&filter)? {
                if let Some(hostname) = &job.actual_device
                    && !devices.iter().any(|d| &d.hostname == hostname)
                    && let Some(device) = s.device(hostname)?
                {
                    devices.push(device);
                }
                all.push(s.finish_job(job.id, &end)?);
            }
            Ok((all, devices))
        })
        .await?;
    for changes in &all {
        app.changed(changes);
    }
    power_off_all(runner, devices).await;
    Ok(all.len())
}

/// Powers `devices` off concurrently, for at most [`RECOVERY_POWER_OFF`].
async fn power_off_all(runner: &dyn JobRunner, devices: Vec<store::Device>) {
    if devices.is_empty() {
        return;
    }
    let hostnames: Vec<String> = devices.iter().map(|d| d.hostname.clone()).collect();
    tracing::info!(devices = ?hostnames, "powering off the boards of jobs the restart closed");
    let all = futures_util::future::join_all(devices.into_iter().map(|d| runner.power_off(d)));
    if tokio::time::timeout(RECOVERY_POWER_OFF, all).await.is_err() {
        tracing::warn!(
            devices = ?hostnames,
            "powering off the boards of closed jobs did not finish in {RECOVERY_POWER_OFF:?}"
        );
    }
}
