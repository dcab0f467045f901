//! Scheduler latency and appliance memory, printed (no assertions).
//!
//! `cargo bench --bench scheduler` runs the real `App` (store in a temporary directory,
//! scheduler loop, TFTP server on an ephemeral port, event bus) with the virtual lab's two
//! boards registered, and a fake job runner at the dispatcher boundary so the figures are
//! the appliance's own, not QEMU's:
//! - submit → job in the dispatcher: insert + wake → the runner is called, which is where the
//!   dispatcher issues the power-on command first;
//! - job end → device Idle: the runner returns → the device's Idle event is published;
//! - resident memory (VmRSS) of this process, idle and with two jobs running.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig, RawTftp};
use lavabox::dispatcher::JobRun;
use lavabox::events::Event;
use lavabox::model::{DeviceHealth, DeviceState, JobId};
use lavabox::scheduler::JobRunner;
use lavabox::store::{JobEnd, NewDevice, NewDeviceType, NewJob, NewUser};
use tokio::sync::{Notify, mpsc};

const ROUNDS: usize = 50;

/// Reports each call, waits to be released, notes when it returns.
struct HeldRunner {
    calls: mpsc::UnboundedSender<(JobId, Instant)>,
    release: Arc<Notify>,
    returned: Arc<Mutex<Option<Instant>>>,
}

impl JobRunner for HeldRunner {
    fn run(&self, run: JobRun) -> BoxFuture<'static, JobEnd> {
        let _ = self.calls.send((run.job.id, Instant::now()));
        let release = Arc::clone(&self.release);
        let returned = Arc::clone(&self.returned);
        Box::pin(async move {
            tokio::select! {
                () = release.notified() => {}
                () = run.cancel.cancelled() => {}
            }
            if let Ok(mut at) = returned.lock() {
                *at = Some(Instant::now());
            }
            JobEnd::complete()
        })
    }
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(1);
    println!(
        "{name:<32} n={n:<3} min {:>6.2} ms  median {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms  mean {:>6.2} ms",
        ms(samples[0]),
        ms(samples[n / 2]),
        ms(samples[(n * 95 / 100).min(n - 1)]),
        ms(samples[n - 1]),
        ms(mean),
    );
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    let raw = RawConfig {
        template_dirs: Some(vec![repo.join("device-types")]),
        tftp: Some(RawTftp {
            root: None,
            listen: Some("127.0.0.1:0".into()),
            server_ip: None,
        }),
        ..RawConfig::default()
    };
    let mut config = Config::from_raw(raw, None)?;
    config.apply(&Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: None,
    });
    let rss_start = vm_rss_kib();
    let app = App::build(config).await?;
    let lab = repo.clone();
    app.store()
        .call(move |s| {
            s.create_user(&NewUser::named("alice"))?;
            for (ty, board) in [("qemu", "qemu-01"), ("qemu-uboot-arm", "uboot-arm-01")] {
                let mut dt = NewDeviceType::named(ty);
                dt.disable_health_check = true;
                s.create_device_type(&dt)?;
                let mut new = NewDevice::new(board, ty);
                new.dictionary =
                    std::fs::read_to_string(lab.join(format!("lab/devices/{board}.jinja2"))).ok();
                new.health = DeviceHealth::Good;
                s.create_device(&new)?;
            }
            Ok(())
        })
        .await?;
    let (tx, mut calls) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let returned = Arc::new(Mutex::new(None));
    let runner = Arc::new(HeldRunner {
        calls: tx,
        release: Arc::clone(&release),
        returned: Arc::clone(&returned),
    });
    let mut events = app.events().subscribe();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.clone().run_with(runner, async {
        let _ = stop_rx.await;
    }));

    let submit = |device_type: &'static str| {
        let app = app.clone();
        async move {
            let mut new = NewJob::new("alice", "job_name: bench\n");
            new.requested_device_type = Some(device_type.to_owned());
            let job = app.store().call(move |s| s.insert_job(&new)).await?;
            app.wake_scheduler();
            anyhow::Ok(job.id)
        }
    };

    // Let start-up settle, then measure idle memory.
    let first = submit("qemu-uboot-arm").await?;
    let _ = calls.recv().await;
    release.notify_one();
    wait_idle(&mut events, "uboot-arm-01").await;
    let _ = first;
    let rss_idle = vm_rss_kib();

    let mut to_dispatcher = Vec::new();
    let mut to_idle = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        submit("qemu-uboot-arm").await?;
        let Some((_, called)) = calls.recv().await else {
            break;
        };
        to_dispatcher.push(called - t0);
        release.notify_one();
        wait_idle(&mut events, "uboot-arm-01").await;
        let idle = Instant::now();
        if let Some(ret) = returned.lock().ok().and_then(|mut r| r.take()) {
            to_idle.push(idle - ret);
        }
    }

    // Two jobs running at once.
    submit("qemu-uboot-arm").await?;
    submit("qemu").await?;
    let _ = calls.recv().await;
    let _ = calls.recv().await;
    let rss_two = vm_rss_kib();

    println!(
        "lavabox scheduler benchmark ({ROUNDS} rounds, fake runner at the dispatcher boundary)"
    );
    stats("submit -> job in dispatcher", to_dispatcher);
    stats("job end -> device Idle", to_idle);
    println!("VmRSS before App::build            {rss_start:>7} KiB");
    println!("VmRSS appliance idle                {rss_idle:>7} KiB");
    println!("VmRSS appliance, two jobs running   {rss_two:>7} KiB");

    let _ = stop_tx.send(());
    task.await??;
    Ok(())
}

async fn wait_idle(
    events: &mut tokio::sync::broadcast::Receiver<Arc<lavabox::events::Published>>,
    host: &str,
) {
    let wait = async {
        while let Ok(p) = events.recv().await {
            if matches!(&p.event, Event::Device(d) if d.hostname == host && d.state == DeviceState::Idle)
            {
                return;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .is_err()
    {
        eprintln!("timed out waiting for {host} to become Idle");
    }
}
