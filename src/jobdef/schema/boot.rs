//! Boot schemas, one per `method:` value LAVA 2023.01 knows.

use std::sync::LazyLock;

use super::deploy::docker;
use super::job::action_common;
use super::{Field, KeyPat, MapSch, Sch, opt, req};

/// `prompts`: a non-empty string or a list of them.
pub(crate) fn prompts() -> Sch {
    Sch::AnyOf(vec![
        Sch::nonempty_str(),
        Sch::List(vec![Sch::nonempty_str()]),
    ])
}

/// `auto_login`.
///
/// The job schema's two forms, and the server's `_auto_login_schema`, which always refuses keys
/// other than these five. When not strict, the first form tolerates a lone `password` or
/// `password_prompt` (the submission schema then still wants strings).
pub(crate) fn auto_login() -> Sch {
    let with_password = || {
        MapSch::new(vec![
            req("login_prompt", Sch::nonempty_str()),
            req("username", Sch::Str),
            req("password_prompt", Sch::Str),
            req("password", Sch::Str),
            opt("login_commands", Sch::str_list()),
        ])
        .closed_always()
        .sch()
    };
    let without = |password: Vec<Field>| {
        MapSch::new(vec![
            req("login_prompt", Sch::nonempty_str()),
            req("username", Sch::Str),
            opt("login_commands", Sch::List(vec![Sch::nonempty_str()])),
        ])
        .with(password)
        .closed_always()
        .sch()
    };
    Sch::by_mode(
        Sch::AnyOf(vec![without(vec![]), with_password()]),
        Sch::AnyOf(vec![
            without(vec![
                opt("password_prompt", Sch::Str),
                opt("password", Sch::Str),
            ]),
            with_password(),
        ]),
    )
}

/// `transfer_overlay`.
pub(crate) fn transfer_overlay() -> Sch {
    MapSch::new(vec![
        req("download_command", Sch::Str),
        req("unpack_command", Sch::Str),
        opt("transfer_method", Sch::Str),
    ])
    .sch()
}

fn method(name: &'static str) -> Field {
    req("method", Sch::Method(name))
}

fn boot(name: &'static str, fields: Vec<Field>) -> Sch {
    MapSch::new(vec![])
        .with(action_common().into_fields())
        .with(vec![
            opt(
                "parameters",
                MapSch::new(vec![
                    opt("kernel-start-message", Sch::Str),
                    opt("shutdown-message", Sch::Str),
                ])
                .sch(),
            ),
            opt("soft_reboot", Sch::str_or_list()),
        ])
        .with(vec![method(name)])
        .with(fields)
        .sch()
}

/// The keys shared by the interactive bootloaders (`commands`, `prompts`, `auto_login`, …).
fn bootloader_common() -> Vec<Field> {
    vec![
        req("commands", Sch::str_or_list()),
        opt("prompts", prompts()),
        opt("auto_login", auto_login()),
        opt("use_bootscript", Sch::Bool),
        opt("transfer_overlay", transfer_overlay()),
    ]
}

/// Module name (LAVA's method with `-` → `_`) → schema.
pub(crate) static BOOT: LazyLock<Vec<(&'static str, Sch)>> = LazyLock::new(|| {
    let grub = || {
        vec![
            req("commands", Sch::str_or_list()),
            opt("auto_login", auto_login()),
            opt("boot_finished", Sch::str_or_list()),
            opt("expect_shell", Sch::Bool),
            opt("prompts", prompts()),
            opt("use_bootscript", Sch::Bool),
            opt("transfer_overlay", transfer_overlay()),
        ]
    };
    let login = || {
        vec![
            opt("prompts", prompts()),
            opt("auto_login", auto_login()),
            opt("transfer_overlay", transfer_overlay()),
        ]
    };
    vec![
        (
            "barebox",
            boot("barebox", {
                let mut f = bootloader_common();
                f.retain(|f| f.key() != "use_bootscript");
                f
            }),
        ),
        (
            "bootloader",
            boot(
                "bootloader",
                vec![
                    req("bootloader", Sch::Str),
                    req("commands", Sch::str_list()),
                    opt("use_bootscript", Sch::Bool),
                    opt("prompts", prompts()),
                ],
            ),
        ),
        ("cmsis_dap", boot("cmsis-dap", vec![])),
        (
            "depthcharge",
            boot("depthcharge", {
                let mut f = bootloader_common();
                f.push(opt("extra_kernel_args", Sch::Str));
                f
            }),
        ),
        ("dfu", boot("dfu", vec![])),
        (
            "docker",
            boot(
                "docker",
                vec![
                    req("command", Sch::Str),
                    opt("prompts", prompts()),
                    opt("downloads-namespace", Sch::Str),
                ],
            ),
        ),
        (
            "fastboot",
            boot("fastboot", {
                let mut f = login();
                f.push(opt("commands", Sch::str_list()));
                f.push(opt("use_bootscript", Sch::Bool));
                f.push(opt("docker", docker("image").sch()));
                f
            }),
        ),
        (
            "fvp",
            boot(
                "fvp",
                vec![
                    opt("use_telnet", Sch::Bool),
                    req("console_string", Sch::Str),
                    opt("feedbacks", Sch::str_list()),
                    req("image", Sch::Str),
                    opt("license_variable", Sch::Str),
                    opt("version_string", Sch::Str),
                    req("arguments", Sch::str_list()),
                    req("prompts", prompts()),
                    req("docker", docker("name").sch()),
                    opt("transfer_overlay", transfer_overlay()),
                    opt("auto_login", auto_login()),
                ],
            ),
        ),
        (
            "gdb",
            boot(
                "gdb",
                vec![req("commands", Sch::Str), opt("container", Sch::Str)],
            ),
        ),
        ("grub", boot("grub", grub())),
        ("grub_efi", boot("grub-efi", grub())),
        ("ipxe", boot("ipxe", bootloader_common())),
        ("jlink", boot("jlink", vec![])),
        (
            "kexec",
            boot(
                "kexec",
                vec![
                    req("boot_message", Sch::Str),
                    opt("prompts", prompts()),
                    opt("auto_login", auto_login()),
                    opt("deploy", Sch::Bool),
                    opt("command", Sch::Str),
                    opt("kernel", Sch::Str),
                    opt("dtb", Sch::Str),
                    opt("initrd", Sch::Str),
                    opt("options", Sch::str_list()),
                    opt("kernel-config", Sch::Str),
                    opt("transfer_overlay", transfer_overlay()),
                    opt("on_panic", Sch::Bool),
                ],
            ),
        ),
        ("lxc", boot("lxc", vec![req("prompts", prompts())])),
        (
            "minimal",
            boot("minimal", {
                let mut f = login();
                f.push(opt("pre_power_command", Sch::Bool));
                f.push(opt("pre_os_command", Sch::Bool));
                f.push(opt("reset", Sch::Bool));
                f
            }),
        ),
        ("monitor", boot("monitor", vec![])),
        ("musca", boot("musca", vec![opt("prompts", prompts())])),
        (
            "new_connection",
            boot("new_connection", {
                let mut f = login();
                f.push(req("connection", Sch::Str));
                f
            }),
        ),
        ("openocd", boot("openocd", vec![])),
        ("pyocd", boot("pyocd", vec![])),
        (
            "qemu",
            boot("qemu", {
                let mut f = login();
                f.push(opt("connection", Sch::Lit("serial")));
                f.push(opt("media", Sch::Lit("tmpfs")));
                f.push(opt(
                    "docker",
                    docker("image").with(vec![opt("binary", Sch::Str)]).sch(),
                ));
                f
            }),
        ),
        (
            "qemu_iso",
            boot(
                "qemu-iso",
                vec![
                    req("media", Sch::Lit("img")),
                    opt("prompts", prompts()),
                    opt("auto_login", auto_login()),
                ],
            ),
        ),
        (
            "qemu_nfs",
            boot("qemu-nfs", {
                let mut f = login();
                f.push(opt("connection", Sch::Lit("serial")));
                f
            }),
        ),
        (
            "recovery",
            boot(
                "recovery",
                vec![req("commands", Sch::OneOf(&["recovery", "exit"]))],
            ),
        ),
        (
            "schroot",
            boot(
                "schroot",
                vec![
                    opt("prompts", prompts()),
                    req("connection", Sch::Lit("ssh")),
                    req("schroot", Sch::Str),
                ],
            ),
        ),
        (
            "ssh",
            boot(
                "ssh",
                vec![
                    opt("prompts", prompts()),
                    req("connection", Sch::Lit("ssh")),
                    opt(
                        "parameters",
                        MapSch::new(vec![opt("hostID", Sch::Str), opt("host_key", Sch::Str)]).sch(),
                    ),
                ],
            ),
        ),
        ("u_boot", boot("u-boot", bootloader_common())),
        (
            "uefi",
            boot(
                "uefi",
                vec![
                    req("commands", Sch::str_or_list()),
                    opt("shell_menu", Sch::Str),
                    opt("prompts", prompts()),
                    opt("auto_login", auto_login()),
                ],
            ),
        ),
        (
            "uefi_menu",
            boot(
                "uefi-menu",
                vec![
                    opt("commands", Sch::Str),
                    opt("line_separator", Sch::Str),
                    opt("prompts", prompts()),
                    opt("auto_login", auto_login()),
                ],
            ),
        ),
        (
            "uuu",
            boot(
                "uuu",
                vec![
                    req(
                        "commands",
                        Sch::AnyOf(vec![
                            Sch::Str,
                            Sch::List(vec![
                                MapSch::new(vec![]).pattern(KeyPat::AnyStr, Sch::Str).sch(),
                            ]),
                        ]),
                    ),
                    opt("docker", docker("image").sch()),
                ],
            ),
        ),
    ]
});
