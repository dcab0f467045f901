//! One running job: [`JobCtx`] (its board, console connection, overlay and what its deploys
//! staged) and the walk over the pipeline's blocks with their retries, repeats and timeouts.
//! Each block's [`Work`] is done by the file of its deploy target, boot method or test shell.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::{Connection, WaitError};
use super::lava_suite::ActionResult;
use super::log::JobLog;
use super::{
    Dispatcher, JobError, JobRun, boot, deploy, lxc, test_definitions, test_interactive,
    test_monitors, test_shell,
};
use crate::devicetype::DeviceConfig;
use crate::hw::{Board, Cycle, PowerState, Transcript};
use crate::jobdef::JobDefinition;
use crate::jobdef::action::deploy::KernelType;
use crate::model::{ErrorType, JobId};
use crate::pipeline::{Block, Node, Pipeline, Runs, Work};
use crate::testshell::overlay::Overlay;

/// How long the power-off at the end of a job may take per command.
pub(super) const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(60);

/// One running job's state; outlives the pipeline future so cleanup can always run.
pub(super) struct JobCtx<'a> {
    pub(super) dispatcher: &'a Dispatcher,
    pub(super) job_id: JobId,
    pub(super) log: JobLog,
    pub(super) definition: JobDefinition,
    pub(super) device: DeviceConfig,
    pub(super) board: Board,
    pub(super) conn: Option<Connection>,
    /// The job's directory (its log's), where result `extra` files go.
    pub(super) job_dir: PathBuf,
    pub(super) overlay: Option<Overlay>,
    /// `{KERNEL}`, `{RAMDISK}`, `{DTB}`… → paths relative to the TFTP root.
    pub(super) tftp_files: BTreeMap<&'static str, String>,
    /// The deployed kernel's type, when the job names it.
    pub(super) kernel_type: Option<KernelType>,
    /// tmpfs images: (name, path, image_arg).
    pub(super) images: Vec<(String, PathBuf, Option<String>)>,
    /// Whether any block runs the test shell (deploys then add the overlay).
    pub(super) has_tests: bool,
    /// The deployed system's `os:` (LAVA's `deployment_data.distro`), for `deps-<distro>`.
    pub(super) distro: Option<String>,
    /// The `lava-lxc` container, once a deploy to lxc named it.
    pub(super) lxc: Option<lxc::LxcState>,
    /// The namespace whose connection `conn` is (`None`: the job's only one).
    pub(super) namespace: Option<String>,
    /// The connections of the other namespaces, while one namespace's actions run.
    pub(super) parked: BTreeMap<String, Connection>,
}

/// The `os:` of the job's first deploy that names one.
fn definition_distro(definition: &JobDefinition) -> Option<String> {
    use crate::jobdef::action::deploy::Deploy;
    definition.actions.iter().find_map(|a| match &a.kind {
        crate::jobdef::action::ActionKind::Deploy(Deploy::Tftp(t)) => t.os.clone(),
        crate::jobdef::action::ActionKind::Deploy(Deploy::Tmpfs(t)) => t.os.clone(),
        _ => None,
    })
}

/// Writes an action's `extra` as YAML at `path`, over the items of an earlier file of that
/// name (LAVA updates the existing store).
fn write_extra(
    path: &std::path::Path,
    extra: serde_json::Map<String, serde_json::Value>,
) -> std::io::Result<()> {
    let mut data: serde_json::Map<String, serde_json::Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_norway::from_str(&text).ok())
        .unwrap_or_default();
    data.extend(extra);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_norway::to_string(&data).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

/// A [`Transcript`] into the job log: each command as `ACTION: COMMAND`, its output as debug.
pub(super) struct Said<'a> {
    pub(super) log: &'a JobLog,
    pub(super) action: &'a str,
}

impl Transcript for Said<'_> {
    fn command(&self, command: &str) {
        self.log.info(format!("{}: {command}", self.action));
    }

    fn output(&self, line: &str) {
        self.log.debug(line.to_owned());
    }
}

/// An action that ran out of time.
pub(super) fn timeout_error(name: &str, d: Duration) -> JobError {
    JobError::new(
        ErrorType::LavaTimeout,
        format!("{name} timed out after {} seconds", d.as_secs()),
    )
}

/// A failed console wait of action `name`, limited to `d`, as a job error.
pub(super) fn wait_error(name: &str, d: Duration) -> impl Fn(WaitError) -> JobError + '_ {
    move |e| match e {
        WaitError::Timeout => timeout_error(name, d),
        WaitError::Closed(why) => JobError::new(
            ErrorType::Infrastructure,
            format!("Connection closed: {why}"),
        ),
    }
}

/// A hardware failure as a job error: a configuration that cannot work, or the board's fault.
pub(super) fn hw_error(e: &crate::hw::Error) -> JobError {
    let class = match e.kind() {
        crate::hw::ErrorKind::Config => ErrorType::Configuration,
        _ => ErrorType::Infrastructure,
    };
    JobError::new(class, e.to_string())
}

impl<'a> JobCtx<'a> {
    pub(super) fn new(
        dispatcher: &'a Dispatcher,
        run: &JobRun,
        log: JobLog,
        definition: JobDefinition,
        device: DeviceConfig,
        board: Board,
        pipeline: &Pipeline,
    ) -> JobCtx<'a> {
        JobCtx {
            dispatcher,
            job_id: run.job.id,
            log,
            device,
            board,
            conn: None,
            job_dir: run
                .log_path
                .parent()
                .map_or_else(PathBuf::new, std::path::Path::to_owned),
            overlay: None,
            tftp_files: BTreeMap::new(),
            kernel_type: None,
            images: Vec::new(),
            has_tests: pipeline
                .blocks
                .iter()
                .any(|b| matches!(b.work, Work::TestShell(_))),
            distro: definition_distro(&definition),
            definition,
            lxc: None,
            namespace: None,
            parked: BTreeMap::new(),
        }
    }

    /// Makes `namespace`'s connection the current one (LAVA's namespaces: a container and a
    /// board in one job each keep their own shell); a block without a namespace stays in the
    /// current one.
    pub(super) fn enter(&mut self, namespace: Option<&str>) {
        let Some(ns) = namespace else {
            return;
        };
        if self.namespace.as_deref() == Some(ns) {
            return;
        }
        if let Some(conn) = self.conn.take() {
            let key = self.namespace.clone().unwrap_or_default();
            self.parked.insert(key, conn);
        }
        self.conn = self.parked.remove(ns);
        self.namespace = Some(ns.to_owned());
    }

    /// Closes the console, stops the emulator, powers the device off (LAVA's `finalize`, the
    /// top-level action numbered `finalize`).
    pub(super) async fn cleanup(&mut self, finalize: usize) {
        if let Some(mut conn) = self.conn.take() {
            conn.close();
        }
        for (_, mut conn) in std::mem::take(&mut self.parked) {
            conn.close();
        }
        lxc::teardown(self).await;
        if self.board.runs_emulator() {
            self.log.info("stopping the emulator");
            self.board.stop_emulator().await;
        }
        let started = Instant::now();
        let said = Said {
            log: &self.log,
            action: "power-off",
        };
        let off = self
            .board
            .power()
            .set(PowerState::Off, POWER_OFF_TIMEOUT, &said)
            .await;
        match off {
            Ok(()) => {
                let level = format!("{finalize}.1");
                let done = ActionResult::new("power-off", level, None, started.elapsed())
                    .with("status", "success");
                self.record_action(done).await;
            }
            Err(crate::hw::Error::NoPowerControl) => {}
            Err(e) => self.log.debug(format!("power-off: {e}")),
        }
    }

    /// Logs and stores one of the dispatcher's own `lava` suite results, with its `extra`
    /// written where LAVA keeps it (`<job dir>/metadata/…`, merged into an earlier file of
    /// the same name) and the case's metadata naming that file.
    pub(super) async fn record_action(&self, result: ActionResult) {
        self.log.results(result.log_entry());
        let extra_path = match result.extra_file() {
            Some(relative) => {
                let path = self.job_dir.join(relative);
                let extra = result.extra.clone();
                let at = path.clone();
                let written = tokio::task::spawn_blocking(move || write_extra(&at, extra)).await;
                match written {
                    Ok(Ok(())) => Some(path.display().to_string()),
                    Ok(Err(e)) => {
                        self.log.debug(format!("{}: {e}", path.display()));
                        None
                    }
                    Err(e) => {
                        self.log.debug(format!("{}: {e}", path.display()));
                        None
                    }
                }
            }
            None => None,
        };
        self.dispatcher
            .record(self.job_id, vec![result.case(extra_path.as_deref())])
            .await;
    }

    /// The test overlay, built on first use, after its test definitions are fetched.
    pub(super) async fn overlay(&mut self, pipeline: &Pipeline) -> Result<&Overlay, JobError> {
        if self.overlay.is_none() {
            let stages = test_definitions::load(self, pipeline).await?;
            self.overlay = Some(test_shell::build_overlay(
                self.job_id,
                &self.definition,
                &self.device,
                stages,
                &self.dispatcher.config.server_ip.to_string(),
            )?);
        }
        self.overlay
            .as_ref()
            .ok_or_else(|| JobError::new(ErrorType::Bug, "overlay missing"))
    }

    /// Attaches to the board's console unless already attached.
    pub(super) async fn connect(&mut self) -> Result<(), JobError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let console = self.board.console().map_err(|e| hw_error(&e))?;
        self.log
            .info(format!("connect-device: {}", console.describe));
        let factory = console.factory.clone();
        let mut conn = Connection::open(factory, self.log.clone()).await?;
        conn.set_char_delay(self.device.character_delays.boot);
        self.conn = Some(conn);
        Ok(())
    }

    /// The console connection a boot opened.
    pub(super) fn conn(&mut self) -> Result<&mut Connection, JobError> {
        self.conn.as_mut().ok_or_else(|| {
            JobError::new(
                ErrorType::Job,
                "no connection: the job needs a boot action before its tests",
            )
        })
    }

    /// Power-cycles the board (`reset-device`): its hard reset, recorded as LAVA's
    /// `pdu-reboot`, or else off and on.
    pub(super) async fn reset(
        &mut self,
        node: &Node,
        namespace: Option<&str>,
    ) -> Result<(), JobError> {
        let started = Instant::now();
        let said = Said {
            log: &self.log,
            action: "reset-device",
        };
        let how = self
            .board
            .power()
            .cycle(node.timeout, &said)
            .await
            .map_err(|e| hw_error(&e))?;
        if how == Cycle::HardReset {
            let level = format!("{}.1", node.level);
            let done = ActionResult::new("pdu-reboot", level, namespace, started.elapsed())
                .with("status", "success");
            self.record_action(done).await;
        }
        Ok(())
    }

    /// Runs a dictionary user command, its output into the log.
    async fn user_command(
        &self,
        name: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<(), JobError> {
        self.log.info(format!("user-command {name}: {command}"));
        match self.board.commands().run(command, timeout).await {
            Ok(out) => {
                out.output
                    .lines()
                    .for_each(|l| self.log.debug(l.to_owned()));
                Ok(())
            }
            Err(e) => {
                e.output()
                    .unwrap_or_default()
                    .lines()
                    .for_each(|l| self.log.debug(l.to_owned()));
                Err(JobError::new(ErrorType::Infrastructure, e.to_string()))
            }
        }
    }
}

/// Runs every block of the pipeline in order.
pub(super) async fn run_pipeline(
    ctx: &mut JobCtx<'_>,
    pipeline: &Pipeline,
) -> Result<(), JobError> {
    for block in &pipeline.blocks {
        let name = block.root.name.clone();
        let result = match block.runs {
            Runs::UntilSuccess { tries, interval } => {
                let mut last = Ok(());
                for attempt in 1..=tries {
                    last = run_timed(ctx, pipeline, block).await;
                    match &last {
                        Ok(()) => break,
                        Err(e) if matches!(e.error_type, ErrorType::Bug | ErrorType::Canceled) => {
                            break;
                        }
                        Err(e) if attempt < tries => {
                            ctx.log.error(format!(
                                "{name} failed ({}), retrying: attempt {}/{tries}",
                                e.message,
                                attempt + 1
                            ));
                            tokio::time::sleep(interval).await;
                        }
                        Err(_) => {}
                    }
                }
                match last {
                    Err(e) if tries > 1 => Err(JobError::new(
                        e.error_type,
                        format!(
                            "{tries} retries out of {tries} failed for {name}: {}",
                            e.message
                        ),
                    )),
                    other => other,
                }
            }
            Runs::Repeat { times } => {
                let mut first_err = None;
                for _ in 0..times {
                    if let Err(e) = run_timed(ctx, pipeline, block).await
                        && first_err.is_none()
                    {
                        first_err = Some(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
        };
        match result {
            Err(e) if e.error_type == ErrorType::LavaTimeout && block.skip_on_timeout => {
                ctx.log
                    .error(format!("{}; skipping (timeout skip: true)", e.message));
            }
            other => other?,
        }
    }
    Ok(())
}

async fn run_timed(
    ctx: &mut JobCtx<'_>,
    pipeline: &Pipeline,
    block: &Block,
) -> Result<(), JobError> {
    let started = Instant::now();
    let name = block.root.name.clone();
    ctx.log.info(format!(
        "start: {} {} (timeout {}s)",
        block.root.level,
        name,
        block.root.timeout.as_secs()
    ));
    let work = run_block(ctx, pipeline, block);
    let result = match tokio::time::timeout(block.root.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(timeout_error(&name, block.root.timeout)),
    };
    let duration = started.elapsed().as_secs_f64();
    ctx.log.info(format!(
        "end: {} {} (duration {duration:.2})",
        block.root.level, name
    ));
    // The job log is synced on a timer while an action runs; its end is on disk before the
    // next action starts (the durability rule in `dispatcher::log`).
    ctx.log.sync().await;
    result
}

async fn run_block(
    ctx: &mut JobCtx<'_>,
    pipeline: &Pipeline,
    block: &Block,
) -> Result<(), JobError> {
    let namespace = block.action.common.namespace.as_deref();
    ctx.enter(namespace);
    match &block.work {
        Work::LxcDeploy(work) => lxc::deploy(ctx, pipeline, work, namespace).await,
        Work::LxcBoot(work) => lxc::boot(ctx, work, namespace).await,
        Work::Tftp(work) => deploy::tftp::run(ctx, pipeline, work, namespace).await,
        Work::Tmpfs(images) => deploy::tmpfs::run(ctx, pipeline, images, namespace).await,
        Work::UBoot(work) => boot::uboot::run(ctx, work, namespace).await,
        Work::Qemu(work) => boot::qemu::run(ctx, work, namespace).await,
        Work::Minimal(work) => boot::minimal::run(ctx, work, namespace).await,
        Work::TestShell(work) => test_shell::run(ctx, pipeline, work).await,
        Work::Interactive(work) => test_interactive::run(ctx, work).await,
        Work::Monitors(work) => test_monitors::run(ctx, work).await,
        Work::Command(cmd) => {
            ctx.user_command(&cmd.name, &cmd.command, block.root.timeout)
                .await
        }
    }
}
