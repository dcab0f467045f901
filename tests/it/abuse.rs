//! Issue 21: lavabox under abuse on a small box. The real `lavabox serve` process (its
//! connection limits, its SIGTERM, its resident memory read from `/proc`), all traffic on
//! loopback, every wait bounded; the small cases through the one server fixture and curl.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::common::server::{Options, Server};

#[path = "../../benches/support/bigjob.rs"]
mod bigjob;

/// A safety net for waits that end on an event; never what a test measures.
const SAFETY: Duration = Duration::from_secs(120);

/// Half a request header: a slowloris client that never finishes it.
const HALF_HEADER: &[u8] = b"POST /RPC2 HTTP/1.1\r\nHost: lavabox\r\nContent-Type: text/xml\r\n";

/// `lavabox serve` with `http` as its `[http]` section, once it logged its readiness.
struct Serve {
    child: Child,
    addr: SocketAddr,
    pid: u32,
    log: mpsc::UnboundedReceiver<String>,
    _dir: tempfile::TempDir,
}

impl Serve {
    async fn start(http: &str) -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("lavabox.toml");
        std::fs::write(
            &config,
            format!("instance = \"abuse\"\n[tftp]\nlisten = \"127.0.0.1:0\"\n[http]\n{http}"),
        )
        .expect("write the config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lavabox"))
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start lavabox serve");
        let pid = child.id().expect("pid");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = loop {
            let line = tokio::time::timeout(SAFETY, lines.next_line())
                .await
                .expect("readiness line in time")
                .expect("server stdout")
                .expect("server still running");
            if line.contains(lavabox::app::READY) {
                let at = line.find("listen=").expect("listen address") + "listen=".len();
                let addr: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                break addr.parse().expect("listen address");
            }
        };
        let (tx, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve {
            child,
            addr,
            pid,
            log,
            _dir: dir,
        }
    }

    /// The next log line containing `what`.
    async fn until_log(&mut self, what: &str) -> String {
        tokio::time::timeout(SAFETY, async {
            loop {
                match self.log.recv().await {
                    Some(line) if line.contains(what) => return line,
                    Some(_) => {}
                    None => panic!("the server's log ended before `{what}`"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line `{what}`"))
    }

    /// The log lines so far.
    fn drain_log(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.log.try_recv().ok()).collect()
    }

    /// `VmRSS` or `VmHWM` of the server, in kB.
    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("status");
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse().ok())
            .expect("memory field")
    }
}

/// Raises this process's soft descriptor limit to at least `want` (as root the hard limit
/// too): the test holds thousands of client sockets.
fn raise_nofile(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= want {
        return;
    }
    let hard = hard.max(want);
    setrlimit(Resource::RLIMIT_NOFILE, want, hard)
        .or_else(|_| setrlimit(Resource::RLIMIT_NOFILE, hard.min(want), hard))
        .expect("raise RLIMIT_NOFILE for the test's client sockets");
}

/// A whole `GET` answer over a fresh connection (`Connection: close`).
async fn get(addr: SocketAddr, path: &str) -> String {
    tokio::time::timeout(SAFETY, get_unbounded(addr, path))
        .await
        .expect("an answer before the safety net")
}

async fn get_unbounded(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: lavabox\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    answer
}

/// Reads one response with a `Content-Length` from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    tokio::time::timeout(SAFETY, read_response_unbounded(stream))
        .await
        .expect("a response before the safety net")
}

async fn read_response_unbounded(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed mid-response");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if data.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Waits until the server has closed every one of `streams` (EOF or reset); returns how many
/// it closed before the safety net.
async fn closed_by_server(streams: Vec<TcpStream>) -> usize {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                tokio::time::timeout(SAFETY, async {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await
                .is_ok()
            })
        })
        .collect();
    let mut closed = 0;
    for t in tasks {
        if t.await.expect("reader") {
            closed += 1;
        }
    }
    closed
}

/// Item 1: a silent socket, half a header, an idle kept-alive connection and a stalled body
/// are closed by the timeouts; 2,000 of them at once neither stop other clients from being answered within
/// a second nor stay open; reaching the cap is logged, rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_and_never_shut_out_other_clients() {
    lab_or_skip!();
    raise_nofile(4500);
    let mut s = Serve::start(
        "max_connections = 256\nheader_timeout_seconds = 2\nidle_timeout_seconds = 2\n",
    )
    .await;

    // Under the cap: only the timeouts can close these.
    let mut stalled = Vec::new();
    for i in 0..100 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        if i % 2 == 1 {
            c.write_all(HALF_HEADER).await.expect("half header");
        }
        stalled.push(c);
    }
    for _ in 0..10 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(b"GET /api/v0.2/system/version/ HTTP/1.1\r\nHost: lavabox\r\n\r\n")
            .await
            .expect("request");
        let answer = read_response(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        stalled.push(c);
    }
    // A body that stalls fails its request, and the connection closes.
    for _ in 0..10 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(
            b"POST /RPC2 HTTP/1.1\r\nHost: lavabox\r\nContent-Type: text/xml\r\n\
              Content-Length: 4000\r\n\r\n<?xml version=\"1.0\"?><methodCall>",
        )
        .await
        .expect("half a body");
        stalled.push(c);
    }
    assert_eq!(closed_by_server(stalled).await, 120);
    assert!(
        !s.drain_log()
            .iter()
            .any(|l| l.contains("connection limit reached")),
        "120 connections are under the cap of 256"
    );

    // 2,000 at once, eight times the cap.
    let mut stalled = Vec::new();
    for i in 0..2000 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        if i % 2 == 1 {
            // A closed peer may already have reset it: that is the server's doing too.
            let _ = c.write_all(HALF_HEADER).await;
        }
        stalled.push(c);
    }
    for _ in 0..9 {
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            get(s.addr, "/api/v0.2/system/version/"),
        )
        .await
        .expect("another client is answered within 1 s despite 2,000 stalled connections");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(closed_by_server(stalled).await, 2000);
    let cap_lines = s
        .drain_log()
        .into_iter()
        .filter(|l| l.contains("connection limit reached"))
        .count();
    assert!(
        (1..=2).contains(&cap_lines),
        "the cap is logged, at most once a minute: {cap_lines} lines"
    );
    // Still serving.
    assert!(
        get(s.addr, "/api/v0.2/system/version/")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

/// Item 2: SIGTERM with 50 stalled connections (25 mid-header, 25 mid-body) stops accepting
/// at once and exits within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_stalled_connections_exits_within_the_grace_period() {
    lab_or_skip!();
    const GRACE: Duration = Duration::from_secs(3);
    let mut s = Serve::start(
        "header_timeout_seconds = 600\nidle_timeout_seconds = 600\nshutdown_grace_seconds = 3\n",
    )
    .await;
    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        if i % 2 == 0 {
            c.write_all(HALF_HEADER).await.expect("half header");
        } else {
            c.write_all(
                b"POST /RPC2 HTTP/1.1\r\nHost: lavabox\r\nContent-Type: text/xml\r\n\
                  Content-Length: 4000\r\n\r\n<?xml version=\"1.0\"?><methodCall>",
            )
            .await
            .expect("half a body");
        }
        stalled.push(c);
    }
    // Connections are accepted in order: once a later one is answered, all 50 are in.
    assert!(
        get(s.addr, "/api/v0.2/system/version/")
            .await
            .starts_with("HTTP/1.1 200")
    );

    let term = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(s.pid).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    s.until_log("HTTP listener closed").await;
    let refused = TcpStream::connect(s.addr).await;
    assert!(
        refused.is_err(),
        "a new client is refused once shutdown began"
    );
    let status = tokio::time::timeout(SAFETY, s.child.wait())
        .await
        .expect("lavabox serve exits after SIGTERM")
        .expect("wait");
    let took = term.elapsed();
    assert!(status.success(), "{status:?}");
    // The grace period, with a generous margin for the rest of the stop.
    assert!(
        took < GRACE + Duration::from_secs(10),
        "exited {took:?} after SIGTERM"
    );
    let log = s.drain_log();
    assert!(
        log.iter()
            .any(|l| l.contains("after the shutdown grace period")),
        "the mid-body requests were dropped after the grace period: {log:?}"
    );
    assert!(log.iter().any(|l| l.contains("lavabox stopped")), "{log:?}");
    drop(stalled);
}

/// The XML-RPC call `scheduler.validate_yaml(job)`.
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

/// The memory ceiling stated in the configuration reference: 128 MB above idle.
const CEILING_KB: u64 = 128 * 1024;

/// Item 3: 32 anonymous 2 MiB validations at once are all answered, and the server stays
/// under the stated ceiling (its peak resident memory, `VmHWM`, against idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_validations_stay_under_the_memory_ceiling() {
    lab_or_skip!();
    let s = Serve::start("").await;
    let job = bigjob::big_job(2 * 1024 * 1024);
    let body = std::sync::Arc::new(validate_call(&job));
    let post = |addr: SocketAddr, body: std::sync::Arc<Vec<u8>>| async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(
                format!(
                    "POST /RPC2 HTTP/1.1\r\nHost: lavabox\r\nContent-Type: text/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .expect("header");
        stream.write_all(&body).await.expect("body");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("answer");
        answer
    };
    // One call first: idle is the server as it is once it has validated a job.
    let first = post(s.addr, std::sync::Arc::clone(&body)).await;
    assert!(first.contains("<nil/>"), "the job is valid: {first}");
    let idle = s.status_kb("VmRSS:");
    std::fs::write(format!("/proc/{}/clear_refs", s.pid), "5").expect("reset VmHWM");
    let calls: Vec<_> = (0..32)
        .map(|_| tokio::spawn(post(s.addr, std::sync::Arc::clone(&body))))
        .collect();
    let mut answered = 0;
    for call in calls {
        let answer = tokio::time::timeout(Duration::from_secs(600), call)
            .await
            .expect("answered")
            .expect("client task");
        assert!(
            answer.contains("<nil/>"),
            "{}",
            &answer[..answer.len().min(500)]
        );
        answered += 1;
    }
    assert_eq!(answered, 32);
    let peak = s.status_kb("VmHWM:");
    println!(
        "32 concurrent 2 MiB validations: idle {} MB, peak {} MB (+{} MB)",
        idle / 1024,
        peak / 1024,
        peak.saturating_sub(idle) / 1024
    );
    assert!(
        peak.saturating_sub(idle) < CEILING_KB,
        "peak {peak} kB is more than 128 MB above idle ({idle} kB)"
    );
}

/// `curl` with `args`; the response's status line and headers, then its body.
fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Item 4: an empty XML-RPC body is a fault, a megabyte of unknown method name is not echoed
/// back, and REST `limit` is capped at `MAX_LIMIT` with a `next` link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_bodies_long_names_and_huge_pages_answer_as_stated() {
    lab_or_skip!();
    let server = Server::start(Options::api_only().seed(|s| {
        for i in 0..1005 {
            s.create_tag(&format!("tag-{i:04}"), None)?;
        }
        Ok(())
    }))
    .await;
    let rpc = format!("http://{}/RPC2", server.addr);
    let empty = tokio::task::spawn_blocking({
        let rpc = rpc.clone();
        move || {
            curl(&[
                "-X",
                "POST",
                "-H",
                "Content-Type: text/xml",
                "--data-binary",
                "",
                &rpc,
            ])
        }
    })
    .await
    .unwrap();
    assert!(empty.starts_with("HTTP/1.1 200"), "{empty}");
    assert!(empty.contains("<name>faultCode</name>"), "{empty}");
    assert!(empty.contains("<int>-32700</int>"), "{empty}");
    assert!(empty.contains("empty request body"), "{empty}");

    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.xml");
    let name = "x".repeat(1024 * 1024);
    std::fs::write(
        &long,
        format!("<?xml version=\"1.0\"?><methodCall><methodName>{name}</methodName><params/></methodCall>"),
    )
    .unwrap();
    let answer = tokio::task::spawn_blocking({
        let rpc = rpc.clone();
        let long = format!("@{}", long.display());
        move || curl(&["-H", "Content-Type: text/xml", "--data-binary", &long, &rpc])
    })
    .await
    .unwrap();
    assert!(
        answer.contains("<int>-32601</int>"),
        "{}",
        &answer[..answer.len().min(2000)]
    );
    assert!(
        answer.contains("No such method: 'xxxx"),
        "{}",
        &answer[..answer.len().min(2000)]
    );
    assert!(
        answer.len() < 2000,
        "the name is cut: {} bytes",
        answer.len()
    );

    let tags = format!("http://{}/api/v0.2/tags/?limit=100000", server.addr);
    let page = tokio::task::spawn_blocking(move || curl(&[&tags]))
        .await
        .unwrap();
    let body = &page[page.find("\r\n\r\n").expect("body") + 4..];
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON page");
    assert_eq!(json["count"], 1005);
    assert_eq!(json["results"].as_array().map(Vec::len), Some(1000));
    let next = json["next"].as_str().expect("a next link");
    assert!(
        next.ends_with("/api/v0.2/tags/?limit=1000&offset=1000"),
        "{next}"
    );
    let rest = tokio::task::spawn_blocking({
        let next = next.to_owned();
        move || curl(&[&next])
    })
    .await
    .unwrap();
    let body = &rest[rest.find("\r\n\r\n").expect("body") + 4..];
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON page");
    assert_eq!(json["results"].as_array().map(Vec::len), Some(5));
    assert!(json["next"].is_null());
    server.stop().await;
}
