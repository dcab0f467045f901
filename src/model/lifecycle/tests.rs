//! The life-cycle rules against LAVA's tables in `shared/reference/states.md`.

use proptest::prelude::*;

use super::*;
use crate::model::{DeviceHealth, DeviceState, ErrorType, JobHealth, JobState};

use DeviceHealth as D;
use JobState::*;

fn any_state() -> impl Strategy<Value = JobState> {
    prop::sample::select(JobState::ALL)
}

fn any_end() -> impl Strategy<Value = JobEnd> {
    (
        prop::sample::select(
            &[
                JobHealth::Complete,
                JobHealth::Incomplete,
                JobHealth::Canceled,
            ][..],
        ),
        prop::option::of(prop::sample::select(ErrorType::ALL)),
        any::<bool>(),
    )
        .prop_map(|(health, error_type, cancel_peers)| JobEnd {
            health,
            error_type,
            failure_comment: None,
            cancel_peers,
        })
}

#[test]
fn allowed_moves_are_lavas() {
    // Every (from, to) pair LAVA's state machine takes; everything else is refused.
    let allowed = [
        (Submitted, Scheduling),
        (Submitted, Scheduled),
        (Submitted, Finished),
        (Scheduling, Scheduled),
        (Scheduling, Canceling),
        (Scheduling, Finished),
        (Scheduled, Running),
        (Scheduled, Canceling),
        (Scheduled, Finished),
        (Running, Canceling),
        (Running, Finished),
        (Canceling, Finished),
    ];
    for from in JobState::ALL {
        for to in JobState::ALL {
            assert_eq!(
                from.may_move_to(*to),
                allowed.contains(&(*from, *to)),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn device_follows_the_job_state() {
    let expected = [
        (Submitted, None),
        (Scheduling, Some(DeviceState::Reserved)),
        (Scheduled, Some(DeviceState::Reserved)),
        (Running, Some(DeviceState::Running)),
        (Canceling, None),
        (Finished, Some(DeviceState::Idle)),
    ];
    for (state, device) in expected {
        assert_eq!(state.device_state(), device, "{state}");
    }
    let holding: Vec<JobState> = JobState::ALL
        .iter()
        .copied()
        .filter(|s| s.holds_device())
        .collect();
    assert_eq!(holding, HOLDING_DEVICE);
}

#[test]
fn devices_accept_jobs_as_lava_does() {
    // (health, user job accepted, health check accepted) for an Idle device.
    let cases = [
        (D::Good, true, true),
        (D::Unknown, false, true),
        (D::Looping, false, true),
        (D::Bad, false, false),
        (D::Maintenance, false, false),
        (D::Retired, false, false),
    ];
    for (health, user, check) in cases {
        assert_eq!(
            device_accepts(DeviceState::Idle, health, false),
            user,
            "{health}"
        );
        assert_eq!(
            device_accepts(DeviceState::Idle, health, true),
            check,
            "{health}"
        );
        for busy in [DeviceState::Reserved, DeviceState::Running] {
            assert!(!device_accepts(busy, health, true), "{busy} {health}");
        }
    }
}

#[test]
fn requests_by_state() {
    // (state, schedule single, schedule MultiNode, start, cancel)
    let cases = [
        (
            Submitted,
            Some(Scheduled),
            Some(Scheduling),
            Start::Refuse,
            Cancel::Finish(JobEnd::canceled_in_queue()),
        ),
        (Scheduling, None, None, Start::Refuse, Cancel::Canceling),
        (Scheduled, None, None, Start::Run, Cancel::Canceling),
        (Running, None, None, Start::Ignore, Cancel::Canceling),
        (Canceling, None, None, Start::Ignore, Cancel::Ignore),
        (Finished, None, None, Start::Ignore, Cancel::Ignore),
    ];
    for (state, single, multi, started, canceled) in cases {
        assert_eq!(schedule(state, false), single, "{state}");
        assert_eq!(schedule(state, true), multi, "{state}");
        assert_eq!(start(state), started, "{state}");
        assert_eq!(cancel(state), canceled, "{state}");
    }
}

#[test]
fn finishing_forces_canceled_after_a_cancel() {
    let end = JobEnd::complete();
    assert_eq!(finished_health(Running, &end), Some(JobHealth::Complete));
    assert_eq!(finished_health(Scheduled, &end), Some(JobHealth::Complete));
    assert_eq!(finished_health(Canceling, &end), Some(JobHealth::Canceled));
    assert_eq!(finished_health(Finished, &end), None);
    let failed = JobEnd::incomplete(ErrorType::Test, "x");
    assert_eq!(
        finished_health(Canceling, &failed),
        Some(JobHealth::Canceled)
    );
    assert_eq!(
        finished_health(Submitted, &failed),
        Some(JobHealth::Incomplete)
    );
}

#[test]
fn ends_are_built_as_lava_records_them() {
    assert_eq!(JobEnd::complete().check(), Ok(()));
    let canceled = JobEnd::canceled("job canceled by the user");
    assert_eq!(canceled.health, JobHealth::Canceled);
    assert_eq!(canceled.error_type, Some(ErrorType::Canceled));
    assert_eq!(
        canceled.failure_comment.as_deref(),
        Some("job canceled by the user")
    );
    let queued = JobEnd::canceled_in_queue();
    assert_eq!(
        (queued.health, queued.error_type, queued.failure_comment),
        (JobHealth::Canceled, None, None)
    );
    let mut unknown = JobEnd::complete();
    unknown.health = JobHealth::Unknown;
    assert_eq!(unknown.check(), Err(InvalidEnd::UnknownHealth));
    assert_eq!(
        InvalidEnd::UnknownHealth.to_string(),
        "a finished job needs a health other than Unknown"
    );
}

#[test]
fn health_checks_set_device_health() {
    // (current, job health, new health)
    let cases = [
        (D::Good, JobHealth::Complete, D::Good),
        (D::Unknown, JobHealth::Complete, D::Good),
        (D::Bad, JobHealth::Complete, D::Good),
        (D::Good, JobHealth::Incomplete, D::Bad),
        (D::Unknown, JobHealth::Incomplete, D::Bad),
        (D::Good, JobHealth::Canceled, D::Bad),
        (D::Looping, JobHealth::Complete, D::Looping),
        (D::Looping, JobHealth::Incomplete, D::Looping),
        (D::Maintenance, JobHealth::Complete, D::Maintenance),
        (D::Retired, JobHealth::Incomplete, D::Retired),
    ];
    for (current, health, new) in cases {
        let job = FinishedJob {
            health_check: true,
            health,
            error_type: Some(ErrorType::Infrastructure),
        };
        let after = device_after(job, current);
        assert_eq!(after.health, new, "{current} {health}");
        assert_eq!(after.state, DeviceState::Idle);
        assert!(after.health_report);
    }
}

#[test]
fn user_jobs_change_device_health_only_on_infrastructure_errors() {
    for error_type in ErrorType::ALL {
        for current in DeviceHealth::ALL {
            let job = FinishedJob {
                health_check: false,
                health: JobHealth::Incomplete,
                error_type: Some(*error_type),
            };
            let after = device_after(job, *current);
            let admin_set = matches!(current, D::Maintenance | D::Retired);
            let expected = if error_type.is_infrastructure() && !admin_set {
                D::Unknown
            } else {
                *current
            };
            assert_eq!(after.health, expected, "{error_type} on {current}");
            assert!(!after.health_report);
            assert_eq!(after.state, DeviceState::Idle);
        }
    }
    let complete = FinishedJob {
        health_check: false,
        health: JobHealth::Complete,
        error_type: None,
    };
    assert_eq!(device_after(complete, D::Good).health, D::Good);
    assert_eq!(device_after(complete, D::Looping).health, D::Looping);
}

#[test]
fn groups_and_peers() {
    assert!(group_ready(&[Scheduling, Scheduling]));
    assert!(!group_ready(&[Scheduling, Submitted]));
    assert!(!group_ready(&[]));
    let mut essential = JobEnd::incomplete(ErrorType::Test, "server died");
    essential.cancel_peers = true;
    assert!(cancels_peers(JobHealth::Incomplete, &essential));
    assert!(!cancels_peers(JobHealth::Canceled, &essential));
    assert!(!cancels_peers(
        JobHealth::Incomplete,
        &JobEnd::incomplete(ErrorType::Test, "x")
    ));
    assert!(cancels_current_job(D::Retired));
    for health in DeviceHealth::ALL.iter().filter(|h| **h != D::Retired) {
        assert!(!cancels_current_job(*health), "{health}");
    }
}

proptest! {
    /// Whatever sequence of requests a job gets, its state only moves forward, every move
    /// is one the state machine allows, and it holds a device exactly while LAVA says so.
    #[test]
    fn job_states_only_move_forward(
        multinode in any::<bool>(),
        requests in prop::collection::vec((0u8..4, any_end()), 0..12),
        start_state in any_state(),
    ) {
        let mut state = start_state;
        for (request, end) in requests {
            let next = match request {
                0 => schedule(state, multinode),
                1 => match start(state) {
                    Start::Run => Some(Running),
                    Start::Ignore | Start::Refuse => None,
                },
                2 => match cancel(state) {
                    Cancel::Ignore => None,
                    Cancel::Canceling => Some(Canceling),
                    Cancel::Finish(end) => {
                        prop_assert_eq!(end.health, JobHealth::Canceled);
                        Some(Finished)
                    }
                },
                _ => finished_health(state, &end).map(|health| {
                    prop_assert!(health != JobHealth::Unknown);
                    if state == Canceling {
                        prop_assert_eq!(health, JobHealth::Canceled);
                    }
                    Ok(Finished)
                }).transpose()?,
            };
            if let Some(next) = next {
                prop_assert!(state.may_move_to(next), "{} -> {}", state, next);
                prop_assert!(next > state);
                state = next;
            }
        }
    }

    /// A job's end never leaves its device busy, never undoes an admin's decision, never
    /// ends Looping through a health check and never starts it.
    #[test]
    fn a_device_is_freed_and_admin_health_kept(
        health_check in any::<bool>(),
        end in any_end(),
        current in prop::sample::select(DeviceHealth::ALL),
    ) {
        let job = FinishedJob { health_check, health: end.health, error_type: end.error_type };
        let after = device_after(job, current);
        prop_assert_eq!(after.state, DeviceState::Idle);
        if matches!(current, D::Maintenance | D::Retired) || (health_check && current == D::Looping) {
            prop_assert_eq!(after.health, current);
        }
        prop_assert!(after.health != D::Looping || current == D::Looping);
    }
}
