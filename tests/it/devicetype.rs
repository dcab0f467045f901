//! Integration tests: devicetype (templates read from real directories, as the appliance does).

use std::fs;
use std::path::{Path, PathBuf};

use lavabox::devicetype::{
    Context, Error, TemplateDir, Templates, builtin_template_names, check_dictionary,
};

/// The repository's shipped `device-types/` directory.
fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("device-types")
}

/// File names of the `*.jinja2` files in the shipped directory, sorted.
fn shipped_templates() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(shipped_dir())
        .expect("device-types/ is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jinja2"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_device_type_renders_with_a_bare_dictionary() {
    let templates = Templates::new([shipped_dir()]);
    let types = templates.device_types().expect("listing device types");
    assert!(!types.is_empty());
    for name in types {
        let dictionary = format!("{{% extends '{name}.jinja2' %}}\n");
        for context in [Context::new(), amd64_context()] {
            let rendered = match templates.render(&dictionary, &context) {
                Ok(r) => r,
                Err(e) => panic!("{name} with context {context:?}: {e}"),
            };
            let config = &rendered.config;
            assert!(
                !config.actions.boot.methods.is_empty(),
                "{name}: no boot methods"
            );
            assert!(
                !config.actions.deploy.methods.is_empty(),
                "{name}: no deploy methods"
            );
            assert!(!config.timeouts.actions.is_empty(), "{name}: no timeouts");
        }
    }
}

fn amd64_context() -> Context {
    let mut context = Context::new();
    context.insert("arch".into(), "amd64".into());
    context
}

#[test]
fn compiled_in_templates_match_the_shipped_directory() {
    let mut builtin: Vec<String> = builtin_template_names().map(str::to_owned).collect();
    builtin.sort();
    assert_eq!(
        builtin,
        shipped_templates(),
        "device-types/ and the BUILTIN list in src/devicetype/source.rs differ"
    );
    let from_disk = Templates::new([shipped_dir()]);
    let compiled = Templates::builtin();
    for name in shipped_templates() {
        assert_eq!(
            from_disk.template_source(&name).ok(),
            compiled.template_source(&name).ok(),
            "{name}"
        );
    }
}

#[test]
fn check_dictionary_renders_and_names_the_template() {
    let shipped = shipped_dir();
    let dirs = [shipped.as_path()];
    let dictionary = "{% extends 'beaglebone-black.jinja2' %}\n\
        {% set connection_command = 'telnet ser2net-host 7001' %}\n\
        {% set power_on_command = 'pduclient --host pdu1 --port 3 --command on' %}\n";
    assert_eq!(
        check_dictionary(&dirs, dictionary).ok().as_deref(),
        Some("beaglebone-black")
    );
    assert!(matches!(
        check_dictionary(&dirs, "{% set x = 1 %}"),
        Err(Error::NoExtends)
    ));
    assert!(matches!(
        check_dictionary(&dirs, "{% extends 'no-such-board.jinja2' %}"),
        Err(Error::TemplateNotFound { .. })
    ));
    // Renders, but into something that is not a device configuration.
    let broken = "{% extends 'qemu.jinja2' %}\n{% set user_commands = {'x': {'undo': 'y'}} %}\n";
    let e = check_dictionary(&dirs, broken).expect_err("user command without do");
    assert!(e.to_string().contains("commands.users.x.do"), "{e}");
}

#[test]
fn local_directory_overrides_shipped_templates() {
    let local = tempfile::tempdir().expect("tempdir");
    // An admin's own device type extending the shipped base, and a replacement for a shipped one.
    fs::write(
        local.path().join("my-board.jinja2"),
        "{% extends 'base-uboot.jinja2' %}\n{% set bootloader_prompt = 'my=>' %}\n",
    )
    .expect("write my-board");
    fs::write(
        local.path().join("beaglebone-black.jinja2"),
        "{% extends 'base-uboot.jinja2' %}\n{% set bootloader_prompt = 'local-bbb' %}\n",
    )
    .expect("write beaglebone-black");
    fs::create_dir(local.path().join("health-checks")).expect("mkdir");
    fs::write(
        local.path().join("health-checks/my-board.yml"),
        "job_name: my-board health\n",
    )
    .expect("write health check");

    // As the appliance sees them: the admin's directory, then the shipped one.
    let templates = Templates::from_dirs([
        TemplateDir::Admin(local.path().to_path_buf()),
        TemplateDir::Shipped(shipped_dir()),
    ]);
    let types = templates.device_types().expect("list");
    assert!(types.contains(&"my-board".to_owned()));
    assert!(types.contains(&"qemu".to_owned()));
    assert_eq!(types.iter().filter(|t| *t == "beaglebone-black").count(), 1);

    let prompt = |dictionary: &str| {
        let rendered = templates
            .render(dictionary, &Context::new())
            .unwrap_or_else(|e| panic!("{e}"));
        rendered
            .config
            .actions
            .boot
            .uboot
            .map(|u| u.parameters.bootloader_prompt)
    };
    assert_eq!(
        prompt("{% extends 'my-board.jinja2' %}").as_deref(),
        Some("my=>")
    );
    assert_eq!(
        prompt("{% extends 'beaglebone-black.jinja2' %}").as_deref(),
        Some("local-bbb")
    );

    assert_eq!(
        templates.health_check("my-board").ok().flatten().as_deref(),
        Some("job_name: my-board health\n")
    );
    // The shipped health check for the virtual x86 board is an example: not applied until
    // the admin installs it, then found in the local dir.
    assert_eq!(templates.health_check("qemu").ok().flatten(), None);
    fs::copy(
        shipped_dir().join("health-checks/qemu.yaml"),
        local.path().join("health-checks/qemu.yaml"),
    )
    .expect("install the shipped health check");
    assert!(
        templates
            .health_check("qemu")
            .ok()
            .flatten()
            .is_some_and(|job| job.contains("job_name: qemu health check"))
    );

    // Edits apply to the next render: nothing is cached.
    fs::write(
        local.path().join("my-board.jinja2"),
        "{% extends 'base-uboot.jinja2' %}\n{% set bootloader_prompt = 'edited=>' %}\n",
    )
    .expect("rewrite my-board");
    assert_eq!(
        prompt("{% extends 'my-board.jinja2' %}").as_deref(),
        Some("edited=>")
    );
}

#[test]
fn missing_directories_hold_nothing() {
    let templates = Templates::new(["/nonexistent/lavabox/device-types"]).with_builtin();
    assert!(
        templates
            .device_types()
            .expect("list")
            .contains(&"qemu-uboot-arm".to_owned())
    );
    let e = Templates::new(["/nonexistent/lavabox/device-types"])
        .render("{% extends 'qemu.jinja2' %}", &Context::new())
        .expect_err("no templates at all");
    assert!(
        e.to_string().contains("/nonexistent/lavabox/device-types"),
        "{e}"
    );
}

/// Engine compatibility with LAVA's own templates: renders a bare dictionary for every device
/// type in `$LAVABOX_LAVA_DEVICE_TYPES` (e.g. `/usr/share/lava-server/device-types` from the
/// lava-server package) and reads the result. With `$LAVABOX_RENDER_OUT` set, the YAML of each
/// type is written there as `<type>.yaml`, to compare with Python Jinja2's rendering.
/// Run with `cargo test --test it lava_templates -- --ignored`.
#[test]
#[ignore = "needs LAVA's templates in $LAVABOX_LAVA_DEVICE_TYPES"]
fn lava_templates_render_with_our_engine() {
    let Some(dir) = std::env::var_os("LAVABOX_LAVA_DEVICE_TYPES") else {
        panic!("set LAVABOX_LAVA_DEVICE_TYPES to LAVA's device-types directory");
    };
    let out = std::env::var_os("LAVABOX_RENDER_OUT").map(PathBuf::from);
    let templates = Templates::new([PathBuf::from(dir)]);
    let mut failures = Vec::new();
    let types = templates
        .device_types()
        .expect("listing LAVA's device types");
    for name in &types {
        let dictionary = format!("{{% extends '{name}.jinja2' %}}\n");
        match templates.render_yaml(&dictionary, &amd64_context()) {
            Ok(yaml) => {
                if let Some(out) = &out {
                    fs::write(out.join(format!("{name}.yaml")), &yaml).expect("write rendering");
                }
                if let Err(e) = lavabox::devicetype::DeviceConfig::from_yaml(&yaml) {
                    failures.push(format!("{name}: {e}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} device types failed:\n{}",
        failures.len(),
        types.len(),
        failures.join("\n")
    );
}
