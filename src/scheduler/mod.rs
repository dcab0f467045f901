//! Scheduling: a pure [`plan()`] over a [`Snapshot`] of queue, devices and workers.
//!
//! The loop that loads a snapshot from the store and applies the decisions is [`run`]; it
//! reads the store through [`snapshot`], applies decisions in [`apply`] and runs each job in a
//! [`job_task`]. The pure core ([`plan()`] and these types) touches neither the store, the
//! clock nor tokio. The rules follow
//! LAVA 2023.01 (states and device-types references) with one deliberate change: a MultiNode
//! group is placed all at once or not at all (LAVA reserves devices one sub-job at a time and
//! can leave a group half-reserved).
//!
//! How to apply a plan:
//! - [`Decision::MarkBad`]: device health → Bad, admin log "Invalid device configuration".
//! - [`Decision::HealthCheck`]: create a health-check job (user `lava-health`) from the
//!   device type's health check, directly Scheduled on the device; device → Reserved.
//! - [`Decision::Assign`]: job → Scheduled on the device; device → Reserved.
//! - [`Decision::AssignGroup`]: every sub-job → Scheduled on its device (dynamic-connection
//!   sub-jobs without a device), `roles` written into each definition; devices → Reserved.
//! - [`Decision::Hold`]: nothing to apply; the devices stay Idle this round because a waiting
//!   higher-priority group can use them (shown to users as why a job waits).
//! - [`Decision::CancelQueueTimeout`]: job (or whole group) → Canceling.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::model::{DeviceHealth, DeviceState, GroupId, JobId, Priority, UserId};

pub mod apply;
pub mod job_task;
pub mod plan;
pub mod run;
pub mod snapshot;

#[cfg(test)]
mod tests;

pub use apply::HEALTH_CHECK_USER;
pub use job_task::{JobRunner, RESTARTED, recover};
pub use plan::plan;
pub use run::Scheduler;

/// Who submitted a job, for device access checks: [`crate::access::Person`] keyed by ids.
pub type Submitter = crate::access::Person<UserId, GroupId>;

/// Who may submit jobs to a device: [`crate::access::DeviceAccess`] keyed by ids, so the
/// scheduler applies the same rule ([`Access::allows`]) as the APIs and submission.
pub type Access = crate::access::DeviceAccess<UserId, GroupId>;

/// MultiNode membership of a queued sub-job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The group's `target_group` UUID.
    pub target_group: String,
    /// This sub-job's role.
    pub role: String,
    /// N of the sub id `P.N`.
    pub sub_id: u32,
    /// Number of sub-jobs in the group (sum of role counts).
    pub group_size: u32,
    /// A `connection:` role without a device of its own: it rides on its host role's device.
    pub dynamic_connection: bool,
}

/// What kind of queued job this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// An ordinary single-node job.
    Single,
    /// A health check already created for one device (e.g. requested by an admin).
    HealthCheck {
        /// The device it must run on.
        device: String,
    },
    /// A sub-job of a MultiNode group; the other members are in the snapshot too.
    MultiNode(GroupMember),
}

/// A job in state Submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// Job id.
    pub id: JobId,
    /// Priority (higher first).
    pub priority: Priority,
    /// Submission time (earlier first).
    pub submit_time: OffsetDateTime,
    /// Requested device type; `None` only for dynamic-connection sub-jobs and health checks.
    pub device_type: Option<String>,
    /// Tags every device must carry.
    pub tags: BTreeSet<String>,
    /// Who submitted it.
    pub submitter: Submitter,
    /// Single, health check or MultiNode.
    pub kind: JobKind,
    /// `submit_time + timeouts.queue`, if the job has a queue timeout.
    pub queue_deadline: Option<OffsetDateTime>,
}

/// Whether and when a device needs a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckState {
    /// The device type has no health check (or it is disabled).
    None,
    /// A health check exists and is not due.
    NotDue,
    /// A health check exists and is due (no previous one, or `health_frequency` reached).
    Due,
}

/// A device as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Hostname (unique).
    pub hostname: String,
    /// Device type name.
    pub device_type: String,
    /// Idle, Reserved or Running.
    pub state: DeviceState,
    /// Health.
    pub health: DeviceHealth,
    /// Tags it carries.
    pub tags: BTreeSet<String>,
    /// Who may use it.
    pub access: Access,
    /// Hostname of its worker.
    pub worker: String,
    /// Health-check situation of the device.
    pub health_check: HealthCheckState,
    /// Why its device dictionary does not render, if it does not.
    pub config_error: Option<String>,
}

/// A worker as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Hostname.
    pub hostname: String,
    /// State Online and health Active; otherwise its devices are not scheduled.
    pub online: bool,
    /// Maximum number of Reserved/Running devices; 0 means unlimited.
    pub job_limit: u32,
    /// Devices currently Reserved or Running on it.
    pub busy: u32,
}

/// How devices of equal standing are tried. LAVA shuffles them; a seed keeps that fair
/// while each plan stays reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceOrder {
    /// By hostname.
    #[default]
    ByName,
    /// Pseudo-random order derived from the seed and the hostname.
    Seeded(u64),
}

/// Everything [`plan()`] looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Jobs in state Submitted (any order).
    pub jobs: Vec<QueuedJob>,
    /// All devices (any order).
    pub devices: Vec<Device>,
    /// All workers (a device whose worker is missing counts as offline).
    pub workers: Vec<Worker>,
    /// Device order among equals.
    pub device_order: DeviceOrder,
}

/// Which queued job(s) a queue timeout cancels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    /// One single-node job.
    Job(JobId),
    /// A whole MultiNode group.
    Group {
        /// The group.
        target_group: String,
        /// Its queued sub-jobs.
        jobs: Vec<JobId>,
    },
}

/// One scheduling decision; see the module documentation for how to apply each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The device's configuration is invalid: set its health to Bad.
    MarkBad {
        /// Device.
        device: String,
        /// Reason for the admin log.
        reason: String,
    },
    /// Create and schedule a health check on the device.
    HealthCheck {
        /// Device.
        device: String,
    },
    /// Schedule a single-node job (or a queued health check) on a device.
    Assign {
        /// Job.
        job: JobId,
        /// Device.
        device: String,
    },
    /// Schedule a whole MultiNode group.
    AssignGroup {
        /// The group.
        target_group: String,
        /// Sub-jobs and their devices, by sub id.
        assignments: Vec<(JobId, String)>,
        /// Dynamic-connection sub-jobs (no device of their own).
        dynamic: Vec<JobId>,
    },
    /// Devices kept Idle this round for a waiting higher-priority group.
    Hold {
        /// The group.
        target_group: String,
        /// The devices held.
        devices: Vec<String>,
    },
    /// Cancel job(s) whose queue timeout expired.
    CancelQueueTimeout(CancelTarget),
}
