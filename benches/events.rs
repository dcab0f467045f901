//! Event publisher benchmark: latency from `Bus::publish` to a ZMQ subscriber, the CPU cost
//! of 10,000 events/s through the publisher (render from the change record, ZMQ send), and
//! the highest rate the publisher delivers without dropping.
//!
//! `cargo bench --bench events` prints the figures. The subscriber is a `SUB` socket on its
//! own thread in the same process; its thread's CPU time is subtracted, its libzmq I/O
//! thread's is not (so the publisher figure is an upper bound).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::events::message::Renderer;
use lavabox::events::zmq::Publisher;
use lavabox::model::{DeviceHealth, DeviceState, JobId};
use lavabox::store::{Changes, CurrentJob, DeviceChange};

fn device_change() -> Changes {
    Changes {
        jobs: vec![],
        devices: vec![DeviceChange {
            hostname: "qemu-01".into(),
            state: DeviceState::Running,
            health: DeviceHealth::Good,
            device_type: "qemu".into(),
            worker: Some("worker1".into()),
            job: Some(CurrentJob {
                id: JobId(42),
                sub_id: None,
            }),
        }],
    }
}

/// CPU time (user + system) of the process (`/proc/self/stat`) or the calling thread
/// (`/proc/thread-self/stat`), in clock ticks of 10 ms.
fn cpu_ticks(stat: &str) -> u64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
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
    let publisher = Publisher::start_on(
        app.events(),
        Renderer::new("org.lavabox"),
        "tcp://127.0.0.1:*",
    )?;
    let endpoint = publisher.endpoint().to_owned();

    // Subscriber thread: reports the arrival time of every message, and its own CPU ticks
    // when it stops (no message for 5 s).
    let (tx, rx) = mpsc::channel::<Instant>();
    let (cpu_tx, cpu_rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        let context = zmq::Context::new();
        let Ok(sub) = context.socket(zmq::SUB) else {
            return;
        };
        if sub.set_subscribe(b"").is_err() || sub.connect(&endpoint).is_err() {
            return;
        }
        let _ = sub.set_rcvtimeo(5_000);
        let _ = sub.set_rcvhwm(0);
        let mut reported = false;
        loop {
            match sub.recv_multipart(0) {
                Ok(_) => {
                    if tx.send(Instant::now()).is_err() {
                        return;
                    }
                    reported = false;
                }
                // Idle: report this thread's CPU so far (once per idle spell), keep going.
                Err(_) if !reported => {
                    let _ = cpu_tx.send(cpu_ticks("/proc/thread-self/stat"));
                    reported = true;
                }
                Err(_) => {}
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
    let sub_before = wait_idle_cpu(&rx, &cpu_rx);
    let cpu_before = cpu_ticks("/proc/self/stat");
    let dropped_before = publisher.dropped();
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..(total / 10) {
        ticker.tick().await;
        for _ in 0..10 {
            app.changed(&device_change());
        }
    }
    let wall = start.elapsed();
    let received = drain(&rx, total);
    let sub_cpu = wait_idle_cpu(&rx, &cpu_rx) - sub_before;
    // The 5 s idle wait before the subscriber reports costs no CPU.
    let cpu = Duration::from_millis((cpu_ticks("/proc/self/stat") - cpu_before - sub_cpu) * 10);
    println!(
        "10,000 events/s for {seconds} s: {received}/{total} received, {} dropped, \
         publisher CPU {cpu:?} over {wall:?} = {:.1}% of one core ({:.1} µs CPU per event; \
         subscriber thread {} ms subtracted)",
        publisher.dropped() - dropped_before,
        cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / total as f64,
        sub_cpu * 10
    );

    // Highest rate: bursts of 1,000 as fast as the runtime lets the publisher keep up.
    let total = 200_000u64;
    let dropped_before = publisher.dropped();
    let start = Instant::now();
    for _ in 0..(total / 1_000) {
        for _ in 0..1_000 {
            app.changed(&device_change());
        }
        tokio::task::yield_now().await;
    }
    let received = drain(&rx, total);
    let last = start.elapsed();
    println!(
        "flood of {total} events: {received} received, {} dropped, {:.0} events/s delivered",
        publisher.dropped() - dropped_before,
        received as f64 / last.as_secs_f64()
    );
    Ok(())
}

/// Receives up to `total` arrivals; stops early after 2 s of silence.
fn drain(rx: &mpsc::Receiver<Instant>, total: u64) -> u64 {
    let mut received = 0u64;
    while received < total {
        match tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(2))) {
            Ok(_) => received += 1,
            Err(_) => break,
        }
    }
    received
}

/// Waits for the subscriber to go idle and report its CPU ticks; drops stray arrivals.
fn wait_idle_cpu(rx: &mpsc::Receiver<Instant>, cpu_rx: &mpsc::Receiver<u64>) -> u64 {
    while rx.try_recv().is_ok() {}
    // Reports queued before now belong to an earlier idle spell.
    while cpu_rx.try_recv().is_ok() {}
    tokio::task::block_in_place(|| cpu_rx.recv_timeout(Duration::from_secs(30))).unwrap_or_default()
}
