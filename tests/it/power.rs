//! Integration tests: native board power. A real pdudaemon (Debian's, localcmdline driver)
//! switched by lavabox's pdudaemon client; lavabox's served pdudaemon API driven by curl and
//! by pdudaemon's own `pduclient`, switching a USB hub port in a fake sysfs tree; dictionaries
//! naming missing hardware refused through REST and XML-RPC with the reason.
//!
//! Waits are on files appearing or changing, polled with a deadline (the peers give no other
//! signal); the deadlines are safety nets only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lavabox::api::xmlrpc::codec::Value as Rpc;
use lavabox::devicetype::Templates;
use lavabox::hw::power::Silent;
use lavabox::hw::{Boards, PowerState};
use lavabox::store::{NewDevice, NewDeviceType};

use crate::common::server::{Options, Server};

const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it holds, at most [`DEADLINE`].
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A free loopback port (bound and released; the peer binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fake sysfs tree with hub `hub` and ports 1..=4.
fn fake_sysfs(root: &Path, hub: &str) {
    for p in 1..=4 {
        let port = root.join(format!("bus/usb/devices/{hub}/{hub}:1.0/port{p}"));
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(port.join("disable"), "0\n").unwrap();
    }
}

/// A real pdudaemon on `port` whose PDU `pdu1` touches `dir/on-N` and `dir/off-N`.
struct Pdudaemon {
    child: tokio::process::Child,
}

impl Pdudaemon {
    async fn start(dir: &Path, port: u16) -> Option<Pdudaemon> {
        if which("pdudaemon").is_none() {
            eprintln!("SKIPPED: no pdudaemon (scripts/install-deps.sh installs it)");
            return None;
        }
        let conf = dir.join("pdudaemon.conf");
        let json = serde_json::json!({
            "daemon": {"hostname": "127.0.0.1", "port": port, "listener": "http"},
            "pdus": {"pdu1": {
                "driver": "localcmdline",
                "cmd_on": format!("touch {}/on-%s", dir.display()),
                "cmd_off": format!("touch {}/off-%s", dir.display()),
            }},
            "aliases": {"board1": {"hostname": "pdu1", "port": 3}}
        });
        std::fs::write(&conf, json.to_string()).unwrap();
        let child = tokio::process::Command::new("pdudaemon")
            .arg(format!("--conf={}", conf.display()))
            .arg(format!("--logfile={}", dir.join("pdudaemon.log").display()))
            .kill_on_drop(true)
            .spawn()
            .expect("pdudaemon starts");
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(start.elapsed() < DEADLINE, "pdudaemon never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Pdudaemon { child })
    }
}

impl Drop for Pdudaemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn device(dictionary: &str) -> lavabox::devicetype::DeviceConfig {
    Templates::builtin()
        .render(dictionary, &serde_json::Map::new())
        .expect("renders")
        .config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pdudaemon_is_switched_by_lavaboxs_client() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(_pdu) = Pdudaemon::start(dir.path(), port).await else {
        return;
    };
    let boards = Boards::default();
    let by_port = device(&format!(
        "{{% extends 'qemu-uboot-arm.jinja2' %}}\n{{% set lavabox_power = 'pdudaemon' %}}\n\
         {{% set lavabox_pdu_url = 'http://127.0.0.1:{port}' %}}\n\
         {{% set lavabox_pdu_hostname = 'pdu1' %}}\n{{% set lavabox_pdu_port = 7 %}}\n\
         {{% set lavabox_pdu_delay = 0 %}}\n"
    ));
    let power = boards.power(&by_port).unwrap();
    let t = Duration::from_secs(10);
    power.set(PowerState::On, t, &Silent).await.unwrap();
    eventually("pdudaemon's on-7", || dir.path().join("on-7").exists()).await;
    power.set(PowerState::Off, t, &Silent).await.unwrap();
    eventually("pdudaemon's off-7", || dir.path().join("off-7").exists()).await;
    // A cycle is one reboot request: off then on again.
    std::fs::remove_file(dir.path().join("on-7")).unwrap();
    std::fs::remove_file(dir.path().join("off-7")).unwrap();
    power.cycle(t, &Silent).await.unwrap();
    eventually("the reboot's off and on", || {
        dir.path().join("off-7").exists() && dir.path().join("on-7").exists()
    })
    .await;
    // By alias.
    let by_alias = device(&format!(
        "{{% extends 'qemu-uboot-arm.jinja2' %}}\n{{% set lavabox_power = 'pdudaemon' %}}\n\
         {{% set lavabox_pdu_url = 'http://127.0.0.1:{port}' %}}\n\
         {{% set lavabox_pdu_alias = 'board1' %}}\n"
    ));
    let power = boards.power(&by_alias).unwrap();
    power.set(PowerState::On, t, &Silent).await.unwrap();
    eventually("the alias's on-3", || dir.path().join("on-3").exists()).await;
    // An unknown PDU: pdudaemon's refusal is the error.
    let unknown = device(&format!(
        "{{% extends 'qemu-uboot-arm.jinja2' %}}\n{{% set lavabox_power = 'pdudaemon' %}}\n\
         {{% set lavabox_pdu_url = 'http://127.0.0.1:{port}' %}}\n\
         {{% set lavabox_pdu_hostname = 'nope' %}}\n{{% set lavabox_pdu_port = 1 %}}\n"
    ));
    let err = boards
        .power(&unknown)
        .unwrap()
        .set(PowerState::On, t, &Silent)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");
    assert!(err.output().unwrap().contains("500"), "{:?}", err.output());
}

fn usb_dict(hub: &str, port: u32) -> String {
    format!(
        "{{% extends 'qemu-uboot-arm.jinja2' %}}\n{{% set lavabox_power = 'usb_port' %}}\n\
         {{% set lavabox_usb_hub = '{hub}' %}}\n{{% set lavabox_usb_port = {port} %}}\n\
         {{% set lavabox_min_off_seconds = 0.2 %}}\n"
    )
}

async fn curl(addr: SocketAddr, query: &str) -> (u16, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{query}"))
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// The served API on `listen`, a device `board-usb` on a fake hub port, and a device whose
/// dictionary chooses no native backend.
async fn served(sysfs: &Path, listen: &str) -> Server {
    fake_sysfs(sysfs, "1-1.4");
    let mut options = Options::api_only().seed(|s| {
        s.create_device_type(&NewDeviceType::named("qemu-uboot-arm"))?;
        let mut dev = NewDevice::new("board-usb", "qemu-uboot-arm");
        dev.dictionary = Some(usb_dict("1-1.4", 2));
        s.create_device(&dev)?;
        let mut plain = NewDevice::new("board-cmd", "qemu-uboot-arm");
        plain.dictionary = Some(
            "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set power_on_command = 'true' %}\n".into(),
        );
        s.create_device(&plain)?;
        Ok(())
    });
    options.board = crate::common::server::Board::Lab;
    options.hw = Some(lavabox::config::RawHw {
        sysfs_root: Some(sysfs.to_owned()),
        pdudaemon_listen: Some(listen.into()),
        ..Default::default()
    });
    Server::start(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_pdudaemon_api_switches_the_appliances_relays() {
    let sysfs = tempfile::tempdir().unwrap();
    let srv = served(sysfs.path(), "127.0.0.1:0").await;
    let api = srv.pdudaemon.expect("the served pdudaemon API listens");
    let port2 = sysfs
        .path()
        .join("bus/usb/devices/1-1.4/1-1.4:1.0/port2/disable");
    let (code, body) = curl(api, "/power/control/on?hostname=board-usb&port=2").await;
    assert_eq!((code, body.as_str()), (200, "OK - accepted request"));
    eventually("port 2 powered", || read(&port2) == "0").await;
    let (code, _) = curl(api, "/power/control/off?alias=board-usb").await;
    assert_eq!(code, 200);
    eventually("port 2 off", || read(&port2) == "1").await;
    let (code, _) = curl(
        api,
        "/power/control/reboot?hostname=board-usb&port=1&delay=0",
    )
    .await;
    assert_eq!(code, 200);
    eventually("port 2 on after the reboot", || read(&port2) == "0").await;
    // pdudaemon's refusals: unknown device, no port, no relay of ours, unknown command.
    for bad in [
        "/power/control/on?hostname=nope&port=1",
        "/power/control/on?hostname=board-usb",
        "/power/control/on?hostname=board-cmd&port=1",
        "/power/control/cycle?hostname=board-usb&port=1",
    ] {
        assert_eq!(
            curl(api, bad).await,
            (500, "Invalid request".into()),
            "{bad}"
        );
    }
    // lavabox's own pdudaemon client pointed at the served API.
    let client = device(&format!(
        "{{% extends 'qemu-uboot-arm.jinja2' %}}\n{{% set lavabox_power = 'pdudaemon' %}}\n\
         {{% set lavabox_pdu_url = 'http://{api}' %}}\n{{% set lavabox_pdu_alias = 'board-usb' %}}\n"
    ));
    let power = Boards::default().power(&client).unwrap();
    power
        .set(PowerState::Off, Duration::from_secs(5), &Silent)
        .await
        .unwrap();
    eventually("port 2 off through the client", || read(&port2) == "1").await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdudaemons_own_pduclient_drives_the_served_api() {
    if which("pduclient").is_none() {
        eprintln!("SKIPPED: no pduclient (scripts/install-deps.sh installs it)");
        return;
    }
    // pduclient's HTTP mode always talks to port 16421.
    if std::net::TcpListener::bind("127.0.0.1:16421").is_err() {
        eprintln!("SKIPPED: 127.0.0.1:16421 is taken, and pduclient knows no other port");
        return;
    }
    let sysfs = tempfile::tempdir().unwrap();
    let srv = served(sysfs.path(), "127.0.0.1:16421").await;
    let port2 = sysfs
        .path()
        .join("bus/usb/devices/1-1.4/1-1.4:1.0/port2/disable");
    for (command, want) in [("on", "0"), ("off", "1")] {
        let out = tokio::process::Command::new("pduclient")
            .args(["--http", "--daemon", "127.0.0.1", "--hostname", "board-usb"])
            .args(["--port", "2", "--command", command])
            .output()
            .await
            .expect("pduclient runs");
        assert!(out.status.success(), "{out:?}");
        eventually("pduclient's switch", || read(&port2) == want).await;
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionaries_naming_missing_hardware_are_refused_with_the_reason() {
    let sysfs = tempfile::tempdir().unwrap();
    let srv = served(sysfs.path(), "off").await;
    let client = reqwest::Client::new();
    let set = async |dict: &str| {
        let resp = client
            .post(format!(
                "http://{}/api/v0.2/devices/board-usb/dictionary/",
                srv.addr
            ))
            .header("Authorization", format!("Token {}", srv.admin_token))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "dictionary": dict }).to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let (code, body) = set(&usb_dict("1-1.4", 9)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no switchable port 9"), "{body}");
    let gpio = "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set lavabox_power = 'gpio' %}\n\
                {% set lavabox_gpio_line = 'NO-SUCH-LINE' %}\n";
    let (code, body) = set(gpio).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no GPIO line named 'NO-SUCH-LINE'"), "{body}");
    let (code, body) = set(&usb_dict("1-1.4", 3)).await;
    assert_eq!(code, 200, "{body}");
    // XML-RPC's set_dictionary refuses the same.
    let err = crate::xmlrpc::rpc(
        srv.addr,
        Some(("admin", &srv.admin_token)),
        "scheduler.devices.set_dictionary",
        &[Rpc::str("board-usb"), Rpc::str(gpio)],
    )
    .await
    .unwrap_err();
    assert!(
        err.1.contains("no GPIO line named 'NO-SUCH-LINE'"),
        "{err:?}"
    );
    let stored = srv
        .app
        .store()
        .call(|s| s.device("board-usb"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.dictionary.as_deref(),
        Some(usb_dict("1-1.4", 3).as_str())
    );
    srv.stop().await;
}
