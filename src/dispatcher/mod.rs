//! The dispatcher: runs one job's pipeline against one board and records its log and
//! results. It never changes job or device state; the scheduler's job task does that around
//! [`Dispatcher::run`] (Scheduled → Running before, Finished with the returned
//! [`JobEnd`] after), so every state transition stays in one place.
//!
//! Layout: [`log`] (the job log writer), [`connection`] (the expect engine over a console),
//! `job` (the running job's state and the walk over the pipeline's blocks), [`deploy`] (one
//! file per deploy target, plus downloads, checksums, decompression, overlay), `boot` (one
//! file per boot method, plus the login), `test_shell`, `job_files` (what the job's directory
//! holds besides the log). The pipeline itself is built by [`crate::pipeline`] (pure) and
//! hands each block's typed work; the board comes from a [`BoardFactory`] (only `hw` picks
//! backends).
//!
//! Every job runs in its own task: a panic becomes a `Bug` end and never reaches the caller;
//! whatever happens, the device is powered off, an emulator started for the job is killed
//! and waited for, and the job's TFTP and work directories are removed.

mod boot;
pub mod connection;
pub mod deploy;
mod job;
mod job_files;
pub mod kernel_messages;
pub mod lava_suite;
pub mod log;
mod lxc;
mod test_definitions;
mod test_interactive;
mod test_monitors;
mod test_shell;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::devicetype::{AsyncTemplates, DeviceConfig, RenderedDevice};
use crate::hw::{BoardFactory, Boards, PowerState};
use crate::jobdef::JobDefinition;
use crate::model::lifecycle::JobEnd;
use crate::model::{ErrorType, TestResult};
use crate::store::NewTestCase;
use crate::store::{AsyncStore, Device, Job};

use self::log::JobLog;

/// What the dispatcher needs from the appliance's configuration.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Root of the built-in TFTP server; each job gets `<root>/<job id>/`.
    pub tftp_root: PathBuf,
    /// Where per-job work directories live (downloads, overlays); removed when a job ends.
    pub work_dir: PathBuf,
    /// The bare mirrors of test definition repositories (`<data_dir>/git-mirrors`), kept
    /// across jobs so a repository is cloned once and then only fetched.
    pub mirror_dir: PathBuf,
    /// The address boards use to reach this appliance (`{SERVER_IP}`).
    pub server_ip: IpAddr,
}

/// One job to run on one device.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// The job, already Scheduled on `device`.
    pub job: Job,
    /// The device it runs on, with its dictionary.
    pub device: Device,
    /// Where the job's log is appended, in LAVA's line format.
    pub log_path: PathBuf,
    /// Fires when the job is canceled; the dispatcher cleans up and ends with health Canceled.
    pub cancel: CancellationToken,
}

/// A failure inside a job: LAVA's error class and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct JobError {
    /// The class.
    pub error_type: ErrorType,
    /// The text (becomes the failure comment).
    pub message: String,
}

impl JobError {
    /// An error of class `error_type`.
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> JobError {
        JobError {
            error_type,
            message: message.into(),
        }
    }
}

/// Runs jobs. Cheap to clone; one task per job.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    config: DispatcherConfig,
    store: AsyncStore,
    templates: AsyncTemplates,
    boards: Arc<dyn BoardFactory>,
    /// The download client, built on first use and shared by every job: building one loads
    /// and parses the TLS root certificates, tens of milliseconds on a Pi before each deploy.
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
}

impl Dispatcher {
    /// A dispatcher writing results to `store` and rendering devices with `templates` (the
    /// appliance's [`AsyncTemplates`], or plain [`Templates`](crate::devicetype::Templates) for a dispatcher of its own).
    pub fn new(
        config: DispatcherConfig,
        store: AsyncStore,
        templates: impl Into<AsyncTemplates>,
    ) -> Dispatcher {
        Dispatcher {
            config,
            store,
            templates: templates.into(),
            boards: Arc::new(Boards::default()),
            http: Arc::default(),
        }
    }

    /// The shared download client.
    fn http_client(&self) -> Result<reqwest::Client, JobError> {
        if let Some(client) = self.http.get() {
            return Ok(client.clone());
        }
        let client = deploy::http_client()?;
        Ok(self.http.get_or_init(|| client).clone())
    }

    /// The same dispatcher driving the boards `boards` makes (fakes in tests, a dry-run
    /// mode).
    pub fn with_boards(mut self, boards: Arc<dyn BoardFactory>) -> Dispatcher {
        self.boards = boards;
        self
    }

    /// Powers `device` off (the scheduler's crash recovery, for a board whose job a crash
    /// ended): renders its dictionary off the async workers, builds its board and switches it
    /// off, logging the outcome. A device without a dictionary or power control is left.
    pub async fn power_off_device(&self, device: &Device) {
        let hostname = device.hostname.clone();
        let Some(dictionary) = device.dictionary.as_deref() else {
            tracing::info!(device = %hostname, "no dictionary: not powered off");
            return;
        };
        let config = match self.render(dictionary, serde_json::Map::new()).await {
            Ok(rendered) => rendered.config,
            Err(e) => {
                tracing::warn!(device = %hostname, "cannot render the device to power it off: {e}");
                return;
            }
        };
        let board = match self.boards.board(&config) {
            Ok(board) => board,
            Err(e) => {
                tracing::warn!(device = %hostname, "cannot power the device off: {e}");
                return;
            }
        };
        let off = board
            .power()
            .set(
                PowerState::Off,
                job::POWER_OFF_TIMEOUT,
                &crate::hw::power::Silent,
            )
            .await;
        match off {
            Ok(()) => tracing::info!(device = %hostname, "powered off"),
            Err(crate::hw::Error::NoPowerControl) => {
                tracing::info!(device = %hostname, "no power control: left as it is");
            }
            Err(e) => tracing::warn!(device = %hostname, "power-off failed: {e}"),
        }
    }

    /// Runs the job to its end: validates it, builds the pipeline, deploys, boots, runs the
    /// tests, powers the device off. Results are stored as they arrive. Never panics out:
    /// every failure becomes the returned [`JobEnd`] (LAVA's error classes).
    pub async fn run(&self, run: JobRun) -> JobEnd {
        let this = self.clone();
        let job_id = run.job.id;
        let device = run.device.clone();
        let task = tokio::spawn(async move { this.run_job(run).await });
        match task.await {
            Ok(end) => end,
            Err(e) => {
                // The job's task panicked: its state (console, emulator) was dropped, which
                // kills their processes; power the board off and clean up here.
                let message = if e.is_panic() {
                    "the dispatcher panicked while running the job".to_owned()
                } else {
                    format!("the job task ended abnormally: {e}")
                };
                tracing::error!(job = %job_id, "{message}");
                self.power_off_device(&device).await;
                self.remove_dirs(job_id.0).await;
                JobEnd::incomplete(ErrorType::Bug, message)
            }
        }
    }

    async fn remove_dirs(&self, job_id: i64) {
        for dir in [
            self.config.tftp_root.join(job_id.to_string()),
            self.config.work_dir.join(job_id.to_string()),
        ] {
            if tokio::fs::metadata(&dir).await.is_ok()
                && let Err(e) = tokio::fs::remove_dir_all(&dir).await
            {
                tracing::warn!("removing {}: {e}", dir.display());
            }
        }
    }

    async fn record(&self, job: crate::model::JobId, cases: Vec<NewTestCase>) {
        if let Err(e) = self
            .store
            .call(move |s| s.insert_test_cases(job, &cases))
            .await
        {
            tracing::warn!(job = %job, "recording results: {e}");
        }
    }

    async fn run_job(&self, run: JobRun) -> JobEnd {
        let (log, log_task) = match JobLog::open(run.log_path.clone()).await {
            Ok(x) => x,
            Err(e) => {
                return JobEnd::incomplete(
                    ErrorType::Infrastructure,
                    format!("cannot open the job log: {e}"),
                );
            }
        };
        let end = self.run_logged(&run, &log).await;
        drop(log);
        log_task.finish().await;
        end
    }

    async fn run_logged(&self, run: &JobRun, log: &JobLog) -> JobEnd {
        let job_id = run.job.id;
        log.info(format!(
            "lavabox dispatcher: job {job_id} on {}",
            run.device.hostname
        ));
        let prepared = self.prepare(run, log).await;
        let (definition, device, pipeline, board) = match prepared {
            Ok(p) => p,
            Err(e) => {
                log.error(format!("{}: {}", e.error_type, e.message));
                self.record_lava(job_id, log, "validate", TestResult::Fail, None)
                    .await;
                return self.finish(job_id, log, Err(e)).await;
            }
        };
        log.info(format!("pipeline:\n{}", pipeline.describe()));
        self.record_lava(job_id, log, "validate", TestResult::Pass, None)
            .await;

        let mut ctx =
            job::JobCtx::new(self, run, log.clone(), definition, device, board, &pipeline);
        let outcome = {
            let job_timeout = pipeline.job_timeout;
            let work = job::run_pipeline(&mut ctx, &pipeline);
            tokio::select! {
                biased;
                () = run.cancel.cancelled() => Err(JobError::new(ErrorType::Canceled, "Job canceled")),
                r = tokio::time::timeout(job_timeout, work) => match r {
                    Ok(r) => r,
                    Err(_) => Err(JobError::new(
                        ErrorType::LavaTimeout,
                        format!("job timed out after {} seconds", job_timeout.as_secs()),
                    )),
                },
            }
        };
        // LAVA's `finalize` follows the job's top-level actions.
        ctx.cleanup(pipeline.blocks.len() + 1).await;
        self.remove_dirs(job_id.0).await;
        self.finish(job_id, log, outcome).await
    }

    /// Parses the job, renders the device (on the blocking pool), writes the job's
    /// configuration files, builds the pipeline and the board.
    async fn prepare(
        &self,
        run: &JobRun,
        log: &JobLog,
    ) -> Result<
        (
            JobDefinition,
            DeviceConfig,
            crate::pipeline::Pipeline,
            crate::hw::Board,
        ),
        JobError,
    > {
        let definition = crate::jobdef::parse_str(&run.job.definition).map_err(|problems| {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            JobError::new(
                ErrorType::Job,
                format!("invalid job definition: {}", text.join("; ")),
            )
        })?;
        let Some(dictionary) = run.device.dictionary.as_deref() else {
            return Err(JobError::new(
                ErrorType::Configuration,
                format!("device {} has no dictionary", run.device.hostname),
            ));
        };
        let mut context = serde_json::Map::new();
        for (key, value) in &definition.context {
            if let Ok(v) = serde_json::to_value(value.to_serde()) {
                context.insert(key.clone(), v);
            }
        }
        let rendered = self.render(dictionary, context).await?;
        log.debug(format!("device configuration:\n{}", rendered.yaml));
        job_files::write(&self.store, run, &rendered.yaml).await;
        let pipeline = crate::pipeline::build(&definition, &rendered.config)
            .map_err(|e| JobError::new(e.error_type, e.message))?;
        let board = self
            .boards
            .board(&rendered.config)
            .map_err(|e| job::hw_error(&e))?;
        Ok((definition, rendered.config, pipeline, board))
    }

    /// Renders `dictionary` with the job's `context` through [`AsyncTemplates`], off the async
    /// workers (rendering reads template files).
    async fn render(
        &self,
        dictionary: &str,
        context: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RenderedDevice, JobError> {
        let dictionary = dictionary.to_owned();
        self.templates
            .call(move |templates| templates.render(&dictionary, &context))
            .await
            .map_err(|e| JobError::new(ErrorType::Bug, format!("rendering task: {e}")))?
            .map_err(|e| JobError::new(ErrorType::Configuration, e.to_string()))
    }

    async fn finish(
        &self,
        job_id: crate::model::JobId,
        log: &JobLog,
        outcome: Result<(), JobError>,
    ) -> JobEnd {
        match outcome {
            Ok(()) => {
                log.info("Job finished correctly");
                self.record_lava(job_id, log, "job", TestResult::Pass, None)
                    .await;
                JobEnd::complete()
            }
            Err(e) => {
                log.error(format!("{}: {}", e.error_type, e.message));
                self.record_lava(job_id, log, "job", TestResult::Fail, Some(&e))
                    .await;
                if e.error_type == ErrorType::Canceled {
                    JobEnd::canceled(e.message)
                } else {
                    JobEnd::incomplete(e.error_type, e.message)
                }
            }
        }
    }

    /// Logs and records one of the `lava` suite's own verdicts (`validate`, `job`): the
    /// result dict goes to the log, and the case's metadata is its YAML (the one rule,
    /// `testshell::metadata`), with the error's type and message when it failed.
    async fn record_lava(
        &self,
        job_id: crate::model::JobId,
        log: &JobLog,
        name: &str,
        result: TestResult,
        error: Option<&JobError>,
    ) {
        let mut dict = serde_json::Map::new();
        dict.insert("definition".into(), "lava".into());
        dict.insert("case".into(), name.into());
        dict.insert("result".into(), result.as_str().into());
        if let Some(e) = error {
            dict.insert("error_msg".into(), e.message.clone().into());
            dict.insert("error_type".into(), e.error_type.to_string().into());
        }
        let mut case = NewTestCase::new("lava", name, result);
        case.metadata = Some(crate::testshell::metadata::case_metadata(&dict, None));
        log.results(serde_json::Value::Object(dict));
        self.record(job_id, vec![case]).await;
    }
}

#[cfg(test)]
mod tests;
