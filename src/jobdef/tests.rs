//! Unit tests: data-driven accept/reject cases, typed results, MultiNode split, hostile input.

use std::time::Duration;

use proptest::prelude::*;

use super::action::boot::{BootCommands, BootMethod};
use super::action::deploy::{DeployTo, KernelType, NfsRoot};
use super::action::test::TestDefSource;
use super::action::{ActionKind, Boot, Deploy, Retry, Test};
use super::notify::{Criteria, NotifyStatus, Recipient};
use super::protocol::RoleKind;
use super::*;

const HEAD: &str = "device_type: qemu
job_name: unit
visibility: public
timeouts:
  job: {minutes: 30}
actions:
";

/// Validates `yaml` strictly (so that every schema mapping shows its key checks) and renders
/// the outcome: `ok`, or one `path (line N): message` per problem.
fn outcome(yaml: &str) -> String {
    outcome_in(yaml, Mode::Strict)
}

fn outcome_in(yaml: &str, mode: Mode) -> String {
    match parse_str_mode(yaml, mode) {
        Ok(_) => "ok".to_owned(),
        Err(problems) => problems
            .iter()
            .map(|p| format!("{} (line {}): {}", p.path, p.line, p.message))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// `expect` is `ok` or a fragment every rendering must contain.
fn check(yaml: &str, expect: &str) {
    let got = outcome(yaml);
    if expect == "ok" {
        assert_eq!(got, "ok", "for:\n{yaml}");
    } else {
        assert!(
            got.contains(expect),
            "expected `{expect}`\ngot:\n{got}\nfor:\n{yaml}"
        );
    }
}

/// Checks `yaml` in both modes: `lenient` and `strict` are `ok` or an expected fragment.
fn check_modes(yaml: &str, lenient: &str, strict: &str) {
    for (mode, expect) in [(Mode::Lenient, lenient), (Mode::Strict, strict)] {
        let got = outcome_in(yaml, mode);
        if expect == "ok" {
            assert_eq!(got, "ok", "{mode:?} for:\n{yaml}");
        } else {
            assert!(
                got.contains(expect),
                "{mode:?}: expected `{expect}`\ngot:\n{got}\nfor:\n{yaml}"
            );
        }
    }
}

fn with_actions(actions: &str) -> String {
    format!("{HEAD}{actions}")
}

fn ok(yaml: &str) -> JobDefinition {
    match parse_str_mode(yaml, Mode::Strict) {
        Ok(job) => job,
        Err(problems) => panic!("unexpected problems: {problems:#?}\nfor:\n{yaml}"),
    }
}

#[test]
fn lenient_mode_tolerates_unknown_keys_only_where_lava_does() {
    let boot = "- boot: {method: qemu, media: tmpfs, prompts: ['#']";
    let extra = "extra keys not allowed";
    let cases: &[(String, &str, &str)] = &[
        // Only the job schema looks here: tolerated unless strict.
        (
            with_actions(&format!("{boot}, kernel_args: x}}\n")),
            "ok",
            "actions[0].boot.kernel_args (line 7): extra keys not allowed",
        ),
        (
            with_actions("- command: {name: reboot, why: flaky}\n"),
            "ok",
            extra,
        ),
        (
            with_actions(&format!(
                "{boot}, timeouts: {{auto-login-action: {{minutes: 2, note: x}}}}}}\n"
            )),
            "ok",
            "timeouts.auto-login-action.note (line 7): extra keys not allowed",
        ),
        // One good unit is enough for a lenient timeout; a bad one alone is still refused.
        (
            with_actions(&format!(
                "{boot}, timeouts: {{a: {{minutes: 0, hours: 1}}}}}}\n"
            )),
            "ok",
            extra,
        ),
        (
            with_actions(&format!("{boot}, timeouts: {{a: {{minutes: 0}}}}}}\n")),
            "value must be at least 1",
            "value must be at least 1",
        ),
        (
            with_actions(&format!(
                "{boot}, auto_login: {{login_prompt: 'l:', username: r, password: p}}}}\n"
            )),
            "ok",
            "auto_login",
        ),
        // The submission schema looks here too: refused in both modes.
        (
            format!("{HEAD}{boot}}}\nfoo: 1\n"),
            "foo (line 8): extra keys not allowed",
            "foo (line 8): extra keys not allowed",
        ),
        (
            with_actions(&format!("{boot}, timeout: {{minutes: 1, note: x}}}}\n")),
            "timeout.note (line 7): extra keys not allowed",
            "timeout.note (line 7): extra keys not allowed",
        ),
        (
            with_actions(&format!(
                "{boot}, auto_login: {{login_prompt: 'l:', username: r, shell: sh}}}}\n"
            )),
            "auto_login.shell (line 7): extra keys not allowed",
            "auto_login.shell (line 7): extra keys not allowed",
        ),
        (
            with_actions(&format!(
                "{boot}, auto_login: {{login_prompt: 'l:', username: r, password: 1}}}}\n"
            )),
            "auto_login",
            "auto_login",
        ),
        (
            with_actions(&format!("{boot}}}\n  note: x\n")),
            "actions[0].note (line 8): extra keys not allowed",
            "actions[0].note (line 8): extra keys not allowed",
        ),
        // The server's VCS check applies whatever the mode.
        (
            with_actions(
                "- test: {definitions: [{from: git, repository: r, path: p, name: n, revision: v, shallow: true}]}\n",
            ),
            "definitions[0].shallow (line 7): When 'revision' is used, 'shallow' shouldn't be 'True'",
            "definitions[0].shallow (line 7): extra keys not allowed",
        ),
    ];
    for (yaml, lenient, strict) in cases {
        check_modes(yaml, lenient, strict);
    }
}

#[test]
fn top_level_cases() {
    let cases: &[(&str, &str)] = &[
        ("", "(root) (line 1): expected a dictionary"),
        ("[1, 2]", "(root) (line 1): expected a dictionary"),
        ("job_name: x\n", "visibility (line 1): required key not provided"),
        ("job_name: x\n", "timeouts (line 1): required key not provided"),
        ("job_name: x\n", "actions (line 1): required key not provided"),
        ("job_name: x\n", "\"device_type\" or multinode should be defined"),
        (
            &HEAD.replace("job_name: unit", "job_name: ''"),
            "job_name (line 2): length of value must be at least 1",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: secret"),
            "visibility (line 3): not a valid value",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: {group: [a, b]}"),
            "ok",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: {group: []}"),
            "No known groups were found in the visibility list.",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\npriority: medium"),
            "ok",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\npriority: 0"),
            "ok",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\npriority: 101"),
            "priority (line 4): Invalid job priority: 101. Should be in [0, 100]",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\npriority: -1"),
            "Invalid job priority: -1. Should be in [0, 100]",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\npriority: LOW"),
            "priority (line 4): not a valid value",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\npriority: 2.5"),
            "priority (line 4): not a valid value",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\nsecrets: [a]"),
            "secrets (line 4): expected dict",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\ntags: [a, 2]"),
            "tags[1] (line 4): expected str",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\nreboot_to_fastboot: 1"),
            "reboot_to_fastboot (line 4): expected bool",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\nmetadata: {a: 1, b: x}"),
            "ok",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\nmetadata: {a: null}"),
            "metadata.a (line 4): expected str",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\ncontext: {arch: arm64, memory: 2048, extra_options: [-smp, 2]}"),
            "ok",
        ),
        (
            &HEAD.replace("visibility: public", "visibility: public\ncontext: {netdevice: tap, foo: 1}"),
            "context.foo (line 4): extra keys not allowed",
        ),
        (
            &HEAD.replace("actions:", "actions: []\nnonsense: 1"),
            "nonsense (line 7): extra keys not allowed",
        ),
    ];
    for (yaml, expect) in cases {
        let yaml = if yaml.ends_with("actions:\n") {
            format!("{yaml}- command: {{name: x}}\n")
        } else {
            (*yaml).to_owned()
        };
        check(&yaml, expect);
    }
}

#[test]
fn timeout_cases() {
    let with = |timeouts: &str| {
        format!(
            "device_type: qemu\njob_name: t\nvisibility: public\ntimeouts:\n{timeouts}actions:\n- command: {{name: x}}\n"
        )
    };
    let cases: &[(&str, &str)] = &[
        ("  job: {days: 1}\n", "ok"),
        (
            "  job: {hours: 1}\n  action: {minutes: 5}\n  connection: {seconds: 30}\n  queue: {days: 2}\n",
            "ok",
        ),
        ("  job: {minutes: 10, skip: true}\n", "ok"),
        (
            "  action: {minutes: 1}\n",
            "timeouts.job (line 5): required key not provided",
        ),
        (
            "  job: {}\n",
            "timeouts.job (line 5): required key not provided",
        ),
        (
            "  job: {weeks: 1}\n",
            "timeouts.job.weeks (line 5): extra keys not allowed",
        ),
        (
            "  job: {minutes: 1.5}\n",
            "timeouts.job.minutes (line 5): expected int",
        ),
        ("  job: {minutes: -1}\n", "value must be at least 1"),
        (
            "  job: {minutes: x}\n",
            "timeouts.job.minutes (line 5): expected int",
        ),
        (
            "  job: {minutes: 5, skip: 1}\n",
            "timeouts.job.skip (line 5): expected bool",
        ),
        (
            "  job: {minutes: 5}\n  connection: {minutes: 6}\n",
            "timeouts.connection (line 6): Global timeout is larger than job timeout",
        ),
        (
            "  job: {minutes: 5}\n  actions:\n    http-download: {hours: 1}\n",
            "timeouts.actions.http-download (line 7): Global timeout is larger than job timeout",
        ),
        (
            "  job: {minutes: 5}\n  connections:\n    uboot-commands: {hours: 1}\n",
            "Global timeout is larger than job timeout",
        ),
        (
            "  job: {minutes: 5}\n  actions:\n    Bad_Name: {minutes: 1}\n",
            "timeouts.actions.Bad_Name (line 7): extra keys not allowed",
        ),
        ("  job: {minutes: 60}\n  queue: {days: 3}\n", "ok"),
    ];
    for (timeouts, expect) in cases {
        check(&with(timeouts), expect);
    }
    check(
        &with_actions("- boot: {method: minimal, timeout: {hours: 1}}\n"),
        "actions[0].boot.timeout (line 7): Action timeout is larger than job timeout",
    );
    check(
        &with_actions("- boot: {method: minimal, timeouts: {bootloader-commands: {minutes: 1}}}\n"),
        "ok",
    );
}

#[test]
fn typed_timeouts() {
    let job = ok(
        "device_type: qemu\njob_name: t\nvisibility: public\ntimeouts:\n  job: {hours: 2}\n  action: {minutes: 3, skip: true}\n  queue: {days: 1}\n  actions:\n    http-download: {seconds: 45}\nactions:\n- command: {name: x, timeout: {seconds: 10}}\n",
    );
    assert_eq!(job.timeouts.job.duration, Duration::from_secs(7200));
    assert_eq!(
        job.timeouts.action,
        Some(Timeout {
            duration: Duration::from_secs(180),
            skip: true
        })
    );
    assert_eq!(
        job.timeouts.queue.map(|t| t.duration),
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(
        job.timeouts
            .actions
            .get("http-download")
            .map(|t| t.duration),
        Some(Duration::from_secs(45))
    );
    assert_eq!(
        job.actions
            .first()
            .and_then(|a| a.common.timeout)
            .map(|t| t.duration),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn every_deploy_type_has_a_valid_and_an_invalid_case() {
    let cases: &[(&str, &str, &str)] = &[
        ("docker", "image: debian", "image: 'Debian Stable'"),
        ("download", "images: {a: {url: x}}", "images: {}"),
        ("downloads", "images: {a: {url: x}}", "images: {a: {}}"),
        (
            "fastboot",
            "images: {boot: {url: x, reboot: hard-reset}}",
            "images: {boot: {url: x, reboot: soon}}",
        ),
        ("flasher", "images: {}", "images: [a]"),
        (
            "fvp",
            "images: {bl1: {url: x}}",
            "images: {bl1: {url: x}}\n    ramdisk: {header: x}",
        ),
        (
            "iso-installer",
            "images: {iso: {url: x}, preseed: {url: y}}\n    iso: {installation_size: 2G}",
            "images: {iso: {url: x}, preseed: {url: y}}",
        ),
        ("lxc", "packages: [a]", "packages: a"),
        ("mps", "images: {test_binary: {url: x}}", "images: {}"),
        ("musca", "images: {test_binary: {url: x}}", "images: {}"),
        (
            "nbd",
            "kernel: {url: x}\n    initrd: {url: y}\n    nbdroot: {url: z}",
            "initrd: {url: y}\n    nbdroot: {url: z}",
        ),
        ("nfs", "nfsrootfs: {url: x}", "nfsrootfs: x"),
        ("overlay", "os: debian", "images: {}"),
        ("recovery", "images: {a: {url: x}}", "images: {}"),
        (
            "sata",
            "image: {url: x}\n    device: sda",
            "image: {url: x}",
        ),
        ("ssh", "rootfs: {url: x}", "rootfs: {uri: x}"),
        (
            "tftp",
            "kernel: {url: x, type: uimage}",
            "kernel: {url: x, type: bzimage}",
        ),
        (
            "tmpfs",
            "images: {rootfs: {url: x, format: qcow2}}",
            "images: {rootfs: {url: x, format: raw}}",
        ),
        (
            "u-boot-ums",
            "image: {url: x, root_partition: 0}",
            "image: {url: x, root_partition: -1}",
        ),
        (
            "usb",
            "images: {image: {url: x}}\n    device: d",
            "images: {image: {url: x}}\n    image: {url: x}\n    device: d",
        ),
        (
            "uuu",
            "images: {boot: {url: x}}",
            "images: {other: {url: x}}",
        ),
        ("vemsd", "recovery_image: {url: x}", "recovery_image: x"),
    ];
    assert_eq!(cases.len(), DeployTo::ALL.len());
    for (to, good, bad) in cases {
        assert!(DeployTo::from_name(to).is_some(), "{to}");
        check(
            &with_actions(&format!("- deploy:\n    to: {to}\n    {good}\n")),
            "ok",
        );
        let got = outcome(&with_actions(&format!(
            "- deploy:\n    to: {to}\n    {bad}\n"
        )));
        assert!(got.contains("actions[0].deploy"), "deploy {to}: {got}");
    }
    check(
        &with_actions("- deploy: {to: sd, image: {url: x}, device: d}\n"),
        "actions[0].deploy.to (line 7): unknown action type",
    );
    check(
        &with_actions("- deploy: {to: TFTP, kernel: {url: x}}\n"),
        "actions[0].deploy.to (line 7): unknown action type",
    );
    check(
        &with_actions(
            "- deploy: {to: tftp, kernel: {url: x}, nfsrootfs: {url: y}, persistent_nfs: {address: z}}\n",
        ),
        "two or more values in the same group of exclusion 'nfs'",
    );
    check(
        &with_actions("- deploy: {to: tftp}\n"),
        "actions[0].deploy.kernel (line 7): needs a kernel to deploy",
    );
    check(
        &with_actions("- deploy: {to: tmpfs, images: {}}\n"),
        "actions[0].deploy.images (line 7): 'images' is empty",
    );
    check(
        &with_actions(
            "- deploy: {to: tmpfs, images: {r: {url: x, format: ext4, overlays: {lava: true, m: {url: y, format: tar, path: /}}}}}\n",
        ),
        "ok",
    );
    check(
        &with_actions("- deploy: {to: overlay, authorize: ssh, os: oe}\n"),
        "ok",
    );
    check(
        &with_actions("- deploy: {to: overlay, authorize: key}\n"),
        "actions[0].deploy.authorize (line 7): not a valid value",
    );
}

#[test]
fn every_boot_method_has_a_valid_case() {
    let cases: &[(&str, &str)] = &[
        ("barebox", "commands: ramdisk"),
        ("bootloader", "bootloader: u-boot\n    commands: [help]"),
        ("cmsis-dap", "timeout: {minutes: 1}"),
        ("depthcharge", "commands: nfs"),
        ("dfu", "timeout: {minutes: 1}"),
        ("docker", "command: bash"),
        ("fastboot", "commands: [reboot]"),
        (
            "fvp",
            "console_string: x\n    image: y\n    arguments: [a]\n    prompts: ['# ']\n    docker: {name: fvp}",
        ),
        ("gdb", "commands: x"),
        ("grub", "commands: ramdisk"),
        ("grub-efi", "commands: [a, b]"),
        ("ipxe", "commands: ramdisk"),
        ("jlink", "timeout: {minutes: 1}"),
        ("kexec", "boot_message: Booting"),
        ("lxc", "prompts: ['# ']"),
        ("minimal", "reset: false"),
        ("monitor", "timeout: {minutes: 1}"),
        ("musca", "prompts: ['# ']"),
        ("new_connection", "connection: uart1"),
        ("openocd", "timeout: {minutes: 1}"),
        ("pyocd", "timeout: {minutes: 1}"),
        ("qemu", "media: tmpfs"),
        ("qemu-iso", "media: img"),
        ("qemu-nfs", "connection: serial"),
        ("recovery", "commands: exit"),
        ("schroot", "connection: ssh\n    schroot: unstable"),
        ("ssh", "connection: ssh"),
        ("u-boot", "commands: nfs"),
        ("uefi", "commands: [a]"),
        ("uefi-menu", "commands: nfs"),
        ("uuu", "commands: [{uuu: x}]"),
    ];
    assert_eq!(cases.len(), BootMethod::ALL.len());
    for (method, good) in cases {
        assert!(BootMethod::from_name(method).is_some(), "{method}");
        check(
            &with_actions(&format!("- boot:\n    method: {method}\n    {good}\n")),
            "ok",
        );
        let got = outcome(&with_actions(&format!(
            "- boot:\n    method: {method}\n    {good}\n    bogus: 1\n"
        )));
        assert!(
            got.contains("actions[0].boot.bogus (line") && got.contains("extra keys not allowed"),
            "boot {method}: {got}"
        );
    }
    let bad: &[(&str, &str)] = &[
        (
            "- boot: {method: uboot, commands: x}\n",
            "actions[0].boot.method (line 7): unknown action type",
        ),
        (
            "- boot: {method: u_boot, commands: x}\n",
            "'method' should be 'u-boot'",
        ),
        (
            "- boot: {method: grub_efi, commands: x}\n",
            "'method' should be 'grub-efi'",
        ),
        (
            "- boot: {commands: x}\n",
            "actions[0].boot.method (line 7): unknown action type",
        ),
        ("- boot: {method: [qemu]}\n", "unknown action type"),
        (
            "- boot: {method: u-boot}\n",
            "actions[0].boot.commands (line 7): required key not provided",
        ),
        ("- boot: {method: qemu, prompts: []}\n", "ok"),
        (
            "- boot: {method: qemu, prompts: ''}\n",
            "length of value must be at least 1",
        ),
        (
            "- boot: {method: qemu, prompts: [1]}\n",
            "actions[0].boot.prompts[0] (line 7): expected str",
        ),
        (
            "- boot: {method: qemu, auto_login: {login_prompt: '', username: root}}\n",
            "auto_login.login_prompt (line 7): length of value must be at least 1",
        ),
        (
            "- boot: {method: qemu, auto_login: {login_prompt: 'l:', username: r, password_prompt: 'p:', password: s}}\n",
            "ok",
        ),
        (
            "- boot: {method: qemu, transfer_overlay: {download_command: wget}}\n",
            "transfer_overlay.unpack_command (line 7): required key not provided",
        ),
        (
            "- boot: {method: qemu, docker: {image: 'qemu', binary: q}}\n",
            "ok",
        ),
        (
            "- boot: {method: qemu, parameters: {shutdown-message: x, other: y}}\n",
            "actions[0].boot.parameters.other (line 7): extra keys not allowed",
        ),
        (
            "- boot: {method: ssh, connection: ssh, parameters: {hostID: h}}\n",
            "ok",
        ),
        (
            "- boot: {method: ssh, connection: ssh, parameters: {shutdown-message: x}}\n",
            "extra keys not allowed",
        ),
        (
            "- boot: {method: recovery, commands: enter}\n",
            "not a valid value",
        ),
        ("- boot: {method: minimal, soft_reboot: [reboot]}\n", "ok"),
    ];
    for (actions, expect) in bad {
        check(&with_actions(actions), expect);
    }
}

#[test]
fn test_action_cases() {
    let cases: &[(&str, &str)] = &[
        ("- test: {definitions: []}\n", "ok"),
        (
            "- test: {timeout: {minutes: 1}}\n",
            "actions[0].test (line 7): invalid action",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: n}], monitors: []}\n",
            "actions[0].test.monitors (line 7): extra keys not allowed",
        ),
        (
            "- test: {definitions: [{from: svn, repository: r, path: p, name: n}]}\n",
            "actions[0].test.definitions[0].from",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: 'a b'}]}\n",
            "does not match regular expression",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: n, skip_install: [all, deps]}]}\n",
            "ok",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: n, skip_install: [everything]}]}\n",
            "skip_install[0] (line 7): not a valid value",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: n, lava-signal: stderr}]}\n",
            "lava-signal (line 7): not a valid value",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: n, history: 'no'}]}\n",
            "history (line 7): expected bool",
        ),
        (
            "- test: {definitions: [{from: url, repository: r, path: p, name: n, compression: gz}]}\n",
            "ok",
        ),
        (
            "- test: {definitions: [{from: inline, repository: {metadata: {format: Lava-Test Test Definition 1.0, name: x}}, path: p, name: n}]}\n",
            "ok",
        ),
        (
            "- test: {definitions: [{from: inline, repository: {metadata: {name: x}}, path: p, name: n}]}\n",
            "repository.metadata.format (line 7): required key not provided",
        ),
        (
            "- test: {definitions: [{from: inline, repository: {metadata: {format: Lava-Test Test Definition 1.0, name: x}, run: {steps: [1]}}, path: p, name: n}]}\n",
            "run.steps[0] (line 7): expected str",
        ),
        (
            "- test: {definitions: [{from: inline, repository: {metadata: {format: Lava-Test Test Definition 1.0, name: x}, install: {deps-fedora: [a], pip: [b]}}, path: p, name: n}]}\n",
            "install.pip (line 7): extra keys not allowed",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: lava}]}\n",
            "The \"lava\" test definition name is reserved.",
        ),
        (
            "- test: {definitions: [{from: git, repository: r, path: p, name: a}, {from: git, repository: r, path: q, name: a}]}\n",
            "actions[0].test.definitions[1].name (line 7): Test definition names need to be unique.",
        ),
        (
            "- test: {docker: {image: debian}, definitions: [{from: git, repository: r, path: p, name: n}]}\n",
            "ok",
        ),
        (
            "- test: {monitors: [{name: m, start: s, end: e, pattern: p}]}\n",
            "ok",
        ),
        (
            "- test: {monitors: [{name: m, start: s, pattern: p}]}\n",
            "monitors[0].end (line 7): required key not provided",
        ),
        (
            "- test: {interactive: [{name: i, prompts: ['=> '], script: [{command: help}]}]}\n",
            "ok",
        ),
        (
            "- test: {interactive: [{name: i, prompts: ['=> '], script: [{command: help, failures: [{message: x, exception: Boom}]}]}]}\n",
            "exception (line 7): not a valid value",
        ),
        (
            "- test: {interactive: [{name: i, prompts: [''], script: []}]}\n",
            "prompts[0] (line 7): length of value must be at least 1",
        ),
        (
            "- command: {name: on}\n",
            "actions[0].command.name (line 7): expected str",
        ),
        ("- command: {name: relay_on}\n", "ok"),
        (
            "- command: relay_on\n",
            "actions[0].command (line 7): expected dict",
        ),
        ("- {}\n", "actions[0] (line 7): empty action"),
        (
            "- reboot: {}\n",
            "actions[0].reboot (line 7): extra keys not allowed",
        ),
        (
            "- command: {name: x, repeat: 2, failure_retry: 3}\n",
            "Unable to use repeat and failure_retry, use a repeat block",
        ),
        (
            "- command: {name: x, repeat: 1.5}\n",
            "actions[0].command.repeat (line 7): expected int",
        ),
        (
            "- command: {name: x, failure_retry: 0}\n",
            "value must be at least 1",
        ),
        (
            "- command: {name: x, namespace: docker-test-shell}\n",
            "reserved namespace names",
        ),
        (
            "- command: {name: x, namespace: a}\n- command: {name: y}\n",
            "actions (line 7): When using namespaces, every action should have a namespace",
        ),
        (
            "- command: {name: x, role: client}\n",
            "actions[0].command.role (line 7): expected a list",
        ),
    ];
    for (actions, expect) in cases {
        check(&with_actions(actions), expect);
    }
}

#[test]
fn typed_actions() {
    let job = ok(&with_actions(
        "- deploy:\n    to: tftp\n    kernel: {url: k, type: zimage}\n    ramdisk: {url: r, compression: gz, header: u-boot}\n    nfsrootfs: {url: n, prefix: p/}\n    os: oe\n    failure_retry: 3\n- deploy: {to: tmpfs, images: {rootfs: {url: d, format: qcow2, image_arg: '-hda {rootfs}'}}}\n- boot: {method: u-boot, commands: [dhcp, bootz], prompts: '# ', auto_login: {login_prompt: 'login:', username: root}}\n- boot: {method: qemu, media: tmpfs, prompts: ['$ ']}\n- boot: {method: minimal}\n- boot: {method: grub, commands: ramdisk}\n- test: {repeat: 2, definitions: [{from: git, repository: r, path: p, name: n, params: {A: 1}}]}\n- test: {monitors: [{name: m, start: s, end: e, pattern: p, fixupdict: {OK: pass}}]}\n- test: {interactive: [{name: i, prompts: ['=> '], script: [{command: null, lava-sync: go}]}]}\n- command: {name: relay}\n",
    ));
    let kinds: Vec<&str> = job.actions.iter().map(|a| a.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "deploy", "deploy", "boot", "boot", "boot", "boot", "test", "test", "test", "command"
        ]
    );
    let Some(ActionKind::Deploy(Deploy::Tftp(tftp))) = job.actions.first().map(|a| &a.kind) else {
        panic!("not tftp: {:?}", job.actions.first());
    };
    assert_eq!(tftp.kernel.kind, Some(KernelType::ZImage));
    assert!(tftp.ramdisk.as_ref().is_some_and(|r| r.uboot_header));
    assert!(matches!(&tftp.nfs, Some(NfsRoot::Download { prefix: Some(p), .. }) if p == "p/"));
    assert_eq!(
        job.actions.first().map(|a| a.common.retry),
        Some(Retry::FailureRetry(
            std::num::NonZeroU32::MIN.saturating_add(2)
        ))
    );
    let Some(ActionKind::Deploy(Deploy::Tmpfs(tmpfs))) = job.actions.get(1).map(|a| &a.kind) else {
        panic!("not tmpfs");
    };
    assert_eq!(tmpfs.images.len(), 1);
    assert!(tmpfs.images.first().is_some_and(|i| {
        i.format == Some(crate::jobdef::action::deploy::ImageFormat::Qcow2) && i.name == "rootfs"
    }));
    let Some(ActionKind::Boot(Boot::UBoot(uboot))) = job.actions.get(2).map(|a| &a.kind) else {
        panic!("not u-boot");
    };
    assert_eq!(
        uboot.commands,
        BootCommands::Literal(vec!["dhcp".into(), "bootz".into()])
    );
    assert_eq!(uboot.login.prompts, vec!["# ".to_owned()]);
    assert!(
        matches!(job.actions.get(3).map(|a| &a.kind), Some(ActionKind::Boot(Boot::Qemu(q))) if q.media_tmpfs)
    );
    assert!(
        matches!(job.actions.get(4).map(|a| &a.kind), Some(ActionKind::Boot(Boot::Minimal(m))) if m.reset)
    );
    assert!(
        matches!(job.actions.get(5).map(|a| &a.kind), Some(ActionKind::Boot(b)) if b.method() == BootMethod::Grub)
    );
    let Some(ActionKind::Test(Test::Definitions {
        definitions,
        docker: None,
    })) = job.actions.get(6).map(|a| &a.kind)
    else {
        panic!("not definitions");
    };
    assert!(
        matches!(&definitions.first().map(|d| &d.source), Some(TestDefSource::Git { repository, .. }) if repository == "r")
    );
    assert_eq!(definitions.first().map(|d| d.parameters.len()), Some(1));
    assert!(
        matches!(job.actions.get(7).map(|a| &a.kind), Some(ActionKind::Test(Test::Monitors(m))) if m.len() == 1)
    );
    assert!(
        matches!(job.actions.get(8).map(|a| &a.kind), Some(ActionKind::Test(Test::Interactive(i))) if i.first().is_some_and(|i| i.script.first().is_some_and(|s| s.command.is_none() && !s.multinode.is_empty())))
    );
    assert!(
        matches!(job.actions.get(9).map(|a| &a.kind), Some(ActionKind::Command(c)) if c.name == "relay")
    );
    assert_eq!(job.actions.get(2).map(|a| a.line), Some(15));
    assert_eq!(job.priority, crate::model::Priority::DEFAULT);
    assert_eq!(job.visibility, Visibility::Public);
    assert!(job.source.starts_with(HEAD));
}

#[test]
fn notify_cases() {
    let with = |notify: &str| format!("{HEAD}- command: {{name: x}}\nnotify:\n{notify}");
    let cases: &[(&str, &str)] = &[
        ("  criteria: {status: complete}\n", "ok"),
        (
            "  criteria: {status: incomplete, type: progression}\n  verbosity: status-only\n",
            "ok",
        ),
        ("  criteria: {status: running, dependency_query: q}\n", "ok"),
        (
            "  criteria: {status: all, dependency_query: q}\n",
            "notify.criteria",
        ),
        (
            "  criteria: {status: canceled, type: regression}\n",
            "notify.criteria",
        ),
        (
            "  criteria: {status: complete}\n  verbosity: loud\n",
            "notify.verbosity (line 10): not a valid value",
        ),
        (
            "  criteria: {status: complete}\n  recipients:\n  - to: {method: sms, user: a}\n",
            "notify.recipients[0].to.method (line 11): not a valid value",
        ),
        (
            "  criteria: {status: complete}\n  recipients:\n  - to: {method: email}\n",
            "notify.recipients[0].to (line 11): No valid user or email address specified.",
        ),
        (
            "  criteria: {status: complete}\n  recipients:\n  - to: {method: irc, server: s}\n",
            "No valid user or IRC handle specified.",
        ),
        (
            "  criteria: {status: complete}\n  callbacks:\n  - {url: u, method: PUT}\n",
            "notify.callbacks[0].method (line 11): not a valid value",
        ),
        (
            "  criteria: {status: complete}\n  callback: {url: u, dataset: everything}\n",
            "notify.callback.dataset (line 10): not a valid value",
        ),
        (
            "  criteria: {status: complete}\n  callback: {url: u}\n  callbacks: [{url: v}]\n",
            "two or more values in the same group of exclusion 'callback'",
        ),
        (
            "  criteria: {status: complete}\n  compare: {query: {username: a}}\n",
            "notify.compare.query.name (line 10): required key not provided",
        ),
        (
            "  criteria: {status: complete}\n  compare: {query: {entity: testjob, conditions: {a: 1}}}\n",
            "notify.compare.query.conditions.a (line 10): expected str",
        ),
    ];
    for (notify, expect) in cases {
        check(&with(notify), expect);
    }
    let job = ok(&with(
        "  criteria: {status: incomplete, type: regression}\n  recipients:\n  - to: {method: email, email: a@b}\n  - to: {method: irc, user: u}\n  callback: {url: 'https://x/{ID}', method: POST, content-type: json}\n",
    ));
    let Some(notify) = job.notify else {
        panic!("no notify");
    };
    assert!(matches!(
        notify.criteria,
        Criteria::Change {
            status: NotifyStatus::Incomplete,
            ..
        }
    ));
    assert!(matches!(
        notify.recipients.as_slice(),
        [Recipient::Email { .. }, Recipient::Irc { .. }]
    ));
    assert_eq!(notify.callbacks.len(), 1);
    assert_eq!(
        notify.callbacks.first().map(|c| c.header.as_str()),
        Some("Authorization")
    );
}

const MULTINODE: &str = "job_name: mn
visibility: public
priority: high
timeouts:
  job: {minutes: 30}
metadata: {build: '7'}
protocols:
  lava-multinode:
    timeout: {minutes: 10}
    roles:
      server: {device_type: qemu, count: 1, context: {arch: amd64}, tags: [big], essential: true, timeout: {minutes: 5}}
      client: {device_type: bbb, count: 2}
      guest: {connection: ssh, count: 1, host_role: server, expect_role: client, request: lava-start}
  lava-lxc:
    client: {name: c, distribution: debian, release: bookworm}
actions:
- deploy: {role: [server, client], to: overlay}
- boot: {role: [client], method: minimal}
- test:
    role: [server]
    definitions: [{from: git, repository: r, path: p, name: n}]
- boot: {role: [guest], method: ssh, connection: ssh}
";

#[test]
fn multinode_split_follows_lava() {
    let job = ok(MULTINODE);
    assert!(job.is_multinode());
    let roles = &job
        .protocols
        .multinode
        .as_ref()
        .map(|m| m.roles.clone())
        .unwrap_or_default();
    assert_eq!(roles.len(), 3);
    assert!(
        matches!(roles.get(2).map(|r| &r.kind), Some(RoleKind::Connection { host_role, .. }) if host_role == "server")
    );
    let subs = expand_multinode(&job);
    let summary: Vec<(usize, &str, Option<&str>, usize)> = subs
        .iter()
        .map(|s| {
            (
                s.sub_id,
                s.role.as_str(),
                s.device_type.as_deref(),
                s.actions.len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, "server", Some("qemu"), 2),
            (1, "client", Some("bbb"), 2),
            (2, "client", Some("bbb"), 2),
            (3, "guest", None, 1),
        ]
    );
    for sub in &subs {
        for action in &sub.actions {
            assert_eq!(action.common.role, vec![sub.role.clone()]);
            assert_eq!(
                action.raw.get("role").and_then(Node::as_str),
                Some(sub.role.as_str())
            );
        }
    }
    let Some(server) = subs.first() else {
        panic!("no sub-jobs");
    };
    assert!(server.essential);
    assert_eq!(server.tags, vec!["big".to_owned()]);
    let def = server.definition_in_group("uuid-1");
    let keys: Vec<String> = def
        .as_map()
        .unwrap_or(&[])
        .iter()
        .map(|(k, _)| k.short())
        .collect();
    assert_eq!(
        keys,
        [
            "actions",
            "job_name",
            "timeouts",
            "priority",
            "visibility",
            "metadata",
            "device_type",
            "context",
            "protocols"
        ]
    );
    let mn = def.get("protocols").and_then(|p| p.get("lava-multinode"));
    let params: Vec<(String, String)> = mn
        .and_then(Node::as_map)
        .unwrap_or(&[])
        .iter()
        .map(|(k, v)| (k.short(), v.short()))
        .collect();
    assert_eq!(
        params.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [
            "target_group",
            "role",
            "group_size",
            "sub_id",
            "tags",
            "essential",
            "timeout"
        ]
    );
    assert_eq!(params.first().map(|(_, v)| v.as_str()), Some("uuid-1"));
    assert_eq!(params.get(2).map(|(_, v)| v.as_str()), Some("4"));
    // The group-level timeout replaces the role's own (LAVA copies it last).
    assert_eq!(
        mn.and_then(|m| m.get("timeout"))
            .and_then(|t| t.get("minutes"))
            .map(Node::short),
        Some("10".to_owned())
    );
    let client = subs.get(2).map(|s| s.definition_in_group("g"));
    assert!(
        client
            .as_ref()
            .and_then(|d| d.get("protocols"))
            .and_then(|p| p.get("lava-lxc"))
            .is_some()
    );
    assert_eq!(
        client
            .as_ref()
            .and_then(|d| d.get("protocols"))
            .and_then(|p| p.get("lava-multinode"))
            .and_then(|m| m.get("sub_id"))
            .map(Node::short),
        Some("2".to_owned())
    );
    let guest = subs.get(3).map(|s| s.definition.clone());
    assert_eq!(
        guest
            .as_ref()
            .and_then(|d| d.get("connection"))
            .map(Node::short),
        Some("ssh".to_owned())
    );
    assert!(
        guest
            .as_ref()
            .is_some_and(|d| d.to_yaml().contains("host_role: server"))
    );
    assert!(expand_multinode(&ok(&with_actions("- command: {name: x}\n"))).is_empty());
}

#[test]
fn multinode_checks() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "job_name: mn",
            "device_type: qemu\njob_name: mn",
            "device_type (line 1): \"device_type\" should not be used with multinode",
        ),
        (
            "metadata: {build: '7'}",
            "metadata: {build: '7'}\ntags: [a]",
            "\"tags\" should not be used with multinode",
        ),
        (
            "metadata: {build: '7'}",
            "metadata: {build: '7'}\ncontext: {arch: x}",
            "\"context\" should not be used with multinode",
        ),
        (
            "metadata: {build: '7'}",
            "metadata: {build: '7'}\nenvironment: {A: b}",
            "\"environment\" should not be used with multinode",
        ),
        (
            "- boot: {role: [client], method: minimal}",
            "- boot: {method: minimal}",
            "actions[1].boot (line 18): Every action of a multinode job should have roles",
        ),
        (
            "host_role: server,",
            "host_role: nobody,",
            "'host_role' 'nobody' does not exist",
        ),
        (
            "expect_role: client,",
            "",
            "'expect_role' is required when 'host_role' is used",
        ),
        (
            "expect_role: client,",
            "expect_role: nobody,",
            "'expect_role' 'nobody' does not exist",
        ),
        (
            "expect_role: client,",
            "expect_role: guest,",
            "expect_role must not match the role declaring lava_start",
        ),
        (
            "server: {device_type: qemu, count: 1,",
            "server: {device_type: qemu, count: 2,",
            "The count for a role designated as a host_role must be 1.",
        ),
        (
            "client: {device_type: bbb, count: 2}",
            "client: {device_type: bbb, count: 2, expect_role: server}",
            "roles.client",
        ),
        (
            "client: {device_type: bbb, count: 2}",
            "client: {device_type: bbb, count: 2.5}",
            "roles.client.count (line 12): expected int",
        ),
        (
            "client: {device_type: bbb, count: 2}",
            "client: {device_type: bbb, count: 2}\n      spare: {device_type: bbb, count: 1}",
            "role 'spare' has no actions",
        ),
        (
            "client: {device_type: bbb, count: 2}",
            "client: {device_type: bbb, count: 0}\n      spare: {device_type: bbb, count: 0}",
            "ok",
        ),
        (
            "  lava-lxc:",
            "  lava-vland:\n    server: {vlan_one: {tags: [1G]}}\n  lava-lxc:",
            "vland protocol only supports one device per role.",
        ),
    ];
    for (from, to, expect) in cases {
        check(&MULTINODE.replacen(from, to, 1), expect);
    }
}

#[test]
fn yaml_reading_matches_pyyaml() {
    // YAML 1.1 booleans in boolean fields.
    check(
        &with_actions("- boot: {method: minimal, reset: off, pre_os_command: Yes}\n"),
        "ok",
    );
    // A YAML 1.1 boolean where a string is wanted.
    check(
        &with_actions("- command: {name: yes}\n"),
        "actions[0].command.name (line 7): expected str",
    );
    // Quoted scalars are strings.
    check(&with_actions("- command: {name: 'yes'}\n"), "ok");
    // Anchors, aliases and merge keys.
    check(
        &format!(
            "{HEAD}- boot: &b {{method: qemu, prompts: ['# ']}}\n- boot:\n    <<: *b\n    media: tmpfs\n"
        ),
        "ok",
    );
    // Duplicate keys: the last value wins, like PyYAML.
    check(
        &format!("{HEAD}- command: {{name: x}}\njob_name: again\n"),
        "ok",
    );
    check(
        &format!("{HEAD}- command: {{name: x}}\njob_name: 5\n"),
        "job_name (line 8): expected str",
    );
    // Syntax errors carry line and column.
    let problems = parse_str(&format!("{HEAD}- command: {{name: x\n"))
        .err()
        .unwrap_or_default();
    assert!(
        problems
            .first()
            .is_some_and(|p| p.line == 8 && p.message.starts_with("invalid YAML")),
        "{problems:?}"
    );
}

#[test]
fn hostile_input() {
    let too_big = vec![b' '; MAX_JOB_SIZE + 1];
    let problems = parse(&too_big).err().unwrap_or_default();
    assert!(
        problems
            .first()
            .is_some_and(|p| p.message.contains("too large"))
    );
    let problems = parse(b"job_name: \xff\xfe\n").err().unwrap_or_default();
    assert!(
        problems
            .first()
            .is_some_and(|p| p.message.contains("UTF-8") && p.line == 1 && p.column == 11),
        "{problems:?}"
    );
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'] {
        laughs.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        prev = name;
    }
    let start = std::time::Instant::now();
    let problems = parse_str(&laughs).err().unwrap_or_default();
    assert!(
        problems
            .first()
            .is_some_and(|p| p.message.contains("aliases")),
        "{problems:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    for deep in [
        "[".repeat(200_000),
        "{a: ".repeat(100_000),
        "- ".repeat(50_000),
    ] {
        assert!(parse_str(&deep).is_err());
    }
}

fn valid_job_text() -> String {
    ok(MULTINODE).source
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_yamlish_text(text in "[-:{}\\[\\],&*!|>'\" \n\ta-z0-9#?<]{0,300}") {
        let _ = parse_str(&text);
    }

    #[test]
    fn never_panics_on_mutated_valid_jobs(
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..4, any::<char>()), 1..8)
    ) {
        let mut chars: Vec<char> = valid_job_text().chars().collect();
        for (index, op, c) in edits {
            if chars.is_empty() {
                break;
            }
            let i = index.index(chars.len());
            match op {
                0 => chars[i] = c,
                1 => { chars.remove(i); }
                2 => chars.insert(i, c),
                _ => {
                    let j = (i + 7).min(chars.len());
                    let slice: Vec<char> = chars[i..j].to_vec();
                    chars.splice(i..i, slice);
                }
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(job) = parse_str(&text) {
            let _ = expand_multinode(&job);
        }
    }
}

/// Every fixture job is placed by what LAVA does with it in each mode (see
/// `tests/lava_schema_check.py`, which checks the placement against LAVA's own code); this
/// checks that we agree in both modes.
#[test]
fn fixtures_in_both_modes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs");
    let mut disagreements = Vec::new();
    let mut seen = 0;
    for (dir, lenient_ok, strict_ok) in [
        ("valid", true, true),
        ("invalid", false, false),
        ("strict-invalid", true, false),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            panic!("no fixture directory {dir}");
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            seen += 1;
            for (mode, expect_ok) in [(Mode::Lenient, lenient_ok), (Mode::Strict, strict_ok)] {
                let got = parse_mode(&bytes, mode);
                if got.is_ok() != expect_ok {
                    let why = got
                        .err()
                        .and_then(|p| p.first().map(ToString::to_string))
                        .unwrap_or_else(|| "accepted".to_owned());
                    disagreements.push(format!("{} ({mode:?}): {why}", path.display()));
                }
            }
        }
    }
    assert!(seen > 150, "only {seen} fixtures");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn test_definition_files_validate_as_lava_checks_them() {
    let good = "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: smoke\n\
                params:\n  X: 1\nrun:\n  steps:\n    - echo hi\nx-extra: tolerated\n";
    assert_eq!(super::validate_testdef(good), Ok(()));
    let no_metadata = super::validate_testdef("run:\n  steps: [echo]\n").unwrap_err();
    assert!(
        no_metadata[0].describe().contains("metadata"),
        "{no_metadata:?}"
    );
    let bad_format = "metadata:\n  format: Other\n  name: x\n";
    assert_eq!(super::validate_testdef(bad_format).unwrap_err()[0].line, 2);
    let bad_steps =
        "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: x\nrun:\n  steps: 3\n";
    assert!(super::validate_testdef(bad_steps).is_err());
    assert!(super::validate_testdef("[unclosed").is_err());
    assert!(super::validate_testdef("- a list\n").is_err());
}

#[test]
fn skip_install_is_typed() {
    use super::action::test::SkipInstall;
    let job = ok(&with_actions(
        "- test: {definitions: [{from: git, repository: r, path: p, name: n, skip_install: [all, deps]}]}\n",
    ));
    let Some(ActionKind::Test(Test::Definitions { definitions, .. })) =
        job.actions.first().map(|a| &a.kind)
    else {
        panic!("not a test shell block");
    };
    assert_eq!(
        definitions.first().map(|d| d.skip_install.clone()),
        Some(vec![SkipInstall::All, SkipInstall::Deps])
    );
}
