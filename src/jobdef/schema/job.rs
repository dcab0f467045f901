//! The top-level job schema (LAVA 2023.01's job schema, tightened where the submission
//! schema of the server is stricter: metadata values, timeout action names, vland names, and
//! the mappings it closes to unknown keys in both modes).

use std::sync::LazyLock;

use super::{KeyPat, MapSch, Sch, anchored, excl, opt, req};

/// The context variables a job may set (LAVA's `CONTEXT_VARIABLES`).
pub const CONTEXT_VARIABLES: &[&str] = &[
    "arch",
    "boot_console",
    "boot_root",
    "cpu",
    "extra_options",
    "guestfs_driveid",
    "guestfs_interface",
    "guestfs_size",
    "machine",
    "memory",
    "model",
    "monitor",
    "netdevice",
    "no_kvm",
    "serial",
    "vga",
    "booti_dtb_addr",
    "booti_kernel_addr",
    "booti_ramdisk_addr",
    "bootm_dtb_addr",
    "bootm_kernel_addr",
    "bootm_ramdisk_addr",
    "bootz_dtb_addr",
    "bootz_kernel_addr",
    "bootz_ramdisk_addr",
    "boot_character_delay",
    "boot_retry",
    "bootloader_prompt",
    "console_device",
    "custom_kernel_args",
    "extra_kernel_args",
    "extra_nfsroot_args",
    "failure_retry",
    "kernel_loglevel",
    "kernel_start_message",
    "lava_test_results_dir",
    "menu_interrupt_prompt",
    "mustang_menu_list",
    "test_character_delay",
    "tftp_mac_address",
    "uboot_extra_error_message",
    "uboot_needs_interrupt",
    "uboot_altbank",
];

/// The keys every action block may carry.
pub(crate) fn action_common() -> MapSch {
    MapSch::new(vec![
        opt(
            "namespace",
            Sch::All(vec![
                Sch::Str,
                Sch::NotIn(
                    &["common", "docker-test-shell"],
                    "'common' and 'docker-test-shell' are reserved namespace names",
                ),
            ]),
        ),
        opt("connection-namespace", Sch::Str),
        opt("protocols", Sch::Anything),
        opt("role", Sch::str_list()),
        // The server's submission schema checks `timeout` of every action kind, not `timeouts`.
        opt("timeout", Sch::submission_timeout()),
        opt("timeouts", action_timeouts()),
        opt("repeat", Sch::at_least(1)),
        opt("failure_retry", Sch::at_least(1)),
        opt("failure_retry_interval", Sch::at_least(1)),
    ])
}

/// The job's `{action-name: timeout}`; the server wants names matching `^[a-z-]+$`.
fn timeout_map() -> Sch {
    MapSch::new(vec![])
        .pattern(
            KeyPat::Regex(anchored("^[a-z-]+$")),
            Sch::submission_timeout(),
        )
        .closed_always()
        .sch()
}

/// An action's own `timeouts: {name: timeout}` (`{str: timeout()}`; the server does not look).
fn action_timeouts() -> Sch {
    MapSch::new(vec![])
        .pattern(KeyPat::AnyStr, Sch::timeout())
        .sch()
}

fn context() -> Sch {
    MapSch::new(
        CONTEXT_VARIABLES
            .iter()
            .map(|name| {
                opt(
                    name,
                    Sch::AnyOf(vec![
                        Sch::Int,
                        Sch::Str,
                        Sch::List(vec![Sch::Int, Sch::Str]),
                    ]),
                )
            })
            .collect(),
    )
    // `Schema(..., extra=False)` in both of LAVA's schemas.
    .closed_always()
    .sch()
}

fn lava_lxc() -> MapSch {
    MapSch::new(vec![
        req("name", Sch::Str),
        req("distribution", Sch::Str),
        req("release", Sch::Str),
        opt("arch", Sch::Str),
        opt("mirror", Sch::Str),
        opt("persist", Sch::Bool),
        opt("security_mirror", Sch::Str),
        opt("template", Sch::Str),
        opt("timeout", Sch::timeout()),
        opt("verbose", Sch::Bool),
    ])
}

fn multinode() -> Sch {
    let device_role = MapSch::new(vec![
        req("device_type", Sch::Str),
        req("count", Sch::at_least(0)),
        opt("context", context()),
        opt("tags", Sch::str_list()),
        opt("environment", Sch::Dict),
        opt("essential", Sch::Bool),
        opt("timeout", Sch::timeout()),
    ]);
    let connection_role = MapSch::new(vec![
        req("connection", Sch::Str),
        req("count", Sch::at_least(0)),
        req("expect_role", Sch::Str),
        req("host_role", Sch::Str),
        opt("essential", Sch::Bool),
        opt("request", Sch::Str),
        opt("tags", Sch::str_list()),
        opt("timeout", Sch::timeout()),
        opt("context", context()),
    ]);
    MapSch::new(vec![
        req(
            "roles",
            MapSch::new(vec![])
                .pattern(
                    KeyPat::AnyStr,
                    Sch::AnyOf(vec![device_role.sch(), connection_role.sch()]),
                )
                .sch(),
        ),
        opt("timeout", Sch::submission_timeout()),
    ])
    .closed_always()
    .sch()
}

fn protocols() -> Sch {
    MapSch::new(vec![
        opt(
            "lava-lxc",
            Sch::AnyOf(vec![
                lava_lxc().sch(),
                MapSch::new(vec![])
                    .pattern(KeyPat::AnyStr, lava_lxc().sch())
                    .sch(),
            ]),
        ),
        opt("lava-multinode", multinode()),
        // The server only accepts the per-role form `{role: {vlan_name: {tags: [...]}}}`.
        opt(
            "lava-vland",
            MapSch::new(vec![])
                .pattern(
                    KeyPat::AnyStr,
                    MapSch::new(vec![])
                        .pattern(
                            KeyPat::Regex(anchored("^[_a-zA-Z0-9]+$")),
                            MapSch::new(vec![req("tags", Sch::str_list())])
                                .closed_always()
                                .sch(),
                        )
                        .closed_always()
                        .sch(),
                )
                .sch(),
        ),
        opt(
            "lava-xnbd",
            MapSch::new(vec![
                req("port", Sch::AnyOf(vec![Sch::Lit("auto"), Sch::Int])),
                opt("timeout", Sch::timeout()),
            ])
            .sch(),
        ),
    ])
    .closed_always()
    .sch()
}

fn callback() -> MapSch {
    MapSch::new(vec![
        req("url", Sch::Str),
        opt("method", Sch::OneOf(&["GET", "POST"])),
        opt("token", Sch::Str),
        opt("header", Sch::Str),
        opt(
            "dataset",
            Sch::OneOf(&["minimal", "logs", "results", "all"]),
        ),
        opt("content-type", Sch::OneOf(&["json", "urlencoded"])),
    ])
}

fn notify() -> Sch {
    let criteria = Sch::AnyOf(vec![
        MapSch::new(vec![req("status", Sch::Lit("all"))]).sch(),
        MapSch::new(vec![
            req(
                "status",
                Sch::OneOf(&["finished", "running", "complete", "canceled", "incomplete"]),
            ),
            opt("dependency_query", Sch::Str),
        ])
        .sch(),
        MapSch::new(vec![
            req("status", Sch::OneOf(&["complete", "incomplete"])),
            opt("type", Sch::OneOf(&["regression", "progression"])),
        ])
        .sch(),
    ]);
    let recipient = MapSch::new(vec![req(
        "to",
        MapSch::new(vec![
            req("method", Sch::OneOf(&["email", "irc"])),
            opt("user", Sch::Str),
            opt("email", Sch::Str),
            opt("handle", Sch::Str),
            opt("server", Sch::Str),
        ])
        .closed_always()
        .sch(),
    )])
    .closed_always();
    let compare = MapSch::new(vec![
        opt("blacklist", Sch::str_list()),
        opt(
            "query",
            Sch::AnyOf(vec![
                MapSch::new(vec![req("username", Sch::Str), req("name", Sch::Str)])
                    .closed_always()
                    .sch(),
                MapSch::new(vec![
                    req("entity", Sch::Str),
                    opt(
                        "conditions",
                        MapSch::new(vec![]).pattern(KeyPat::AnyStr, Sch::Str).sch(),
                    ),
                ])
                .closed_always()
                .sch(),
            ]),
        ),
    ]);
    MapSch::new(vec![
        req("criteria", criteria),
        opt(
            "verbosity",
            Sch::OneOf(&["verbose", "quiet", "status-only"]),
        ),
        opt("recipients", Sch::List(vec![recipient.sch()])),
        excl("callback", "callback", callback().sch()),
        excl("callbacks", "callback", Sch::List(vec![callback().sch()])),
        opt("compare", compare.sch()),
    ])
    .sch()
}

/// The whole-job schema. `priority` and the action bodies are checked elsewhere.
pub(crate) static JOB: LazyLock<Sch> = LazyLock::new(|| {
    MapSch::new(vec![
        req("job_name", Sch::StrLen(1, 200)),
        opt("device_type", Sch::StrLen(1, 200)),
        req(
            "timeouts",
            MapSch::new(vec![
                req("job", Sch::submission_timeout()),
                opt("action", Sch::submission_timeout()),
                opt("actions", timeout_map()),
                opt("connection", Sch::submission_timeout()),
                opt("connections", timeout_map()),
                opt("queue", Sch::submission_timeout()),
            ])
            .closed_always()
            .sch(),
        ),
        req(
            "visibility",
            Sch::AnyOf(vec![
                Sch::OneOf(&["public", "personal"]),
                // `{}` is accepted too (LAVA then makes the job non-public with no group).
                MapSch::new(vec![opt("group", Sch::str_list())])
                    .closed_always()
                    .sch(),
            ]),
        ),
        opt("context", context()),
        // Strict schema: str keys; server: str or int values.
        opt(
            "metadata",
            MapSch::new(vec![])
                .pattern(KeyPat::AnyStr, Sch::AnyOf(vec![Sch::Str, Sch::Int]))
                .sch(),
        ),
        opt("priority", Sch::Anything),
        opt("tags", Sch::str_list()),
        opt("secrets", Sch::Dict),
        opt("environment", Sch::Dict),
        opt("protocols", protocols()),
        opt("notify", notify()),
        opt("reboot_to_fastboot", Sch::Bool),
        req(
            "actions",
            Sch::List(vec![
                MapSch::new(vec![
                    opt("boot", Sch::Dict),
                    opt("command", Sch::Dict),
                    opt("deploy", Sch::Dict),
                    opt("test", Sch::Dict),
                ])
                .closed_always()
                .sch(),
            ]),
        ),
    ])
    .closed_always()
    .sch()
});
