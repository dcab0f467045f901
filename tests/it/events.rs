//! Integration tests: the event publisher.
//!
//! The classic LAVA client (`tests/python/submit_and_wait.py`: Python's xmlrpc.client and
//! Debian's python3-zmq under `/usr/bin/python3`) watches a real job on the real server; a
//! raw WebSocket client watches the `/ws/` form. Readiness is a probe repeated until the
//! subscriber sees it (ZMQ's slow-joiner problem), not a sleep; every wait has a timeout as
//! a safety net.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::events::WorkerChange;
use lavabox::events::zmq::publisher_address;
use lavabox::model::{DeviceHealth, JobId};
use lavabox::store::{NewDevice, NewDeviceType, NewUser, WorkerHealth, WorkerState};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// A job definition (valid for the job parser) with `notify` appended by callers.
pub(crate) const JOB: &str = "device_type: qemu
job_name: events test
visibility: public
timeouts:
  job: {minutes: 30}
actions:
- command: {name: x}
";

/// An app on a temporary data directory with one Good `qemu` device on `worker1` and a
/// user `alice`; `edit` adjusts the configuration first.
pub(crate) async fn app(edit: impl FnOnce(&mut Config)) -> (tempfile::TempDir, App) {
    // As `lavabox serve` does: the app's notifier builds an HTTPS client.
    lavabox::tls::install_tls_provider();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config::from_raw(RawConfig::default(), None).expect("default config");
    config.apply(&Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: None,
    });
    config.events.zmq_port = 0;
    config.events.topic = "org.lavabox.test".into();
    edit(&mut config);
    let app = App::build(config).await.expect("app");
    app.store()
        .call(|s| {
            s.create_device_type(&NewDeviceType::named("qemu"))?;
            let mut device = NewDevice::new("qemu-01", "qemu");
            device.health = DeviceHealth::Good;
            device.worker_name = Some("worker1".into());
            s.create_device(&device)?;
            let mut alice = NewUser::named("alice");
            alice.email = "alice@example.com".into();
            s.create_user(&alice)?;
            Ok(())
        })
        .await
        .expect("fixtures");
    (dir, app)
}

/// Submits `definition` as `alice` through the one submission path, which publishes the
/// job's Submitted event.
pub(crate) async fn submit(app: &App, definition: &str) -> JobId {
    crate::common::submit_as(app, "alice", definition).await
}

fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

fn worker_probe(app: &App) {
    app.events().publish_worker(WorkerChange {
        hostname: "worker1".into(),
        state: WorkerState::Online,
        health: WorkerHealth::Active,
    });
}

/// A free TCP port on 127.0.0.1 for the ZMQ publisher (the configuration refuses port 0,
/// as LAVA clients are told a fixed `tcp://*:<port>`).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `lavabox ARGS` on the data directory and configuration of `dir`; panics unless it
/// succeeds, returns stdout.
fn lavabox(dir: &std::path::Path, args: &[&str]) -> String {
    crate::common::lavabox_cli(&dir.join("lavabox.toml"), &dir.join("data"), args)
}

/// The regression test: device events carry the job as it was at the change (a late
/// render used to show `device Reserved` without its job). The real server runs a real job
/// (a user command on a board without hardware), and the classic "submit and wait for the
/// end event" Python client watches it through pyzmq on the socket the server advertises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyzmq_subscriber_sees_a_job_life_cycle() {
    lab_or_skip!();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path();
    let zmq_port = free_port();
    std::fs::write(
        path.join("lavabox.toml"),
        format!(
            "instance = \"events-test\"\n[events]\nzmq_port = {zmq_port}\n\
             topic = \"org.lavabox.test\"\n[tftp]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .expect("config");
    std::fs::write(
        path.join("qemu-01.jinja2"),
        "{% extends 'qemu.jinja2' %}\n{% set user_commands = {'x': {'do': 'true'}} %}\n",
    )
    .expect("dictionary");
    std::fs::write(path.join("job.yaml"), JOB).expect("job");
    let s = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
    lavabox(path, &["user", "add", "alice", "--superuser"]);
    let token = lavabox(path, &["token", "add", "alice"]).trim().to_owned();
    lavabox(path, &["device-type", "add", "qemu", "--no-health-check"]);
    lavabox(path, &["device-type", "add", "probe", "--no-health-check"]);
    let dictionary = s(&path.join("qemu-01.jinja2"));
    for (name, ty) in [("qemu-01", "qemu"), ("probe-01", "probe")] {
        lavabox(
            path,
            &[
                "device",
                "add",
                name,
                "--type",
                ty,
                "--dictionary",
                &dictionary,
                "--health",
                "Good",
                "--worker",
                "worker1",
            ],
        );
    }

    let mut server = Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--config")
        .arg(path.join("lavabox.toml"))
        .arg("--data")
        .arg(path.join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lavabox serve");
    let mut log = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let ready = loop {
        let l = tokio::time::timeout(Duration::from_secs(60), log.next_line())
            .await
            .expect("readiness line in time")
            .expect("server stdout")
            .expect("server still running");
        if l.contains("lavabox ready") {
            break l;
        }
    };
    let http = ready
        .split_whitespace()
        .find_map(|f| f.strip_prefix("listen="))
        .expect("listen= in the readiness line")
        .to_owned();
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });

    let client = Command::new("/usr/bin/python3")
        .arg(python_script("submit_and_wait.py"))
        .arg(format!("http://alice:{token}@{http}/RPC2"))
        .arg(path.join("job.yaml"))
        .arg("probe-01")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start /usr/bin/python3 (python3-zmq installed?)");
    let out = tokio::time::timeout(Duration::from_secs(120), client.wait_with_output())
        .await
        .expect("the client ends when the job ends")
        .expect("client output");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(out.status.success(), "{}\n{stdout}", out.status);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("ready"), "{stdout}");
    let mut seen = Vec::new();
    let mut end = None;
    for l in lines {
        if let Some(rest) = l.strip_prefix("end ") {
            end = Some(rest.to_owned());
            break;
        }
        let frames: Vec<String> = serde_json::from_str(l).expect("frames");
        assert_eq!(frames.len(), 5, "{frames:?}");
        let data: Value = serde_json::from_str(&frames[4]).expect("data json");
        seen.push((frames, data));
    }
    let kinds: Vec<String> = seen
        .iter()
        .map(|(f, d)| format!("{} {}", f[0], d["state"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        kinds,
        [
            "org.lavabox.test.testjob Submitted",
            "org.lavabox.test.device Reserved",
            "org.lavabox.test.testjob Scheduled",
            "org.lavabox.test.device Running",
            "org.lavabox.test.testjob Running",
            "org.lavabox.test.device Idle",
            "org.lavabox.test.testjob Finished",
        ],
        "{stdout}"
    );
    let id = seen[0].1["job"].as_i64().expect("job id");
    assert_eq!(end, Some(format!("{id} Complete")), "{stdout}");
    for (frames, data) in &seen {
        // uuid1 and a zone-less UTC time.
        assert_eq!(frames[1].len(), 36, "{}", frames[1]);
        assert_eq!(&frames[1][14..15], "1", "{}", frames[1]);
        assert!(
            frames[2].len() >= 19 && !frames[2].ends_with('Z') && !frames[2].contains('+'),
            "{}",
            frames[2]
        );
        if frames[0].ends_with(".testjob") {
            assert_eq!(frames[3], "alice");
            assert_eq!(data["job"], serde_json::json!(id));
            assert_eq!(data["description"], "events test");
            assert_eq!(data["submitter"], "alice");
            assert_eq!(data["device_type"], "qemu");
            assert_eq!(data["priority"], 50);
            assert_eq!(data["health_check"], false);
            assert!(
                data["submit_time"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("+00:00"))
            );
            assert!(data.get("sub_id").is_none());
        } else {
            assert_eq!(frames[3], "lavaserver");
            assert_eq!(data["device"], "qemu-01");
            assert_eq!(data["device_type"], "qemu");
            assert_eq!(data["worker"], "worker1");
            assert_eq!(data["health"], "Good");
        }
    }
    let (_, submitted) = &seen[0];
    assert!(submitted.get("device").is_none() && submitted.get("start_time").is_none());
    assert_eq!(submitted["health"], "Unknown");
    // The defect: both busy device events name the job, whenever they are rendered.
    let (_, reserved) = &seen[1];
    assert_eq!(reserved["job"], serde_json::json!(id));
    let (_, scheduled) = &seen[2];
    assert_eq!(scheduled["device"], "qemu-01");
    assert_eq!(scheduled["worker"], "worker1");
    assert!(scheduled.get("start_time").is_none());
    let (_, device_running) = &seen[3];
    assert_eq!(device_running["job"], serde_json::json!(id));
    let (_, running) = &seen[4];
    assert!(running["start_time"].is_string() && running.get("end_time").is_none());
    let (_, idle) = &seen[5];
    assert!(idle.get("job").is_none());
    let (_, finished) = &seen[6];
    assert_eq!(finished["health"], "Complete");
    assert!(finished["end_time"].is_string() && finished["start_time"].is_string());
    server.kill().await.expect("stop the server");
}

#[test]
fn advertised_address_is_lavas_form() {
    let mut config = Config::from_raw(RawConfig::default(), None).expect("config");
    assert_eq!(publisher_address(&config), "tcp://*:5500");
    config.events.zmq_port = 5510;
    assert_eq!(publisher_address(&config), "tcp://*:5510");
}

/// Reads one unmasked server frame; returns (opcode, payload).
async fn ws_frame(stream: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.expect("frame header");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).await.expect("len16");
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).await.expect("len64");
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).expect("frame size")];
    stream.read_exact(&mut payload).await.expect("payload");
    (head[0] & 0x0f, payload)
}

#[tokio::test]
async fn websocket_streams_five_string_arrays() {
    let (_dir, app) = app(|_| {}).await;
    let router = lavabox::events::ws::router().with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws/ HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("handshake");
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("response");
        response.push(byte[0]);
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(
        response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{response}"
    );

    // The subscription exists once the upgrade completed; probe until a frame arrives anyway.
    let first = loop {
        worker_probe(&app);
        if let Ok(frame) =
            tokio::time::timeout(Duration::from_millis(100), ws_frame(&mut stream)).await
        {
            break frame;
        }
    };
    assert_eq!(first.0, 1, "text frame");
    let id = submit(&app, JOB).await;
    let frame = loop {
        let (opcode, payload) =
            tokio::time::timeout(Duration::from_secs(10), ws_frame(&mut stream))
                .await
                .expect("frame in time");
        assert_eq!(opcode, 1);
        let text = String::from_utf8(payload).expect("utf-8");
        if !text.contains(".worker\"") {
            break text;
        }
    };
    let array: Vec<String> = serde_json::from_str(&frame).expect("array of strings");
    assert_eq!(array.len(), 5);
    assert_eq!(array[0], "org.lavabox.test.testjob");
    assert_eq!(array[3], "alice");
    let data: Value = serde_json::from_str(&array[4]).expect("data is a JSON string");
    assert_eq!(data["job"], serde_json::json!(id.0));
    assert_eq!(data["state"], "Submitted");
}
