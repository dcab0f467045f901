//! LAVA's life cycle applied to the database: scheduling, starting, canceling and finishing
//! jobs, with their device's state and health, each request in one transaction, as LAVA's
//! `go_state_*` methods and `Device.testjob_signal` do.
//!
//! `model::lifecycle` decides what each request does; this module reads the job and device
//! it needs, applies the decision and records the [`Changes`] so the caller can publish
//! `.testjob` / `.device` events. Transitions are monotonic: asking for a state the job has
//! already reached or passed is ignored and reports no change. States are written as their
//! codes, bound or formatted once, never as numbers in SQL.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::changes::{Changes, CurrentJob, DeviceChange, JobChange, JobFacts};
use super::devices::{device_id, read_device};
use super::error::{Error, Step};
use super::jobs::{Job, NewJob, insert_row, job_tags, priority_from, read_job, timeout_from};
use super::update::SetColumns;
use super::{
    Device, HOLDING_DEVICE_CODES, Store, decode, now, opt_ts_from_sql, ts_from_sql, ts_to_sql,
};
use crate::model::lifecycle::{self, Cancel, FinishedJob, JobEnd, Start};
use crate::model::{DeviceHealth, DeviceState, ErrorType, JobHealth, JobId, JobState};

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

/// The states of every sub-job of MultiNode group `group`.
fn group_states(conn: &Connection, group: &str) -> Result<Vec<JobState>, Error> {
    let step = "reading a MultiNode group";
    let mut stmt = conn
        .prepare_cached("SELECT state FROM jobs WHERE target_group = ?1 ORDER BY id")
        .step(step)?;
    let codes = stmt
        .query_map([group], |r| r.get::<_, i64>(0))
        .step(step)?
        .collect::<Result<Vec<_>, _>>()
        .step(step)?;
    codes
        .into_iter()
        .map(|code| decode("jobs", "job state", code, JobState::from_code))
        .collect()
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

/// Refuses a move LAVA's state machine does not make, whatever asked for it: the one guard
/// every transition below passes.
fn check_move(job: &Core, to: JobState) -> Result<(), Error> {
    if job.state.may_move_to(to) {
        Ok(())
    } else {
        Err(Error::Transition {
            job: job.id,
            from: job.state,
            to,
        })
    }
}

/// Moves `job` to `to`, setting `columns` in the same statement.
fn move_job(
    conn: &Connection,
    job: &mut Core,
    to: JobState,
    columns: SetColumns,
    step: &'static str,
) -> Result<(), Error> {
    check_move(job, to)?;
    columns.set("state", to.code()).run(conn, job.id.0, step)?;
    job.state = to;
    Ok(())
}

/// Moves `job`'s device to the state its new job state gives it, if any.
fn follow_job(conn: &Connection, job: &Core, changes: &mut Changes) -> Result<(), Error> {
    if let (Some(device), Some(state)) = (job.device, job.state.device_state()) {
        set_device_state(conn, device, state, None, changes)?;
    }
    Ok(())
}

/// Checks that `hostname` can take `job` now; returns the device row id and the device.
fn check_device_for(conn: &Connection, job: &Core, hostname: &str) -> Result<(i64, Device), Error> {
    let device = read_device(conn, hostname)?.ok_or_else(|| Error::NotFound {
        kind: "device",
        name: hostname.to_owned(),
    })?;
    if !lifecycle::device_accepts(device.state, device.health, job.health_check) {
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

/// Puts `job` on device `device_row` in `state` (Scheduling or Scheduled): the device is
/// Reserved.
fn reserve(
    conn: &Connection,
    job: &mut Core,
    device_row: i64,
    state: JobState,
    changes: &mut Changes,
) -> Result<(), Error> {
    let columns = SetColumns::new("jobs", "id").set("actual_device_id", device_row);
    move_job(conn, job, state, columns, "scheduling a job")?;
    job.device = Some(device_row);
    follow_job(conn, job, changes)?;
    record(conn, job, changes)
}

/// Cancels `id` and, for MultiNode, every job of its group.
fn cancel_in(conn: &Connection, id: JobId, changes: &mut Changes) -> Result<(), Error> {
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
    match lifecycle::cancel(job.state) {
        Cancel::Ignore => Ok(()),
        Cancel::Finish(end) => finish_one(conn, job, &end, changes),
        Cancel::Canceling => {
            let columns = SetColumns::new("jobs", "id");
            move_job(
                conn,
                &mut job,
                JobState::Canceling,
                columns,
                "canceling a job",
            )?;
            follow_job(conn, &job, changes)?;
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
    let Some(health) = lifecycle::finished_health(job.state, end) else {
        return Ok(());
    };
    check_move(&job, JobState::Finished)?;
    let now = ts_to_sql(now());
    conn.execute(
        "UPDATE jobs SET state = ?6, health = ?2, start_time = coalesce(start_time, ?3), \
         end_time = ?3, error_type = coalesce(?4, error_type), \
         failure_comment = coalesce(?5, failure_comment) WHERE id = ?1",
        params![
            job.id.0,
            health.code(),
            now,
            end.error_type.map(ErrorType::code),
            end.failure_comment,
            JobState::Finished.code()
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
        let finished = FinishedJob {
            health_check: job.health_check,
            health,
            error_type: end.error_type,
        };
        let after = lifecycle::device_after(finished, current);
        if after.health_report {
            SetColumns::new("devices", "id")
                .set("last_health_report_job", job.id.0)
                .run(conn, device, "recording a health report")?;
        }
        set_device_state(conn, device, after.state, Some(after.health), changes)?;
    }

    if lifecycle::cancels_peers(health, end)
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

/// Updates the device's state (and health, when given) inside a job transition.
fn set_device_state(
    conn: &Connection,
    device_row_id: i64,
    state: DeviceState,
    health: Option<DeviceHealth>,
    changes: &mut Changes,
) -> Result<(), Error> {
    let step = "updating device state";
    let (hostname, old_state, old_health): (String, i64, i64) = conn
        .query_row(
            "SELECT hostname, state, health FROM devices WHERE id = ?1",
            [device_row_id],
            |r| r.try_into(),
        )
        .step(step)?;
    let old_health = decode(
        "devices",
        "device health",
        old_health,
        DeviceHealth::from_code,
    )?;
    let new_health = health.unwrap_or(old_health);
    if old_state == state.code() && old_health == new_health {
        return Ok(());
    }
    SetColumns::new("devices", "id")
        .set("state", state.code())
        .set("health", new_health.code())
        .run(conn, device_row_id, step)?;
    record_device(conn, &hostname, state, new_health, changes)
}

/// What a `.device` event shows besides state and health: type, worker and the job
/// holding the device now (`?1` is the hostname).
static DEVICE_FACTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.name, d.worker_name, j.id, \
         CASE WHEN j.target_group IS NULL THEN NULL ELSE j.sub_id END \
         FROM devices d JOIN device_types t ON t.id = d.device_type_id \
         LEFT JOIN jobs j ON j.id = (SELECT c.id FROM jobs c \
           WHERE c.actual_device_id = d.id AND c.state IN ({}) ORDER BY c.id LIMIT 1) \
         WHERE d.hostname = ?1",
        *HOLDING_DEVICE_CODES
    )
});

/// Records a device's change with what its event shows, read in the same transaction.
fn record_device(
    conn: &Connection,
    hostname: &str,
    state: DeviceState,
    health: DeviceHealth,
    changes: &mut Changes,
) -> Result<(), Error> {
    let step = "reading a changed device";
    let (device_type, worker, job, sub_id): (String, Option<String>, Option<i64>, Option<String>) =
        conn.prepare_cached(&DEVICE_FACTS)
            .step(step)?
            .query_row([hostname], |r| r.try_into())
            .step(step)?;
    changes.device(DeviceChange {
        hostname: hostname.to_owned(),
        state,
        health,
        device_type,
        worker,
        job: job.map(|id| CurrentJob {
            id: JobId(id),
            sub_id,
        }),
    });
    Ok(())
}

impl Store {
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
        let Some(state) = lifecycle::schedule(job.state, job.target_group.is_some()) else {
            return Ok(changes);
        };
        let (device_row, _) = check_device_for(&tx, &job, hostname)?;
        reserve(&tx, &mut job, device_row, state, &mut changes)?;
        if let Some(group) = job.target_group.clone()
            && lifecycle::group_ready(&group_states(&tx, &group)?)
        {
            for peer in group_ids(&tx, &group)? {
                let mut peer = core(&tx, peer)?;
                let columns = SetColumns::new("jobs", "id");
                move_job(&tx, &mut peer, JobState::Scheduled, columns, step)?;
                record(&tx, &peer, &mut changes)?;
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
        match lifecycle::start(job.state) {
            Start::Ignore => return Ok(changes),
            Start::Refuse => {
                return Err(Error::Transition {
                    job: id,
                    from: job.state,
                    to: JobState::Running,
                });
            }
            Start::Run => {}
        }
        let columns = SetColumns::new("jobs", "id").set("start_time", ts_to_sql(now()));
        move_job(&tx, &mut job, JobState::Running, columns, step)?;
        follow_job(&tx, &job, &mut changes)?;
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
    /// health follows [`lifecycle::device_after`]. Ignored if already Finished.
    pub fn finish_job(&mut self, id: JobId, end: &JobEnd) -> Result<Changes, Error> {
        end.check().map_err(|err| Error::Invalid {
            what: "job end",
            reason: err.to_string(),
        })?;
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
                     WHERE state = ?1 AND queue_timeout_secs IS NOT NULL ORDER BY id",
                )
                .step(step)?;
            let rows = stmt
                .query_map([JobState::Submitted.code()], |r| {
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

    /// Sets a device's health (admin action, `put_into_maintenance_mode`, ...).
    ///
    /// Retiring a device cancels the job holding it, in the same transaction.
    pub fn set_device_health(
        &mut self,
        hostname: &str,
        health: DeviceHealth,
    ) -> Result<Changes, Error> {
        let step = "setting device health";
        let tx = self.write_tx(step)?;
        let device = read_device(&tx, hostname)?.ok_or_else(|| Error::NotFound {
            kind: "device",
            name: hostname.to_owned(),
        })?;
        let mut changes = Changes::default();
        if device.health != health {
            SetColumns::new("devices", "hostname")
                .set("health", health.code())
                .run(&tx, hostname, step)?;
            record_device(&tx, &device.hostname, device.state, health, &mut changes)?;
        }
        if lifecycle::cancels_current_job(health)
            && let Some(job) = device.current_job
        {
            cancel_in(&tx, job, &mut changes)?;
        }
        tx.commit().step(step)?;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests;
