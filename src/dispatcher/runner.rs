//! What each pipeline block does: deploys, boots, the test shell, user commands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use tokio::time::Instant;

use super::connection::{Connection, WaitError};
use super::deploy;
use super::kernel_messages;
use super::lava_suite::ActionResult;
use super::log::JobLog;
use super::{Dispatcher, JobError, JobRun};
use crate::devicetype::{DeviceConfig, KernelType};
use crate::hw::{ConsoleFactory, OnceConsole};
use crate::jobdef::JobDefinition;
use crate::jobdef::action::ActionKind;
use crate::jobdef::action::boot::{Boot, BootCommands, Login};
use crate::jobdef::action::deploy::{Deploy, Resource};
use crate::jobdef::action::test::{LavaSignal, Test, TestDefSource};
use crate::model::{ErrorType, JobId};
use crate::pipeline::{Block, Node, Pipeline, Runs};
use crate::store::NewTestCase;
use crate::store::joblog::Level;
use crate::testshell::overlay::{self, DeviceConstants, Overlay, OverlayJob, SkipInstall};
use crate::testshell::results::{LogLevel, Output, ResultRecord, ResultsMachine};
use crate::testshell::signal::SignalParser;

/// One running job's state; outlives the pipeline future so cleanup can always run.
pub(super) struct JobCtx<'a> {
    dispatcher: &'a Dispatcher,
    job_id: JobId,
    log: JobLog,
    definition: JobDefinition,
    device: DeviceConfig,
    conn: Option<Connection>,
    qemu: Option<tokio::process::Child>,
    overlay: Option<Overlay>,
    /// `{KERNEL}`, `{RAMDISK}`, `{DTB}`… → paths relative to the TFTP root.
    tftp_files: BTreeMap<&'static str, String>,
    kernel_type: Option<String>,
    /// tmpfs images: (name, path, image_arg).
    images: Vec<(String, PathBuf, Option<String>)>,
    /// Test block index (in `actions:`) → stage number.
    stages: BTreeMap<usize, usize>,
}

/// How long a kernel panic's end marker is waited for before the job fails with the panic's
/// first line: a kernel booted with `panic=N` reboots without printing it.
const PANIC_END_WAIT: Duration = Duration::from_secs(5);

fn timeout_error(name: &str, d: Duration) -> JobError {
    JobError::new(
        ErrorType::LavaTimeout,
        format!("{name} timed out after {} seconds", d.as_secs()),
    )
}

fn wait_error(name: &str, d: Duration) -> impl Fn(WaitError) -> JobError + '_ {
    move |e| match e {
        WaitError::Timeout => timeout_error(name, d),
        WaitError::Closed(why) => JobError::new(
            ErrorType::Infrastructure,
            format!("Connection closed: {why}"),
        ),
    }
}

fn pattern(p: &str) -> Regex {
    Regex::new(p).unwrap_or_else(|_| {
        Regex::new(&regex::escape(p)).unwrap_or_else(|_| Regex::new("$^").expect("valid regex"))
    })
}

/// Replaces `{NAME}` placeholders; `None` when one of them has no value (LAVA's
/// `substitute(drop=True)` drops such commands).
pub(super) fn substitute(command: &str, values: &BTreeMap<&str, String>) -> Option<String> {
    const KNOWN: &[&str] = &[
        "SERVER_IP",
        "KERNEL_ADDR",
        "KERNEL",
        "RAMDISK_ADDR",
        "RAMDISK",
        "DTB_ADDR",
        "DTB",
        "BOOTX",
        "TEE_ADDR",
        "TEE",
        "ROOT",
        "ROOT_PART",
        "NFSROOTFS",
        "NFS_SERVER_IP",
        "PRESEED_CONFIG",
        "PRESEED_LOCAL",
        "LAVA_MAC",
        "BOOTSCRIPT",
    ];
    let mut out = command.to_owned();
    for key in KNOWN {
        let placeholder = format!("{{{key}}}");
        if out.contains(&placeholder) {
            let value = values.get(key)?;
            out = out.replace(&placeholder, value);
        }
    }
    Some(out)
}

impl<'a> JobCtx<'a> {
    pub(super) fn new(
        dispatcher: &'a Dispatcher,
        run: &JobRun,
        log: JobLog,
        definition: JobDefinition,
        device: DeviceConfig,
    ) -> JobCtx<'a> {
        let mut stages = BTreeMap::new();
        for action in &definition.actions {
            if let ActionKind::Test(Test::Definitions { .. }) = action.kind {
                let n = stages.len();
                stages.insert(action.index, n);
            }
        }
        JobCtx {
            dispatcher,
            job_id: run.job.id,
            log,
            definition,
            device,
            conn: None,
            qemu: None,
            overlay: None,
            tftp_files: BTreeMap::new(),
            kernel_type: None,
            images: Vec::new(),
            stages,
        }
    }

    /// Closes the console, kills the emulator, powers the device off (LAVA's `finalize`, the
    /// top-level action numbered `finalize`).
    pub(super) async fn cleanup(&mut self, finalize: usize) {
        if let Some(mut conn) = self.conn.take() {
            conn.close();
        }
        if let Some(mut child) = self.qemu.take() {
            self.log.info("stopping the emulator");
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let power_off = self.device.commands.power_off.clone();
        let started = Instant::now();
        let mut powered_off = !power_off.is_empty();
        for cmd in power_off {
            self.log.info(format!("power-off: {cmd}"));
            powered_off &= self
                .run_command(&cmd, Duration::from_secs(60))
                .await
                .is_ok();
        }
        if powered_off {
            let level = format!("{finalize}.1");
            let done = ActionResult::new("power-off", level, None, started.elapsed())
                .with("status", "success");
            self.record_action(done).await;
        }
    }

    async fn run_command(&self, cmd: &str, timeout: Duration) -> Result<(), JobError> {
        match self.dispatcher.hardware.runner.run(cmd, timeout).await {
            Ok(out) => {
                for line in out.output.lines() {
                    self.log.debug(line.to_owned());
                }
                Ok(())
            }
            Err(e) => {
                if let crate::hw::Error::Failed { output, .. } = &e {
                    for line in output.lines() {
                        self.log.debug(line.to_owned());
                    }
                }
                Err(JobError::new(ErrorType::Infrastructure, e.to_string()))
            }
        }
    }

    /// Logs and stores one of the dispatcher's own `lava` suite results.
    async fn record_action(&self, result: ActionResult) {
        self.log.results(result.log_entry());
        self.dispatcher
            .record(self.job_id, vec![result.case()])
            .await;
    }

    /// Downloads `res` (the `label` of the job's deploy) into `dir` and records it in the
    /// `lava` suite as LAVA does: `http-download` or `file-download` with the size and the
    /// checksums it was verified against, at the level of the block's `n`-th `download-retry`.
    async fn fetch(
        &self,
        client: &reqwest::Client,
        block: &Block,
        n: usize,
        res: &Resource,
        label: &str,
        dir: &std::path::Path,
    ) -> Result<deploy::Fetched, JobError> {
        let started = Instant::now();
        let name = deploy::file_name(res, label);
        let fetched = deploy::fetch(client, &self.log, res, dir, &name).await?;
        let action = if res.url.starts_with("file://") {
            "file-download"
        } else {
            "http-download"
        };
        let level = block
            .root
            .children
            .iter()
            .filter(|c| c.name == "download-retry")
            .nth(n)
            .and_then(|retry| retry.children.first())
            .map_or_else(|| block.root.level.clone(), |c| c.level.clone());
        let mut result = ActionResult::new(
            action,
            level,
            block.action.common.namespace.as_deref(),
            started.elapsed(),
        )
        .with("label", label)
        .with("size", fetched.size);
        for (kind, sum) in &fetched.checksums {
            result = result.with(kind, sum.as_str());
        }
        self.record_action(result).await;
        Ok(fetched)
    }

    fn client(&mut self) -> Result<reqwest::Client, JobError> {
        self.dispatcher.http_client()
    }

    fn overlay(&mut self) -> Result<&Overlay, JobError> {
        if self.overlay.is_none() {
            self.overlay = Some(build_overlay(
                self.job_id,
                &self.definition,
                &self.device,
                &self.dispatcher.config.server_ip.to_string(),
            )?);
        }
        self.overlay
            .as_ref()
            .ok_or_else(|| JobError::new(ErrorType::Bug, "overlay missing"))
    }

    fn needs_overlay(&self) -> bool {
        !self.stages.is_empty()
    }

    async fn connect(&mut self) -> Result<(), JobError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let factory: Arc<dyn ConsoleFactory> = match &self.dispatcher.hardware.console {
            Some(f) => Arc::clone(f),
            None => {
                let Some(cmd) = self.device.commands.primary_connect() else {
                    return Err(JobError::new(
                        ErrorType::Configuration,
                        "the device has no connection_command",
                    ));
                };
                self.log.info(format!("connect-device: {cmd}"));
                Arc::from(crate::hw::console_for(cmd, None))
            }
        };
        let mut conn = Connection::open(factory, self.log.clone()).await?;
        conn.set_char_delay(self.device.character_delays.boot);
        self.conn = Some(conn);
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut Connection, JobError> {
        self.conn.as_mut().ok_or_else(|| {
            JobError::new(
                ErrorType::Job,
                "no connection: the job needs a boot action before its tests",
            )
        })
    }

    /// Power-cycles the board (`reset-device`): its hard reset commands, recorded as LAVA's
    /// `pdu-reboot`, or else power off and on.
    async fn reset(&mut self, node: &Node, namespace: Option<&str>) -> Result<(), JobError> {
        let started = Instant::now();
        let cmds = &self.device.commands;
        let hard_reset = !cmds.hard_reset.is_empty();
        let list: Vec<String> = if hard_reset {
            cmds.hard_reset.clone()
        } else {
            cmds.power_off
                .iter()
                .chain(&cmds.power_on)
                .cloned()
                .collect()
        };
        if list.is_empty() {
            return Err(JobError::new(
                ErrorType::Configuration,
                "the device has no power or reset commands",
            ));
        }
        for cmd in list {
            self.log.info(format!("reset-device: {cmd}"));
            self.run_command(&cmd, node.timeout).await?;
        }
        if hard_reset {
            let level = format!("{}.1", node.level);
            let done = ActionResult::new("pdu-reboot", level, namespace, started.elapsed())
                .with("status", "success");
            self.record_action(done).await;
        }
        Ok(())
    }

    /// Logs in (LAVA's `auto-login-action` and its `login-action`): waits for the login
    /// prompt, or for a shell prompt when there is no auto-login, watching for kernel
    /// messages on the way; then sends the credentials and waits for the shell prompt.
    async fn login(
        &mut self,
        login: &Login,
        node: &Node,
        namespace: Option<&str>,
    ) -> Result<(), JobError> {
        let wait = node.connection_timeout;
        let err = wait_error("auto-login-action", wait);
        let first: Vec<Regex> = match &login.auto_login {
            Some(auto) => vec![pattern(&auto.login_prompt)],
            None => login.prompts.iter().map(|p| pattern(p)).collect(),
        };
        if !first.is_empty() {
            let level = format!("{}.1", node.level);
            self.watch_kernel(&first, wait, &level, namespace).await?;
        }
        let Some(auto) = &login.auto_login else {
            return Ok(());
        };
        let conn = self.conn()?;
        conn.sendline(&auto.username).await.map_err(&err)?;
        if let Some(pw) = &auto.password {
            conn.expect(&[pattern(&pw.prompt)], wait)
                .await
                .map_err(&err)?;
            conn.sendline(&pw.password).await.map_err(&err)?;
        }
        for c in &auto.login_commands {
            conn.sendline(c).await.map_err(&err)?;
        }
        if !login.prompts.is_empty() {
            let prompts: Vec<Regex> = login.prompts.iter().map(|p| pattern(p)).collect();
            conn.expect(&prompts, wait).await.map_err(&err)?;
        }
        Ok(())
    }

    /// Waits for one of `targets` while noting the kernel messages printed before it, and
    /// records them as LAVA does (`kernel-messages`, and `login-action` at `level`). A kernel
    /// panic fails the job at once with the panic's text.
    async fn watch_kernel(
        &mut self,
        targets: &[Regex],
        wait: Duration,
        level: &str,
        namespace: Option<&str>,
    ) -> Result<(), JobError> {
        let started = Instant::now();
        let kinds = &*kernel_messages::KINDS;
        let mut patterns = kernel_messages::start_patterns();
        patterns.extend(targets.iter().cloned());
        let log = self.log.clone();
        let err = wait_error("auto-login-action", wait);
        let conn = self.conn()?;
        let mut found = Vec::new();
        let mut halt = None;
        loop {
            let start = conn.expect(&patterns, wait).await.map_err(&err)?;
            let Some(kind) = kinds.get(start.index) else {
                break;
            };
            let mut ends = vec![kind.end.clone()];
            ends.extend(targets.iter().cloned());
            // A kernel that panics with `panic=N` reboots before printing the end marker.
            let end_wait = if kind.fatal {
                wait.min(PANIC_END_WAIT)
            } else {
                wait
            };
            let (rest, at_target) = match conn.expect(&ends, end_wait).await {
                Ok(end) if end.index == 0 => (format!("{}{}", end.before, end.text), false),
                Ok(_) => {
                    log.line(Level::Warning, "Unable to match end of the kernel message");
                    (String::new(), true)
                }
                Err(WaitError::Timeout) if kind.fatal => (String::new(), false),
                Err(e) => return Err(err(e)),
            };
            let text = kernel_messages::message(&start.before, &start.text, &rest);
            let what = kernel_messages::classify(start.index, &text);
            if kind.fatal {
                log.error(format!("login-action: kernel '{what}'"));
                halt = Some(text.clone());
            } else {
                log.line(Level::Warning, format!("login-action: kernel '{what}'"));
            }
            found.push(serde_json::json!({"kind": what, "message": text}));
            if kind.fatal || at_target {
                break;
            }
        }
        let mut checked =
            ActionResult::new(kernel_messages::NAME, level, namespace, started.elapsed())
                .with("extra", found.clone());
        checked.passed = halt.is_none();
        self.record_action(checked).await;
        if let Some(text) = halt {
            return Err(JobError::new(ErrorType::Job, text));
        }
        let login = ActionResult::new("login-action", level, namespace, started.elapsed());
        let login = if found.is_empty() {
            login.with("success", "No kernel warnings or errors detected.")
        } else {
            log.line(Level::Warning, "Kernel warnings or errors detected.");
            login.with("fail", found)
        };
        self.record_action(login).await;
        Ok(())
    }
}

fn build_overlay(
    job_id: JobId,
    definition: &JobDefinition,
    device: &DeviceConfig,
    server_ip: &str,
) -> Result<Overlay, JobError> {
    let mut oj = OverlayJob::new(job_id);
    let posix = &device.constants.posix;
    let defaults = DeviceConstants::default();
    oj.constants = DeviceConstants {
        lava_test_sh_cmd: if posix.lava_test_sh_cmd.is_empty() {
            defaults.lava_test_sh_cmd
        } else {
            posix.lava_test_sh_cmd.clone()
        },
        lava_test_results_dir: if posix.lava_test_results_dir.is_empty() {
            defaults.lava_test_results_dir
        } else {
            posix.lava_test_results_dir.clone()
        },
    };
    if let Some(env) = &definition.environment {
        oj.job_environment = env.to_serde();
    }
    if let Ok(env) = serde_norway::to_value(&device.environment) {
        oj.device_environment = env;
    }
    if let Some(secrets) = definition.secrets.as_ref().and_then(|s| s.as_map()) {
        oj.secrets = secrets
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str()?.to_owned(),
                    v.as_str().map_or_else(|| v.short(), str::to_owned),
                ))
            })
            .collect();
    }
    oj.dispatcher_ip = server_ip.to_owned();
    for action in &definition.actions {
        let ActionKind::Test(Test::Definitions { definitions, .. }) = &action.kind else {
            continue;
        };
        let mut stage = Vec::new();
        for (i, d) in definitions.iter().enumerate() {
            let TestDefSource::Inline(doc) = &d.source else {
                return Err(JobError::new(
                    ErrorType::Job,
                    "test definitions from a repository are not supported on this appliance",
                ));
            };
            stage.push(overlay::TestDefinition {
                name: d.name.clone(),
                level: format!("{}.{}", action.index + 1, i + 1),
                from: "inline".into(),
                repository: None,
                path: Some(d.path.clone()),
                revision: None,
                commit_id: None,
                document: doc.to_serde(),
                parameters: d
                    .parameters
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.short(), str::to_owned),
                        )
                    })
                    .collect(),
                skip_install: d
                    .skip_install
                    .iter()
                    .filter_map(|s| match s.as_str() {
                        "keys" => Some(SkipInstall::Keys),
                        "sources" => Some(SkipInstall::Sources),
                        "deps" => Some(SkipInstall::Deps),
                        "steps" => Some(SkipInstall::Steps),
                        "all" => Some(SkipInstall::All),
                        _ => None,
                    })
                    .collect(),
                kmsg_signals: d.lava_signal == Some(LavaSignal::Kmsg),
                distro: None,
            });
        }
        oj.stages.push(stage);
    }
    overlay::build(&oj).map_err(|e| JobError::new(ErrorType::Job, e.to_string()))
}

fn record_of(r: &ResultRecord) -> NewTestCase {
    let mut case = NewTestCase::new(r.definition.clone(), r.case.clone(), r.result);
    case.test_set = r.set.clone();
    case.measurement = r.measurement;
    case.units = r.units.clone().unwrap_or_default();
    if !r.metadata.is_empty() {
        let map: serde_norway::Mapping = r
            .metadata
            .iter()
            .map(|(k, v)| (k.clone().into(), v.clone().into()))
            .collect();
        case.metadata = serde_norway::to_string(&map).ok();
    }
    case.start_log_line = r.start_line;
    case.end_log_line = r.end_line;
    case
}

fn result_json(r: &ResultRecord) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("definition".into(), r.definition.clone().into());
    m.insert("case".into(), r.case.clone().into());
    m.insert("result".into(), r.result.to_string().into());
    if let Some(x) = r.measurement {
        m.insert("measurement".into(), x.into());
    }
    if let Some(u) = &r.units {
        m.insert("units".into(), u.clone().into());
    }
    if let Some(s) = &r.set {
        m.insert("set".into(), s.clone().into());
    }
    for (k, v) in &r.metadata {
        m.insert(k.clone(), v.clone().into());
    }
    serde_json::Value::Object(m)
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
                    last = run_timed(ctx, block).await;
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
                    if let Err(e) = run_timed(ctx, block).await
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

async fn run_timed(ctx: &mut JobCtx<'_>, block: &Block) -> Result<(), JobError> {
    let started = Instant::now();
    let name = block.root.name.clone();
    ctx.log.info(format!(
        "start: {} {} (timeout {}s)",
        block.root.level,
        name,
        block.root.timeout.as_secs()
    ));
    let result = match tokio::time::timeout(block.root.timeout, run_block(ctx, block)).await {
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

async fn run_block(ctx: &mut JobCtx<'_>, block: &Block) -> Result<(), JobError> {
    match &block.action.kind {
        ActionKind::Deploy(Deploy::Tftp(tftp)) => {
            let dir = ctx.dispatcher.config.tftp_root.join(ctx.job_id.to_string());
            let client = ctx.client()?;
            let job = ctx.job_id.to_string();
            // In the order of the pipeline's download-retry actions.
            let fetch = async |n: usize, res: &Resource, label: &str| {
                let fetched = ctx.fetch(&client, block, n, res, label, &dir).await?;
                let name = deploy::file_name(res, label);
                Ok::<_, JobError>((fetched.path, name))
            };
            let mut downloads = 0;
            let mut next = || {
                downloads += 1;
                downloads - 1
            };
            let (_, kernel) = fetch(next(), &tftp.kernel.resource, "kernel").await?;
            let mut files = BTreeMap::new();
            files.insert("KERNEL", format!("{job}/{kernel}"));
            if let Some(dtb) = &tftp.dtb {
                let (_, name) = fetch(next(), dtb, "dtb").await?;
                files.insert("DTB", format!("{job}/{name}"));
            }
            let ramdisk = match &tftp.ramdisk {
                Some(r) => Some((
                    fetch(next(), &r.resource, "ramdisk").await?,
                    r.install_overlay,
                )),
                None => None,
            };
            if let Some(modules) = &tftp.modules {
                fetch(next(), modules, "modules").await?;
                ctx.log
                    .info("modules downloaded (not installed into the ramdisk)");
            }
            if let Some(tee) = &tftp.tee {
                let (_, name) = fetch(next(), tee, "tee").await?;
                files.insert("TEE", format!("{job}/{name}"));
            }
            if let Some(((path, name), install_overlay)) = ramdisk {
                if ctx.needs_overlay() && install_overlay != Some(false) {
                    let overlay = ctx.overlay()?.clone();
                    let dest = dir.join("ramdisk.cpio.gz");
                    ctx.log.info(format!(
                        "adding the overlay {} to the ramdisk",
                        overlay.root
                    ));
                    deploy::add_overlay(&overlay, path, dest, true).await?;
                    files.insert("RAMDISK", format!("{job}/ramdisk.cpio.gz"));
                } else {
                    files.insert("RAMDISK", format!("{job}/{name}"));
                }
            }
            ctx.kernel_type = tftp.kernel.kind.map(|k| k.as_str().to_owned());
            ctx.tftp_files = files;
            Ok(())
        }
        ActionKind::Deploy(Deploy::Tmpfs(tmpfs)) => {
            let dir = ctx
                .dispatcher
                .config
                .work_dir
                .join(ctx.job_id.to_string())
                .join("tmpfs");
            let client = ctx.client()?;
            let mut images = Vec::new();
            for (n, image) in tmpfs.images.iter().enumerate() {
                let name = deploy::file_name(&image.resource, &image.name);
                let mut path = ctx
                    .fetch(&client, block, n, &image.resource, &image.name, &dir)
                    .await?
                    .path;
                let wants_overlay = image
                    .resource
                    .overlays
                    .as_ref()
                    .and_then(|o| o.get("lava"))
                    .is_some_and(|l| l.is_truthy());
                let format = block
                    .action
                    .raw
                    .get("images")
                    .and_then(|i| i.get(&image.name))
                    .and_then(|i| i.get("format"))
                    .and_then(|f| f.as_str())
                    .map(str::to_owned);
                // LAVA 2023.01's tmpfs schema has no `overlays:`; a cpio initrd (by format or
                // by the conventional names) gets the overlay so the test shell can run.
                let wants_overlay = wants_overlay
                    || format.as_deref() == Some("cpio.newc")
                    || matches!(image.name.as_str(), "initrd" | "ramdisk");
                if wants_overlay && ctx.needs_overlay() {
                    let overlay = ctx.overlay()?.clone();
                    let dest = dir.join(format!("{name}.lava"));
                    ctx.log.info(format!(
                        "adding the overlay {} to {}",
                        overlay.root, image.name
                    ));
                    deploy::add_overlay(&overlay, path, dest.clone(), false).await?;
                    path = dest;
                }
                images.push((image.name.clone(), path, image.image_arg.clone()));
            }
            ctx.images = images;
            Ok(())
        }
        ActionKind::Deploy(Deploy::Other { to, .. }) => Err(JobError::new(
            ErrorType::Job,
            format!(
                "deploy to {} is not supported on this appliance",
                to.as_str()
            ),
        )),
        ActionKind::Boot(boot) => run_boot(ctx, block, boot).await,
        ActionKind::Test(test) => run_test(ctx, block, test).await,
        ActionKind::Command(cmd) => {
            let Some(user) = ctx.device.commands.users.get(&cmd.name).cloned() else {
                return Err(JobError::new(
                    ErrorType::Job,
                    format!("Unknown user command '{}'", cmd.name),
                ));
            };
            ctx.log
                .info(format!("user-command {}: {}", cmd.name, user.do_command));
            ctx.run_command(&user.do_command, block.root.timeout).await
        }
    }
}

fn child<'n>(block: &'n Block, name: &str) -> &'n Node {
    block.root.find(name).unwrap_or(&block.root)
}

async fn run_boot(ctx: &mut JobCtx<'_>, block: &Block, boot: &Boot) -> Result<(), JobError> {
    let namespace = block.action.common.namespace.as_deref();
    match boot {
        Boot::UBoot(uboot) => {
            let Some(method) = ctx.device.actions.boot.uboot.clone() else {
                return Err(JobError::new(
                    ErrorType::Job,
                    "no u-boot method for this device",
                ));
            };
            let interrupt = ctx.device.uboot_interrupt();
            let commands: Vec<String> = match &uboot.commands {
                BootCommands::Named(name) => method.commands.get(name).cloned().unwrap_or_default(),
                BootCommands::Literal(list) => list.clone(),
            };
            // Substitutions.
            let mut values: BTreeMap<&str, String> = BTreeMap::new();
            values.insert("SERVER_IP", ctx.dispatcher.config.server_ip.to_string());
            for (k, v) in &ctx.tftp_files {
                values.insert(k, v.clone());
            }
            let kind = ctx
                .kernel_type
                .as_deref()
                .and_then(KernelType::from_job)
                .unwrap_or(KernelType::Zimage);
            let overlay_started = Instant::now();
            let addresses = ctx.device.parameters.addresses(kind);
            if let Some(addr) = addresses {
                values.insert("KERNEL_ADDR", addr.kernel.clone());
                values.insert("RAMDISK_ADDR", addr.ramdisk.clone());
                values.insert("DTB_ADDR", addr.dtb.clone());
                if let Some(tee) = &addr.tee {
                    values.insert("TEE_ADDR", tee.clone());
                }
                let ramdisk = if ctx.tftp_files.contains_key("RAMDISK") {
                    addr.ramdisk.clone()
                } else {
                    "-".into()
                };
                values.insert(
                    "BOOTX",
                    format!(
                        "{} {} {} {}",
                        kind.boot_command(),
                        addr.kernel,
                        ramdisk,
                        addr.dtb
                    ),
                );
            }
            let commands: Vec<String> = commands
                .iter()
                .filter_map(|c| {
                    let s = substitute(c, &values);
                    if s.is_none() {
                        ctx.log
                            .debug(format!("dropping '{c}': a placeholder has no value"));
                    }
                    s
                })
                .collect();

            if let Some(addr) = addresses {
                // LAVA's `bootloader-overlay` reports the addresses it substituted.
                let node = child(block, "bootloader-overlay");
                let done = ActionResult::new(
                    "bootloader-overlay",
                    node.level.clone(),
                    block.action.common.namespace.as_deref(),
                    overlay_started.elapsed(),
                )
                .with("kernel_addr", addr.kernel.as_str())
                .with("dtb_addr", addr.dtb.as_str())
                .with("ramdisk_addr", addr.ramdisk.as_str())
                .with("tee_addr", addr.tee.as_deref());
                ctx.record_action(done).await;
            }
            ctx.connect().await?;
            let reset = child(block, "reset-device").clone();
            ctx.reset(&reset, block.action.common.namespace.as_deref())
                .await?;
            let int_node = child(block, "bootloader-interrupt").clone();
            let cmd_node = child(block, "bootloader-commands").clone();
            let prompt = pattern(&method.parameters.bootloader_prompt);
            let errors: Vec<String> = ctx.device.constants.uboot.error_messages.clone();
            let kernel_start = ctx.device.constants.kernel_start_message.clone();
            let conn = ctx.conn()?;
            if let Some(int) = interrupt.as_ref().filter(|i| i.needs_interrupt) {
                let err = wait_error("bootloader-interrupt", int_node.connection_timeout);
                conn.expect(
                    &[pattern(&int.interrupt_prompt)],
                    int_node.connection_timeout,
                )
                .await
                .map_err(&err)?;
                let ch = if int.interrupt_char.is_empty() {
                    " "
                } else {
                    int.interrupt_char.as_str()
                };
                if int.newline {
                    conn.sendline(ch).await.map_err(&err)?;
                } else {
                    conn.send(ch).await.map_err(&err)?;
                }
                conn.expect(std::slice::from_ref(&prompt), int_node.connection_timeout)
                    .await
                    .map_err(&err)?;
            }
            let err = wait_error("bootloader-commands", cmd_node.connection_timeout);
            let mut patterns = vec![prompt.clone()];
            patterns.extend(
                errors
                    .iter()
                    .map(|e| Regex::new(&regex::escape(e)).unwrap_or_else(|_| prompt.clone())),
            );
            let last = commands.len().saturating_sub(1);
            for (i, cmd) in commands.iter().enumerate() {
                conn.sendline(cmd).await.map_err(&err)?;
                // Wait for the echo first: prompts printed before it (an interrupt key
                // pressed twice, an empty line) must not count as this command's prompt.
                conn.expect(
                    &[Regex::new(&regex::escape(cmd)).unwrap_or_else(|_| prompt.clone())],
                    cmd_node.connection_timeout,
                )
                .await
                .map_err(&err)?;
                if i == last {
                    patterns[0] = pattern(if kernel_start.is_empty() {
                        "Linux version [0-9]"
                    } else {
                        &kernel_start
                    });
                }
                let m = conn
                    .expect(&patterns, cmd_node.connection_timeout)
                    .await
                    .map_err(&err)?;
                if m.index > 0 {
                    return Err(JobError::new(
                        ErrorType::Infrastructure,
                        format!("U-Boot error: {}", m.text),
                    ));
                }
            }
            let login_node = child(block, "auto-login-action").clone();
            ctx.login(&uboot.login, &login_node, namespace).await
        }
        Boot::Qemu(qemu) => {
            let Some(method) = ctx.device.actions.boot.qemu.clone() else {
                return Err(JobError::new(
                    ErrorType::Job,
                    "no qemu method for this device",
                ));
            };
            let mut words = vec![method.command.clone()];
            words.extend(method.options.iter().cloned());
            words.extend(method.extra.iter().cloned());
            for (name, path, arg) in &ctx.images {
                let quoted = overlay::shell_quote(&path.to_string_lossy());
                match arg {
                    Some(arg) => words.push(arg.replace(&format!("{{{name}}}"), &quoted)),
                    None => words.push(format!("-drive format=raw,file={quoted}")),
                }
            }
            let cmdline = words.join(" ");
            ctx.log.info(format!("execute-qemu: {cmdline}"));
            if let Some(mut old) = ctx.qemu.take() {
                let _ = old.start_kill();
                let _ = old.wait().await;
            }
            ctx.conn = None;
            let (qemu_child, io) = crate::hw::spawn_piped(&cmdline)
                .map_err(|e| JobError::new(ErrorType::Infrastructure, e.to_string()))?;
            ctx.qemu = Some(qemu_child);
            let factory: Arc<dyn ConsoleFactory> = Arc::new(OnceConsole::new(io));
            let mut conn = Connection::open(factory, ctx.log.clone()).await?;
            conn.set_char_delay(ctx.device.character_delays.boot);
            ctx.conn = Some(conn);
            let login_node = child(block, "auto-login-action").clone();
            ctx.login(&qemu.login, &login_node, namespace).await
        }
        Boot::Minimal(minimal) => {
            ctx.connect().await?;
            if minimal.reset {
                let reset = child(block, "reset-device").clone();
                ctx.reset(&reset, block.action.common.namespace.as_deref())
                    .await?;
            }
            let login_node = child(block, "auto-login-action").clone();
            ctx.login(&minimal.login, &login_node, namespace).await
        }
        Boot::Other { method, .. } => Err(JobError::new(
            ErrorType::Job,
            format!(
                "boot method {} is not supported on this appliance",
                method.as_str()
            ),
        )),
    }
}

async fn run_test(ctx: &mut JobCtx<'_>, block: &Block, test: &Test) -> Result<(), JobError> {
    let Test::Definitions { .. } = test else {
        return Err(JobError::new(
            ErrorType::Job,
            "this test type is not supported on this appliance",
        ));
    };
    let Some(&stage) = ctx.stages.get(&block.action.index) else {
        return Err(JobError::new(ErrorType::Bug, "test stage missing"));
    };
    let overlay = ctx.overlay()?.clone();
    let Some(config) = overlay.stages.get(stage).cloned() else {
        return Err(JobError::new(
            ErrorType::Bug,
            "test stage missing from the overlay",
        ));
    };
    let node = child(block, "lava-test-shell").clone();
    let started = Instant::now();
    let action_deadline = started + node.timeout;
    let log = ctx.log.clone();
    let dispatcher = ctx.dispatcher;
    let job_id = ctx.job_id;
    let test_delay = ctx.device.character_delays.test;
    let conn = ctx.conn()?;
    conn.set_char_delay(test_delay);
    let err = wait_error("lava-test-shell", node.timeout);
    conn.sendline(&overlay.runner_command(stage))
        .await
        .map_err(&err)?;
    let mut parser = SignalParser::new();
    let mut machine = ResultsMachine::new(config);
    let mut fatal = None;
    'read: loop {
        let deadline = action_deadline.min(Instant::now() + node.connection_timeout);
        let chunk = match conn.read_chunk(deadline).await.map_err(&err)? {
            Some(c) => c,
            None => {
                let _ = handle(
                    &mut machine.finish(started.elapsed()),
                    &log,
                    dispatcher,
                    job_id,
                )
                .await;
                return Err(timeout_error("lava-test-shell", node.timeout));
            }
        };
        for event in parser.feed(chunk) {
            let mut outputs = machine.handle(&event, started.elapsed());
            match handle(&mut outputs, &log, dispatcher, job_id).await {
                Flow::Continue => {}
                Flow::Done => break 'read,
                Flow::Fatal(e) => {
                    fatal = Some(e);
                    break 'read;
                }
            }
        }
    }
    let mut outputs = machine.finish(started.elapsed());
    if let Flow::Fatal(e) = handle(&mut outputs, &log, dispatcher, job_id).await {
        fatal.get_or_insert(e);
    }
    fatal.map_or(Ok(()), Err)
}

enum Flow {
    Continue,
    Done,
    Fatal(JobError),
}

async fn handle(
    outputs: &mut Vec<Output>,
    log: &JobLog,
    dispatcher: &Dispatcher,
    job_id: JobId,
) -> Flow {
    let mut flow = Flow::Continue;
    let mut cases = Vec::new();
    for output in outputs.drain(..) {
        match output {
            Output::Result(r) => {
                log.results(result_json(&r));
                cases.push(record_of(&r));
            }
            Output::Log { level, message } => match level {
                LogLevel::Info => log.info(message),
                LogLevel::Debug => log.debug(message),
                LogLevel::Error => log.error(message),
            },
            Output::Event { message } => log.line(crate::store::joblog::Level::Event, message),
            Output::Feedback { .. } => {}
            Output::MultiNode { request, .. } => {
                log.error(format!(
                    "MultiNode request {} ignored: not a MultiNode job",
                    request.api()
                ));
            }
            Output::StageDone => {
                if matches!(flow, Flow::Continue) {
                    flow = Flow::Done;
                }
            }
            Output::Fatal {
                error_type,
                message,
            } => {
                if !matches!(flow, Flow::Fatal(_)) {
                    flow = Flow::Fatal(JobError::new(error_type, message));
                }
            }
        }
    }
    if !cases.is_empty() {
        dispatcher.record(job_id, cases).await;
    }
    flow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_drops_commands_with_unset_placeholders() {
        let mut v = BTreeMap::new();
        v.insert("KERNEL_ADDR", "0x40400000".to_owned());
        v.insert("KERNEL", "7/zImage".to_owned());
        assert_eq!(
            substitute("tftp {KERNEL_ADDR} {KERNEL}", &v).as_deref(),
            Some("tftp 0x40400000 7/zImage")
        );
        assert_eq!(substitute("tftp {DTB_ADDR} {DTB}", &v), None);
        assert_eq!(
            substitute("setenv x ${filesize}", &v).as_deref(),
            Some("setenv x ${filesize}")
        );
    }
}
