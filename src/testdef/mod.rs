//! Fetching test definitions that are not inline: `from: git` ([`git`]: the `git` program and
//! a mirror cache per repository) and `from: url` ([`tar`]: the archive's members, checked).
//!
//! Either way the result is the definition's directory as overlay entries (paths relative to
//! the test directory), which `testshell::overlay::build` copies to
//! `<root>/<stage>/tests/<index>_<name>/` as LAVA clones or unpacks into it.

pub mod git;
pub mod tar;

use std::path::Path;

use crate::testshell::{FileEntry, S_IFLNK};

/// Reads the directory tree at `root` into overlay entries (each directory's entries in name
/// order, every directory before its contents). Symbolic links are kept as links and never followed, so a
/// repository cannot make the dispatcher read outside it. Blocking.
pub fn read_tree(root: &Path) -> std::io::Result<Vec<FileEntry>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let name_s = name.to_string_lossy().into_owned();
            let path = dir.join(&name);
            let rel_path = if rel.is_empty() {
                name_s
            } else {
                format!("{rel}/{name_s}")
            };
            let meta = std::fs::symlink_metadata(&path)?;
            let perm = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                out.push(FileEntry {
                    path: rel_path,
                    mode: S_IFLNK | 0o777,
                    data: target.to_string_lossy().into_owned().into_bytes(),
                });
            } else if meta.is_dir() {
                out.push(FileEntry::dir(rel_path.clone(), perm));
                subdirs.push((path, rel_path));
            } else if meta.is_file() {
                out.push(FileEntry::file(rel_path, perm, std::fs::read(&path)?));
            }
        }
        // Subdirectories are read after their parent's entries; reversed so the first name
        // is read next.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// The definition document at `path` among `files` (the fetched tree), parsed; the error is
/// LAVA's Job error text.
pub fn document(files: &[FileEntry], path: &str) -> Result<serde_norway::Value, String> {
    let want: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let want = want.join("/");
    let entry = files
        .iter()
        .find(|f| f.path == want && f.mode & crate::testshell::S_IFMT == crate::testshell::S_IFREG)
        .ok_or_else(|| {
            format!("Unable to open test definition '{path}': [Errno 2] No such file or directory")
        })?;
    let text = std::str::from_utf8(&entry.data)
        .map_err(|_| format!("Unable to open test definition '{path}': not UTF-8 text"))?;
    serde_norway::from_str(text)
        .map_err(|e| format!("Unable to parse test definition '{path}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_keeps_modes_and_links_and_never_follows_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("automated/lib")).unwrap();
        std::fs::write(root.join("automated/lib/sh-test-lib"), "x=1\n").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
        let t = read_tree(&root).unwrap();
        let paths: Vec<&str> = t.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "automated",
                "escape",
                "run.sh",
                "automated/lib",
                "automated/lib/sh-test-lib"
            ]
        );
        assert_eq!(t[2].perm(), 0o755);
        assert_eq!(t[1].mode & crate::testshell::S_IFMT, S_IFLNK);
        assert_ne!(t[1].data, b"s", "the link is not read through");
        assert!(document(&t, "./automated/lib/sh-test-lib").is_ok());
        assert_eq!(
            document(&t, "nope.yaml").unwrap_err(),
            "Unable to open test definition 'nope.yaml': [Errno 2] No such file or directory"
        );
        assert!(
            document(&t, "automated").is_err(),
            "a directory is no definition"
        );
    }
}
