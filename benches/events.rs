//! Event publisher benchmark: latency from `Bus::publish` to a ZMQ subscriber, and the CPU
//! cost of 10,000 events/s through the publisher (render with a store lookup, ZMQ send).
//!
//! `cargo bench --bench events` prints the figures. The subscriber is a `SUB` socket on its
//! own thread in the same process, so the CPU figure includes receiving as well.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::events::message::Renderer;
use lavabox::events::zmq::Publisher;
use lavabox::model::{DeviceHealth, DeviceState};
use lavabox::store::{Changes, DeviceChange, NewDevice, NewDeviceType};

fn device_change() -> Changes {
    Changes {
        jobs: vec![],
        devices: vec![DeviceChange {
            hostname: "qemu-01".into(),
            state: DeviceState::Idle,
            health: DeviceHealth::Good,
        }],
    }
}

/// Process CPU time (user + system) from /proc/self/stat, in clock ticks of 10 ms.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    get(11) + get(12)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::from_raw(RawConfig::default(), None)?;
    config.apply(&Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: None,
    });
    let app = App::build(config).await?;
    app.store()
        .call(|s| {
            s.create_device_type(&NewDeviceType::named("qemu"))?;
            s.create_device(&NewDevice::new("qemu-01", "qemu"))?;
            Ok(())
        })
        .await?;
    let publisher = Publisher::start_on(
        app.events(),
        Renderer::new(app.store().clone(), "org.lavabox"),
        "tcp://127.0.0.1:*",
    )?;
    let endpoint = publisher.endpoint().to_owned();

    // Subscriber thread: reports the arrival time of every message.
    let (tx, rx) = mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        let context = zmq::Context::new();
        let Ok(sub) = context.socket(zmq::SUB) else {
            return;
        };
        if sub.set_subscribe(b"").is_err() || sub.connect(&endpoint).is_err() {
            return;
        }
        let _ = sub.set_rcvtimeo(5_000);
        while sub.recv_multipart(0).is_ok() {
            if tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    // Wait until the subscription is live.
    loop {
        app.changed(&device_change());
        if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            break;
        }
    }
    while rx.recv_timeout(Duration::from_millis(100)).is_ok() {}

    // Latency: one event at a time.
    let rounds = 2_000;
    let mut latencies = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        app.changed(&device_change());
        let arrived = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(5)))?;
        latencies.push(arrived.duration_since(start));
    }
    latencies.sort();
    println!(
        "latency publish -> ZMQ subscriber ({rounds} events): p50 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );

    // Throughput: 10,000 events/s for 3 s, in 1 ms batches of 10.
    let seconds = 3u64;
    let total = 10_000 * seconds;
    let cpu_before = cpu_ticks();
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..(total / 10) {
        ticker.tick().await;
        for _ in 0..10 {
            app.changed(&device_change());
        }
    }
    let mut received = 0u64;
    while received < total {
        match tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(2))) {
            Ok(_) => received += 1,
            Err(_) => break,
        }
    }
    let wall = start.elapsed();
    let cpu = Duration::from_millis((cpu_ticks() - cpu_before) * 10);
    println!(
        "10,000 events/s for {seconds} s: {received}/{total} received, {} dropped, wall {:?}, CPU {:?} = {:.1}% of one core ({:.1} µs CPU per event)",
        publisher.dropped(),
        wall,
        cpu,
        cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / total as f64
    );
    Ok(())
}
