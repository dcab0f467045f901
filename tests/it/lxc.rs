//! Integration tests of the `lava-lxc` protocol with Debian's real LXC (privileged
//! containers, the `debian` template from lxc-templates over the Debian mirror apt uses,
//! `lxc.net.0.type = empty`): jobs submitted through the real path, run by the real
//! scheduler and dispatcher, their results and the containers left afterwards checked.
//!
//! The first create on a fresh machine debootstraps into lxc's own cache
//! (`/var/cache/lxc/debian`, ≈100 s); every later create copies from it (seconds), so one
//! cold create serves the whole suite.

use std::path::Path;

use lavabox::model::{DeviceHealth, JobHealth, JobId, TestResult};
use lavabox::store::{NewDevice, NewDeviceType, TestCase};

use crate::common::server::{Options, Server};
use crate::common::submit_as;

const LXC_PATH: &str = "/var/lib/lxc";

/// Whether the container `name` exists (its directory under lxc's path).
fn exists(name: &str) -> bool {
    Path::new(LXC_PATH).join(name).exists()
}

fn lxc_job(name: &str, container: &str, extra_protocol: &str, tests: &str) -> String {
    format!(
        r#"job_name: {name}
device_type: lxc
visibility: public
priority: medium
timeouts:
  job: {{minutes: 15}}
  action: {{minutes: 10}}
protocols:
  lava-lxc:
    name: {container}
    template: debian
    distribution: debian
    release: bookworm
    mirror: http://deb.debian.org/debian
{extra_protocol}
actions:
- deploy:
    namespace: probe
    to: lxc
    timeout: {{minutes: 8}}
- boot:
    namespace: probe
    method: lxc
    prompts: ['root@(.*):/#', 'root@(.*):~#']
    timeout: {{minutes: 2}}
{tests}"#
    )
}

fn seed_lxc(options: Options) -> Options {
    options.seed(|s| {
        let mut dt = NewDeviceType::named("lxc");
        dt.disable_health_check = true;
        s.create_device_type(&dt)?;
        let mut dev = NewDevice::new("lxc-01", "lxc");
        dev.dictionary = Some("{% extends 'lxc.jinja2' %}\n".to_owned());
        dev.health = DeviceHealth::Good;
        s.create_device(&dev)?;
        Ok(())
    })
}

async fn cases(srv: &Server, id: JobId) -> Vec<TestCase> {
    srv.app
        .store()
        .call(move |s| s.test_cases(id, None, 0, None))
        .await
        .expect("reading test cases")
}

fn log_of(srv: &Server, id: JobId) -> String {
    std::fs::read_to_string(srv.app.config().job_log_path(id)).unwrap_or_default()
}

fn result_of(cases: &[TestCase], suite: &str, name: &str) -> Option<TestResult> {
    cases
        .iter()
        .find(|c| c.suite == suite && c.name == name)
        .map(|c| c.result)
}

const INLINE: &str = r#"    - from: inline
      name: in-container
      path: inline/in-container.yaml
      repository:
        metadata: {format: Lava-Test Test Definition 1.0, name: in-container}
        run:
          steps:
          - lava-test-case debian-release --shell grep -q bookworm /etc/os-release
          - lava-test-case hostname --shell 'hostname | grep -q ^lxc-'
          - lava-test-case persisted --shell test -f /root/persist-marker
          - touch /root/persist-marker
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_git_definitions_run_in_a_debian_container_that_is_gone_after() {
    lab_or_skip!();
    let base = tempfile::tempdir().unwrap();
    let repo = crate::testdef::make_repo(base.path());
    let (_daemon, git_port) = crate::testdef::git_daemon(&repo.root).await;
    let git_url = format!("git://127.0.0.1:{git_port}/test-definitions.git");
    let mut srv = Server::start(seed_lxc(Options::lab(&[]))).await;
    let tests = format!(
        "- test:\n    namespace: probe\n    timeout: {{minutes: 5}}\n    definitions:\n{}    - from: git\n      repository: '{git_url}'\n      path: automated/linux/smoke/smoke.yaml\n      name: smoke-git\n",
        INLINE
    );
    // The container's name is `<name>-<job id>`; the hostname test names it after the job.
    let text = lxc_job("lxc-inline-git", "lxc-it", "", &tests);
    let id = submit_as(&srv.app, "alice", &text).await;
    srv.finished(id, JobHealth::Complete).await;
    let c = cases(&srv, id).await;
    let log = log_of(&srv, id);
    assert_eq!(
        result_of(&c, "0_in-container", "debian-release"),
        Some(TestResult::Pass),
        "{log}"
    );
    // The test ran inside the container: a fresh one has no marker.
    assert_eq!(
        result_of(&c, "0_in-container", "persisted"),
        Some(TestResult::Fail)
    );
    assert_eq!(result_of(&c, "1_smoke-git", "pwd"), Some(TestResult::Pass));
    assert_eq!(
        result_of(&c, "1_smoke-git", "uname"),
        Some(TestResult::Pass)
    );
    assert!(log.contains(&format!("lxc-destroy: lxc-destroy -f -n lxc-it-{}", id.0)));
    assert!(
        !exists(&format!("lxc-it-{}", id.0)),
        "the container is gone"
    );
    let markers = srv.app.config().data_dir.join("lxc");
    assert_eq!(std::fs::read_dir(&markers).unwrap().count(), 0);
}
