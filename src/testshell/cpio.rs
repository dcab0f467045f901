//! The cpio "newc" archive format (magic `070701`), as the Linux kernel unpacks initramfs.
//!
//! [`write_newc`] turns a file tree into one archive with its `TRAILER!!!`; the kernel accepts
//! several archives concatenated, so the dispatcher appends this to an uncompressed ramdisk
//! (or as a further compressed member). Parent directories missing from the input are added
//! (mode 0755), because the kernel does not create them. [`read_newc`] reads an archive back
//! (tests, inspection). Both are pure.
//!
//! Layout of a member: a 110-byte ASCII header (magic + 13 eight-digit hex fields: ino, mode,
//! uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check),
//! the NUL-terminated name padded so header+name is a multiple of 4, then the data padded to 4.

use std::collections::BTreeSet;

use std::collections::BTreeMap;

use crate::testshell::{FileEntry, S_IFDIR};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// Options for [`write_newc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewcOptions {
    /// Owner uid of every member.
    pub uid: u32,
    /// Owner gid of every member.
    pub gid: u32,
    /// Modification time of every member (seconds since the epoch); fixed for reproducibility.
    pub mtime: u32,
    /// First inode number; members get consecutive numbers. Use distinct ranges when several
    /// archives are concatenated so hard-link detection never joins unrelated files.
    pub first_ino: u32,
}

impl Default for NewcOptions {
    fn default() -> Self {
        NewcOptions {
            uid: 0,
            gid: 0,
            mtime: 0,
            first_ino: 0x4c41_0000,
        }
    }
}

/// A problem in an archive being read, or in an entry that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The archive ended inside a header, name or data.
    #[error("cpio archive truncated at byte {offset}")]
    Truncated {
        /// Where the missing bytes start.
        offset: usize,
    },
    /// A header did not start with `070701`.
    #[error("bad cpio newc magic at byte {offset}")]
    BadMagic {
        /// Header offset.
        offset: usize,
    },
    /// A header field was not 8 hex digits.
    #[error("bad cpio header field at byte {offset}")]
    BadField {
        /// Field offset.
        offset: usize,
    },
    /// The name was not NUL-terminated UTF-8.
    #[error("bad cpio member name at byte {offset}")]
    BadName {
        /// Name offset.
        offset: usize,
    },
    /// No `TRAILER!!!` member was found.
    #[error("cpio archive has no trailer")]
    NoTrailer,
    /// An entry cannot be archived (empty or absolute path, `..`, or too large).
    #[error("cannot archive `{path}`: {reason}")]
    BadEntry {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
}

fn push_header(out: &mut Vec<u8>, fields: [u32; 13]) {
    out.extend_from_slice(MAGIC);
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn push_member(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    opts: &NewcOptions,
    name: &str,
    data: &[u8],
) -> Result<(), Error> {
    let too_large = || Error::BadEntry {
        path: name.to_owned(),
        reason: "larger than 4 GiB",
    };
    let size = u32::try_from(data.len()).map_err(|_| too_large())?;
    let namesize = u32::try_from(name.len() + 1).map_err(|_| too_large())?;
    push_header(
        out,
        [
            ino, mode, opts.uid, opts.gid, nlink, opts.mtime, size, 0, 0, 0, 0, namesize, 0,
        ],
    );
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

fn check_path(path: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadEntry {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty path");
    }
    if path.starts_with('/') {
        return bad("absolute path");
    }
    if path.contains('\0') {
        return bad("NUL in path");
    }
    if path.split('/').any(|c| c.is_empty() || c == "..") {
        return bad("empty or `..` path component");
    }
    if path == TRAILER {
        return bad("reserved name");
    }
    Ok(())
}

/// Archives `entries` in order as one newc archive with trailer; a directory is written
/// before anything inside it even if listed later. The archive's length is a multiple of 4.
pub fn write_newc(entries: &[FileEntry], opts: &NewcOptions) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    // Modes of the directories listed explicitly, used when one is written early as a parent.
    let dir_modes: BTreeMap<&str, u32> = entries
        .iter()
        .filter(|e| e.is_dir())
        .map(|e| (e.path.as_str(), e.mode))
        .collect();
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut ino = opts.first_ino;
    for e in entries {
        check_path(&e.path)?;
        if e.is_dir() && written.contains(&e.path) {
            continue;
        }
        // Parents go first: the kernel does not create missing directories.
        let mut prefix = String::new();
        let components: Vec<&str> = e.path.split('/').collect();
        for c in &components[..components.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            if !written.contains(&prefix) {
                let mode = dir_modes
                    .get(prefix.as_str())
                    .copied()
                    .unwrap_or(S_IFDIR | 0o755);
                push_member(&mut out, ino, mode, 2, opts, &prefix, &[])?;
                ino = ino.wrapping_add(1);
                written.insert(prefix.clone());
            }
        }
        let nlink = if e.is_dir() { 2 } else { 1 };
        let data: &[u8] = if e.is_dir() { &[] } else { &e.data };
        push_member(&mut out, ino, e.mode, nlink, opts, &e.path, data)?;
        ino = ino.wrapping_add(1);
        written.insert(e.path.clone());
    }
    push_member(&mut out, 0, 0, 1, opts, TRAILER, &[])?;
    Ok(out)
}

fn field(data: &[u8], offset: usize) -> Result<u32, Error> {
    let raw = data
        .get(offset..offset + 8)
        .ok_or(Error::Truncated { offset })?;
    let text = std::str::from_utf8(raw).map_err(|_| Error::BadField { offset })?;
    u32::from_str_radix(text, 16).map_err(|_| Error::BadField { offset })
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Reads one newc archive starting at the beginning of `data`, up to its trailer; returns the
/// members and the offset just after the trailer (where a concatenated archive may start).
pub fn read_newc(data: &[u8]) -> Result<(Vec<FileEntry>, usize), Error> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        if data.len() < pos + HEADER_LEN {
            return Err(if pos >= data.len() {
                Error::NoTrailer
            } else {
                Error::Truncated { offset: pos }
            });
        }
        if &data[pos..pos + 6] != MAGIC {
            return Err(Error::BadMagic { offset: pos });
        }
        let f = |i: usize| field(data, pos + 6 + 8 * i);
        let mode = f(1)?;
        let size = f(6)? as usize;
        let namesize = f(11)? as usize;
        let name_start = pos + HEADER_LEN;
        let name_end = name_start
            .checked_add(namesize)
            .ok_or(Error::Truncated { offset: name_start })?;
        let name_bytes = data
            .get(name_start..name_end)
            .ok_or(Error::Truncated { offset: name_start })?;
        let Some((&0, name)) = name_bytes.split_last() else {
            return Err(Error::BadName { offset: name_start });
        };
        let name = std::str::from_utf8(name).map_err(|_| Error::BadName { offset: name_start })?;
        let data_start = align4(name_end);
        let data_end = data_start
            .checked_add(size)
            .ok_or(Error::Truncated { offset: data_start })?;
        let body = data
            .get(data_start..data_end)
            .ok_or(Error::Truncated { offset: data_start })?;
        pos = align4(data_end);
        if name == TRAILER {
            return Ok((entries, pos.min(data.len())));
        }
        entries.push(FileEntry {
            path: name.to_owned(),
            mode,
            data: body.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testshell::S_IFREG;
    use proptest::prelude::*;

    fn sample() -> Vec<FileEntry> {
        vec![
            FileEntry::dir("lava-42", 0o755),
            FileEntry::file(
                "lava-42/bin/lava-test-case",
                0o755,
                b"#!/bin/sh\necho hi\n".to_vec(),
            ),
            FileEntry::file("lava-42/0/tests/0_smoke/uuid", 0o644, b"42_1.1".to_vec()),
            FileEntry::file("lava-42/empty", 0o600, Vec::new()),
        ]
    }

    #[test]
    fn round_trip_adds_parents_and_aligns() {
        let bytes = write_newc(&sample(), &NewcOptions::default()).unwrap_or_default();
        assert!(bytes.len().is_multiple_of(4));
        let (entries, end) = read_newc(&bytes).unwrap_or_default();
        assert_eq!(end, bytes.len());
        let names: Vec<_> = entries.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(
            names,
            [
                ("lava-42", S_IFDIR | 0o755),
                ("lava-42/bin", S_IFDIR | 0o755),
                ("lava-42/bin/lava-test-case", S_IFREG | 0o755),
                ("lava-42/0", S_IFDIR | 0o755),
                ("lava-42/0/tests", S_IFDIR | 0o755),
                ("lava-42/0/tests/0_smoke", S_IFDIR | 0o755),
                ("lava-42/0/tests/0_smoke/uuid", S_IFREG | 0o644),
                ("lava-42/empty", S_IFREG | 0o600),
            ]
        );
        assert_eq!(entries[2].data, b"#!/bin/sh\necho hi\n");
        assert!(bytes.starts_with(b"070701"));
    }

    #[test]
    fn rejects_bad_paths_and_archives() {
        for p in ["", "/abs", "a/../b", "a//b", "TRAILER!!!"] {
            assert!(
                write_newc(
                    &[FileEntry::file(p, 0o644, Vec::new())],
                    &NewcOptions::default()
                )
                .is_err(),
                "{p}"
            );
        }
        assert_eq!(read_newc(b""), Err(Error::NoTrailer));
        assert_eq!(read_newc(b"070702"), Err(Error::Truncated { offset: 0 }));
        let mut bytes = write_newc(&sample(), &NewcOptions::default()).unwrap_or_default();
        bytes[0] = b'1';
        assert_eq!(read_newc(&bytes), Err(Error::BadMagic { offset: 0 }));
    }

    /// The system `cpio` tool must list exactly our members. CI installs `cpio`; without it
    /// the test says so and passes.
    #[test]
    fn system_cpio_lists_archive() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let bytes = write_newc(&sample(), &NewcOptions::default()).unwrap_or_default();
        let child = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("cpio not installed: skipping system cpio check");
            return;
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&bytes).unwrap_or_default();
        }
        let out = child.wait_with_output().expect("cpio runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 8, "{listing}");
        assert!(
            lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" lava-42"),
            "{listing}"
        );
        assert!(
            lines[2].starts_with("-rwxr-xr-x") && lines[2].ends_with(" lava-42/bin/lava-test-case"),
            "{listing}"
        );
        assert!(
            lines[7].starts_with("-rw-------") && lines[7].ends_with(" lava-42/empty"),
            "{listing}"
        );
        assert!(lines[2].contains(" 18 "), "size shown: {listing}");
    }

    proptest! {
        #[test]
        fn reader_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_newc(&data);
        }

        #[test]
        fn write_read_round_trip(
            files in prop::collection::btree_map("[a-z]{1,6}(/[a-z]{1,6}){0,2}", prop::collection::vec(any::<u8>(), 0..40), 0..8)
        ) {
            // Skip trees where a file path is also a parent of another path.
            let paths: Vec<&String> = files.keys().collect();
            let clash = paths.iter().any(|a| paths.iter().any(|b| b.starts_with(&format!("{a}/"))));
            prop_assume!(!clash);
            let entries: Vec<FileEntry> = files.iter().map(|(p, d)| FileEntry::file(p.clone(), 0o644, d.clone())).collect();
            let bytes = write_newc(&entries, &NewcOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (back, end) = read_newc(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(end, bytes.len());
            let files_back: Vec<&FileEntry> = back.iter().filter(|e| !e.is_dir()).collect();
            prop_assert_eq!(files_back.len(), entries.len());
            for (a, b) in files_back.iter().zip(&entries) {
                prop_assert_eq!(*a, b);
            }
        }
    }
}
