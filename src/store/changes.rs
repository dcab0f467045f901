//! The change records every state transition returns: which jobs and devices changed, each
//! with everything its `.testjob` / `.device` event shows, captured inside the transaction
//! that made the change so a late render never shows a later state.
//!
//! Plain data: filled by `store::lifecycle`, read by `App::changed` and `events`.

use time::OffsetDateTime;

use super::Job;
use crate::model::{DeviceHealth, DeviceState, JobHealth, JobId, JobState, Priority};

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

    pub(super) fn job(&mut self, change: JobChange) {
        match self.jobs.iter_mut().find(|j| j.id == change.id) {
            Some(existing) => *existing = change,
            None => self.jobs.push(change),
        }
    }
}
