//! What a render looked at on disk: the stamp (size and modification time, or absence) of
//! every file a lookup tried, so a cached result can be checked with a few `stat` calls
//! instead of reading and rendering again.
//!
//! A lookup that found nothing is recorded too: a file created later in a directory searched
//! earlier (an admin's override) changes what the next render reads.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The state of one file as a lookup saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileStamp {
    /// The file did not exist.
    Missing,
    /// The file existed with this size and modification time.
    Present {
        /// Its length in bytes.
        len: u64,
        /// Its modification time, where the file system has one.
        modified: Option<SystemTime>,
    },
    /// Its metadata could not be read: never equal to anything, so the result is redone.
    Unknown,
}

impl FileStamp {
    /// The current stamp of `path` (one `stat`, no read).
    pub(crate) fn of(path: &Path) -> FileStamp {
        match std::fs::metadata(path) {
            Ok(meta) => FileStamp::Present {
                len: meta.len(),
                modified: meta.modified().ok(),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => FileStamp::Missing,
            Err(_) => FileStamp::Unknown,
        }
    }

    /// Whether a result read under `self` still holds when the file is now `now`.
    fn still(&self, now: &FileStamp) -> bool {
        !matches!(self, FileStamp::Unknown) && self == now
    }
}

/// The files a render or health-check lookup looked at, in lookup order.
#[derive(Debug, Clone, Default)]
pub struct Stamps {
    files: Vec<(PathBuf, FileStamp)>,
}

impl Stamps {
    /// Records `path`'s current stamp; called before the file is read, so a change between
    /// the stamp and the read shows up as a newer stamp at the next check.
    pub(crate) fn record(&mut self, path: &Path) {
        self.files.push((path.to_owned(), FileStamp::of(path)));
    }

    /// Appends what `other` recorded.
    pub(crate) fn extend(&mut self, other: Stamps) {
        self.files.extend(other.files);
    }

    /// How many file lookups were recorded.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file on disk was looked at (in-memory templates only).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Whether every recorded file still has its stamp. `seen` holds the stamps already taken
    /// during this check round, so each path is stat'ed once however many results share it.
    pub(crate) fn unchanged(&self, seen: &mut HashMap<PathBuf, FileStamp>) -> bool {
        self.files.iter().all(|(path, recorded)| {
            let now = seen
                .entry(path.clone())
                .or_insert_with(|| FileStamp::of(path));
            recorded.still(now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_changed_or_removed_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jinja2");
        let mut stamps = Stamps::default();
        stamps.record(&path);
        assert!(stamps.unchanged(&mut HashMap::new()), "still missing");
        std::fs::write(&path, "a").unwrap();
        assert!(!stamps.unchanged(&mut HashMap::new()), "created");
        let mut stamps = Stamps::default();
        stamps.record(&path);
        assert!(stamps.unchanged(&mut HashMap::new()));
        std::fs::write(&path, "longer").unwrap();
        assert!(!stamps.unchanged(&mut HashMap::new()), "changed");
        let mut stamps = Stamps::default();
        stamps.record(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(!stamps.unchanged(&mut HashMap::new()), "removed");
    }
}
