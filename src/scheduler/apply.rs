//! Applying a plan: each [`Decision`] through the store in its own transaction, then
//! reconciling the Scheduled and Canceling jobs with the tasks that run them.

use std::collections::{HashMap, HashSet};

use super::{CancelTarget, Decision};
use crate::model::lifecycle::JobEnd;
use crate::model::{DeviceHealth, ErrorType, JobId, JobState};
use crate::store::{self, Changes, Job, JobFilter, NewJob, Store};

/// The user health-check jobs are submitted as (LAVA's `lava-health`).
pub const HEALTH_CHECK_USER: &str = "lava-health";

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
    use super::*;
    use crate::model::{DeviceState, JobHealth};
    use crate::store::{NewDevice, NewDeviceType, NewUser};

    fn job(device_type: &str) -> NewJob {
        let mut new = NewJob::new("alice", "job_name: test\n");
        new.requested_device_type = Some(device_type.to_owned());
        new
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
}
