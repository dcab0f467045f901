//! Test action schemas: definitions (lava-test-shell), docker test shell, monitors,
//! interactive; and the inline test definition (Lava-Test Test Definition 1.0).

use std::sync::LazyLock;

use super::deploy::docker;
use super::job::action_common;
use super::{Field, KeyPat, MapSch, Sch, anchored, opt, req};

const NAME: &str = r"^[-_a-zA-Z0-9.]+$";
/// Monitor and interactive names: the server's submission schema allows no dots.
const STRICT_NAME: &str = r"^[a-zA-Z0-9-_]+$";

fn strict_name() -> Sch {
    Sch::All(vec![
        Sch::matching(NAME),
        Sch::matching_msg(STRICT_NAME, "Invalid character"),
    ])
}

fn fixupdict() -> Sch {
    MapSch::new(vec![])
        .pattern(
            KeyPat::AnyStr,
            Sch::OneOf(&["pass", "fail", "skip", "unknown"]),
        )
        .sch()
}

/// A Lava-Test Test Definition 1.0 document, as strict as LAVA checks inline ones.
pub(crate) fn testdef() -> MapSch {
    MapSch::new(testdef_fields())
        // The submission schema's `_inline_schema`: these four keys only, in both modes.
        .closed_always()
}

/// A Lava-Test Test Definition 1.0 file as LAVA's `testdef.validate` checks one on its own
/// (`validate_testdef`): `parameters`/`params` allowed, other keys tolerated in lenient mode.
pub(crate) fn testdef_file() -> Sch {
    MapSch::new(testdef_fields())
        .with(vec![opt("parameters", Sch::Dict), opt("params", Sch::Dict)])
        .sch()
}

fn testdef_fields() -> Vec<Field> {
    vec![
        req(
            "metadata",
            MapSch::new(vec![
                req("format", Sch::Lit("Lava-Test Test Definition 1.0")),
                req("name", Sch::Str),
                opt("description", Sch::Str),
                opt("environment", Sch::str_list()),
                opt("devices", Sch::str_list()),
                opt("maintainer", Sch::str_list()),
                opt("scope", Sch::str_list()),
                opt("os", Sch::str_list()),
            ])
            .sch(),
        ),
        opt(
            "install",
            MapSch::new(vec![
                opt("deps", Sch::str_list()),
                opt("git-repos", Sch::str_list()),
                opt("keys", Sch::str_list()),
                opt("steps", Sch::str_list()),
                opt("sources", Sch::str_list()),
            ])
            .pattern(KeyPat::Regex(anchored("deps-.+")), Sch::str_list())
            .sch(),
        ),
        // The strict schema also allows `parameters`/`params` here, but the server's
        // submission schema refuses them in inline definitions.
        opt(
            "parse",
            MapSch::new(vec![opt("fixupdict", fixupdict())]).sch(),
        ),
        opt(
            "run",
            MapSch::new(vec![req("steps", Sch::str_list())]).sch(),
        ),
    ]
}

fn definition_common() -> Vec<Field> {
    vec![
        req("path", Sch::Str),
        req("name", Sch::matching(NAME)),
        opt(
            "skip_install",
            Sch::List(vec![Sch::OneOf(&[
                "keys",
                "sources",
                "deps",
                "steps",
                "git-repos",
                "all",
            ])]),
        ),
        opt("lava-signal", Sch::OneOf(&["kmsg", "stdout"])),
    ]
}

fn definitions() -> Sch {
    Sch::List(vec![Sch::AnyOf(vec![
        MapSch::new(vec![
            req("repository", Sch::Str),
            req("from", Sch::Lit("git")),
            opt("branch", Sch::Str),
            opt("history", Sch::Bool),
            opt("revision", Sch::Str),
            opt("parameters", Sch::Dict),
            opt("params", Sch::Dict),
        ])
        .with(definition_common())
        .sch(),
        MapSch::new(vec![
            req("repository", Sch::Str),
            req("from", Sch::Lit("url")),
            req("compression", Sch::Str),
            opt("parameters", Sch::Dict),
            opt("params", Sch::Dict),
        ])
        .with(definition_common())
        .sch(),
        MapSch::new(vec![
            req("repository", testdef().sch()),
            req("from", Sch::Lit("inline")),
        ])
        .with(definition_common())
        .sch(),
    ])])
}

fn test(fields: Vec<Field>) -> Sch {
    MapSch::new(vec![])
        .with(action_common().into_fields())
        .with(fields)
        .sch()
}

/// Test kind (LAVA's module name) → schema.
pub(crate) static TEST: LazyLock<Vec<(&'static str, Sch)>> = LazyLock::new(|| {
    let nonempty_list = || Sch::List(vec![Sch::nonempty_str()]);
    vec![
        ("definition", test(vec![req("definitions", definitions())])),
        (
            "docker",
            test(vec![
                req("definitions", definitions()),
                req("docker", docker("image").sch()),
                opt("downloads-namespace", Sch::Str),
            ]),
        ),
        (
            "monitor",
            test(vec![req(
                "monitors",
                Sch::List(vec![
                    MapSch::new(vec![
                        req("name", strict_name()),
                        req("start", Sch::Str),
                        req("end", Sch::Str),
                        req("pattern", Sch::Str),
                        opt("fixupdict", fixupdict()),
                    ])
                    .closed_always()
                    .sch(),
                ]),
            )]),
        ),
        (
            "interactive",
            test(vec![req(
                "interactive",
                Sch::List(vec![
                    MapSch::new(vec![
                        req("name", strict_name()),
                        req("prompts", nonempty_list()),
                        opt("echo", Sch::Lit("discard")),
                        req(
                            "script",
                            Sch::List(vec![
                                MapSch::new(vec![
                                    opt("command", Sch::AnyOf(vec![Sch::Str, Sch::Null])),
                                    opt("delay", Sch::Int),
                                    opt("lava-send", Sch::Str),
                                    opt("lava-sync", Sch::Str),
                                    opt("lava-wait", Sch::Str),
                                    opt("lava-wait-all", Sch::Str),
                                    opt("name", strict_name()),
                                    opt("wait_for_prompt", Sch::Bool),
                                    opt(
                                        "successes",
                                        Sch::List(vec![
                                            MapSch::new(vec![req("message", Sch::nonempty_str())])
                                                .closed_always()
                                                .sch(),
                                        ]),
                                    ),
                                    opt(
                                        "failures",
                                        Sch::List(vec![
                                            MapSch::new(vec![
                                                req("message", Sch::nonempty_str()),
                                                opt(
                                                    "exception",
                                                    Sch::OneOf(&[
                                                        "InfrastructureError",
                                                        "JobError",
                                                        "TestError",
                                                    ]),
                                                ),
                                                opt("error", Sch::nonempty_str()),
                                            ])
                                            .closed_always()
                                            .sch(),
                                        ]),
                                    ),
                                ])
                                .closed_always()
                                .sch(),
                            ]),
                        ),
                    ])
                    .closed_always()
                    .sch(),
                ]),
            )]),
        ),
    ]
});

/// The command action schema.
pub(crate) static COMMAND: LazyLock<Sch> = LazyLock::new(|| {
    MapSch::new(vec![])
        .with(action_common().into_fields())
        .with(vec![req("name", Sch::Str)])
        .sch()
});
