//! The scheduler loop, its job tasks and start-up recovery, driven through a real `App` with a
//! fake [`JobRunner`] at the dispatcher boundary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::app::App;
use crate::config::{Overrides, RawConfig};
use crate::dispatcher::JobRun;
use crate::events::{Event, Published};
use crate::model::lifecycle::JobEnd;
use crate::model::{DeviceHealth, DeviceState, ErrorType, JobHealth, JobId, JobState};
use crate::store::{self, Job, NewDevice, NewDeviceType, NewJob, NewUser, Store};

const QEMU: &str = "{% extends 'qemu.jinja2' %}\n{% set no_kvm = True %}\n";

/// What the fake runner does with a job.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// Waits for the cancel token, then ends Canceled.
    UntilCanceled,
    /// Panics.
    Panic,
}

/// A runner at the dispatcher boundary: reports each call, then follows its script.
struct FakeRunner {
    script: Script,
    calls: mpsc::UnboundedSender<JobId>,
    /// The devices powered off, in order.
    powered_off: Arc<Mutex<Vec<String>>>,
}

impl FakeRunner {
    fn new(script: Script) -> (FakeRunner, mpsc::UnboundedReceiver<JobId>) {
        let (tx, calls) = mpsc::unbounded_channel();
        let runner = FakeRunner {
            script,
            calls: tx,
            powered_off: Arc::default(),
        };
        (runner, calls)
    }
}

impl JobRunner for FakeRunner {
    fn power_off(&self, device: store::Device) -> BoxFuture<'static, ()> {
        let powered_off = Arc::clone(&self.powered_off);
        Box::pin(async move {
            powered_off
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(device.hostname);
        })
    }

    fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd> {
        let _ = self.calls.send(run.job.id);
        let script = self.script;
        Box::pin(async move {
            match script {
                Script::UntilCanceled => {
                    run.cancel.cancelled().await;
                    JobEnd::canceled("canceled")
                }
                Script::Panic => panic!("fake dispatcher bug"),
            }
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    app: App,
    events: broadcast::Receiver<Arc<Published>>,
    calls: mpsc::UnboundedReceiver<JobId>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// An app with user alice and Good devices `hosts` of type qemu (no health check), seeded
/// by `seed`; no scheduler runs yet.
async fn app(
    hosts: &[&str],
    seed: impl FnOnce(&mut Store) + Send + 'static,
) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_raw(RawConfig::default(), None).unwrap();
    config.apply(&Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: None,
    });
    config.template_dirs = vec![];
    let app = App::build(config).await.unwrap();
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    app.store()
        .call(move |s| {
            s.create_user(&NewUser::named("alice"))?;
            let mut dt = NewDeviceType::named("qemu");
            dt.disable_health_check = true;
            s.create_device_type(&dt)?;
            for host in &hosts {
                let mut new = NewDevice::new(host.clone(), "qemu");
                new.dictionary = Some(QEMU.to_owned());
                new.health = DeviceHealth::Good;
                s.create_device(&new)?;
            }
            seed(s);
            Ok(())
        })
        .await
        .unwrap();
    (dir, app)
}

/// [`app`], whose scheduler runs jobs with a fake runner following `script`.
async fn fixture(
    hosts: &[&str],
    script: Script,
    seed: impl FnOnce(&mut Store) + Send + 'static,
) -> Fixture {
    let (dir, app) = app(hosts, seed).await;
    let events = app.events().subscribe();
    let (runner, calls) = FakeRunner::new(script);
    let stop = CancellationToken::new();
    let scheduler = Scheduler::new(app.clone(), Arc::new(runner), stop.clone());
    let task = tokio::spawn(scheduler.run());
    Fixture {
        _dir: dir,
        app,
        events,
        calls,
        stop,
        task,
    }
}

use crate::config::Config;

fn job(device_type: &str) -> NewJob {
    let mut new = NewJob::new("alice", "job_name: test\n");
    new.requested_device_type = Some(device_type.to_owned());
    new
}

impl Fixture {
    async fn submit(&self, new: NewJob) -> JobId {
        let job = self
            .app
            .store()
            .call(move |s| s.insert_job(&new))
            .await
            .unwrap();
        self.app.wake_scheduler();
        job.id
    }

    /// The next event matching `want` (a safety-net timeout only).
    async fn until(&mut self, want: impl Fn(&Event) -> bool) -> Event {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let published = self.events.recv().await.expect("event bus");
                if want(&published.event) {
                    return published.event.clone();
                }
            }
        })
        .await
        .expect("timed out waiting for an event")
    }

    async fn job_state(&mut self, id: JobId, state: JobState) -> crate::store::JobChange {
        match self
            .until(|e| matches!(e, Event::Job(j) if j.id == id && j.state == state))
            .await
        {
            Event::Job(j) => j,
            Event::Device(_) | Event::Worker(_) => unreachable!(),
        }
    }

    async fn device_idle(&mut self, host: &str) {
        self.until(
            |e| matches!(e, Event::Device(d) if d.hostname == host && d.state == DeviceState::Idle),
        )
        .await;
    }

    async fn stored(&self, id: JobId) -> Job {
        self.app
            .store()
            .call(move |s| s.job(id))
            .await
            .unwrap()
            .unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn two_jobs_run_at_once_and_cancel_ends_them() {
    let mut f = fixture(&["q1", "q2"], Script::UntilCanceled, |_| {}).await;
    let a = f.submit(job("qemu")).await;
    let b = f.submit(job("qemu")).await;
    let mut started = vec![f.calls.recv().await.unwrap(), f.calls.recv().await.unwrap()];
    started.sort();
    assert_eq!(
        started,
        vec![a, b],
        "both jobs are in the dispatcher at once"
    );
    let ja = f.stored(a).await;
    let jb = f.stored(b).await;
    assert_eq!((ja.state, jb.state), (JobState::Running, JobState::Running));
    assert_ne!(ja.actual_device, jb.actual_device);
    let changes = f.app.store().call(move |s| s.cancel_job(a)).await.unwrap();
    f.app.changed(&changes);
    let end = f.job_state(a, JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Canceled);
    let device = ja.actual_device.clone().unwrap();
    let d = f
        .app
        .store()
        .call(move |s| s.device(&device))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, DeviceState::Idle);
    assert_eq!(f.stored(b).await.state, JobState::Running);
    // Shutdown cancels the other one and waits for it.
    let app = f.app.clone();
    f.stop().await;
    let jb = app.store().call(move |s| s.job(b)).await.unwrap().unwrap();
    assert_eq!(
        (jb.state, jb.health),
        (JobState::Finished, JobHealth::Canceled)
    );
}

#[tokio::test]
async fn a_job_canceled_before_it_starts_never_runs() {
    // Scheduled, then Canceling, while no scheduler ran: recovery finishes it.
    let mut f = fixture(&["q1"], Script::UntilCanceled, |s| {
        let id = s.insert_job(&job("qemu")).unwrap().id;
        s.schedule_job(id, "q1").unwrap();
        s.cancel_job(id).unwrap();
    })
    .await;
    f.device_idle("q1").await;
    let j = f.stored(JobId(1)).await;
    assert_eq!(
        (j.state, j.health),
        (JobState::Finished, JobHealth::Canceled)
    );
    // It never started: no start time, or the end's.
    assert!(
        j.start_time.is_none() || j.start_time == j.end_time,
        "{j:?}"
    );
    assert!(f.calls.try_recv().is_err());
    f.stop().await;
}

#[tokio::test]
async fn a_panicking_dispatcher_ends_the_job_incomplete_and_frees_the_device() {
    let mut f = fixture(&["q1"], Script::Panic, |_| {}).await;
    let id = f.submit(job("qemu")).await;
    let end = f.job_state(id, JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Incomplete);
    let j = f.stored(id).await;
    assert_eq!(j.error_type, Some(ErrorType::Bug));
    let d = f
        .app
        .store()
        .call(|s| s.device("q1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, DeviceState::Idle);
    // Bug is an infrastructure error: the device goes Unknown (no health check: usable).
    assert_eq!(d.health, DeviceHealth::Unknown);
    f.stop().await;
}

#[tokio::test]
async fn restart_finishes_jobs_left_running() {
    let mut f = fixture(&["q1"], Script::UntilCanceled, |s| {
        let id = s.insert_job(&job("qemu")).unwrap().id;
        s.schedule_job(id, "q1").unwrap();
        s.start_job(id).unwrap();
    })
    .await;
    let end = f.job_state(JobId(1), JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Incomplete);
    let j = f.stored(JobId(1)).await;
    assert_eq!(j.error_type, Some(ErrorType::Infrastructure));
    assert_eq!(j.failure_comment.as_deref(), Some(RESTARTED));
    let d = f
        .app
        .store()
        .call(|s| s.device("q1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.state, d.health),
        (DeviceState::Idle, DeviceHealth::Unknown)
    );
    f.stop().await;
}

#[tokio::test]
async fn queue_timeout_fires_on_its_own_timer() {
    let mut f = fixture(&["q1"], Script::UntilCanceled, |_| {}).await;
    // No device of this type: the job waits until its queue timeout.
    f.app
        .store()
        .call(|s| s.create_device_type(&NewDeviceType::named("other")))
        .await
        .unwrap();
    let mut new = job("other");
    new.queue_timeout = Some(Duration::from_millis(300));
    let id = f.submit(new).await;
    let end = f.job_state(id, JobState::Finished).await;
    assert_eq!(end.health, JobHealth::Canceled);
    f.stop().await;
}

#[tokio::test]
async fn recover_powers_off_the_boards_of_jobs_a_crash_closed() {
    // q1 ran a job when lavabox died; q2 was idle.
    let (_dir, app) = app(&["q1", "q2"], |s| {
        let id = s.insert_job(&job("qemu")).unwrap().id;
        s.schedule_job(id, "q1").unwrap();
        s.start_job(id).unwrap();
    })
    .await;
    let (runner, mut calls) = FakeRunner::new(Script::UntilCanceled);
    assert_eq!(recover(&app, &runner).await.unwrap(), 1);
    assert_eq!(
        *runner.powered_off.lock().unwrap(),
        vec!["q1".to_owned()],
        "the board of the closed job is powered off once, the idle one not at all"
    );
    assert!(calls.try_recv().is_err(), "no job was run");
    let (j, d) = app
        .store()
        .call(|s| Ok((s.job(JobId(1))?.unwrap(), s.device("q1")?.unwrap())))
        .await
        .unwrap();
    assert_eq!(
        (j.state, j.health, j.failure_comment.as_deref()),
        (JobState::Finished, JobHealth::Incomplete, Some(RESTARTED))
    );
    assert_eq!(j.error_type, Some(ErrorType::Infrastructure));
    assert_eq!(d.state, DeviceState::Idle);
    // Nothing left to recover: nothing powered off again.
    assert_eq!(recover(&app, &runner).await.unwrap(), 0);
    assert_eq!(runner.powered_off.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn passes_render_a_device_only_when_its_dictionary_or_templates_change() {
    let (_dir, app) = app(&["q1", "q2"], |_| {}).await;
    let (runner, _calls) = FakeRunner::new(Script::UntilCanceled);
    let scheduler = Scheduler::new(app.clone(), Arc::new(runner), CancellationToken::new());
    scheduler.pass().await;
    // q1 and q2 share one dictionary: one render.
    assert_eq!(app.templates().check_renders(), 1);
    scheduler.pass().await;
    assert_eq!(
        app.templates().check_renders(),
        1,
        "a second pass renders nothing"
    );
    let other = format!("{QEMU}{{% set memory = 2048 %}}\n");
    app.store()
        .call(move |s| s.set_device_dictionary("q2", &other))
        .await
        .unwrap();
    scheduler.pass().await;
    assert_eq!(
        app.templates().check_renders(),
        2,
        "the changed dictionary only"
    );
    app.templates()
        .call(|t| {
            t.write(
                crate::devicetype::FileKind::HealthCheck,
                "qemu",
                "job_name: hc\n",
            )
        })
        .await
        .unwrap()
        .unwrap();
    scheduler.pass().await;
    assert_eq!(
        app.templates().check_renders(),
        4,
        "a written file renders both again"
    );
}
