use super::*;
use crate::devicetype::Templates;

const UBOOT_DICT: &str = "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set connection_command = 'lab/board console uboot-arm-01' %}\n{% set power_on_command = 'lab/board power-on uboot-arm-01' %}\n{% set power_off_command = 'lab/board power-off uboot-arm-01' %}\n{% set hard_reset_command = 'lab/board hard-reset uboot-arm-01' %}\n";

fn device(dict: &str) -> DeviceConfig {
    Templates::builtin()
        .render(dict, &Default::default())
        .expect("render")
        .config
}

fn job(text: &str) -> JobDefinition {
    crate::jobdef::parse_str(text).unwrap_or_else(|p| panic!("{p:?}"))
}

const UBOOT_JOB: &str = r#"
job_name: uboot
device_type: qemu-uboot-arm
visibility: public
priority: medium
timeouts:
  job: {minutes: 10}
  action: {minutes: 2}
  connection: {minutes: 1}
  actions:
    http-download: {seconds: 90}
actions:
- deploy:
    to: tftp
    kernel: {url: 'file:///srv/zImage', type: zimage}
    ramdisk: {url: 'file:///srv/ramdisk.cpio.gz', compression: gz}
- boot:
    method: u-boot
    commands: ramdisk
    failure_retry: 2
    timeout: {minutes: 4}
    timeouts:
      auto-login-action: {minutes: 3}
    prompts: ['root@lavabox:[^\r\n]*# ']
- test:
    timeout: {minutes: 5, skip: true}
    definitions:
    - from: inline
      name: smoke
      path: inline/smoke.yaml
      repository:
        metadata: {format: Lava-Test Test Definition 1.0, name: smoke}
        run: {steps: ['lava-test-case a --result pass']}
"#;

#[test]
fn uboot_pipeline_describe() {
    let p = build(&job(UBOOT_JOB), &device(UBOOT_DICT)).unwrap();
    insta::assert_snapshot!(p.describe());
}

#[test]
fn timeouts_follow_lava_precedence() {
    let p = build(&job(UBOOT_JOB), &device(UBOOT_DICT)).unwrap();
    let boot = &p.blocks[1].root;
    assert_eq!(boot.timeout, Duration::from_secs(240));
    // job timeouts.actions beats job timeouts.action
    let deploy = &p.blocks[0].root;
    assert_eq!(
        deploy.find("http-download").unwrap().timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        deploy.find("download-retry").unwrap().timeout,
        Duration::from_secs(120)
    );
    // the block timeout applies to every action of the block
    assert_eq!(
        boot.find("bootloader-commands").unwrap().timeout,
        Duration::from_secs(240)
    );
    assert_eq!(
        p.blocks[2].root.find("lava-test-shell").unwrap().timeout,
        Duration::from_secs(300)
    );
    // block timeouts.<name> beats everything, bounded by the parent
    assert_eq!(
        boot.find("auto-login-action").unwrap().timeout,
        Duration::from_secs(180)
    );
    assert_eq!(
        boot.find("auto-login-action").unwrap().connection_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(
        p.blocks[1].runs,
        Runs::UntilSuccess {
            tries: 2,
            interval: Duration::from_secs(1)
        }
    );
    assert!(p.blocks[2].skip_on_timeout);
}

#[test]
fn unsupported_methods_are_refused_at_validation() {
    let text = UBOOT_JOB.replace(
        "to: tftp",
        "to: nfs\n    nfsrootfs: {url: 'http://x/r.tgz'}",
    );
    let Ok(def) = crate::jobdef::parse_str(&text) else {
        return;
    };
    let err = build(&def, &device(UBOOT_DICT)).unwrap_err();
    assert_eq!(err.error_type, ErrorType::Job);
    assert!(
        err.message.ends_with("is not supported on this appliance"),
        "{}",
        err.message
    );
}

#[test]
fn unknown_command_set_is_a_job_error() {
    let text = UBOOT_JOB.replace("commands: ramdisk", "commands: nosuchset");
    let err = build(&job(&text), &device(UBOOT_DICT)).unwrap_err();
    assert_eq!(err.error_type, ErrorType::Job);
}

#[test]
fn an_invalid_prompt_regex_is_a_job_error_at_build_time() {
    let text = UBOOT_JOB.replace(
        r"prompts: ['root@lavabox:[^\r\n]*# ']",
        "prompts: ['root@(lavabox# ']",
    );
    let err = build(&job(&text), &device(UBOOT_DICT)).unwrap_err();
    assert_eq!(err.error_type, ErrorType::Job);
    assert!(
        err.message
            .starts_with("invalid regular expression in prompts 'root@(lavabox# ': "),
        "{}",
        err.message
    );
}

#[test]
fn blocks_carry_their_typed_work() {
    let p = build(&job(UBOOT_JOB), &device(UBOOT_DICT)).unwrap();
    let Work::Tftp(tftp) = &p.blocks[0].work else {
        panic!("{:?}", p.blocks[0].work);
    };
    assert_eq!(tftp.kernel.level, "1.1.1");
    let (ramdisk, overlay) = tftp.ramdisk.as_ref().unwrap();
    assert_eq!((ramdisk.level.as_str(), *overlay), ("1.2.1", true));
    assert_eq!(ramdisk.codec, Some(step::Codec::Gz));
    let Work::UBoot(uboot) = &p.blocks[1].work else {
        panic!("{:?}", p.blocks[1].work);
    };
    assert_eq!(uboot.reset.name, "reset-device");
    assert_eq!(uboot.reset.level, "2.4.1");
    assert_eq!(
        uboot.login.as_ref().map(|l| l.node.name.as_str()),
        Some("auto-login-action")
    );
    let Work::TestShell(test) = &p.blocks[2].work else {
        panic!("{:?}", p.blocks[2].work);
    };
    assert_eq!((test.stage, test.node.level.as_str()), (0, "3.1"));
}

fn with_tests(tests: &str) -> String {
    let head = UBOOT_JOB.split("- test:").next().unwrap_or_default();
    format!("{head}{tests}")
}

#[test]
fn git_and_url_definitions_get_lavas_overlay_actions_and_typed_sources() {
    let text = with_tests(
        "- test:\n    definitions:\n    - {from: git, repository: 'https://g/t.git', path: a/b.yaml, name: g1, revision: abc}\n    - {from: git, repository: 'git://g/t.git', path: a/b.yaml, name: g2, shallow: false, history: false}\n    - {from: url, repository: 'https://g/t.tar.xz', compression: xz, path: t.yaml, name: u1}\n",
    );
    let p = build(&job(&text), &device(UBOOT_DICT)).unwrap();
    let Work::TestShell(shell) = &p.blocks[2].work else {
        panic!("{:?}", p.blocks[2].work);
    };
    let levels: Vec<(&str, &str)> = shell
        .tests
        .iter()
        .map(|t| (t.repo.name.as_str(), t.repo.level.as_str()))
        .collect();
    assert_eq!(
        levels,
        [
            ("git-repo-action", "1.3.2.1.1"),
            ("git-repo-action", "1.3.2.1.5"),
            ("url-repo-action", "1.3.2.1.9")
        ]
    );
    assert_eq!(shell.tests[2].runscript.name, "test-runscript-overlay");
    assert_eq!(shell.tests[2].runscript.level, "1.3.2.1.12");
    let DefSource::Git(g1) = &shell.tests[0].source else {
        panic!()
    };
    assert!(!g1.shallow, "a revision needs history");
    assert!(g1.history);
    let DefSource::Git(g2) = &shell.tests[1].source else {
        panic!()
    };
    assert!(!g2.shallow && !g2.history);
    assert!(matches!(&shell.tests[2].source, DefSource::Url(u) if u.codec == Some(Codec::Xz)));
}

#[test]
fn a_definition_path_leaving_the_repository_is_a_job_error() {
    for path in ["../x.yaml", "/etc/x.yaml", "a/../../x.yaml"] {
        let text = with_tests(&format!(
            "- test:\n    definitions:\n    - {{from: git, repository: 'https://g/t.git', path: '{path}', name: g1}}\n"
        ));
        let err = build(&job(&text), &device(UBOOT_DICT)).unwrap_err();
        assert_eq!(err.error_type, ErrorType::Job);
        assert!(err.message.contains("must be relative"), "{}", err.message);
    }
    let text = with_tests(
        "- test:\n    definitions:\n    - {from: url, repository: 'https://g/t.zip', compression: zip, path: t.yaml, name: u1}\n",
    );
    let err = build(&job(&text), &device(UBOOT_DICT)).unwrap_err();
    assert!(
        err.message.ends_with("is not supported on this appliance"),
        "{}",
        err.message
    );
}

#[test]
fn interactive_monitors_and_bootloader_boots_are_built() {
    let text = r#"
job_name: uboot interactive
device_type: qemu-uboot-arm
visibility: public
timeouts:
  job: {minutes: 10}
actions:
- boot: {method: bootloader, bootloader: u-boot, commands: [], prompts: ['=>']}
- test:
    interactive:
    - name: t
      prompts: ['=> ']
      script:
      - {command: version, name: v, successes: [{message: 'U-Boot'}]}
      - {command: reset, failures: [{message: 'x(', exception: JobError}]}
"#;
    let err = build(&job(text), &device(UBOOT_DICT)).unwrap_err();
    assert!(
        err.message
            .starts_with("invalid regular expression in failures 'x('"),
        "{err:?}"
    );
    let ok = text.replace("'x('", "'boom'");
    let p = build(&job(&ok), &device(UBOOT_DICT)).unwrap();
    assert_eq!(p.blocks[0].root.name, "bootloader-action");
    let Work::UBoot(b) = &p.blocks[0].work else {
        panic!()
    };
    assert!(b.login.is_none() && b.commands.is_empty());
    let Work::Interactive(i) = &p.blocks[1].work else {
        panic!()
    };
    assert_eq!(
        (i.stage, i.node.name.as_str()),
        (0, "lava-test-interactive")
    );
    assert_eq!(i.scripts[0].steps.len(), 2);
    let monitors = ok.replace(
        "    interactive:\n    - name: t\n      prompts: ['=> ']\n      script:\n      - {command: version, name: v, successes: [{message: 'U-Boot'}]}\n      - {command: reset, failures: [{message: 'boom', exception: JobError}]}\n",
        "    monitors:\n    - {name: My-Tests, start: 'BEGIN', end: 'END', pattern: '(?P<test_case_id>\\w+): (?P<result>\\w+)'}\n",
    );
    let p = build(&job(&monitors), &device(UBOOT_DICT)).unwrap();
    let Work::Monitors(m) = &p.blocks[1].work else {
        panic!("{monitors}")
    };
    assert_eq!(m.monitors[0].suite, "my-tests");
    assert_eq!(p.blocks[1].root.name, "lava-test-monitor-retry");
}
