//! Integration tests: Debian's `lavacli` (apt-get install lavacli) against the real server.
//!
//! Each command's output is checked, not just its exit status. lavacli is configured through
//! a `lavacli.yaml` in a temporary `XDG_CONFIG_HOME`, exactly as users configure it.

use std::path::PathBuf;
use std::process::Output;

use crate::xmlrpc::{MULTINODE_JOB, QEMU_JOB, TestServer, with_finished_job};

struct Cli {
    config_home: PathBuf,
    files: PathBuf,
}

impl Cli {
    fn new(srv: &TestServer) -> Cli {
        let config_home = srv.dir().join("xdg");
        let files = srv.dir().join("files");
        std::fs::create_dir_all(&config_home).expect("xdg dir");
        std::fs::create_dir_all(&files).expect("files dir");
        let config = format!(
            "default:\n  uri: http://{addr}/RPC2\n  username: admin\n  token: {admin}\n\
             alice:\n  uri: http://{addr}/RPC2\n  username: alice\n  token: {alice}\n\
             anon:\n  uri: http://{addr}/RPC2\n",
            addr = srv.addr,
            admin = srv.admin_token,
            alice = srv.alice_token,
        );
        std::fs::write(config_home.join("lavacli.yaml"), config).expect("lavacli.yaml");
        Cli { config_home, files }
    }

    async fn run(&self, identity: &str, args: &[&str]) -> Output {
        tokio::process::Command::new("lavacli")
            .arg("-i")
            .arg(identity)
            .args(args)
            .env("XDG_CONFIG_HOME", &self.config_home)
            .env("HOME", &self.config_home)
            .output()
            .await
            .expect("running lavacli (apt-get install lavacli)")
    }

    /// Runs as `identity`; asserts success and returns stdout.
    async fn ok_as(&self, identity: &str, args: &[&str]) -> String {
        let out = self.run(identity, args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "lavacli {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.ok_as("default", args).await
    }

    /// Runs as `identity`; asserts failure and returns stdout + stderr.
    async fn fails(&self, identity: &str, args: &[&str]) -> String {
        let out = self.run(identity, args).await;
        assert!(!out.status.success(), "lavacli {args:?} succeeded");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.files.join(name);
        std::fs::write(&path, text).expect("write file");
        path.to_string_lossy().into_owned()
    }
}

fn assert_has(out: &str, needles: &[&str]) {
    for n in needles {
        assert!(out.contains(n), "missing {n:?} in:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lavacli_drives_lavabox() {
    lab_or_skip!();
    // `finished` ran through the whole appliance (scheduler, dispatcher, a scripted board).
    let (srv, finished) = with_finished_job().await;
    let cli = Cli::new(&srv);

    // system
    assert_eq!(cli.ok(&["system", "version"]).await.trim(), "2023.01");
    let methods = cli.ok(&["system", "methods", "list"]).await;
    assert_has(
        &methods,
        &[
            "scheduler.jobs.submit",
            "system.version",
            "results.get_testjob_results_yaml",
        ],
    );
    assert_eq!(
        cli.ok_as("alice", &["system", "whoami"]).await.trim(),
        "alice"
    );

    // device types
    let dts = cli.ok(&["device-types", "list"]).await;
    assert_has(&dts, &["qemu", "(2)", "bbb"]);
    let dt = cli.ok(&["device-types", "show", "qemu"]).await;
    assert_has(&dt, &["name", "qemu", "qemu-alias", "qemu01", "qemu02"]);
    let tpl = cli.ok(&["device-types", "template", "get", "qemu"]).await;
    assert_has(&tpl, &["{% extends"]);
    let custom = cli.file(
        "custom.jinja2",
        "{% extends 'base.jinja2' %}\n{# custom #}\n",
    );
    cli.ok(&["device-types", "template", "set", "custom", &custom])
        .await;
    assert_has(
        &cli.ok(&["device-types", "template", "get", "custom"]).await,
        &["{# custom #}"],
    );

    // devices
    let devices = cli.ok(&["devices", "list"]).await;
    assert_has(
        &devices,
        &["qemu01 (qemu)", "qemu02 (qemu)", "Idle", "Good"],
    );
    let dev = cli.ok(&["devices", "show", "qemu01"]).await;
    assert_has(&dev, &["qemu01", "qemu", "fast", &srv.worker]);
    assert_has(
        &cli.ok(&["devices", "dict", "get", "qemu01"]).await,
        &["extends 'qemu.jinja2'"],
    );
    let dict = cli.file(
        "qemu02.jinja2",
        "{% extends 'qemu.jinja2' %}\n{% set arch = 'arm64' %}\n",
    );
    cli.ok(&["devices", "dict", "set", "qemu02", &dict]).await;
    assert_has(
        &cli.ok(&["devices", "dict", "get", "qemu02"]).await,
        &["arm64"],
    );
    assert_has(
        &cli.ok(&["devices", "dict", "get", "--render", "qemu02"])
            .await,
        &["arm64"],
    );
    cli.ok(&["devices", "maintenance", "qemu02"]).await;
    assert_has(
        &cli.ok(&["devices", "show", "qemu02"]).await,
        &["Maintenance"],
    );
    let denied = cli
        .fails("alice", &["devices", "dict", "set", "qemu01", &dict])
        .await;
    assert_has(&denied, &["403"]);

    // workers: the appliance's own (Offline: the appliance that ran the finished job stopped,
    // and this test serves the API alone) and one added, updated and configured through
    // lavacli.
    assert_has(&cli.ok(&["workers", "list"]).await, &[&srv.worker]);
    assert_has(
        &cli.ok(&["workers", "show", &srv.worker]).await,
        &[
            &format!("hostname    : {}", srv.worker),
            "state       : Offline",
            "health      : Active",
            "devices     : qemu01, qemu02",
            "job limit   : 0",
            // The version the appliance recorded while it ran the finished job.
            "version     : 2023.01",
        ],
    );
    cli.ok(&["workers", "add", "bench-pi", "--description", "bench Pi"])
        .await;
    assert_has(
        &cli.ok(&["workers", "list"]).await,
        &["Workers:", "* bench-pi", &format!("* {}", srv.worker)],
    );
    cli.ok(&[
        "workers",
        "update",
        "bench-pi",
        "--health",
        "MAINTENANCE",
        "--job-limit",
        "2",
    ])
    .await;
    assert_has(
        &cli.ok(&["workers", "show", "bench-pi"]).await,
        &[
            "description : bench Pi",
            "state       : Offline",
            "health      : Maintenance",
            "job limit   : 2",
        ],
    );
    let shown = cli.ok(&["workers", "show", "bench-pi", "--yaml"]).await;
    assert_has(
        &shown,
        &["health: Maintenance", "job_limit: 2", "last_ping: 20"],
    );
    cli.ok(&["workers", "maintenance", "bench-pi"]).await;
    let env = cli.file("env.yaml", "overrides:\n  LC_ALL: C.UTF-8\n");
    cli.ok(&["workers", "env", "set", "bench-pi", &env]).await;
    assert_eq!(
        cli.ok(&["workers", "env", "get", "bench-pi"]).await,
        "overrides:\n  LC_ALL: C.UTF-8\n"
    );
    let config = cli.file("dispatcher.yaml", "dispatcher_ip: 10.0.0.2\n");
    cli.ok(&["workers", "config", "set", "bench-pi", &config])
        .await;
    assert_eq!(
        cli.ok(&["workers", "config", "get", "bench-pi"]).await,
        "dispatcher_ip: 10.0.0.2\n"
    );
    assert_has(
        &cli.fails(
            "default",
            &["workers", "config", "get", srv.worker.as_str()],
        )
        .await,
        &["does not have a dispatcher configuration"],
    );
    assert_has(
        &cli.fails("alice", &["workers", "add", "w-alice"]).await,
        &["missing permission lava_scheduler_app.add_worker"],
    );
    assert_has(
        &cli.fails("default", &["workers", "add", "bench-pi"]).await,
        &["worker already exists?"],
    );

    // tags and aliases
    cli.ok(&["tags", "add", "gpu", "--description", "has a GPU"])
        .await;
    assert_has(&cli.ok(&["tags", "list"]).await, &["gpu", "fast"]);
    assert_has(&cli.ok(&["tags", "show", "fast"]).await, &["qemu01"]);
    cli.ok(&["tags", "add", "scratch"]).await;
    cli.ok(&["tags", "delete", "scratch"]).await;
    assert!(
        !cli.ok(&["tags", "list"]).await.contains("scratch"),
        "tags delete left the tag"
    );
    assert_has(
        &cli.fails("default", &["tags", "delete", "scratch"]).await,
        &["Tag 'scratch' was not found."],
    );
    cli.ok(&["devices", "tags", "add", "qemu01", "gpu"]).await;
    assert_has(
        &cli.ok(&["devices", "tags", "list", "qemu01"]).await,
        &["gpu", "fast"],
    );
    cli.ok(&["aliases", "add", "virt", "qemu"]).await;
    assert_has(&cli.ok(&["aliases", "list"]).await, &["virt", "qemu-alias"]);
    assert_has(&cli.ok(&["aliases", "show", "virt"]).await, &["qemu"]);
    cli.ok(&["aliases", "delete", "virt"]).await;
    assert!(!cli.ok(&["aliases", "list"]).await.contains("virt"));

    // jobs
    let job = cli.file("job.yaml", QEMU_JOB);
    let validated = cli.ok(&["jobs", "validate", &job]).await;
    assert!(!validated.to_lowercase().contains("error"), "{validated}");
    let id = cli
        .ok_as("alice", &["jobs", "submit", &job])
        .await
        .trim()
        .to_owned();
    let id_num: i64 = id.parse().unwrap_or_else(|_| panic!("job id, got {id:?}"));
    let mn = cli.file("mn.yaml", MULTINODE_JOB);
    let mn_ids = cli.ok_as("alice", &["jobs", "submit", &mn]).await;
    assert_has(
        &mn_ids,
        &[&format!("{}.0", id_num + 1), &format!("{}.1", id_num + 1)],
    );
    let listed = cli.ok(&["jobs", "list"]).await;
    assert_has(
        &listed,
        &[&format!(
            "* {id}: Submitted,Unknown [alice] (xmlrpc test job) - qemu"
        )],
    );
    let shown = cli.ok(&["jobs", "show", &id]).await;
    assert_has(
        &shown,
        &["xmlrpc test job", "Submitted", "alice", "qemu", "Public"],
    );
    assert_eq!(
        cli.ok(&["jobs", "definition", &id]).await.trim(),
        QEMU_JOB.trim()
    );
    let bad = cli.file(
        "bad.yaml",
        &QEMU_JOB.replace("media: tmpfs", "media: floppy"),
    );
    assert_has(
        &cli.fails("default", &["jobs", "validate", &bad]).await,
        &["actions[0]', 'boot', 'media", "msg:"],
    );
    let rid = cli
        .ok_as("alice", &["jobs", "resubmit", &id])
        .await
        .trim()
        .to_owned();
    assert!(rid.parse::<i64>().is_ok_and(|r| r > id_num), "{rid}");
    cli.ok_as("alice", &["jobs", "cancel", &rid]).await;
    assert_has(&cli.ok(&["jobs", "show", &rid]).await, &["Canceled"]);
    let anon = cli.run("anon", &["jobs", "submit", &job]).await;
    let anon = format!(
        "{}{}",
        String::from_utf8_lossy(&anon.stdout),
        String::from_utf8_lossy(&anon.stderr)
    );
    assert_has(
        &anon,
        &["401", "Authentication with user and token required"],
    );

    // a finished job: logs, wait, results
    let id = finished.to_string();
    let logs = cli.ok(&["jobs", "logs", "--raw", &id]).await;
    assert_has(&logs, &["Linux version 6.1", "Job finished correctly"]);
    let pretty = cli.ok(&["jobs", "logs", "--no-follow", &id]).await;
    assert_has(&pretty, &["Linux version 6.1"]);
    cli.ok(&["jobs", "wait", &id]).await;
    let results = cli.ok(&["results", &id]).await;
    assert_has(&results, &["lava", "job", "pass", "0_smoke", "ls", "fail"]);
    let suite = cli.ok(&["results", &id, "0_smoke"]).await;
    assert_has(&suite, &["ls", "fail"]);
    assert_has(
        &cli.ok(&["jobs", "list", "--state", "FINISHED"]).await,
        &[&id],
    );
}
