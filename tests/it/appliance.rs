//! Issue 18: the appliance's unit contract, checked on the real `lavabox serve` binary.
//!
//! - readiness and stop are told to systemd over `$NOTIFY_SOCKET` (a datagram socket this
//!   test owns, as systemd's), and a SIGTERM during a job leaves no board process running
//!   and the board's relay off (the power backend is the dictionary's commands, faked at
//!   the hardware boundary by a script that records each switch);
//! - a missing configuration and a damaged database exit with 78 and 65 (the unit's
//!   `RestartPreventExitStatus`) and one clear line on stderr.
//!
//! No QEMU: the board's console is a child process and its power a script.

use std::path::Path;
use std::time::Duration;

use lavabox::api::xmlrpc::codec::Value as Rpc;
use lavabox::model::DeviceHealth;
use lavabox::store::{NewDevice, NewDeviceType, NewUser, Store};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// A TCP port free a moment ago: the configuration file refuses `zmq_port = 0`, and the real
/// binary under test must not take the default port another test or service may hold.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// Receives the next notification datagram, as text.
async fn next_notification(socket: &tokio::net::UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), socket.recv(&mut buf))
        .await
        .expect("a notification in time")
        .expect("reading the notify socket");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Processes whose command line mentions `marker` (the test's directory), other than pgrep.
async fn processes_mentioning(marker: &Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .arg("-af")
        .arg(marker.as_os_str())
        .output()
        .await
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_owned)
        .collect()
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_notifies_systemd_and_leaves_no_process_and_no_relay_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(
        root.join("lavabox.toml"),
        format!(
            "instance = \"stoptest\"\n[tftp]\nlisten = \"127.0.0.1:0\"\n[events]\nzmq_port = {}\n",
            free_port()
        ),
    )
    .unwrap();
    // The relay: every switch appended to relay.log; switching on also says so through a
    // FIFO, which the test waits on (no sleep).
    let fifo = root.join("powered");
    let made = Command::new("mkfifo").arg(&fifo).status().await.unwrap();
    assert!(made.success());
    let relay = root.join("relay");
    write_script(
        &relay,
        &format!(
            "#!/bin/sh\necho \"$1\" >>'{log}'\n[ \"$1\" = on ] && echo on >'{fifo}'\nexit 0\n",
            log = root.join("relay.log").display(),
            fifo = fifo.display()
        ),
    );
    // The board's console: a child process that never prints the prompt.
    let console = root.join("console");
    write_script(
        &console,
        "#!/bin/sh\necho 'board booting'\nexec sleep 600\n",
    );
    let dictionary = format!(
        "{{% extends 'qemu.jinja2' %}}\n\
         {{% set connection_command = '{console}' %}}\n\
         {{% set power_on_command = '{relay} on' %}}\n\
         {{% set power_off_command = '{relay} off' %}}\n",
        console = console.display(),
        relay = relay.display()
    );
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token = {
        let mut s = Store::open(data.join("lavabox.db")).unwrap();
        s.create_user(&NewUser::named("tester")).unwrap();
        let mut dt = NewDeviceType::named("qemu");
        dt.disable_health_check = true;
        s.create_device_type(&dt).unwrap();
        let mut dev = NewDevice::new("relay-01", "qemu");
        dev.dictionary = Some(dictionary);
        dev.health = DeviceHealth::Good;
        s.create_device(&dev).unwrap();
        s.create_token("tester", "test").unwrap().secret
    };

    // systemd's side: the notify socket.
    let notify_path = root.join("notify");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--config")
        .arg(root.join("lavabox.toml"))
        .arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start lavabox serve");
    let ready = next_notification(&notify).await;
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    let addr: std::net::SocketAddr = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=serving on "))
        .expect("the listen address in STATUS")
        .parse()
        .expect("an address");
    // READY=1 came after every listener was bound: the API answers at once.
    let job = "device_type: qemu\njob_name: stop with a board on\npriority: medium\n\
               visibility: public\ntimeouts:\n  job: {minutes: 10}\nactions:\n\
               - boot:\n    method: minimal\n    prompts: ['never-printed-prompt']\n\
               \x20   timeout: {minutes: 5}\n";
    match crate::xmlrpc::rpc(
        addr,
        Some(("tester", &token)),
        "scheduler.jobs.submit",
        &[Rpc::str(job)],
    )
    .await
    {
        Ok(Rpc::Int(_)) => {}
        other => panic!("submit: {other:?}"),
    }
    // The job switched the board's relay on.
    let mut rx = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&fifo)
        .unwrap();
    let mut line = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(60), rx.read_exact(&mut line))
        .await
        .expect("the board powered on in time")
        .unwrap();
    assert_eq!(&line, b"on\n");

    let pid = nix::unistd::Pid::from_raw(i32::try_from(server.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let stopping = next_notification(&notify).await;
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = tokio::time::timeout(Duration::from_secs(90), server.wait())
        .await
        .expect("serve stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");

    let switches = std::fs::read_to_string(root.join("relay.log")).unwrap();
    assert_eq!(
        switches.lines().last(),
        Some("off"),
        "the relay's last switch: {switches:?}"
    );
    let left = processes_mentioning(&root).await;
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// Runs `lavabox ARGS…` to its end; returns the exit code and stderr.
async fn run_lavabox(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_lavabox"))
            .args(args)
            .output(),
    )
    .await
    .expect("lavabox exits")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_missing_config_exits_78_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("etc/lavabox.toml");
    let (code, stderr) = run_lavabox(&[
        "--config".as_ref(),
        missing.as_os_str(),
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])
    .await;
    assert_eq!(code, Some(78), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with(
            "lavabox: error: loading the configuration: cannot read configuration file"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

#[tokio::test]
async fn a_damaged_database_exits_65_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lavabox.toml");
    std::fs::write(
        &config,
        format!(
            "[tftp]\nlisten = \"127.0.0.1:0\"\n[events]\nzmq_port = {}\n",
            free_port()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // What a power cut in the middle of a card write can leave: not a database at all.
    std::fs::write(data.join("lavabox.db"), vec![0xa5_u8; 16384]).unwrap();
    let (code, stderr) = run_lavabox(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])
    .await;
    assert_eq!(code, Some(65), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lavabox:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr:?}");
    assert!(errors[0].starts_with("lavabox: error: "), "{stderr}");
    assert!(errors[0].contains("(data error, exit 65"), "{stderr}");
    assert!(errors[0].contains("lavabox.db"), "{stderr}");
    assert!(errors[0].contains("not a database"), "{stderr}");
    // The damaged file was left as it was, for a backup or a repair.
    assert_eq!(
        std::fs::read(data.join("lavabox.db")).unwrap(),
        vec![0xa5_u8; 16384]
    );
}
