//! Typed `deploy:` blocks. TFTP and tmpfs are typed in full (lavabox runs them); every other
//! `to:` LAVA 2023.01 knows is validated and kept as written.

use std::fmt;

use super::string;
use crate::jobdef::yaml::Node;

macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The YAML spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The value for a YAML spelling.
            pub fn from_name(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use names;

names!(
    /// Every deploy `to:` LAVA 2023.01 validates (`sd` has no schema there and is refused).
    DeployTo {
        /// `docker`.
        Docker = "docker",
        /// `download`.
        Download = "download",
        /// `downloads`.
        Downloads = "downloads",
        /// `fastboot`.
        Fastboot = "fastboot",
        /// `flasher`.
        Flasher = "flasher",
        /// `fvp`.
        Fvp = "fvp",
        /// `iso-installer`.
        IsoInstaller = "iso-installer",
        /// `lxc`.
        Lxc = "lxc",
        /// `mps`.
        Mps = "mps",
        /// `musca`.
        Musca = "musca",
        /// `nbd`.
        Nbd = "nbd",
        /// `nfs`.
        Nfs = "nfs",
        /// `overlay`.
        Overlay = "overlay",
        /// `recovery`.
        Recovery = "recovery",
        /// `sata`.
        Sata = "sata",
        /// `ssh`.
        Ssh = "ssh",
        /// `tftp`.
        Tftp = "tftp",
        /// `tmpfs`.
        Tmpfs = "tmpfs",
        /// `u-boot-ums`.
        UBootUms = "u-boot-ums",
        /// `usb`.
        Usb = "usb",
        /// `uuu`.
        Uuu = "uuu",
        /// `vemsd`.
        Vemsd = "vemsd",
    }
);

names!(
    /// Compression of a downloaded file.
    Compression {
        /// bzip2.
        Bz2 = "bz2",
        /// gzip.
        Gz = "gz",
        /// xz.
        Xz = "xz",
        /// zip.
        Zip = "zip",
        /// zstd.
        Zstd = "zstd",
    }
);

names!(
    /// Kernel image type (`kernel.type`), which picks the U-Boot boot command.
    KernelType {
        /// `booti` (arm64 Image).
        Image = "image",
        /// `bootm` (uImage).
        UImage = "uimage",
        /// `bootz` (zImage).
        ZImage = "zimage",
    }
);

names!(
    /// An image's `format:`.
    ImageFormat {
        /// A qcow2 disk image.
        Qcow2 = "qcow2",
    }
);

/// A file to download: `{url, compression?, archive?, checksums?, headers?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Where to get it (`http(s)://`, `file://`, `lxc://`, …).
    pub url: String,
    /// Decompress after download.
    pub compression: Option<Compression>,
    /// `archive: tar`: unpack the download.
    pub archive_tar: bool,
    /// Expected MD5.
    pub md5sum: Option<String>,
    /// Expected SHA-256.
    pub sha256sum: Option<String>,
    /// Expected SHA-512.
    pub sha512sum: Option<String>,
    /// Extra HTTP headers, as written.
    pub headers: Option<Node>,
    /// Image with overlays to put inside (`format` + `overlays`), as written.
    pub overlays: Option<Node>,
}

impl Resource {
    pub(crate) fn from_node(node: &Node) -> Option<Resource> {
        Some(Resource {
            url: string(node, "url")?,
            compression: node
                .get("compression")
                .and_then(Node::as_str)
                .and_then(Compression::from_name),
            archive_tar: node.get("archive").and_then(Node::as_str) == Some("tar"),
            md5sum: string(node, "md5sum"),
            sha256sum: string(node, "sha256sum"),
            sha512sum: string(node, "sha512sum"),
            headers: node.get("headers").cloned(),
            overlays: node.has("overlays").then(|| node.clone()),
        })
    }
}

/// `kernel:` of a TFTP deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// The file.
    pub resource: Resource,
    /// Its type, if given.
    pub kind: Option<KernelType>,
}

/// `ramdisk:` of a TFTP deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramdisk {
    /// The file.
    pub resource: Resource,
    /// Put the deployed modules inside.
    pub install_modules: Option<bool>,
    /// Put the LAVA overlay inside.
    pub install_overlay: Option<bool>,
    /// `header: u-boot`: the ramdisk carries (or needs) a U-Boot header.
    pub uboot_header: bool,
}

/// Root filesystem over NFS: downloaded, or already exported somewhere.
#[derive(Debug, Clone, PartialEq)]
pub enum NfsRoot {
    /// `nfsrootfs:` download and export it.
    Download {
        /// The archive.
        resource: Box<Resource>,
        /// Put the deployed modules inside.
        install_modules: Option<bool>,
        /// Put the LAVA overlay inside.
        install_overlay: Option<bool>,
        /// Sub-directory of the archive to use.
        prefix: Option<String>,
    },
    /// `persistent_nfs:` an existing export.
    Persistent {
        /// `server:/path`.
        address: String,
        /// Put the LAVA overlay inside.
        install_overlay: Option<bool>,
    },
}

/// `deploy: {to: tftp}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TftpDeploy {
    /// The kernel (required).
    pub kernel: Kernel,
    /// Device tree.
    pub dtb: Option<Resource>,
    /// Kernel modules tarball.
    pub modules: Option<Resource>,
    /// Installer preseed file.
    pub preseed: Option<Resource>,
    /// Initial ramdisk.
    pub ramdisk: Option<Ramdisk>,
    /// NFS root (download or persistent; never both).
    pub nfs: Option<NfsRoot>,
    /// OP-TEE image.
    pub tee: Option<Resource>,
    /// `os:` of the deployed system.
    pub os: Option<String>,
}

/// One image of a tmpfs deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct TmpfsImage {
    /// Its key under `images:`, e.g. `rootfs`.
    pub name: String,
    /// The file.
    pub resource: Resource,
    /// QEMU argument template, e.g. `-drive format=qcow2,file={rootfs}`.
    pub image_arg: Option<String>,
    /// `format:` (LAVA 2023.01's tmpfs schema knows only `qcow2`).
    pub format: Option<ImageFormat>,
}

/// `deploy: {to: tmpfs}` (QEMU).
#[derive(Debug, Clone, PartialEq)]
pub struct TmpfsDeploy {
    /// The images, in document order; never empty.
    pub images: Vec<TmpfsImage>,
    /// `type: monitor`.
    pub monitor: bool,
    /// UEFI firmware.
    pub uefi: Option<Resource>,
    /// `os:` of the deployed system.
    pub os: Option<String>,
}

/// A typed `deploy:` block.
#[derive(Debug, Clone, PartialEq)]
pub enum Deploy {
    /// `to: tftp`.
    Tftp(Box<TftpDeploy>),
    /// `to: tmpfs`.
    Tmpfs(Box<TmpfsDeploy>),
    /// Any other valid `to:`; parameters as written.
    Other {
        /// Which.
        to: DeployTo,
        /// The block as written.
        params: Node,
    },
}

impl Deploy {
    /// The `to:` value.
    pub fn to(&self) -> DeployTo {
        match self {
            Deploy::Tftp(_) => DeployTo::Tftp,
            Deploy::Tmpfs(_) => DeployTo::Tmpfs,
            Deploy::Other { to, .. } => *to,
        }
    }

    pub(crate) fn from_node(to: DeployTo, node: &Node) -> Option<Deploy> {
        let resource = |key: &str| node.get(key).and_then(Resource::from_node);
        Some(match to {
            DeployTo::Tftp => {
                let kernel = node.get("kernel")?;
                let nfs = if let Some(n) = node.get("nfsrootfs") {
                    Some(NfsRoot::Download {
                        resource: Box::new(Resource::from_node(n)?),
                        install_modules: n.get("install_modules").and_then(Node::as_bool),
                        install_overlay: n.get("install_overlay").and_then(Node::as_bool),
                        prefix: string(n, "prefix"),
                    })
                } else if let Some(n) = node.get("persistent_nfs") {
                    Some(NfsRoot::Persistent {
                        address: string(n, "address")?,
                        install_overlay: n.get("install_overlay").and_then(Node::as_bool),
                    })
                } else {
                    None
                };
                Deploy::Tftp(Box::new(TftpDeploy {
                    kernel: Kernel {
                        resource: Resource::from_node(kernel)?,
                        kind: kernel
                            .get("type")
                            .and_then(Node::as_str)
                            .and_then(KernelType::from_name),
                    },
                    dtb: resource("dtb"),
                    modules: resource("modules"),
                    preseed: resource("preseed"),
                    ramdisk: match node.get("ramdisk") {
                        Some(r) => Some(Ramdisk {
                            resource: Resource::from_node(r)?,
                            install_modules: r.get("install_modules").and_then(Node::as_bool),
                            install_overlay: r.get("install_overlay").and_then(Node::as_bool),
                            uboot_header: r.get("header").and_then(Node::as_str) == Some("u-boot"),
                        }),
                        None => None,
                    },
                    nfs,
                    tee: resource("tee"),
                    os: string(node, "os"),
                }))
            }
            DeployTo::Tmpfs => {
                let mut images = Vec::new();
                for (k, v) in node.get("images")?.as_map()? {
                    images.push(TmpfsImage {
                        name: k.as_str()?.to_owned(),
                        resource: Resource::from_node(v)?,
                        image_arg: string(v, "image_arg"),
                        format: v
                            .get("format")
                            .and_then(Node::as_str)
                            .and_then(ImageFormat::from_name),
                    });
                }
                if images.is_empty() {
                    return None;
                }
                Deploy::Tmpfs(Box::new(TmpfsDeploy {
                    images,
                    monitor: node.get("type").and_then(Node::as_str) == Some("monitor"),
                    uefi: resource("uefi"),
                    os: string(node, "os"),
                }))
            }
            other => Deploy::Other {
                to: other,
                params: node.clone(),
            },
        })
    }
}
