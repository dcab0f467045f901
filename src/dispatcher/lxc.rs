//! The `lava-lxc` protocol's container: `deploy: {to: lxc}` (create, udev rule, packages,
//! overlay), `boot: {method: lxc}` (start, devices, the shell through `lxc-attach`) and its
//! teardown at the job's end. The container itself is the board's
//! [`Containers`](crate::hw::lxc::Containers) (only `hw` picks the backend).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::Instant;

use super::JobError;
use super::connection::Connection;
use super::job::{JobCtx, wait_error};
use super::lava_suite::ActionResult;
use crate::hw::lxc::{self, ContainerSpec, Containers, LxcError};
use crate::model::ErrorType;
use crate::pipeline::Pipeline;
use crate::pipeline::step::{LxcBootWork, LxcDeployWork};

/// The container of a running job, for its teardown.
#[derive(Debug)]
pub(super) struct LxcState {
    /// Its name.
    pub(super) name: String,
    /// `persist: true`: stopped, not destroyed, at the end.
    pub(super) persist: bool,
    /// Who drives it.
    pub(super) containers: Arc<dyn Containers>,
    /// Whether a udev rule was installed for it.
    pub(super) udev: bool,
}

/// `<data_dir>/lxc`: the crash markers.
pub(super) fn marker_dir(ctx: &JobCtx<'_>) -> PathBuf {
    let work = &ctx.dispatcher.config.work_dir;
    work.parent().unwrap_or(work).join("lxc")
}

fn infra(e: &LxcError) -> JobError {
    JobError::new(ErrorType::Infrastructure, e.to_string())
}

fn spec(ctx: &JobCtx<'_>, work: &LxcDeployWork) -> ContainerSpec {
    let p = &work.protocol;
    ContainerSpec {
        name: p.container_name(ctx.job_id.0),
        template: p.template.clone(),
        distribution: p.distribution.clone(),
        release: p.release.clone(),
        arch: p.arch.clone(),
        mirror: p.mirror.clone(),
        security_mirror: p.security_mirror.clone(),
        verbose: p.verbose,
    }
}

/// Deploys the container: creates it (or reuses a persistent one), installs the udev rule
/// for the board's devices, installs `packages`, copies the test overlay in.
pub(super) async fn deploy(
    ctx: &mut JobCtx<'_>,
    pipeline: &Pipeline,
    work: &LxcDeployWork,
    namespace: Option<&str>,
) -> Result<(), JobError> {
    let containers = ctx.board.containers();
    containers.installed().await.map_err(|e| infra(&e))?;
    let spec = spec(ctx, work);
    let name = spec.name.clone();
    ctx.lxc = Some(LxcState {
        name: name.clone(),
        persist: work.protocol.persist,
        containers: Arc::clone(&containers),
        udev: false,
    });
    let started = Instant::now();
    let exists = containers.exists(&name).await.map_err(|e| infra(&e))?;
    if exists && work.protocol.persist {
        ctx.log.info(format!(
            "lxc-create-action: persistent container {name} exists, reusing it"
        ));
    } else {
        if exists {
            ctx.log.info(format!(
                "lxc-create-action: destroying an old container {name}"
            ));
            containers.destroy(&name).await.map_err(|e| infra(&e))?;
        }
        let dir = marker_dir(ctx);
        let marker = lxc::marker_path(&dir, &name);
        tokio::fs::create_dir_all(&dir)
            .await
            .and(tokio::fs::write(&marker, format!("job {}\n", ctx.job_id.0)).await)
            .map_err(|e| {
                JobError::new(
                    ErrorType::Infrastructure,
                    format!("writing {}: {e}", marker.display()),
                )
            })?;
        ctx.log.info(format!(
            "lxc-create-action: lxc-create {}",
            lxc::create_args(&spec).join(" ")
        ));
        let log = ctx.log.clone();
        let each = move |line: &str| log.debug(line.to_owned());
        containers
            .create(&spec, work.create.timeout, &each)
            .await
            .map_err(|e| infra(&e))?;
    }
    let done = ActionResult::new(
        "lxc-create-action",
        work.create.level.clone(),
        namespace,
        started.elapsed(),
    )
    .with("container", name.as_str())
    .with(
        "reused",
        if exists && work.protocol.persist {
            "true"
        } else {
            "false"
        },
    );
    ctx.record_action(done).await;

    if let Some(rule) = lxc::udev_rule(&name, &work.devices, "/usr/bin/lxc-device") {
        ctx.log.info(format!(
            "lxc-create-udev-rule-action: {}\n{rule}",
            lxc::udev_rule_file(&name)
        ));
        containers
            .udev_rule(&name, Some(&rule))
            .await
            .map_err(|e| infra(&e))?;
        if let Some(state) = ctx.lxc.as_mut() {
            state.udev = true;
        }
    }

    start(ctx, &containers, &name, work.start.timeout).await?;
    if let Some((update, install)) = &work.apt {
        let run = |argv: Vec<&str>| argv.into_iter().map(str::to_owned).collect::<Vec<_>>();
        ctx.log.info("lxc-apt-update: apt-get update -q");
        let out = containers
            .attach(&name, &run(vec!["apt-get", "update", "-q"]), update.timeout)
            .await
            .map_err(|e| infra(&e))?;
        out.output.lines().for_each(|l| ctx.log.debug(l.to_owned()));
        if out.code != Some(0) {
            return Err(JobError::new(
                ErrorType::Infrastructure,
                "Unable to apt-get update in lxc container",
            ));
        }
        let mut argv = run(vec!["apt-get", "-q", "-y", "install"]);
        argv.extend(work.packages.iter().cloned());
        ctx.log.info(format!("lxc-apt-install: {}", argv.join(" ")));
        let out = containers
            .attach(&name, &argv, install.timeout)
            .await
            .map_err(|e| infra(&e))?;
        out.output.lines().for_each(|l| ctx.log.debug(l.to_owned()));
        if out.code != Some(0) {
            return Err(JobError::new(
                ErrorType::Infrastructure,
                "Unable to install using apt-get in lxc container",
            ));
        }
    }
    if work.overlay || ctx.has_tests {
        let overlay = ctx.overlay(pipeline).await?.clone();
        ctx.log.info(format!(
            "apply-lxc-overlay: {} into container {name}",
            overlay.root
        ));
        containers
            .copy_in(&name, &overlay.entries)
            .await
            .map_err(|e| infra(&e))?;
    }
    Ok(())
}

async fn start(
    ctx: &JobCtx<'_>,
    containers: &Arc<dyn Containers>,
    name: &str,
    timeout: std::time::Duration,
) -> Result<(), JobError> {
    if containers.info(name).await.ok().as_deref() == Some("RUNNING") {
        return Ok(());
    }
    ctx.log.info(format!("lxc-start: lxc-start -n {name} -d"));
    containers.start(name, timeout).await.map_err(|e| infra(&e))
}

/// Boots the container: starts it, passes the board's devices present now into it, and
/// opens its shell (`lxc-attach`) as the namespace's connection.
pub(super) async fn boot(
    ctx: &mut JobCtx<'_>,
    work: &LxcBootWork,
    _namespace: Option<&str>,
) -> Result<(), JobError> {
    let Some(state) = ctx.lxc.as_ref() else {
        return Err(JobError::new(
            ErrorType::Job,
            "boot method lxc needs a deploy to lxc before it",
        ));
    };
    let containers = Arc::clone(&state.containers);
    let name = state.name.clone();
    start(ctx, &containers, &name, work.start.timeout).await?;
    for node in containers.present(&work.devices).await {
        ctx.log
            .info(format!("lxc-add-static: lxc-device -n {name} add {node}"));
        containers
            .add_device(&name, &node)
            .await
            .map_err(|e| infra(&e))?;
    }
    ctx.log.info(format!("connect-lxc: lxc-attach -n {name}"));
    if let Some(mut old) = ctx.conn.take() {
        old.close();
    }
    let mut conn = Connection::open(containers.shell(&name), ctx.log.clone()).await?;
    conn.set_char_delay(ctx.device.character_delays.boot);
    let wait = work.connect.connection_timeout;
    let prompts: Vec<_> = work.prompts.iter().map(|p| p.get().clone()).collect();
    conn.sendline("")
        .await
        .map_err(wait_error("connect-lxc", wait))?;
    conn.expect(&prompts, wait)
        .await
        .map_err(wait_error("expect-shell-connection", wait))?;
    ctx.conn = Some(conn);
    Ok(())
}

/// Tears the job's container down (LAVA's protocol finalise): the udev rule removed, a
/// persistent container stopped and kept, any other destroyed; its crash marker removed once
/// that is done.
pub(super) async fn teardown(ctx: &mut JobCtx<'_>) {
    let Some(state) = ctx.lxc.take() else {
        return;
    };
    let name = &state.name;
    let c = &state.containers;
    if state.udev
        && let Err(e) = c.udev_rule(name, None).await
    {
        ctx.log.debug(format!("removing the udev rule: {e}"));
    }
    let result = if state.persist {
        ctx.log.info(format!(
            "lxc-stop: lxc-stop -k -n {name} (persistent: kept)"
        ));
        c.stop(name).await
    } else {
        ctx.log
            .info(format!("lxc-destroy: lxc-destroy -f -n {name}"));
        c.destroy(name).await
    };
    match result {
        Ok(()) => {
            let marker = lxc::marker_path(&marker_dir(ctx), name);
            let _ = tokio::fs::remove_file(marker).await;
        }
        Err(e) => ctx.log.error(format!("container {name}: {e}")),
    }
}
