//! The dispatcher against a scripted board (FakeConsole) and recorded power commands.

use std::sync::Arc;

use super::*;
use crate::devicetype::Templates;
use crate::hw::PowerState;
use crate::hw::fake::{FakeBoards, FakeConsole, FakePower, FakeRunner};
use crate::store::{NewDevice, NewDeviceType, NewJob, NewUser, Store};

/// A user, device type, device and a job scheduled on the device.
pub(crate) fn scheduled_job(
    s: &mut Store,
    definition: &str,
    hostname: &str,
    device_type: &str,
    dictionary: &str,
) -> Result<(Job, Device), crate::store::Error> {
    if s.user("tester")?.is_none() {
        s.create_user(&NewUser::named("tester"))?;
    }
    if s.device_type(device_type)?.is_none() {
        s.create_device_type(&NewDeviceType::named(device_type))?;
    }
    let mut dev = NewDevice::new(hostname, device_type);
    dev.dictionary = Some(dictionary.to_owned());
    dev.health = crate::model::DeviceHealth::Good;
    let device = s.create_device(&dev)?;
    let mut new = NewJob::new("tester", definition);
    new.requested_device_type = Some(device_type.to_owned());
    let job = s.insert_job(&new)?;
    s.schedule_job(job.id, hostname)?;
    let job = s.job(job.id)?.ok_or(crate::store::Error::Invalid {
        what: "job",
        reason: "vanished".into(),
    })?;
    Ok((job, device))
}

const DICT: &str = "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set connection_command = 'fake-console' %}\n{% set power_on_command = 'power-on' %}\n{% set power_off_command = 'power-off' %}\n{% set hard_reset_command = 'hard-reset' %}\n";

fn job_text(kernel: &str, ramdisk: &str) -> String {
    format!(
        r#"
job_name: fake
device_type: qemu-uboot-arm
visibility: public
timeouts:
  job: {{minutes: 2}}
  action: {{seconds: 30}}
  connection: {{seconds: 10}}
actions:
- deploy:
    to: tftp
    kernel: {{url: 'file://{kernel}', type: zimage}}
    ramdisk: {{url: 'file://{ramdisk}'}}
- boot:
    method: u-boot
    commands: ramdisk
    prompts: ['root@fake# ']
- test:
    definitions:
    - from: inline
      name: smoke
      path: inline/smoke.yaml
      repository:
        metadata: {{format: Lava-Test Test Definition 1.0, name: smoke}}
        run: {{steps: ['lava-test-case a --result pass']}}
"#
    )
}

/// A U-Boot board that boots and then plays a test run.
fn board(job: i64) -> FakeConsole {
    FakeConsole::new("U-Boot 2023.01\nHit any key to stop autoboot:  3\n")
        .on("^ ?$", "=> ")
        .on("^bootz", "Starting kernel ...\n[0.0] Linux version 6.1\nroot@fake# ")
        .on("^(setenv|tftp)", "=> ")
        .on(
            "lava-test-runner",
            format!(
                "<LAVA_SIGNAL_STARTRUN 0_smoke {job}_3.1_1>\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=b RESULT=fail>\n<LAVA_SIGNAL_ENDRUN 0_smoke {job}_3.1_1>\n<LAVA_TEST_RUNNER EXIT>\nroot@fake# "
            ),
        )
}

struct Setup {
    dir: tempfile::TempDir,
    store: AsyncStore,
    run: JobRun,
    config: DispatcherConfig,
}

async fn setup(text: impl FnOnce(&std::path::Path) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zImage"), b"kernel").unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(
        &mut enc,
        &crate::testshell::cpio::write_newc(&[], &Default::default()).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("ramdisk.cpio.gz"), enc.finish().unwrap()).unwrap();
    let store = Store::open(dir.path().join("db")).unwrap();
    let store = AsyncStore::new(store);
    let definition = text(dir.path());
    let (job, device) = store
        .call(move |s| scheduled_job(s, &definition, "fake-01", "qemu-uboot-arm", DICT))
        .await
        .unwrap();
    let config = DispatcherConfig {
        tftp_root: dir.path().join("tftp"),
        work_dir: dir.path().join("work"),
        mirror_dir: dir.path().join("git-mirrors"),
        server_ip: "127.0.0.1".parse().unwrap(),
    };
    let run = JobRun {
        job,
        device,
        log_path: dir.path().join("job.log"),
        cancel: CancellationToken::new(),
    };
    Setup {
        dir,
        store,
        run,
        config,
    }
}

fn text_for(dir: &std::path::Path) -> String {
    job_text(
        &dir.join("zImage").display().to_string(),
        &dir.join("ramdisk.cpio.gz").display().to_string(),
    )
}

#[tokio::test]
async fn uboot_job_on_a_fake_board() {
    let s = setup(text_for).await;
    let runner = FakeRunner::default();
    let id = s.run.job.id;
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin()).with_boards(
        Arc::new(FakeBoards::new(
            Arc::new(runner.clone()),
            Arc::new(board(id.0)),
        )),
    );
    let end = d.run(s.run.clone()).await;
    let log = std::fs::read_to_string(s.dir.path().join("job.log")).unwrap();
    assert_eq!(end, JobEnd::complete(), "{log}");
    assert_eq!(runner.commands(), ["hard-reset", "power-off"]);
    let cases = s
        .store
        .call(move |st| st.test_cases(id, None, 0, None))
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = cases
        .iter()
        .map(|c| (c.suite.clone(), c.name.clone(), c.result.to_string()))
        .collect();
    for want in [
        ("0_smoke", "a", "pass"),
        ("0_smoke", "b", "fail"),
        ("lava", "job", "pass"),
        ("lava", "validate", "pass"),
        // The dispatcher's own actions that LAVA records: those with result data.
        ("lava", "bootloader-overlay", "pass"),
        ("lava", "pdu-reboot", "pass"),
        ("lava", "power-off", "pass"),
        ("lava", "kernel-messages", "pass"),
        ("lava", "login-action", "pass"),
    ] {
        assert!(
            got.iter()
                .any(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()) == want),
            "{want:?} missing from {got:?}"
        );
    }
    // LAVA records no case for actions without result data, top-level ones included.
    assert!(
        !got.iter()
            .any(|(_, name, _)| name == "tftp-deploy" || name == "uboot-action"),
        "{got:?}"
    );
    let download = cases
        .iter()
        .find(|c| c.suite == "lava" && c.name.ends_with("-download"))
        .unwrap_or_else(|| panic!("no download case in {got:?}"));
    let meta: serde_json::Value =
        serde_norway::from_str(download.metadata.as_deref().unwrap_or_default()).unwrap();
    assert_eq!(meta["level"], "1.1.1", "{meta}");
    // LAVA's rule: `extra` is the path of the job's `metadata/` file holding it.
    let path = meta["extra"].as_str().expect("extra is a path");
    assert!(
        path.ends_with(&format!("metadata/lava-{}-1.1.1.yaml", download.name)),
        "{path}"
    );
    let extra: serde_json::Value =
        serde_norway::from_str(&extra_of(download.metadata.as_deref().unwrap()).unwrap()).unwrap();
    assert_eq!(extra["label"], "kernel", "{extra}");
    assert_eq!(extra["size"], 6, "{extra}");
    assert_eq!(download.units, "seconds");
    assert!(log.contains("tftp 0x40400000"), "{log}");
    assert!(!s.config.tftp_root.join(id.to_string()).exists());
}

#[tokio::test]
async fn cancel_powers_off_and_ends_canceled() {
    let s = setup(text_for).await;
    let runner = FakeRunner::default();
    // A board that never shows the autoboot prompt.
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin()).with_boards(
        Arc::new(FakeBoards::new(
            Arc::new(runner.clone()),
            Arc::new(FakeConsole::new("silence\n")),
        )),
    );
    let cancel = s.run.cancel.clone();
    let task = tokio::spawn({
        let d = d.clone();
        let run = s.run.clone();
        async move { d.run(run).await }
    });
    // Cancel once the board was reset (the job is waiting at the console).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !runner.commands().iter().any(|c| c == "hard-reset") {
        assert!(std::time::Instant::now() < deadline, "never reset");
        tokio::task::yield_now().await;
    }
    cancel.cancel();
    let end = task.await.unwrap();
    assert_eq!(end.health, crate::model::JobHealth::Canceled);
    assert_eq!(
        runner.commands().last().map(String::as_str),
        Some("power-off")
    );
}

#[tokio::test]
async fn unsupported_deploy_is_incomplete_job_error() {
    let s = setup(|dir| text_for(dir).replace("to: tftp", "to: tmpfs\n    images: {}")).await;
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin())
        .with_boards(Arc::new(FakeBoards::default()));
    let end = d.run(s.run.clone()).await;
    assert_eq!(end.health, crate::model::JobHealth::Incomplete);
    assert!(matches!(end.error_type, Some(ErrorType::Job)), "{end:?}");
}

/// Runs the U-Boot job on `console`; returns how it ended, its `lava` cases (name, result,
/// metadata) and its log.
async fn run_on(
    console: impl FnOnce(i64) -> FakeConsole,
) -> (JobEnd, Vec<(String, String, String)>, String) {
    let s = setup(text_for).await;
    let id = s.run.job.id;
    let console = console(id.0);
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin()).with_boards(
        Arc::new(FakeBoards::new(
            Arc::new(FakeRunner::default()),
            Arc::new(console),
        )),
    );
    let end = d.run(s.run.clone()).await;
    let log = std::fs::read_to_string(s.dir.path().join("job.log")).unwrap();
    let cases = s
        .store
        .call(move |st| st.test_cases(id, None, 0, None))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.suite == "lava")
        .map(|c| {
            let meta = c.metadata.unwrap_or_default();
            let extra = extra_of(&meta).unwrap_or_default();
            (c.name, c.result.to_string(), format!("{meta}{extra}"))
        })
        .collect();
    (end, cases, log)
}

/// The `extra` a case's metadata names (LAVA's rule: a path to the file that holds it).
fn extra_of(meta: &str) -> Option<String> {
    let meta: serde_json::Value = serde_norway::from_str(meta).ok()?;
    std::fs::read_to_string(meta["extra"].as_str()?).ok()
}

fn board_booting_into(kernel_output: &str, job: i64) -> FakeConsole {
    FakeConsole::new("U-Boot 2023.01\nHit any key to stop autoboot:  3\n")
        .on("^ ?$", "=> ")
        .on(
            "^bootz",
            format!("Starting kernel ...\n[0.0] Linux version 6.1\n{kernel_output}"),
        )
        .on("^(setenv|tftp)", "=> ")
        .on(
            "lava-test-runner",
            format!(
                "<LAVA_SIGNAL_STARTRUN 0_smoke {job}_3.1_1>\n<LAVA_SIGNAL_ENDRUN 0_smoke {job}_3.1_1>\n<LAVA_TEST_RUNNER EXIT>\nroot@fake# "
            ),
        )
}

#[tokio::test]
async fn kernel_warnings_on_the_way_to_the_prompt_are_recorded_and_the_job_goes_on() {
    let warning = "[1.0] ------------[ cut here ]------------\n[1.0] WARNING: CPU: 0 PID: 1 at x.c:1\n\
                   [1.1] ---[ end trace 0000000000000000 ]---\nroot@fake# ";
    let (end, cases, log) = run_on(|id| board_booting_into(warning, id)).await;
    assert_eq!(end, JobEnd::complete(), "{log}");
    let (_, result, meta) = cases
        .iter()
        .find(|(name, ..)| name == "kernel-messages")
        .unwrap_or_else(|| panic!("{cases:?}"));
    assert_eq!(result, "pass");
    assert!(meta.contains("kind: warning"), "{meta}");
    assert!(meta.contains("end trace 0000000000000000"), "{meta}");
    let (_, _, login) = cases
        .iter()
        .find(|(name, ..)| name == "login-action")
        .unwrap_or_else(|| panic!("{cases:?}"));
    assert!(login.contains("fail:"), "warnings are listed: {login}");
    assert!(log.contains("login-action: kernel 'warning'"), "{log}");
}

#[tokio::test]
async fn a_kernel_panic_fails_the_job_at_once_with_its_text() {
    let panic = "[1.0] Kernel panic - not syncing: No working init found.\n\
                 [1.0] ---[ end Kernel panic - not syncing: No working init found. ]---\n";
    let (end, cases, log) = run_on(|id| board_booting_into(panic, id)).await;
    assert_eq!(end.health, crate::model::JobHealth::Incomplete, "{log}");
    // A Job error with the panic's text, not the timeout of the prompt wait.
    assert_eq!(end.error_type, Some(ErrorType::Job), "{end:?}");
    let comment = end.failure_comment.unwrap_or_default();
    assert!(
        comment.contains("Kernel panic - not syncing: No working init found."),
        "{comment}"
    );
    assert!(
        cases
            .iter()
            .any(|(name, result, _)| name == "kernel-messages" && result == "fail"),
        "{cases:?}"
    );
    assert!(
        !cases.iter().any(|(name, ..)| name == "login-action"),
        "{cases:?}"
    );
}

#[tokio::test]
async fn the_job_directory_gets_the_device_configuration_and_the_worker_files() {
    let mut s = setup(text_for).await;
    s.store
        .call(|st| {
            st.create_worker("w1", None, crate::store::WorkerHealth::Active)?;
            st.set_worker_file("w1", crate::store::WorkerFile::Env, Some("overrides: {}\n"))
        })
        .await
        .unwrap();
    s.run.device.worker_name = Some("w1".to_owned());
    let id = s.run.job.id;
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin()).with_boards(
        Arc::new(FakeBoards::new(
            Arc::new(FakeRunner::default()),
            Arc::new(board(id.0)),
        )),
    );
    let end = d.run(s.run.clone()).await;
    assert_eq!(end, JobEnd::complete());
    let device = std::fs::read_to_string(s.dir.path().join("device.yaml")).unwrap();
    let rendered = Templates::builtin()
        .render(DICT, &serde_json::Map::new())
        .unwrap();
    assert_eq!(device, rendered.yaml);
    let env = std::fs::read_to_string(s.dir.path().join("env.yaml")).unwrap();
    assert_eq!(env, "overrides: {}\n");
    // Files the worker does not have stay absent, as in LAVA.
    assert!(!s.dir.path().join("dispatcher.yaml").exists());
    assert!(!s.dir.path().join("env-dut.yaml").exists());
}

#[tokio::test]
async fn power_goes_through_the_board_in_order() {
    let s = setup(text_for).await;
    let power = FakePower::default();
    let id = s.run.job.id;
    let boards = FakeBoards {
        power: Some(Arc::new(power.clone())),
        ..FakeBoards::new(Arc::new(FakeRunner::default()), Arc::new(board(id.0)))
    };
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin())
        .with_boards(Arc::new(boards));
    let end = d.run(s.run.clone()).await;
    assert_eq!(end, JobEnd::complete());
    // reset-device as off and on (no hard reset), then the power-off of finalize.
    assert_eq!(
        power.transitions(),
        [PowerState::Off, PowerState::On, PowerState::Off]
    );
    let cases = s
        .store
        .call(move |st| st.test_cases(id, None, 0, None))
        .await
        .unwrap();
    assert!(
        !cases.iter().any(|c| c.name == "pdu-reboot"),
        "an off-on cycle is no pdu-reboot"
    );
}

#[tokio::test]
async fn power_off_device_runs_the_dictionary_power_off() {
    let s = setup(text_for).await;
    let runner = FakeRunner::default();
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin()).with_boards(
        Arc::new(FakeBoards {
            runner: Arc::new(runner.clone()),
            ..FakeBoards::default()
        }),
    );
    d.power_off_device(&s.run.device).await;
    assert_eq!(runner.commands(), ["power-off"]);
}

#[tokio::test]
async fn an_invalid_prompt_fails_the_job_before_the_board_is_touched() {
    let s =
        setup(|dir| text_for(dir).replace("prompts: ['root@fake# ']", "prompts: ['root@(fake# ']"))
            .await;
    let runner = FakeRunner::default();
    let d = Dispatcher::new(s.config.clone(), s.store.clone(), Templates::builtin()).with_boards(
        Arc::new(FakeBoards::new(
            Arc::new(runner.clone()),
            Arc::new(FakeConsole::new("")),
        )),
    );
    let end = d.run(s.run.clone()).await;
    assert_eq!(end.error_type, Some(ErrorType::Job), "{end:?}");
    let comment = end.failure_comment.unwrap_or_default();
    assert!(
        comment.contains("invalid regular expression in prompts 'root@(fake# '"),
        "{comment}"
    );
    assert!(runner.commands().is_empty(), "{:?}", runner.commands());
}

#[tokio::test]
async fn qemu_job_on_a_fake_emulator() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vmlinuz"), b"kernel").unwrap();
    let store = AsyncStore::new(Store::open(dir.path().join("db")).unwrap());
    let definition = format!(
        r#"
job_name: fake-qemu
device_type: qemu
visibility: public
context: {{arch: amd64}}
timeouts:
  job: {{minutes: 2}}
  action: {{seconds: 30}}
  connection: {{seconds: 10}}
actions:
- deploy:
    to: tmpfs
    images:
      kernel:
        url: 'file://{}'
        image_arg: '-kernel {{kernel}}'
- boot:
    method: qemu
    media: tmpfs
    prompts: ['root@fake# ']
"#,
        dir.path().join("vmlinuz").display()
    );
    let (job, device) = store
        .call(move |s| {
            scheduled_job(
                s,
                &definition,
                "qemu-01",
                "qemu",
                "{% extends 'qemu.jinja2' %}\n",
            )
        })
        .await
        .unwrap();
    let config = DispatcherConfig {
        tftp_root: dir.path().join("tftp"),
        work_dir: dir.path().join("work"),
        mirror_dir: dir.path().join("git-mirrors"),
        server_ip: "127.0.0.1".parse().unwrap(),
    };
    let launcher = crate::hw::fake::FakeLauncher {
        console: Arc::new(FakeConsole::new("[0.0] Linux version 6.1\nroot@fake# ")),
        launched: Arc::default(),
    };
    let boards = FakeBoards {
        launcher: Some(Arc::new(launcher.clone())),
        ..FakeBoards::default()
    };
    let d = Dispatcher::new(config.clone(), store.clone(), Templates::builtin())
        .with_boards(Arc::new(boards));
    let run = JobRun {
        job,
        device,
        log_path: dir.path().join("job.log"),
        cancel: CancellationToken::new(),
    };
    let end = d.run(run).await;
    let log = std::fs::read_to_string(dir.path().join("job.log")).unwrap();
    assert_eq!(end, JobEnd::complete(), "{log}");
    let launched = launcher.launched.lock().unwrap().clone();
    assert_eq!(launched.len(), 1, "{launched:?}");
    assert!(
        launched[0].starts_with("qemu-system-x86_64 "),
        "{launched:?}"
    );
    assert!(
        launched[0].ends_with(&format!(
            "-kernel {}",
            config.work_dir.join("1/tmpfs/vmlinuz").display()
        )),
        "{launched:?}"
    );
    assert!(log.contains("stopping the emulator"), "{log}");
}
