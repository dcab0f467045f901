//! The test shell: the overlay the job's inline test definitions become, and each stage's
//! run on the board, its signals turned into results (LAVA's `lava-test-shell`).

use tokio::time::Instant;

use super::job::{JobCtx, timeout_error, wait_error};
use super::log::JobLog;
use super::{Dispatcher, JobError};
use crate::devicetype::DeviceConfig;
use crate::jobdef::JobDefinition;
use crate::model::{ErrorType, JobId};
use crate::pipeline::Pipeline;
use crate::pipeline::step::TestShellWork;
use crate::store::NewTestCase;
use crate::testshell::overlay::{self, DeviceConstants, Overlay, OverlayJob};
use crate::testshell::results::{LogLevel, Output, ResultRecord, ResultsMachine};
use crate::testshell::signal::SignalParser;

/// Runs one test shell stage: starts its runner on the board and turns the signals it prints
/// into results until the stage ends.
pub(super) async fn run(
    ctx: &mut JobCtx<'_>,
    pipeline: &Pipeline,
    work: &TestShellWork,
) -> Result<(), JobError> {
    let stage = work.stage;
    let overlay = ctx.overlay(pipeline).await?.clone();
    let Some(config) = overlay.stages.get(stage).cloned() else {
        return Err(JobError::new(
            ErrorType::Bug,
            "test stage missing from the overlay",
        ));
    };
    let node = &work.node;
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

/// The test overlay of the job: every test shell block's loaded definitions, one stage each.
pub(super) fn build_overlay(
    job_id: JobId,
    definition: &JobDefinition,
    device: &DeviceConfig,
    stages: Vec<Vec<overlay::TestDefinition>>,
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
    oj.stages = stages;
    overlay::build(&oj).map_err(|e| JobError::new(ErrorType::Job, e.to_string()))
}

fn record_of(r: &ResultRecord) -> NewTestCase {
    let mut case = NewTestCase::new(r.definition.clone(), r.case.clone(), r.result);
    case.test_set = r.set.clone();
    case.measurement = r.measurement;
    case.units = r.units.clone().unwrap_or_default();
    // The one metadata rule: the YAML of the result dict the log's `results` entry holds.
    if let serde_json::Value::Object(result) = result_json(r) {
        case.metadata = Some(crate::testshell::metadata::case_metadata(&result, None));
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
