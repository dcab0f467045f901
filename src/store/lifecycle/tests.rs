//! The life cycle through a real store: transitions, device side effects and change
//! records, as `shared/reference/states.md` has them.

use super::*;
use crate::store::testutil::{device, lab, qemu_job};
use crate::store::{JobFilter, NewDevice, NewDeviceType};

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
    // It never ran: no error class, no failure text (LAVA's `go_state_canceling`).
    assert_eq!((queued.error_type, queued.failure_comment), (None, None));

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
fn the_guard_refuses_moves_lava_does_not_make() {
    let (_dir, mut store) = lab();
    let job = store.insert_job(&qemu_job()).unwrap();
    let mut core = core_of(&store, job.id);
    // A queued job cannot be Canceling (it is finished at once) nor Running.
    for to in [JobState::Canceling, JobState::Running, JobState::Submitted] {
        let err = move_job(
            &store.conn,
            &mut core,
            to,
            SetColumns::new("jobs", "id"),
            "test",
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Transition { from: JobState::Submitted, to: t, .. } if t == to),
            "{err:?}"
        );
    }
    // Nothing was written.
    assert_eq!(
        store.job(job.id).unwrap().unwrap().state,
        JobState::Submitted
    );
    store.cancel_job(job.id).unwrap();
    let mut core = core_of(&store, job.id);
    assert!(matches!(
        move_job(
            &store.conn,
            &mut core,
            JobState::Running,
            SetColumns::new("jobs", "id"),
            "test"
        ),
        Err(Error::Transition {
            from: JobState::Finished,
            ..
        })
    ));
}

fn core_of(store: &Store, id: JobId) -> Core {
    core(&store.conn, id).unwrap()
}
