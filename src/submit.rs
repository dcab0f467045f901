//! The one job-submission path shared by XML-RPC and REST: size cap, parse and validate the
//! definition, check device type, devices, tags and visibility groups against the store,
//! insert the job (or all MultiNode sub-jobs atomically), record its metadata, then publish
//! the change and wake the scheduler. Also [`cancel`] and [`resubmit`].
//!
//! Errors are a typed [`SubmitError`] whose `Display` is LAVA's fault string and whose
//! [`SubmitError::code`] is LAVA's fault code / HTTP status.

use crate::access::{self, Caller};
use crate::app::App;
use crate::jobdef::notify::{CompareQuery, Recipient};
use crate::jobdef::{self, JobDefinition};
use crate::model::{DeviceHealth, JobId, JobState};
use crate::pyfmt::py_str_repr;
use crate::store::{self, Changes, Device, Entity, NewJob, QuerySpec, Store, Viewer, Visibility};

/// Why a submission, cancel or resubmit was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No authenticated user.
    #[error("Authentication with user and token required for this API.")]
    AuthRequired,
    /// The definition could not be read at all (size, encoding).
    #[error("Decoding job submission failed: {0}.")]
    Decoding(String),
    /// The definition is not valid YAML or refers to unknown objects (tags).
    #[error("Invalid job definition: {0}.")]
    InvalidDefinition(String),
    /// The definition breaks the schema or a submission rule.
    #[error("Problem with submitted job data: {0}")]
    Problem(String),
    /// No usable device for the job.
    #[error("Device unavailable: {0}")]
    DeviceUnavailable(String),
    /// The job does not exist.
    #[error("Job '{0}' was not found.")]
    JobNotFound(String),
    /// The caller may not see the job.
    #[error("Job '{job}' not available to user '{user}'.")]
    JobHidden {
        /// The job id as given.
        job: String,
        /// The caller's name.
        user: String,
    },
    /// The caller may see but not change the job.
    #[error("Permission denied.")]
    PermissionDenied,
    /// The store failed. The cause is left out of the message, which clients see; the API
    /// that reports the error logs it.
    #[error("Internal Server Error (contact server administrator for details)")]
    Store(#[from] store::Error),
}

impl SubmitError {
    /// LAVA's fault code (also the REST HTTP status).
    pub fn code(&self) -> i64 {
        match self {
            SubmitError::AuthRequired => 401,
            SubmitError::Decoding(_)
            | SubmitError::InvalidDefinition(_)
            | SubmitError::Problem(_)
            | SubmitError::DeviceUnavailable(_) => 400,
            SubmitError::JobNotFound(_) => 404,
            SubmitError::JobHidden { .. } | SubmitError::PermissionDenied => 403,
            SubmitError::Store(_) => -32603,
        }
    }
}

/// What a submission created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A single-node job.
    Single(JobId),
    /// The sub-jobs of a MultiNode group, by sub id (`"12.0"`, `"12.1"`, …).
    MultiNode(Vec<(JobId, String)>),
}

impl Submitted {
    /// Every job id created.
    pub fn ids(&self) -> Vec<JobId> {
        match self {
            Submitted::Single(id) => vec![*id],
            Submitted::MultiNode(subs) => subs.iter().map(|(id, _)| *id).collect(),
        }
    }
}

fn problems_to_error(problems: &[jobdef::Problem]) -> SubmitError {
    let Some(first) = problems.first() else {
        return SubmitError::Problem("invalid job definition".into());
    };
    if first.path.0.is_empty() && first.line <= 1 {
        let msg = first.describe();
        if msg.contains("UTF-8") || msg.contains("bytes") || msg.contains("too large") {
            return SubmitError::Decoding(msg);
        }
    }
    if first.path.0.is_empty() && !first.message.contains("required") {
        return SubmitError::InvalidDefinition(first.describe());
    }
    SubmitError::Problem(format!("{first}"))
}

fn store_visibility(v: &jobdef::Visibility) -> Visibility {
    match v {
        jobdef::Visibility::Public => Visibility::Public,
        jobdef::Visibility::Personal => Visibility::Personal,
        jobdef::Visibility::Group(g) => Visibility::Group(g.clone()),
    }
}

/// Whether `caller` may submit to `device`: the one device-access rule,
/// [`access::may_use_device`].
pub fn may_submit_to(caller: &Caller, device: &Device) -> bool {
    access::may_use_device(caller, device)
}

/// Server-side checks for one (sub-)job needing `count` devices of `device_type` with `tags`.
fn check_devices(
    s: &Store,
    caller: &Caller,
    device_type: &str,
    tags: &[String],
    count: usize,
) -> Result<String, SubmitError> {
    let Some(dt) = s.resolve_device_type(device_type)? else {
        return Err(SubmitError::DeviceUnavailable(format!(
            "Device type '{device_type}' is unavailable."
        )));
    };
    if !dt.display && !caller.is_superuser() {
        return Err(SubmitError::DeviceUnavailable(format!(
            "Device type '{device_type}' is unavailable to user '{}'",
            caller.display_name()
        )));
    }
    let all: Vec<Device> = s
        .devices(false)?
        .into_iter()
        .filter(|d| d.device_type == dt.name && d.health != DeviceHealth::Retired)
        .collect();
    if all.is_empty() {
        return Err(SubmitError::DeviceUnavailable(format!(
            "Device type '{}' is unavailable. Possibly all devices are retired.",
            dt.name
        )));
    }
    let allowed: Vec<&Device> = all.iter().filter(|d| may_submit_to(caller, d)).collect();
    if allowed.is_empty() {
        let names: Vec<String> = all.iter().map(|d| format!("'{}'", d.hostname)).collect();
        return Err(SubmitError::DeviceUnavailable(format!(
            "No devices from [{}] pool are currently available to user {}",
            names.join(", "),
            caller.display_name()
        )));
    }
    if !tags.is_empty() {
        let known: Vec<String> = s.tags()?.into_iter().map(|t| t.name).collect();
        if let Some(missing) = tags.iter().find(|t| !known.contains(t)) {
            return Err(SubmitError::InvalidDefinition(format!(
                "Device tag '{missing}' does not exist in the database."
            )));
        }
        let with_tags = all
            .iter()
            .filter(|d| tags.iter().all(|t| d.tags.contains(t)))
            .count();
        if with_tags == 0 {
            return Err(SubmitError::DeviceUnavailable(format!(
                "No devices of type {} are available which have all of the tags '{}'.",
                dt.name,
                tags.join(", ")
            )));
        }
        let usable = allowed
            .iter()
            .filter(|d| tags.iter().all(|t| d.tags.contains(t)))
            .count();
        if usable < count {
            return Err(SubmitError::DeviceUnavailable(
                "Not enough devices available matching the requested tags.".into(),
            ));
        }
    } else if allowed.len() < count {
        return Err(SubmitError::DeviceUnavailable(format!(
            "Not enough devices of type {} are currently available to user {}",
            dt.name,
            caller.display_name()
        )));
    }
    Ok(dt.name)
}

fn metadata_of(def: &JobDefinition) -> Vec<(String, String)> {
    def.metadata
        .iter()
        .map(|(k, v)| {
            let text = match v.as_str() {
                Some(s) => s.to_owned(),
                None => v.to_yaml().trim_end().to_owned(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// Job definitions parsed and validated at once, by every API (submission and the validation
/// methods): the work is CPU-bound (two cores on a Pi 4 class board) and a 2 MiB definition
/// costs tens of megabytes while it is checked, so more at once would only add memory.
/// Waiting callers queue here (FIFO); requests with large bodies are already limited at the
/// HTTP edge (`api::large`), this also bounds the many small ones.
pub const PARALLEL_PARSES: usize = 4;

static PARSES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PARALLEL_PARSES);

/// Runs `check` over a job definition on the blocking pool once one of the
/// [`PARALLEL_PARSES`] places is free.
pub async fn parse_limited<T: Send + 'static>(
    check: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // The semaphore is never closed, so acquiring cannot fail; were it to, run unlimited
    // rather than refuse the caller.
    let permit = PARSES.acquire().await.ok();
    let out = tokio::task::spawn_blocking(check).await;
    drop(permit);
    out
}

/// Validates and stores one submission by `caller`; returns what was created.
pub async fn submit(
    app: &App,
    caller: &Caller,
    definition: &str,
) -> Result<Submitted, SubmitError> {
    let Some(user) = caller.user.clone() else {
        return Err(SubmitError::AuthRequired);
    };
    if definition.len() > jobdef::MAX_JOB_SIZE {
        return Err(SubmitError::Decoding(format!(
            "the job definition is {} bytes, more than the {} allowed",
            definition.len(),
            jobdef::MAX_JOB_SIZE
        )));
    }
    let text = definition.to_owned();
    // LAVA validates submissions with its job schema in non-strict mode.
    let def = parse_limited(move || jobdef::parse_str_mode(&text, jobdef::Mode::Lenient))
        .await
        .map_err(|e| SubmitError::Store(store::Error::Task(e)))?
        .map_err(|problems| problems_to_error(&problems))?;
    let caller = caller.clone();
    let (submitted, changes) = app
        .store()
        .call(
            move |s| -> Result<Result<(Submitted, Changes), SubmitError>, store::Error> {
                Ok(insert(s, &caller, &user.username, &def))
            },
        )
        .await??;
    app.changed(&changes);
    app.wake_scheduler();
    Ok(submitted)
}

/// LAVA's database checks of the `notify` block: a recipient that names a user names an
/// existing one, and a compare query is an existing, valid test-job query.
fn check_notify(s: &Store, def: &JobDefinition) -> Result<(), SubmitError> {
    let Some(notify) = &def.notify else {
        return Ok(());
    };
    for recipient in &notify.recipients {
        let (Recipient::Email { user, .. } | Recipient::Irc { user, .. }) = recipient;
        if let Some(user) = user
            && s.user(user)?.is_none()
        {
            return Err(SubmitError::Problem(format!(
                "{} is not an existing user in LAVA.",
                py_str_repr(user)
            )));
        }
    }
    let only_testjob = || SubmitError::Problem("Only TestJob queries allowed.".into());
    match notify.compare.as_ref().and_then(|c| c.query.as_ref()) {
        None => Ok(()),
        Some(CompareQuery::Named { username, name }) => match s.saved_query(username, name)? {
            None => Err(SubmitError::Problem(format!(
                "Query ~{username}/{name} does not exist"
            ))),
            Some(query) if query.spec.entity() != Entity::TestJob => Err(only_testjob()),
            Some(_) => Ok(()),
        },
        Some(query @ CompareQuery::Conditions { entity, .. }) => {
            if entity != Entity::TestJob.as_str() {
                return Err(only_testjob());
            }
            let text = query.condition_string().unwrap_or_default();
            QuerySpec::parse(entity, &text)
                .map(drop)
                .map_err(|err| SubmitError::Problem(err.to_string()))
        }
    }
}

fn insert(
    s: &mut Store,
    caller: &Caller,
    submitter: &str,
    def: &JobDefinition,
) -> Result<(Submitted, Changes), SubmitError> {
    check_notify(s, def)?;
    let visibility = store_visibility(&def.visibility);
    if let Visibility::Group(groups) = &visibility {
        let known: Vec<String> = s.groups()?.into_iter().map(|g| g.name).collect();
        if let Some(missing) = groups.iter().find(|g| !known.contains(g)) {
            return Err(SubmitError::Problem(format!(
                "Unknown group '{missing}' in visibility"
            )));
        }
    }
    let metadata = metadata_of(def);
    let queue_timeout = def.timeouts.queue.as_ref().map(|t| t.duration);
    let base = |definition: String, device_type: Option<String>, tags: Vec<String>| NewJob {
        submitter: submitter.to_owned(),
        description: def.job_name.clone(),
        definition,
        original_definition: def.source.clone(),
        priority: def.priority,
        visibility: visibility.clone(),
        requested_device_type: device_type,
        tags,
        health_check: false,
        queue_timeout,
    };
    let mut changes = Changes::default();
    if def.is_multinode() {
        let subs = jobdef::expand_multinode(def);
        let mut new_jobs = Vec::with_capacity(subs.len());
        for sub in &subs {
            let dt = match &sub.device_type {
                Some(dt) => {
                    let count = subs
                        .iter()
                        .filter(|o| o.device_type.as_ref() == Some(dt) && o.tags == sub.tags)
                        .count();
                    Some(check_devices(s, caller, dt, &sub.tags, count)?)
                }
                None => None,
            };
            new_jobs.push(base(sub.definition.to_yaml(), dt, sub.tags.clone()));
        }
        let jobs = s.insert_multinode(&new_jobs, &def.source)?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in &jobs {
            if !metadata.is_empty() {
                s.set_job_metadata(job.id, &metadata)?;
            }
            changes.jobs.push(store::JobChange::of(job));
            out.push((
                job.id,
                job.sub_id.clone().unwrap_or_else(|| job.id.to_string()),
            ));
        }
        return Ok((Submitted::MultiNode(out), changes));
    }
    let Some(device_type) = &def.device_type else {
        return Err(SubmitError::Problem("'device_type' is required".into()));
    };
    let dt = check_devices(s, caller, device_type, &def.tags, 1)?;
    let job = s.insert_job(&base(def.source.clone(), Some(dt), def.tags.clone()))?;
    if !metadata.is_empty() {
        s.set_job_metadata(job.id, &metadata)?;
    }
    changes.jobs.push(store::JobChange::of(&job));
    Ok((Submitted::Single(job.id), changes))
}

/// Finds a job by id (`"12"`) or MultiNode sub id (`"12.1"`), checking visibility.
pub fn find_job(s: &Store, caller: &Caller, id: &str) -> Result<store::Job, SubmitError> {
    let job = if id.contains('.') {
        s.job_by_sub_id(id)?
    } else {
        match id.trim().parse::<i64>() {
            Ok(n) => s.job(JobId(n))?,
            Err(_) => None,
        }
    };
    let job = job.ok_or_else(|| SubmitError::JobNotFound(id.to_owned()))?;
    if !can_view(s, caller, &job)? {
        return Err(SubmitError::JobHidden {
            job: id.to_owned(),
            user: caller.display_name().to_owned(),
        });
    }
    Ok(job)
}

/// Whether `caller` may see `job`.
pub fn can_view(s: &Store, caller: &Caller, job: &store::Job) -> Result<bool, store::Error> {
    match caller.viewer() {
        Viewer::Anyone => Ok(true),
        viewer => s.can_view_job(job.id, viewer),
    }
}

/// Cancels job `id` (the whole MultiNode group) for `caller`. Canceling a job that is
/// already Canceling or Finished does nothing.
pub async fn cancel(app: &App, caller: &Caller, id: &str) -> Result<(), SubmitError> {
    if caller.user.is_none() {
        return Err(SubmitError::AuthRequired);
    }
    let caller = caller.clone();
    let id = id.to_owned();
    let changes = app
        .store()
        .call(
            move |s| -> Result<Result<Changes, SubmitError>, store::Error> {
                Ok((|| {
                    let job = find_job(s, &caller, &id)?;
                    if matches!(job.state, JobState::Canceling | JobState::Finished) {
                        return Ok(Changes::default());
                    }
                    if !caller.is_superuser() && caller.username() != Some(job.submitter.as_str()) {
                        return Err(SubmitError::PermissionDenied);
                    }
                    Ok(s.cancel_job(job.id)?)
                })())
            },
        )
        .await??;
    app.changed(&changes);
    Ok(())
}

/// Submits again the definition of job `id` (the whole MultiNode submission for a sub-job).
pub async fn resubmit(app: &App, caller: &Caller, id: &str) -> Result<Submitted, SubmitError> {
    if caller.user.is_none() {
        return Err(SubmitError::AuthRequired);
    }
    let c = caller.clone();
    let key = id.to_owned();
    let job = app
        .store()
        .call(move |s| Ok(find_job(s, &c, &key)))
        .await??;
    let definition = if job.multinode_definition.is_empty() {
        job.original_definition
    } else {
        job.multinode_definition
    };
    submit(app, caller, &definition).await
}
