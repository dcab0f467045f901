//! Job notifications: the job definition's `notify:` block, evaluated when a job starts
//! Running and when it is Finished (as LAVA does), delivered by e-mail, IRC and webhook
//! callbacks, with an optional comparison of results against an earlier job.
//!
//! [`Notifier`] subscribes to the event bus. Each firing runs in its own task, each delivery
//! with a per-attempt timeout and bounded retries ([`Retry`]), so a dead SMTP relay or a
//! hanging webhook costs one background task, never a job's progress or another job's
//! notification. Every delivery target is stored (`Store::add_notifications`) as pending
//! when its firing starts and as sent or failed, with attempts and last error, when its
//! retries end; REST shows them at `/api/v0.2/jobs/<id>/notifications/`. Every delivery
//! outcome is also published on [`Notifier::outcomes`] and logged;
//! for a Finished job it is also written into the job log as an `info` line (while a job runs
//! the dispatcher owns its log, so a Running firing is only logged with `tracing`).
//!
//! Differences from LAVA 2023.01, forced by what lavabox stores:
//! - `token`: API tokens are stored hashed, so their secrets cannot be sent; the `token`
//!   value names one of the submitter's outbound callback secrets instead (set with
//!   `lavabox token secret-set USER NAME`), else it is sent literally.
//! - `dependency_query` is, as in LAVA, a `testjob` condition string (`store::QuerySpec`)
//!   run over every job: the notification fires only if every matched job other than this
//!   one is in the criteria's state (`running`, `finished`) or health (`complete`,
//!   `incomplete`, `canceled`); `all` ignores it. Where LAVA silently sends nothing, lavabox
//!   records each target as failed, not attempted, with the reason (the first job that is not
//!   there yet, or why the condition string is wrong), so REST shows why nothing came.
//! - `compare.query` names a saved query (`store::SavedQuery`, run as its owner sees the
//!   jobs) or gives ad-hoc `{entity: testjob, conditions: {field: value}}` (run as the
//!   submitter sees the jobs, where LAVA applies no visibility); as in LAVA, the job compared
//!   with is the first Complete job other than this one among the query's 5 newest results.
//!   Without `compare.query` lavabox compares with the previous Complete job of the same
//!   submitter and device type (LAVA compares nothing).
//! - `type: regression|progression` compares with the previous Finished job of the same
//!   name, submitter and device type (LAVA compares the job with its own earlier health,
//!   which can never be Complete before it finishes).
//! - IRC users have no stored handle or server: `user:` uses the username as the nick and
//!   needs `server:`; a server may carry a port (`host:port`, default 6667).

pub mod callback;
pub mod compare;
pub mod email;
pub mod irc;
mod retry;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use retry::{Failed, Retry};

use crate::app::App;
use crate::config::{Config, SmtpConfig};
use crate::jobdef::notify::{ChangeType, CompareQuery, Criteria, Notify, NotifyStatus, Recipient};
use crate::model::{JobHealth, JobId, JobState};
use crate::store::{
    AsyncStore, Device, Entity, Job, JobChange, JobFilter, NewNotification, NotificationId,
    NotificationMethod, NotificationStatus, QueryRows, QuerySpec, Store, TestCase, Viewer, joblog,
};

/// How many of a compare query's newest results LAVA looks through (`QUERY_LIMIT`).
const COMPARE_QUERY_LIMIT: u32 = 5;

/// Notification jobs handled at once; more wait (they are not dropped).
const CONCURRENT_FIRINGS: usize = 32;

/// Notifier settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The web UI's base URL for links (`http://host:port`).
    pub base_url: String,
    /// The SMTP relay; without it e-mail deliveries fail (recorded).
    pub smtp: Option<SmtpConfig>,
    /// Retries for each delivery.
    pub retry: Retry,
}

impl Settings {
    /// From the configuration: links use the HTTP listen address (the host's name when it
    /// listens on every address), default retries.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            base_url: base_url(config),
            smtp: config.smtp.clone(),
            retry: Retry::default(),
        }
    }
}

/// The configured `url` (LAVA's site domain), else `http://<listen address>` with an
/// unspecified address replaced by the host name.
fn base_url(config: &Config) -> String {
    if let Some(url) = &config.url {
        return url.clone();
    }
    let port = config.listen.port();
    let host = match config.listen.ip() {
        ip if ip.is_unspecified() => std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned()),
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    if port == 80 {
        format!("http://{host}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// Where a notification went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// An e-mail to this address.
    Email(String),
    /// An IRC message to this nick or channel on a server.
    Irc {
        /// Nick or channel.
        target: String,
        /// Server (`host[:port]`).
        server: String,
    },
    /// A callback to this URL (as written, before placeholders).
    Callback(String),
    /// Nothing was sent: the notify block cannot be evaluated.
    Criteria,
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Email(to) => write!(f, "e-mail to {to}"),
            Channel::Irc { target, server } => write!(f, "IRC message to {target} on {server}"),
            Channel::Callback(url) => write!(f, "callback {url}"),
            Channel::Criteria => f.write_str("notification criteria"),
        }
    }
}

/// The outcome of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The job.
    pub job: JobId,
    /// The state that fired the notification.
    pub state: JobState,
    /// Where it went.
    pub channel: Channel,
    /// Attempts it took, or why it failed after the last one.
    pub result: Result<u32, Failed>,
}

impl Outcome {
    /// The job-log line for this outcome.
    pub fn describe(&self) -> String {
        match &self.result {
            Ok(1) => format!("notification: {} sent", self.channel),
            Ok(n) => format!("notification: {} sent after {n} attempts", self.channel),
            Err(f) if self.channel == Channel::Criteria => {
                format!("notification: not sent: {}", f.error)
            }
            Err(f) => format!(
                "notification: {} failed after {} attempt(s): {}",
                self.channel, f.attempts, f.error
            ),
        }
    }
}

/// Everything a notification says about a job, loaded once per firing.
#[derive(Debug, Clone)]
pub struct JobData {
    /// The job.
    pub job: Job,
    /// Its device, if one was assigned.
    pub device: Option<Device>,
    /// Its metadata.
    pub metadata: Vec<(String, String)>,
    /// Its test results.
    pub results: Vec<TestCase>,
    /// The job log text (only for callbacks that send logs).
    pub log: Option<String>,
    /// The UI base URL.
    pub base_url: String,
    /// The job's page.
    pub job_url: String,
}

/// The running notifier. Dropping it stops listening (firings in flight finish).
#[derive(Debug)]
pub struct Notifier {
    outcomes: broadcast::Sender<Arc<Outcome>>,
    _stop: DropGuard,
}

/// State shared by the firing tasks.
#[derive(Debug)]
struct Shared {
    store: AsyncStore,
    /// Where the job logs are (`store::joblog::log_path`).
    data_dir: PathBuf,
    /// Held while an outcome is appended to a job log: outcomes end concurrently, and a
    /// writer opening the file must not see another's line half-written.
    log_appends: tokio::sync::Mutex<()>,
    settings: Settings,
    http: reqwest::Client,
    outcomes: broadcast::Sender<Arc<Outcome>>,
    /// Jobs whose recipients were already messaged (at Running, for `status: all`), so the
    /// Finished firing only calls the callbacks again, as LAVA does.
    messaged: Mutex<HashSet<JobId>>,
    permits: Semaphore,
}

impl Notifier {
    /// Starts notifying for `app`'s jobs with settings from its configuration.
    pub fn start(app: &App) -> Notifier {
        Notifier::start_with(app, Settings::from_config(app.config()))
    }

    /// Starts notifying for `app`'s jobs with explicit settings (tests shorten retries).
    pub fn start_with(app: &App, settings: Settings) -> Notifier {
        // reqwest's rustls needs the process-wide crypto provider (`crate::tls`) for https
        // callbacks; `lavabox serve` installs it before the app starts.
        let http = reqwest::Client::builder()
            .timeout(settings.retry.timeout)
            .user_agent(concat!("lavabox/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "callback HTTP client without custom settings");
                reqwest::Client::new()
            });
        let (outcomes, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            store: app.store().clone(),
            data_dir: app.config().data_dir.clone(),
            log_appends: tokio::sync::Mutex::new(()),
            settings,
            http,
            outcomes: outcomes.clone(),
            messaged: Mutex::new(HashSet::new()),
            permits: Semaphore::new(CONCURRENT_FIRINGS),
        });
        let stop = CancellationToken::new();
        tokio::spawn(listen(app.events().subscribe(), shared, stop.clone()));
        Notifier {
            outcomes,
            _stop: stop.drop_guard(),
        }
    }

    /// Every delivery outcome from now on.
    pub fn outcomes(&self) -> broadcast::Receiver<Arc<Outcome>> {
        self.outcomes.subscribe()
    }
}

async fn listen(
    mut events: broadcast::Receiver<Arc<crate::events::Published>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let published = tokio::select! {
            _ = stop.cancelled() => break,
            received = events.recv() => match received {
                Ok(p) => p,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "notifier fell behind the bus; notifications may be missed");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if let crate::events::Event::Job(change) = &published.event
            && matches!(change.state, JobState::Running | JobState::Finished)
        {
            tokio::spawn(fire(Arc::clone(&shared), change.clone()));
        }
    }
}

/// What a firing loads from the store in one call.
struct Loaded {
    data: JobData,
    notify: Notify,
    compare_with: Option<Result<Vec<TestCase>, String>>,
    previous_id: Option<JobId>,
    /// Why the `dependency_query` stops an otherwise firing criteria.
    dependency_unmet: Option<String>,
    emails: Vec<(String, Option<String>)>,
    irc: Vec<(String, String)>,
    problems: Vec<String>,
}

async fn fire(shared: Arc<Shared>, change: JobChange) {
    let Ok(_permit) = shared.permits.acquire().await else {
        return;
    };
    let id = change.id;
    let base_url = shared.settings.base_url.clone();
    let loaded = shared.store.call(move |s| load(s, &change, base_url)).await;
    let mut loaded = match loaded {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(job = id.0, error = %err, "cannot load the job to notify");
            return;
        }
    };
    let state = loaded.data.job.state;
    let record = |channel: Channel, row: Option<NotificationId>, result: Result<u32, Failed>| {
        let shared = Arc::clone(&shared);
        async move {
            if let Some(row) = row {
                let status = match &result {
                    Ok(attempts) => NotificationStatus::Sent {
                        attempts: *attempts,
                    },
                    Err(f) => NotificationStatus::Failed {
                        attempts: f.attempts,
                        error: f.error.clone(),
                    },
                };
                if let Err(err) = shared
                    .store
                    .call(move |s| s.finish_notification(row, &status))
                    .await
                {
                    tracing::warn!(job = id.0, error = %err, "cannot record a notification outcome");
                }
            }
            let outcome = Outcome {
                job: id,
                state,
                channel,
                result,
            };
            if outcome.result.is_ok() {
                tracing::info!(job = id.0, "{}", outcome.describe());
            } else {
                tracing::warn!(job = id.0, "{}", outcome.describe());
            }
            if state == JobState::Finished {
                record_in_log(&shared, id, outcome.describe()).await;
            }
            let _ = shared.outcomes.send(Arc::new(outcome));
        }
    };
    let needs_log = loaded.notify.callbacks.iter().any(|c| {
        matches!(
            c.dataset,
            crate::jobdef::notify::Dataset::Logs | crate::jobdef::notify::Dataset::All
        )
    });
    if needs_log {
        loaded.data.log = read_log(&shared.data_dir, id).await;
    }
    let comparison = loaded.compare_with.take().map(|cases| {
        let cases = cases?;
        let previous = loaded.previous_id.ok_or("no earlier job to compare with")?;
        let blacklist = loaded
            .notify
            .compare
            .as_ref()
            .map(|c| c.blacklist.clone())
            .unwrap_or_default();
        Ok(compare::compare(
            previous,
            &cases,
            &loaded.data.results,
            &blacklist,
        ))
    });
    let first = {
        let mut messaged = shared
            .messaged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first_firing(&mut messaged, id, state, &loaded.notify.criteria)
    };
    let data = Arc::new(loaded.data);
    let retry = shared.settings.retry;
    let mut deliveries: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
        Vec::new();
    for problem in loaded.problems {
        deliveries.push(Box::pin(record(
            Channel::Criteria,
            None,
            Err(Failed {
                attempts: 0,
                error: problem,
            }),
        )));
    }
    // Every target is recorded as pending before any delivery starts, so the API shows
    // deliveries still being retried.
    let mut channels = Vec::new();
    if first {
        channels.extend(
            loaded
                .emails
                .iter()
                .map(|(to, _)| Channel::Email(to.clone())),
        );
        channels.extend(loaded.irc.iter().map(|(nick, server)| Channel::Irc {
            target: nick.clone(),
            server: server.clone(),
        }));
    }
    channels.extend(
        loaded
            .notify
            .callbacks
            .iter()
            .map(|cb| Channel::Callback(cb.url.clone())),
    );
    let targets: Vec<NewNotification> = channels.iter().filter_map(target).collect();
    let rows = match shared
        .store
        .call(move |s| s.add_notifications(id, state, &targets))
        .await
    {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!(job = id.0, error = %err, "cannot record the notifications; sending anyway");
            Vec::new()
        }
    };
    let mut rows = rows.into_iter();
    if let Some(reason) = loaded.dependency_unmet {
        // Nothing is sent; every target says why.
        for channel in channels {
            let failed = Failed {
                attempts: 0,
                error: format!("not sent: {reason}"),
            };
            deliveries.push(Box::pin(record(channel, rows.next(), Err(failed))));
        }
        futures_util::future::join_all(deliveries).await;
        return;
    }
    if first {
        let subject = email::subject(&data);
        for (to, name) in loaded.emails {
            let row = rows.next();
            let body = email::body(
                &data,
                loaded.notify.verbosity,
                name.as_deref(),
                comparison.as_ref(),
            );
            let smtp = shared.settings.smtp.clone();
            let subject = subject.clone();
            let record = &record;
            deliveries.push(Box::pin(async move {
                let result = match &smtp {
                    Some(smtp) => {
                        retry
                            .run(|| email::send(smtp, &to, &subject, body.clone(), retry.timeout))
                            .await
                    }
                    None => Err(Failed {
                        attempts: 0,
                        error: "no [smtp] relay configured".into(),
                    }),
                };
                record(Channel::Email(to), row, result).await;
            }));
        }
        for (target, server) in loaded.irc {
            let row = rows.next();
            let text = irc_text(&data);
            let record = &record;
            deliveries.push(Box::pin(async move {
                let result = retry.run(|| irc::send(&server, &target, &text)).await;
                record(Channel::Irc { target, server }, row, result).await;
            }));
        }
    }
    for cb in loaded.notify.callbacks.clone() {
        let row = rows.next();
        let data = Arc::clone(&data);
        let record = &record;
        let http = shared.http.clone();
        deliveries.push(Box::pin(async move {
            let result = retry.run(|| callback::call(&http, &data, &cb)).await;
            record(Channel::Callback(cb.url.clone()), row, result).await;
        }));
    }
    futures_util::future::join_all(deliveries).await;
}

/// Whether this firing of job `id` at `state` is its first, so recipients are messaged
/// (callbacks are called on every firing). Only `status: all` fires twice (Running, then
/// Finished), so only those jobs are remembered, and only until they finish.
fn first_firing(
    messaged: &mut HashSet<JobId>,
    id: JobId,
    state: JobState,
    criteria: &Criteria,
) -> bool {
    let fires_again = state == JobState::Running
        && matches!(
            criteria,
            Criteria::Status {
                status: NotifyStatus::All,
                ..
            }
        );
    if fires_again {
        messaged.insert(id)
    } else {
        !messaged.remove(&id)
    }
}

/// The stored row of a delivery channel.
fn target(channel: &Channel) -> Option<NewNotification> {
    let (method, target) = match channel {
        Channel::Email(to) => (NotificationMethod::Email, to.clone()),
        Channel::Irc { target, server } => (NotificationMethod::Irc, format!("{target}@{server}")),
        Channel::Callback(url) => (NotificationMethod::Callback, url.clone()),
        Channel::Criteria => return None,
    };
    Some(NewNotification { method, target })
}

/// Whether a criteria fires for the job's own transition (LAVA's `notification_criteria`
/// without the `dependency_query`, which [`dependency_unmet`] adds).
fn should_fire(
    criteria: &Criteria,
    state: JobState,
    health: JobHealth,
    previous: Option<JobHealth>,
) -> bool {
    let finished_with = |status: NotifyStatus| {
        state == JobState::Finished
            && match status {
                NotifyStatus::Complete => health == JobHealth::Complete,
                NotifyStatus::Incomplete => health == JobHealth::Incomplete,
                NotifyStatus::Canceled => health == JobHealth::Canceled,
                NotifyStatus::Finished => true,
                NotifyStatus::All => true,
                NotifyStatus::Running => false,
            }
    };
    match criteria {
        // The `dependency_query` is checked against the store after this (`dependency`).
        Criteria::Status { status, .. } => match status {
            NotifyStatus::All => matches!(state, JobState::Running | JobState::Finished),
            NotifyStatus::Running => state == JobState::Running,
            other => finished_with(*other),
        },
        Criteria::Change { status, kind, .. } => {
            finished_with(*status)
                && match kind {
                    ChangeType::Regression => {
                        previous == Some(JobHealth::Complete) && health == JobHealth::Incomplete
                    }
                    ChangeType::Progression => {
                        previous == Some(JobHealth::Incomplete) && health == JobHealth::Complete
                    }
                }
        }
    }
}

fn irc_text(data: &JobData) -> String {
    let job = &data.job;
    let ended = job
        .end_time
        .map(|t| format!(" at {}", crate::pyfmt::py_isoformat(t, ' ')))
        .unwrap_or_default();
    format!(
        "lavabox: job {} ({}) by {} is {}, health {}{ended}. {}",
        job.id.0, job.description, job.submitter, job.state, job.health, data.job_url
    )
}

/// Loads everything a firing needs (runs on the blocking pool).
fn load(
    s: &mut crate::store::Store,
    change: &JobChange,
    base_url: String,
) -> Result<Option<Loaded>, crate::store::Error> {
    let Some(mut job) = s.job(change.id)? else {
        return Ok(None);
    };
    let notify = match crate::jobdef::parse_str(&job.definition) {
        Ok(def) => def.notify,
        Err(_) => None,
    };
    let Some(mut notify) = notify else {
        return Ok(None);
    };
    // LAVA: a `token` naming one of the submitter's tokens sends that token's secret, else
    // the literal. API tokens are stored hashed, so the names come from the submitter's
    // outbound callback secrets (`lavabox token secret-set`).
    for cb in &mut notify.callbacks {
        if let Some(token) = &cb.token
            && let Some(secret) = s.callback_secret(&job.submitter, token)?
        {
            cb.token = Some(secret);
        }
    }
    // The event's transition is what fired; the stored job may have moved on since.
    job.state = change.state;
    job.health = change.health;
    let same_kind = |s: &crate::store::Store,
                     health: Option<JobHealth>|
     -> Result<Option<Job>, crate::store::Error> {
        let filter = JobFilter {
            states: vec![JobState::Finished],
            health,
            submitter: Some(job.submitter.clone()),
            requested_device_types: job.requested_device_type.iter().cloned().collect(),
            limit: Some(200),
            ..JobFilter::default()
        };
        Ok(s.jobs(&filter)?
            .into_iter()
            .find(|j| j.id < job.id && j.description == job.description))
    };
    let previous_health = match notify.criteria {
        Criteria::Change { .. } => same_kind(s, None)?.map(|j| j.health),
        Criteria::Status { .. } => None,
    };
    if !should_fire(&notify.criteria, job.state, job.health, previous_health) {
        return Ok(None);
    }
    let dependency_unmet = match notify.criteria.dependency_query() {
        Some(query) => dependency(s, notify.criteria.status(), query, job.id)?,
        None => None,
    };
    let device = match &job.actual_device {
        Some(hostname) => s.device(hostname)?,
        None => None,
    };
    let metadata = s.job_metadata(job.id)?;
    let results = s.test_cases(job.id, None, 0, None)?;
    let mut problems = Vec::new();
    let (compare_with, previous_id) = match &notify.compare {
        Some(compare) if change.state == JobState::Finished => {
            let previous = match &compare.query {
                None => same_kind(s, Some(JobHealth::Complete))?
                    .map(|j| j.id)
                    .ok_or_else(|| "no earlier Complete job matches".to_owned()),
                Some(query) => compare_job(s, query, &job)?,
            };
            match previous {
                Ok(p) => (Some(Ok(s.test_cases(p, None, 0, None)?)), Some(p)),
                Err(why) => (Some(Err(why)), None),
            }
        }
        _ => (None, None),
    };
    let mut emails = Vec::new();
    let mut irc = Vec::new();
    let recipients = if notify.recipients.is_empty() && notify.callbacks.is_empty() {
        vec![Recipient::Email {
            user: Some(job.submitter.clone()),
            email: None,
        }]
    } else {
        notify.recipients.clone()
    };
    for r in recipients {
        match r {
            Recipient::Email {
                email: Some(email), ..
            } => emails.push((email, None)),
            Recipient::Email {
                user: Some(user), ..
            } => match s.user(&user)? {
                Some(u) if !u.email.is_empty() => emails.push((u.email, Some(u.username))),
                Some(_) => problems.push(format!("user `{user}` has no e-mail address")),
                None => problems.push(format!("'{user}' is not an existing user")),
            },
            Recipient::Email { .. } => {
                problems.push("e-mail recipient without user or address".into())
            }
            Recipient::Irc {
                handle,
                user,
                server,
            } => match (handle.or(user), server) {
                (Some(target), Some(server)) => irc.push((target, server)),
                (None, _) => problems.push("IRC recipient without handle or user".into()),
                (Some(target), None) => {
                    problems.push(format!("IRC recipient {target} has no server"))
                }
            },
        }
    }
    let job_url = format!("{base_url}/scheduler/job/{}", job.id.0);
    Ok(Some(Loaded {
        data: JobData {
            job,
            device,
            metadata,
            results,
            log: None,
            base_url,
            job_url,
        },
        notify,
        compare_with,
        previous_id,
        dependency_unmet,
        emails,
        irc,
        problems,
    }))
}

/// Why `query` (a `testjob` condition string) stops a criteria of `status` from firing for
/// job `this`, or `None` when every other job it matches is where the criteria wants it.
/// Every job counts, whoever may see it, as in LAVA: the answer reveals no job's content.
fn dependency(
    s: &Store,
    status: NotifyStatus,
    query: &str,
    this: JobId,
) -> Result<Option<String>, crate::store::Error> {
    let spec = match QuerySpec::parse(Entity::TestJob.as_str(), query) {
        Ok(spec) => spec,
        Err(err) => return Ok(Some(format!("dependency_query `{query}`: {err}"))),
    };
    let mut jobs = s.query_job_states(spec.conditions())?;
    jobs.retain(|(id, _, _)| *id != this);
    Ok(dependency_unmet(status, &jobs).map(|why| format!("dependency_query `{query}`: {why}")))
}

/// LAVA's dependency rule: with `running` or `finished` every job must be in that state,
/// with `complete`, `incomplete` or `canceled` every job must have that health, and `all`
/// asks nothing. Returns why not, naming the first job (newest first) that is not there.
fn dependency_unmet(status: NotifyStatus, jobs: &[(JobId, JobState, JobHealth)]) -> Option<String> {
    let (wants, ok): (&str, fn(JobState, JobHealth) -> bool) = match status {
        NotifyStatus::All => return None,
        NotifyStatus::Running => ("Running", |s, _| s == JobState::Running),
        NotifyStatus::Finished => ("Finished", |s, _| s == JobState::Finished),
        NotifyStatus::Complete => ("health Complete", |_, h| h == JobHealth::Complete),
        NotifyStatus::Incomplete => ("health Incomplete", |_, h| h == JobHealth::Incomplete),
        NotifyStatus::Canceled => ("health Canceled", |_, h| h == JobHealth::Canceled),
    };
    let mut behind = jobs.iter().filter(|(_, s, h)| !ok(*s, *h));
    let (id, state, health) = behind.next()?;
    let more = match behind.count() {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    Some(format!(
        "job {} is {state} with health {health}, not {wants}{more}",
        id.0
    ))
}

/// The job a compare query compares with: the first Complete job other than `job` among the
/// query's newest [`COMPARE_QUERY_LIMIT`] results, or why there is none.
fn compare_job(
    s: &Store,
    query: &CompareQuery,
    job: &Job,
) -> Result<Result<JobId, String>, crate::store::Error> {
    // A saved query runs as its owner sees the jobs (LAVA: "we use query_owner as user
    // here"), an ad-hoc one as the submitter does.
    let viewer_of = |s: &Store, username: &str| -> Result<Viewer, crate::store::Error> {
        Ok(match s.user(username)? {
            Some(u) if u.is_superuser => Viewer::Anyone,
            Some(u) => Viewer::User(u.id),
            None => Viewer::Anonymous,
        })
    };
    let (described, rows) = match query {
        CompareQuery::Named { username, name } => {
            let described = format!("compare query ~{username}/{name}");
            let Some(saved) = s.saved_query(username, name)? else {
                return Ok(Err(format!("{described} does not exist")));
            };
            let viewer = viewer_of(s, username)?;
            (
                described,
                s.run_saved_query(&saved, viewer, COMPARE_QUERY_LIMIT)?,
            )
        }
        query @ CompareQuery::Conditions { entity, .. } => {
            let text = query.condition_string().unwrap_or_default();
            let described = format!("compare query `{text}`");
            let spec = match QuerySpec::parse(entity, &text) {
                Ok(spec) => spec,
                Err(err) => return Ok(Err(format!("{described}: {err}"))),
            };
            let viewer = viewer_of(s, &job.submitter)?;
            let rows = s.custom_query(
                spec.entity(),
                spec.conditions(),
                viewer,
                COMPARE_QUERY_LIMIT,
            )?;
            (described, rows)
        }
    };
    let QueryRows::Jobs(jobs) = rows else {
        return Ok(Err(format!(
            "{described} does not return jobs; only testjob queries compare"
        )));
    };
    Ok(jobs
        .into_iter()
        .map(|q| q.job)
        .find(|j| j.id != job.id && j.health == JobHealth::Complete)
        .map(|j| j.id)
        .ok_or_else(|| {
            format!(
                "no Complete job other than this one among the newest {COMPARE_QUERY_LIMIT} of {described}"
            )
        }))
}

/// The whole log of job `id`, at the path rule (`store::joblog::log_path`), read on the
/// blocking pool; `None` when there is none (the job never started) or it cannot be read.
async fn read_log(data_dir: &Path, id: JobId) -> Option<String> {
    joblog::read_text_blocking(joblog::log_path(data_dir, id), 0, None)
        .await
        .ok()
        .filter(|text| !text.is_empty())
}

/// Appends an `info` line to a Finished job's log, if it has one (a job that never started
/// has no file, and none is created for it).
async fn record_in_log(shared: &Shared, id: JobId, text: String) {
    let path = joblog::log_path(&shared.data_dir, id);
    let _one_writer = shared.log_appends.lock().await;
    let written = tokio::task::spawn_blocking(move || {
        if !path.is_file() {
            return Ok(None);
        }
        let mut writer = joblog::JobLogWriter::open(&path)?;
        writer
            .append(&joblog::Entry::now(joblog::Level::Info, text))
            .map(Some)
    })
    .await;
    if !matches!(written, Ok(Ok(_))) {
        tracing::warn!(
            job = id.0,
            "cannot record a notification outcome in the job log"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria() {
        use JobHealth::*;
        use JobState::*;
        let status = |s: NotifyStatus| Criteria::Status {
            status: s,
            dependency_query: None,
        };
        let check = |c: &Criteria, state, health, prev, expect: bool| {
            assert_eq!(
                should_fire(c, state, health, prev),
                expect,
                "{c:?} {state} {health} {prev:?}"
            );
        };
        check(&status(NotifyStatus::All), Running, Unknown, None, true);
        check(&status(NotifyStatus::All), Finished, Canceled, None, true);
        check(&status(NotifyStatus::Running), Running, Unknown, None, true);
        check(
            &status(NotifyStatus::Running),
            Finished,
            Complete,
            None,
            false,
        );
        check(
            &status(NotifyStatus::Finished),
            Finished,
            Incomplete,
            None,
            true,
        );
        check(
            &status(NotifyStatus::Finished),
            Running,
            Unknown,
            None,
            false,
        );
        check(
            &status(NotifyStatus::Complete),
            Finished,
            Complete,
            None,
            true,
        );
        check(
            &status(NotifyStatus::Complete),
            Finished,
            Incomplete,
            None,
            false,
        );
        check(
            &status(NotifyStatus::Incomplete),
            Finished,
            Incomplete,
            None,
            true,
        );
        check(
            &status(NotifyStatus::Canceled),
            Finished,
            Canceled,
            None,
            true,
        );
        let regression = Criteria::Change {
            status: NotifyStatus::Incomplete,
            kind: ChangeType::Regression,
            dependency_query: None,
        };
        check(&regression, Finished, Incomplete, Some(Complete), true);
        check(&regression, Finished, Incomplete, Some(Incomplete), false);
        check(&regression, Finished, Incomplete, None, false);
        let progression = Criteria::Change {
            status: NotifyStatus::Complete,
            kind: ChangeType::Progression,
            dependency_query: None,
        };
        check(&progression, Finished, Complete, Some(Incomplete), true);
        check(&progression, Finished, Complete, Some(Complete), false);
        // The dependency is checked separately (`dependency_unmet`).
        let dependent = Criteria::Status {
            status: NotifyStatus::Complete,
            dependency_query: Some("q".into()),
        };
        check(&dependent, Finished, Complete, None, true);
        check(&dependent, Finished, Incomplete, None, false);
    }

    #[test]
    fn recipients_are_messaged_once_and_no_job_is_remembered_after_it_finishes() {
        let status = |s: NotifyStatus| Criteria::Status {
            status: s,
            dependency_query: None,
        };
        let mut messaged = HashSet::new();
        let (all, running) = (status(NotifyStatus::All), status(NotifyStatus::Running));
        assert!(first_firing(
            &mut messaged,
            JobId(1),
            JobState::Running,
            &all
        ));
        assert!(!first_firing(
            &mut messaged,
            JobId(1),
            JobState::Finished,
            &all
        ));
        assert!(messaged.is_empty());
        // A job that fires only at Running is not kept waiting for a Finished firing.
        assert!(first_firing(
            &mut messaged,
            JobId(2),
            JobState::Running,
            &running
        ));
        assert!(messaged.is_empty());
        let finished = status(NotifyStatus::Finished);
        assert!(first_firing(
            &mut messaged,
            JobId(3),
            JobState::Finished,
            &finished
        ));
        assert!(messaged.is_empty());
    }

    #[test]
    fn dependency_follows_lava() {
        use JobHealth::*;
        use JobState::*;
        let jobs = [
            (JobId(9), Finished, Complete),
            (JobId(8), Running, Unknown),
            (JobId(7), Finished, Incomplete),
        ];
        let unmet = |status, jobs: &[(JobId, JobState, JobHealth)]| dependency_unmet(status, jobs);
        // `all` never waits; no other job matched never waits.
        assert_eq!(unmet(NotifyStatus::All, &jobs), None);
        for status in [
            NotifyStatus::Running,
            NotifyStatus::Finished,
            NotifyStatus::Complete,
            NotifyStatus::Incomplete,
            NotifyStatus::Canceled,
        ] {
            assert_eq!(unmet(status, &[]), None, "{status:?}");
        }
        assert_eq!(
            unmet(NotifyStatus::Complete, &jobs).as_deref(),
            Some("job 8 is Running with health Unknown, not health Complete (and 1 more)")
        );
        assert_eq!(
            unmet(NotifyStatus::Finished, &jobs).as_deref(),
            Some("job 8 is Running with health Unknown, not Finished")
        );
        assert_eq!(unmet(NotifyStatus::Finished, &[jobs[0], jobs[2]]), None);
        assert_eq!(unmet(NotifyStatus::Complete, &[jobs[0]]), None);
        assert_eq!(unmet(NotifyStatus::Running, &[jobs[1]]), None);
        assert!(unmet(NotifyStatus::Incomplete, &[jobs[2], jobs[0]]).is_some());
        assert_eq!(
            unmet(NotifyStatus::Canceled, &[(JobId(3), Finished, Canceled)]),
            None
        );
    }
}
