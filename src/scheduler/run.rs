//! The scheduler loop: the effectful shell around the pure [`plan()`](super::plan()).
//!
//! [`Scheduler::run`] is event-driven. It sleeps on the App's wake-up `Notify` (a submission,
//! a job ending, a device changing: everything that goes through [`App::changed`]) and, only
//! when a queued job has a queue timeout, on a timer for the earliest deadline. There is no
//! polling interval. Each wake runs one [`pass`](Scheduler::pass):
//!
//! 1. load a [`SchedulerSnapshot`] and convert it ([`convert`]) into a [`Snapshot`]: device
//!    dictionaries are rendered (an invalid one becomes `config_error`, hence MarkBad) and the
//!    health check is looked up under the template the dictionary extends;
//! 2. [`plan()`](super::plan()) and apply every [`Decision`] through the store, publishing each
//!    [`Changes`] with [`App::changed`];
//! 3. reconcile: every Scheduled job without a task gets one; Canceling jobs get their token
//!    fired, or are finished Canceled when they never started.
//!
//! Each job runs in its own task (tracked by a [`TaskTracker`]): `start_job` → the
//! [`JobRunner`] (the dispatcher) → `finish_job`. A runner that panics ends the job
//! Incomplete with error type Bug, and the device is freed. Cancellation is a
//! [`CancellationToken`] per job, a child of the appliance's shutdown token: a job that becomes
//! Canceling on the event bus has its token fired, and shutting down fires them all.
//!
//! At start-up [`recover`] finishes the jobs a crash or power cut left Scheduling, Scheduled,
//! Running or Canceling (Incomplete, Infrastructure, "lavabox restarted"), so no device stays
//! Reserved or Running.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::{
    Access, CancelTarget, Decision, Device, DeviceOrder, GroupMember, HealthCheckState, JobKind,
    QueuedJob, Snapshot, Submitter, Worker,
};
use crate::app::App;
use crate::devicetype::{Context, Templates, extends};
use crate::dispatcher::{Dispatcher, JobRun};
use crate::events::Event;
use crate::model::UserId;
use crate::model::lifecycle::JobEnd;
use crate::model::{DeviceHealth, DeviceState, ErrorType, GroupId, JobId, JobState};
use crate::store::{
    self, Changes, HealthDenominator, Job, JobFilter, NewJob, SchedulerSnapshot, Store,
};

/// The user health-check jobs are submitted as (LAVA's `lava-health`).
pub const HEALTH_CHECK_USER: &str = "lava-health";

/// The failure comment of jobs finished at start-up because lavabox stopped under them.
pub const RESTARTED: &str = "lavabox restarted";

/// The worker name of devices without one: the appliance itself.
const LOCAL_WORKER: &str = "lavabox";

/// What runs one job to its end. [`Dispatcher`] is the real one; tests and benchmarks can
/// put a fake at this boundary (the process and hardware boundary) to drive the loop.
pub trait JobRunner: Send + Sync + 'static {
    /// Runs `run` to its end; never fails (every failure is a [`JobEnd`]).
    fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd>;
}

impl JobRunner for Dispatcher {
    fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd> {
        let dispatcher = self.clone();
        Box::pin(async move { Dispatcher::run(&dispatcher, run).await })
    }
}

/// Per-job cancel tokens of the jobs that have a task, shared by the loop and the tasks.
/// A std mutex: it is never held across an `.await`.
type Running = Arc<Mutex<HashMap<JobId, CancellationToken>>>;

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
        match recover(&self.app).await {
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
        let templates = self.app.templates().clone();
        let instance = self.app.config().instance.clone();
        let loaded = self
            .app
            .store()
            .call(move |s| {
                let now = OffsetDateTime::now_utc();
                let raw = s.scheduler_snapshot()?;
                let people = People::load(s, &raw)?;
                let stored_workers = s.workers()?;
                let mut converted = convert(&raw, &people, &templates, now);
                apply_workers(&mut converted.snapshot, &stored_workers, &instance);
                Ok(converted)
            })
            .await;
        let converted = match loaded {
            Ok(c) => c,
            Err(err) => {
                tracing::error!(error = %err, "reading the scheduler snapshot");
                return None;
            }
        };
        let now = OffsetDateTime::now_utc();
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
            self.app.events().publish(changes);
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

/// What a job task needs.
struct JobTask {
    app: App,
    runner: Arc<dyn JobRunner>,
    running: Running,
    cancel: CancellationToken,
}

impl JobTask {
    /// Scheduled → Running → the runner → Finished, publishing each step.
    async fn run(self, job: Job, device: store::Device) {
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
                self.app.events().publish(&changes);
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

/// Locks the running map; a panic elsewhere while holding it leaves it usable.
fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<JobId, CancellationToken>> {
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sleeps until the wall-clock time `at`.
async fn sleep_until(at: OffsetDateTime) {
    let left = at - OffsetDateTime::now_utc();
    // A little past the deadline: plan() cancels jobs whose deadline is strictly before now.
    let left = std::time::Duration::try_from(left).unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(1)).await;
}

/// Finishes every job left Scheduling, Scheduled, Running or Canceling by a previous run
/// (Incomplete, Infrastructure, [`RESTARTED`]; Canceling ones end Canceled) and publishes
/// the changes. Their devices go Idle, with health Unknown so a health check runs first.
/// Returns how many jobs were finished.
pub async fn recover(app: &App) -> Result<usize, store::Error> {
    let all = app
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
            s.jobs(&filter)?
                .into_iter()
                .map(|job| s.finish_job(job.id, &end))
                .collect::<Result<Vec<Changes>, _>>()
        })
        .await?;
    for changes in &all {
        app.changed(changes);
    }
    Ok(all.len())
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

/// Users and groups the conversion needs, read in the same store call as the snapshot.
#[derive(Debug, Default)]
pub struct People {
    /// Submitters by username.
    pub submitters: HashMap<String, Submitter>,
    /// User ids by username (device owners).
    pub user_ids: HashMap<String, UserId>,
    /// Group ids by name (device owner groups).
    pub group_ids: HashMap<String, GroupId>,
    /// Queued MultiNode sub-jobs: (role, group size, dynamic connection) by job id.
    pub multinode: HashMap<JobId, (String, u32, bool)>,
}

impl People {
    /// Reads what [`convert`] needs about the snapshot's submitters, owners and groups.
    pub fn load(s: &mut Store, raw: &SchedulerSnapshot) -> Result<People, store::Error> {
        let mut people = People::default();
        for user in s.users()? {
            people.user_ids.insert(user.username.clone(), user.id);
        }
        for group in s.groups()? {
            people.group_ids.insert(group.name, group.id);
        }
        let names: BTreeSet<&str> = raw.queued.iter().map(|j| j.submitter.as_str()).collect();
        for name in names {
            let Some(user) = s.user(name)? else { continue };
            let groups = s.user_groups(name)?.into_iter().map(|g| g.id).collect();
            people.submitters.insert(
                name.to_owned(),
                Submitter {
                    user: user.id,
                    groups,
                    is_superuser: user.is_superuser,
                },
            );
        }
        let mut sizes: HashMap<String, u32> = HashMap::new();
        for job in &raw.queued {
            let Some(group) = &job.target_group else {
                continue;
            };
            let size = match sizes.get(group) {
                Some(n) => *n,
                None => {
                    let filter = JobFilter {
                        target_group: Some(group.clone()),
                        ..JobFilter::default()
                    };
                    let n = u32::try_from(s.count_jobs(&filter)?).unwrap_or(u32::MAX);
                    sizes.insert(group.clone(), n);
                    n
                }
            };
            let (role, dynamic) = match s.job(job.id)? {
                Some(full) => multinode_role(&full.definition),
                None => (String::new(), false),
            };
            people.multinode.insert(job.id, (role, size, dynamic));
        }
        Ok(people)
    }
}

/// The role of a MultiNode sub-job and whether it is a dynamic connection (a role with
/// `host_role`, riding on another role's device), from its definition.
pub fn multinode_role(definition: &str) -> (String, bool) {
    let Ok(value) = serde_norway::from_str::<serde_norway::Value>(definition) else {
        return (String::new(), false);
    };
    let multinode = value.get("protocols").and_then(|p| p.get("lava-multinode"));
    let role = multinode
        .and_then(|m| m.get("role"))
        .and_then(|r| r.as_str())
        .unwrap_or_default()
        .to_owned();
    let dynamic = multinode.is_some_and(|m| m.get("host_role").is_some());
    (role, dynamic)
}

/// A converted snapshot plus the health-check definitions of the devices that have one.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    /// What [`plan()`](super::plan()) looks at.
    pub snapshot: Snapshot,
    /// Health-check job definitions by device hostname.
    pub health_checks: HashMap<String, String>,
}

impl Converted {
    /// Devices with health Unknown and no health check: [`plan()`](super::plan()) gives them
    /// user jobs, and applying such an assignment first makes them Good (the store only
    /// schedules user jobs on Good devices).
    pub fn unchecked_unknown(&self) -> HashSet<String> {
        self.snapshot
            .devices
            .iter()
            .filter(|d| {
                d.health == DeviceHealth::Unknown && d.health_check == HealthCheckState::None
            })
            .map(|d| d.hostname.clone())
            .collect()
    }
}

/// Converts the store's snapshot for [`plan()`](super::plan()) at time `now`. Pure apart from
/// reading templates: a device whose dictionary is missing or does not render gets a
/// `config_error`; its health check is `health-checks/<extended template>.yaml`.
pub fn convert(
    raw: &SchedulerSnapshot,
    people: &People,
    templates: &Templates,
    now: OffsetDateTime,
) -> Converted {
    let mut health_checks = HashMap::new();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut devices = Vec::with_capacity(raw.devices.len());
    for slot in &raw.devices {
        let d = &slot.device;
        let worker = d
            .worker_name
            .clone()
            .unwrap_or_else(|| LOCAL_WORKER.to_owned());
        let entry = workers.entry(worker.clone()).or_insert_with(|| Worker {
            hostname: worker.clone(),
            online: true,
            job_limit: 0,
            busy: 0,
        });
        if matches!(d.state, DeviceState::Reserved | DeviceState::Running) {
            entry.busy += 1;
        }
        let (config_error, template) = check_device(templates, d.dictionary.as_deref());
        let device_type = raw.device_types.iter().find(|t| t.name == d.device_type);
        let mut health_check = HealthCheckState::None;
        if let (Some(template), Some(dt)) = (template, device_type)
            && !dt.disable_health_check
        {
            match templates.health_check(&template) {
                Ok(Some(definition)) => {
                    health_checks.insert(d.hostname.clone(), definition);
                    health_check = health_check_due(
                        dt.health_frequency,
                        dt.health_denominator,
                        slot.last_health_check_end,
                        slot.jobs_since_health_check,
                        now,
                    );
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(device = %d.hostname, error = %err, "reading the health check");
                }
            }
        }
        let access = if d.is_public {
            Access::Public
        } else {
            Access::Restricted {
                users: d
                    .owner_user
                    .as_ref()
                    .and_then(|u| people.user_ids.get(u).copied())
                    .into_iter()
                    .collect(),
                groups: d
                    .owner_group
                    .as_ref()
                    .and_then(|g| people.group_ids.get(g).copied())
                    .into_iter()
                    .collect(),
            }
        };
        devices.push(Device {
            hostname: d.hostname.clone(),
            device_type: d.device_type.clone(),
            state: d.state,
            health: d.health,
            tags: d.tags.iter().cloned().collect(),
            access,
            worker,
            health_check,
            config_error,
        });
    }
    let jobs = raw.queued.iter().map(|j| queued_job(j, people)).collect();
    let mut workers: Vec<Worker> = workers.into_values().collect();
    workers.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Converted {
        snapshot: Snapshot {
            jobs,
            devices,
            workers,
            // LAVA tries devices of a type in random order; a fresh seed each pass is as fair.
            device_order: DeviceOrder::Seeded(now.unix_timestamp_nanos() as u64),
        },
        health_checks,
    }
}

/// Applies the stored workers' health and job limit to the snapshot's workers: devices of a
/// worker in Maintenance or Retired get no new jobs. Every worker runs on this box, so its
/// Online/Offline state is informational here (the scheduler only runs while the box does).
/// Devices without a worker belong to the appliance, stored under `instance`.
fn apply_workers(snapshot: &mut Snapshot, stored: &[crate::store::Worker], instance: &str) {
    for w in &mut snapshot.workers {
        let name = if w.hostname == LOCAL_WORKER && !stored.iter().any(|s| s.hostname == w.hostname)
        {
            instance
        } else {
            w.hostname.as_str()
        };
        if let Some(row) = stored.iter().find(|s| s.hostname == name) {
            w.online = row.health.takes_jobs();
            w.job_limit = row.job_limit;
        }
    }
}

/// Whether a dictionary is usable: `(config error, extended template)`.
fn check_device(
    templates: &Templates,
    dictionary: Option<&str>,
) -> (Option<String>, Option<String>) {
    let Some(dictionary) = dictionary else {
        return (Some("no device dictionary".to_owned()), None);
    };
    let Some(template) = extends(dictionary) else {
        return (
            Some("the device dictionary extends no device-type template".to_owned()),
            None,
        );
    };
    match templates.render(dictionary, &Context::new()) {
        Ok(_) => (None, Some(template)),
        Err(err) => (Some(err.to_string()), Some(template)),
    }
}

/// LAVA's health-check frequency rule: due when there was none yet, or `frequency` hours
/// have passed since the last one, or `frequency` jobs ran since.
pub fn health_check_due(
    frequency: u32,
    denominator: HealthDenominator,
    last_end: Option<OffsetDateTime>,
    jobs_since: u64,
    now: OffsetDateTime,
) -> HealthCheckState {
    let Some(last_end) = last_end else {
        return HealthCheckState::Due;
    };
    let due = match denominator {
        HealthDenominator::Hours => now - last_end >= time::Duration::hours(i64::from(frequency)),
        HealthDenominator::Jobs => jobs_since >= u64::from(frequency),
    };
    if due {
        HealthCheckState::Due
    } else {
        HealthCheckState::NotDue
    }
}

/// One queued job as [`plan()`](super::plan()) sees it.
fn queued_job(j: &store::QueuedJob, people: &People) -> QueuedJob {
    let submitter = people
        .submitters
        .get(&j.submitter)
        .cloned()
        .unwrap_or(Submitter {
            // A submitter that vanished: only public devices will take the job.
            user: UserId(-1),
            groups: BTreeSet::new(),
            is_superuser: false,
        });
    let kind = match (&j.target_group, &j.sub_id) {
        (Some(group), Some(sub_id)) => {
            let (role, group_size, dynamic_connection) = people
                .multinode
                .get(&j.id)
                .cloned()
                .unwrap_or((String::new(), 0, false));
            JobKind::MultiNode(GroupMember {
                target_group: group.clone(),
                role,
                sub_id: sub_id
                    .rsplit_once('.')
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0),
                group_size,
                dynamic_connection,
            })
        }
        _ => JobKind::Single,
    };
    QueuedJob {
        id: j.id,
        priority: j.priority,
        submit_time: j.submit_time,
        device_type: j.requested_device_type.clone(),
        tags: j.tags.iter().cloned().collect(),
        submitter,
        kind,
        queue_deadline: j.queue_timeout.map(|t| j.submit_time + t),
    }
}

/// What applying one plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Every store call's changes, in order, to publish.
    pub changes: Vec<Changes>,
    /// Scheduled jobs without a task, with their devices: start them.
    pub to_start: Vec<(Job, store::Device)>,
    /// Canceling jobs that have a task: fire their tokens.
    pub canceling: Vec<JobId>,
}

/// Applies `decisions` through the store (each in its own transaction; a failing one is
/// logged and skipped; a device in `unchecked` is made Good before its first assignment),
/// then reconciles with the jobs that have a task (`known`): Scheduled
/// jobs without one are returned to start; Canceling jobs without one never started and are
/// finished Canceled here.
pub fn apply(
    s: &mut Store,
    decisions: &[Decision],
    health_checks: &HashMap<String, String>,
    unchecked: &HashSet<String>,
    known: &HashSet<JobId>,
) -> Applied {
    let mut applied = Applied::default();
    let mut promoted = HashSet::new();
    let mut promote = |s: &mut Store, applied: &mut Applied, device: &str| {
        if unchecked.contains(device) && promoted.insert(device.to_owned()) {
            match s.set_device_health(device, DeviceHealth::Good) {
                Ok(changes) => push(&mut applied.changes, changes),
                Err(err) => tracing::error!(device, error = %err, "setting device health Good"),
            }
        }
    };
    for decision in decisions {
        match decision {
            Decision::Assign { device, .. } => promote(s, &mut applied, device),
            Decision::AssignGroup { assignments, .. } => {
                for (_, device) in assignments {
                    promote(s, &mut applied, device);
                }
            }
            _ => {}
        }
        let result = match decision {
            Decision::MarkBad { device, reason } => {
                tracing::warn!(device, reason, "device marked Bad");
                s.set_device_health(device, DeviceHealth::Bad)
            }
            Decision::HealthCheck { device } => match health_checks.get(device) {
                Some(definition) => {
                    let mut new = NewJob::new(HEALTH_CHECK_USER, definition.clone());
                    new.description = job_name(definition);
                    s.insert_health_check(device, &new).map(|(job, changes)| {
                        tracing::info!(device, job = %job.id, "health check scheduled");
                        changes
                    })
                }
                None => Ok(Changes::default()),
            },
            Decision::Assign { job, device } => s.schedule_job(*job, device),
            Decision::AssignGroup { assignments, .. } => {
                // Each sub-job in its own transaction: the last one moves the group to
                // Scheduled. A failure leaves the rest Submitted for the next pass.
                let mut result = Ok(Changes::default());
                for (job, device) in assignments {
                    match s.schedule_job(*job, device) {
                        Ok(changes) => push(&mut applied.changes, changes),
                        Err(err) => {
                            result = Err(err);
                            break;
                        }
                    }
                }
                result
            }
            Decision::Hold {
                target_group,
                devices,
            } => {
                tracing::debug!(target_group, ?devices, "devices held for a MultiNode group");
                Ok(Changes::default())
            }
            Decision::CancelQueueTimeout(target) => {
                let id = match target {
                    CancelTarget::Job(id) => Some(*id),
                    CancelTarget::Group { jobs, .. } => jobs.first().copied(),
                };
                match id {
                    Some(id) => {
                        tracing::info!(job = %id, "queue timeout: canceling");
                        s.cancel_job(id)
                    }
                    None => Ok(Changes::default()),
                }
            }
        };
        match result {
            Ok(changes) => push(&mut applied.changes, changes),
            Err(err) => tracing::error!(?decision, error = %err, "applying a scheduling decision"),
        }
    }
    if let Err(err) = reconcile(s, known, &mut applied) {
        tracing::error!(error = %err, "reconciling scheduled and canceling jobs");
    }
    applied
}

/// The reconciliation half of [`apply`].
fn reconcile(
    s: &mut Store,
    known: &HashSet<JobId>,
    applied: &mut Applied,
) -> Result<(), store::Error> {
    let filter = JobFilter {
        states: vec![JobState::Scheduled, JobState::Canceling],
        order: store::JobOrder {
            field: store::JobOrderField::Id,
            descending: false,
        },
        ..JobFilter::default()
    };
    for job in s.jobs(&filter)? {
        match job.state {
            JobState::Canceling if known.contains(&job.id) => applied.canceling.push(job.id),
            JobState::Canceling => {
                let changes =
                    s.finish_job(job.id, &JobEnd::canceled("canceled before it started"))?;
                push(&mut applied.changes, changes);
            }
            JobState::Scheduled if !known.contains(&job.id) => {
                let device = match &job.actual_device {
                    Some(hostname) => s.device(hostname)?,
                    None => None,
                };
                match device {
                    Some(device) => applied.to_start.push((job, device)),
                    None => {
                        // Dynamic-connection MultiNode sub-jobs have no device of their own.
                        let end = JobEnd::incomplete(
                            ErrorType::Configuration,
                            "jobs without a device (MultiNode dynamic connections) are not supported",
                        );
                        push(&mut applied.changes, s.finish_job(job.id, &end)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn push(all: &mut Vec<Changes>, changes: Changes) {
    if !changes.is_empty() {
        all.push(changes);
    }
}

/// The `job_name` of a definition, for the job's description.
fn job_name(definition: &str) -> String {
    serde_norway::from_str::<serde_norway::Value>(definition)
        .ok()
        .and_then(|v| {
            v.get("job_name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{broadcast, mpsc};

    use super::*;
    use crate::config::{Overrides, RawConfig};
    use crate::events::Published;
    use crate::model::JobHealth;
    use crate::store::{NewDevice, NewDeviceType, NewUser};

    const QEMU: &str = "{% extends 'qemu.jinja2' %}\n{% set no_kvm = True %}\n";

    /// What the fake runner does with a job.
    #[derive(Debug, Clone, Copy)]
    enum Script {
        /// Waits for the cancel token, then ends Canceled.
        UntilCanceled,
        /// Panics.
        Panic,
    }

    /// A runner at the dispatcher boundary: reports each call, then follows its script.
    struct FakeRunner {
        script: Script,
        calls: mpsc::UnboundedSender<JobId>,
    }

    impl JobRunner for FakeRunner {
        fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd> {
            let _ = self.calls.send(run.job.id);
            let script = self.script;
            Box::pin(async move {
                match script {
                    Script::UntilCanceled => {
                        run.cancel.cancelled().await;
                        JobEnd::canceled("canceled")
                    }
                    Script::Panic => panic!("fake dispatcher bug"),
                }
            })
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        app: App,
        events: broadcast::Receiver<Arc<Published>>,
        calls: mpsc::UnboundedReceiver<JobId>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    /// An app with user alice and Good devices `hosts` of type qemu (no health check),
    /// whose scheduler runs jobs with a fake runner following `script`.
    async fn fixture(
        hosts: &[&str],
        script: Script,
        seed: impl FnOnce(&mut Store) + Send + 'static,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_raw(RawConfig::default(), None).unwrap();
        config.apply(&Overrides {
            data_dir: Some(dir.path().join("data")),
            listen: None,
        });
        config.template_dirs = vec![];
        let app = App::build(config).await.unwrap();
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        app.store()
            .call(move |s| {
                s.create_user(&NewUser::named("alice"))?;
                let mut dt = NewDeviceType::named("qemu");
                dt.disable_health_check = true;
                s.create_device_type(&dt)?;
                for host in &hosts {
                    let mut new = NewDevice::new(host.clone(), "qemu");
                    new.dictionary = Some(QEMU.to_owned());
                    new.health = DeviceHealth::Good;
                    s.create_device(&new)?;
                }
                seed(s);
                Ok(())
            })
            .await
            .unwrap();
        let events = app.events().subscribe();
        let (tx, calls) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let runner = Arc::new(FakeRunner { script, calls: tx });
        let scheduler = Scheduler::new(app.clone(), runner, stop.clone());
        let task = tokio::spawn(scheduler.run());
        Fixture {
            _dir: dir,
            app,
            events,
            calls,
            stop,
            task,
        }
    }

    use crate::config::Config;

    fn job(device_type: &str) -> NewJob {
        let mut new = NewJob::new("alice", "job_name: test\n");
        new.requested_device_type = Some(device_type.to_owned());
        new
    }

    impl Fixture {
        async fn submit(&self, new: NewJob) -> JobId {
            let job = self
                .app
                .store()
                .call(move |s| s.insert_job(&new))
                .await
                .unwrap();
            self.app.wake_scheduler();
            job.id
        }

        /// The next event matching `want` (a safety-net timeout only).
        async fn until(&mut self, want: impl Fn(&Event) -> bool) -> Event {
            tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    let published = self.events.recv().await.expect("event bus");
                    if want(&published.event) {
                        return published.event.clone();
                    }
                }
            })
            .await
            .expect("timed out waiting for an event")
        }

        async fn job_state(&mut self, id: JobId, state: JobState) -> crate::store::JobChange {
            match self
                .until(|e| matches!(e, Event::Job(j) if j.id == id && j.state == state))
                .await
            {
                Event::Job(j) => j,
                Event::Device(_) | Event::Worker(_) => unreachable!(),
            }
        }

        async fn device_idle(&mut self, host: &str) {
            self.until(
                |e| matches!(e, Event::Device(d) if d.hostname == host && d.state == DeviceState::Idle),
            )
            .await;
        }

        async fn stored(&self, id: JobId) -> Job {
            self.app
                .store()
                .call(move |s| s.job(id))
                .await
                .unwrap()
                .unwrap()
        }

        async fn stop(self) {
            self.stop.cancel();
            tokio::time::timeout(Duration::from_secs(20), self.task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn two_jobs_run_at_once_and_cancel_ends_them() {
        let mut f = fixture(&["q1", "q2"], Script::UntilCanceled, |_| {}).await;
        let a = f.submit(job("qemu")).await;
        let b = f.submit(job("qemu")).await;
        let mut started = vec![f.calls.recv().await.unwrap(), f.calls.recv().await.unwrap()];
        started.sort();
        assert_eq!(
            started,
            vec![a, b],
            "both jobs are in the dispatcher at once"
        );
        let ja = f.stored(a).await;
        let jb = f.stored(b).await;
        assert_eq!((ja.state, jb.state), (JobState::Running, JobState::Running));
        assert_ne!(ja.actual_device, jb.actual_device);
        let changes = f.app.store().call(move |s| s.cancel_job(a)).await.unwrap();
        f.app.changed(&changes);
        let end = f.job_state(a, JobState::Finished).await;
        assert_eq!(end.health, JobHealth::Canceled);
        let device = ja.actual_device.clone().unwrap();
        let d = f
            .app
            .store()
            .call(move |s| s.device(&device))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.state, DeviceState::Idle);
        assert_eq!(f.stored(b).await.state, JobState::Running);
        // Shutdown cancels the other one and waits for it.
        let app = f.app.clone();
        f.stop().await;
        let jb = app.store().call(move |s| s.job(b)).await.unwrap().unwrap();
        assert_eq!(
            (jb.state, jb.health),
            (JobState::Finished, JobHealth::Canceled)
        );
    }

    #[tokio::test]
    async fn a_job_canceled_before_it_starts_never_runs() {
        // Scheduled, then Canceling, while no scheduler ran: recovery finishes it.
        let mut f = fixture(&["q1"], Script::UntilCanceled, |s| {
            let id = s.insert_job(&job("qemu")).unwrap().id;
            s.schedule_job(id, "q1").unwrap();
            s.cancel_job(id).unwrap();
        })
        .await;
        f.device_idle("q1").await;
        let j = f.stored(JobId(1)).await;
        assert_eq!(
            (j.state, j.health),
            (JobState::Finished, JobHealth::Canceled)
        );
        assert!(f.calls.try_recv().is_err());
        f.stop().await;
    }

    #[test]
    fn reconcile_starts_scheduled_jobs_and_finishes_unstarted_canceling_ones() {
        let (_dir, mut s) = crate::store::testutil::store();
        s.create_user(&NewUser::named("alice")).unwrap();
        s.create_device_type(&NewDeviceType::named("qemu")).unwrap();
        for host in ["q1", "q2"] {
            let mut new = NewDevice::new(host, "qemu");
            new.health = DeviceHealth::Good;
            s.create_device(&new).unwrap();
        }
        let a = s.insert_job(&job("qemu")).unwrap().id;
        let b = s.insert_job(&job("qemu")).unwrap().id;
        s.schedule_job(a, "q1").unwrap();
        s.schedule_job(b, "q2").unwrap();
        s.cancel_job(b).unwrap();
        let applied = apply(
            &mut s,
            &[],
            &HashMap::new(),
            &HashSet::new(),
            &HashSet::new(),
        );
        let started: Vec<JobId> = applied.to_start.iter().map(|(j, _)| j.id).collect();
        assert_eq!(started, vec![a]);
        assert_eq!(applied.to_start[0].1.hostname, "q1");
        let jb = s.job(b).unwrap().unwrap();
        assert_eq!(
            (jb.state, jb.health),
            (JobState::Finished, JobHealth::Canceled)
        );
        assert_eq!(s.device("q2").unwrap().unwrap().state, DeviceState::Idle);
        // A job that has a task is left to it; a Canceling one gets its token fired.
        s.cancel_job(a).unwrap();
        let applied = apply(
            &mut s,
            &[],
            &HashMap::new(),
            &HashSet::new(),
            &HashSet::from([a]),
        );
        assert!(applied.to_start.is_empty());
        assert_eq!(applied.canceling, vec![a]);
    }

    #[tokio::test]
    async fn a_panicking_dispatcher_ends_the_job_incomplete_and_frees_the_device() {
        let mut f = fixture(&["q1"], Script::Panic, |_| {}).await;
        let id = f.submit(job("qemu")).await;
        let end = f.job_state(id, JobState::Finished).await;
        assert_eq!(end.health, JobHealth::Incomplete);
        let j = f.stored(id).await;
        assert_eq!(j.error_type, Some(ErrorType::Bug));
        let d = f
            .app
            .store()
            .call(|s| s.device("q1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.state, DeviceState::Idle);
        // Bug is an infrastructure error: the device goes Unknown (no health check: usable).
        assert_eq!(d.health, DeviceHealth::Unknown);
        f.stop().await;
    }

    #[tokio::test]
    async fn restart_finishes_jobs_left_running() {
        let mut f = fixture(&["q1"], Script::UntilCanceled, |s| {
            let id = s.insert_job(&job("qemu")).unwrap().id;
            s.schedule_job(id, "q1").unwrap();
            s.start_job(id).unwrap();
        })
        .await;
        let end = f.job_state(JobId(1), JobState::Finished).await;
        assert_eq!(end.health, JobHealth::Incomplete);
        let j = f.stored(JobId(1)).await;
        assert_eq!(j.error_type, Some(ErrorType::Infrastructure));
        assert_eq!(j.failure_comment.as_deref(), Some(RESTARTED));
        let d = f
            .app
            .store()
            .call(|s| s.device("q1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.state, d.health),
            (DeviceState::Idle, DeviceHealth::Unknown)
        );
        f.stop().await;
    }

    #[tokio::test]
    async fn queue_timeout_fires_on_its_own_timer() {
        let mut f = fixture(&["q1"], Script::UntilCanceled, |_| {}).await;
        // No device of this type: the job waits until its queue timeout.
        f.app
            .store()
            .call(|s| s.create_device_type(&NewDeviceType::named("other")))
            .await
            .unwrap();
        let mut new = job("other");
        new.queue_timeout = Some(Duration::from_millis(300));
        let id = f.submit(new).await;
        let end = f.job_state(id, JobState::Finished).await;
        assert_eq!(end.health, JobHealth::Canceled);
        f.stop().await;
    }

    #[test]
    fn health_check_frequency() {
        let now = OffsetDateTime::now_utc();
        let hours = HealthDenominator::Hours;
        assert_eq!(
            health_check_due(24, hours, None, 0, now),
            HealthCheckState::Due
        );
        let recent = Some(now - time::Duration::hours(1));
        assert_eq!(
            health_check_due(24, hours, recent, 9, now),
            HealthCheckState::NotDue
        );
        let old = Some(now - time::Duration::hours(25));
        assert_eq!(
            health_check_due(24, hours, old, 0, now),
            HealthCheckState::Due
        );
        let jobs = HealthDenominator::Jobs;
        assert_eq!(
            health_check_due(3, jobs, recent, 2, now),
            HealthCheckState::NotDue
        );
        assert_eq!(
            health_check_due(3, jobs, recent, 3, now),
            HealthCheckState::Due
        );
    }

    #[test]
    fn invalid_dictionaries_are_config_errors() {
        let templates = Templates::builtin();
        assert_eq!(
            check_device(&templates, Some(QEMU)),
            (None, Some("qemu".into()))
        );
        assert!(check_device(&templates, None).0.is_some());
        assert!(
            check_device(&templates, Some("{% set x = 1 %}"))
                .0
                .is_some()
        );
        let (err, template) = check_device(&templates, Some("{% extends 'nope.jinja2' %}"));
        assert!(err.is_some());
        assert_eq!(template.as_deref(), Some("nope"));
    }

    #[test]
    fn multinode_roles() {
        let def = "protocols:\n  lava-multinode:\n    role: client\n    host_role: host\n";
        assert_eq!(multinode_role(def), ("client".into(), true));
        assert_eq!(multinode_role("job_name: x"), (String::new(), false));
        assert_eq!(multinode_role(": :"), (String::new(), false));
    }

    #[test]
    fn workers_in_maintenance_take_no_jobs() {
        use crate::store::{Worker as Stored, WorkerHealth, WorkerState};
        let stored = |name: &str, health, job_limit| Stored {
            hostname: name.to_owned(),
            description: None,
            state: WorkerState::Online,
            health,
            last_ping: None,
            job_limit,
            version: None,
            config: None,
            env: None,
            env_dut: None,
        };
        let worker = |name: &str| Worker {
            hostname: name.to_owned(),
            online: true,
            job_limit: 0,
            busy: 0,
        };
        let mut snapshot = Snapshot {
            workers: vec![
                worker("a"),
                worker("b"),
                worker(LOCAL_WORKER),
                worker("unknown"),
            ],
            ..Snapshot::default()
        };
        let rows = [
            stored("a", WorkerHealth::Maintenance, 0),
            stored("b", WorkerHealth::Active, 2),
            stored("box", WorkerHealth::Retired, 0),
        ];
        apply_workers(&mut snapshot, &rows, "box");
        let online: Vec<(&str, bool, u32)> = snapshot
            .workers
            .iter()
            .map(|w| (w.hostname.as_str(), w.online, w.job_limit))
            .collect();
        assert_eq!(
            online,
            vec![
                ("a", false, 0),
                ("b", true, 2),
                // Devices without a worker are the appliance's, stored under the instance.
                (LOCAL_WORKER, false, 0),
                // No row: as before workers were stored, it takes jobs.
                ("unknown", true, 0),
            ]
        );
    }
}
