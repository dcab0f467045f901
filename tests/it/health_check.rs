//! Health checks as LAVA has them: a device type has one only when the admin installed it.
//! Regression test for issue 11's first report: a user adding a `qemu` type and a stock
//! LAVA-style qemu device got the *shipped* example health check run at once (its assets live
//! where the appliance image puts them), it failed, the device went Bad and every job stayed
//! Submitted.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lavabox::app::App;
use lavabox::config::{Config, Overrides};
use lavabox::dispatcher::JobRun;
use lavabox::events::Event;
use lavabox::model::lifecycle::JobEnd;
use lavabox::model::{DeviceHealth, JobId, JobState};
use lavabox::scheduler::{HEALTH_CHECK_USER, JobRunner};
use lavabox::store::{self, JobFilter};
use tokio::sync::{broadcast, mpsc};

/// A LAVA device dictionary for a qemu device, as LAVA's documentation writes one.
const STOCK_QEMU: &str = "{% extends 'qemu.jinja2' %}\n\
{% set mac_addr = '52:54:00:12:34:59' %}\n\
{% set memory = '1024' %}\n\
{% set netdevice = 'user' %}\n";

/// A user's job for the device (the runner below ends every job at once).
const SMOKE: &str = "device_type: qemu
job_name: smoke
visibility: public
timeouts:
  job: {minutes: 1}
actions: []
";

/// Only the safety net for a scheduler that never acts.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// The dispatcher boundary: reports each job it is given and ends it Complete.
struct Recording {
    runs: mpsc::UnboundedSender<(JobId, String)>,
    powered_off: Arc<Mutex<Vec<String>>>,
}

impl JobRunner for Recording {
    fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd> {
        let _ = self.runs.send((run.job.id, run.job.submitter.clone()));
        Box::pin(async { JobEnd::complete() })
    }

    fn power_off(&self, device: store::Device) -> BoxFuture<'static, ()> {
        self.powered_off
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(device.hostname);
        Box::pin(async {})
    }
}

/// Runs the real `lavabox` binary with `config` and `--data data`; expects success.
fn lavabox(config: &Path, data: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run lavabox");
    assert!(
        out.status.success(),
        "lavabox {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The next event matching `want`.
async fn until(
    events: &mut broadcast::Receiver<Arc<lavabox::events::Published>>,
    want: impl Fn(&Event) -> bool,
) {
    tokio::time::timeout(SAFETY_NET, async {
        loop {
            match events.recv().await {
                Ok(p) if want(&p.event) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event");
}

#[tokio::test]
async fn shipped_health_checks_are_not_applied_to_a_users_type() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    // No `template_dirs`: the defaults, which include the shipped `device-types/` of this
    // checkout with its example `health-checks/qemu.yaml`.
    let config_file = dir.path().join("lavabox.toml");
    std::fs::write(&config_file, "instance = \"test\"\n").expect("write config");
    let dictionary = dir.path().join("qemu01.jinja2");
    std::fs::write(&dictionary, STOCK_QEMU).expect("write dictionary");
    lavabox(&config_file, &data, &["device-type", "add", "qemu"]);
    lavabox(
        &config_file,
        &data,
        &[
            "device",
            "add",
            "qemu01",
            "--type",
            "qemu",
            "--dictionary",
            dictionary.to_str().expect("utf-8 path"),
        ],
    );
    lavabox(&config_file, &data, &["user", "add", "alice"]);

    let overrides = Overrides {
        data_dir: Some(data.clone()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
    };
    let mut config = Config::load(Some(&config_file), &overrides).expect("config");
    config.events.zmq_port = 0;
    config.tftp.listen = "127.0.0.1:0".parse().unwrap();
    let app = App::build(config).await.expect("app");
    let mut events = app.events().subscribe();
    let (tx, mut runs) = mpsc::unbounded_channel();
    let runner = Arc::new(Recording {
        runs: tx,
        powered_off: Arc::default(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.clone().run_with(runner, async {
        let _ = stopped.await;
    }));

    // A submitted job is scheduled on the device and runs.
    let job = crate::common::submit_as(&app, "alice", SMOKE).await;
    let (ran, submitter) = tokio::time::timeout(SAFETY_NET, runs.recv())
        .await
        .expect("the job was never run")
        .expect("runner");
    assert_eq!((ran, submitter.as_str()), (job, "alice"));
    until(
        &mut events,
        |e| matches!(e, Event::Job(j) if j.id == job && j.state == JobState::Finished),
    )
    .await;
    let (device, health_checks, stored) = app
        .store()
        .call(move |s| {
            let device = s.device("qemu01")?.expect("device");
            let filter = JobFilter {
                submitter: Some(HEALTH_CHECK_USER.into()),
                ..JobFilter::default()
            };
            Ok((device, s.jobs(&filter)?, s.job(job)?.expect("job")))
        })
        .await
        .expect("read back");
    assert!(
        health_checks.is_empty(),
        "no health check was created: {health_checks:?}"
    );
    assert_eq!(stored.actual_device.as_deref(), Some("qemu01"));
    assert!(
        matches!(device.health, DeviceHealth::Good | DeviceHealth::Unknown),
        "device health {:?}",
        device.health
    );

    // Once the admin installs a health check (here by hand, as with an editor), it runs.
    let installed = data.join("device-types/health-checks");
    std::fs::create_dir_all(&installed).expect("mkdir");
    std::fs::write(
        installed.join("qemu.yaml"),
        "job_name: installed health check\n",
    )
    .expect("install health check");
    let changes = app
        .store()
        .call(|s| s.set_device_health("qemu01", DeviceHealth::Unknown))
        .await
        .expect("set health");
    app.changed(&changes);
    let (check, submitter) = tokio::time::timeout(SAFETY_NET, runs.recv())
        .await
        .expect("the installed health check never ran")
        .expect("runner");
    assert_eq!(submitter, HEALTH_CHECK_USER);
    let stored = app
        .store()
        .call(move |s| s.job(check))
        .await
        .expect("read back")
        .expect("health check job");
    assert!(stored.health_check);
    assert_eq!(stored.description, "installed health check");

    stop.send(()).expect("stop");
    task.await.expect("app task").expect("app run");
}
