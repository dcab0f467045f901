//! Server tests over real loopback sockets: a small in-process client speaks raw packets
//! (so retransmission, foreign transfer IDs and shutdown can be provoked), and curl
//! checks interoperability with a real client.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::packet::{ErrorCode, Mode, Packet, Request, TftpOption};
use super::{Result, Server};

/// Safety net for every wait: tests await packets, this only bounds a broken run.
const SAFETY: Duration = Duration::from_secs(30);

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<()>>,
}

impl Running {
    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match timeout(SAFETY, self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => panic!("server task failed: {e}"),
            Err(_) => panic!("server did not stop"),
        }
    }
}

async fn start(root: &Path, configure: impl FnOnce(Server) -> Server) -> Running {
    let server = Server::bind("127.0.0.1:0".parse().expect("address"), root)
        .await
        .expect("bind");
    let server = configure(server);
    let addr = server.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Deterministic pseudo-random bytes (xorshift), so corruption cannot hide in patterns.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A minimal TFTP client on one socket.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    buf: Vec<u8>,
}

/// What a download produced.
#[derive(Debug)]
struct Download {
    data: Vec<u8>,
    oack: Option<Vec<TftpOption>>,
    blocks: u32,
}

impl Client {
    async fn new(server: SocketAddr) -> Client {
        Client {
            socket: UdpSocket::bind("127.0.0.1:0").await.expect("client bind"),
            server,
            buf: vec![0; 70_000],
        }
    }

    async fn send(&self, packet: &Packet, to: SocketAddr) {
        self.socket
            .send_to(&packet.encode(), to)
            .await
            .expect("client send");
    }

    async fn recv(&mut self) -> (Packet, SocketAddr) {
        let (len, from) = timeout(SAFETY, self.socket.recv_from(&mut self.buf))
            .await
            .expect("no packet from the server")
            .expect("client receive");
        (
            Packet::decode(&self.buf[..len]).expect("valid packet"),
            from,
        )
    }

    async fn request(&self, filename: &str, mode: Mode, options: &[(&str, &str)]) {
        let request = Request {
            filename: filename.into(),
            mode,
            options: options
                .iter()
                .map(|(n, v)| TftpOption::new(*n, *v))
                .collect(),
        };
        self.send(&Packet::Rrq(request), self.server).await;
    }

    /// Download a file; `Err` carries the server's error packet.
    async fn get(
        &mut self,
        filename: &str,
        mode: Mode,
        options: &[(&str, &str)],
    ) -> Result<Download, (ErrorCode, String)> {
        self.request(filename, mode, options).await;
        let mut blksize = 512usize;
        let mut expected: u16 = 1;
        let mut download = Download {
            data: Vec::new(),
            oack: None,
            blocks: 0,
        };
        let mut tid = None;
        loop {
            let (packet, from) = self.recv().await;
            if let (Packet::Error { code, message }, None) = (&packet, tid) {
                // Refused before a transfer started (the busy reply comes from port 69).
                return Err((*code, message.clone()));
            }
            if let Some(tid) = tid {
                assert_eq!(from, tid, "server changed transfer ID");
            } else {
                assert_ne!(from, self.server, "transfer must use its own port");
                tid = Some(from);
            }
            match packet {
                Packet::Oack { options } => {
                    if let Some(b) = options.iter().find(|o| o.name == "blksize") {
                        blksize = b.value.parse().expect("numeric blksize");
                    }
                    download.oack = Some(options);
                    self.send(&Packet::Ack { block: 0 }, from).await;
                }
                Packet::Data { block, data } => {
                    assert_eq!(block, expected, "block out of order");
                    let last = data.len() < blksize;
                    download.data.extend_from_slice(&data);
                    download.blocks += 1;
                    self.send(&Packet::Ack { block }, from).await;
                    if last {
                        return Ok(download);
                    }
                    expected = expected.wrapping_add(1);
                }
                Packet::Error { code, message } => return Err((code, message)),
                other => panic!("unexpected packet {other:?}"),
            }
        }
    }
}

fn root_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, data) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, data).expect("write");
    }
    dir
}

#[tokio::test]
async fn serves_files_byte_exact_with_and_without_options() {
    let small = content(1000, 1);
    let exact = content(1024, 2); // A multiple of 512: ends with an empty block.
    let root = root_with(&[("42/zImage", &small), ("exact", &exact)]);
    let server = start(root.path(), |s| s).await;
    let mut client = Client::new(server.addr).await;

    let got = client
        .get("42/zImage", Mode::Octet, &[])
        .await
        .expect("get");
    assert_eq!(got.data, small);
    assert_eq!(got.oack, None);

    let got = client.get("exact", Mode::Octet, &[]).await.expect("get");
    assert_eq!(got.data, exact);
    assert_eq!(got.blocks, 3);

    // What U-Boot sends.
    let got = client
        .get(
            "/42/zImage",
            Mode::Octet,
            &[("timeout", "5"), ("tsize", "0"), ("blksize", "1468")],
        )
        .await
        .expect("get");
    assert_eq!(got.data, small);
    assert_eq!(
        got.oack,
        Some(vec![
            TftpOption::new("blksize", "1468"),
            TftpOption::new("timeout", "5"),
            TftpOption::new("tsize", "1000"),
        ])
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn netascii_converts_line_ends() {
    let root = root_with(&[("text", b"one\ntwo\rthree\n")]);
    let server = start(root.path(), |s| s).await;
    let mut client = Client::new(server.addr).await;
    let got = client
        .get("text", Mode::Netascii, &[("tsize", "0"), ("blksize", "8")])
        .await
        .expect("get");
    assert_eq!(got.data, b"one\r\ntwo\r\0three\r\n");
    // No tsize for netascii: its size is only known after conversion.
    assert_eq!(got.oack, Some(vec![TftpOption::new("blksize", "8")]));
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn refuses_missing_files_writes_and_escapes() {
    let root = root_with(&[("42/zImage", b"kernel"), ("42/dir/file", b"x")]);
    let outside = root_with(&[("secret", b"secret")]);
    let outside_file = outside.path().join("secret");
    std::os::unix::fs::symlink(&outside_file, root.path().join("escape")).expect("symlink");
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape-dir")).expect("symlink");
    std::os::unix::fs::symlink("42/zImage", root.path().join("inside")).expect("symlink");
    let server = start(root.path(), |s| s).await;
    let mut client = Client::new(server.addr).await;

    let refused = |code: ErrorCode| {
        move |r: Result<Download, (ErrorCode, String)>| match r {
            Err((got, _)) => assert_eq!(got, code),
            Ok(d) => panic!("served {} bytes, expected error {code:?}", d.data.len()),
        }
    };
    let not_found = refused(ErrorCode::FileNotFound);
    let violation = refused(ErrorCode::AccessViolation);

    not_found(client.get("42/missing", Mode::Octet, &[]).await);
    not_found(client.get("42/dir", Mode::Octet, &[]).await);
    not_found(client.get("42/zImage/x", Mode::Octet, &[]).await);
    not_found(client.get("", Mode::Octet, &[]).await);
    violation(client.get("../secret", Mode::Octet, &[]).await);
    violation(client.get("42/../../secret", Mode::Octet, &[]).await);
    violation(client.get("escape", Mode::Octet, &[]).await);
    violation(client.get("escape-dir/secret", Mode::Octet, &[]).await);
    let absolute = outside_file.to_str().expect("utf-8 path");
    not_found(client.get(absolute, Mode::Octet, &[]).await);
    let up = format!("{}/../secret", root.path().display());
    violation(client.get(&up, Mode::Octet, &[]).await);
    refused(ErrorCode::IllegalOperation)(client.get("42/zImage", Mode::Mail, &[]).await);

    // A symlink that stays inside the root is fine.
    let got = client.get("inside", Mode::Octet, &[]).await.expect("get");
    assert_eq!(got.data, b"kernel");

    // Writes are refused with "access violation".
    let write = Request {
        filename: "42/new".into(),
        mode: Mode::Octet,
        options: vec![],
    };
    client.send(&Packet::Wrq(write), server.addr).await;
    match client.recv().await.0 {
        Packet::Error { code, message } => {
            assert_eq!(code, ErrorCode::AccessViolation);
            assert!(message.contains("access violation"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!root.path().join("42/new").exists());

    // Garbage on the well-known port is answered with "illegal operation".
    client
        .socket
        .send_to(b"\x00\x09", server.addr)
        .await
        .expect("send");
    match client.recv().await.0 {
        Packet::Error { code, .. } => assert_eq!(code, ErrorCode::IllegalOperation),
        other => panic!("unexpected {other:?}"),
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn retransmits_unacknowledged_blocks_and_rejects_foreign_tids() {
    let data = content(700, 4);
    let root = root_with(&[("f", &data)]);
    let server = start(root.path(), |s| {
        s.with_retransmit_timeout(Duration::from_millis(50))
            .with_max_retries(50)
            .with_max_transfers(1)
    })
    .await;
    let mut client = Client::new(server.addr).await;
    client.request("f", Mode::Octet, &[]).await;
    let (first, tid) = client.recv().await;
    // Not acknowledged: the server must send the same block again.
    let (again, from) = client.recv().await;
    assert_eq!(from, tid);
    assert_eq!(first, again);
    assert!(matches!(first, Packet::Data { block: 1, .. }));

    // One transfer allowed: a second request is told the server is busy.
    let mut other = Client::new(server.addr).await;
    other.request("f", Mode::Octet, &[]).await;
    match other.recv().await.0 {
        Packet::Error { code, message } => {
            assert_eq!(code, ErrorCode::NotDefined);
            assert!(message.contains("busy"), "{message}");
        }
        p => panic!("unexpected {p:?}"),
    }
    // A packet from a foreign transfer ID gets error 5 and leaves the transfer alone.
    other.send(&Packet::Ack { block: 1 }, tid).await;
    match other.recv().await.0 {
        Packet::Error { code, .. } => assert_eq!(code, ErrorCode::UnknownTransferId),
        p => panic!("unexpected {p:?}"),
    }

    // Acknowledge and finish normally, ignoring retransmitted copies of block 1.
    client.send(&Packet::Ack { block: 1 }, tid).await;
    let rest = loop {
        match client.recv().await.0 {
            Packet::Data { block: 1, .. } => continue,
            Packet::Data { block: 2, data } => break data,
            p => panic!("unexpected {p:?}"),
        }
    };
    client.send(&Packet::Ack { block: 2 }, tid).await;
    assert_eq!([&data[..512], &rest[..]].concat(), data);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_retransmitted_request_does_not_start_a_second_transfer() {
    let data = content(3000, 9);
    let root = root_with(&[("f", &data)]);
    let server = start(root.path(), |s| s.with_max_transfers(1)).await;
    let mut client = Client::new(server.addr).await;
    // The first request; `get` sends the same request again from the same port. A second
    // transfer would show up as a "busy" error or as data from a second port.
    client.request("f", Mode::Octet, &[]).await;
    let got = client.get("f", Mode::Octet, &[]).await.expect("get");
    assert!(got.data == data, "content differs");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn abandons_silent_clients_and_frees_the_slot() {
    let root = root_with(&[("f", &content(600, 5))]);
    let server = start(root.path(), |s| {
        s.with_retransmit_timeout(Duration::from_millis(20))
            .with_max_retries(2)
            .with_max_transfers(1)
    })
    .await;
    let mut silent = Client::new(server.addr).await;
    silent.request("f", Mode::Octet, &[]).await;
    // The first send and two retransmissions, then the server gives up.
    for _ in 0..3 {
        assert!(matches!(
            silent.recv().await.0,
            Packet::Data { block: 1, .. }
        ));
    }
    // The slot is released once the transfer is abandoned: retry until served
    // (the safety net bounds the loop).
    let mut client = Client::new(server.addr).await;
    let got = timeout(SAFETY, async {
        loop {
            match client.get("f", Mode::Octet, &[]).await {
                Ok(got) => break got,
                Err((ErrorCode::NotDefined, m)) if m.contains("busy") => continue,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
    })
    .await
    .expect("slot never freed");
    assert_eq!(got.data.len(), 600);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn shutdown_ends_transfers_with_an_error() {
    let root = root_with(&[("f", &content(2000, 6))]);
    let server = start(root.path(), |s| s.with_retransmit_timeout(SAFETY)).await;
    let mut client = Client::new(server.addr).await;
    client.request("f", Mode::Octet, &[]).await;
    let (first, tid) = client.recv().await;
    assert!(matches!(first, Packet::Data { block: 1, .. }));
    let stopping = tokio::spawn(server.stop());
    let (packet, from) = client.recv().await;
    assert_eq!(from, tid);
    match packet {
        Packet::Error { message, .. } => assert!(message.contains("shutting down"), "{message}"),
        p => panic!("unexpected {p:?}"),
    }
    stopping.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn bind_rejects_a_missing_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Server::bind(
        "127.0.0.1:0".parse().expect("addr"),
        dir.path().join("nope"),
    )
    .await
    .expect_err("missing root");
    assert!(err.to_string().contains("not a usable directory"), "{err}");
    let file = root_with(&[("f", b"x")]);
    let err = Server::bind("127.0.0.1:0".parse().expect("addr"), file.path().join("f"))
        .await
        .expect_err("file root");
    assert!(matches!(err, super::Error::Root { .. }), "{err}");
}

/// Run curl against the server; returns curl's exit code and the downloaded bytes.
async fn curl(server: SocketAddr, path: &str, extra: &[&str], out: &Path) -> (i32, Vec<u8>) {
    let url = format!("tftp://{server}/{path}");
    let status = tokio::process::Command::new("curl")
        .args(["--silent", "--path-as-is", "--max-time", "120", "-o"])
        .arg(out)
        .args(extra)
        .arg(&url)
        .status()
        .await
        .expect("curl must be installed (lab/install-deps.sh)");
    let data = tokio::fs::read(out).await.unwrap_or_default();
    (status.code().unwrap_or(-1), data)
}

#[tokio::test]
async fn curl_downloads_multi_megabyte_files_and_sees_errors() {
    let kernel = content(5 * 1024 * 1024 + 123, 7);
    let root = root_with(&[("42/zImage", &kernel)]);
    let server = start(root.path(), |s| s).await;
    let out = tempfile::tempdir().expect("tempdir");

    let (code, data) = curl(server.addr, "42/zImage", &[], &out.path().join("a")).await;
    assert_eq!(code, 0);
    assert!(data == kernel, "default block size: content differs");

    let extra = ["--tftp-blksize", "1468"];
    let (code, data) = curl(server.addr, "42/zImage", &extra, &out.path().join("b")).await;
    assert_eq!(code, 0);
    assert!(data == kernel, "blksize 1468: content differs");

    // curl exit codes: 68 = TFTP file not found, 69 = TFTP permission problem.
    let (code, _) = curl(server.addr, "42/missing", &[], &out.path().join("c")).await;
    assert_eq!(code, 68);
    let (code, _) = curl(server.addr, "../etc/passwd", &[], &out.path().join("d")).await;
    assert_eq!(code, 69);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn curl_downloads_past_block_rollover() {
    // 33 MiB at curl's default 512-byte blocks is 67584 blocks: past 65535.
    let big = content(33 * 1024 * 1024, 8);
    let root = root_with(&[("big", &big)]);
    let server = start(root.path(), |s| s).await;
    let out = tempfile::tempdir().expect("tempdir");
    let (code, data) = curl(server.addr, "big", &[], &out.path().join("big")).await;
    assert_eq!(code, 0);
    assert_eq!(data.len(), big.len());
    assert!(data == big, "content differs");
    server.stop().await.expect("clean stop");
}
