//! LAVA's job and device life cycle as pure rules: which job state may follow which, what
//! each request (schedule, start, cancel, finish) does to a job in a given state, and what a
//! job's end does to its device's state and health (`shared/reference/states.md`).
//!
//! This module decides; `store::lifecycle` applies the decisions in one transaction each.
//! Nothing here reads or writes anything, so every rule is unit-tested without a database.

use super::{DeviceHealth, DeviceState, ErrorType, JobHealth, JobState};

/// How a job ended, as the dispatcher (or a cancel, or crash recovery) reports it.
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

    /// A running job stopped because it was canceled (LAVA's `JobCanceled`, error class
    /// `Canceled`), with the text saying why.
    pub fn canceled(comment: impl Into<String>) -> JobEnd {
        JobEnd {
            health: JobHealth::Canceled,
            error_type: Some(ErrorType::Canceled),
            failure_comment: Some(comment.into()),
            cancel_peers: false,
        }
    }

    /// A job canceled while still queued: it never ran, so LAVA records no error class
    /// and no failure text for it.
    pub fn canceled_in_queue() -> JobEnd {
        JobEnd {
            health: JobHealth::Canceled,
            error_type: None,
            failure_comment: None,
            cancel_peers: false,
        }
    }

    /// Whether this end may finish a job: LAVA's `go_state_finished` refuses health
    /// Unknown.
    pub fn check(&self) -> Result<(), InvalidEnd> {
        if self.health == JobHealth::Unknown {
            return Err(InvalidEnd::UnknownHealth);
        }
        Ok(())
    }
}

/// Why a [`JobEnd`] cannot finish a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEnd {
    /// The end carries health Unknown.
    #[error("a finished job needs a health other than Unknown")]
    UnknownHealth,
}

/// The job states in which a job holds its device (LAVA's "current job" of a device).
pub const HOLDING_DEVICE: [JobState; 4] = [
    JobState::Scheduling,
    JobState::Scheduled,
    JobState::Running,
    JobState::Canceling,
];

impl JobState {
    /// Whether a job in this state holds its device: from the scheduler's reservation until
    /// it is Finished.
    pub fn holds_device(self) -> bool {
        HOLDING_DEVICE.contains(&self)
    }

    /// Whether LAVA's state machine moves a job from `self` to `to`. States only move
    /// forward; a job reaches Running only from Scheduled, Canceling only once it holds a
    /// device (a queued job is finished at once instead), and Finished from any state.
    pub fn may_move_to(self, to: JobState) -> bool {
        use JobState::*;
        if to <= self {
            return false;
        }
        match to {
            Submitted => false,
            Scheduling | Scheduled => self <= Scheduling,
            Running => self == Scheduled,
            Canceling => self.holds_device(),
            Finished => true,
        }
    }

    /// The state a job's device takes when the job enters this state; `None` leaves the
    /// device as it is (a cancel does not free the board before the job has stopped).
    pub fn device_state(self) -> Option<DeviceState> {
        match self {
            JobState::Submitted | JobState::Canceling => None,
            JobState::Scheduling | JobState::Scheduled => Some(DeviceState::Reserved),
            JobState::Running => Some(DeviceState::Running),
            JobState::Finished => Some(DeviceState::Idle),
        }
    }
}

/// Whether a device may be reserved for a job now: it must be Idle and Good, or Unknown or
/// Looping for a health check (which is how such a device gets back to Good).
pub fn device_accepts(state: DeviceState, health: DeviceHealth, health_check: bool) -> bool {
    let usable = match health {
        DeviceHealth::Good => true,
        DeviceHealth::Unknown | DeviceHealth::Looping => health_check,
        DeviceHealth::Bad | DeviceHealth::Maintenance | DeviceHealth::Retired => false,
    };
    state == DeviceState::Idle && usable
}

/// The state a Submitted job takes when the scheduler reserves a device for it: a
/// MultiNode sub-job waits in Scheduling for its group; anything else goes Scheduled. A job
/// past Submitted is not scheduled again (`None`).
pub fn schedule(state: JobState, multinode: bool) -> Option<JobState> {
    if state != JobState::Submitted {
        return None;
    }
    Some(if multinode {
        JobState::Scheduling
    } else {
        JobState::Scheduled
    })
}

/// Whether a MultiNode group whose sub-jobs are in `states` is complete: every sub-job has
/// a device (is Scheduling), so all of them go Scheduled together.
pub fn group_ready(states: &[JobState]) -> bool {
    !states.is_empty() && states.iter().all(|s| *s == JobState::Scheduling)
}

/// What starting a job (the dispatcher reporting it running) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Scheduled → Running: `start_time` set, device Running.
    Run,
    /// Already Running or later: nothing changes.
    Ignore,
    /// Not yet Scheduled: a caller's mistake.
    Refuse,
}

/// What starting a job in `state` does.
pub fn start(state: JobState) -> Start {
    if state >= JobState::Running {
        Start::Ignore
    } else if state == JobState::Scheduled {
        Start::Run
    } else {
        Start::Refuse
    }
}

/// What canceling a job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Canceling or Finished already: a silent no-op, as in LAVA.
    Ignore,
    /// Still queued: finished at once with this end, skipping Canceling.
    Finish(JobEnd),
    /// Holds a device: Canceling until the dispatcher reports the end; the device stays.
    Canceling,
}

/// What canceling a job in `state` does.
pub fn cancel(state: JobState) -> Cancel {
    match state {
        JobState::Canceling | JobState::Finished => Cancel::Ignore,
        JobState::Submitted => Cancel::Finish(JobEnd::canceled_in_queue()),
        JobState::Scheduling | JobState::Scheduled | JobState::Running => Cancel::Canceling,
    }
}

/// The health a job in `state` finishes with when it ends with `end`; `None` if it is
/// already Finished (the end is ignored). A job that was Canceling ends Canceled whatever
/// the dispatcher reports.
pub fn finished_health(state: JobState, end: &JobEnd) -> Option<JobHealth> {
    match state {
        JobState::Finished => None,
        JobState::Canceling => Some(JobHealth::Canceled),
        _ => Some(end.health),
    }
}

/// A finished job as its device's health rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishedJob {
    /// Whether it was a health check.
    pub health_check: bool,
    /// The health it finished with.
    pub health: JobHealth,
    /// The error class it reported, if any.
    pub error_type: Option<ErrorType>,
}

/// What a job's end does to its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAfterJob {
    /// The device's new state (always Idle: the job no longer holds it).
    pub state: DeviceState,
    /// The device's new health.
    pub health: DeviceHealth,
    /// Whether the job becomes the device's last health report.
    pub health_report: bool,
}

/// What `job`'s end does to its device, whose health is `current`.
///
/// A health check makes the device Good if Complete and Bad otherwise (Looping stays
/// Looping); a user job ending with an infrastructure error (`Infrastructure`,
/// `Configuration`, `Bug`) makes it Unknown so a health check runs before the next user
/// job; any other end leaves its health alone. Unlike LAVA, an admin's Maintenance or
/// Retired is never overwritten by a job's end.
pub fn device_after(job: FinishedJob, current: DeviceHealth) -> DeviceAfterJob {
    let admin_set = matches!(current, DeviceHealth::Maintenance | DeviceHealth::Retired);
    let health = if job.health_check {
        match current {
            DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Bad => {
                if job.health == JobHealth::Complete {
                    DeviceHealth::Good
                } else {
                    DeviceHealth::Bad
                }
            }
            // Looping stays until an admin ends it.
            DeviceHealth::Looping => current,
            DeviceHealth::Maintenance | DeviceHealth::Retired => current,
        }
    } else if job.error_type.is_some_and(ErrorType::is_infrastructure) && !admin_set {
        DeviceHealth::Unknown
    } else {
        current
    };
    DeviceAfterJob {
        state: DeviceState::Idle,
        health,
        health_report: job.health_check,
    }
}

/// Whether a MultiNode sub-job's end cancels the rest of its group: an essential role
/// (`end.cancel_peers`) that finished Incomplete.
pub fn cancels_peers(health: JobHealth, end: &JobEnd) -> bool {
    health == JobHealth::Incomplete && end.cancel_peers
}

/// Whether setting a device's health to `health` cancels the job holding it: retiring a
/// device does, as LAVA's device admin does.
pub fn cancels_current_job(health: DeviceHealth) -> bool {
    health == DeviceHealth::Retired
}

#[cfg(test)]
mod tests;
