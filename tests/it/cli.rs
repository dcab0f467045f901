//! Integration tests: cli. Each test runs the real `lavabox` binary against its own
//! temporary data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A temporary data directory and the binary to run against it.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command with `--data` set and an empty configuration file, so no file on the
    /// machine (such as /etc/lavabox/lavabox.toml) changes the outcome.
    fn command(&self, args: &[&str]) -> Command {
        let config = self.dir.path().join("lavabox.toml");
        if !config.exists() {
            std::fs::write(&config, "instance = \"test\"\n").expect("write config");
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lavabox"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(self.data())
            .args(args)
            .env_remove("RUST_LOG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run lavabox")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lavabox {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "lavabox {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The arguments of `lavabox device add HOSTNAME --type TYPE --dictionary FILE`.
fn device_add<'a>(hostname: &'a str, device_type: &'a str, dictionary: &'a Path) -> [&'a str; 7] {
    [
        "device",
        "add",
        hostname,
        "--type",
        device_type,
        "--dictionary",
        s(dictionary),
    ]
}

/// The lavabox error line: printed once, prefixed, whole context chain.
fn error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lavabox: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line in:\n{stderr}");
    errors[0]
}

#[test]
fn user_and_token_round_trip() {
    let lab = Lab::new();
    assert_eq!(
        lab.ok(&["user", "add", "alice", "--email", "alice@example.com"]),
        "user `alice` created\n"
    );
    lab.ok(&["user", "add", "root", "--superuser"]);
    let list = lab.ok(&["user", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("USERNAME"), "{list}");
    assert!(lines[1].starts_with("alice") && lines[1].contains("alice@example.com"));
    assert!(lines[2].starts_with("root") && lines[2].contains("yes"));

    let secret = lab.ok(&["token", "add", "alice", "--description", "ci"]);
    let secret = secret.strip_suffix('\n').expect("one line");
    assert_eq!(secret.len(), 128, "only the secret on stdout: {secret:?}");
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    let tokens = lab.ok(&["token", "list", "alice"]);
    assert!(tokens.contains("ci"), "{tokens}");
    assert!(!tokens.contains(secret), "secrets are never listed");

    let err = lab.fails(&["token", "add", "nobody"]);
    assert_eq!(
        error_line(&err),
        "lavabox: error: adding a token for `nobody`: user `nobody` not found"
    );
}

#[test]
fn duplicate_names_are_refused() {
    let lab = Lab::new();
    lab.ok(&["user", "add", "alice"]);
    let err = lab.fails(&["user", "add", "alice"]);
    assert_eq!(
        error_line(&err),
        "lavabox: error: adding user `alice`: user `alice` already exists"
    );
    lab.ok(&["device-type", "add", "qemu"]);
    let err = lab.fails(&["device-type", "add", "qemu"]);
    assert_eq!(
        error_line(&err),
        "lavabox: error: adding device type `qemu`: device type `qemu` already exists"
    );
    lab.ok(&["group", "add", "lab"]);
    assert!(
        lab.fails(&["group", "add", "lab"])
            .contains("already exists")
    );
    let dict = lab.write("q1.jinja2", "{% extends 'qemu.jinja2' %}\n");
    lab.ok(&device_add("q1", "qemu", &dict));
    let err = lab.fails(&device_add("q1", "qemu", &dict));
    assert_eq!(
        error_line(&err),
        "lavabox: error: adding device `q1`: device `q1` already exists"
    );
}

#[test]
fn device_round_trip() {
    let lab = Lab::new();
    assert_eq!(
        lab.ok(&[
            "device-type",
            "add",
            "qemu",
            "--health-frequency",
            "5",
            "--health-denominator",
            "jobs"
        ]),
        "device type `qemu` created\n"
    );
    let dict = lab.write(
        "q1.jinja2",
        "{% extends 'qemu.jinja2' %}\n{% set netdevice = 'user' %}\n",
    );
    assert_eq!(
        lab.ok(&[
            "device",
            "add",
            "q1",
            "--type",
            "qemu",
            "--dictionary",
            s(&dict),
            "--worker",
            "pi"
        ]),
        "device `q1` created\n"
    );
    lab.ok(&[
        "device",
        "add",
        "q0",
        "--type",
        "qemu",
        "--dictionary",
        s(&dict),
        "--health",
        "good",
    ]);
    assert_eq!(
        lab.ok(&["device", "list"]),
        "HOSTNAME  TYPE  STATE  HEALTH\n\
         q0        qemu  Idle   Good\n\
         q1        qemu  Idle   Unknown\n"
    );
    assert_eq!(
        lab.ok(&["device", "set-health", "q1", "maintenance"]),
        "device `q1` health Maintenance\n"
    );
    lab.ok(&["device", "set-health", "q0", "Retired"]);
    assert_eq!(
        lab.ok(&["device", "list"]),
        "HOSTNAME  TYPE  STATE  HEALTH\n\
         q1        qemu  Idle   Maintenance\n"
    );
    assert!(lab.ok(&["device", "list", "--all"]).contains("q0"));
    let types = lab.ok(&["device-type", "list"]);
    assert!(types.contains("every 5 jobs"), "{types}");
    let err = lab.fails(&["device", "set-health", "q1", "sleepy"]);
    assert!(
        error_line(&err)
            .starts_with("lavabox: error: reading the health: unknown device health `sleepy`"),
        "{err}"
    );
    let err = lab.fails(&["device", "set-health", "nope", "good"]);
    assert_eq!(
        error_line(&err),
        "lavabox: error: setting the health of `nope`: device `nope` not found"
    );
}

#[test]
fn device_add_reports_bad_inputs() {
    let lab = Lab::new();
    let dict = lab.write("bbb.jinja2", "{% extends 'beaglebone-black.jinja2' %}\n");
    let err = lab.fails(&device_add("bbb01", "beaglebone-black", &dict));
    assert_eq!(
        error_line(&err),
        "lavabox: error: adding device `bbb01`: device type `beaglebone-black` not found; \
         create it first with `lavabox device-type add beaglebone-black`"
    );
    lab.ok(&["device-type", "add", "beaglebone-black"]);
    let missing = lab.dir.path().join("missing.jinja2");
    let err = lab.fails(&device_add("bbb01", "beaglebone-black", &missing));
    let line = error_line(&err);
    assert!(
        line.starts_with(&format!(
            "lavabox: error: adding device `bbb01`: cannot read device dictionary {}: ",
            missing.display()
        )),
        "{line}"
    );
    let garbage = lab.write("garbage.jinja2", "hostname: bbb01\n");
    let err = lab.fails(&device_add("bbb01", "beaglebone-black", &garbage));
    assert!(
        error_line(&err).contains("invalid device dictionary"),
        "{err}"
    );
    // Nothing was created by the failed attempts.
    assert_eq!(
        lab.ok(&["device", "list"]),
        "HOSTNAME  TYPE  STATE  HEALTH\n"
    );
}

#[test]
fn serve_starts_and_stops_on_sigterm() {
    let lab = Lab::new();
    let mut child = lab
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lavabox serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the readiness line; the timeout is only a safety net.
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("lavabox ready") => break line,
            Ok(_) => continue,
            Err(err) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "no readiness line ({err}); stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    };
    // The readiness line names the address actually bound, not the requested port 0.
    assert!(ready.contains("listen=127.0.0.1:"), "{ready}");
    assert!(!ready.contains("127.0.0.1:0 "), "{ready}");
    assert!(lab.data().join("lavabox.db").is_file());

    // The admin commands work while the daemon holds the database open.
    lab.ok(&["user", "add", "alice"]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let out = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve did not stop after SIGTERM")
        .expect("wait for serve");
    assert!(
        out.status.success(),
        "serve exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("lavabox stopped")),
        "{rest:?}"
    );
}

#[test]
fn newer_database_is_refused() {
    let lab = Lab::new();
    lab.ok(&["user", "add", "alice"]);
    let db = lab.data().join("lavabox.db");
    // The last connection closed, so the WAL is checkpointed into the main file; bump the
    // header's user_version (big-endian u32 at offset 60) past what this build knows.
    let wal = lab.data().join("lavabox.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).expect("wal").len() == 0,
        "WAL not checkpointed"
    );
    let mut bytes = std::fs::read(&db).expect("read db");
    bytes[60..64].copy_from_slice(&999u32.to_be_bytes());
    std::fs::write(&db, &bytes).expect("write db");

    let err = lab.fails(&["user", "list"]);
    let line = error_line(&err);
    assert!(
        line.contains("has schema version 999, newer than"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&db).expect("read db"),
        bytes,
        "database left untouched"
    );
    let err = lab.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(error_line(&err).contains("newer than"), "{err}");
}

#[test]
fn config_errors_are_precise() {
    let lab = Lab::new();
    let config = lab.write(
        "bad.toml",
        "instance = \"x\"\nlisten = \"127.0.0.1:8000\"\nport = 80\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .args(["--config", s(&config), "user", "list"])
        .output()
        .expect("run lavabox");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        error_line(&err).starts_with(&format!(
            "lavabox: error: loading the configuration: {}: line 3: unknown field `port`",
            config.display()
        )),
        "{err}"
    );
}
