//! Integration tests: jobs through the real App.
//!
//! The shared appliance (`common::server::Server`: the real `App` over a temporary data
//! directory, the scheduler loop, the real dispatcher) with the virtual lab's boards registered
//! from `lab/devices/`. Jobs come through the one submission path (`lavabox::submit::submit`, as
//! every API submits); the tests then follow the job and device state sequence on the event
//! bus. Timeouts are safety nets only: nothing sleeps.
//!
//! What a crash leaves behind is not imitated here by writing job states into the store: the
//! start-up recovery of a job a `kill -9` left Running is `dispatch`'s
//! `killed_lavabox_leaves_no_qemu_and_recovers_the_job` (a real `lavabox serve` killed
//! mid-job, then restarted), and the scheduler's unit tests cover the states no real crash can
//! be timed to leave (`restart_finishes_jobs_left_running`,
//! `a_job_canceled_before_it_starts_never_runs`).
//!
//! Jobs on the x86 boards (`qemu-01`, `qemu-02`: LAVA's `qemu` method, the dispatcher
//! starts QEMU itself) run for real and must end Complete; jobs on the U-Boot board are
//! quick ones, or their verdict is left open, because that board needs TFTP on port 69,
//! which this module leaves to `dispatch` and `lab` (TFTP listens on an ephemeral port here).

use lavabox::events::Event;
use lavabox::model::{DeviceHealth, DeviceState, JobHealth, JobId, JobState, TestResult};
use lavabox::store::JobChange;

use crate::common::health_check;
use crate::common::server::{Options, Server};

/// A job definition for `device_type`: the type's health check, renamed.
fn definition(device_type: &str) -> String {
    health_check(device_type).replace("health check", "job")
}

/// `text` with its x86 kernel URL pointing at a file that does not exist.
fn broken_kernel(text: &str) -> String {
    let broken = text.replace("amd64/vmlinuz", "amd64/no-such-vmlinuz");
    assert_ne!(broken, text, "the definition names the x86 kernel");
    broken
}

/// A definition every dispatcher rejects at once (no actions): a quick job.
const QUICK: &str = "device_type: qemu-uboot-arm\njob_name: quick\npriority: medium\n\
     visibility: public\ntimeouts:\n  job: {minutes: 1}\nactions: []\n";

/// The same quick job for the x86 boards.
const QUICK_QEMU: &str = "device_type: qemu\njob_name: quick\npriority: medium\n\
     visibility: public\ntimeouts:\n  job: {minutes: 1}\nactions: []\n";

/// Submits `definition` as alice.
async fn submit(srv: &Server, definition: String) -> JobId {
    crate::common::submit_as(&srv.app, "alice", &definition).await
}

/// The next change of job `id` to `state`.
async fn job(srv: &mut Server, id: JobId, state: JobState) -> JobChange {
    srv.until_job(&format!("job {id} {state:?}"), |j| {
        j.id == id && j.state == state
    })
    .await
}

/// The next job reaching `state`, whichever it is.
async fn any_job(srv: &mut Server, state: JobState) -> JobChange {
    srv.until_job(&format!("a job {state:?}"), |j| j.state == state)
        .await
}

async fn stored(srv: &Server, id: JobId) -> lavabox::store::Job {
    srv.app
        .store()
        .call(move |s| s.job(id))
        .await
        .unwrap()
        .unwrap()
}

async fn stored_device(srv: &Server, host: &'static str) -> lavabox::store::Device {
    srv.app
        .store()
        .call(move |s| s.device(host))
        .await
        .unwrap()
        .unwrap()
}

/// Asserts a finished job ended Complete, showing its log when it did not.
async fn complete(srv: &Server, end: &JobChange) {
    assert_eq!(end.state, JobState::Finished);
    if end.health != JobHealth::Complete {
        let log =
            std::fs::read_to_string(srv.app.config().job_log_path(end.id)).unwrap_or_default();
        let job = stored(srv, end.id).await;
        panic!(
            "job {} ended {:?} ({:?}: {:?}); log:\n{log}",
            end.id, end.health, job.error_type, job.failure_comment
        );
    }
}

/// The test cases `id` recorded: (suite, case, result).
async fn cases(srv: &Server, id: JobId) -> Vec<(String, String, TestResult)> {
    crate::common::test_cases(srv.app.store(), id).await
}

/// `definition` (which says `priority: medium`) with priority `priority`.
fn job_for(definition: &str, priority: u8) -> String {
    let text = definition.replace("priority: medium", &format!("priority: {priority}"));
    assert_ne!(text, definition, "the definition names its priority");
    text
}

fn finished_health(change: &JobChange) -> JobHealth {
    assert_eq!(change.state, JobState::Finished);
    assert_ne!(change.health, JobHealth::Unknown);
    change.health
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_on_the_right_board_and_frees_it() {
    lab_or_skip!();
    let mut lab = Server::start(Options::lab(&["qemu-01", "uboot-arm-01"])).await;
    let id = submit(&lab, definition("qemu")).await;
    let reserved = lab.until_device("qemu-01", DeviceState::Reserved).await;
    assert_eq!(reserved.health, DeviceHealth::Good);
    let scheduled = job(&mut lab, id, JobState::Scheduled).await;
    assert_eq!(scheduled.device.as_deref(), Some("qemu-01"));
    lab.until_device("qemu-01", DeviceState::Running).await;
    job(&mut lab, id, JobState::Running).await;
    lab.until_device("qemu-01", DeviceState::Idle).await;
    let end = job(&mut lab, id, JobState::Finished).await;
    complete(&lab, &end).await;
    let job = stored(&lab, id).await;
    assert!(job.start_time.is_some() && job.end_time.is_some());
    // The other board was never touched.
    assert!(
        !lab.seen
            .iter()
            .any(|e| matches!(e, Event::Device(d) if d.hostname == "uboot-arm-01"))
    );
    assert_eq!(
        stored_device(&lab, "qemu-01").await.state,
        DeviceState::Idle
    );
    let _ = lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_runs_in_priority_order() {
    lab_or_skip!();
    // Queued before the app starts, so the first pass sees all three.
    let mut lab = Server::start(Options {
        queued: [10, 90, 50].map(|p| job_for(QUICK, p)).to_vec(),
        ..Options::lab(&["uboot-arm-01"])
    })
    .await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let scheduled = any_job(&mut lab, JobState::Scheduled).await;
        assert_eq!(scheduled.device.as_deref(), Some("uboot-arm-01"));
        order.push(scheduled.id);
        finished_health(&job(&mut lab, scheduled.id, JobState::Finished).await);
    }
    // Submitted as ids 1 (low), 2 (high), 3 (medium).
    assert_eq!(order, vec![JobId(2), JobId(3), JobId(1)]);
    let _ = lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_running_job() {
    lab_or_skip!();
    let mut lab = Server::start(Options::lab(&["uboot-arm-01"])).await;
    let id = submit(&lab, definition("qemu-uboot-arm")).await;
    job(&mut lab, id, JobState::Running).await;
    let changes = lab
        .app
        .store()
        .call(move |s| s.cancel_job(id))
        .await
        .unwrap();
    let raced = changes.is_empty();
    lab.app.changed(&changes);
    let end = job(&mut lab, id, JobState::Finished).await;
    if !raced {
        // It was still running when canceled: Canceling, then Finished Canceled.
        assert!(
            lab.seen.iter().any(
                |e| matches!(e, Event::Job(j) if j.id == id && j.state == JobState::Canceling)
            )
        );
        assert_eq!(end.health, JobHealth::Canceled);
    }
    assert_eq!(
        stored_device(&lab, "uboot-arm-01").await.state,
        DeviceState::Idle
    );
    let _ = lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_boards_take_two_jobs_at_once() {
    lab_or_skip!();
    let mut lab = Server::start(Options {
        queued: vec![definition("qemu"); 2],
        ..Options::lab(&["qemu-01", "qemu-02"])
    })
    .await;
    // One pass schedules both: neither waits for the other to end.
    let a = any_job(&mut lab, JobState::Scheduled).await;
    let b = any_job(&mut lab, JobState::Scheduled).await;
    let mut boards = vec![a.device.clone(), b.device.clone()];
    boards.sort();
    assert_eq!(
        boards,
        vec![Some("qemu-01".to_owned()), Some("qemu-02".to_owned())]
    );
    let first = any_job(&mut lab, JobState::Finished).await;
    let second = any_job(&mut lab, JobState::Finished).await;
    complete(&lab, &first).await;
    complete(&lab, &second).await;
    // Both ran at once: each was Running before the other finished, on the bus …
    let running_before_first_end = lab
        .seen
        .iter()
        .take_while(|e| !matches!(e, Event::Job(j) if j.state == JobState::Finished))
        .filter(|e| matches!(e, Event::Job(j) if j.state == JobState::Running))
        .count();
    assert_eq!(running_before_first_end, 2, "seen: {:#?}", lab.seen);
    // … and in the times the store recorded.
    let (x, y) = (stored(&lab, a.id).await, stored(&lab, b.id).await);
    let span = |j: &lavabox::store::Job| (j.start_time.unwrap(), j.end_time.unwrap());
    let ((x_start, x_end), (y_start, y_end)) = (span(&x), span(&y));
    assert!(
        x_start < y_end && y_start < x_end,
        "job {} ran {x_start}..{x_end}, job {} ran {y_start}..{y_end}",
        x.id,
        y.id
    );
    for host in ["qemu-01", "qemu-02"] {
        assert_eq!(stored_device(&lab, host).await.state, DeviceState::Idle);
    }
    let _ = lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_runs_on_the_board_before_user_jobs_and_makes_it_good() {
    lab_or_skip!();
    let mut lab = Server::start(Options {
        health_checks: vec!["qemu"],
        board_health: DeviceHealth::Unknown,
        ..Options::lab(&["qemu-01"])
    })
    .await;
    let user_job = submit(&lab, job_for(QUICK_QEMU, 100)).await;
    let first = any_job(&mut lab, JobState::Scheduled).await;
    assert_ne!(first.id, user_job, "the health check comes first");
    assert_eq!(first.device.as_deref(), Some("qemu-01"));
    let hc = stored(&lab, first.id).await;
    assert!(hc.health_check);
    assert_eq!(hc.submitter, "lava-health");
    let end = job(&mut lab, first.id, JobState::Finished).await;
    complete(&lab, &end).await;
    // The health check really ran on the board: its test shell reported.
    let cases = cases(&lab, first.id).await;
    assert!(
        cases.contains(&("0_health".into(), "uname".into(), TestResult::Pass)),
        "{cases:?}"
    );
    let device = stored_device(&lab, "qemu-01").await;
    assert_eq!(device.health, DeviceHealth::Good);
    assert_eq!(device.last_health_report_job, Some(first.id));
    let scheduled = job(&mut lab, user_job, JobState::Scheduled).await;
    assert_eq!(scheduled.device.as_deref(), Some("qemu-01"));
    job(&mut lab, user_job, JobState::Finished).await;
    let (hc, job) = (stored(&lab, first.id).await, stored(&lab, user_job).await);
    assert!(hc.end_time.unwrap() <= job.start_time.unwrap());
    let _ = lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_health_check_makes_the_board_bad_and_takes_no_user_jobs() {
    lab_or_skip!();
    // The U-Boot board only runs the witness job below: it starts Good.
    let options = Options {
        health_checks: vec!["qemu"],
        board_health: DeviceHealth::Unknown,
        health_check_text: vec![("qemu", broken_kernel(&health_check("qemu")))],
        ..Options::lab(&["qemu-01", "uboot-arm-01"])
    }
    .seed(|s| {
        s.set_device_health("uboot-arm-01", DeviceHealth::Good)
            .map(drop)
    });
    let mut lab = Server::start(options).await;
    let user_job = submit(&lab, job_for(QUICK_QEMU, 100)).await;
    let hc = any_job(&mut lab, JobState::Scheduled).await;
    assert_ne!(hc.id, user_job, "the health check comes first");
    let end = job(&mut lab, hc.id, JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Incomplete);
    // The board's Idle event went out with the job's, in the same change.
    let bad = stored_device(&lab, "qemu-01").await;
    assert_eq!(
        (bad.state, bad.health),
        (DeviceState::Idle, DeviceHealth::Bad)
    );
    // A job submitted now is scheduled by a pass that also saw the user job, with the board
    // Bad: once it has run, that pass has left the user job waiting.
    let witness = submit(&lab, QUICK.into()).await;
    let placed = job(&mut lab, witness, JobState::Scheduled).await;
    assert_eq!(placed.device.as_deref(), Some("uboot-arm-01"));
    job(&mut lab, witness, JobState::Finished).await;
    assert_eq!(stored(&lab, user_job).await.state, JobState::Submitted);
    let device = stored_device(&lab, "qemu-01").await;
    assert_eq!(device.health, DeviceHealth::Bad);
    assert_eq!(device.last_health_report_job, Some(hc.id));
    assert!(
        !lab.seen.iter().any(
            |e| matches!(e, Event::Job(j) if j.id == user_job && j.state != JobState::Submitted)
        )
    );
    let _ = lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infrastructure_error_puts_the_board_back_to_unknown() {
    lab_or_skip!();
    let mut lab = Server::start(Options::lab(&["qemu-01"])).await;
    // A download server that is down: a port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kernel = format!(
        "file://{}",
        crate::common::cache().join("amd64/vmlinuz").display()
    );
    let text = definition("qemu");
    assert!(text.contains(&kernel));
    let text = text.replace(&kernel, &format!("http://{closed}/vmlinuz"));
    let id = submit(&lab, text).await;
    let end = job(&mut lab, id, JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Incomplete);
    let job = stored(&lab, id).await;
    assert_eq!(
        job.error_type,
        Some(lavabox::model::ErrorType::Infrastructure),
        "{:?}",
        job.failure_comment
    );
    let device = stored_device(&lab, "qemu-01").await;
    assert_eq!(device.state, DeviceState::Idle);
    assert_eq!(device.health, DeviceHealth::Unknown);
    let _ = lab.stop().await;
}
