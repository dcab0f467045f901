//! Integration tests: the dispatcher running LAVA jobs on the REAL virtual boards.
//! The QEMU job's `initrd` image gets the LAVA overlay appended (LAVA 2023.01's tmpfs schema
//! has no `overlays:` key, which the job parser enforces).
//!
//! Needs root (TFTP on 127.0.0.1:69), the packages of `lab/install-deps.sh` and the assets of
//! `lab/build-assets.sh` (built on demand). The jobs are submitted over XML-RPC to the whole
//! appliance (the server fixture), whose scheduler hands them to the dispatcher; results,
//! errors and ends are read back from what the job path stored. Everything runs in one test
//! function: only one test may hold port 69, and the boards share two cores. The two
//! happy-path jobs (U-Boot ARM board and QEMU x86) run concurrently on two boards. Each board runs with its own
//! `LAVABOX_LAB_RUN` directory, so the "no QEMU left" checks only see our processes.
//! The crash test runs the real `lavabox serve` binary with an ephemeral TFTP port instead
//! (its QEMU job needs no TFTP), kills it with SIGKILL mid-job and restarts it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lavabox::api::xmlrpc::codec::Value as Rpc;
use lavabox::devicetype::Templates;
use lavabox::model::{DeviceHealth, ErrorType, JobHealth, JobId, JobState, TestResult};
use lavabox::store::{Job, JobChange, NewDevice, NewDeviceType, NewUser, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::common::server::{Options, Server};
use crate::common::uboot_dict;
use crate::common::{cache, ensure_assets};

use crate::common::PROMPT;

const QEMU_DICT: &str = "{% extends 'qemu.jinja2' %}\n{% set no_kvm = True %}\n";

fn test_block() -> &'static str {
    r#"- test:
    timeout: {minutes: 4}
    definitions:
    - from: inline
      name: smoke
      path: inline/smoke.yaml
      repository:
        metadata: {format: Lava-Test Test Definition 1.0, name: smoke}
        run:
          steps:
          - lava-test-case pass-case --shell true
          - lava-test-case fail-case --shell false
          - lava-test-case measured --result pass --measurement 42 --units ms
"#
}

fn uboot_job(kernel_url: &str, prompt: &str, boot_timeout: &str) -> String {
    let ramdisk = cache().join("armhf/ramdisk.cpio.gz");
    format!(
        r#"job_name: dispatch-uboot
device_type: qemu-uboot-arm
visibility: public
timeouts:
  job: {{minutes: 10}}
  action: {{minutes: 3}}
  connection: {{minutes: 3}}
actions:
- deploy:
    to: tftp
    kernel: {{url: '{kernel_url}', type: zimage}}
    ramdisk: {{url: 'file://{ramdisk}', compression: gz}}
- boot:
    method: u-boot
    commands: ramdisk
    timeout: {boot_timeout}
    prompts: ['{prompt}']
{test}"#,
        ramdisk = ramdisk.display(),
        test = test_block()
    )
}

fn qemu_job() -> String {
    crate::common::qemu_job("dispatch-qemu", test_block())
}

/// Submits `definition` as alice over XML-RPC.
async fn submit(srv: &Server, definition: &str) -> JobId {
    match crate::xmlrpc::rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "scheduler.jobs.submit",
        &[Rpc::str(definition)],
    )
    .await
    {
        Ok(Rpc::Int(id)) => JobId(id),
        other => panic!("submit: {other:?}"),
    }
}

/// The job log of `id`, as the job path wrote it.
fn log_of(srv: &Server, id: JobId) -> String {
    std::fs::read_to_string(srv.app.config().job_log_path(id)).unwrap_or_default()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until job `id`'s log has a line containing `needle`, following the file as the
/// dispatcher writes it (`tail -F`, woken by inotify: no polling here); at most 2 minutes.
async fn follow_log_until(srv: &Server, id: JobId, needle: &str) {
    use tokio::io::AsyncBufReadExt as _;
    let path = srv.app.config().job_log_path(id);
    let mut follower = Command::new("tail")
        .args(["-n", "+1", "-F"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("tail");
    let out = follower.stdout.take().expect("tail's stdout");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let found = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("reading tail") {
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    let _ = follower.kill().await;
    assert_eq!(
        found,
        Ok(true),
        "job {id}'s log never said {needle:?}:\n{}",
        tail(&log_of(srv, id), 60)
    );
}

/// The stored job `id`.
async fn stored(srv: &Server, id: JobId) -> Job {
    srv.app
        .store()
        .call(move |s| s.job(id))
        .await
        .expect("reading the job")
        .expect("the job exists")
}

/// Waits until every job of `ids` is Finished (in any order); returns their ends in the
/// order of `ids`.
async fn ends(srv: &mut Server, ids: &[JobId]) -> Vec<JobChange> {
    let mut ends: Vec<Option<JobChange>> = vec![None; ids.len()];
    while ends.iter().any(Option::is_none) {
        let open: Vec<JobId> = ids
            .iter()
            .zip(&ends)
            .filter(|(_, e)| e.is_none())
            .map(|(id, _)| *id)
            .collect();
        let end = srv
            .until_job(&format!("jobs {open:?} Finished"), |j| {
                open.contains(&j.id) && j.state == JobState::Finished
            })
            .await;
        let at = ids.iter().position(|id| *id == end.id).expect("one of ids");
        ends[at] = Some(end);
    }
    ends.into_iter().flatten().collect()
}

/// No process whose command line mentions `marker` is left.
async fn assert_no_process(marker: &Path) {
    let out = Command::new("pgrep")
        .arg("-af")
        .arg(marker.as_os_str())
        .output()
        .await
        .expect("pgrep");
    let text = String::from_utf8_lossy(&out.stdout);
    let left: Vec<&str> = text.lines().filter(|l| l.contains("qemu")).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

fn has(
    results: &[(String, String, TestResult)],
    suite: &str,
    case: &str,
    result: TestResult,
) -> bool {
    results
        .iter()
        .any(|(s, c, r)| s == suite && c == case && *r == result)
}

/// A one-shot HTTP server answering 404 to everything.
async fn http_404() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_jobs_on_virtual_boards() {
    lab_or_skip!();
    let started = Instant::now();
    ensure_assets().await;
    // The U-Boot board's run directory (its QEMU and its files), named in its dictionary.
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_owned();
    let dict = uboot_dict(&run_dir);
    let mut options = Options::lab(&[]).seed(move |s| {
        for (host, ty, dictionary) in [
            ("uboot-arm-01", "qemu-uboot-arm", dict),
            ("qemu-01", "qemu", QEMU_DICT.to_owned()),
        ] {
            let mut dt = NewDeviceType::named(ty);
            dt.disable_health_check = true;
            s.create_device_type(&dt)?;
            let mut dev = NewDevice::new(host, ty);
            dev.dictionary = Some(dictionary);
            dev.health = DeviceHealth::Good;
            s.create_device(&dev)?;
        }
        Ok(())
    });
    // QEMU's user network sends the U-Boot board's TFTP requests to port 69.
    options.tftp_port_69 = true;
    let mut srv = Server::start(options).await;
    let tftp_root = srv.app.dispatcher_config().tftp_root;
    let zimage = format!("file://{}", cache().join("armhf/zImage").display());

    // (a) + (b) + (d): a U-Boot job and a QEMU job on two boards at once.
    let uboot = submit(&srv, &uboot_job(&zimage, PROMPT, "{minutes: 4}")).await;
    let qemu = submit(&srv, &qemu_job()).await;
    let t = Instant::now();
    let both = ends(&mut srv, &[uboot, qemu]).await;
    eprintln!("u-boot + qemu jobs concurrently: {:?}", t.elapsed());
    for (end, what) in both.iter().zip(["u-boot", "qemu"]) {
        if end.health != JobHealth::Complete {
            let job = stored(&srv, end.id).await;
            panic!(
                "{what} job ended {:?} ({:?}: {:?}); the U-Boot board's QEMU said:\n{}\n\
                 last lines of the job log:\n{}",
                end.health,
                job.error_type,
                job.failure_comment,
                std::fs::read_to_string(run_dir.join("uboot-arm-01/qemu.log")).unwrap_or_default(),
                tail(&log_of(&srv, end.id), 60)
            );
        }
    }
    let (a, b) = (stored(&srv, uboot).await, stored(&srv, qemu).await);
    assert_eq!(
        (a.actual_device.as_deref(), b.actual_device.as_deref()),
        (Some("uboot-arm-01"), Some("qemu-01"))
    );
    let span = |j: &Job| (j.start_time.unwrap(), j.end_time.unwrap());
    let ((a_start, a_end), (b_start, b_end)) = (span(&a), span(&b));
    assert!(
        a_start < b_end && b_start < a_end,
        "they ran at once: {a_start}..{a_end}, {b_start}..{b_end}"
    );
    for id in [uboot, qemu] {
        let r = crate::common::test_cases(srv.app.store(), id).await;
        assert!(has(&r, "0_smoke", "pass-case", TestResult::Pass), "{r:?}");
        assert!(has(&r, "0_smoke", "fail-case", TestResult::Fail), "{r:?}");
        assert!(has(&r, "0_smoke", "measured", TestResult::Pass), "{r:?}");
        assert!(has(&r, "lava", "job", TestResult::Pass), "{r:?}");
        assert!(has(&r, "lava", "validate", TestResult::Pass), "{r:?}");
        assert_eq!(
            r.iter().filter(|(s, _, _)| s == "0_smoke").count(),
            3,
            "{r:?}"
        );
        assert!(!tftp_root.join(id.to_string()).exists());
    }
    assert_no_process(&run_dir).await;
    assert_no_process(srv.dir()).await;

    // (c) a download 404: Incomplete, Job error, nothing left running.
    let addr = http_404().await;
    let missing = submit(
        &srv,
        &uboot_job(&format!("http://{addr}/zImage"), PROMPT, "{minutes: 4}"),
    )
    .await;
    let end = srv.finished(missing, JobHealth::Incomplete).await;
    let job = stored(&srv, end.id).await;
    assert_eq!(job.error_type, Some(ErrorType::Job), "{job:?}");
    assert!(job.failure_comment.unwrap_or_default().contains("404"));

    // A kernel that panics on the way to the prompt (its init does not exist) ends the job
    // at once as a Job error with the panic's text, not at the prompt wait's timeout.
    let panicking = qemu_job().replace("panic=-1", "rdinit=/nonexistent");
    let panics = submit(&srv, &panicking).await;
    srv.finished(panics, JobHealth::Incomplete).await;
    let job = stored(&srv, panics).await;
    assert_eq!(job.error_type, Some(ErrorType::Job), "{job:?}");
    let comment = job.failure_comment.unwrap_or_default();
    assert!(comment.contains("Kernel panic - not syncing"), "{comment}");
    let r = crate::common::test_cases(srv.app.store(), panics).await;
    assert!(
        has(&r, "lava", "kernel-messages", TestResult::Fail),
        "{r:?}"
    );
    assert_no_process(srv.dir()).await;

    // (c) a board that never shows the prompt: the boot times out.
    let t = Instant::now();
    let never = submit(&srv, &uboot_job(&zimage, "no-such-prompt", "{seconds: 45}")).await;
    srv.finished(never, JobHealth::Incomplete).await;
    eprintln!("boot timeout job: {:?}", t.elapsed());
    let job = stored(&srv, never).await;
    assert_eq!(job.error_type, Some(ErrorType::LavaTimeout), "{job:?}");
    assert_no_process(&run_dir).await;

    // (c) cancel during boot: once U-Boot is interrupted.
    let canceled = submit(&srv, &uboot_job(&zimage, PROMPT, "{minutes: 4}")).await;
    follow_log_until(&srv, canceled, "setenv").await;
    let answer = crate::xmlrpc::rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "scheduler.jobs.cancel",
        &[Rpc::Int(canceled.0)],
    )
    .await;
    assert_eq!(answer, Ok(Rpc::Bool(true)));
    let t = Instant::now();
    srv.finished(canceled, JobHealth::Canceled).await;
    eprintln!("cancel during boot took {:?}", t.elapsed());
    assert_no_process(&run_dir).await;

    srv.stop().await;
    eprintln!("whole dispatch test: {:?}", started.elapsed());
}

#[path = "socat.rs"]
mod socat;

/// Two ptys joined by socat, standing in for a USB serial adapter and the board behind it.
/// The ends are linked under `/dev` (a dictionary's serial `connection_command` names a
/// `/dev` path): `console` is what lavabox opens, `board` is the board's side.
struct SerialLine {
    socat: tokio::process::Child,
    console: PathBuf,
    board: PathBuf,
}

impl SerialLine {
    /// Starts socat and returns once both links exist under their names (socat reports its
    /// transfer loop).
    ///
    /// socat links a pty before it sets its termios (from a copy read before, speed 38400), so
    /// a console opened in between, as a re-attaching connection does the moment the link
    /// appears, would have its line speed reset. It links under staging names, and the links
    /// are renamed into place (atomically) once socat is done, as a USB adapter's device
    /// node appears whole.
    async fn plug(name: &str) -> SerialLine {
        let console = PathBuf::from(format!("/dev/lavabox-it-{}-{name}", std::process::id()));
        let staging = PathBuf::from(format!("{}.staging", console.display()));
        let started = tokio::time::timeout(Duration::from_secs(30), socat::start(&staging))
            .await
            .expect("socat starts")
            .expect("socat links the ptys (installed by scripts/install-deps.sh)");
        // The tests need none of socat's later log.
        drop(started.log);
        let board = socat::board_path(&console);
        std::fs::rename(socat::board_path(&staging), &board).expect("board link in place");
        std::fs::rename(&staging, &console).expect("console link in place");
        SerialLine {
            socat: started.child,
            board,
            console,
        }
    }

    /// The board's end, as the board would hold it.
    async fn board_end(&self) -> tokio::fs::File {
        tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.board)
            .await
            .expect("board end of the pty pair")
    }

    /// Unplugs the adapter: socat ends (SIGTERM), its ptys close, and the device nodes go
    /// (socat removes only the staging names it made, so the links are removed here).
    async fn unplug(mut self) {
        let pid = self.socat.id().expect("socat runs").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        self.socat.wait().await.expect("socat exits");
        for link in [&self.console, &self.board] {
            std::fs::remove_file(link).expect("link removed");
        }
    }
}

/// The console a dictionary describes, as the dispatcher builds it.
fn serial_console(line: &SerialLine, baud: u32) -> std::sync::Arc<dyn lavabox::hw::ConsoleFactory> {
    let dictionary = format!(
        "{{% extends 'qemu-uboot-arm.jinja2' %}}\n\
         {{% set connection_command = '{} {baud}' %}}\n\
         {{% set power_on_command = 'true' %}}\n",
        line.console.display()
    );
    let rendered = Templates::builtin()
        .render(&dictionary, &serde_json::Map::new())
        .expect("dictionary renders");
    let command = rendered
        .config
        .commands
        .primary_connect()
        .expect("connection command");
    let spec: lavabox::hw::ConsoleSpec = command.parse().expect("a console spec");
    std::sync::Arc::from(spec.factory(None))
}

/// The line speed the console's tty is set to, read with `TCGETS2` as mio-serial sets it
/// (`stty` only knows the legacy speed field, which then says `BOTHER`).
async fn tty_speed(path: &Path) -> String {
    let script = "import fcntl, os, struct, sys\n\
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)\n\
t = fcntl.ioctl(fd, 0x802C542A, bytes(44))  # TCGETS2, struct termios2\n\
print(struct.unpack('=4IB19s2I', t)[-1])  # c_ospeed\n";
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .await
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Reads from the board's end until `want` has arrived; returns everything read.
async fn board_reads(board: &mut tokio::fs::File, want: &str) -> String {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains(want) {
            let n = board.read(&mut buf).await.expect("board end readable");
            assert_ne!(n, 0, "the board end closed");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the board never got {want:?}"));
    String::from_utf8_lossy(&seen).into_owned()
}

fn re(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_console_runs_at_the_dictionary_baud_under_the_expect_engine() {
    lab_or_skip!();
    use lavabox::dispatcher::connection::Connection;
    use lavabox::dispatcher::log::JobLog;
    let line = SerialLine::plug("serial").await;
    let mut board = line.board_end().await;
    let mut conn = Connection::open(serial_console(&line, 57600), JobLog::discard())
        .await
        .expect("serial console opens");
    // mio-serial set the tty to the dictionary's speed, not a default.
    assert_eq!(tty_speed(&line.console).await, "57600");
    board
        .write_all(b"U-Boot 2023.01\r\nHit any key to stop autoboot:  2\r\n")
        .await
        .unwrap();
    let found = conn
        .expect(&[re("=> "), re("Hit any key")], Duration::from_secs(30))
        .await
        .expect("the banner arrives");
    assert_eq!((found.index, found.text.as_str()), (1, "Hit any key"));
    assert!(found.before.contains("U-Boot 2023.01"), "{found:?}");
    conn.sendline("version").await.expect("send");
    assert!(
        board_reads(&mut board, "version\n")
            .await
            .ends_with("version\n")
    );
    board
        .write_all(b"U-Boot 2023.01 (Jan 09 2023)\r\n=> ")
        .await
        .unwrap();
    let prompt = conn.expect(&[re("=> ")], Duration::from_secs(30)).await;
    assert!(prompt.expect("prompt").before.contains("Jan 09 2023"));
    line.unplug().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_console_that_vanishes_on_power_off_is_re_attached() {
    lab_or_skip!();
    use lavabox::dispatcher::connection::{Connection, WaitError};
    use lavabox::dispatcher::log::JobLog;
    let line = SerialLine::plug("vanish").await;
    let console = serial_console(&line, 115200);
    let mut board = line.board_end().await;
    let mut conn = Connection::open(std::sync::Arc::clone(&console), JobLog::discard())
        .await
        .expect("serial console opens");
    board.write_all(b"first boot\r\n").await.unwrap();
    conn.expect(&[re("first boot")], Duration::from_secs(30))
        .await
        .expect("first boot seen");
    // Power off: the adapter (powered by the board) disappears with its device node.
    drop(board);
    line.unplug().await;
    // Nothing comes while the board is off; the connection keeps waiting instead of failing.
    let waiting = conn
        .expect(&[re("never")], Duration::from_millis(300))
        .await;
    assert_eq!(waiting.unwrap_err(), WaitError::Timeout);
    // Power on: the adapter comes back under the same name; what lavabox sends reaches the
    // board (so it re-attached), and what the board prints comes back.
    let sender = tokio::spawn(async move { conn.sendline("are you back?").await.map(|()| conn) });
    let line = SerialLine::plug("vanish").await;
    let mut board = line.board_end().await;
    board_reads(&mut board, "are you back?\n").await;
    let mut conn = sender.await.unwrap().expect("sent after re-attaching");
    board.write_all(b"second boot\r\n").await.unwrap();
    conn.expect(&[re("second boot")], Duration::from_secs(30))
        .await
        .expect("output after re-attaching");
    assert_eq!(tty_speed(&line.console).await, "115200");
    line.unplug().await;
}

/// Whether a QEMU process whose command line mentions `marker` runs.
async fn qemu_running(marker: &Path) -> bool {
    let out = Command::new("pgrep")
        .arg("-af")
        .arg(marker.as_os_str())
        .output()
        .await
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains("qemu"))
}

/// `lavabox serve` on `dir`'s data directory, with `dir/bin` first on its PATH, once it is
/// ready, and the address its HTTP API listens on (from its readiness line).
async fn serve(dir: &Path) -> (tokio::process::Child, SocketAddr) {
    let path = std::env::join_paths(
        std::iter::once(dir.join("bin")).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .expect("PATH");
    let mut server = Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .env("PATH", path)
        .arg("--config")
        .arg(dir.join("lavabox.toml"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lavabox serve");
    let stdout = server.stdout.take().expect("stdout");
    let mut log = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), log.next_line())
            .await
            .expect("readiness line in time")
            .expect("server stdout")
            .expect("server still running");
        if line.contains(lavabox::app::READY) {
            // `… lavabox ready listen=127.0.0.1:<port> data_dir=…`
            let at = line
                .find("127.0.0.1:")
                .expect("listen address in the readiness line");
            let addr: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break addr.parse().expect("listen address");
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    (server, addr)
}

/// Issue 11, item 8: a `kill -9` of lavabox during a QEMU job leaves no QEMU behind (the
/// emulator gets a parent-death signal), and the restarted lavabox closes the job and frees
/// the device. The job's directory holds the rendered `device.yaml` from the job's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_lavabox_leaves_no_qemu_and_recovers_the_job() {
    lab_or_skip!();
    ensure_assets().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    // An ephemeral TFTP port: the QEMU job needs no TFTP, and port 69 belongs to other tests.
    std::fs::write(
        root.join("lavabox.toml"),
        "instance = \"killtest\"\n[tftp]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("lavabox.db");
    let token = {
        let mut s = Store::open(&db).unwrap();
        s.create_user(&NewUser::named("tester")).unwrap();
        let mut dt = NewDeviceType::named("qemu");
        dt.disable_health_check = true;
        s.create_device_type(&dt).unwrap();
        let mut dev = NewDevice::new("qemu-01", "qemu");
        dev.dictionary = Some(QEMU_DICT.to_owned());
        dev.health = DeviceHealth::Good;
        s.create_device(&dev).unwrap();
        s.create_token("tester", "test").unwrap().secret
    };

    // The emulator the job starts says so through a FIFO as it starts, before it becomes
    // QEMU: `bin/qemu-system-x86_64`, first on the server's PATH, writes to it and execs the
    // real one (the same process, so the parent-death signal it inherited stays).
    let real_qemu = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .expect("qemu-system-x86_64 on the PATH");
    let started = root.join("qemu-started");
    let made = Command::new("mkfifo")
        .arg(&started)
        .status()
        .await
        .expect("mkfifo");
    assert!(made.success(), "mkfifo: {made}");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let wrapper = root.join("bin/qemu-system-x86_64");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho started >'{}'\nexec '{}' \"$@\"\n",
            started.display(),
            real_qemu.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Read-write, so the open does not wait for a writer and reading waits for one's line.
    let mut fifo = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&started)
        .expect("open the FIFO");

    let (mut server, addr) = serve(&root).await;
    let job = match crate::xmlrpc::rpc(
        addr,
        Some(("tester", &token)),
        "scheduler.jobs.submit",
        &[lavabox::api::xmlrpc::codec::Value::str(qemu_job())],
    )
    .await
    {
        Ok(lavabox::api::xmlrpc::codec::Value::Int(id)) => lavabox::model::JobId(id),
        other => panic!("submit: {other:?}"),
    };
    let job_dir = data.join("jobs").join(job.to_string());
    let mut line = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(300), fifo.read_exact(&mut line))
        .await
        .expect("the job's emulator started in time")
        .expect("reading the FIFO");
    assert_eq!(&line, b"started\n");
    assert!(qemu_running(&root).await, "the job's emulator runs");
    let log = std::fs::read_to_string(job_dir.join("output.yaml")).unwrap();
    assert!(log.contains("execute-qemu"), "{log}");
    let device_yaml = std::fs::read_to_string(job_dir.join("device.yaml")).unwrap();
    assert!(
        device_yaml.contains("qemu-system-x86_64"),
        "the rendered device configuration: {device_yaml}"
    );
    server.start_kill().unwrap();
    let status = server.wait().await.unwrap();
    assert!(!status.success(), "{status}");

    let (mut server, _) = serve(&root).await;
    let pid = i32::try_from(server.id().expect("running")).unwrap();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(60), server.wait())
        .await
        .expect("serve stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");

    let s = Store::open(&db).unwrap();
    let closed = s.job(job).unwrap().unwrap();
    assert_eq!(closed.health, JobHealth::Incomplete, "{closed:?}");
    assert_eq!(
        closed.failure_comment.as_deref(),
        Some("lavabox restarted"),
        "{closed:?}"
    );
    assert_eq!(
        closed.error_type,
        Some(ErrorType::Infrastructure),
        "{closed:?}"
    );
    let device = s.device("qemu-01").unwrap().unwrap();
    assert_eq!(
        device.state,
        lavabox::model::DeviceState::Idle,
        "{device:?}"
    );
    // A health check (when the type has one) runs before the next job.
    assert_eq!(device.health, DeviceHealth::Unknown, "{device:?}");
    assert_no_process(&root).await;
}
