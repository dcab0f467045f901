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
