//! Wakes a live log stream when its job's log file changes, instead of looking at the file
//! on a timer: an inotify watch (nix's, no extra crate) on the file, or, before the
//! dispatcher has created it, on the nearest existing directory above it, moved onto the
//! file as soon as the file exists.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

/// An inotify instance the runtime can wait on.
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Follows one log file.
pub struct LogFollower {
    path: PathBuf,
    fd: AsyncFd<Watch>,
    /// The watch is on the file itself (else on a directory above it).
    on_file: bool,
}

impl LogFollower {
    /// Starts watching `path`. Create it before reading the file, so no write between the
    /// read and the wait goes unnoticed.
    pub fn new(path: &Path) -> io::Result<LogFollower> {
        let (fd, on_file) = arm(path)?;
        Ok(LogFollower {
            path: path.to_owned(),
            fd,
            on_file,
        })
    }

    /// Resolves once the file may have grown or appeared since the last call.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.get_inner().0.read_events() {
                Ok(_) => break,
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
        if !self.on_file {
            // Something was created on the way to the file: aim at what exists now (the
            // file itself, or a directory nearer to it). What was created before this new
            // watch, the caller reads now; what comes after, the new watch sees.
            let (fd, on_file) = arm(&self.path)?;
            self.fd = fd;
            self.on_file = on_file;
        }
        Ok(())
    }
}

/// A new watch on `path`, or on its nearest existing ancestor; whether it is on `path`.
fn arm(path: &Path) -> io::Result<(AsyncFd<Watch>, bool)> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let mut target = path;
    let on_file = loop {
        let mask = if target == path {
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF
        } else {
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO
        };
        match inotify.add_watch(target, mask) {
            Ok(_) => break target == path,
            Err(Errno::ENOENT) => {
                target = target.parent().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "no directory above the log")
                })?;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Deprecated in tokio 1.54 for an `unsafe` constructor, since an `AsRawFd` may hand out
    // an fd it does not own. `Watch` owns its inotify fd and the `AsyncFd` owns the `Watch`,
    // so the fd outlives its registration; this crate forbids `unsafe` (as
    // `hw::console::on_demand` does).
    #[allow(deprecated)]
    let fd = AsyncFd::new(Watch(inotify))?;
    Ok((fd, on_file))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::*;

    async fn changes_within(f: &mut LogFollower) -> bool {
        tokio::time::timeout(Duration::from_secs(10), f.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn a_write_wakes_the_follower() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.yaml");
        std::fs::write(&path, "- first\n").unwrap();
        let mut f = LogFollower::new(&path).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"- second\n").unwrap();
        assert!(changes_within(&mut f).await);
    }

    #[tokio::test]
    async fn a_log_created_later_in_a_new_directory_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs/7/output.yaml");
        let mut f = LogFollower::new(&path).unwrap();
        assert!(!f.on_file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert!(changes_within(&mut f).await, "the directories appeared");
        std::fs::write(&path, "- first\n").unwrap();
        // Each call re-aims while the file is missing; once on it, writes wake it.
        while !f.on_file {
            assert!(changes_within(&mut f).await);
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"- second\n").unwrap();
        assert!(changes_within(&mut f).await);
    }
}
