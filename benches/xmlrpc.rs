//! XML-RPC throughput and latency: `system.version` and `scheduler.jobs.list` with 1,000 jobs,
//! 1 and 16 concurrent clients, over real TCP on 127.0.0.1, each both with HTTP keep-alive (as
//! Python's `xmlrpc.client` transport does) and with a new connection per call.
//!
//! Run: `cargo bench --bench xmlrpc` (or `--profile dev` for a quick look). Prints p50/p99
//! latency and calls/s per scenario. LAVA 2023.01 reference: 20.8 ms p50, 47 calls/s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lavabox::api::xmlrpc::codec::{self, Value};
use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::store::{NewDevice, NewDeviceType, NewJob, NewUser};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long each scenario runs.
const RUN: Duration = Duration::from_secs(3);

/// One keep-alive connection speaking HTTP/1.1.
struct Conn {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream: BufReader::new(stream),
            addr,
        }
    }

    async fn call(&mut self, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "POST /RPC2 HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write");
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("read");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l
                .to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
            {
                len = v.parse().expect("content-length");
            }
        }
        let mut out = vec![0; len];
        self.stream.read_exact(&mut out).await.expect("body");
        out
    }
}

async fn start() -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::from_raw(RawConfig::default(), None).expect("config");
    config.apply(&Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: None,
    });
    let app = App::build(config).await.expect("app");
    app.store()
        .call(|s| {
            s.create_user(&NewUser::named("alice"))?;
            s.create_device_type(&NewDeviceType::named("qemu"))?;
            s.create_device(&NewDevice::new("qemu01", "qemu"))?;
            for i in 0..1000 {
                let mut job = NewJob::new("alice", "job_name: bench\n");
                job.description = format!("bench job {i}");
                job.requested_device_type = Some("qemu".into());
                s.insert_job(&job)?;
            }
            Ok(())
        })
        .await
        .expect("seed");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(lavabox::api::serve(listener, app, std::future::pending()));
    (addr, dir)
}

/// How a client uses TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    /// One connection for all calls.
    KeepAlive,
    /// A new connection for every call.
    PerCall,
}

async fn scenario(
    addr: SocketAddr,
    name: &str,
    params: &[Value],
    clients: usize,
    connection: Connection,
) {
    let body = codec::encode_call(name, params).into_bytes();
    // Sanity: the call succeeds.
    let mut probe = Conn::open(addr).await;
    let resp = probe.call(&body).await;
    assert!(
        matches!(codec::decode_response(&resp), Ok(Ok(_))),
        "{name} failed: {}",
        String::from_utf8_lossy(&resp)
    );
    // Closed connections sit in TIME_WAIT on the client side: a short run keeps the
    // per-call scenarios inside the ephemeral port range.
    let run = match connection {
        Connection::KeepAlive => RUN,
        Connection::PerCall => Duration::from_secs(1),
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let mut lat = Vec::new();
            while started.elapsed() < run {
                let t = Instant::now();
                if connection == Connection::PerCall {
                    conn = Conn::open(addr).await;
                }
                conn.call(&body).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p).ceil() as usize).saturating_sub(1);
        all.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rate = all.len() as f64 / elapsed;
    println!(
        "{name:<22} clients={clients:<3} {:<10} calls={:<7} p50={:>7.3} ms  p99={:>7.3} ms  {:>9.0} calls/s  ({:.0}x LAVA's 47/s)",
        match connection {
            Connection::KeepAlive => "keep-alive",
            Connection::PerCall => "per-call",
        },
        all.len(),
        pct(0.50),
        pct(0.99),
        rate,
        rate / 47.0
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (addr, _dir) = start().await;
        for connection in [Connection::KeepAlive, Connection::PerCall] {
            for clients in [1, 16] {
                scenario(addr, "system.version", &[], clients, connection).await;
                scenario(addr, "scheduler.jobs.list", &[], clients, connection).await;
            }
        }
    });
}
