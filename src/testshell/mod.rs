//! The LAVA test shell: overlay contents written to the device, and console signal parsing.
//!
//! - [`signal`]: bytes from the console → typed events (pure, incremental).
//! - [`results`]: events → LAVA result records, as the dispatcher logs them.
//! - [`overlay`]: job and device data → the `/lava-<id>` file tree for the device.
//! - [`cpio`]: the newc archive format, to append the overlay to a ramdisk.
//!
//! Architecture invariant: nothing here performs I/O; callers feed bytes and write files.

pub mod cpio;

pub mod metadata;
pub mod overlay;
pub mod results;
pub mod signal;

/// File type bits of a directory in [`FileEntry::mode`] (`S_IFDIR`).
pub const S_IFDIR: u32 = 0o040_000;
/// File type bits of a regular file in [`FileEntry::mode`] (`S_IFREG`).
pub const S_IFREG: u32 = 0o100_000;
/// File type bits of a symbolic link in [`FileEntry::mode`] (`S_IFLNK`); data is the target.
pub const S_IFLNK: u32 = 0o120_000;
/// Mask of the file type bits.
pub const S_IFMT: u32 = 0o170_000;

/// One node of a file tree: what the overlay produces and what the cpio writer archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the archive root, `/`-separated, no leading `/` (e.g. `lava-42/bin`).
    pub path: String,
    /// Type bits ([`S_IFDIR`], [`S_IFREG`], [`S_IFLNK`]) plus permission bits.
    pub mode: u32,
    /// File contents (empty for directories; the target for symlinks).
    pub data: Vec<u8>,
}

impl FileEntry {
    /// A directory with permission bits `perm` (e.g. `0o755`).
    pub fn dir(path: impl Into<String>, perm: u32) -> FileEntry {
        FileEntry {
            path: path.into(),
            mode: S_IFDIR | (perm & 0o7777),
            data: Vec::new(),
        }
    }

    /// A regular file with permission bits `perm` (e.g. `0o644`).
    pub fn file(path: impl Into<String>, perm: u32, data: impl Into<Vec<u8>>) -> FileEntry {
        FileEntry {
            path: path.into(),
            mode: S_IFREG | (perm & 0o7777),
            data: data.into(),
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// The permission bits.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}
