//! `from: git` through the `git` program (what LAVA runs), with a bare mirror per repository
//! in the data directory so a lab's hundredth job from one repository fetches only what
//! changed.
//!
//! For each job: lock the repository's mirror (`<mirrors>/<key>.lock`, an advisory file lock,
//! so concurrent jobs and lavabox processes take turns), create it with `git clone --mirror`
//! or refresh it with `git fetch --prune`, then clone the job's copy from the mirror as LAVA
//! clones from the repository (`--depth=1` when shallow, `-b BRANCH`, then `checkout
//! REVISION`), point its `origin` back at the real URL, read the commit, and drop `.git` when
//! `history: false`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::Digest;

use crate::pipeline::step::GitSource;

/// Why a repository could not be checked out.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A git command failed; `output` is what it printed.
    #[error("Unable to fetch git repository '{url}'")]
    Fetch {
        /// The repository.
        url: String,
        /// The failing command and its output, for the job log.
        output: String,
    },
    /// Local I/O (the mirror directory, the lock).
    #[error("git mirror {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the mirror did for this checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorUse {
    /// It did not exist: the repository was cloned whole into it.
    Created,
    /// It existed and was refreshed with a fetch.
    Refreshed,
}

/// A job's checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit checked out (`git log -1 --pretty=%H`).
    pub commit: String,
    /// What the mirror did.
    pub mirror: MirrorUse,
}

/// The appliance's repository mirrors, one bare mirror per repository URL under `dir`.
#[derive(Debug, Clone)]
pub struct Mirrors {
    dir: PathBuf,
}

/// The directory name of `url`'s mirror: readable, and unique by a hash of the whole URL.
pub fn mirror_key(url: &str) -> String {
    let readable: String = url
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let hash = sha2::Sha256::digest(url.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{hex}")
}

impl Mirrors {
    /// Mirrors kept in `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Mirrors {
        Mirrors { dir: dir.into() }
    }

    /// The mirror of `url`.
    pub fn mirror_path(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.git", mirror_key(url)))
    }

    /// Checks `source` out into `dest` (which must not exist), logging each git command
    /// through `log`.
    pub async fn checkout(
        &self,
        source: &GitSource,
        dest: &Path,
        log: &(dyn Fn(String) + Sync),
    ) -> Result<Checkout, GitError> {
        let url = source.repository.as_str();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| GitError::Io { path, source }
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io(&self.dir))?;
        let mirror = self.mirror_path(url);
        let lock_path = self.dir.join(format!("{}.lock", mirror_key(url)));
        let lock = {
            let path = lock_path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)?;
                file.lock()?;
                Ok(file)
            })
            .await
            .map_err(|e| GitError::Io {
                path: lock_path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(io(&lock_path))?
        };
        let fail = |output: String| GitError::Fetch {
            url: url.to_owned(),
            output,
        };
        let used = if tokio::fs::metadata(mirror.join("HEAD")).await.is_ok() {
            log(format!("Updating the mirror of {url}"));
            git(
                log,
                &["fetch", "--prune", "--force", "origin"],
                Some(&mirror),
            )
            .await
            .map_err(fail)?;
            MirrorUse::Refreshed
        } else {
            log(format!("Cloning {url} into a new mirror"));
            let tmp = self.dir.join(format!("{}.tmp", mirror_key(url)));
            if tokio::fs::metadata(&tmp).await.is_ok() {
                tokio::fs::remove_dir_all(&tmp).await.map_err(io(&tmp))?;
            }
            let tmp_s = tmp.to_string_lossy().into_owned();
            git(log, &["clone", "--mirror", "--", url, &tmp_s], None)
                .await
                .map_err(fail)?;
            tokio::fs::rename(&tmp, &mirror)
                .await
                .map_err(io(&mirror))?;
            MirrorUse::Created
        };
        // `--depth` is honoured only over a transport, hence file:// for the local mirror.
        let from = format!("file://{}", mirror.display());
        let dest_s = dest.to_string_lossy().into_owned();
        let mut args = vec!["clone"];
        if let Some(b) = &source.branch {
            args.extend(["-b", b.as_str()]);
        }
        if source.shallow {
            args.push("--depth=1");
        }
        args.extend(["--", from.as_str(), dest_s.as_str()]);
        git(log, &args, None).await.map_err(fail)?;
        drop(lock);
        if let Some(rev) = &source.revision {
            git(log, &["checkout", rev.as_str()], Some(dest))
                .await
                .map_err(fail)?;
        }
        git(log, &["remote", "set-url", "origin", url], Some(dest))
            .await
            .map_err(fail)?;
        let commit = git(log, &["log", "-1", "--pretty=%H"], Some(dest))
            .await
            .map_err(fail)?
            .trim()
            .to_owned();
        if !source.history {
            log(format!("Removing '.git' directory in {}", dest.display()));
            let dotgit = dest.join(".git");
            tokio::fs::remove_dir_all(&dotgit)
                .await
                .map_err(io(&dotgit))?;
        }
        Ok(Checkout {
            commit,
            mirror: used,
        })
    }
}

/// Runs `git ARGS` (in `dir`), returning its standard output; on failure, the command and
/// everything it printed.
async fn git(
    log: &(dyn Fn(String) + Sync),
    args: &[&str],
    dir: Option<&Path>,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let line = match dir {
        Some(d) => format!("git -C {} {}", d.display(), args.join(" ")),
        None => format!("git {}", args.join(" ")),
    };
    log(format!("Running '{line}'"));
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("{line}: cannot run git: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{line}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_share_one_mirror_and_a_bad_url_is_lavas_error() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        run_git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("t.yaml"), "metadata: {name: t}\n").unwrap();
        run_git(&repo, &["add", "-A"]);
        run_git(&repo, &["commit", "-q", "-m", "one"]);
        let mirrors = Mirrors::new(dir.path().join("mirrors"));
        let source = GitSource {
            repository: format!("file://{}", repo.display()),
            branch: None,
            revision: None,
            shallow: true,
            history: false,
        };
        let quiet = |_: String| {};
        let (da, db) = (dir.path().join("a"), dir.path().join("b"));
        let (a, b) = tokio::join!(
            mirrors.checkout(&source, &da, &quiet),
            mirrors.checkout(&source, &db, &quiet)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.commit, b.commit);
        let mut uses = [a.mirror, b.mirror];
        uses.sort_by_key(|u| *u == MirrorUse::Refreshed);
        assert_eq!(
            uses,
            [MirrorUse::Created, MirrorUse::Refreshed],
            "one clone, one fetch"
        );
        for d in ["a", "b"] {
            assert!(dir.path().join(d).join("t.yaml").is_file());
            assert!(!dir.path().join(d).join(".git").exists(), "history: false");
        }
        let gone = GitSource {
            repository: format!("file://{}/nothing", dir.path().display()),
            ..source
        };
        let err = mirrors
            .checkout(&gone, &dir.path().join("c"), &quiet)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Unable to fetch git repository 'file://{}/nothing'",
                dir.path().display()
            )
        );
    }

    #[test]
    fn mirror_keys_are_readable_and_unique_per_url() {
        let a = mirror_key("https://github.com/Linaro/test-definitions.git");
        assert!(a.starts_with("test-definitions-"), "{a}");
        let b = mirror_key("git://other.example/test-definitions.git");
        assert_ne!(a, b);
        assert_eq!(
            a,
            mirror_key("https://github.com/Linaro/test-definitions.git")
        );
        let odd = mirror_key("file:///../../x y/");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
            "{odd}"
        );
    }
}
