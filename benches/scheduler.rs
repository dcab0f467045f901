//! The appliance's own latency on the run path, printed (no assertions).
//!
//! `cargo bench --bench scheduler` runs the real `App` (SQLite store in a temporary directory,
//! the scheduler loop woken by events, the TFTP server on an ephemeral port, the event bus)
//! and the real dispatcher, with fakes only at the hardware boundary: a `CommandRunner` that
//! notes the instant each power command is issued, and a scripted U-Boot board on the
//! console. Every round submits a real U-Boot job (deploy of two small files to the TFTP
//! root, power cycle, U-Boot commands, login) on an idle appliance and measures:
//! - submit → power-on: insert + wake → the dispatcher issues `power_on_command`;
//! - job end → device Idle: the dispatcher's final power-off (the last thing it does to the
//!   board) → the device's Idle event on the bus (log flushed, directories removed, the
//!   end recorded in the store, the event published).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig, RawTftp};
use lavabox::dispatcher::Dispatcher;
use lavabox::events::Event;
use lavabox::hw::fake::{FakeBoards, FakeConsole};
use lavabox::hw::{CommandOutput, CommandRunner, Error};
use lavabox::model::{DeviceHealth, DeviceState, JobHealth};
use lavabox::store::{NewDevice, NewDeviceType, NewJob, NewUser};
use tokio::sync::{broadcast, mpsc};

const ROUNDS: usize = 50;

/// The board's power commands (no hard reset, so a reset is power-off then power-on).
const DICTIONARY: &str = "{% extends 'qemu-uboot-arm.jinja2' %}\n\
{% set connection_command = 'bench-console' %}\n\
{% set power_on_command = 'power-on' %}\n\
{% set power_off_command = 'power-off' %}\n";

/// The hardware boundary: reports each command with the instant it was issued.
#[derive(Debug)]
struct TimedRunner {
    issued: mpsc::UnboundedSender<(String, Instant)>,
}

impl CommandRunner for TimedRunner {
    fn run<'a>(
        &'a self,
        command: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<CommandOutput, Error>> {
        let _ = self.issued.send((command.to_owned(), Instant::now()));
        Box::pin(async { Ok(CommandOutput::default()) })
    }
}

/// A U-Boot board that boots to a shell prompt.
fn board() -> FakeConsole {
    FakeConsole::new("U-Boot 2023.01\nHit any key to stop autoboot:  3\n")
        .on("^ ?$", "=> ")
        .on(
            "^bootz",
            "Starting kernel ...\n[0.0] Linux version 6.1\nroot@bench# ",
        )
        .on("^(setenv|tftp)", "=> ")
}

fn job(assets: &Path) -> String {
    format!(
        r#"job_name: bench
device_type: qemu-uboot-arm
visibility: public
timeouts:
  job: {{minutes: 1}}
  action: {{seconds: 30}}
  connection: {{seconds: 10}}
actions:
- deploy:
    to: tftp
    kernel: {{url: 'file://{dir}/zImage', type: zimage}}
    ramdisk: {{url: 'file://{dir}/ramdisk'}}
- boot:
    method: u-boot
    commands: ramdisk
    prompts: ['root@bench# ']
"#,
        dir = assets.display()
    )
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        println!("{name:<28} no samples");
        return;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(1);
    println!(
        "{name:<28} n={n:<3} min {:>6.2} ms  median {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms  mean {:>6.2} ms",
        ms(samples[0]),
        ms(samples[n / 2]),
        ms(samples[(n * 95 / 100).min(n - 1)]),
        ms(samples[n - 1]),
        ms(mean),
    );
}

fn main() -> anyhow::Result<()> {
    // The runtime `cli::serve` builds.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets)?;
    std::fs::write(assets.join("zImage"), vec![0u8; 64 * 1024])?;
    std::fs::write(assets.join("ramdisk"), vec![0u8; 64 * 1024])?;
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
        listen: Some("127.0.0.1:0".parse()?),
    });
    config.events.zmq_port = 0;
    let app = App::build(config).await?;
    app.store()
        .call(move |s| {
            s.create_user(&NewUser::named("alice"))?;
            let mut dt = NewDeviceType::named("qemu-uboot-arm");
            dt.disable_health_check = true;
            s.create_device_type(&dt)?;
            let mut new = NewDevice::new("bench-01", "qemu-uboot-arm");
            new.dictionary = Some(DICTIONARY.to_owned());
            new.health = DeviceHealth::Good;
            s.create_device(&new)?;
            Ok(())
        })
        .await?;
    let (issued, mut commands) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher::new(
        app.dispatcher_config(),
        app.store().clone(),
        app.templates().clone(),
    )
    .with_boards(Arc::new(FakeBoards::new(
        Arc::new(TimedRunner { issued }),
        Arc::new(board()),
    )));
    let mut events = app.events().subscribe();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.clone().run_with(Arc::new(dispatcher), async {
        let _ = stop_rx.await;
    }));

    let definition = job(&assets);
    let mut to_power_on = Vec::new();
    let mut to_idle = Vec::new();
    let mut in_dispatcher = Vec::new();
    let mut complete = 0;
    // One warm-up round (page cache, first connections), then the measured ones.
    for round in 0..=ROUNDS {
        let mut new = NewJob::new("alice", definition.clone());
        new.requested_device_type = Some("qemu-uboot-arm".to_owned());
        let submitted = Instant::now();
        let job = app.store().call(move |s| s.insert_job(&new)).await?;
        app.wake_scheduler();
        let power_on = loop {
            match commands.recv().await {
                Some((cmd, at)) if cmd == "power-on" => break at,
                Some(_) => {}
                None => anyhow::bail!("the dispatcher went away"),
            }
        };
        let idle = wait_idle(&mut events).await?;
        let mut last_off = None;
        while let Ok((cmd, at)) = commands.try_recv() {
            if cmd == "power-off" {
                last_off = Some(at);
            }
        }
        let Some(ended) = last_off else {
            anyhow::bail!(
                "the dispatcher never powered the board off after job {}",
                job.id
            );
        };
        let id = job.id;
        let stored = app.store().call(move |s| s.job(id)).await?;
        if round > 0 {
            if stored.is_some_and(|j| j.health == JobHealth::Complete) {
                complete += 1;
            }
            to_power_on.push(power_on - submitted);
            to_idle.push(idle - ended);
            let log = std::fs::read_to_string(app.config().job_log_path(id)).unwrap_or_default();
            if let Some(d) = dispatcher_share(&log) {
                in_dispatcher.push(d);
            }
        }
    }

    println!(
        "lavabox run-path benchmark: {ROUNDS} U-Boot jobs on an idle appliance (real store, \
         scheduler and dispatcher; fake power commands and console), {complete} Complete"
    );
    stats("submit -> power-on issued", to_power_on);
    stats("  of which in the dispatcher", in_dispatcher);
    stats("job end -> device Idle", to_idle);

    let _ = stop_tx.send(());
    task.await??;
    Ok(())
}

/// From the job log: the dispatcher's first line to its power-on line (validation, device
/// rendering, pipeline, deploy, console), the rest of submit → power-on being the scheduler's.
fn dispatcher_share(log: &str) -> Option<Duration> {
    // `- {"dt": "2026-11-22T10:03:41.528692", ...`: seconds since midnight are enough here.
    let secs = |line: &str| -> Option<f64> {
        let time = line.split("\"dt\": \"").nth(1)?.get(11..26)?;
        let mut parts = time.split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    };
    let first = secs(log.lines().next()?)?;
    let on = secs(log.lines().find(|l| l.contains("reset-device: power-on"))?)?;
    Duration::try_from_secs_f64(on - first).ok()
}

/// Waits for the device to be Idle again; returns when that event arrived.
async fn wait_idle(
    events: &mut broadcast::Receiver<Arc<lavabox::events::Published>>,
) -> anyhow::Result<Instant> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(p) => {
                    if matches!(&p.event, Event::Device(d) if d.state == DeviceState::Idle) {
                        return Ok(Instant::now());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => anyhow::bail!("event bus closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .map_err(|_| anyhow::anyhow!("the device did not come back Idle within 60 s"))?
}
