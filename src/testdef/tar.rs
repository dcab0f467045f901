//! A tar reader for `from: url` test definition archives: the decompressed bytes in, the
//! overlay's [`FileEntry`] list out (pure).
//!
//! It reads what `tar` and Python's `tarfile` write (ustar, GNU long names, pax `path` and
//! `linkpath` records) and keeps regular files, directories and symbolic links. A member whose
//! name would leave the archive's directory (absolute, `..`) is refused, as LAVA refuses it;
//! hard links, devices and FIFOs are skipped, since a test definition never needs them.

use crate::testshell::{FileEntry, S_IFLNK};

/// Why an archive cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    /// A member's name leaves the archive's directory (LAVA's message).
    #[error("Attempted path traversal in tar file at {0}")]
    Traversal(String),
    /// The bytes are not a tar archive, or it is cut short.
    #[error("not a valid tar archive: {0}")]
    Malformed(String),
}

const BLOCK: usize = 512;

fn field(header: &[u8], start: usize, len: usize) -> &[u8] {
    let f = &header[start..start + len];
    let end = f.iter().position(|&b| b == 0).unwrap_or(len);
    &f[..end]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn octal(header: &[u8], start: usize, len: usize) -> Result<u64, TarError> {
    let f = &header[start..start + len];
    // GNU base-256 for large values.
    if f.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| TarError::Malformed("size too large".into()))?;
        }
        return Ok(v);
    }
    let s = text(field(header, start, len));
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| TarError::Malformed(format!("bad number '{s}'")))
}

/// The member's path, cleaned and checked to stay inside the archive's directory; `None` for
/// the archive's own root (`./`).
fn clean_path(name: &str) -> Result<Option<String>, TarError> {
    if name.starts_with('/') {
        return Err(TarError::Traversal(name.to_owned()));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(TarError::Traversal(name.to_owned())),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The `path`/`linkpath` records of a pax extended header.
fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            break;
        };
        let Ok(len) = text(&rest[..space]).parse::<usize>() else {
            break;
        };
        if len <= space || len > rest.len() {
            break;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            out.push((text(&record[..eq]), text(&record[eq + 1..])));
        }
        rest = &rest[len..];
    }
    out
}

/// Every directory, file and symbolic link of the archive `data`, in archive order, with
/// the directories its members need added before them.
pub fn entries(data: &[u8]) -> Result<Vec<FileEntry>, TarError> {
    let mut out: Vec<FileEntry> = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    while pos + BLOCK <= data.len() {
        let header = &data[pos..pos + BLOCK];
        if header.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let size = usize::try_from(octal(header, 124, 12)?)
            .map_err(|_| TarError::Malformed("member too large".into()))?;
        let body_start = pos + BLOCK;
        let body_end = body_start
            .checked_add(size)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| TarError::Malformed("archive cut short".into()))?;
        let body = &data[body_start..body_end];
        pos = body_start + size.div_ceil(BLOCK) * BLOCK;
        let kind = header[156];
        match kind {
            b'L' => {
                long_name = Some(text(field(body, 0, body.len())));
                continue;
            }
            b'K' => {
                long_link = Some(text(field(body, 0, body.len())));
                continue;
            }
            b'x' => {
                for (k, v) in pax_records(body) {
                    match k.as_str() {
                        "path" => long_name = Some(v),
                        "linkpath" => long_link = Some(v),
                        _ => {}
                    }
                }
                continue;
            }
            b'g' => continue,
            _ => {}
        }
        let name = match long_name.take() {
            Some(n) => n,
            None => {
                let name = text(field(header, 0, 100));
                let prefix = if &header[257..262] == b"ustar" {
                    text(field(header, 345, 155))
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            }
        };
        let link = long_link
            .take()
            .unwrap_or_else(|| text(field(header, 157, 100)));
        let Some(path) = clean_path(&name)? else {
            continue;
        };
        let perm = u32::try_from(octal(header, 100, 8)? & 0o7777).unwrap_or(0o644);
        let entry = match kind {
            b'0' | 0 | b'7' => FileEntry::file(path.clone(), perm, body.to_vec()),
            b'5' => FileEntry::dir(path.clone(), perm | 0o700),
            b'2' => FileEntry {
                path: path.clone(),
                mode: S_IFLNK | 0o777,
                data: link.into_bytes(),
            },
            _ => continue,
        };
        // Parent directories first, so the archive's layout is valid even when the tar
        // lists only files.
        let mut parent = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            if dirs.insert(parent.clone()) {
                out.push(FileEntry::dir(parent.clone(), 0o755));
            }
        }
        if entry.is_dir() {
            if !dirs.insert(path.clone()) {
                continue;
            }
        } else {
            out.retain(|e| e.path != path);
        }
        out.push(entry);
    }
    if pos == data.len() {
        // An archive without its end-of-archive blocks: what was read is whole.
        return Ok(out);
    }
    Err(TarError::Malformed("archive cut short".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tar_of(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("tar")
            .arg("-C")
            .arg(dir)
            .args(args)
            .arg("-cf")
            .arg("-")
            .arg(".")
            .output()
            .expect("tar runs");
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn reads_what_gnu_tar_writes_with_long_names_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let long = "d/".to_owned() + &"x".repeat(150);
        std::fs::create_dir_all(dir.path().join(&long)).unwrap();
        std::fs::write(dir.path().join(&long).join("f.sh"), "echo hi\n").unwrap();
        std::fs::write(dir.path().join("top.yaml"), "metadata: {}\n").unwrap();
        std::os::unix::fs::symlink("top.yaml", dir.path().join("link.yaml")).unwrap();
        for format in [&["--format=gnu"][..], &["--format=pax"]] {
            let e = entries(&tar_of(dir.path(), format)).unwrap();
            let f = e
                .iter()
                .find(|e| e.path == format!("{long}/f.sh"))
                .expect("long name kept");
            assert_eq!(f.data, b"echo hi\n");
            let l = e.iter().find(|e| e.path == "link.yaml").unwrap();
            assert_eq!(
                (l.mode & crate::testshell::S_IFMT, &l.data[..]),
                (S_IFLNK, &b"top.yaml"[..])
            );
            let d = e.iter().position(|e| e.path == "d").unwrap();
            let fi = e
                .iter()
                .position(|e| e.path == format!("{long}/f.sh"))
                .unwrap();
            assert!(d < fi, "directories come before their contents");
        }
    }

    #[test]
    fn traversal_is_refused_with_lavas_message() {
        for name in ["../evil", "a/../../evil", "/etc/passwd"] {
            let mut header = vec![0u8; 512];
            header[..name.len()].copy_from_slice(name.as_bytes());
            header[100..107].copy_from_slice(b"0000644");
            header[124..135].copy_from_slice(b"00000000000");
            header[156] = b'0';
            let mut data = header;
            data.extend(vec![0u8; 1024]);
            assert_eq!(
                entries(&data),
                Err(TarError::Traversal(name.to_owned())),
                "{name}"
            );
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(matches!(
            entries(b"not a tar at all"),
            Err(TarError::Malformed(_))
        ));
        let mut header = vec![b'a'; 512];
        header[124..135].copy_from_slice(b"00000001000");
        header[156] = b'0';
        assert!(matches!(entries(&header), Err(TarError::Malformed(_))));
        header[124..135].copy_from_slice(b"zzzzzzzzzzz");
        assert!(matches!(entries(&header), Err(TarError::Malformed(_))));
    }
}
