//! Loading the test definitions of every test shell block before the overlay is built
//! (LAVA's `test-definition` actions, run at deploy time): inline documents as they are,
//! `from: git` through the appliance's mirror cache ([`crate::testdef::git`]), `from: url`
//! archives downloaded and unpacked in memory ([`crate::testdef::tar`]), then each
//! definition's `install: git-repos`. Each step is recorded in the `lava` suite as LAVA
//! records it (`git-repo-action` with the commit, `test-overlay`, `test-install-overlay`,
//! `test-runscript-overlay`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::Value;
use tokio::time::Instant;

use super::job::{JobCtx, timeout_error};
use super::lava_suite::ActionResult;
use super::{JobError, deploy};
use crate::jobdef::action::deploy::Resource;
use crate::jobdef::action::test::{LavaSignal, SkipInstall as JobSkip};
use crate::model::ErrorType;
use crate::pipeline::step::{DefSource, GitSource, TestDef};
use crate::pipeline::{Pipeline, Work};
use crate::testdef::git::{GitError, MirrorUse, Mirrors};
use crate::testdef::{document, read_tree, tar};
use crate::testshell::FileEntry;
use crate::testshell::overlay::{self, SkipInstall};

fn job_err(message: impl Into<String>) -> JobError {
    JobError::new(ErrorType::Job, message)
}

fn infra(message: impl Into<String>) -> JobError {
    JobError::new(ErrorType::Infrastructure, message)
}

/// Every test shell block's definitions, loaded, one list per stage.
pub(super) async fn load(
    ctx: &JobCtx<'_>,
    pipeline: &Pipeline,
) -> Result<Vec<Vec<overlay::TestDefinition>>, JobError> {
    let work = ctx
        .dispatcher
        .config
        .work_dir
        .join(ctx.job_id.to_string())
        .join("testdefs");
    let mirrors = Mirrors::new(&ctx.dispatcher.config.mirror_dir);
    let mut stages = Vec::new();
    let mut index = 0usize;
    for block in &pipeline.blocks {
        let Work::TestShell(shell) = &block.work else {
            continue;
        };
        let namespace = block.action.common.namespace.as_deref();
        let mut stage = Vec::new();
        for td in &shell.tests {
            let dir = work.join(format!("{index}_{}", td.definition.name));
            index += 1;
            stage.push(load_one(ctx, &mirrors, td, &dir, namespace).await?);
        }
        stages.push(stage);
    }
    Ok(stages)
}

async fn load_one(
    ctx: &JobCtx<'_>,
    mirrors: &Mirrors,
    td: &TestDef,
    dir: &Path,
    namespace: Option<&str>,
) -> Result<overlay::TestDefinition, JobError> {
    let d = &td.definition;
    let started = Instant::now();
    let mut commit = None;
    let (mut files, doc) = match &td.source {
        DefSource::Inline(doc) => (Vec::new(), doc.to_serde()),
        DefSource::Git(git) => {
            ctx.log
                .info(format!("Fetching tests from {}", git.repository));
            let checkout_dir = dir.join("checkout");
            let out = clone(ctx, mirrors, git, &checkout_dir, td.repo.timeout).await?;
            let files = read_blocking(checkout_dir).await?;
            let doc = document(&files, &d.path).map_err(job_err)?;
            ctx.record_action(
                ActionResult::new(
                    "git-repo-action",
                    td.repo.level.clone(),
                    namespace,
                    started.elapsed(),
                )
                .with("commit", out.as_str())
                .with("repository", git.repository.as_str())
                .with("path", d.path.as_str()),
            )
            .await;
            commit = Some(out);
            (files, doc)
        }
        DefSource::Url(url) => {
            let client = ctx.dispatcher.http_client()?;
            let resource = Resource {
                url: url.url.clone(),
                compression: None,
                archive_tar: true,
                md5sum: None,
                sha256sum: None,
                sha512sum: None,
                headers: None,
                overlays: None,
            };
            let fetched = tokio::time::timeout(
                td.repo.timeout,
                deploy::fetch(&client, &ctx.log, &resource, url.codec, dir, "testdef.tar"),
            )
            .await
            .map_err(|_| timeout_error("url-repo-action", td.repo.timeout))??;
            let path = fetched.path.clone();
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| infra(format!("Unable to unpack {}: {e}", path.display())))?;
            ctx.log
                .info(format!("Untar tests from file {}", path.display()));
            let files = tar::entries(&bytes)
                .map_err(|e| job_err(format!("Unable to unpack {}: {e}", url.url)))?;
            let doc = document(&files, &d.path).map_err(job_err)?;
            (files, doc)
        }
    };
    let skip: Vec<SkipInstall> = d.skip_install.iter().map(|s| skip_install(*s)).collect();
    let skips_git_repos = d
        .skip_install
        .iter()
        .any(|s| matches!(s, JobSkip::GitRepos | JobSkip::All));
    if !skips_git_repos {
        let repos = git_repos(&doc, &d.parameters_text()).map_err(job_err)?;
        for (n, repo) in repos.into_iter().enumerate() {
            if files.iter().any(|f| f.path == repo.destination) {
                return Err(JobError::new(
                    ErrorType::Test,
                    "Cannot mix string and url forms for the same repository.",
                ));
            }
            let into = dir.join(format!("git-repo-{n}"));
            let source = GitSource {
                repository: repo.url.clone(),
                branch: repo.branch.clone(),
                revision: None,
                shallow: false,
                history: true,
            };
            clone(ctx, mirrors, &source, &into, td.install.timeout).await?;
            let extra = read_blocking(into).await?;
            files.push(FileEntry::dir(repo.destination.clone(), 0o755));
            files.extend(extra.into_iter().map(|f| FileEntry {
                path: format!("{}/{}", repo.destination, f.path),
                ..f
            }));
        }
    }
    let uuid = format!("{}_{}", ctx.job_id, td.repo.level);
    let from = td.source.from();
    let with_repo = |mut r: ActionResult| {
        r = r
            .with("uuid", uuid.as_str())
            .with("name", d.name.as_str())
            .with("path", d.path.as_str())
            .with("from", from);
        match &td.source {
            DefSource::Git(g) => r.with("repository", g.repository.as_str()),
            DefSource::Url(u) => r.with("repository", u.url.as_str()),
            DefSource::Inline(_) => r,
        }
    };
    let none = Duration::ZERO;
    ctx.record_action(with_repo(ActionResult::new(
        "test-overlay",
        td.overlay.level.clone(),
        namespace,
        none,
    )))
    .await;
    let install = ActionResult::new(
        "test-install-overlay",
        td.install.level.clone(),
        namespace,
        none,
    );
    let has_install = matches!(&doc, Value::Mapping(m) if m.contains_key("install"));
    ctx.record_action(if has_install {
        install.with("uuid", uuid.as_str())
    } else {
        install.with("skipped test-install-overlay", uuid.as_str())
    })
    .await;
    ctx.record_action(
        with_repo(ActionResult::new(
            "test-runscript-overlay",
            td.runscript.level.clone(),
            namespace,
            none,
        ))
        .with("filename", format!("{}/run.sh", d.name)),
    )
    .await;
    let (repository, revision) = match &td.source {
        DefSource::Git(g) => (Some(g.repository.clone()), g.revision.clone()),
        DefSource::Url(u) => (Some(u.url.clone()), None),
        DefSource::Inline(_) => (None, None),
    };
    Ok(overlay::TestDefinition {
        name: d.name.clone(),
        level: td.repo.level.clone(),
        from: from.to_owned(),
        repository,
        path: Some(d.path.clone()),
        revision,
        commit_id: commit,
        document: doc,
        parameters: d.parameters_text(),
        skip_install: skip,
        kmsg_signals: d.lava_signal == Some(LavaSignal::Kmsg),
        distro: ctx.distro.clone(),
        files,
    })
}

/// Clones `source` into `dest` through the mirror cache, bounded by `timeout`; a failure is
/// LAVA's InfrastructureError, with git's output in the log.
async fn clone(
    ctx: &JobCtx<'_>,
    mirrors: &Mirrors,
    source: &GitSource,
    dest: &Path,
    timeout: Duration,
) -> Result<String, JobError> {
    if tokio::fs::metadata(dest).await.is_ok() {
        tokio::fs::remove_dir_all(dest)
            .await
            .map_err(|e| infra(format!("removing {}: {e}", dest.display())))?;
    }
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| infra(format!("creating {}: {e}", parent.display())))?;
    }
    let log = ctx.log.clone();
    let say = move |m: String| log.debug(m);
    let out = tokio::time::timeout(timeout, mirrors.checkout(source, dest, &say))
        .await
        .map_err(|_| timeout_error("git-repo-action", timeout))?;
    match out {
        Ok(c) => {
            ctx.log.info(format!(
                "{}: commit {} ({})",
                source.repository,
                c.commit,
                match c.mirror {
                    MirrorUse::Created => "mirror created",
                    MirrorUse::Refreshed => "mirror refreshed",
                }
            ));
            Ok(c.commit)
        }
        Err(e @ GitError::Fetch { .. }) => {
            if let GitError::Fetch { output, .. } = &e {
                ctx.log.error(output.clone());
            }
            Err(infra(e.to_string()))
        }
        Err(e) => Err(infra(e.to_string())),
    }
}

async fn read_blocking(dir: PathBuf) -> Result<Vec<FileEntry>, JobError> {
    tokio::task::spawn_blocking(move || {
        read_tree(&dir).map_err(|e| infra(format!("reading {}: {e}", dir.display())))
    })
    .await
    .map_err(|e| JobError::new(ErrorType::Bug, format!("reading a checkout: {e}")))?
}

/// One `install: git-repos` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitRepo {
    pub(crate) url: String,
    pub(crate) branch: Option<String>,
    /// Directory inside the test directory (one level, as LAVA requires).
    pub(crate) destination: String,
}

/// The `install: git-repos` of a definition, with LAVA's parameter substitution for `url`,
/// `destination` and `branch` (a value naming a parameter takes its value, the job's
/// over the definition's) and its checks.
pub(crate) fn git_repos(
    doc: &Value,
    job_params: &[(String, String)],
) -> Result<Vec<GitRepo>, String> {
    let Some(list) = doc.get("install").and_then(|i| i.get("git-repos")) else {
        return Ok(Vec::new());
    };
    let Value::Sequence(list) = list else {
        return Err("Unrecognised git-repos block.".into());
    };
    let lookup = |v: &str| -> String {
        if let Some((_, val)) = job_params.iter().find(|(k, _)| k == v) {
            return val.clone();
        }
        if let Some(val) = doc
            .get("params")
            .and_then(|p| p.get(v))
            .and_then(Value::as_str)
        {
            return val.to_owned();
        }
        v.to_owned()
    };
    let base = |url: &str| {
        let trimmed = url.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
        trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
    };
    let mut out = Vec::new();
    for repo in list {
        let (url, branch, destination) = match repo {
            Value::String(url) => (url.clone(), None, base(url)),
            Value::Mapping(m) => {
                let url = m
                    .get("url")
                    .and_then(Value::as_str)
                    .map(lookup)
                    .filter(|u| !u.is_empty())
                    .ok_or("Invalid git-repos dictionary in install definition.")?;
                let branch = m.get("branch").and_then(Value::as_str).map(lookup);
                let destination = m
                    .get("destination")
                    .and_then(Value::as_str)
                    .map(lookup)
                    .unwrap_or_else(|| base(&url));
                (url, branch, destination)
            }
            _ => return Err("Unrecognised git-repos block.".into()),
        };
        if destination.is_empty()
            || destination.contains('/')
            || destination == "."
            || destination == ".."
        {
            return Err(format!("Destination path is unacceptable {destination}"));
        }
        out.push(GitRepo {
            url,
            branch,
            destination,
        });
    }
    Ok(out)
}

pub(super) fn skip_install(s: JobSkip) -> SkipInstall {
    match s {
        JobSkip::Keys => SkipInstall::Keys,
        JobSkip::Sources => SkipInstall::Sources,
        JobSkip::Deps => SkipInstall::Deps,
        JobSkip::Steps => SkipInstall::Steps,
        JobSkip::GitRepos => SkipInstall::GitRepos,
        JobSkip::All => SkipInstall::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(y: &str) -> Value {
        serde_norway::from_str(y).unwrap()
    }

    #[test]
    fn git_repos_take_both_forms_and_parameters() {
        let d = doc(
            "params: {REPO: 'https://h/x/defs.git'}\ninstall:\n  git-repos:\n  - https://h/a/tools.git\n  - {url: REPO, destination: DEST, branch: dev}\n",
        );
        let r = git_repos(&d, &[("DEST".into(), "mine".into())]).unwrap();
        assert_eq!(
            r,
            [
                GitRepo {
                    url: "https://h/a/tools.git".into(),
                    branch: None,
                    destination: "tools".into()
                },
                GitRepo {
                    url: "https://h/x/defs.git".into(),
                    branch: Some("dev".into()),
                    destination: "mine".into()
                },
            ]
        );
        let bad = doc("install:\n  git-repos:\n  - {url: u, destination: ../x}\n");
        assert_eq!(
            git_repos(&bad, &[]).unwrap_err(),
            "Destination path is unacceptable ../x"
        );
        let none = doc("install:\n  git-repos:\n  - {branch: b}\n");
        assert_eq!(
            git_repos(&none, &[]).unwrap_err(),
            "Invalid git-repos dictionary in install definition."
        );
    }
}
