//! CPU one board's console costs the appliance while it streams at 115200 baud, printed (no
//! assertions).
//!
//! `cargo bench --bench console` (as root: the serial port is linked under `/dev`, as a
//! dictionary names it; needs socat) joins two ptys with socat, opens one end through the
//! dispatcher's console backend for the connection command `/dev/… 115200` (`hw::SerialConsole`),
//! and has a separate process play the board on the other end: boot-log lines with LAVA test
//! signals among them, paced at 11 520 bytes a second (115200 baud, 8N1). This process runs
//! what a job does with that stream — the expect engine's reader (`Connection`), the job log
//! writer (a real file, written and synced as `dispatcher::log` does in a job) and the
//! test-shell `SignalParser` — and prints the CPU time it used (utime + stime from
//! `/proc/self/stat`: every thread of this process, including the log writer) against wall
//! time. The feeder and socat are the board and the wire, separate processes whose CPU is not
//! counted. Kernel work done outside this process on its behalf (the filesystem journal
//! thread committing the log's syncs) is not counted either.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lavabox::dispatcher::connection::Connection;
use lavabox::dispatcher::log::JobLog;
use lavabox::testshell::signal::SignalParser;
use tokio::process::Command;

#[path = "../tests/it/socat.rs"]
mod socat;

/// How long the console streams.
const SECONDS: u64 = 30;
const BYTES_PER_SECOND: u64 = 11_520;

/// The board: a paced stream of boot-log lines with a test signal every 40 lines, ending
/// with a marker line.
const FEEDER: &str = r#"
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NOCTTY)
rate, seconds = int(sys.argv[2]), int(sys.argv[3])
lines, n = [], 0
while sum(len(l) for l in lines) < rate:
    n += 1
    if n % 40 == 0:
        lines.append(b"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=case-%d RESULT=pass>\n" % n)
    else:
        lines.append(b"[%6d.%06d] usb 1-1: new high-speed USB device number %d using dwc2\n" % (n, n * 7, n))
stream = b"".join(lines)[:rate]
slot = 0.01                       # 10 ms slots: the UART's bytes arrive spread over time
per_slot = rate // 100
start = time.monotonic()
sent = 0
for s in range(seconds * 100):
    chunk = stream[(s % 100) * per_slot:(s % 100 + 1) * per_slot]
    os.write(fd, chunk)
    sent += len(chunk)
    delay = start + (s + 1) * slot - time.monotonic()
    if delay > 0:
        time.sleep(delay)
os.write(fd, b"\nBENCH-END\n")
print(sent, flush=True)
"#;

/// utime + stime of this process (all threads, live and exited), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn main() -> anyhow::Result<()> {
    // The runtime `cli::serve` builds. The work runs in a spawned task, as a job does in
    // lavabox (`scheduler::run` spawns one per job), not in `block_on` on the main thread,
    // which would add a cross-thread wake-up per event that lavabox does not have.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async { tokio::spawn(bench()).await? })
}

async fn bench() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let console = PathBuf::from(format!("/dev/lavabox-bench-{}", std::process::id()));
    let board = socat::board_path(&console);
    let socat::Socat {
        child: mut socat,
        mut log,
    } = socat::start(&console).await?;
    // socat keeps logging; drain it so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });

    let spec: lavabox::hw::ConsoleSpec = format!("{} 115200", console.display())
        .parse()
        .expect("a serial console spec");
    let factory = spec.factory(None);
    let (log, log_task) = JobLog::open(dir.path().join("output.yaml"))
        .await
        .map_err(anyhow::Error::msg)?;
    let mut conn = Connection::open(Arc::from(factory), log.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut parser = SignalParser::new();

    let feeder = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(FEEDER)
        .arg(&board)
        .arg(BYTES_PER_SECOND.to_string())
        .arg(SECONDS.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let cpu_start = cpu_seconds();
    let wall_start = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SECONDS * 3);
    let (mut received, mut signals, mut tail) = (0usize, 0usize, Vec::new());
    loop {
        match conn.read_chunk(deadline).await {
            Ok(Some(chunk)) => {
                received += chunk.len();
                signals += parser.feed(chunk).len();
                tail.extend_from_slice(chunk);
                if tail.windows(9).any(|w| w == b"BENCH-END") {
                    break;
                }
                let keep = tail.len().saturating_sub(16);
                tail.drain(..keep);
            }
            Ok(None) => anyhow::bail!("the stream stopped before its end marker"),
            Err(e) => anyhow::bail!("console: {e:?}"),
        }
    }
    let wall = wall_start.elapsed().as_secs_f64();
    drop(conn);
    drop(log);
    log_task.finish().await;
    let cpu = cpu_seconds() - cpu_start;
    let sent = feeder.wait_with_output().await?;
    let log_size = std::fs::metadata(dir.path().join("output.yaml"))?.len();
    println!(
        "lavabox console benchmark: one serial console at 115200 baud for {SECONDS} s \
         (hw::SerialConsole over a socat pty pair; Connection + job log + SignalParser)"
    );
    println!(
        "  received {received} bytes ({:.0} B/s; feeder sent {}), {signals} parser events, job log {log_size} bytes",
        received as f64 / wall,
        String::from_utf8_lossy(&sent.stdout).trim()
    );
    println!(
        "  CPU {cpu:.2} s in {wall:.1} s = {:.3} % of one core \
         (utime + stime of this process, all threads, from /proc/self/stat)",
        100.0 * cpu / wall
    );
    // Killed without a chance to remove its links, so they are removed here.
    let _ = socat.start_kill();
    for link in [&console, &board] {
        let _ = std::fs::remove_file(link);
    }
    Ok(())
}
