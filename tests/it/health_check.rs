//! Health checks as LAVA has them: a device type has one only when the admin installed it.
//! Regression test for issue 11's first report: a user adding a `qemu` type and a stock
//! LAVA-style qemu device got the *shipped* example health check run at once (its assets live
//! where the appliance image puts them), it failed, the device went Bad and every job stayed
//! Submitted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lavabox::app::App;
use lavabox::config::{Config, Overrides};
use lavabox::dispatcher::Dispatcher;
use lavabox::events::Event;
use lavabox::hw::fake::{FakeBoards, FakeRunner};
use lavabox::model::{DeviceHealth, JobState};
use lavabox::scheduler::HEALTH_CHECK_USER;
use lavabox::store::{JobChange, JobFilter};
use tokio::sync::broadcast;

use crate::common::server::scripted_board;

/// A LAVA device dictionary for a qemu device, as LAVA's documentation writes one.
const STOCK_QEMU: &str = "{% extends 'qemu.jinja2' %}\n\
{% set mac_addr = '52:54:00:12:34:59' %}\n\
{% set memory = '1024' %}\n\
{% set netdevice = 'user' %}\n";

/// A user's job for the device: no actions, so the dispatcher ends it at once.
const SMOKE: &str = "device_type: qemu
job_name: smoke
visibility: public
timeouts:
  job: {minutes: 1}
actions: []
";

/// Only the safety net for a scheduler that never acts.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// Runs the real `lavabox` binary with `config` and `--data data`; expects success.
fn lavabox(config: &Path, data: &Path, args: &[&str]) {
    crate::common::lavabox_cli(config, data, args);
}

/// The next job change matching `want`.
async fn until_job(
    events: &mut broadcast::Receiver<Arc<lavabox::events::Published>>,
    what: &str,
    want: impl Fn(&JobChange) -> bool,
) -> JobChange {
    tokio::time::timeout(SAFETY_NET, async {
        loop {
            match events.recv().await {
                Ok(p) => {
                    if let Event::Job(j) = &p.event
                        && want(j)
                    {
                        return j.clone();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
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
    // The real dispatcher, with fakes at the hardware boundary only.
    let dispatcher = Dispatcher::new(
        app.dispatcher_config(),
        app.store().clone(),
        app.templates().clone(),
    )
    .with_boards(Arc::new(FakeBoards::new(
        Arc::new(FakeRunner::default()),
        Arc::new(scripted_board()),
    )));
    let bound = app
        .clone()
        .bind_with(Arc::new(dispatcher))
        .await
        .expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));

    // A submitted job is scheduled on the device and runs.
    let job = crate::common::submit_as(&app, "alice", SMOKE).await;
    let scheduled = until_job(&mut events, "a job Scheduled", |j| {
        j.state == JobState::Scheduled
    })
    .await;
    assert_eq!(
        (scheduled.id, scheduled.device.as_deref()),
        (job, Some("qemu01"))
    );
    until_job(&mut events, "the job Finished", |j| {
        j.id == job && j.state == JobState::Finished
    })
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
    let check = until_job(&mut events, "the installed health check Scheduled", |j| {
        j.state == JobState::Scheduled
    })
    .await;
    assert_eq!(check.device.as_deref(), Some("qemu01"));
    let check = check.id;
    let stored = app
        .store()
        .call(move |s| s.job(check))
        .await
        .expect("read back")
        .expect("health check job");
    assert!(stored.health_check);
    assert_eq!(stored.submitter, HEALTH_CHECK_USER);
    assert_eq!(stored.description, "installed health check");

    stop.send(()).expect("stop");
    task.await.expect("app task").expect("app run");
}
