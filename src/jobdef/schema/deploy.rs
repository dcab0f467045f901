//! Deploy schemas, one per `to:` value LAVA 2023.01 knows.

use std::sync::LazyLock;

use super::job::action_common;
use super::{Field, KeyPat, MapSch, Sch, excl, opt, req, req_msg};

const IMAGES_EMPTY: &str = "'images' is empty";
const NEEDS_KERNEL: &str = "needs a kernel to deploy";

fn base_url() -> Vec<Field> {
    vec![
        req("url", Sch::Str),
        opt("headers", Sch::Dict),
        opt(
            "compression",
            Sch::AnyOf(vec![
                Sch::OneOf(&["bz2", "gz", "xz", "zip", "zstd"]),
                Sch::Null,
            ]),
        ),
        opt("archive", Sch::Lit("tar")),
        opt("md5sum", Sch::Str),
        opt("sha256sum", Sch::Str),
        opt("sha512sum", Sch::Str),
    ]
}

/// A downloadable resource: `{url, compression?, …}` or an image with `format` + `overlays`.
pub(crate) fn url_with(extra: impl Fn() -> Vec<Field>) -> Sch {
    let overlay = MapSch::new(base_url()).with(vec![
        req("format", Sch::OneOf(&["file", "tar"])),
        req("path", Sch::Str),
    ]);
    Sch::AnyOf(vec![
        MapSch::new(base_url()).with(extra()).sch(),
        MapSch::new(base_url())
            .with(extra())
            .with(vec![
                req("format", Sch::OneOf(&["cpio.newc", "ext4", "tar"])),
                opt("partition", Sch::Int),
                opt("sparse", Sch::Bool),
                req(
                    "overlays",
                    MapSch::new(vec![opt("lava", Sch::Bool)])
                        .pattern(KeyPat::AnyStr, overlay.sch())
                        .sch(),
                ),
            ])
            .sch(),
    ])
}

/// A plain downloadable resource.
pub(crate) fn url() -> Sch {
    url_with(Vec::new)
}

/// `{name: resource}`, at least one entry.
fn images(extra: impl Fn() -> Vec<Field>) -> Sch {
    MapSch::new(vec![])
        .pattern(KeyPat::AnyStr, url_with(extra))
        .nonempty(IMAGES_EMPTY)
        .sch()
}

const DOCKER_IMAGE: &str = "^[a-z0-9]+[a-z0-9._/:-]*[a-z0-9]+(:[a-zA-Z0-9_]+[a-zA-Z0-9._-]*)?$";

/// A docker image name.
pub(crate) fn docker_image() -> Sch {
    Sch::matching_msg(DOCKER_IMAGE, "Invalid docker image name")
}

/// `{image, local?, container_name?, network_from?}` with the image under `image_key`.
pub(crate) fn docker(image_key: &'static str) -> MapSch {
    MapSch::new(vec![
        req(image_key, docker_image()),
        opt("local", Sch::Bool),
        opt("container_name", Sch::Str),
        opt("network_from", Sch::Str),
    ])
}

fn deploy(to: &'static str, fields: Vec<Field>) -> Sch {
    MapSch::new(vec![])
        .with(action_common_fields())
        .with(vec![opt("os", Sch::Str), opt("authorize", Sch::Lit("ssh"))])
        .with(vec![req("to", Sch::Lit(to))])
        .with(fields)
        .sch()
}

fn action_common_fields() -> Vec<Field> {
    action_common().into_fields()
}

fn kernel_type() -> Vec<Field> {
    vec![opt("type", Sch::OneOf(&["image", "uimage", "zimage"]))]
}

fn usb_like() -> Sch {
    let tool = || {
        MapSch::new(vec![
            req("tool", Sch::Str),
            req("options", Sch::Str),
            req("prompt", Sch::Str),
        ])
        .sch()
    };
    MapSch::new(vec![])
        .with(action_common_fields())
        .with(vec![opt("os", Sch::Str), opt("authorize", Sch::Lit("ssh"))])
        .with(vec![
            req("to", Sch::OneOf(&["sata", "sd", "usb"])),
            excl(
                "images",
                "image",
                MapSch::new(vec![req("image", url())])
                    .pattern(KeyPat::AnyStr, url())
                    .sch(),
            ),
            excl("image", "image", url()),
            req("device", Sch::Str),
            opt("download", tool()),
            opt("writer", tool()),
            opt(
                "tool",
                MapSch::new(vec![req("prompts", Sch::str_list())]).sch(),
            ),
            opt("uniquify", Sch::Bool),
        ])
        .sch()
}

/// Module name (LAVA's `to` with `-` → `_`) → schema.
pub(crate) static DEPLOY: LazyLock<Vec<(&'static str, Sch)>> = LazyLock::new(|| {
    let fastboot_extra = || {
        vec![
            opt("apply-overlay", Sch::Bool),
            opt("root_partition", Sch::at_least(0)),
            opt("sparse", Sch::Bool),
            opt(
                "reboot",
                Sch::OneOf(&[
                    "hard-reset",
                    "fastboot-reboot",
                    "fastboot-reboot-bootloader",
                    "fastboot-reboot-fastboot",
                ]),
            ),
        ]
    };
    let mut docker_steps = docker("image");
    docker_steps = docker_steps.with(vec![req("steps", Sch::str_list())]);
    vec![
        (
            "docker",
            deploy(
                "docker",
                vec![req(
                    "image",
                    Sch::AnyOf(vec![docker_image(), docker("name").sch()]),
                )],
            ),
        ),
        (
            "download",
            deploy("download", vec![req("images", images(Vec::new))]),
        ),
        (
            "downloads",
            deploy(
                "downloads",
                vec![
                    req("images", images(Vec::new)),
                    opt(
                        "postprocess",
                        MapSch::new(vec![req("docker", docker_steps.sch())]).sch(),
                    ),
                ],
            ),
        ),
        (
            "fastboot",
            deploy(
                "fastboot",
                vec![
                    req("images", images(fastboot_extra)),
                    opt("docker", docker("image").sch()),
                    opt("connection", Sch::Lit("lxc")),
                ],
            ),
        ),
        (
            "flasher",
            deploy(
                "flasher",
                vec![req(
                    "images",
                    MapSch::new(vec![]).pattern(KeyPat::AnyStr, url()).sch(),
                )],
            ),
        ),
        (
            "fvp",
            deploy(
                "fvp",
                vec![
                    opt(
                        "ramdisk",
                        MapSch::new(vec![
                            opt("install_overlay", Sch::Bool),
                            opt("compression", Sch::Str),
                            opt("header", Sch::Lit("u-boot")),
                        ])
                        .sch(),
                    ),
                    opt("uniquify", Sch::Bool),
                    req("images", images(Vec::new)),
                ],
            ),
        ),
        (
            "iso_installer",
            deploy(
                "iso-installer",
                vec![
                    req(
                        "images",
                        MapSch::new(vec![
                            req("iso", url_with(|| vec![opt("image_arg", Sch::Str)])),
                            req("preseed", url()),
                        ])
                        .sch(),
                    ),
                    req(
                        "iso",
                        MapSch::new(vec![
                            req("installation_size", Sch::Str),
                            opt("kernel", Sch::Str),
                            opt("initrd", Sch::Str),
                        ])
                        .sch(),
                    ),
                ],
            ),
        ),
        ("lxc", deploy("lxc", vec![opt("packages", Sch::str_list())])),
        (
            "mps",
            deploy(
                "mps",
                vec![req(
                    "images",
                    MapSch::new(vec![opt("recovery_image", url())])
                        .pattern(
                            KeyPat::Regex(super::anchored(r"test_binary(_\w+)?$")),
                            url_with(|| vec![opt("rename", Sch::Str)]),
                        )
                        .min_len(1)
                        .sch(),
                )],
            ),
        ),
        (
            "musca",
            deploy(
                "musca",
                vec![req(
                    "images",
                    MapSch::new(vec![req_msg(
                        "test_binary",
                        "'images' has no 'test_binary' entry",
                        url(),
                    )])
                    .sch(),
                )],
            ),
        ),
        (
            "nbd",
            deploy(
                "nbd",
                vec![
                    req_msg("kernel", NEEDS_KERNEL, url_with(kernel_type)),
                    req("nbdroot", url()),
                    req("initrd", url()),
                    opt("dtb", url()),
                ],
            ),
        ),
        (
            "nfs",
            Sch::AnyOf(vec![
                deploy("nfs", vec![opt("nfsrootfs", url()), opt("modules", url())]),
                deploy(
                    "nfs",
                    vec![req("images", images(|| vec![opt("image_arg", Sch::Str)]))],
                ),
            ]),
        ),
        ("overlay", deploy("overlay", vec![])),
        (
            "recovery",
            deploy("recovery", vec![req("images", images(Vec::new))]),
        ),
        ("sata", usb_like()),
        (
            "ssh",
            deploy(
                "ssh",
                vec![
                    opt("firmware", url()),
                    opt("kernel", url()),
                    opt("rootfs", url()),
                    opt("modules", url()),
                ],
            ),
        ),
        (
            "tftp",
            deploy(
                "tftp",
                vec![
                    req_msg("kernel", NEEDS_KERNEL, url_with(kernel_type)),
                    opt("dtb", url()),
                    opt("modules", url()),
                    opt("preseed", url()),
                    opt(
                        "ramdisk",
                        url_with(|| {
                            vec![
                                opt("install_modules", Sch::Bool),
                                opt("install_overlay", Sch::Bool),
                                opt("header", Sch::Lit("u-boot")),
                            ]
                        }),
                    ),
                    excl(
                        "nfsrootfs",
                        "nfs",
                        url_with(|| {
                            vec![
                                opt("install_modules", Sch::Bool),
                                opt("install_overlay", Sch::Bool),
                                opt("prefix", Sch::Str),
                            ]
                        }),
                    ),
                    excl(
                        "persistent_nfs",
                        "nfs",
                        MapSch::new(vec![
                            req("address", Sch::Str),
                            opt("install_overlay", Sch::Bool),
                        ])
                        .sch(),
                    ),
                    opt("tee", url()),
                ],
            ),
        ),
        (
            "tmpfs",
            deploy(
                "tmpfs",
                vec![
                    req(
                        "images",
                        images(|| {
                            vec![opt("format", Sch::Lit("qcow2")), opt("image_arg", Sch::Str)]
                        }),
                    ),
                    opt("type", Sch::Lit("monitor")),
                    opt("uefi", url()),
                ],
            ),
        ),
        (
            "u_boot_ums",
            deploy(
                "u-boot-ums",
                vec![req(
                    "image",
                    url_with(|| vec![opt("root_partition", Sch::at_least(0))]),
                )],
            ),
        ),
        ("usb", usb_like()),
        (
            "uuu",
            deploy(
                "uuu",
                vec![req(
                    "images",
                    MapSch::new(vec![req("boot", url())])
                        .pattern(
                            KeyPat::AnyStr,
                            url_with(|| {
                                vec![
                                    opt("apply-overlay", Sch::Bool),
                                    opt("root_partition", Sch::at_least(0)),
                                ]
                            }),
                        )
                        .min_len(1)
                        .sch(),
                )],
            ),
        ),
        ("vemsd", deploy("vemsd", vec![req("recovery_image", url())])),
    ]
});
