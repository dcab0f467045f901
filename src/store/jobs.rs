//! Jobs: insertion (single and MultiNode), queries, and LAVA's state machine.
//!
//! Each transition runs in one transaction together with its device side effects, as
//! LAVA's `go_state_*` methods and `Device.testjob_signal` do (see
//! `shared/reference/states.md`). Transitions are monotonic: asking for a state the job
//! has already reached or passed is ignored and reports no change. Every transition
//! returns the [`Changes`] it made so the caller can publish `.testjob` / `.device` events.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use time::OffsetDateTime;

use super::devices::{self, device_id, read_device, set_device_state, tag_id};
use super::error::{Error, Step};
use super::jobcond::{self, JobCond};
use super::users::{group_id, user_id};
use super::{Store, decode, now, opt_ts_from_sql, ts_from_sql, ts_to_sql};
use crate::model::{
    DeviceHealth, DeviceState, ErrorType, JobHealth, JobId, JobState, Priority, UserId,
};

/// Who may see a job (LAVA's `visibility`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Everyone, anonymous users included (LAVA's default).
    #[default]
    Public,
    /// The submitter (and superusers) only.
    Personal,
    /// Members of these groups (and the submitter).
    Group(Vec<String>),
}

impl Visibility {
    fn code(&self) -> i64 {
        match self {
            Visibility::Personal => 0,
            Visibility::Public => 1,
            Visibility::Group(_) => 2,
        }
    }
}

/// What [`Store::insert_job`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Username of the submitter (must exist).
    pub submitter: String,
    /// The job name.
    pub description: String,
    /// The definition the dispatcher runs.
    pub definition: String,
    /// The text as submitted.
    pub original_definition: String,
    /// 0–100.
    pub priority: Priority,
    /// Who may see it.
    pub visibility: Visibility,
    /// Device type name or alias; `None` for jobs without a device.
    pub requested_device_type: Option<String>,
    /// Device tags the job requires (must exist).
    pub tags: Vec<String>,
    /// Whether this is a health check.
    pub health_check: bool,
    /// Cancel the job if still queued after this long.
    pub queue_timeout: Option<Duration>,
}

impl NewJob {
    /// A public, medium-priority job whose original definition is `definition`.
    pub fn new(submitter: impl Into<String>, definition: impl Into<String>) -> NewJob {
        let definition = definition.into();
        NewJob {
            submitter: submitter.into(),
            description: String::new(),
            original_definition: definition.clone(),
            definition,
            priority: Priority::DEFAULT,
            visibility: Visibility::Public,
            requested_device_type: None,
            tags: Vec::new(),
            health_check: false,
            queue_timeout: None,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Submitter's username.
    pub submitter: String,
    /// Job name.
    pub description: String,
    /// The definition the dispatcher runs.
    pub definition: String,
    /// The text as submitted.
    pub original_definition: String,
    /// MultiNode: the whole submission; empty otherwise.
    pub multinode_definition: String,
    /// Life-cycle state.
    pub state: JobState,
    /// Outcome; Unknown until Finished.
    pub health: JobHealth,
    /// 0–100.
    pub priority: Priority,
    /// Who may see it.
    pub visibility: Visibility,
    /// Requested device type.
    pub requested_device_type: Option<String>,
    /// The device it was scheduled on.
    pub actual_device: Option<String>,
    /// Required device tags, sorted.
    pub tags: Vec<String>,
    /// Health-check job.
    pub health_check: bool,
    /// MultiNode group name.
    pub target_group: Option<String>,
    /// MultiNode sub id, e.g. `12.1`.
    pub sub_id: Option<String>,
    /// Submission time.
    pub submit_time: OffsetDateTime,
    /// When it started running.
    pub start_time: Option<OffsetDateTime>,
    /// When it finished.
    pub end_time: Option<OffsetDateTime>,
    /// Why it failed, as reported by the dispatcher.
    pub failure_comment: Option<String>,
    /// LAVA's error class of the failure.
    pub error_type: Option<ErrorType>,
    /// Queue timeout.
    pub queue_timeout: Option<Duration>,
}

/// How a job ended, as the dispatcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// Complete (result pass), Incomplete (fail) or Canceled; never Unknown.
    pub health: JobHealth,
    /// The error class, if the job failed.
    pub error_type: Option<ErrorType>,
    /// The failure text.
    pub failure_comment: Option<String>,
    /// MultiNode: this job had an essential role, so an Incomplete end cancels its peers.
    pub cancel_peers: bool,
}

impl JobEnd {
    /// A job that ran to its end.
    pub fn complete() -> JobEnd {
        JobEnd {
            health: JobHealth::Complete,
            error_type: None,
            failure_comment: None,
            cancel_peers: false,
        }
    }

    /// A job stopped by an error of class `error_type`.
    pub fn incomplete(error_type: ErrorType, comment: impl Into<String>) -> JobEnd {
        JobEnd {
            health: JobHealth::Incomplete,
            error_type: Some(error_type),
            failure_comment: Some(comment.into()),
            cancel_peers: false,
        }
    }
}

/// A job whose state or health changed, with everything its `.testjob` event shows as it
/// was inside the transaction that made the change: the event is rendered later, off the
/// job's path, and must not show a later state of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobChange {
    /// The job.
    pub id: JobId,
    /// Its new state.
    pub state: JobState,
    /// Its new health.
    pub health: JobHealth,
    /// Its device, if any.
    pub device: Option<String>,
    /// The rest of the job, as of the change.
    pub facts: JobFacts,
}

impl JobChange {
    /// The change that announces `job` as it is (a submission: no device yet, so no worker).
    pub fn of(job: &Job) -> JobChange {
        JobChange {
            id: job.id,
            state: job.state,
            health: job.health,
            device: job.actual_device.clone(),
            facts: JobFacts {
                submitter: job.submitter.clone(),
                description: job.description.clone(),
                priority: job.priority,
                health_check: job.health_check,
                sub_id: job.sub_id.clone().filter(|_| job.target_group.is_some()),
                requested_device_type: job.requested_device_type.clone(),
                worker: None,
                submit_time: job.submit_time,
                start_time: job.start_time,
                end_time: job.end_time,
            },
        }
    }
}

/// A job's attributes besides state, health and device, captured with a [`JobChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    /// The submitter's username.
    pub submitter: String,
    /// The job's description (`job_name`).
    pub description: String,
    /// Its priority.
    pub priority: Priority,
    /// Whether it is a health check.
    pub health_check: bool,
    /// MultiNode sub id (`"12.1"`); `None` for a single-node job.
    pub sub_id: Option<String>,
    /// The requested device type.
    pub requested_device_type: Option<String>,
    /// The worker of its device.
    pub worker: Option<String>,
    /// When it was submitted.
    pub submit_time: OffsetDateTime,
    /// When it started.
    pub start_time: Option<OffsetDateTime>,
    /// When it ended.
    pub end_time: Option<OffsetDateTime>,
}

/// A device whose state or health changed, with everything its `.device` event shows as it
/// was inside the transaction that made the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChange {
    /// The device.
    pub hostname: String,
    /// Its new state.
    pub state: DeviceState,
    /// Its new health.
    pub health: DeviceHealth,
    /// Its device type.
    pub device_type: String,
    /// Its worker.
    pub worker: Option<String>,
    /// The job holding it after the change (none once it is Idle again).
    pub job: Option<CurrentJob>,
}

/// The job a device is busy with, as LAVA displays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentJob {
    /// The job.
    pub id: JobId,
    /// Its MultiNode sub id (`"12.1"`), which LAVA shows instead of the number.
    pub sub_id: Option<String>,
}

/// What one store call changed, for event publishing; empty when a transition was ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changed jobs, each once with its final values, in first-change order.
    pub jobs: Vec<JobChange>,
    /// Changed devices, each once with its final values, in first-change order.
    pub devices: Vec<DeviceChange>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.devices.is_empty()
    }

    pub(crate) fn device(&mut self, change: DeviceChange) {
        match self
            .devices
            .iter_mut()
            .find(|d| d.hostname == change.hostname)
        {
            Some(existing) => *existing = change,
            None => self.devices.push(change),
        }
    }

    fn job(&mut self, change: JobChange) {
        match self.jobs.iter_mut().find(|j| j.id == change.id) {
            Some(existing) => *existing = change,
            None => self.jobs.push(change),
        }
    }
}

/// Whose view a job query takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Viewer {
    /// No restriction: internal callers and superusers.
    #[default]
    Anyone,
    /// Anonymous API clients: public jobs only.
    Anonymous,
    /// A user: public jobs, their own, and group jobs of their groups.
    User(UserId),
}

/// Sort key for [`JobFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobOrderField {
    /// Job id.
    #[default]
    Id,
    /// Submission time.
    SubmitTime,
    /// Start time.
    StartTime,
    /// End time.
    EndTime,
}

/// Ordering for [`JobFilter`]; ties are broken by id in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOrder {
    /// The key.
    pub field: JobOrderField,
    /// Largest first.
    pub descending: bool,
}

impl Default for JobOrder {
    /// Newest id first, as `scheduler.jobs.list` does.
    fn default() -> Self {
        JobOrder {
            field: JobOrderField::Id,
            descending: true,
        }
    }
}

/// Filters, ordering and pagination for [`Store::jobs`]; the default lists every job,
/// newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only these states (any, if empty).
    pub states: Vec<JobState>,
    /// Only this health.
    pub health: Option<JobHealth>,
    /// Only jobs of this submitter (username).
    pub submitter: Option<String>,
    /// Only jobs requesting one of these device types (any, if empty).
    pub requested_device_types: Vec<String>,
    /// Only jobs scheduled on this device.
    pub actual_device: Option<String>,
    /// Only health checks (true) or only other jobs (false).
    pub health_check: Option<bool>,
    /// Only this MultiNode group.
    pub target_group: Option<String>,
    /// Only jobs that ended at or after this time.
    pub ended_since: Option<OffsetDateTime>,
    /// Only jobs satisfying all of these (the REST list's django-filter conditions).
    pub conds: Vec<JobCond>,
    /// Visibility restriction.
    pub viewer: Viewer,
    /// Sort order.
    pub order: JobOrder,
    /// Rows to skip.
    pub offset: u64,
    /// At most this many rows.
    pub limit: Option<u64>,
}

/// A Submitted job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// Its id.
    pub id: JobId,
    /// Requested device type.
    pub requested_device_type: Option<String>,
    /// Required tags.
    pub tags: Vec<String>,
    /// 0–100.
    pub priority: Priority,
    /// Submission time.
    pub submit_time: OffsetDateTime,
    /// Health-check job.
    pub health_check: bool,
    /// MultiNode group.
    pub target_group: Option<String>,
    /// MultiNode sub id.
    pub sub_id: Option<String>,
    /// Submitter's username.
    pub submitter: String,
    /// Queue timeout.
    pub queue_timeout: Option<Duration>,
}

/// A device as the scheduler sees it, with its health-check history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSlot {
    /// The device.
    pub device: super::Device,
    /// End time of its last health check, if any.
    pub last_health_check_end: Option<OffsetDateTime>,
    /// Finished non-health-check jobs since its last health check.
    pub jobs_since_health_check: u64,
}

/// Everything one scheduler pass needs, read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSnapshot {
    /// Submitted jobs in LAVA's order: priority desc, submit time, sub id, id.
    pub queued: Vec<QueuedJob>,
    /// Every device that is not Retired, by hostname.
    pub devices: Vec<DeviceSlot>,
    /// Every device type.
    pub device_types: Vec<super::DeviceType>,
}

const JOB_SELECT: &str = "SELECT j.id, u.username, j.description, j.definition, \
     j.original_definition, j.multinode_definition, j.state, j.health, j.priority, \
     j.visibility, t.name, d.hostname, j.health_check, j.target_group, j.sub_id, \
     j.submit_time, j.start_time, j.end_time, j.failure_comment, j.error_type, \
     j.queue_timeout_secs \
     FROM jobs j JOIN users u ON u.id = j.submitter_id \
     LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
     LEFT JOIN devices d ON d.id = j.actual_device_id";

/// A job row before decoding codes and timestamps.
struct JobRow {
    id: i64,
    submitter: String,
    description: String,
    definition: String,
    original_definition: String,
    multinode_definition: String,
    state: i64,
    health: i64,
    priority: i64,
    visibility: i64,
    requested_device_type: Option<String>,
    actual_device: Option<String>,
    health_check: bool,
    target_group: Option<String>,
    sub_id: Option<String>,
    submit_time: String,
    start_time: Option<String>,
    end_time: Option<String>,
    failure_comment: Option<String>,
    error_type: Option<i64>,
    queue_timeout: Option<i64>,
}

fn job_row(row: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: row.get(0)?,
        submitter: row.get(1)?,
        description: row.get(2)?,
        definition: row.get(3)?,
        original_definition: row.get(4)?,
        multinode_definition: row.get(5)?,
        state: row.get(6)?,
        health: row.get(7)?,
        priority: row.get(8)?,
        visibility: row.get(9)?,
        requested_device_type: row.get(10)?,
        actual_device: row.get(11)?,
        health_check: row.get(12)?,
        target_group: row.get(13)?,
        sub_id: row.get(14)?,
        submit_time: row.get(15)?,
        start_time: row.get(16)?,
        end_time: row.get(17)?,
        failure_comment: row.get(18)?,
        error_type: row.get(19)?,
        queue_timeout: row.get(20)?,
    })
}

fn names(conn: &Connection, sql: &str, id: i64, step: &'static str) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(sql).step(step)?;
    stmt.query_map([id], |r| r.get(0))
        .step(step)?
        .collect::<Result<Vec<String>, _>>()
        .step(step)
}

fn job_tags(conn: &Connection, id: i64) -> Result<Vec<String>, Error> {
    names(
        conn,
        "SELECT g.name FROM tags g JOIN job_tags jt ON jt.tag_id = g.id \
         WHERE jt.job_id = ?1 ORDER BY g.name",
        id,
        "reading job tags",
    )
}

fn priority_from(table: &'static str, value: i64) -> Result<Priority, Error> {
    Priority::new(value).ok_or_else(|| Error::Corrupt {
        table,
        detail: format!("priority {value} outside 0-100"),
    })
}

fn timeout_from(secs: Option<i64>) -> Option<Duration> {
    secs.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
}

/// Reads one job's tags and viewing groups, then decodes it.
fn finish_job(conn: &Connection, raw: JobRow) -> Result<Job, Error> {
    let groups = if raw.visibility == 2 {
        names(
            conn,
            "SELECT g.name FROM groups g JOIN job_viewing_groups v ON v.group_id = g.id \
             WHERE v.job_id = ?1 ORDER BY g.name",
            raw.id,
            "reading job viewing groups",
        )?
    } else {
        Vec::new()
    };
    let tags = job_tags(conn, raw.id)?;
    decode_job(raw, tags, groups)
}

/// Decodes a job row given its tags and (for group visibility) viewing groups, both sorted.
fn decode_job(raw: JobRow, tags: Vec<String>, groups: Vec<String>) -> Result<Job, Error> {
    const T: &str = "jobs";
    let visibility = match raw.visibility {
        0 => Visibility::Personal,
        1 => Visibility::Public,
        2 => Visibility::Group(groups),
        other => {
            return Err(Error::Corrupt {
                table: T,
                detail: format!("unknown visibility code {other}"),
            });
        }
    };
    Ok(Job {
        id: JobId(raw.id),
        submitter: raw.submitter,
        description: raw.description,
        definition: raw.definition,
        original_definition: raw.original_definition,
        multinode_definition: raw.multinode_definition,
        state: decode(T, "job state", raw.state, JobState::from_code)?,
        health: decode(T, "job health", raw.health, JobHealth::from_code)?,
        priority: priority_from(T, raw.priority)?,
        visibility,
        requested_device_type: raw.requested_device_type,
        actual_device: raw.actual_device,
        tags,
        health_check: raw.health_check,
        target_group: raw.target_group,
        sub_id: raw.sub_id,
        submit_time: ts_from_sql(T, &raw.submit_time)?,
        start_time: opt_ts_from_sql(T, raw.start_time)?,
        end_time: opt_ts_from_sql(T, raw.end_time)?,
        failure_comment: raw.failure_comment,
        error_type: raw
            .error_type
            .map(|c| decode(T, "error type", c, ErrorType::from_code))
            .transpose()?,
        queue_timeout: timeout_from(raw.queue_timeout),
    })
}

/// Decodes a page of job rows, reading the tags and viewing groups of all of them in one
/// query each rather than two per job.
fn finish_jobs(conn: &Connection, raws: Vec<JobRow>) -> Result<Vec<Job>, Error> {
    if raws.is_empty() {
        return Ok(Vec::new());
    }
    // One bound JSON array keeps the statement text fixed, so it stays in the cache.
    let ids = |rows: &mut dyn Iterator<Item = &JobRow>| {
        let list: Vec<String> = rows.map(|r| r.id.to_string()).collect();
        format!("[{}]", list.join(","))
    };
    let mut tags = names_by_job(
        conn,
        "SELECT jt.job_id, g.name FROM job_tags jt JOIN tags g ON g.id = jt.tag_id \
         WHERE jt.job_id IN (SELECT value FROM json_each(?1)) ORDER BY jt.job_id, g.name",
        &ids(&mut raws.iter()),
        "reading job tags",
    )?;
    let mut group_jobs = raws.iter().filter(|r| r.visibility == 2).peekable();
    let mut groups = if group_jobs.peek().is_some() {
        names_by_job(
            conn,
            "SELECT v.job_id, g.name FROM job_viewing_groups v JOIN groups g \
             ON g.id = v.group_id WHERE v.job_id IN (SELECT value FROM json_each(?1)) \
             ORDER BY v.job_id, g.name",
            &ids(&mut group_jobs),
            "reading job viewing groups",
        )?
    } else {
        HashMap::new()
    };
    raws.into_iter()
        .map(|raw| {
            let job_tags = tags.remove(&raw.id).unwrap_or_default();
            let job_groups = if raw.visibility == 2 {
                groups.remove(&raw.id).unwrap_or_default()
            } else {
                Vec::new()
            };
            decode_job(raw, job_tags, job_groups)
        })
        .collect()
}

/// `(job id, name)` rows of `sql` (one JSON-array parameter) grouped by job, names in
/// row order.
fn names_by_job(
    conn: &Connection,
    sql: &str,
    ids: &str,
    step: &'static str,
) -> Result<HashMap<i64, Vec<String>>, Error> {
    let mut stmt = conn.prepare_cached(sql).step(step)?;
    let mut rows = stmt.query([ids]).step(step)?;
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    while let Some(row) = rows.next().step(step)? {
        let (id, name): (i64, String) = row.try_into().step(step)?;
        out.entry(id).or_default().push(name);
    }
    Ok(out)
}

fn read_job(conn: &Connection, id: JobId) -> Result<Option<Job>, Error> {
    conn.query_row(&format!("{JOB_SELECT} WHERE j.id = ?1"), [id.0], job_row)
        .optional()
        .step("reading a job")?
        .map(|raw| finish_job(conn, raw))
        .transpose()
}

/// The fields a transition needs.
#[derive(Debug, Clone)]
struct Core {
    id: JobId,
    state: JobState,
    health: JobHealth,
    device: Option<i64>,
    health_check: bool,
    target_group: Option<String>,
    requested_type: Option<i64>,
}

fn core(conn: &Connection, id: JobId) -> Result<Core, Error> {
    type Raw = (i64, i64, Option<i64>, bool, Option<String>, Option<i64>);
    let raw: Option<Raw> = conn
        .query_row(
            "SELECT state, health, actual_device_id, health_check, target_group, \
             requested_device_type_id FROM jobs WHERE id = ?1",
            [id.0],
            |r| r.try_into(),
        )
        .optional()
        .step("reading a job")?;
    let (state, health, device, health_check, target_group, requested_type) =
        raw.ok_or_else(|| Error::NotFound {
            kind: "job",
            name: id.to_string(),
        })?;
    Ok(Core {
        id,
        state: decode("jobs", "job state", state, JobState::from_code)?,
        health: decode("jobs", "job health", health, JobHealth::from_code)?,
        device,
        health_check,
        target_group,
        requested_type,
    })
}

fn group_ids(conn: &Connection, group: &str) -> Result<Vec<JobId>, Error> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM jobs WHERE target_group = ?1 ORDER BY id")
        .step("reading a MultiNode group")?;
    stmt.query_map([group], |r| r.get(0).map(JobId))
        .step("reading a MultiNode group")?
        .collect::<Result<Vec<_>, _>>()
        .step("reading a MultiNode group")
}

/// Records `job`'s change with what its event shows, read in the same transaction.
fn record(conn: &Connection, job: &Core, changes: &mut Changes) -> Result<(), Error> {
    const T: &str = "jobs";
    let step = "reading a changed job";
    #[allow(clippy::type_complexity)]
    let raw: (
        String,
        String,
        i64,
        bool,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
    ) = conn
        .prepare_cached(
            "SELECT u.username, j.description, j.priority, j.health_check, \
             CASE WHEN j.target_group IS NULL THEN NULL ELSE j.sub_id END, t.name, \
             d.hostname, d.worker_name, j.submit_time, j.start_time, j.end_time \
             FROM jobs j JOIN users u ON u.id = j.submitter_id \
             LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
             LEFT JOIN devices d ON d.id = j.actual_device_id WHERE j.id = ?1",
        )
        .step(step)?
        .query_row([job.id.0], |r| r.try_into())
        .step(step)?;
    let (submitter, description, priority, health_check, sub_id, device_type) =
        (raw.0, raw.1, raw.2, raw.3, raw.4, raw.5);
    let (device, worker, submit_time, start_time, end_time) = (raw.6, raw.7, raw.8, raw.9, raw.10);
    changes.job(JobChange {
        id: job.id,
        state: job.state,
        health: job.health,
        device,
        facts: JobFacts {
            submitter,
            description,
            priority: priority_from(T, priority)?,
            health_check,
            sub_id,
            requested_device_type: device_type,
            worker,
            submit_time: ts_from_sql(T, &submit_time)?,
            start_time: opt_ts_from_sql(T, start_time)?,
            end_time: opt_ts_from_sql(T, end_time)?,
        },
    });
    Ok(())
}

fn set_state(conn: &Connection, job: &mut Core, state: JobState) -> Result<(), Error> {
    conn.execute(
        "UPDATE jobs SET state = ?2 WHERE id = ?1",
        params![job.id.0, state.code()],
    )
    .step("updating job state")?;
    job.state = state;
    Ok(())
}

/// Inserts one job row (tags, viewing groups included) inside the caller's transaction.
fn insert_row(
    conn: &Connection,
    new: &NewJob,
    multinode: Option<MultinodeSlot<'_>>,
    submit_time: &str,
) -> Result<JobId, Error> {
    let step = "inserting a job";
    let submitter = user_id(conn, &new.submitter)?;
    let type_id = match &new.requested_device_type {
        None => None,
        Some(name) => Some(resolve_type_id(conn, name)?),
    };
    let timeout = new
        .queue_timeout
        .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
    let (id, target_group, sub_id, multinode_definition) = match &multinode {
        Some(slot) => (
            Some(slot.first.0 + slot.index as i64),
            Some(slot.group),
            // LAVA's sub id: the group's first job id, a dot, the sub-job's index.
            Some(format!("{}.{}", slot.first, slot.index)),
            slot.definition,
        ),
        None => (None, None, None, ""),
    };
    conn.execute(
        "INSERT INTO jobs (id, submitter_id, description, definition, original_definition, \
         multinode_definition, priority, visibility, requested_device_type_id, health_check, \
         target_group, sub_id, submit_time, queue_timeout_secs) \
         VALUES (?13, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?14, ?11, ?12)",
        params![
            submitter.0,
            new.description,
            new.definition,
            new.original_definition,
            multinode_definition,
            new.priority.value(),
            new.visibility.code(),
            type_id,
            new.health_check,
            target_group,
            submit_time,
            timeout,
            id,
            sub_id
        ],
    )
    .step(step)?;
    let id = JobId(conn.last_insert_rowid());
    for tag in &new.tags {
        let tag = tag_id(conn, tag)?;
        conn.execute(
            "INSERT OR IGNORE INTO job_tags (job_id, tag_id) VALUES (?1, ?2)",
            params![id.0, tag],
        )
        .step(step)?;
    }
    if let Visibility::Group(groups) = &new.visibility {
        if groups.is_empty() {
            return Err(Error::Invalid {
                what: "job visibility",
                reason: "group visibility needs at least one group".into(),
            });
        }
        for group in groups {
            let gid = group_id(conn, group)?;
            conn.execute(
                "INSERT OR IGNORE INTO job_viewing_groups (job_id, group_id) VALUES (?1, ?2)",
                params![id.0, gid.0],
            )
            .step(step)?;
        }
    }
    Ok(id)
}

/// Where a MultiNode sub-job goes.
struct MultinodeSlot<'a> {
    /// The group's first job id; sub-job `index` gets id `first + index`.
    first: JobId,
    /// Its index in the group.
    index: usize,
    /// The group name.
    group: &'a str,
    /// The whole submission.
    definition: &'a str,
}

/// The id the next inserted job would get (AUTOINCREMENT never reuses ids).
fn next_job_id(conn: &Connection) -> Result<JobId, Error> {
    conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0), \
         coalesce((SELECT max(id) FROM jobs), 0)) + 1",
        [],
        |r| r.get(0).map(JobId),
    )
    .step("allocating job ids")
}

fn resolve_type_id(conn: &Connection, name: &str) -> Result<i64, Error> {
    conn.query_row(
        "SELECT id FROM device_types WHERE name = ?1 \
         UNION ALL SELECT device_type_id FROM aliases WHERE name = ?1 LIMIT 1",
        [name],
        |r| r.get(0),
    )
    .optional()
    .step("resolving a device type")?
    .ok_or_else(|| Error::NotFound {
        kind: "device type",
        name: name.to_owned(),
    })
}

/// A random MultiNode group name, `lava-multinode-<32 hex digits>`.
fn new_target_group() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("lava-multinode-{hex}"))
}

/// Checks that `hostname` can take `job` now; returns the device row id.
fn check_device_for(
    conn: &Connection,
    job: &Core,
    hostname: &str,
) -> Result<(i64, super::Device), Error> {
    let device = read_device(conn, hostname)?.ok_or_else(|| Error::NotFound {
        kind: "device",
        name: hostname.to_owned(),
    })?;
    let usable = match device.health {
        DeviceHealth::Good => true,
        DeviceHealth::Unknown | DeviceHealth::Looping => job.health_check,
        DeviceHealth::Bad | DeviceHealth::Maintenance | DeviceHealth::Retired => false,
    };
    if device.state != DeviceState::Idle || !usable {
        return Err(Error::DeviceUnavailable {
            hostname: device.hostname,
            state: device.state,
            health: device.health,
            job: job.id,
        });
    }
    let id = device_id(conn, hostname)?;
    if let Some(wanted) = job.requested_type {
        let actual: i64 = conn
            .query_row(
                "SELECT device_type_id FROM devices WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .step("reading a device")?;
        if actual != wanted {
            return Err(Error::Invalid {
                what: "device for job",
                reason: format!(
                    "device `{hostname}` is a `{}`, not the requested type",
                    device.device_type
                ),
            });
        }
    }
    let missing: Vec<String> = job_tags(conn, job.id.0)?
        .into_iter()
        .filter(|t| !device.tags.contains(t))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid {
            what: "device for job",
            reason: format!(
                "device `{hostname}` lacks the tags {} that job {} requires",
                missing.join(", "),
                job.id
            ),
        });
    }
    Ok((id, device))
}

/// Puts `job` on device `device_row` in `state` (Scheduling or Scheduled).
fn reserve(
    conn: &Connection,
    job: &mut Core,
    device_row: i64,
    state: JobState,
    changes: &mut Changes,
) -> Result<(), Error> {
    conn.execute(
        "UPDATE jobs SET state = ?2, actual_device_id = ?3 WHERE id = ?1",
        params![job.id.0, state.code(), device_row],
    )
    .step("scheduling a job")?;
    job.state = state;
    job.device = Some(device_row);
    set_device_state(conn, device_row, DeviceState::Reserved, None, changes)?;
    record(conn, job, changes)
}

/// Cancels `id` and, for MultiNode, every job of its group.
pub(crate) fn cancel_in(conn: &Connection, id: JobId, changes: &mut Changes) -> Result<(), Error> {
    let job = core(conn, id)?;
    let ids = match &job.target_group {
        Some(group) => group_ids(conn, group)?,
        None => vec![id],
    };
    for id in ids {
        let job = core(conn, id)?;
        cancel_one(conn, job, changes)?;
    }
    Ok(())
}

fn cancel_one(conn: &Connection, mut job: Core, changes: &mut Changes) -> Result<(), Error> {
    match job.state {
        JobState::Canceling | JobState::Finished => Ok(()),
        JobState::Submitted => finish_one(
            conn,
            job,
            &JobEnd {
                health: JobHealth::Canceled,
                error_type: None,
                failure_comment: None,
                cancel_peers: false,
            },
            changes,
        ),
        JobState::Scheduling | JobState::Scheduled | JobState::Running => {
            set_state(conn, &mut job, JobState::Canceling)?;
            record(conn, &job, changes)
        }
    }
}

fn finish_one(
    conn: &Connection,
    mut job: Core,
    end: &JobEnd,
    changes: &mut Changes,
) -> Result<(), Error> {
    if job.state == JobState::Finished {
        return Ok(());
    }
    let health = if job.state == JobState::Canceling {
        JobHealth::Canceled
    } else {
        end.health
    };
    let now = ts_to_sql(now());
    conn.execute(
        "UPDATE jobs SET state = 5, health = ?2, start_time = coalesce(start_time, ?3), \
         end_time = ?3, error_type = coalesce(?4, error_type), \
         failure_comment = coalesce(?5, failure_comment) WHERE id = ?1",
        params![
            job.id.0,
            health.code(),
            now,
            end.error_type.map(ErrorType::code),
            end.failure_comment
        ],
    )
    .step("finishing a job")?;
    job.state = JobState::Finished;
    job.health = health;
    record(conn, &job, changes)?;

    if let Some(device) = job.device {
        let current: i64 = conn
            .query_row("SELECT health FROM devices WHERE id = ?1", [device], |r| {
                r.get(0)
            })
            .step("reading a device")?;
        let current = decode("devices", "device health", current, DeviceHealth::from_code)?;
        let infrastructure = end.error_type.is_some_and(ErrorType::is_infrastructure);
        let new_health = if job.health_check {
            conn.execute(
                "UPDATE devices SET last_health_report_job = ?2 WHERE id = ?1",
                params![device, job.id.0],
            )
            .step("recording a health report")?;
            match current {
                DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Bad => {
                    if health == JobHealth::Complete {
                        DeviceHealth::Good
                    } else {
                        DeviceHealth::Bad
                    }
                }
                // Looping stays until an admin ends it; admin decisions stay.
                DeviceHealth::Looping | DeviceHealth::Maintenance | DeviceHealth::Retired => {
                    current
                }
            }
        } else if infrastructure {
            // LAVA would also move Maintenance/Retired devices to Unknown; an admin's
            // decision wins here.
            match current {
                DeviceHealth::Maintenance | DeviceHealth::Retired => current,
                _ => DeviceHealth::Unknown,
            }
        } else {
            current
        };
        set_device_state(conn, device, DeviceState::Idle, Some(new_health), changes)?;
    }

    if health == JobHealth::Incomplete
        && end.cancel_peers
        && let Some(group) = &job.target_group
    {
        for peer in group_ids(conn, group)? {
            if peer != job.id {
                let peer = core(conn, peer)?;
                cancel_one(conn, peer, changes)?;
            }
        }
    }
    Ok(())
}

/// Appends the WHERE clause and parameters for `filter`.
fn filter_sql(filter: &JobFilter, sql: &mut String, args: &mut Vec<Value>) {
    sql.push_str(" WHERE 1 = 1");
    if !filter.states.is_empty() {
        let codes: Vec<String> = filter.states.iter().map(|s| s.code().to_string()).collect();
        sql.push_str(&format!(" AND j.state IN ({})", codes.join(", ")));
    }
    if let Some(health) = filter.health {
        args.push(Value::Integer(health.code()));
        sql.push_str(&format!(" AND j.health = ?{}", args.len()));
    }
    if let Some(name) = &filter.submitter {
        args.push(Value::Text(name.clone()));
        sql.push_str(&format!(" AND u.username = ?{}", args.len()));
    }
    if !filter.requested_device_types.is_empty() {
        let mut slots = Vec::new();
        for name in &filter.requested_device_types {
            args.push(Value::Text(name.clone()));
            slots.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND t.name IN ({})", slots.join(", ")));
    }
    if let Some(name) = &filter.actual_device {
        args.push(Value::Text(name.clone()));
        sql.push_str(&format!(" AND d.hostname = ?{}", args.len()));
    }
    if let Some(hc) = filter.health_check {
        args.push(Value::Integer(i64::from(hc)));
        sql.push_str(&format!(" AND j.health_check = ?{}", args.len()));
    }
    if let Some(group) = &filter.target_group {
        args.push(Value::Text(group.clone()));
        sql.push_str(&format!(" AND j.target_group = ?{}", args.len()));
    }
    if let Some(since) = filter.ended_since {
        args.push(Value::Text(ts_to_sql(since)));
        sql.push_str(&format!(" AND j.end_time >= ?{}", args.len()));
    }
    for cond in &filter.conds {
        sql.push_str(" AND ");
        sql.push_str(&jobcond::cond_sql(cond, args));
    }
    viewer_sql(filter.viewer, sql, args);
}

/// Appends the condition that limits jobs (aliased `j`) to those `viewer` may see: the one
/// visibility rule of every job listing and query.
pub(super) fn viewer_sql(viewer: Viewer, sql: &mut String, args: &mut Vec<Value>) {
    match viewer {
        Viewer::Anyone => {}
        Viewer::Anonymous => sql.push_str(" AND j.visibility = 1"),
        Viewer::User(user) => {
            args.push(Value::Integer(user.0));
            let n = args.len();
            sql.push_str(&format!(
                " AND (j.visibility = 1 OR j.submitter_id = ?{n} OR (j.visibility = 2 AND \
                 EXISTS (SELECT 1 FROM job_viewing_groups v JOIN group_members m \
                 ON m.group_id = v.group_id WHERE v.job_id = j.id AND m.user_id = ?{n})))"
            ));
        }
    }
}

impl Store {
    /// Inserts a Submitted job. The submitter, device type (name or alias), tags and viewing
    /// groups must exist.
    pub fn insert_job(&mut self, new: &NewJob) -> Result<Job, Error> {
        let tx = self.write_tx("inserting a job")?;
        let id = insert_row(&tx, new, None, &ts_to_sql(now()))?;
        let job = read_job(&tx, id)?.ok_or_else(|| Error::NotFound {
            kind: "job",
            name: id.to_string(),
        })?;
        tx.commit().step("inserting a job")?;
        Ok(job)
    }

    /// Inserts the sub-jobs of one MultiNode submission atomically: one new target group,
    /// sub ids `<first id>.0`, `<first id>.1`, ..., and `multinode_definition` on each.
    pub fn insert_multinode(
        &mut self,
        sub_jobs: &[NewJob],
        multinode_definition: &str,
    ) -> Result<Vec<Job>, Error> {
        if sub_jobs.is_empty() {
            return Err(Error::Invalid {
                what: "MultiNode submission",
                reason: "it has no sub-jobs".into(),
            });
        }
        let group = new_target_group()?;
        let submit_time = ts_to_sql(now());
        let tx = self.write_tx("inserting a MultiNode job")?;
        // The write lock is held, so nobody else can take these ids.
        let first = next_job_id(&tx)?;
        let mut ids = Vec::with_capacity(sub_jobs.len());
        for (index, new) in sub_jobs.iter().enumerate() {
            let slot = MultinodeSlot {
                first,
                index,
                group: &group,
                definition: multinode_definition,
            };
            ids.push(insert_row(&tx, new, Some(slot), &submit_time)?);
        }
        let jobs = ids
            .iter()
            .map(|id| {
                read_job(&tx, *id)?.ok_or_else(|| Error::NotFound {
                    kind: "job",
                    name: id.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().step("inserting a MultiNode job")?;
        Ok(jobs)
    }

    /// Inserts a health check directly Scheduled on `hostname` (LAVA creates them so), with
    /// the device Reserved, in one transaction.
    pub fn insert_health_check(
        &mut self,
        hostname: &str,
        new: &NewJob,
    ) -> Result<(Job, Changes), Error> {
        let step = "inserting a health check";
        let tx = self.write_tx(step)?;
        let device = read_device(&tx, hostname)?.ok_or_else(|| Error::NotFound {
            kind: "device",
            name: hostname.to_owned(),
        })?;
        let mut new = new.clone();
        new.health_check = true;
        new.requested_device_type = Some(device.device_type.clone());
        let id = insert_row(&tx, &new, None, &ts_to_sql(now()))?;
        let mut job = core(&tx, id)?;
        let (device_row, _) = check_device_for(&tx, &job, hostname)?;
        let mut changes = Changes::default();
        reserve(&tx, &mut job, device_row, JobState::Scheduled, &mut changes)?;
        let job = read_job(&tx, id)?.ok_or_else(|| Error::NotFound {
            kind: "job",
            name: id.to_string(),
        })?;
        tx.commit().step(step)?;
        Ok((job, changes))
    }

    /// The job with id `id`.
    pub fn job(&self, id: JobId) -> Result<Option<Job>, Error> {
        read_job(&self.conn, id)
    }

    /// The MultiNode job with sub id `sub_id` (e.g. `12.1`).
    pub fn job_by_sub_id(&self, sub_id: &str) -> Result<Option<Job>, Error> {
        self.conn
            .query_row(
                &format!("{JOB_SELECT} WHERE j.sub_id = ?1"),
                [sub_id],
                job_row,
            )
            .optional()
            .step("reading a job")?
            .map(|raw| finish_job(&self.conn, raw))
            .transpose()
    }

    /// Whether `viewer` may see job `id` ([`Error::NotFound`] if there is no such job).
    pub fn can_view_job(&self, id: JobId, viewer: Viewer) -> Result<bool, Error> {
        core(&self.conn, id)?;
        let filter = JobFilter {
            viewer,
            ..JobFilter::default()
        };
        let mut sql = String::from(
            "SELECT count(*) FROM jobs j JOIN users u ON u.id = j.submitter_id \
             LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
             LEFT JOIN devices d ON d.id = j.actual_device_id",
        );
        let mut args = Vec::new();
        filter_sql(&filter, &mut sql, &mut args);
        args.push(Value::Integer(id.0));
        sql.push_str(&format!(" AND j.id = ?{}", args.len()));
        let n: i64 = self
            .conn
            .query_row(&sql, params_from_iter(args), |r| r.get(0))
            .step("checking job visibility")?;
        Ok(n > 0)
    }

    /// Jobs matching `filter`, ordered and paginated.
    pub fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, Error> {
        let mut sql = String::from(JOB_SELECT);
        let mut args = Vec::new();
        filter_sql(filter, &mut sql, &mut args);
        let column = match filter.order.field {
            JobOrderField::Id => "j.id",
            JobOrderField::SubmitTime => "j.submit_time",
            JobOrderField::StartTime => "j.start_time",
            JobOrderField::EndTime => "j.end_time",
        };
        let dir = if filter.order.descending {
            "DESC"
        } else {
            "ASC"
        };
        sql.push_str(&format!(" ORDER BY {column} {dir}, j.id {dir}"));
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        args.push(Value::Integer(limit));
        args.push(Value::Integer(
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        ));
        sql.push_str(&format!(
            " LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
        // Cached: the common lists (default page, a state filter) repeat the same text.
        let mut stmt = self.conn.prepare_cached(&sql).step("listing jobs")?;
        let rows = stmt
            .query_map(params_from_iter(args), job_row)
            .step("listing jobs")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing jobs")?;
        finish_jobs(&self.conn, rows)
    }

    /// How many jobs match `filter` (ignoring ordering and pagination).
    pub fn count_jobs(&self, filter: &JobFilter) -> Result<u64, Error> {
        let mut sql = String::from(
            "SELECT count(*) FROM jobs j JOIN users u ON u.id = j.submitter_id \
             LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
             LEFT JOIN devices d ON d.id = j.actual_device_id",
        );
        let mut args = Vec::new();
        filter_sql(filter, &mut sql, &mut args);
        let n: i64 = self
            .conn
            .prepare_cached(&sql)
            .step("counting jobs")?
            .query_row(params_from_iter(args), |r| r.get(0))
            .step("counting jobs")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Replaces the definition the dispatcher will run (e.g. to add the MultiNode roles map).
    pub fn set_job_definition(&mut self, id: JobId, definition: &str) -> Result<(), Error> {
        let n = self
            .conn
            .execute(
                "UPDATE jobs SET definition = ?2 WHERE id = ?1",
                params![id.0, definition],
            )
            .step("updating a job definition")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "job",
                name: id.to_string(),
            });
        }
        Ok(())
    }

    /// Scheduler: reserves `hostname` for Submitted job `id`. A single-node job goes to
    /// Scheduled; a MultiNode sub-job goes to Scheduling, and once every sub-job of its
    /// group is Scheduling they all go to Scheduled. Ignored if the job is already past
    /// Submitted. The device must be Idle, of the requested type, carry the job's tags,
    /// and be Good (Unknown or Looping only for health checks).
    pub fn schedule_job(&mut self, id: JobId, hostname: &str) -> Result<Changes, Error> {
        let step = "scheduling a job";
        let tx = self.write_tx(step)?;
        let mut job = core(&tx, id)?;
        let mut changes = Changes::default();
        if job.state != JobState::Submitted {
            return Ok(changes);
        }
        let (device_row, _) = check_device_for(&tx, &job, hostname)?;
        match job.target_group.clone() {
            None => reserve(&tx, &mut job, device_row, JobState::Scheduled, &mut changes)?,
            Some(group) => {
                reserve(
                    &tx,
                    &mut job,
                    device_row,
                    JobState::Scheduling,
                    &mut changes,
                )?;
                let waiting: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM jobs WHERE target_group = ?1 AND state <> 1",
                        [&group],
                        |r| r.get(0),
                    )
                    .step(step)?;
                if waiting == 0 {
                    for peer in group_ids(&tx, &group)? {
                        let mut peer = core(&tx, peer)?;
                        set_state(&tx, &mut peer, JobState::Scheduled)?;
                        record(&tx, &peer, &mut changes)?;
                    }
                }
            }
        }
        tx.commit().step(step)?;
        Ok(changes)
    }

    /// Dispatcher: the job started. Scheduled → Running, `start_time` set, device Running.
    /// Ignored if already Running or later; an error if not yet Scheduled.
    pub fn start_job(&mut self, id: JobId) -> Result<Changes, Error> {
        let step = "starting a job";
        let tx = self.write_tx(step)?;
        let mut job = core(&tx, id)?;
        let mut changes = Changes::default();
        if job.state >= JobState::Running {
            return Ok(changes);
        }
        if job.state != JobState::Scheduled {
            return Err(Error::Transition {
                job: id,
                from: job.state,
                to: JobState::Running,
            });
        }
        tx.execute(
            "UPDATE jobs SET state = 3, start_time = ?2 WHERE id = ?1",
            params![id.0, ts_to_sql(now())],
        )
        .step(step)?;
        job.state = JobState::Running;
        if let Some(device) = job.device {
            set_device_state(&tx, device, DeviceState::Running, None, &mut changes)?;
        }
        record(&tx, &job, &mut changes)?;
        tx.commit().step(step)?;
        Ok(changes)
    }

    /// Cancels a job (and its whole MultiNode group): Submitted jobs finish Canceled at
    /// once; Scheduling/Scheduled/Running jobs go to Canceling until the dispatcher
    /// reports the end; Canceling/Finished jobs are left alone.
    pub fn cancel_job(&mut self, id: JobId) -> Result<Changes, Error> {
        let tx = self.write_tx("canceling a job")?;
        let mut changes = Changes::default();
        cancel_in(&tx, id, &mut changes)?;
        tx.commit().step("canceling a job")?;
        Ok(changes)
    }

    /// Dispatcher: the job ended. Any state → Finished (health forced to Canceled if it was
    /// Canceling); `end_time` set (and `start_time` if unset); the device goes Idle and its
    /// health follows LAVA: a health check makes it Good or Bad (Looping stays), an
    /// infrastructure error makes it Unknown. Ignored if already Finished.
    pub fn finish_job(&mut self, id: JobId, end: &JobEnd) -> Result<Changes, Error> {
        if end.health == JobHealth::Unknown {
            return Err(Error::Invalid {
                what: "job end",
                reason: "a finished job needs a health other than Unknown".into(),
            });
        }
        let tx = self.write_tx("finishing a job")?;
        let job = core(&tx, id)?;
        let mut changes = Changes::default();
        finish_one(&tx, job, end, &mut changes)?;
        tx.commit().step("finishing a job")?;
        Ok(changes)
    }

    /// Cancels every Submitted job whose queue timeout has passed at `now` (whole MultiNode
    /// groups).
    pub fn cancel_expired_jobs(&mut self, now: OffsetDateTime) -> Result<Changes, Error> {
        let step = "canceling expired jobs";
        let tx = self.write_tx(step)?;
        let expired = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, submit_time, queue_timeout_secs FROM jobs \
                     WHERE state = 0 AND queue_timeout_secs IS NOT NULL ORDER BY id",
                )
                .step(step)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                })
                .step(step)?
                .collect::<Result<Vec<_>, _>>()
                .step(step)?;
            let mut expired = Vec::new();
            for (id, submitted, timeout) in rows {
                let submitted = ts_from_sql("jobs", &submitted)?;
                let timeout = timeout_from(Some(timeout)).unwrap_or_default();
                if submitted + timeout < now {
                    expired.push(JobId(id));
                }
            }
            expired
        };
        let mut changes = Changes::default();
        for id in expired {
            cancel_in(&tx, id, &mut changes)?;
        }
        tx.commit().step(step)?;
        Ok(changes)
    }

    /// One consistent read of the queue and the devices for a scheduler pass.
    pub fn scheduler_snapshot(&mut self) -> Result<SchedulerSnapshot, Error> {
        let step = "reading the scheduler snapshot";
        let tx = self.conn.transaction().step(step)?;
        let queued = {
            let mut stmt = tx
                .prepare(
                    "SELECT j.id, t.name, j.priority, j.submit_time, j.health_check, \
                     j.target_group, j.sub_id, u.username, j.queue_timeout_secs \
                     FROM jobs j JOIN users u ON u.id = j.submitter_id \
                     LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
                     WHERE j.state = 0 \
                     ORDER BY j.priority DESC, j.submit_time, j.sub_id, j.id",
                )
                .step(step)?;
            type Raw = (
                i64,
                Option<String>,
                i64,
                String,
                bool,
                Option<String>,
                Option<String>,
                String,
                Option<i64>,
            );
            let rows: Vec<Raw> = stmt
                .query_map([], |r| r.try_into())
                .step(step)?
                .collect::<Result<Vec<_>, _>>()
                .step(step)?;
            rows.into_iter()
                .map(|(id, dt, prio, submit, hc, group, sub, user, timeout)| {
                    Ok(QueuedJob {
                        id: JobId(id),
                        requested_device_type: dt,
                        tags: job_tags(&tx, id)?,
                        priority: priority_from("jobs", prio)?,
                        submit_time: ts_from_sql("jobs", &submit)?,
                        health_check: hc,
                        target_group: group,
                        sub_id: sub,
                        submitter: user,
                        queue_timeout: timeout_from(timeout),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?
        };
        let mut devices = Vec::new();
        let hostnames: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT hostname FROM devices WHERE health <> 5 ORDER BY hostname")
                .step(step)?;
            stmt.query_map([], |r| r.get(0))
                .step(step)?
                .collect::<Result<Vec<_>, _>>()
                .step(step)?
        };
        for hostname in hostnames {
            let Some(device) = read_device(&tx, &hostname)? else {
                continue;
            };
            let (last_end, since): (Option<String>, i64) = tx
                .query_row(
                    "SELECT (SELECT end_time FROM jobs WHERE id = d.last_health_report_job), \
                     (SELECT count(*) FROM jobs j WHERE j.actual_device_id = d.id \
                      AND j.state = 5 AND j.health_check = 0 \
                      AND j.end_time > coalesce((SELECT end_time FROM jobs \
                          WHERE id = d.last_health_report_job), '')) \
                     FROM devices d WHERE d.hostname = ?1",
                    [&hostname],
                    |r| r.try_into(),
                )
                .step(step)?;
            devices.push(DeviceSlot {
                device,
                last_health_check_end: opt_ts_from_sql("jobs", last_end)?,
                jobs_since_health_check: u64::try_from(since).unwrap_or(0),
            });
        }
        let device_types = devices::list_device_types(&tx)?;
        drop(tx);
        Ok(SchedulerSnapshot {
            queued,
            devices,
            device_types,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TestResult;
    use crate::store::testutil::store;
    use crate::store::{NewDevice, NewDeviceType, NewTestCase, NewUser};

    /// A store with user alice, type qemu, and devices q1, q2 (Good).
    fn lab() -> (tempfile::TempDir, Store) {
        let (dir, mut store) = store();
        store.create_user(&NewUser::named("alice")).unwrap();
        store
            .create_device_type(&NewDeviceType::named("qemu"))
            .unwrap();
        for host in ["q1", "q2"] {
            let mut dev = NewDevice::new(host, "qemu");
            dev.health = DeviceHealth::Good;
            store.create_device(&dev).unwrap();
        }
        (dir, store)
    }

    fn qemu_job() -> NewJob {
        let mut job = NewJob::new("alice", "device_type: qemu\n");
        job.requested_device_type = Some("qemu".into());
        job.description = "smoke".into();
        job
    }

    fn device(store: &Store, host: &str) -> (DeviceState, DeviceHealth) {
        let d = store.device(host).unwrap().unwrap();
        (d.state, d.health)
    }

    #[test]
    fn single_node_life_cycle() {
        let (_dir, mut store) = lab();
        let job = store.insert_job(&qemu_job()).unwrap();
        assert_eq!(
            (job.state, job.health),
            (JobState::Submitted, JobHealth::Unknown)
        );
        assert_eq!(job.submitter, "alice");
        assert_eq!(job.requested_device_type.as_deref(), Some("qemu"));

        // Running before scheduled is refused.
        assert!(matches!(
            store.start_job(job.id),
            Err(Error::Transition { .. })
        ));

        let changes = store.schedule_job(job.id, "q1").unwrap();
        assert_eq!(changes.jobs[0].state, JobState::Scheduled);
        assert_eq!(changes.jobs[0].device.as_deref(), Some("q1"));
        assert_eq!(changes.devices[0].state, DeviceState::Reserved);
        // The change records carry what the events show, as of the transition.
        assert_eq!(
            changes.devices[0].job,
            Some(CurrentJob {
                id: job.id,
                sub_id: None
            })
        );
        assert_eq!(changes.devices[0].device_type, "qemu");
        assert_eq!(changes.jobs[0].facts.submitter, "alice");
        assert_eq!(changes.jobs[0].facts.start_time, None);
        assert_eq!(
            store.device("q1").unwrap().unwrap().current_job,
            Some(job.id)
        );
        // Scheduling again is ignored.
        assert!(store.schedule_job(job.id, "q2").unwrap().is_empty());

        store.start_job(job.id).unwrap();
        assert_eq!(
            device(&store, "q1"),
            (DeviceState::Running, DeviceHealth::Good)
        );
        assert!(store.start_job(job.id).unwrap().is_empty());
        let running = store.job(job.id).unwrap().unwrap();
        assert!(running.start_time.is_some() && running.end_time.is_none());

        let changes = store.finish_job(job.id, &JobEnd::complete()).unwrap();
        assert_eq!(changes.jobs[0].health, JobHealth::Complete);
        assert!(changes.jobs[0].facts.end_time.is_some());
        assert!(changes.jobs[0].facts.start_time.is_some());
        assert_eq!(changes.devices[0].job, None);
        assert_eq!(
            device(&store, "q1"),
            (DeviceState::Idle, DeviceHealth::Good)
        );
        let done = store.job(job.id).unwrap().unwrap();
        assert_eq!(
            (done.state, done.health),
            (JobState::Finished, JobHealth::Complete)
        );
        assert!(done.end_time >= done.start_time);
        // Monotonic: nothing moves a finished job.
        assert!(store.cancel_job(job.id).unwrap().is_empty());
        assert!(
            store
                .finish_job(job.id, &JobEnd::incomplete(ErrorType::Job, "x"))
                .unwrap()
                .is_empty()
        );
        assert!(store.schedule_job(job.id, "q1").unwrap().is_empty());
        assert_eq!(
            store.job(job.id).unwrap().unwrap().health,
            JobHealth::Complete
        );
        assert!(store.device("q1").unwrap().unwrap().current_job.is_none());
    }

    #[test]
    fn device_must_be_free_good_and_matching() {
        let (_dir, mut store) = lab();
        store
            .create_device_type(&NewDeviceType::named("bbb"))
            .unwrap();
        let mut bbb = NewDevice::new("bbb1", "bbb");
        bbb.health = DeviceHealth::Good;
        store.create_device(&bbb).unwrap();
        let first = store.insert_job(&qemu_job()).unwrap();
        let second = store.insert_job(&qemu_job()).unwrap();
        store.schedule_job(first.id, "q1").unwrap();
        let err = store.schedule_job(second.id, "q1").unwrap_err();
        assert!(matches!(err, Error::DeviceUnavailable { .. }), "{err:?}");
        assert!(matches!(
            store.schedule_job(second.id, "bbb1"),
            Err(Error::Invalid { .. })
        ));
        store
            .set_device_health("q2", DeviceHealth::Unknown)
            .unwrap();
        assert!(matches!(
            store.schedule_job(second.id, "q2"),
            Err(Error::DeviceUnavailable { .. })
        ));
        // The failed attempts changed nothing.
        assert_eq!(
            store.job(second.id).unwrap().unwrap().state,
            JobState::Submitted
        );
        assert_eq!(
            device(&store, "q2"),
            (DeviceState::Idle, DeviceHealth::Unknown)
        );

        // Tags: the device needs every tag of the job.
        store.create_tag("usb", None).unwrap();
        let mut tagged = qemu_job();
        tagged.tags = vec!["usb".into()];
        let tagged = store.insert_job(&tagged).unwrap();
        store.set_device_health("q2", DeviceHealth::Good).unwrap();
        assert!(matches!(
            store.schedule_job(tagged.id, "q2"),
            Err(Error::Invalid { .. })
        ));
        store.add_device_tag("q2", "usb").unwrap();
        store.schedule_job(tagged.id, "q2").unwrap();
    }

    #[test]
    fn health_checks_set_device_health() {
        let (_dir, mut store) = lab();
        store
            .set_device_health("q1", DeviceHealth::Unknown)
            .unwrap();
        let (hc, changes) = store.insert_health_check("q1", &qemu_job()).unwrap();
        assert!(hc.health_check);
        assert_eq!(hc.state, JobState::Scheduled);
        assert_eq!(changes.devices[0].state, DeviceState::Reserved);
        store.start_job(hc.id).unwrap();
        store.finish_job(hc.id, &JobEnd::complete()).unwrap();
        assert_eq!(
            device(&store, "q1"),
            (DeviceState::Idle, DeviceHealth::Good)
        );
        assert_eq!(
            store.device("q1").unwrap().unwrap().last_health_report_job,
            Some(hc.id)
        );

        let (hc, _) = store.insert_health_check("q1", &qemu_job()).unwrap();
        store.start_job(hc.id).unwrap();
        store
            .finish_job(hc.id, &JobEnd::incomplete(ErrorType::Test, "boot failed"))
            .unwrap();
        assert_eq!(device(&store, "q1"), (DeviceState::Idle, DeviceHealth::Bad));
        let failed = store.job(hc.id).unwrap().unwrap();
        assert_eq!(failed.failure_comment.as_deref(), Some("boot failed"));
        assert_eq!(failed.error_type, Some(ErrorType::Test));

        // Bad devices take nothing, not even health checks.
        assert!(matches!(
            store.insert_health_check("q1", &qemu_job()),
            Err(Error::DeviceUnavailable { .. })
        ));
        // Looping stays Looping whatever the result.
        store
            .set_device_health("q1", DeviceHealth::Looping)
            .unwrap();
        let (hc, _) = store.insert_health_check("q1", &qemu_job()).unwrap();
        store
            .finish_job(hc.id, &JobEnd::incomplete(ErrorType::Infrastructure, "x"))
            .unwrap();
        assert_eq!(
            device(&store, "q1"),
            (DeviceState::Idle, DeviceHealth::Looping)
        );
        // A canceled health check makes the device Bad.
        store.set_device_health("q1", DeviceHealth::Good).unwrap();
        let (hc, _) = store.insert_health_check("q1", &qemu_job()).unwrap();
        store.cancel_job(hc.id).unwrap();
        store.finish_job(hc.id, &JobEnd::complete()).unwrap();
        assert_eq!(
            store.job(hc.id).unwrap().unwrap().health,
            JobHealth::Canceled
        );
        assert_eq!(device(&store, "q1"), (DeviceState::Idle, DeviceHealth::Bad));
    }

    #[test]
    fn infrastructure_errors_make_the_device_unknown() {
        let (_dir, mut store) = lab();
        let job = store.insert_job(&qemu_job()).unwrap();
        store.schedule_job(job.id, "q1").unwrap();
        store.start_job(job.id).unwrap();
        let changes = store
            .finish_job(
                job.id,
                &JobEnd::incomplete(ErrorType::Infrastructure, "serial closed"),
            )
            .unwrap();
        assert_eq!(
            changes.devices,
            [DeviceChange {
                hostname: "q1".into(),
                state: DeviceState::Idle,
                health: DeviceHealth::Unknown,
                device_type: "qemu".into(),
                worker: None,
                job: None,
            }]
        );
        // A job error leaves the device's health alone.
        let job = store.insert_job(&qemu_job()).unwrap();
        store.schedule_job(job.id, "q2").unwrap();
        store
            .finish_job(job.id, &JobEnd::incomplete(ErrorType::Job, "bad url"))
            .unwrap();
        assert_eq!(
            device(&store, "q2"),
            (DeviceState::Idle, DeviceHealth::Good)
        );
        // Finishing without a health is refused.
        let job = store.insert_job(&qemu_job()).unwrap();
        let mut end = JobEnd::complete();
        end.health = JobHealth::Unknown;
        assert!(matches!(
            store.finish_job(job.id, &end),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn cancel_follows_lava() {
        let (_dir, mut store) = lab();
        // Submitted → Finished/Canceled directly.
        let queued = store.insert_job(&qemu_job()).unwrap();
        let changes = store.cancel_job(queued.id).unwrap();
        assert_eq!(changes.jobs[0].state, JobState::Finished);
        assert_eq!(changes.jobs[0].health, JobHealth::Canceled);
        let queued = store.job(queued.id).unwrap().unwrap();
        assert!(queued.start_time.is_some() && queued.end_time.is_some());

        // Running → Canceling; the end forces Canceled whatever the report.
        let job = store.insert_job(&qemu_job()).unwrap();
        store.schedule_job(job.id, "q1").unwrap();
        store.start_job(job.id).unwrap();
        let changes = store.cancel_job(job.id).unwrap();
        assert_eq!(changes.jobs[0].state, JobState::Canceling);
        assert!(changes.devices.is_empty());
        assert_eq!(device(&store, "q1").0, DeviceState::Running);
        assert!(store.cancel_job(job.id).unwrap().is_empty());
        store.finish_job(job.id, &JobEnd::complete()).unwrap();
        assert_eq!(
            store.job(job.id).unwrap().unwrap().health,
            JobHealth::Canceled
        );
        assert_eq!(device(&store, "q1").0, DeviceState::Idle);

        // Retiring a device cancels its job.
        let job = store.insert_job(&qemu_job()).unwrap();
        store.schedule_job(job.id, "q2").unwrap();
        let changes = store
            .set_device_health("q2", DeviceHealth::Retired)
            .unwrap();
        assert_eq!(changes.jobs[0].state, JobState::Canceling);
        assert_eq!(changes.devices[0].health, DeviceHealth::Retired);
    }

    #[test]
    fn multinode_group_is_atomic_and_moves_together() {
        let (_dir, mut store) = lab();
        let jobs = store
            .insert_multinode(&[qemu_job(), qemu_job()], "multinode yaml")
            .unwrap();
        assert_eq!(jobs.len(), 2);
        let first = jobs[0].id;
        assert_eq!(jobs[0].sub_id, Some(format!("{first}.0")));
        assert_eq!(jobs[1].sub_id, Some(format!("{first}.1")));
        assert_eq!(jobs[1].id.0, first.0 + 1);
        assert_eq!(jobs[0].target_group, jobs[1].target_group);
        assert_eq!(jobs[1].multinode_definition, "multinode yaml");
        assert_eq!(
            store
                .job_by_sub_id(&format!("{first}.1"))
                .unwrap()
                .map(|j| j.id),
            Some(jobs[1].id)
        );

        let changes = store.schedule_job(jobs[0].id, "q1").unwrap();
        assert_eq!(changes.jobs[0].state, JobState::Scheduling);
        let changes = store.schedule_job(jobs[1].id, "q2").unwrap();
        let states: Vec<_> = changes.jobs.iter().map(|j| (j.id, j.state)).collect();
        assert!(states.contains(&(jobs[0].id, JobState::Scheduled)));
        assert!(states.contains(&(jobs[1].id, JobState::Scheduled)));

        // An essential role failing cancels the peers.
        store.start_job(jobs[0].id).unwrap();
        store.start_job(jobs[1].id).unwrap();
        let mut end = JobEnd::incomplete(ErrorType::Test, "server died");
        end.cancel_peers = true;
        let changes = store.finish_job(jobs[0].id, &end).unwrap();
        assert!(
            changes
                .jobs
                .iter()
                .any(|j| j.id == jobs[1].id && j.state == JobState::Canceling)
        );

        // A sub-job that fails to insert leaves no partial group behind.
        let mut bad = qemu_job();
        bad.requested_device_type = Some("nope".into());
        let before = store.count_jobs(&JobFilter::default()).unwrap();
        assert!(matches!(
            store.insert_multinode(&[qemu_job(), bad], "x"),
            Err(Error::NotFound {
                kind: "device type",
                ..
            })
        ));
        assert_eq!(store.count_jobs(&JobFilter::default()).unwrap(), before);

        // Canceling one sub-job cancels the group.
        let group = store
            .insert_multinode(&[qemu_job(), qemu_job()], "x")
            .unwrap();
        let changes = store.cancel_job(group[1].id).unwrap();
        assert_eq!(changes.jobs.len(), 2);
        assert!(changes.jobs.iter().all(|j| j.health == JobHealth::Canceled));
    }

    #[test]
    fn insert_validates_references() {
        let (_dir, mut store) = lab();
        let mut job = qemu_job();
        job.submitter = "nobody".into();
        assert!(matches!(
            store.insert_job(&job),
            Err(Error::NotFound { kind: "user", .. })
        ));
        let mut job = qemu_job();
        job.tags = vec!["missing".into()];
        assert!(matches!(
            store.insert_job(&job),
            Err(Error::NotFound { kind: "tag", .. })
        ));
        let mut job = qemu_job();
        job.visibility = Visibility::Group(vec!["ghosts".into()]);
        assert!(matches!(
            store.insert_job(&job),
            Err(Error::NotFound { kind: "group", .. })
        ));
        store.add_alias("kvm", "qemu").unwrap();
        let mut job = qemu_job();
        job.requested_device_type = Some("kvm".into());
        let job = store.insert_job(&job).unwrap();
        assert_eq!(job.requested_device_type.as_deref(), Some("qemu"));
        assert_eq!(store.count_jobs(&JobFilter::default()).unwrap(), 1);
        assert!(matches!(
            store.start_job(JobId(999)),
            Err(Error::NotFound { kind: "job", .. })
        ));
    }

    #[test]
    fn list_filters_orders_and_paginates() {
        let (_dir, mut store) = lab();
        store.create_user(&NewUser::named("bob")).unwrap();
        store.create_group("lab").unwrap();
        store.add_group_member("lab", "bob").unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut job = qemu_job();
            job.visibility = match i {
                0 => Visibility::Personal,
                1 => Visibility::Group(vec!["lab".into()]),
                _ => Visibility::Public,
            };
            ids.push(store.insert_job(&job).unwrap().id);
        }
        store.cancel_job(ids[4]).unwrap();

        let all = store.jobs(&JobFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|j| j.id).collect::<Vec<_>>(),
            ids.iter().rev().copied().collect::<Vec<_>>()
        );
        let page = store
            .jobs(&JobFilter {
                order: JobOrder {
                    field: JobOrderField::SubmitTime,
                    descending: false,
                },
                offset: 1,
                limit: Some(2),
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), &ids[1..3]);
        let finished = JobFilter {
            states: vec![JobState::Finished],
            health: Some(JobHealth::Canceled),
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&finished).unwrap(), 1);
        let submitted = JobFilter {
            states: vec![JobState::Submitted],
            submitter: Some("alice".into()),
            requested_device_types: vec!["qemu".into(), "other".into()],
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&submitted).unwrap(), 4);

        let anonymous = JobFilter {
            viewer: Viewer::Anonymous,
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&anonymous).unwrap(), 3);
        let bob = store.user("bob").unwrap().unwrap().id;
        let alice = store.user("alice").unwrap().unwrap().id;
        let as_bob = JobFilter {
            viewer: Viewer::User(bob),
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&as_bob).unwrap(), 4);
        assert!(!store.can_view_job(ids[0], Viewer::User(bob)).unwrap());
        assert!(store.can_view_job(ids[0], Viewer::User(alice)).unwrap());
        assert!(store.can_view_job(ids[1], Viewer::User(bob)).unwrap());
        assert!(!store.can_view_job(ids[1], Viewer::Anonymous).unwrap());
        assert_eq!(
            store.job(ids[1]).unwrap().unwrap().visibility,
            Visibility::Group(vec!["lab".into()])
        );
    }

    #[test]
    fn queue_timeout_and_snapshot() {
        let (_dir, mut store) = lab();
        let mut low = qemu_job();
        low.priority = Priority::new(10).unwrap();
        low.queue_timeout = Some(Duration::from_secs(60));
        let low = store.insert_job(&low).unwrap();
        let mut high = qemu_job();
        high.priority = Priority::new(90).unwrap();
        let high = store.insert_job(&high).unwrap();

        let snap = store.scheduler_snapshot().unwrap();
        assert_eq!(
            snap.queued.iter().map(|q| q.id).collect::<Vec<_>>(),
            [high.id, low.id]
        );
        assert_eq!(snap.devices.len(), 2);
        assert_eq!(snap.devices[0].device.hostname, "q1");
        assert_eq!(snap.device_types[0].name, "qemu");

        // A health check then two jobs on q1.
        let (hc, _) = store.insert_health_check("q1", &qemu_job()).unwrap();
        store.finish_job(hc.id, &JobEnd::complete()).unwrap();
        store.schedule_job(high.id, "q1").unwrap();
        store.finish_job(high.id, &JobEnd::complete()).unwrap();
        let snap = store.scheduler_snapshot().unwrap();
        assert_eq!(snap.devices[0].jobs_since_health_check, 1);
        assert!(snap.devices[0].last_health_check_end.is_some());
        assert_eq!(snap.devices[1].last_health_check_end, None);

        assert!(
            store
                .cancel_expired_jobs(now() + Duration::from_secs(30))
                .unwrap()
                .is_empty()
        );
        let changes = store
            .cancel_expired_jobs(now() + Duration::from_secs(120))
            .unwrap();
        assert_eq!(changes.jobs.len(), 1);
        assert_eq!(changes.jobs[0].id, low.id);
        assert_eq!(changes.jobs[0].health, JobHealth::Canceled);
    }

    #[test]
    fn results_metadata_and_log_index() {
        let (_dir, mut store) = lab();
        let job = store.insert_job(&qemu_job()).unwrap();
        let mut measured = NewTestCase::new("0_smoke", "latency", TestResult::Pass);
        measured.measurement = Some(12.5);
        measured.units = "ms".into();
        measured.test_set = Some("net".into());
        measured.start_log_line = Some(10);
        measured.end_log_line = Some(12);
        measured.metadata = Some("{case: latency}".into());
        let ids = store
            .insert_test_cases(
                job.id,
                &[
                    NewTestCase::new("lava", "job", TestResult::Pass),
                    measured,
                    NewTestCase::new("0_smoke", "boot", TestResult::Fail),
                ],
            )
            .unwrap();
        assert_eq!(ids.len(), 3);
        let suites = store.test_suites(job.id).unwrap();
        assert_eq!(
            suites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["lava", "0_smoke"]
        );
        assert_eq!(store.count_test_cases(job.id, None).unwrap(), 3);
        assert_eq!(store.count_test_cases(job.id, Some("0_smoke")).unwrap(), 2);
        let smoke = store.test_cases(job.id, Some("0_smoke"), 0, None).unwrap();
        assert_eq!(smoke[0].measurement, Some(12.5));
        assert_eq!(smoke[0].test_set.as_deref(), Some("net"));
        assert_eq!(smoke[0].end_log_line, Some(12));
        assert_eq!(smoke[1].result, TestResult::Fail);
        let page = store.test_cases(job.id, None, 1, Some(1)).unwrap();
        assert_eq!(page[0].id, ids[1]);
        assert_eq!(store.test_case(ids[2]).unwrap().unwrap().name, "boot");
        // A bad case rolls the whole batch back.
        assert!(
            store
                .insert_test_cases(
                    job.id,
                    &[
                        NewTestCase::new("x", "ok", TestResult::Pass),
                        NewTestCase::new("x", "", TestResult::Pass)
                    ]
                )
                .is_err()
        );
        assert_eq!(store.count_test_cases(job.id, None).unwrap(), 3);
        assert!(matches!(
            store.insert_test_cases(JobId(999), &[]),
            Err(Error::NotFound { .. })
        ));

        store
            .set_job_metadata(
                job.id,
                &[
                    ("boot.commands".into(), "ramdisk".into()),
                    ("source".into(), "a".into()),
                    ("source".into(), "b".into()),
                ],
            )
            .unwrap();
        assert_eq!(
            store.job_metadata(job.id).unwrap(),
            [
                ("boot.commands".to_string(), "ramdisk".to_string()),
                ("source".to_string(), "b".to_string())
            ]
        );
    }

    #[test]
    fn check_constraints_guard_the_state_invariants() {
        let (_dir, mut store) = lab();
        let job = store.insert_job(&qemu_job()).unwrap();
        // Finished without a health (or health without Finished) is refused by the schema.
        let err = store
            .conn
            .execute("UPDATE jobs SET state = 5 WHERE id = ?1", [job.id.0])
            .step("forcing a bad state")
            .unwrap_err();
        assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
        let err = store
            .conn
            .execute("UPDATE jobs SET priority = 101 WHERE id = ?1", [job.id.0])
            .step("forcing a bad priority")
            .unwrap_err();
        assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
    }
}
