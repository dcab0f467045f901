//! Integration tests: test definitions from git and url archives, run by the real scheduler
//! and dispatcher on the virtual lab's QEMU x86 board (busybox), against real git servers
//! this test starts: Debian's `git daemon` (git://), `git http-backend` behind a small
//! Python HTTP server (smart HTTP, `testdef/git_http.py`), and file://.
//!
//! The repository has the layout of Linaro's test-definitions (`automated/lib/sh-test-lib`,
//! `automated/utils/send-to-lava.sh`, a test writing `output/result.txt` with a measurement
//! and its units), with two commits: `master` (first) and `stable` (second, one case more).

use std::path::{Path, PathBuf};

use lavabox::model::{DeviceHealth, ErrorType, JobHealth, JobId, TestResult};
use lavabox::store::{NewDevice, NewDeviceType, TestCase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::server::{Options, Server};
use crate::common::uboot_dict;
use crate::common::{ensure_assets, repo, submit_as};

const QEMU_DICT: &str = "{% extends 'qemu.jinja2' %}\n{% set no_kvm = True %}\n";

const SH_TEST_LIB: &str = r#"# Shell helpers in the form of Linaro's test-definitions sh-test-lib.
info_msg() { echo "INFO: $*"; }
error_msg() { echo "ERROR: $*" >&2; exit 1; }
create_out_dir() { [ -z "$1" ] && error_msg "Usage: create_out_dir output_dir"; mkdir -p "$1"; }
report_pass() { echo "$1 pass" | tee -a "${RESULT_FILE}"; }
report_fail() { echo "$1 fail" | tee -a "${RESULT_FILE}"; }
report_skip() { echo "$1 skip" | tee -a "${RESULT_FILE}"; }
check_return() {
    exit_code="$?"
    if [ "${exit_code}" -ne 0 ]; then report_fail "$1"; else report_pass "$1"; fi
}
add_metric() {
    echo "$1 $2 $3 $4" | tee -a "${RESULT_FILE}"
}
"#;

const SEND_TO_LAVA: &str = r#"#!/bin/sh
# Reports each line of a result file as Linaro's send-to-lava.sh does.
RESULT_FILE="$1"
command -v lava-test-case > /dev/null 2>&1
lava_test_case="$?"
if [ -f "${RESULT_FILE}" ]; then
    while read -r line; do
        if echo "${line}" | grep -Eiq "^[^ ]+ +(pass|fail|skip)$"; then
            test="$(echo "${line}" | awk '{print $1}')"
            result="$(echo "${line}" | awk '{print $2}')"
            if [ "${lava_test_case}" -eq 0 ]; then
                lava-test-case "${test}" --result "${result}"
            else
                echo "<TEST_CASE_ID=${test} RESULT=${result}>"
            fi
        elif echo "${line}" | grep -Eiq "^[^ ]+ +(pass|fail|skip) +[0-9.E-]+ +[^ ]+$"; then
            test="$(echo "${line}" | awk '{print $1}')"
            result="$(echo "${line}" | awk '{print $2}')"
            measurement="$(echo "${line}" | awk '{print $3}')"
            units="$(echo "${line}" | awk '{print $4}')"
            if [ "${lava_test_case}" -eq 0 ]; then
                lava-test-case "${test}" --result "${result}" --measurement "${measurement}" --units "${units}"
            else
                echo "<TEST_CASE_ID=${test} RESULT=${result} MEASUREMENT=${measurement} UNITS=${units}>"
            fi
        fi
    done < "${RESULT_FILE}"
else
    echo "WARNING: result file is missing!"
fi
"#;

fn smoke_sh(extra: &str) -> String {
    format!(
        r#"#!/bin/sh
. ../../lib/sh-test-lib
OUTPUT="$(pwd)/output"
RESULT_FILE="${{OUTPUT}}/result.txt"
export RESULT_FILE
TESTS="pwd uname"
while getopts "t:s:" o; do
    case "$o" in
        t) TESTS="${{OPTARG}}" ;;
        s) SKIP_INSTALL="${{OPTARG}}" ;;
        *) error_msg "usage: $0 [-t TESTS]" ;;
    esac
done
create_out_dir "${{OUTPUT}}"
for t in ${{TESTS}}; do
    case "$t" in
        pwd) pwd; check_return pwd ;;
        uname) uname -a; check_return uname ;;
        false) false; check_return false ;;
        installed) test -f ../../../installed-by-install-sh; check_return installed ;;
    esac
done
{extra}add_metric throughput pass 12.5 MB/s
"#
    )
}

const SMOKE_YAML: &str = r#"metadata:
  format: Lava-Test Test Definition 1.0
  name: smoke-tests-basic
  description: "Run basic smoke tests."
  maintainer: [lavabox@example.org]
  os: [debian, openembedded]
  scope: [functional]
  devices: [qemu]
params:
  TESTS: "pwd uname"
  SKIP_INSTALL: "false"
install:
  steps:
  - echo "$TESTS" > installed-by-install-sh
run:
  steps:
  - cd ./automated/linux/smoke/
  - ./smoke.sh -s "${SKIP_INSTALL}" -t "${TESTS}"
  - ../../utils/send-to-lava.sh ./output/result.txt
  - 'echo "parsed-case: PASSED"'
parse:
  pattern: '^(?P<test_case_id>parsed-[a-z]+):\s+(?P<result>PASSED|FAILED)$'
  fixupdict: {PASSED: pass, FAILED: fail}
expected: [pwd, uname]
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "lavabox")
        .env("GIT_AUTHOR_EMAIL", "lavabox@example.org")
        .env("GIT_COMMITTER_NAME", "lavabox")
        .env("GIT_COMMITTER_EMAIL", "lavabox@example.org")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write(root: &Path, path: &str, text: &str, exec: bool) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    let mode = if exec { 0o755 } else { 0o644 };
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The served repositories: `<root>/test-definitions.git` (bare), with the commits of
/// `master` (first) and `stable` (second).
pub(crate) struct Repo {
    pub(crate) root: PathBuf,
    first: String,
    second: String,
}

pub(crate) fn make_repo(base: &Path) -> Repo {
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "master"]);
    write(&work, "automated/lib/sh-test-lib", SH_TEST_LIB, false);
    write(&work, "automated/utils/send-to-lava.sh", SEND_TO_LAVA, true);
    write(&work, "automated/linux/smoke/smoke.sh", &smoke_sh(""), true);
    write(&work, "automated/linux/smoke/smoke.yaml", SMOKE_YAML, false);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "smoke"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["checkout", "-q", "-b", "stable"]);
    write(
        &work,
        "automated/linux/smoke/smoke.sh",
        &smoke_sh("report_pass v2\n"),
        true,
    );
    git(&work, &["commit", "-q", "-am", "v2"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["checkout", "-q", "master"]);
    let root = base.join("srv");
    std::fs::create_dir_all(&root).unwrap();
    let bare = root.join("test-definitions.git");
    git(
        base,
        &[
            "clone",
            "-q",
            "--bare",
            &work.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    Repo {
        root,
        first,
        second,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's `git daemon` over `root`; returns once it says it is ready.
pub(crate) async fn git_daemon(root: &Path) -> (Child, u16) {
    let port = free_port();
    let mut child = Command::new("/usr/lib/git-core/git-daemon")
        .args([
            "--verbose",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", root.display()),
        ])
        .arg(root)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("git daemon starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Ready to rumble") {
                return;
            }
        }
        panic!("git daemon exited");
    })
    .await
    .expect("git daemon ready");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// The smart HTTP server (`git_http.py`); returns once it listens.
async fn git_http(root: &Path, log: &Path) -> (Child, u16) {
    let script = repo().join("tests/it/testdef/git_http.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(root)
        .arg(log)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("git http server ready")
        .unwrap()
        .expect("a port line")
        .parse()
        .expect("a port");
    (child, port)
}

/// Object-transferring requests the HTTP server answered so far.
fn http_fetches(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with("fetch=1"))
        .count()
}

fn definition(from_repo: &str, name: &str, extra: &str) -> String {
    format!(
        "    - from: git\n      repository: '{from_repo}'\n      path: automated/linux/smoke/smoke.yaml\n      name: {name}\n{extra}"
    )
}

fn qemu_job(name: &str, definitions: &str) -> String {
    crate::common::qemu_job(
        name,
        &format!("- test:\n    timeout: {{minutes: 5}}\n    definitions:\n{definitions}"),
    )
}

async fn cases(srv: &Server, id: JobId) -> Vec<TestCase> {
    srv.app
        .store()
        .call(move |s| s.test_cases(id, None, 0, None))
        .await
        .expect("reading test cases")
}

/// The (case, result) pairs of suite `suite`, in order.
fn suite(cases: &[TestCase], suite: &str) -> Vec<(String, TestResult)> {
    cases
        .iter()
        .filter(|c| c.suite == suite)
        .map(|c| (c.name.clone(), c.result))
        .collect()
}

fn pairs(items: &[(&str, TestResult)]) -> Vec<(String, TestResult)> {
    items.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect()
}

fn lava_case<'a>(cases: &'a [TestCase], name: &str) -> Vec<&'a TestCase> {
    cases
        .iter()
        .filter(|c| c.suite == "lava" && c.name == name)
        .collect()
}

fn log_of(srv: &Server, id: JobId) -> String {
    std::fs::read_to_string(srv.app.config().job_log_path(id)).unwrap_or_default()
}

async fn finished(srv: &mut Server, id: JobId, health: JobHealth) -> lavabox::store::Job {
    srv.finished(id, health).await;
    srv.app
        .store()
        .call(move |s| s.job(id))
        .await
        .expect("reading the job")
        .expect("the job exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_and_url_definitions_run_on_the_qemu_board() {
    lab_or_skip!();
    ensure_assets().await;
    let base = tempfile::tempdir().unwrap();
    let repo = make_repo(base.path());
    let (_daemon, git_port) = git_daemon(&repo.root).await;
    let http_log = base.path().join("http.log");
    let (_http, http_port) = git_http(&repo.root, &http_log).await;
    let git_url = format!("git://127.0.0.1:{git_port}/test-definitions.git");
    let http_url = format!("http://127.0.0.1:{http_port}/test-definitions.git");
    let file_url = format!(
        "file://{}",
        repo.root.join("test-definitions.git").display()
    );

    let options = Options::lab(&[]).seed(move |s| {
        let mut dt = NewDeviceType::named("qemu");
        dt.disable_health_check = true;
        s.create_device_type(&dt)?;
        for host in ["qemu-01", "qemu-02"] {
            let mut dev = NewDevice::new(host, "qemu");
            dev.dictionary = Some(QEMU_DICT.to_owned());
            dev.health = DeviceHealth::Good;
            s.create_device(&dev)?;
        }
        Ok(())
    });
    let mut srv = Server::start(options).await;

    // One job, three transports: git:// at the default branch, smart HTTP at `stable`, and
    // file:// pinned at the first commit with `history: false` and a parameter override.
    let defs = [
        definition(&git_url, "smoke-git", ""),
        definition(&http_url, "smoke-http", "      branch: stable\n"),
        definition(
            &file_url,
            "smoke-file",
            &format!(
                "      revision: {}\n      history: false\n      parameters:\n        TESTS: pwd false installed\n",
                repo.first
            ),
        ),
    ]
    .concat();
    let first = submit_as(&srv.app, "alice", &qemu_job("testdef-git", &defs)).await;
    finished(&mut srv, first, JobHealth::Complete).await;
    let c = cases(&srv, first).await;
    use TestResult::{Fail, Pass};
    assert_eq!(
        suite(&c, "0_smoke-git"),
        pairs(&[
            ("pwd", Pass),
            ("uname", Pass),
            ("throughput", Pass),
            ("parsed-case", Pass)
        ]),
        "{}",
        log_of(&srv, first)
    );
    assert_eq!(
        suite(&c, "1_smoke-http"),
        pairs(&[
            ("pwd", Pass),
            ("uname", Pass),
            ("v2", Pass),
            ("throughput", Pass),
            ("parsed-case", Pass)
        ])
    );
    assert_eq!(
        suite(&c, "2_smoke-file"),
        pairs(&[
            ("pwd", Pass),
            ("false", Fail),
            ("installed", Pass),
            ("throughput", Pass),
            ("parsed-case", Pass),
            // `expected:` names it and this run (TESTS without uname) did not report it.
            ("uname", Fail)
        ])
    );
    for s in ["0_smoke-git", "1_smoke-http", "2_smoke-file"] {
        let t = c
            .iter()
            .find(|x| x.suite == s && x.name == "throughput")
            .unwrap();
        assert_eq!((t.measurement, t.units.as_str()), (Some(12.5), "MB/s"));
    }
    // git-repo-action carries the commit, path and repository, one per definition.
    let repos = lava_case(&c, "git-repo-action");
    assert_eq!(repos.len(), 3, "{c:?}");
    for (case, (url, commit)) in repos.iter().zip([
        (&git_url, &repo.first),
        (&http_url, &repo.second),
        (&file_url, &repo.first),
    ]) {
        // LAVA's metadata rule: the result dict, its `extra` written to a file it names.
        let meta = with_extra(case.metadata.as_deref().unwrap_or_default());
        assert!(meta.contains(&format!("commit: {commit}")), "{meta}");
        assert!(meta.contains(url.as_str()), "{meta}");
        assert!(
            meta.contains("path: automated/linux/smoke/smoke.yaml"),
            "{meta}"
        );
    }
    for name in [
        "test-overlay",
        "test-install-overlay",
        "test-runscript-overlay",
    ] {
        assert_eq!(lava_case(&c, name).len(), 3, "{name}: {c:?}");
    }
    // The test-run cases of the lava suite carry the commit too.
    let run = lava_case(&c, "2_smoke-file");
    assert!(
        run.first()
            .and_then(|r| r.metadata.as_deref())
            .is_some_and(|m| m.contains(&repo.first)),
        "{run:?}"
    );
    let log = log_of(&srv, first);
    assert_eq!(log.matches("mirror created").count(), 3, "{log}");

    // A second job from the same HTTP repository reuses its mirror: one fetch with nothing
    // to transfer, no second clone (the server saw no second object request).
    let clones = http_fetches(&http_log);
    assert!(clones >= 1, "the first job cloned over HTTP");
    let archive = base.path().join("defs.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(base.path().join("work"))
        .args(["--exclude=.git", "-czf"])
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let url_def = format!(
        "    - from: url\n      repository: 'file://{}'\n      compression: gz\n      path: automated/linux/smoke/smoke.yaml\n      name: smoke-url\n      skip_install: [all]\n      parameters: {{TESTS: uname}}\n",
        archive.display()
    );
    let defs = [
        definition(&http_url, "smoke-http", "      branch: stable\n"),
        url_def,
    ]
    .concat();
    let second = submit_as(&srv.app, "alice", &qemu_job("testdef-again", &defs)).await;
    finished(&mut srv, second, JobHealth::Complete).await;
    assert_eq!(http_fetches(&http_log), clones, "no second clone over HTTP");
    let log = log_of(&srv, second);
    assert!(log.contains("mirror refreshed"), "{log}");
    assert!(!log.contains("mirror created"), "{log}");
    let c = cases(&srv, second).await;
    assert_eq!(suite(&c, "0_smoke-http").len(), 5, "{c:?}");
    assert_eq!(
        suite(&c, "1_smoke-url"),
        pairs(&[
            ("uname", Pass),
            ("throughput", Pass),
            ("parsed-case", Pass),
            ("pwd", Fail)
        ]),
        "{log}"
    );

    // A wrong `path` is LAVA's Job error; the device stays Good.
    let wrong = definition(&git_url, "wrong", "").replace("smoke/smoke.yaml", "smoke/nope.yaml");
    let id = submit_as(&srv.app, "alice", &qemu_job("testdef-wrong-path", &wrong)).await;
    let job = finished(&mut srv, id, JobHealth::Incomplete).await;
    assert_eq!(job.error_type, Some(ErrorType::Job), "{job:?}");
    assert_eq!(
        job.failure_comment.as_deref(),
        Some(
            "Unable to open test definition 'automated/linux/smoke/nope.yaml': [Errno 2] No such file or directory"
        )
    );

    // An unreachable repository is LAVA's InfrastructureError; the device's health becomes
    // Unknown, as LAVA sets it after an infrastructure error of a user job.
    let gone = format!("git://127.0.0.1:{}/nothing.git", free_port());
    let id = submit_as(
        &srv.app,
        "alice",
        &qemu_job("testdef-unreachable", &definition(&gone, "gone", "")),
    )
    .await;
    let job = finished(&mut srv, id, JobHealth::Incomplete).await;
    assert_eq!(job.error_type, Some(ErrorType::Infrastructure), "{job:?}");
    assert_eq!(
        job.failure_comment.as_deref(),
        Some(format!("Unable to fetch git repository '{gone}'").as_str())
    );
    let host = job.actual_device.clone().expect("ran on a device");
    let device = srv
        .app
        .store()
        .call(move |s| s.device(&host))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device.health, DeviceHealth::Unknown);
    srv.stop().await;
}

const UBOOT_EXAMPLE: &str = r#"device_type: beaglebone-black
job_name: bbb ramdisk smoke
visibility: public
timeouts:
  job: {minutes: 20}
  action: {minutes: 5}
  connection: {minutes: 2}
actions:
- deploy:
    to: tftp
    timeout: {minutes: 4}
    kernel: {url: "https://files.example.org/bbb/zImage", type: zimage}
    ramdisk: {url: "https://files.example.org/bbb/rootfs.cpio.gz", compression: gz}
    dtb: {url: "https://files.example.org/bbb/am335x-boneblack.dtb"}
    os: oe
- boot:
    method: u-boot
    commands: ramdisk
    prompts: ["/ #"]
    timeout: {minutes: 3}
- test:
    timeout: {minutes: 5}
    definitions:
    - from: git
      repository: https://git.example.org/tests.git
      path: smoke/smoke.yaml
      name: smoke-tests
"#;

const QEMU_EXAMPLE: &str = r#"device_type: qemu
job_name: qemu amd64 smoke
visibility: personal
context: {arch: amd64, memory: 1024}
timeouts:
  job: {minutes: 15}
  action: {minutes: 5}
actions:
- deploy:
    to: tmpfs
    images:
      rootfs:
        url: "https://files.example.org/qemu/debian-amd64.qcow2.xz"
        image_arg: "-drive format=qcow2,file={rootfs}"
        format: qcow2
        compression: xz
    os: debian
- boot:
    method: qemu
    media: tmpfs
    prompts: ["root@debian:~#"]
    auto_login: {login_prompt: "login:", username: root}
- test:
    definitions:
    - from: git
      repository: https://git.example.org/tests.git
      path: smoke/smoke.yaml
      name: smoke-tests
"#;

const FASTBOOT_EXAMPLE: &str = r#"device_type: hi6220-hikey-r2
job_name: hikey fastboot
visibility: public
timeouts:
  job: {minutes: 30}
actions:
- deploy:
    to: fastboot
    images:
      boot: {url: "https://files.example.org/boot.img"}
- boot:
    method: fastboot
    prompts: ["root@"]
"#;

/// Runs the real `lavabox` binary over `data`; (exit success, stdout).
fn lavabox(data: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("lavabox runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `lavabox describe` on stored devices of a data directory: the U-Boot and QEMU example jobs
/// print their pipelines, a fastboot job is refused naming its action, with lavabox's
/// templates and with LAVA 2023.01's own (unpacked by `tests/install-lava-reference.sh`).
#[test]
fn describe_prints_pipelines_and_names_what_a_device_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let bbb = file(
        "bbb.jinja2",
        "{% extends 'beaglebone-black.jinja2' %}\n{% set connection_command = 'telnet localhost 7000' %}\n",
    );
    let qemu = file("qemu.jinja2", "{% extends 'qemu.jinja2' %}\n");
    let hikey = file("hikey.jinja2", "{% extends 'hi6220-hikey-r2.jinja2' %}\n");
    let uboot_job = file("uboot.yaml", UBOOT_EXAMPLE);
    let qemu_job = file("qemu.yaml", QEMU_EXAMPLE);
    let fastboot_job = file("fastboot.yaml", FASTBOOT_EXAMPLE);
    for (ty, host, dict) in [
        ("beaglebone-black", "bbb-01", &bbb),
        ("qemu", "qemu-01", &qemu),
    ] {
        assert!(lavabox(&data, &["device-type", "add", ty]).0);
        assert!(
            lavabox(
                &data,
                &["device", "add", host, "--type", ty, "--dictionary", dict]
            )
            .0
        );
    }
    let lava_templates = "/opt/lava-reference/usr/share/lava-server/device-types";
    let mut template_sets = vec![Vec::new()];
    if Path::new(lava_templates).is_dir() {
        template_sets.push(vec!["--templates", lava_templates]);
    } else {
        assert!(
            !crate::common::lab_enabled(),
            "LAVA's templates are missing from {lava_templates} (run tests/install-lava-reference.sh)"
        );
        eprintln!("LAVA's own templates: skipped, {lava_templates} is missing");
    }
    for extra in template_sets {
        let run = |job: &str, host: &str| {
            let mut args = vec!["describe", job, "--device", host];
            args.extend(extra.iter().copied());
            lavabox(&data, &args)
        };
        let (ok, out) = run(&uboot_job, "bbb-01");
        assert!(ok, "{out}");
        for line in [
            "job timeout: 1200s",
            "1: tftp-deploy (timeout 240s, connection 120s)",
            "      1.4.2.1: test-definition (timeout 240s, connection 120s)",
            "        1.4.2.1.1: git-repo-action (timeout 240s, connection 120s)",
            "2: uboot-action (timeout 180s, connection 120s)",
            "    2.4.3: bootloader-commands (timeout 180s, connection 120s)",
            "  3.1: lava-test-shell (timeout 300s, connection 120s)",
            "4: finalize",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line:?} missing ({extra:?}):\n{out}"
            );
        }
        let (ok, out) = run(&qemu_job, "qemu-01");
        assert!(ok, "{out}");
        for line in [
            "1: deployimages (timeout 300s, connection 30s)",
            "      1.2.1.1: git-repo-action (timeout 300s, connection 30s)",
            "2: boot-image-retry (timeout 300s, connection 30s)",
            "    2.1.2: auto-login-action (timeout 300s, connection 120s)",
            "  3.1: lava-test-shell (timeout 300s, connection 10s)",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line:?} missing ({extra:?}):\n{out}"
            );
        }
        if !extra.is_empty() {
            // Only LAVA ships a hikey template, so the device is a dictionary file (adding it
            // to the data directory would render it with lavabox's templates).
            let mut args = vec!["describe", &fastboot_job, "--dictionary", &hikey];
            args.extend(extra.iter().copied());
            let (ok, out) = lavabox(&data, &args);
            assert!(!ok, "{out}");
            assert_eq!(
                out.trim_end(),
                format!(
                    "{fastboot_job}: cannot run on {hikey}: actions[0] (deploy to: fastboot): \
                     Job error: deploy to fastboot is not supported on this appliance"
                )
            );
        }
        // A job for another device type names the action the device lacks.
        let (ok, out) = run(&qemu_job, "bbb-01");
        assert!(!ok);
        assert!(
            out.contains("actions[1] (boot method: qemu): Job error: boot method qemu is not supported by this device type"),
            "{out}"
        );
    }
}

/// An interactive test at U-Boot's `=>` prompt (after `boot: method: bootloader`), then a
/// monitors test over U-Boot's own banner after a reset, on the virtual U-Boot ARM board.
/// A case's stored metadata followed by the `extra` file it names (when it names one).
fn with_extra(meta: &str) -> String {
    let dict: serde_json::Value = serde_norway::from_str(meta).unwrap_or_default();
    let extra = dict["extra"]
        .as_str()
        .map(|path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap_or_default();
    format!("{meta}\n{extra}")
}

const UBOOT_INTERACTIVE: &str = r#"job_name: uboot interactive and monitors
device_type: qemu-uboot-arm
visibility: public
timeouts:
  job: {minutes: 8}
  action: {minutes: 3}
  connection: {minutes: 1}
actions:
- boot:
    method: bootloader
    bootloader: u-boot
    commands: []
    prompts: ['=>']
- test:
    timeout: {minutes: 2}
    interactive:
    - name: uboot-tests
      prompts: ['=> ']
      echo: discard
      script:
      - command: version
        name: version
        successes:
        - message: 'U-Boot 20\d\d'
      - command: 'setenv lavabox_job {JOB_ID}'
      - command: printenv lavabox_job
        name: printenv
        successes:
        - message: 'lavabox_job=(?P<job>\d+)'
      - command: 'echo job-{job}-seen'
        name: captured
        successes:
        - message: 'job-\d+-seen'
      - command: nosuchcommand
        name: unknown-command
        failures:
        - message: 'Unknown command'
- boot:
    method: minimal
    reset: true
- test:
    timeout: {minutes: 2}
    monitors:
    - name: U-Boot-Consoles
      start: 'U-Boot 20\d\d'
      end: 'Hit any key to stop autoboot'
      pattern: '(?P<test_case_id>In|Out|Err):\s+(?P<result>pl011)@'
      fixupdict: {pl011: pass}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_and_monitors_tests_on_the_uboot_board() {
    lab_or_skip!();
    let run = tempfile::tempdir().unwrap();
    let dict = uboot_dict(run.path());
    let options = Options::lab(&[]).seed(move |s| {
        let mut dt = NewDeviceType::named("qemu-uboot-arm");
        dt.disable_health_check = true;
        s.create_device_type(&dt)?;
        let mut dev = NewDevice::new("uboot-arm-01", "qemu-uboot-arm");
        dev.dictionary = Some(dict);
        dev.health = DeviceHealth::Good;
        s.create_device(&dev)?;
        Ok(())
    });
    let mut srv = Server::start(options).await;
    let id = submit_as(&srv.app, "alice", UBOOT_INTERACTIVE).await;
    finished(&mut srv, id, JobHealth::Complete).await;
    let c = cases(&srv, id).await;
    use TestResult::{Fail, Pass};
    let log = log_of(&srv, id);
    assert_eq!(
        suite(&c, "0_uboot-tests"),
        pairs(&[
            ("version", Pass),
            ("printenv", Pass),
            ("captured", Pass),
            ("unknown-command", Fail)
        ]),
        "{log}"
    );
    assert!(
        log.contains(&format!("Sending 'echo job-{}-seen'", id.0)),
        "{log}"
    );
    assert_eq!(lava_case(&c, "0_uboot-tests").len(), 1, "{c:?}");
    assert_eq!(lava_case(&c, "0_uboot-tests")[0].result, Pass);
    assert_eq!(
        suite(&c, "u-boot-consoles"),
        pairs(&[("in", Pass), ("out", Pass), ("err", Pass)]),
        "{log}"
    );
    srv.stop().await;
}
