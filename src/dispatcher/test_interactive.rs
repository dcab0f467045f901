//! `test: interactive`: scripts of commands typed at a prompt (U-Boot's `=>`, a shell), each
//! output judged by its `successes`/`failures` messages, as LAVA's `lava-test-interactive`.
//!
//! Each script is a `lava` case `<stage>_<name>` (pass when every step went through, with its
//! duration); each named command a case of suite `<stage>_<name>`. An unnamed command that
//! fails, and a failure message with an `exception`, end the job with that error class. Every
//! wait is bounded by the connection timeout and the action's, as LAVA's.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde_json::json;
use tokio::time::Instant;

use super::JobError;
use super::connection::WaitError;
use super::job::{JobCtx, timeout_error};
use crate::model::{ErrorType, TestResult};
use crate::pipeline::step::{InteractiveStepWork, InteractiveWork, ScriptWork};
use crate::store::NewTestCase;

/// Runs every script of the block.
pub(super) async fn run(ctx: &mut JobCtx<'_>, work: &InteractiveWork) -> Result<(), JobError> {
    let deadline = Instant::now() + work.node.timeout;
    let wait = work.node.timeout.min(work.node.connection_timeout);
    ctx.log.info(format!(
        "Test interactive timeout: {}s (minimum of the action and connection timeout)",
        wait.as_secs()
    ));
    let mut subst: BTreeMap<String, String> = BTreeMap::new();
    subst.insert(
        "{SERVER_IP}".into(),
        ctx.dispatcher.config.server_ip.to_string(),
    );
    subst.insert("{JOB_ID}".into(), ctx.job_id.to_string());
    for script in &work.scripts {
        let started = Instant::now();
        let outcome = run_script(ctx, work.stage, script, &mut subst, wait, deadline).await;
        let case = format!("{}_{}", work.stage, script.name);
        let result = if outcome.is_ok() {
            TestResult::Pass
        } else {
            TestResult::Fail
        };
        let duration = format!("{:.2}", started.elapsed().as_secs_f64());
        ctx.log.results(json!({
            "definition": "lava",
            "case": case,
            "result": result.to_string(),
            "duration": duration,
        }));
        let mut record = NewTestCase::new("lava", case, result);
        record.measurement = Some((started.elapsed().as_secs_f64() * 100.0).round() / 100.0);
        record.units = "seconds".into();
        ctx.dispatcher.record(ctx.job_id, vec![record]).await;
        outcome?;
    }
    Ok(())
}

fn substitute(text: &str, subst: &BTreeMap<String, String>) -> String {
    subst
        .iter()
        .fold(text.to_owned(), |acc, (k, v)| acc.replace(k.as_str(), v))
}

/// Waits for one of `patterns`, retrying on each connection timeout until the action's
/// deadline (LAVA's `expect_and_feedbacks`); the index and the regex captures by name.
async fn expect(
    ctx: &mut JobCtx<'_>,
    patterns: &[Regex],
    wait: Duration,
    deadline: Instant,
) -> Result<(usize, Vec<(String, String)>), JobError> {
    let conn = ctx.conn()?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(JobError::new(
                ErrorType::LavaTimeout,
                "interactive connection timed out",
            ));
        }
        match conn.expect(patterns, wait.min(left)).await {
            Ok(m) => {
                let groups = patterns[m.index]
                    .captures(&m.text)
                    .map(|c| {
                        patterns[m.index]
                            .capture_names()
                            .flatten()
                            .filter_map(|n| Some((n.to_owned(), c.name(n)?.as_str().to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok((m.index, groups));
            }
            Err(WaitError::Timeout) => continue,
            Err(WaitError::Closed(why)) => {
                return Err(JobError::new(
                    ErrorType::Infrastructure,
                    format!("Connection closed: {why}"),
                ));
            }
        }
    }
}

async fn run_script(
    ctx: &mut JobCtx<'_>,
    stage: usize,
    script: &ScriptWork,
    subst: &mut BTreeMap<String, String>,
    wait: Duration,
    deadline: Instant,
) -> Result<(), JobError> {
    let suite = format!("{stage}_{}", script.name);
    let prompts: Vec<Regex> = script.prompts.iter().map(|p| p.get().clone()).collect();
    for step in &script.steps {
        let (command, name, wait_for_prompt, successes, failures) = match step {
            InteractiveStepWork::Delay(secs) => {
                ctx.log.info(format!("Delaying for {secs}s"));
                tokio::time::sleep(Duration::from_secs(*secs)).await;
                continue;
            }
            InteractiveStepWork::Command {
                command,
                name,
                wait_for_prompt,
                successes,
                failures,
            } => (command, name, *wait_for_prompt, successes, failures),
        };
        let started = Instant::now();
        let command = command.as_deref().map(|c| substitute(c, subst));
        let outcome: Result<TestResult, JobError> = async {
            match &command {
                None => ctx.log.info("Sending nothing, waiting"),
                Some(c) => {
                    ctx.log.info(format!("Sending '{c}'"));
                    let conn = ctx.conn()?;
                    conn.clear();
                    conn.sendline(c).await.map_err(|e| match e {
                        WaitError::Timeout => timeout_error("lava-test-interactive", wait),
                        WaitError::Closed(why) => JobError::new(
                            ErrorType::Infrastructure,
                            format!("Connection closed: {why}"),
                        ),
                    })?;
                    if script.echo_discard {
                        // The echoed command itself, not just the next newline (LAVA's
                        // readline): a prompt the bootloader printed late, after the boot
                        // action had matched an earlier one, would otherwise be taken
                        // for this command's answer.
                        let echo = [Regex::new(&format!("{}[^\n]*\n", regex::escape(c)))
                            .expect("an escaped command is a valid regex")];
                        expect(ctx, &echo, wait, deadline).await?;
                        ctx.log.debug(format!("Ignoring echo: '{c}'"));
                    }
                }
            }
            let mut patterns = prompts.clone();
            patterns.extend(failures.iter().map(|f| f.message.get().clone()));
            patterns.extend(successes.iter().map(|s| s.get().clone()));
            let (at, groups) = expect(ctx, &patterns, wait, deadline).await?;
            let mut result = TestResult::Fail;
            if at < prompts.len() {
                if successes.is_empty() {
                    ctx.log
                        .debug(format!("Matched a prompt: '{}'", patterns[at].as_str()));
                    result = TestResult::Pass;
                } else {
                    ctx.log.error(format!(
                        "Matched a prompt (was expecting a success): '{}'",
                        patterns[at].as_str()
                    ));
                }
            } else {
                if at < prompts.len() + failures.len() {
                    let failure = &failures[at - prompts.len()];
                    ctx.log.error(format!(
                        "Matched a failure: '{}'",
                        failure.message.get().as_str()
                    ));
                    if let Some((class, error)) = &failure.raise {
                        let text = error
                            .clone()
                            .unwrap_or_else(|| failure.message.get().as_str().to_owned());
                        return Err(JobError::new(*class, text));
                    }
                } else {
                    ctx.log.info(format!(
                        "Matched a success: '{}'{}",
                        patterns[at].as_str(),
                        if groups.is_empty() {
                            String::new()
                        } else {
                            format!(" (groups: {groups:?})")
                        }
                    ));
                    for (k, v) in &groups {
                        subst.insert(format!("{{{k}}}"), v.clone());
                    }
                    result = TestResult::Pass;
                }
                if wait_for_prompt {
                    expect(ctx, &prompts, wait, deadline).await?;
                }
            }
            Ok(result)
        }
        .await;
        if let Some(name) = name {
            let result = match &outcome {
                Ok(r) => *r,
                Err(_) => TestResult::Fail,
            };
            let duration = started.elapsed().as_secs_f64();
            ctx.log.results(json!({
                "definition": suite,
                "case": name,
                "result": result.to_string(),
                "duration": format!("{duration:.2}"),
            }));
            let mut record = NewTestCase::new(suite.clone(), name.clone(), result);
            record.metadata = serde_norway::to_string(&json!({
                "duration": format!("{duration:.2}"),
            }))
            .ok();
            ctx.dispatcher.record(ctx.job_id, vec![record]).await;
        }
        match outcome {
            Ok(TestResult::Fail) if name.is_none() => {
                return Err(JobError::new(
                    ErrorType::Test,
                    format!(
                        "Failed to run command '{}'",
                        command.as_deref().unwrap_or("None")
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
