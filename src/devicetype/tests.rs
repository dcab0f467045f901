//! Unit tests: rendering of every shipped template, typed parsing, error cases.

use std::time::Duration;

use super::*;

/// Renders `dictionary` against the compiled-in templates.
fn render(dictionary: &str, context: &[(&str, serde_json::Value)]) -> RenderedDevice {
    let context: Context = context
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    match Templates::builtin().render(dictionary, &context) {
        Ok(rendered) => rendered,
        Err(e) => panic!("rendering failed: {e}"),
    }
}

fn render_err(templates: &Templates, dictionary: &str) -> Error {
    match templates.render(dictionary, &Context::new()) {
        Ok(r) => panic!("expected an error, got:\n{}", r.yaml),
        Err(e) => e,
    }
}

/// The typed configuration without the raw document, for readable snapshots.
fn typed(config: &DeviceConfig) -> DeviceConfig {
    DeviceConfig {
        raw: serde_norway::Value::Null,
        ..config.clone()
    }
}

const BBB: &str = "\
{% extends 'beaglebone-black.jinja2' %}
{% set connection_command = 'telnet ser2net-host 7001' %}
{% set power_on_command = 'pduclient --host pdu1 --port 3 --command on' %}
{% set power_off_command = 'pduclient --host pdu1 --port 3 --command off' %}
{% set hard_reset_command = 'pduclient --host pdu1 --port 3 --command reboot' %}
{% set extra_kernel_args = 'rootwait' %}
";

const RPI4: &str = "\
{% extends 'bcm2711-rpi-4-b.jinja2' %}
{% set connection_list = ['uart0', 'uart1'] %}
{% set connection_commands = {'uart0': 'telnet localhost 7002', 'uart1': 'telnet localhost 7003'} %}
{% set connection_tags = {'uart0': ['primary', 'telnet']} %}
{% set power_on_command = ['relayctl 4 on', 'sleep 1'] %}
{% set power_off_command = 'relayctl 4 off' %}
{% set hard_reset_command = ['relayctl 4 off', 'sleep 2', 'relayctl 4 on'] %}
{% set user_commands = {'hub_on': {'do': 'usbhub 2 on', 'undo': 'usbhub 2 off'}, 'beep': {'do': 'beep'}} %}
{% set device_info = [{'board_id': '10000000a1b2c3d4', 'usb_vendor_id': '0403', 'usb_product_id': '6001'}] %}
{% set environment = {'RELAY_CHANNEL': '4', 'LAB': 'desk'} %}
{% set test_character_delay = 5 %}
{% set static_ip = '192.168.10.50' %}
{% set static_gateway = '192.168.10.1' %}
{% set static_netmask = '255.255.255.0' %}
{% set static_dns = '192.168.10.1' %}
";

const QEMU: &str = "\
{% extends 'qemu.jinja2' %}
{% set mac_addr = '52:54:00:12:34:59' %}
{% set memory = 1024 %}
";

const QEMU_UBOOT_ARM: &str = "\
{% extends 'qemu-uboot-arm.jinja2' %}
{% set connection_command = 'telnet 127.0.0.1 5551' %}
{% set power_on_command = '/usr/lib/lavabox/lab/vboard start uboot-arm-01' %}
{% set power_off_command = '/usr/lib/lavabox/lab/vboard stop uboot-arm-01' %}
{% set hard_reset_command = 'echo system_reset | socat - UNIX-CONNECT:/run/lavabox/lab/uboot-arm-01.monitor' %}
";

#[test]
fn snapshot_beaglebone_black() {
    insta::assert_snapshot!("beaglebone-black", render(BBB, &[]).yaml);
}

#[test]
fn snapshot_bcm2711_rpi_4_b() {
    insta::assert_snapshot!("bcm2711-rpi-4-b", render(RPI4, &[]).yaml);
}

#[test]
fn snapshot_bcm2711_rpi_4_b_with_context() {
    let rendered = render(
        RPI4,
        &[
            ("console_device", "ttyS0".into()),
            ("extra_kernel_args", "8250.nr_uarts=1 cma=64M".into()),
            ("booti_kernel_addr", "0x01000000".into()),
            ("boot_retry", 2.into()),
            ("uboot_needs_interrupt", false.into()),
        ],
    );
    insta::assert_snapshot!("bcm2711-rpi-4-b-context", rendered.yaml);
}

#[test]
fn snapshot_qemu_amd64() {
    let rendered = render(QEMU, &[("arch", "amd64".into())]);
    insta::assert_snapshot!("qemu-amd64", rendered.yaml);
}

#[test]
fn snapshot_qemu_arm64_with_context() {
    let rendered = render(
        QEMU,
        &[
            ("arch", "arm64".into()),
            ("cpu", "max".into()),
            ("memory", 2048.into()),
            (
                "extra_options",
                serde_json::json!(["-smp 2", "-global virtio-blk-device.scsi=off"]),
            ),
            ("guestfs_interface", "virtio".into()),
        ],
    );
    insta::assert_snapshot!("qemu-arm64-context", rendered.yaml);
}

#[test]
fn snapshot_qemu_uboot_arm() {
    let rendered = render(QEMU_UBOOT_ARM, &[]);
    insta::assert_snapshot!("qemu-uboot-arm", rendered.yaml);
    insta::assert_debug_snapshot!("qemu-uboot-arm-typed", typed(&rendered.config));
}

#[test]
fn snapshot_base() {
    let rendered = render(
        "{% extends 'base.jinja2' %}\n{% set connection_command = 'cu -l /dev/ttyUSB0 -s 115200' %}\n",
        &[],
    );
    insta::assert_snapshot!("base", rendered.yaml);
}

#[test]
fn snapshot_base_uboot() {
    let rendered = render(
        "{% extends 'base-uboot.jinja2' %}\n{% set console_device = 'ttyS0' %}\n{% set bootm_kernel_addr = '0x80080000' %}\n",
        &[],
    );
    insta::assert_snapshot!("base-uboot", rendered.yaml);
}

#[test]
fn snapshot_lxc() {
    let rendered = render("{% extends 'lxc.jinja2' %}\n", &[]);
    insta::assert_snapshot!("lxc", rendered.yaml);
}

#[test]
fn every_builtin_template_has_a_snapshot_test() {
    // Keep this list in step with the snapshot tests above when adding a device type.
    let covered = [
        "base.jinja2",
        "base-uboot.jinja2",
        "bcm2711-rpi-4-b.jinja2",
        "beaglebone-black.jinja2",
        "lxc.jinja2",
        "qemu.jinja2",
        "qemu-uboot-arm.jinja2",
    ];
    let mut builtin: Vec<_> = builtin_template_names().collect();
    builtin.sort_unstable();
    let mut covered = covered.to_vec();
    covered.sort_unstable();
    assert_eq!(builtin, covered);
}

#[test]
fn beaglebone_black_typed() {
    let config = render(BBB, &[]).config;
    assert_eq!(
        config.commands.connect.as_deref(),
        Some("telnet ser2net-host 7001")
    );
    assert_eq!(
        config.commands.primary_connect(),
        Some("telnet ser2net-host 7001")
    );
    assert_eq!(
        config.commands.power_on,
        ["pduclient --host pdu1 --port 3 --command on"]
    );
    assert!(config.commands.soft_reboot.is_empty());
    assert_eq!(
        config.character_delays.boot,
        Some(Duration::from_millis(10))
    );
    assert_eq!(config.character_delays.test, None);
    let bootz = config.parameters.addresses(KernelType::Zimage);
    assert_eq!(bootz.map(|a| a.kernel.as_str()), Some("0x82000000"));
    assert_eq!(bootz.map(|a| a.dtb.as_str()), Some("0x88000000"));
    assert!(config.parameters.addresses(KernelType::Image).is_none());
    assert_eq!(
        config.actions.deploy.parameters.mkimage_arch.as_deref(),
        Some("arm")
    );
    assert!(config.actions.deploy.methods.contains("tftp"));
    let uboot = config.actions.boot.uboot.as_ref().expect("u-boot method");
    assert_eq!(uboot.parameters.bootloader_prompt, "U-Boot");
    assert!(uboot.parameters.needs_interrupt);
    let ramdisk = &uboot.commands["ramdisk"];
    assert_eq!(
        ramdisk[ramdisk.len() - 2],
        "setenv bootargs 'console=ttyO0,115200n8 root=/dev/ram0 rootwait ip=dhcp'"
    );
    assert_eq!(ramdisk.last().map(String::as_str), Some("{BOOTX}"));
    assert_eq!(
        uboot.commands.keys().collect::<Vec<_>>(),
        ["nbd", "nfs", "ramdisk", "sata", "ums", "usb"]
    );
    assert_eq!(
        config.constants.uboot.interrupt_prompt,
        "Hit any key to stop autoboot"
    );
    assert_eq!(config.constants.uboot.interrupt_character, " ");
    assert_eq!(config.constants.kernel_start_message, "Linux version [0-9]");
    assert_eq!(config.constants.default_shell_prompt, "lava-test: # ");
    assert_eq!(config.constants.posix.lava_test_results_dir, "/lava-%s");
    assert_eq!(config.constants.failure_retry, 1);
    assert_eq!(config.constants.boot_retry, None);
    assert_eq!(
        config.timeouts.actions["power-off"],
        Duration::from_secs(10)
    );
    assert_eq!(
        config.timeouts.actions["bootloader-commands"],
        Duration::from_secs(180)
    );
    assert_eq!(
        config.timeouts.connections["lava-test-shell"],
        Duration::from_secs(10)
    );
    assert_eq!(
        config.timeouts.connections["dd-image"],
        Duration::from_secs(600)
    );
}

#[test]
fn rpi4_typed() {
    let config = render(RPI4, &[]).config;
    let commands = &config.commands;
    assert_eq!(commands.connect, None);
    assert_eq!(commands.connections.len(), 2);
    assert_eq!(commands.connections["uart0"].tags, ["primary", "telnet"]);
    assert!(commands.connections["uart1"].tags.is_empty());
    assert_eq!(commands.primary_connect(), Some("telnet localhost 7002"));
    assert_eq!(commands.power_on, ["relayctl 4 on", "sleep 1"]);
    assert_eq!(commands.hard_reset.len(), 3);
    assert_eq!(commands.users["hub_on"].do_command, "usbhub 2 on");
    assert_eq!(
        commands.users["hub_on"].undo_command.as_deref(),
        Some("usbhub 2 off")
    );
    assert_eq!(commands.users["beep"].undo_command, None);
    assert_eq!(config.device_info.len(), 1);
    assert_eq!(config.device_info[0]["usb_vendor_id"], "0403");
    assert_eq!(config.environment["RELAY_CHANNEL"], "4");
    assert_eq!(config.character_delays.test, Some(Duration::from_millis(5)));
    assert_eq!(config.constants.uboot.interrupt_ctrl_list, ["c"]);
    let interrupt = config.uboot_interrupt().expect("u-boot");
    assert_eq!(interrupt.ctrl_chars, ["c"]);
    assert_eq!(interrupt.bootloader_prompt, "U-Boot>");
    assert_eq!(
        config.timeouts.actions["bootloader-interrupt"],
        Duration::from_secs(60)
    );
    let booti = config
        .parameters
        .addresses(KernelType::Image)
        .expect("booti");
    assert_eq!(booti.kernel, "0x00080000");
    assert_eq!(booti.ramdisk, "0x02700000");
    let ramdisk = &config.actions.boot.uboot.as_ref().expect("u-boot").commands["ramdisk"];
    assert!(ramdisk.contains(
        &"setenv bootargs 'console=ttyS1,115200n8 root=/dev/ram0 earlycon=uart,mmio32,0xfe215040 ip=192.168.10.50::192.168.10.1:255.255.255.0:::off:192.168.10.1:'".to_owned()
    ));
}

#[test]
fn context_overrides_defaults_but_not_dictionary_settings() {
    let dictionary = format!("{RPI4}{{% set bootloader_prompt = 'rpi=>' %}}\n");
    let config = render(
        &dictionary,
        &[
            ("console_device", "ttyS0".into()),
            ("bootloader_prompt", "ignored".into()),
            ("lava_test_results_dir", "/lava-custom-%s".into()),
            ("failure_retry", 3.into()),
        ],
    )
    .config;
    let uboot = config.actions.boot.uboot.expect("u-boot");
    assert_eq!(uboot.parameters.bootloader_prompt, "rpi=>");
    assert!(
        uboot.commands["ramdisk"]
            .iter()
            .any(|c| c.contains("console=ttyS0,115200n8"))
    );
    assert_eq!(
        config.constants.posix.lava_test_results_dir,
        "/lava-custom-%s"
    );
    assert_eq!(config.constants.failure_retry, 3);
}

#[test]
fn device_type_settings_beat_context_where_lava_fixes_them() {
    // The BeagleBone Black's addresses are fixed in the device type, as in LAVA.
    let config = render(BBB, &[("bootz_kernel_addr", "0x1000".into())]).config;
    let bootz = config
        .parameters
        .addresses(KernelType::Zimage)
        .expect("bootz");
    assert_eq!(bootz.kernel, "0x82000000");
}

#[test]
fn qemu_typed_per_arch() {
    let amd64 = render(QEMU, &[("arch", "amd64".into())]).config;
    let qemu = amd64.actions.boot.qemu.expect("qemu method");
    assert_eq!(qemu.command, "qemu-system-x86_64");
    assert!(qemu.options.contains(&"-enable-kvm".to_owned()));
    assert!(qemu.options.contains(&"-m 1024".to_owned()));
    assert!(
        qemu.options
            .contains(&"-net nic,model=virtio,macaddr=52:54:00:12:34:59 -net user".to_owned())
    );
    assert_eq!(qemu.boot_options["console"], "ttyS0,115200");
    assert!(
        amd64
            .available_architectures
            .contains(&"riscv64".to_owned())
    );
    let guest = amd64.actions.deploy.image_guest.expect("guest disk");
    assert_eq!((guest.size_mb, guest.interface.as_str()), (512, "ide"));

    let no_kvm = render(QEMU, &[("arch", "x86_64".into()), ("no_kvm", true.into())]).config;
    let qemu = no_kvm.actions.boot.qemu.expect("qemu method");
    assert!(!qemu.options.iter().any(|o| o.contains("kvm")));

    let arm64 = render(
        QEMU,
        &[
            ("arch", "arm64".into()),
            ("extra_options", serde_json::json!(["-smp 2"])),
        ],
    )
    .config;
    let qemu = arm64.actions.boot.qemu.expect("qemu method");
    assert_eq!(qemu.command, "qemu-system-aarch64");
    assert_eq!(&qemu.options[..2], ["-cpu cortex-a57", "-machine virt"]);
    assert_eq!(qemu.extra, ["-smp 2"]);
    let nfs = arm64.actions.boot.qemu_nfs.expect("qemu-nfs method");
    assert_eq!(nfs.append["root"], "/dev/nfs");
    assert_eq!(nfs.options, qemu.options);
}

#[test]
fn qemu_uboot_arm_boots_from_loopback_tftp() {
    let config = render(QEMU_UBOOT_ARM, &[]).config;
    let uboot = config.actions.boot.uboot.expect("u-boot method");
    assert_eq!(uboot.parameters.bootloader_prompt, "=>");
    assert_eq!(
        uboot.parameters.interrupt_prompt.as_deref(),
        Some("Hit any key to stop autoboot")
    );
    assert_eq!(
        uboot.commands["ramdisk"],
        [
            "setenv autoload no",
            "setenv initrd_high 0xffffffff",
            "setenv fdt_high 0xffffffff",
            "setenv ipaddr 10.0.2.15",
            "setenv netmask 255.255.255.0",
            "setenv gatewayip 10.0.2.2",
            "setenv serverip 127.0.0.1",
            "tftp {KERNEL_ADDR} {KERNEL}",
            "tftp {RAMDISK_ADDR} {RAMDISK}",
            "setenv initrd_size ${filesize}",
            "setenv bootargs 'console=ttyAMA0,115200n8 root=/dev/ram0  ip=dhcp'",
            "bootz {KERNEL_ADDR} {RAMDISK_ADDR}:${initrd_size} ${fdtcontroladdr}",
        ]
    );
    let bootz = config
        .parameters
        .addresses(KernelType::Zimage)
        .expect("bootz");
    assert_eq!(
        (bootz.kernel.as_str(), bootz.ramdisk.as_str()),
        ("0x40400000", "0x44000000")
    );
}

#[test]
fn uboot_error_messages_and_extra_message() {
    let dictionary = "{% extends 'beaglebone-black.jinja2' %}\n\
        {% set uboot_error_messages = ['Bad CRC', 'no bootable device'] %}\n\
        {% set uboot_extra_error_message = 'Abort' %}\n";
    let config = render(dictionary, &[]).config;
    assert_eq!(
        config.constants.uboot.error_messages,
        ["Bad CRC", "no bootable device", "Abort"]
    );
    let defaults = render(BBB, &[]).config;
    assert_eq!(defaults.constants.uboot.error_messages.len(), 16);
}

#[test]
fn timeout_variables_override_defaults() {
    let dictionary = "{% extends 'qemu.jinja2' %}\n\
        {% set action_timeout_auto_login = 5 %}\n\
        {% set connection_timeout_feedback = 120 %}\n";
    let config = render(dictionary, &[("arch", "amd64".into())]).config;
    assert_eq!(
        config.timeouts.actions["auto-login-action"],
        Duration::from_secs(300)
    );
    assert_eq!(
        config.timeouts.connections["lava-test-shell"],
        Duration::from_secs(120)
    );
}

#[test]
fn extends_follows_lava_rules() {
    assert_eq!(
        extends("{% extends 'qemu.jinja2' %}\n").as_deref(),
        Some("qemu")
    );
    assert_eq!(
        extends("{%- extends \"bbb.jinja2\" -%}").as_deref(),
        Some("bbb")
    );
    assert_eq!(extends("{% extends 'plain' %}").as_deref(), Some("plain"));
    assert_eq!(
        extends("{# {% extends 'old.jinja2' %} #}\n{% extends 'new.jinja2' %}").as_deref(),
        Some("new")
    );
    assert_eq!(extends("{% set x = 1 %}"), None);
    assert_eq!(
        extends("{% extends 'a.jinja2' %}{% extends 'b.jinja2' %}"),
        None
    );
    assert_eq!(extends("{% extends name %}"), None);
}

#[test]
fn unknown_template_is_named() {
    let e = render_err(&Templates::builtin(), "{% extends 'nope.jinja2' %}\n");
    assert!(
        matches!(&e, Error::TemplateNotFound { name, .. } if name == "nope.jinja2"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "device-type template `nope.jinja2` not found in built-in templates"
    );
}

#[test]
fn missing_parent_template_reports_the_child() {
    let templates = Templates::from_memory([("orphan.jinja2", "{% extends 'gone.jinja2' %}\n")]);
    let e = render_err(&templates, "{% extends 'orphan.jinja2' %}\n");
    match &e {
        Error::Template { file, message, .. } => {
            assert_eq!(file, "orphan.jinja2");
            assert!(message.contains("gone.jinja2"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn syntax_error_in_dictionary_has_line() {
    let e = render_err(
        &Templates::builtin(),
        "{% extends 'qemu.jinja2' %}\n{% set x = [1, 2 %}\n",
    );
    match &e {
        Error::Template {
            file,
            line,
            message,
        } => {
            assert_eq!(file, "device dictionary");
            assert_eq!(*line, Some(2));
            assert!(message.starts_with("syntax error"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("device dictionary line 2: syntax error"),
        "{e}"
    );
}

#[test]
fn syntax_error_in_template_names_the_template() {
    let templates = Templates::from_memory([("broken.jinja2", "a: 1\n\nb: {% if %}\n")]);
    let e = render_err(&templates, "{% extends 'broken.jinja2' %}");
    match &e {
        Error::Template { file, line, .. } => {
            assert_eq!(file, "broken.jinja2");
            assert_eq!(*line, Some(3));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn self_extending_template_is_an_error_not_a_crash() {
    let templates = Templates::from_memory([("loop.jinja2", "{% extends 'loop.jinja2' %}")]);
    let e = render_err(&templates, "{% extends 'loop.jinja2' %}");
    assert!(matches!(e, Error::Template { .. }), "{e:?}");
}

#[test]
fn invalid_yaml_names_the_rendered_line() {
    let templates = Templates::from_memory([(
        "bad.jinja2",
        "constants:\n  posix: [unclosed\nactions: {}\n",
    )]);
    let e = render_err(&templates, "{% extends 'bad.jinja2' %}");
    match &e {
        Error::Yaml { line, .. } => assert!(*line >= 2, "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("rendered device configuration is not valid YAML"),
        "{e}"
    );
}

#[test]
fn missing_required_key_is_named() {
    let templates = Templates::from_memory([("empty.jinja2", "parameters: {}\n")]);
    let e = render_err(&templates, "{% extends 'empty.jinja2' %}");
    assert_eq!(
        e.to_string(),
        "rendered device configuration: `constants`: required key not provided"
    );
}

/// The `constants` block of a minimal valid configuration.
const CONSTANTS: &str = "\
constants:
  posix: {lava_test_sh_cmd: /bin/sh, lava_test_results_dir: /lava-%s, lava_test_shell_file: ~/.bashrc}
  u-boot: {interrupt-prompt: stop, interrupt-character: ' ', final-message: Starting kernel}
  shutdown-message: going down
  kernel-start-message: Linux version
  default-shell-prompt: '# '
";

fn config_err(yaml: &str) -> String {
    match DeviceConfig::from_yaml(&format!("{CONSTANTS}{yaml}")) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_configuration_parses() {
    let config = match DeviceConfig::from_yaml(CONSTANTS) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.commands, Commands::default());
    assert_eq!(config.actions, Actions::default());
    assert!(config.constants.uboot.interrupt_newline);
}

#[test]
fn shape_errors_name_the_key() {
    assert_eq!(
        config_err("extra: 1\n"),
        "rendered device configuration: `extra`: extra keys not allowed"
    );
    assert_eq!(
        config_err("actions: {deploy: {methods: {}}, boot: {methods: {}}}\n"),
        "rendered device configuration: `actions.boot.connections`: required key not provided"
    );
    assert_eq!(
        config_err("timeouts: {actions: {power-off: {minutes: 1, seconds: 2}}}\n"),
        "rendered device configuration: `timeouts.actions.power-off`: give exactly one of days, hours, minutes, seconds"
    );
    assert_eq!(
        config_err("timeouts: {actions: {power-off: {minutes: soon}}}\n"),
        "rendered device configuration: `timeouts.actions.power-off.minutes`: expected a whole number"
    );
    assert_eq!(
        config_err("commands: {power_on: {a: b}}\n"),
        "rendered device configuration: `commands.power_on`: expected a string"
    );
    assert_eq!(
        config_err("commands: {users: {x: {undo: y}}}\n"),
        "rendered device configuration: `commands.users.x.do`: required key not provided"
    );
    assert_eq!(
        config_err("device_info: [{usb_vendor_id: '0403'}]\nusb_vendor_id: '12345'\n"),
        "rendered device configuration: `usb_vendor_id`: expected 4 characters"
    );
    assert_eq!(
        config_err("character_delays: {boot: -5}\n"),
        "rendered device configuration: `character_delays.boot`: expected a non-negative integer"
    );
}

#[test]
fn ssh_primary_connection_forbids_power_commands() {
    let message = config_err(
        "commands: {power_on: 'relay on'}\nactions:\n  deploy: {methods: {ssh: {host: 10.0.0.5}}}\n  boot: {connections: {ssh: }, methods: {ssh: }}\n",
    );
    assert!(message.contains("power control commands"), "{message}");
}

#[test]
fn nested_info_values_are_kept_as_json() {
    let config = match DeviceConfig::from_yaml(&format!(
        "{CONSTANTS}static_info: [{{board_id: 42, ports: [1, 2]}}]\n"
    )) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.static_info[0]["board_id"], "42");
    assert_eq!(config.static_info[0]["ports"], "[1,2]");
    assert_eq!(config.board_id, None);
}

#[test]
fn template_source_and_listing() {
    let templates = Templates::from_memory([
        ("base.jinja2", "base"),
        ("base-uboot.jinja2", "base-uboot"),
        ("board-a.jinja2", "a"),
        ("notes.txt", "not a template"),
        ("health-checks/board-a.yaml", "job_name: health"),
        ("health-checks/board-b.yml", "job_name: health b"),
    ]);
    assert_eq!(
        templates.device_types().ok(),
        Some(vec!["board-a".to_owned()])
    );
    assert_eq!(
        templates.template_source("board-a").ok().as_deref(),
        Some("a")
    );
    assert_eq!(
        templates.template_source("board-a.jinja2").ok().as_deref(),
        Some("a")
    );
    assert!(matches!(
        templates.template_source("board-z"),
        Err(Error::TemplateNotFound { .. })
    ));
    for bad in ["../etc/passwd", ".hidden", "a/b", ""] {
        assert!(
            matches!(templates.template_source(bad), Err(Error::InvalidName(_))),
            "{bad}"
        );
    }
    assert_eq!(
        templates.health_check("board-a").ok().flatten().as_deref(),
        Some("job_name: health")
    );
    assert_eq!(
        templates.health_check("board-b").ok().flatten().as_deref(),
        Some("job_name: health b")
    );
    assert_eq!(templates.health_check("board-c").ok().flatten(), None);
    assert!(matches!(
        templates.health_check("../x"),
        Err(Error::InvalidName(_))
    ));
}

#[test]
fn builtin_lists_the_shipped_device_types() {
    assert_eq!(
        Templates::builtin().device_types().ok(),
        Some(
            [
                "bcm2711-rpi-4-b",
                "beaglebone-black",
                "lxc",
                "qemu",
                "qemu-uboot-arm"
            ]
            .map(str::to_owned)
            .to_vec()
        )
    );
}

#[test]
fn earlier_sources_win() {
    let local = Templates::from_memory([("qemu.jinja2", "local copy")]);
    assert_eq!(
        local.template_source("qemu").ok().as_deref(),
        Some("local copy")
    );
    let layered = local.with_builtin();
    assert_eq!(
        layered.template_source("qemu").ok().as_deref(),
        Some("local copy")
    );
    assert!(
        layered
            .template_source("beaglebone-black")
            .is_ok_and(|t| t.contains("base-uboot.jinja2"))
    );
}

#[test]
fn kernel_types() {
    assert_eq!(KernelType::from_job("zimage"), Some(KernelType::Zimage));
    assert_eq!(
        KernelType::from_job("uimage").map(KernelType::boot_command),
        Some("bootm")
    );
    assert_eq!(
        KernelType::from_job("image").map(KernelType::boot_command),
        Some("booti")
    );
    assert_eq!(KernelType::from_job("vmlinux"), None);
}

#[test]
fn python_methods_of_lava_templates_work() {
    let templates = Templates::from_memory([
        (
            "lava-style.jinja2",
            "\
{% extends 'base.jinja2' %}
{% block body %}
actions:
  deploy:
    methods: {image: }
  boot:
    connections: {serial: }
    methods:
      first:
{% block params %}
        value: {{ names.get('m', 'none') }}-{{ names.get('missing', 'fallback') }}
{% endblock params %}
      second:
{{ self.params() }}
{% for k, v in names.items() %}
      {{ k }}{{ v }}:
{% endfor %}
      {{ names.keys() | join('+') }}{{ names.values() | join('+') }}:
      {{ 'A-b'.lower() }}{{ 'x y'.split() | length }}{{ 'abc'.startswith('ab') }}:
{% endblock body %}
",
        ),
        (
            "base.jinja2",
            include_str!("../../device-types/base.jinja2"),
        ),
    ]);
    let dictionary = "{% extends 'lava-style.jinja2' %}\n{% set names = {'m': 'n', 'o': 'p'} %}\n";
    let config = match templates.render(dictionary, &Context::new()) {
        Ok(r) => r.config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        config.actions.boot.methods.iter().collect::<Vec<_>>(),
        ["a-b2True", "first", "m+on+p", "mn", "op", "second"]
    );
    let methods = &config.raw["actions"]["boot"]["methods"];
    assert_eq!(methods["first"]["value"].as_str(), Some("n-fallback"));
    assert_eq!(methods["second"], methods["first"]);
}

#[test]
fn uboot_interrupt_falls_back_to_constants() {
    let bbb = render(BBB, &[]).config;
    let interrupt = bbb.uboot_interrupt().expect("u-boot");
    assert!(interrupt.needs_interrupt && interrupt.newline);
    assert_eq!(interrupt.interrupt_prompt, "Hit any key to stop autoboot");
    // The templates give an empty interrupt_char, so only a newline is sent, as in LAVA.
    assert_eq!(interrupt.interrupt_char, "");
    assert!(interrupt.ctrl_chars.is_empty());

    let yaml = format!(
        "{CONSTANTS}actions:\n  deploy: {{methods: {{tftp: }}}}\n  boot:\n    connections: {{serial: }}\n    methods: {{u-boot: {{parameters: {{bootloader_prompt: '=>'}}}}}}\n"
    );
    let config = DeviceConfig::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let interrupt = config.uboot_interrupt().expect("u-boot");
    assert_eq!(interrupt.interrupt_prompt, "stop");
    assert_eq!(interrupt.interrupt_char, " ");
    assert!(render(QEMU, &[]).config.uboot_interrupt().is_none());
}

#[test]
fn names_jinja2_lacks_are_ordinary_variables() {
    // minijinja has a `debug` global; Jinja2 does not, and LAVA templates use the name.
    let templates =
        Templates::from_memory([("t.jinja2", "constants: {{ debug | default('plain') }}\n")]);
    let e = render_err(&templates, "{% extends 't.jinja2' %}");
    assert!(
        e.to_string().contains("`constants`: expected a mapping"),
        "{e}"
    );
    assert_eq!(
        templates
            .render_yaml("{% extends 't.jinja2' %}", &Context::new())
            .ok()
            .as_deref(),
        Some("constants: plain")
    );
}

#[test]
fn microcontroller_usb_identity() {
    let config = DeviceConfig::from_yaml(&format!(
        "{CONSTANTS}board_id: '0240000031754e45'\nusb_vendor_id: '0d28'\nusb_product_id: '0204'\nusb_sleep: 10\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.board_id.as_deref(), Some("0240000031754e45"));
    assert_eq!(config.usb_vendor_id.as_deref(), Some("0d28"));
    assert_eq!(config.usb_product_id.as_deref(), Some("0204"));
    assert_eq!(config.usb_sleep, Some(10));
}

#[test]
fn debug_output_names_sources_without_their_text() {
    let shown = format!(
        "{:?}",
        Templates::new(["/etc/lavabox/device-types"]).with_builtin()
    );
    assert!(
        shown.contains("/etc/lavabox/device-types") && shown.contains("qemu.jinja2"),
        "{shown}"
    );
    assert!(!shown.contains("extends"), "{shown}");
}

#[test]
fn writable_dir_is_the_first_directory() {
    assert_eq!(Templates::builtin().writable_dir(), None);
    let templates = Templates::new([
        "/etc/lavabox/device-types",
        "/usr/share/lavabox/device-types",
    ])
    .with_builtin();
    assert_eq!(
        templates.writable_dir(),
        Some(std::path::Path::new("/etc/lavabox/device-types"))
    );
}

#[test]
fn written_files_shadow_the_shipped_ones_at_the_next_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let templates = Templates::new([dir.path().join("written")]).with_builtin();
    assert_eq!(templates.health_check("qemu").unwrap(), None);
    let path = templates
        .write(FileKind::Template, "qemu", "{% extends 'base.jinja2' %}\n")
        .unwrap();
    assert_eq!(path, dir.path().join("written/qemu.jinja2"));
    assert_eq!(
        templates.template_source("qemu").unwrap(),
        "{% extends 'base.jinja2' %}\n"
    );
    templates
        .write(FileKind::HealthCheck, "qemu", "job_name: hc\n")
        .unwrap();
    assert_eq!(
        templates.health_check("qemu").unwrap().as_deref(),
        Some("job_name: hc\n")
    );
    assert!(matches!(
        templates.write(FileKind::HealthCheck, "../x", ""),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        Templates::builtin().write(FileKind::Template, "qemu", ""),
        Err(Error::NotWritable)
    ));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Template-ish text: fragments of Jinja2 syntax in random order.
    fn template_text() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("{%"),
            Just("%}"),
            Just("{{"),
            Just("}}"),
            Just("{#"),
            Just("#}"),
            Just("set"),
            Just("x"),
            Just("="),
            Just("'"),
            Just("\""),
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just(":"),
            Just(","),
            Just("\n"),
            Just(" "),
            Just("if"),
            Just("endif"),
            Just("for"),
            Just("in"),
            Just("block"),
            Just("endblock"),
            Just("body"),
            Just("extends"),
            Just("'base.jinja2'"),
            Just("|"),
            Just("default"),
            Just("("),
            Just(")"),
            Just("self"),
            Just(".get"),
            Just(".items"),
            Just("console_device"),
            Just("user_commands"),
            Just("42"),
            Just("True"),
            Just("~"),
            Just("+"),
        ];
        prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
    }

    proptest! {
        // Few cases: a debug-build render takes tens of milliseconds.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn rendering_arbitrary_dictionaries_never_panics(body in template_text()) {
            let templates = Templates::builtin();
            let _ = templates.render(&format!("{{% extends 'beaglebone-black.jinja2' %}}\n{body}"), &Context::new());
            let _ = templates.render(&body, &Context::new());
            let _ = extends(&body);
        }

        #[test]
        fn arbitrary_context_values_never_panic(value in "\\PC{0,40}", key in prop_oneof![
            Just("arch"), Just("extra_kernel_args"), Just("console_device"), Just("memory"),
            Just("bootloader_prompt"), Just("boot_retry"), Just("failure_retry"),
        ]) {
            let mut context = Context::new();
            context.insert(key.to_owned(), value.into());
            let _ = Templates::builtin().render(QEMU, &context);
            let _ = Templates::builtin().render(RPI4, &context);
        }

        #[test]
        fn reading_arbitrary_yaml_never_panics(text in "\\PC{0,200}") {
            let _ = DeviceConfig::from_yaml(&text);
            let _ = DeviceConfig::from_yaml(&format!("{CONSTANTS}{text}"));
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep_expression = format!(
        "{{% extends 'qemu.jinja2' %}}\n{{% set x = {}1{} %}}\n",
        "[".repeat(2_000),
        "]".repeat(2_000)
    );
    assert!(
        Templates::builtin()
            .render(&deep_expression, &Context::new())
            .is_err()
    );
    let deep_blocks = format!(
        "{{% extends 'qemu.jinja2' %}}\n{}{}",
        "{% if true %}".repeat(1_000),
        "{% endif %}".repeat(1_000)
    );
    let _ = Templates::builtin().render(&deep_blocks, &Context::new());
    let deep_yaml = format!("{}1{}", "[".repeat(2_000), "]".repeat(2_000));
    assert!(DeviceConfig::from_yaml(&deep_yaml).is_err());
}
