//! What several integration-test modules share: where the checkout and the virtual lab's
//! assets are, building the assets once, taking the TFTP port the U-Boot board needs, the
//! lab switch ([`lab_or_skip!`]), submitting a job through the one submission path
//! ([`submit_as`]) and the one server fixture ([`server`]).

pub mod server;
pub mod webdriver;

/// The one switch for the lab tests (QEMU boards, port 69, socat, lavacli, ngircd, aiosmtpd,
/// busybox…): they run only with `LAVABOX_LAB=1` (`scripts/test` and CI set it), so
/// `cargo test` needs no root and no QEMU.
pub fn lab_enabled() -> bool {
    std::env::var("LAVABOX_LAB").is_ok_and(|v| v == "1")
}

/// First statement of a lab test: without `LAVABOX_LAB=1` the test returns at once and says
/// so on stderr — written to the process's stderr itself, which the test harness does not
/// capture, so the line shows in every `cargo test` run, never silently.
macro_rules! lab_or_skip {
    () => {
        if !$crate::common::lab_enabled() {
            let line = format!(
                "SKIPPED {}:{}: a lab test (QEMU boards, port 69, lab tools); set LAVABOX_LAB=1 to run it\n",
                module_path!(),
                line!()
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
            return;
        }
    };
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lavabox::access::{Caller, CallerUser};
use lavabox::app::App;
use lavabox::model::{JobId, TestResult};
use lavabox::store::AsyncStore;
use lavabox::submit::Submitted;
use lavabox::tftp;
use tokio::process::Command;
use tokio::sync::OnceCell;

/// The lavabox checkout (device types, `lab/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The virtual lab's guest kernels and initramfs (`lab/build-assets.sh`).
pub fn cache() -> PathBuf {
    repo().join("lab/cache")
}

/// Builds the guest assets unless `lab/build-assets.sh` already has; tests running at the
/// same time wait for the one build instead of starting their own.
pub async fn ensure_assets() {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let wanted = [
                "armhf/zImage",
                "armhf/ramdisk.cpio.gz",
                "amd64/vmlinuz",
                "amd64/ramdisk.cpio.gz",
            ];
            if wanted.iter().all(|f| cache().join(f).is_file()) {
                return;
            }
            let status = Command::new(repo().join("lab/build-assets.sh"))
                .status()
                .await
                .expect("running lab/build-assets.sh");
            assert!(status.success(), "lab/build-assets.sh failed: {status}");
        })
        .await;
}

/// Points the asset URLs of a shipped health check (the appliance layout,
/// `/var/lib/lavabox/lab-assets`) at this checkout's `lab/cache`.
pub fn with_lab_assets(text: &str) -> String {
    text.replace(
        "file:///var/lib/lavabox/lab-assets/",
        &format!("file://{}/", cache().display()),
    )
}

/// The shipped health check of `device_type`, reading its assets from `lab/cache`.
pub fn health_check(device_type: &str) -> String {
    let file = repo().join(format!("device-types/health-checks/{device_type}.yaml"));
    let text = std::fs::read_to_string(&file).expect("shipped health check");
    with_lab_assets(&text)
}

/// Port 69 exists once per machine: the tests of this binary that need it take turns here,
/// each holding its turn for as long as its server lives.
pub(crate) static PORT_69: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Binds a TFTP server on 127.0.0.1:69 — QEMU's user network sends the U-Boot board's
/// requests there — once the previous holder in this test binary let go of the port.
/// Keep the returned guard alive while the server runs.
pub async fn tftp_server(root: &Path) -> (tftp::Server, tokio::sync::MutexGuard<'static, ()>) {
    let turn = PORT_69.lock().await;
    let addr: SocketAddr = "127.0.0.1:69".parse().unwrap();
    match tftp::Server::bind(addr, root).await {
        Ok(server) => (server, turn),
        Err(e) => panic!(
            "cannot bind TFTP on {addr}: {e} (another process holds the port: a running \
             `lavabox serve` or demo, or a second test run?)"
        ),
    }
}

/// The test cases `job` recorded, in order: (suite, case, result).
pub async fn test_cases(store: &AsyncStore, job: JobId) -> Vec<(String, String, TestResult)> {
    store
        .call(move |s| s.test_cases(job, None, 0, None))
        .await
        .expect("reading test cases")
        .into_iter()
        .map(|c| (c.suite, c.name, c.result))
        .collect()
}

/// Submits `definition` as user `username` through the one submission path every API uses
/// (`lavabox::submit::submit`: validation, the device checks, the store, `App::changed` and
/// the scheduler's wake-up); returns the new job's id.
pub async fn submit_as(app: &App, username: &str, definition: &str) -> JobId {
    let name = username.to_owned();
    let user = app
        .store()
        .call(move |s| {
            let Some(user) = s.user(&name)? else {
                panic!("no user {name}");
            };
            let groups = s.user_groups(&name)?;
            Ok(CallerUser {
                id: user.id,
                username: user.username,
                is_superuser: user.is_superuser,
                groups: groups.into_iter().map(|g| g.name).collect(),
            })
        })
        .await
        .expect("reading the submitter");
    let caller = Caller { user: Some(user) };
    match lavabox::submit::submit(app, &caller, definition).await {
        Ok(Submitted::Single(id)) => id,
        other => panic!("submitting as {username}: {other:?}\n{definition}"),
    }
}

/// Runs the real `lavabox` binary as an admin would (`--config CONFIG --data DATA ARGS…`);
/// asserts it succeeded and returns its standard output.
pub fn lavabox_cli(config: &Path, data: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run lavabox");
    assert!(
        out.status.success(),
        "lavabox {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A job for the x86 QEMU board (`qemu`, the dispatcher starts QEMU itself) named `name`:
/// the cached Debian kernel and busybox initramfs deployed to tmpfs, booted to the lab's
/// prompt, then `test` (a `- test:` block, or nothing).
pub fn qemu_job(name: &str, test: &str) -> String {
    format!(
        r#"job_name: {name}
device_type: qemu
visibility: public
context: {{arch: amd64}}
timeouts:
  job: {{minutes: 10}}
  action: {{minutes: 3}}
  connection: {{minutes: 3}}
actions:
- deploy:
    to: tmpfs
    images:
      kernel:
        url: 'file://{kernel}'
        image_arg: '-kernel {{kernel}} -append "console=ttyS0 panic=-1"'
      initrd:
        url: 'file://{initrd}'
        compression: gz
        image_arg: '-initrd {{initrd}}'
- boot:
    method: qemu
    media: tmpfs
    prompts: ['{PROMPT}']
{test}"#,
        kernel = cache().join("amd64/vmlinuz").display(),
        initrd = cache().join("amd64/ramdisk.cpio.gz").display(),
    )
}

/// The virtual lab's shell prompt (`lab/build-assets.sh`'s busybox initramfs).
pub const PROMPT: &str = r"root@lavabox:[^\r\n]*# ";

/// A receiver for webhook callbacks: its URL and every body posted to it.
pub async fn webhook() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<axum::body::Bytes>,
) {
    use axum::body::Bytes;
    use axum::extract::State;
    use tokio::sync::mpsc;
    async fn hit(State(tx): State<mpsc::UnboundedSender<Bytes>>, body: Bytes) -> &'static str {
        let _ = tx.send(body);
        "ok"
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hit))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

/// The dictionary of the U-Boot board `uboot-arm-01` driven by `lab/board` with its state in
/// `run` (its own `LAVABOX_LAB_RUN`, so "no QEMU left" checks see only this test's board).
pub fn uboot_dict(run: &Path) -> String {
    let board = repo().join("lab/board");
    let env = format!("LAVABOX_LAB_RUN={}", run.display());
    format!(
        "{{% extends 'qemu-uboot-arm.jinja2' %}}\n\
         {{% set connection_command = '{env} {b} console uboot-arm-01' %}}\n\
         {{% set power_on_command = '{env} {b} power-on uboot-arm-01' %}}\n\
         {{% set power_off_command = '{env} {b} power-off uboot-arm-01' %}}\n\
         {{% set hard_reset_command = '{env} {b} hard-reset uboot-arm-01' %}}\n",
        b = board.display()
    )
}
