//! Integration tests: jobs through the real App.
//!
//! The real `App` (store in a temporary data directory, the scheduler loop, the real
//! dispatcher behind its contract) with the virtual lab's boards registered from
//! `lab/devices/`. Jobs come through the one submission path (`lavabox::submit::submit`, as
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

use std::sync::Arc;
use std::time::Duration;

use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::events::{Event, Published};
use lavabox::model::{DeviceHealth, DeviceState, JobHealth, JobId, JobState, TestResult};
use lavabox::store::{DeviceChange, JobChange, NewDevice, NewDeviceType, NewUser, Store};
use tokio::sync::{broadcast, oneshot};

use crate::common::{ensure_assets, health_check, repo};

/// Real boards boot in 20–45 s under load; this only stops a hung test.
const SAFETY_NET: Duration = Duration::from_secs(600);

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

struct Lab {
    _dir: tempfile::TempDir,
    app: App,
    events: broadcast::Receiver<Arc<Published>>,
    /// Every event seen so far, in order.
    seen: Vec<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Which boards, and which of their types run health checks.
struct Setup {
    boards: &'static [&'static str],
    /// Device types whose health check is enabled; the others have it disabled.
    health_checks: &'static [&'static str],
    /// The health every board starts with.
    health: DeviceHealth,
    /// The `qemu` health check the appliance uses (the shipped one unless a test breaks it).
    qemu_health_check: String,
    /// Job definitions submitted before the app runs, so its first pass sees them all.
    queued: Vec<String>,
}

impl Setup {
    /// `boards`, all Good, no health checks, the shipped health checks.
    fn new(boards: &'static [&'static str]) -> Setup {
        Setup {
            boards,
            health_checks: &[],
            health: DeviceHealth::Good,
            qemu_health_check: health_check("qemu"),
            queued: Vec::new(),
        }
    }
}

impl Lab {
    /// Builds the app with the boards registered, lets `seed` prepare the devices, submits
    /// `setup.queued`, then runs the app.
    async fn start(setup: Setup, seed: impl FnOnce(&mut Store) + Send + 'static) -> Lab {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("lavabox=debug")
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temporary directory");
        let templates = dir.path().join("templates");
        std::fs::create_dir_all(templates.join("health-checks")).unwrap();
        ensure_assets().await;
        std::fs::write(
            templates.join("health-checks/qemu.yaml"),
            &setup.qemu_health_check,
        )
        .unwrap();
        std::fs::write(
            templates.join("health-checks/qemu-uboot-arm.yaml"),
            health_check("qemu-uboot-arm"),
        )
        .unwrap();
        let raw = RawConfig {
            template_dirs: Some(vec![templates, repo().join("device-types")]),
            tftp: Some(lavabox::config::RawTftp {
                root: None,
                listen: Some("127.0.0.1:0".into()),
                server_ip: None,
            }),
            ..RawConfig::default()
        };
        let mut config = Config::from_raw(raw, None).unwrap();
        config.apply(&Overrides {
            data_dir: Some(dir.path().join("data")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
        });
        config.events.zmq_port = 0;
        // As `lavabox serve` does: the app's notifier and downloads build HTTPS clients.
        lavabox::tls::install_tls_provider();
        let app = App::build(config).await.unwrap();
        let boards: Vec<&'static str> = setup.boards.to_vec();
        let (health_checks, health) = (setup.health_checks, setup.health);
        app.store()
            .call(move |s| {
                s.create_user(&NewUser::named("alice"))?;
                for name in ["qemu", "qemu-uboot-arm"] {
                    let mut dt = NewDeviceType::named(name);
                    dt.disable_health_check = !health_checks.contains(&name);
                    s.create_device_type(&dt)?;
                }
                for board in boards {
                    let ty = if board.starts_with("uboot-arm") {
                        "qemu-uboot-arm"
                    } else {
                        "qemu"
                    };
                    let file = repo().join(format!("lab/devices/{board}.jinja2"));
                    let mut new = NewDevice::new(board, ty);
                    new.dictionary = Some(std::fs::read_to_string(file).expect("lab device"));
                    new.health = health;
                    s.create_device(&new)?;
                }
                seed(s);
                Ok(())
            })
            .await
            .unwrap();
        let events = app.events().subscribe();
        for definition in &setup.queued {
            crate::common::submit_as(&app, "alice", definition).await;
        }
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.clone().run(async {
            let _ = rx.await;
        }));
        Lab {
            _dir: dir,
            app,
            events,
            seen: Vec::new(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Submits `definition` as alice.
    async fn submit(&self, definition: String) -> JobId {
        crate::common::submit_as(&self.app, "alice", &definition).await
    }

    /// The next event matching `want`.
    async fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let found = tokio::time::timeout(SAFETY_NET, async {
            loop {
                match self.events.recv().await {
                    Ok(p) => {
                        self.seen.push(p.event.clone());
                        if want(&p.event) {
                            return p.event.clone();
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
                }
            }
        })
        .await;
        match found {
            Ok(event) => event,
            Err(_) => panic!("timed out waiting for {what}; seen: {:#?}", self.seen),
        }
    }

    async fn job(&mut self, id: JobId, state: JobState) -> JobChange {
        match self
            .until(
                &format!("job {id} {state:?}"),
                |e| matches!(e, Event::Job(j) if j.id == id && j.state == state),
            )
            .await
        {
            Event::Job(j) => j,
            Event::Device(_) | Event::Worker(_) => unreachable!(),
        }
    }

    /// The next job reaching `state`, whichever it is.
    async fn any_job(&mut self, state: JobState) -> JobChange {
        match self
            .until(
                &format!("a job {state:?}"),
                |e| matches!(e, Event::Job(j) if j.state == state),
            )
            .await
        {
            Event::Job(j) => j,
            Event::Device(_) | Event::Worker(_) => unreachable!(),
        }
    }

    async fn device(&mut self, host: &str, state: DeviceState) -> DeviceChange {
        match self
            .until(
                &format!("device {host} {state:?}"),
                |e| matches!(e, Event::Device(d) if d.hostname == host && d.state == state),
            )
            .await
        {
            Event::Device(d) => d,
            Event::Job(_) | Event::Worker(_) => unreachable!(),
        }
    }

    async fn stored(&self, id: JobId) -> lavabox::store::Job {
        self.app
            .store()
            .call(move |s| s.job(id))
            .await
            .unwrap()
            .unwrap()
    }

    async fn stored_device(&self, host: &'static str) -> lavabox::store::Device {
        self.app
            .store()
            .call(move |s| s.device(host))
            .await
            .unwrap()
            .unwrap()
    }

    /// Asserts a finished job ended Complete, showing its log when it did not.
    async fn complete(&self, end: &JobChange) {
        assert_eq!(end.state, JobState::Finished);
        if end.health != JobHealth::Complete {
            let log =
                std::fs::read_to_string(self.app.config().job_log_path(end.id)).unwrap_or_default();
            let job = self.stored(end.id).await;
            panic!(
                "job {} ended {:?} ({:?}: {:?}); log:\n{log}",
                end.id, end.health, job.error_type, job.failure_comment
            );
        }
    }

    /// The test cases `id` recorded: (suite, case, result).
    async fn cases(&self, id: JobId) -> Vec<(String, String, TestResult)> {
        crate::common::test_cases(self.app.store(), id).await
    }

    /// Stops the app (canceling what still runs) and checks it stopped cleanly.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(SAFETY_NET, task)
                .await
                .expect("app stops")
                .expect("app task")
                .expect("app run");
        }
    }
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
    let setup = Setup::new(&["qemu-01", "uboot-arm-01"]);
    let mut lab = Lab::start(setup, |_| {}).await;
    let id = lab.submit(definition("qemu")).await;
    let reserved = lab.device("qemu-01", DeviceState::Reserved).await;
    assert_eq!(reserved.health, DeviceHealth::Good);
    let scheduled = lab.job(id, JobState::Scheduled).await;
    assert_eq!(scheduled.device.as_deref(), Some("qemu-01"));
    lab.device("qemu-01", DeviceState::Running).await;
    lab.job(id, JobState::Running).await;
    lab.device("qemu-01", DeviceState::Idle).await;
    let end = lab.job(id, JobState::Finished).await;
    lab.complete(&end).await;
    let job = lab.stored(id).await;
    assert!(job.start_time.is_some() && job.end_time.is_some());
    // The other board was never touched.
    assert!(
        !lab.seen
            .iter()
            .any(|e| matches!(e, Event::Device(d) if d.hostname == "uboot-arm-01"))
    );
    assert_eq!(lab.stored_device("qemu-01").await.state, DeviceState::Idle);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_runs_in_priority_order() {
    lab_or_skip!();
    // Queued before the app starts, so the first pass sees all three.
    let setup = Setup {
        queued: [10, 90, 50].map(|p| job_for(QUICK, p)).to_vec(),
        ..Setup::new(&["uboot-arm-01"])
    };
    let mut lab = Lab::start(setup, |_| {}).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let scheduled = lab.any_job(JobState::Scheduled).await;
        assert_eq!(scheduled.device.as_deref(), Some("uboot-arm-01"));
        order.push(scheduled.id);
        finished_health(&lab.job(scheduled.id, JobState::Finished).await);
    }
    // Submitted as ids 1 (low), 2 (high), 3 (medium).
    assert_eq!(order, vec![JobId(2), JobId(3), JobId(1)]);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_running_job() {
    lab_or_skip!();
    let setup = Setup::new(&["uboot-arm-01"]);
    let mut lab = Lab::start(setup, |_| {}).await;
    let id = lab.submit(definition("qemu-uboot-arm")).await;
    lab.job(id, JobState::Running).await;
    let changes = lab
        .app
        .store()
        .call(move |s| s.cancel_job(id))
        .await
        .unwrap();
    let raced = changes.is_empty();
    lab.app.changed(&changes);
    let end = lab.job(id, JobState::Finished).await;
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
        lab.stored_device("uboot-arm-01").await.state,
        DeviceState::Idle
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_boards_take_two_jobs_at_once() {
    lab_or_skip!();
    let setup = Setup {
        queued: vec![definition("qemu"); 2],
        ..Setup::new(&["qemu-01", "qemu-02"])
    };
    let mut lab = Lab::start(setup, |_| {}).await;
    // One pass schedules both: neither waits for the other to end.
    let a = lab.any_job(JobState::Scheduled).await;
    let b = lab.any_job(JobState::Scheduled).await;
    let mut boards = vec![a.device.clone(), b.device.clone()];
    boards.sort();
    assert_eq!(
        boards,
        vec![Some("qemu-01".to_owned()), Some("qemu-02".to_owned())]
    );
    let first = lab.any_job(JobState::Finished).await;
    let second = lab.any_job(JobState::Finished).await;
    lab.complete(&first).await;
    lab.complete(&second).await;
    // Both ran at once: each was Running before the other finished, on the bus …
    let running_before_first_end = lab
        .seen
        .iter()
        .take_while(|e| !matches!(e, Event::Job(j) if j.state == JobState::Finished))
        .filter(|e| matches!(e, Event::Job(j) if j.state == JobState::Running))
        .count();
    assert_eq!(running_before_first_end, 2, "seen: {:#?}", lab.seen);
    // … and in the times the store recorded.
    let (x, y) = (lab.stored(a.id).await, lab.stored(b.id).await);
    let span = |j: &lavabox::store::Job| (j.start_time.unwrap(), j.end_time.unwrap());
    let ((x_start, x_end), (y_start, y_end)) = (span(&x), span(&y));
    assert!(
        x_start < y_end && y_start < x_end,
        "job {} ran {x_start}..{x_end}, job {} ran {y_start}..{y_end}",
        x.id,
        y.id
    );
    for host in ["qemu-01", "qemu-02"] {
        assert_eq!(lab.stored_device(host).await.state, DeviceState::Idle);
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_runs_on_the_board_before_user_jobs_and_makes_it_good() {
    lab_or_skip!();
    let setup = Setup {
        health_checks: &["qemu"],
        health: DeviceHealth::Unknown,
        ..Setup::new(&["qemu-01"])
    };
    let mut lab = Lab::start(setup, |_| {}).await;
    let user_job = lab.submit(job_for(QUICK_QEMU, 100)).await;
    let first = lab.any_job(JobState::Scheduled).await;
    assert_ne!(first.id, user_job, "the health check comes first");
    assert_eq!(first.device.as_deref(), Some("qemu-01"));
    let hc = lab.stored(first.id).await;
    assert!(hc.health_check);
    assert_eq!(hc.submitter, "lava-health");
    let end = lab.job(first.id, JobState::Finished).await;
    lab.complete(&end).await;
    // The health check really ran on the board: its test shell reported.
    let cases = lab.cases(first.id).await;
    assert!(
        cases.contains(&("0_health".into(), "uname".into(), TestResult::Pass)),
        "{cases:?}"
    );
    let device = lab.stored_device("qemu-01").await;
    assert_eq!(device.health, DeviceHealth::Good);
    assert_eq!(device.last_health_report_job, Some(first.id));
    let scheduled = lab.job(user_job, JobState::Scheduled).await;
    assert_eq!(scheduled.device.as_deref(), Some("qemu-01"));
    lab.job(user_job, JobState::Finished).await;
    let (hc, job) = (lab.stored(first.id).await, lab.stored(user_job).await);
    assert!(hc.end_time.unwrap() <= job.start_time.unwrap());
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_health_check_makes_the_board_bad_and_takes_no_user_jobs() {
    lab_or_skip!();
    let setup = Setup {
        health_checks: &["qemu"],
        health: DeviceHealth::Unknown,
        qemu_health_check: broken_kernel(&health_check("qemu")),
        ..Setup::new(&["qemu-01", "uboot-arm-01"])
    };
    // The U-Boot board only runs the witness job below: it starts Good.
    let mut lab = Lab::start(setup, |s| {
        s.set_device_health("uboot-arm-01", DeviceHealth::Good)
            .unwrap();
    })
    .await;
    let user_job = lab.submit(job_for(QUICK_QEMU, 100)).await;
    let hc = lab.any_job(JobState::Scheduled).await;
    assert_ne!(hc.id, user_job, "the health check comes first");
    let end = lab.job(hc.id, JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Incomplete);
    // The board's Idle event went out with the job's, in the same change.
    let bad = lab.stored_device("qemu-01").await;
    assert_eq!(
        (bad.state, bad.health),
        (DeviceState::Idle, DeviceHealth::Bad)
    );
    // A job submitted now is scheduled by a pass that also saw the user job, with the board
    // Bad: once it has run, that pass has left the user job waiting.
    let witness = lab.submit(QUICK.into()).await;
    let placed = lab.job(witness, JobState::Scheduled).await;
    assert_eq!(placed.device.as_deref(), Some("uboot-arm-01"));
    lab.job(witness, JobState::Finished).await;
    assert_eq!(lab.stored(user_job).await.state, JobState::Submitted);
    let device = lab.stored_device("qemu-01").await;
    assert_eq!(device.health, DeviceHealth::Bad);
    assert_eq!(device.last_health_report_job, Some(hc.id));
    assert!(
        !lab.seen.iter().any(
            |e| matches!(e, Event::Job(j) if j.id == user_job && j.state != JobState::Submitted)
        )
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infrastructure_error_puts_the_board_back_to_unknown() {
    lab_or_skip!();
    let mut lab = Lab::start(Setup::new(&["qemu-01"]), |_| {}).await;
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
    let id = lab.submit(text).await;
    let end = lab.job(id, JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Incomplete);
    let job = lab.stored(id).await;
    assert_eq!(
        job.error_type,
        Some(lavabox::model::ErrorType::Infrastructure),
        "{:?}",
        job.failure_comment
    );
    let device = lab.stored_device("qemu-01").await;
    assert_eq!(device.state, DeviceState::Idle);
    assert_eq!(device.health, DeviceHealth::Unknown);
    lab.stop().await;
}
