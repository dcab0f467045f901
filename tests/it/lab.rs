//! Integration tests: lab.
//!
//! End-to-end proof of the virtual lab: real QEMU boards driven through `lab/board`
//! exactly as LAVA's power and connection commands would drive them, with the U-Boot
//! board network-booting from lavabox's own TFTP server on 127.0.0.1:69.
//!
//! Needs root (port 69), the packages of `lab/install-deps.sh`, and the assets of
//! `lab/build-assets.sh` (built on demand when missing). Tests await console output
//! patterns; timeouts are only safety nets. Boards run one at a time (they share
//! two cores with everything else), each with its own runtime directory, so the
//! process checks only ever see QEMUs these tests started.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lavabox::tftp;
use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc, oneshot};

/// One board at a time: QEMU under TCG is CPU-bound and the timings should mean something.
static LAB: Mutex<()> = Mutex::const_new(());

use crate::common::{cache, ensure_assets, repo, tftp_server};

const JOB: &str = "4242";
const PROMPT: &str = r"root@lavabox:[^\r\n]*# ";
const READY: &str = "lavabox-lab: init ready";

fn board_script() -> PathBuf {
    repo().join("lab/board")
}

fn report(what: &str, took: Duration) {
    eprintln!("lab timing: {what}: {:.2} s", took.as_secs_f64());
}

/// A board controlled through `lab/board` with a private runtime directory.
struct Board {
    name: &'static str,
    run_dir: tempfile::TempDir,
}

impl Board {
    fn new(name: &'static str) -> Board {
        Board {
            name,
            run_dir: tempfile::tempdir().expect("runtime dir"),
        }
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(board_script());
        cmd.args([subcommand, self.name])
            .env("LAVABOX_LAB_RUN", self.run_dir.path())
            .env("LAVABOX_LAB_CACHE", cache());
        cmd
    }

    async fn run(&self, subcommand: &str) {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(subcommand).output())
            .await
            .unwrap_or_else(|_| panic!("lab/board {subcommand} {} hung", self.name))
            .expect("running lab/board");
        assert!(
            out.status.success(),
            "lab/board {subcommand} {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Attach a console the way LAVA's `connection_command` would.
    fn console(&self) -> Console {
        let mut cmd = self.command("console");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        Console::spawn(cmd)
    }

    /// Live (non-zombie) QEMU processes started for this board.
    fn qemu_processes(&self) -> Vec<u32> {
        let marker = self.run_dir.path().to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.starts_with("qemu-system") && cmdline.contains(&marker)
            })
            .collect()
    }
}

impl Drop for Board {
    /// Whatever happened, leave no QEMU behind.
    fn drop(&mut self) {
        let _ = std::process::Command::new(board_script())
            .args(["power-off", self.name])
            .env("LAVABOX_LAB_RUN", self.run_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A console process with pattern matching over everything it printed.
struct Console {
    child: Child,
    stdin: ChildStdin,
    output: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Everything received so far (lossy UTF-8), and how far matching has consumed it.
    transcript: String,
    consumed: usize,
}

impl Console {
    fn spawn(mut cmd: Command) -> Console {
        let mut child = cmd.spawn().expect("spawning lab/board console");
        let stdin = child.stdin.take().expect("console stdin");
        let mut stdout = child.stdout.take().expect("console stdout");
        let (tx, output) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Console {
            child,
            stdin,
            output,
            transcript: String::new(),
            consumed: 0,
        }
    }

    /// Wait for `pattern` in output not matched yet; returns the matched text.
    async fn expect(&mut self, pattern: &str, safety: Duration) -> String {
        let re = Regex::new(pattern).expect("pattern");
        let deadline = tokio::time::Instant::now() + safety;
        loop {
            if let Some(m) = re.find(&self.transcript[self.consumed..]) {
                let text = m.as_str().to_owned();
                self.consumed += m.end();
                return text;
            }
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(Some(chunk)) => self.transcript.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => self.fail(&format!("console closed while waiting for {pattern:?}")),
                Err(_) => self.fail(&format!("no {pattern:?} within {safety:?}")),
            }
        }
    }

    fn fail(&self, why: &str) -> ! {
        let tail: String = {
            let chars: Vec<char> = self.transcript.chars().collect();
            chars[chars.len().saturating_sub(3000)..].iter().collect()
        };
        panic!("{why}\n--- console transcript (tail) ---\n{tail}\n---");
    }

    async fn send(&mut self, text: &str) {
        self.stdin
            .write_all(text.as_bytes())
            .await
            .expect("writing to the console");
        self.stdin.flush().await.expect("flushing the console");
    }

    /// Send a line, wait for the prompt that follows it, and return the output between.
    async fn command(&mut self, line: &str, prompt: &str, safety: Duration) -> String {
        self.send(&format!("{line}\n")).await;
        self.expect(&format!("{}[^\n]*\n", regex::escape(line)), safety)
            .await;
        let start = self.consumed;
        let matched = self.expect(prompt, safety).await;
        let end = self.consumed - matched.len();
        self.transcript[start..end].to_owned()
    }

    /// Stop the console process and its socat (its own process group).
    async fn close(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status()
                .await;
        }
        let _ = self.child.wait().await;
    }

    /// Keep a transcript for debugging a failed run.
    fn save(&self, name: &str) {
        let path = std::env::temp_dir().join(format!("lavabox-lab-{name}.log"));
        if let Ok(mut f) = std::fs::File::create(&path) {
            let _ = f.write_all(self.transcript.as_bytes());
        }
    }
}

/// A TFTP root holding this job's kernel and ramdisk, as the dispatcher would stage it.
async fn stage_tftp_root() -> (tempfile::TempDir, u64, u64) {
    let root = tempfile::tempdir().expect("tftp root");
    let job = root.path().join(JOB);
    tokio::fs::create_dir_all(&job).await.expect("job dir");
    let kernel = tokio::fs::copy(cache().join("armhf/zImage"), job.join("zImage"))
        .await
        .expect("staging zImage");
    let ramdisk = tokio::fs::copy(
        cache().join("armhf/ramdisk.cpio.gz"),
        job.join("ramdisk.cpio.gz"),
    )
    .await
    .expect("staging ramdisk");
    (root, kernel, ramdisk)
}

async fn start_tftp(
    root: &Path,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<tftp::Result<()>>,
) {
    let (server, port_69) = tftp_server(root).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _port_69 = port_69;
        server
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}

const UBOOT_PROMPT: &str = "=> ";
const AUTOBOOT: &str = "Hit any key to stop autoboot";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uboot_arm_board_network_boots_to_a_shell() {
    lab_or_skip!();
    let _lab = LAB.lock().await;
    ensure_assets().await;
    let (root, kernel_size, ramdisk_size) = stage_tftp_root().await;
    let (stop_tftp, tftp_task) = start_tftp(root.path()).await;
    let board = Board::new("uboot-arm-01");
    let short = Duration::from_secs(30);
    let long = Duration::from_secs(180);

    // LAVA connects first, then powers on: the console waits for the board.
    let mut console = board.console();
    let powered = Instant::now();
    board.run("power-on").await;
    console.expect("U-Boot 2023", short).await;
    console.expect(AUTOBOOT, short).await;
    console.send(" ").await;
    console.expect(UBOOT_PROMPT, short).await;
    report("uboot-arm power-on -> '=>'", powered.elapsed());

    // The command list lavabox's `qemu-uboot-arm` device type renders for a ramdisk boot
    // ({KERNEL_ADDR} etc. filled in as the dispatcher would).
    for line in [
        "setenv autoload no",
        "setenv initrd_high 0xffffffff",
        "setenv fdt_high 0xffffffff",
        "setenv ipaddr 10.0.2.15",
        "setenv netmask 255.255.255.0",
        "setenv gatewayip 10.0.2.2",
        "setenv serverip 127.0.0.1",
    ] {
        console.command(line, UBOOT_PROMPT, short).await;
    }
    let fetched = Instant::now();
    let out = console
        .command(&format!("tftp 0x40400000 {JOB}/zImage"), UBOOT_PROMPT, long)
        .await;
    assert!(
        out.contains(&format!("Bytes transferred = {kernel_size} ")),
        "kernel download incomplete:\n{out}"
    );
    report("uboot-arm tftp zImage", fetched.elapsed());
    let out = console
        .command(
            &format!("tftp 0x44000000 {JOB}/ramdisk.cpio.gz"),
            UBOOT_PROMPT,
            long,
        )
        .await;
    assert!(
        out.contains(&format!("Bytes transferred = {ramdisk_size} ")),
        "ramdisk download incomplete:\n{out}"
    );
    for line in [
        "setenv initrd_size ${filesize}",
        "setenv bootargs 'console=ttyAMA0,115200n8 root=/dev/ram0  ip=dhcp'",
    ] {
        console.command(line, UBOOT_PROMPT, short).await;
    }
    console
        .send("bootz 0x40400000 0x44000000:${initrd_size} ${fdtcontroladdr}\n")
        .await;
    console.expect("Starting kernel", short).await;
    console.expect("Linux version [0-9]", long).await;
    report("uboot-arm power-on -> 'Linux version'", powered.elapsed());
    console.expect(READY, long).await;
    console.expect(PROMPT, long).await;
    report("uboot-arm power-on -> shell prompt", powered.elapsed());

    let round_trip = Instant::now();
    console.send("echo hello\n").await;
    console.expect(r"\nhello\r?\n", short).await;
    console.expect(PROMPT, short).await;
    report("uboot-arm shell round trip", round_trip.elapsed());

    // Hard reset: the same console sees U-Boot start again.
    let reset = Instant::now();
    board.run("hard-reset").await;
    console.expect(AUTOBOOT, short).await;
    console.send(" ").await;
    console.expect(UBOOT_PROMPT, short).await;
    report("uboot-arm hard-reset -> '=>'", reset.elapsed());

    // A power cycle: the console stays attached and picks the board up again.
    board.run("power-off").await;
    assert!(
        board.qemu_processes().is_empty(),
        "QEMU left after power-off"
    );
    board.run("power-on").await;
    console.expect(AUTOBOOT, short).await;
    console.send(" ").await;
    console.expect(UBOOT_PROMPT, short).await;

    board.run("power-off").await;
    assert_eq!(
        board.qemu_processes(),
        Vec::<u32>::new(),
        "QEMU left after power-off"
    );
    console.save("uboot-arm-01");
    console.close().await;
    let _ = stop_tftp.send(());
    tftp_task
        .await
        .expect("tftp task")
        .expect("tftp server ended cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x86_board_boots_to_a_shell() {
    lab_or_skip!();
    let _lab = LAB.lock().await;
    ensure_assets().await;
    let board = Board::new("qemu-01");
    let short = Duration::from_secs(30);
    let long = Duration::from_secs(180);

    let powered = Instant::now();
    board.run("power-on").await;
    // Connecting after power-on loses nothing: the serial port holds the CPU (wait=on).
    let mut console = board.console();
    console.expect("Linux version [0-9]", long).await;
    report("x86 power-on -> 'Linux version'", powered.elapsed());
    console.expect(READY, long).await;
    console.expect(PROMPT, long).await;
    report("x86 power-on -> shell prompt", powered.elapsed());

    console.send("echo hello\n").await;
    console.expect(r"\nhello\r?\n", short).await;
    console.expect(PROMPT, short).await;

    board.run("power-off").await;
    assert_eq!(
        board.qemu_processes(),
        Vec::<u32>::new(),
        "QEMU left after power-off"
    );
    console.save("qemu-01");
    console.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_script_rejects_unknown_boards_and_powers_off_idempotently() {
    lab_or_skip!();
    let board = Board::new("uboot-arm-idle");
    // Off already: power-off succeeds and does nothing.
    board.run("power-off").await;
    let out = Board::new("mystery-01")
        .command("power-on")
        .output()
        .await
        .expect("running lab/board");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown board kind"));
}

/// Debian's tftp-hpa client (installed by lab/install-deps.sh) against the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_client_downloads_from_the_server() {
    lab_or_skip!();
    let root = tempfile::tempdir().expect("tftp root");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    tokio::fs::create_dir_all(root.path().join(JOB))
        .await
        .expect("job dir");
    tokio::fs::write(root.path().join(JOB).join("blob"), &data)
        .await
        .expect("write");
    let server = tftp::Server::bind("127.0.0.1:0".parse().expect("addr"), root.path())
        .await
        .expect("bind");
    let port = server.local_addr().expect("addr").port().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let out_dir = tempfile::tempdir().expect("out dir");
    let target = out_dir.path().join("blob");
    let get = |remote: &str| {
        let mut cmd = Command::new("tftp");
        cmd.args(["-m", "binary", "127.0.0.1", &port, "-c", "get", remote])
            .arg(&target)
            .output()
    };
    let out = get(&format!("{JOB}/blob"))
        .await
        .expect("tftp-hpa installed");
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read(&target).expect("downloaded") == data,
        "content differs"
    );

    let out = get(&format!("{JOB}/missing"))
        .await
        .expect("tftp-hpa installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Error code 1"), "{text}");
    let out = get("../etc/passwd").await.expect("tftp-hpa installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Error code 2"), "{text}");
    let _ = stop.send(());
    task.await.expect("join").expect("clean stop");
}
