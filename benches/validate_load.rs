//! Benchmark: the memory and time of concurrent 2 MiB `scheduler.validate_yaml` calls (which
//! need no token) against the real `lavabox serve` process. For 1, 4, 16 and 32 clients at
//! once it prints the wall time until every call was answered, the server's peak resident
//! memory (`VmHWM`, reset before each round through `/proc/<pid>/clear_refs`), its resident
//! memory once the round is over, and both against idle. Prints figures; asserts nothing.
//! Run with `cargo bench --bench validate_load`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/bigjob.rs"]
mod bigjob;

/// The job size of the issue: 2 MiB.
const JOB_BYTES: usize = 2 * 1024 * 1024;

/// `VmRSS` or `VmHWM` of `pid`, in MB.
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// An XML-RPC `scheduler.validate_yaml` call carrying `job`.
fn validate_call(job: &str) -> Vec<u8> {
    let escaped = job
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>scheduler.validate_yaml</methodName>\
         <params><param><value><string>{escaped}</string></value></param></params></methodCall>"
    )
    .into_bytes()
}

/// Posts `body` to `/RPC2` and reads the whole answer (`Connection: close`).
fn post(addr: SocketAddr, body: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(
        stream,
        "POST /RPC2 HTTP/1.1\r\nHost: bench\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("lavabox.toml");
    std::fs::write(&config, "[tftp]\nlisten = \"127.0.0.1:0\"\n").expect("write the config");
    let mut server = Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start lavabox serve");
    let pid = server.id();
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("a readiness line")
            .expect("server stdout");
        if line.contains("lavabox ready") {
            let at = line.find("listen=").expect("listen address") + "listen=".len();
            let addr: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break addr.parse().expect("listen address");
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});

    let job = bigjob::big_job(JOB_BYTES);
    let body = std::sync::Arc::new(validate_call(&job));
    // One warm-up call, so the first round does not also count start-up allocations.
    let _ = post(addr, &body);
    let idle = status_mb(pid, "VmRSS:").unwrap_or(f64::NAN);
    println!(
        "lavabox serve (pid {pid}) idle after one warm-up call: {idle:.1} MB RSS; job {:.2} MiB",
        job.len() as f64 / 1048576.0
    );
    for clients in [1usize, 4, 16, 32] {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let start = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let body = std::sync::Arc::clone(&body);
                std::thread::spawn(move || post(addr, &body))
            })
            .collect();
        let (mut valid, mut faults, mut failed) = (0, 0, 0);
        for t in threads {
            match t.join() {
                Ok(Ok(answer)) if answer.contains("<nil/>") => valid += 1,
                Ok(Ok(answer)) if answer.contains("faultCode") => faults += 1,
                _ => failed += 1,
            }
        }
        let wall = start.elapsed();
        let peak = status_mb(pid, "VmHWM:").unwrap_or(f64::NAN);
        let after = status_mb(pid, "VmRSS:").unwrap_or(f64::NAN);
        println!(
            "{clients:>2} concurrent 2 MiB validations: {:.2} s wall; peak RSS {peak:.1} MB \
             (+{:.1} above idle), after {after:.1} MB (+{:.1}); answered valid {valid}, \
             fault {faults}, failed {failed}",
            wall.as_secs_f64(),
            peak - idle,
            after - idle,
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
