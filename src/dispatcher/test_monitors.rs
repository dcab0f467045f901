//! `test: monitors`: watch a console that prints its own results (a bare-metal board's test
//! firmware) without typing anything, as LAVA's `lava-test-monitor`: wait for `start`, then
//! record every `pattern` line until `end`, with `fixupdict` applied.
//!
//! Each result goes to the suite named after the monitor (spaces as `-`, lower case), its case
//! the `test_case_id` in lower case with runs of non-word characters as `_`. A result outside
//! pass/fail/skip/unknown is logged and dropped; a line with a measurement and no result
//! passes. Silence for a connection timeout ends the watch, as in LAVA.

use regex::Regex;
use serde_json::json;
use tokio::time::Instant;

use super::JobError;
use super::connection::WaitError;
use super::job::{JobCtx, wait_error};
use crate::model::{ErrorType, TestResult};
use crate::pipeline::step::{MonitorWork, MonitorsWork};
use crate::store::NewTestCase;

/// Runs every monitor of the block in turn.
pub(super) async fn run(ctx: &mut JobCtx<'_>, work: &MonitorsWork) -> Result<(), JobError> {
    let deadline = Instant::now() + work.node.timeout;
    for monitor in &work.monitors {
        watch(ctx, work, monitor, deadline).await?;
    }
    Ok(())
}

/// One result a monitor records: case, result, measurement, units.
pub(crate) type MonitorResult = (String, TestResult, Option<f64>, Option<String>);

/// What one result line records (`None`: nothing to record), or why it is refused.
pub(crate) fn result_of(
    monitor: &MonitorWork,
    groups: &[(String, String)],
) -> Result<Option<MonitorResult>, String> {
    let get = |k: &str| groups.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(id) = get("test_case_id") else {
        return Ok(None);
    };
    let case = Regex::new(r"\W+")
        .expect("a constant regex")
        .replace_all(&id.trim().to_lowercase(), "_")
        .into_owned();
    let measurement = match get("measurement") {
        Some(m) if !m.is_empty() => Some(
            m.parse::<f64>()
                .map_err(|_| format!("error: bad measurement: {m}"))?,
        ),
        _ => None,
    };
    let units = get("units").map(str::to_owned);
    let result = match get("result") {
        Some(r) => {
            let r = monitor
                .fixupdict
                .iter()
                .find(|(k, _)| k == r)
                .map_or(r, |(_, v)| v.as_str());
            match r {
                "pass" => TestResult::Pass,
                "fail" => TestResult::Fail,
                "skip" => TestResult::Skip,
                "unknown" => TestResult::Unknown,
                other => return Err(format!("error: bad test results: {other}")),
            }
        }
        None if measurement.is_some() => TestResult::Pass,
        None => return Ok(None),
    };
    Ok(Some((case, result, measurement, units)))
}

async fn watch(
    ctx: &mut JobCtx<'_>,
    work: &MonitorsWork,
    monitor: &MonitorWork,
    deadline: Instant,
) -> Result<(), JobError> {
    let node = &work.node;
    let wait = node.connection_timeout;
    ctx.log.info(format!(
        "Waiting for start message: {}",
        monitor.start.get().as_str()
    ));
    let left = deadline.saturating_duration_since(Instant::now());
    ctx.conn()?
        .expect(&[monitor.start.get().clone()], left.min(node.timeout))
        .await
        .map_err(wait_error("lava-test-monitor", node.timeout))?;
    ctx.log
        .info("ok: start string found, lava test monitoring started");
    let patterns = [monitor.end.get().clone(), monitor.pattern.get().clone()];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(JobError::new(
                ErrorType::LavaTimeout,
                format!(
                    "lava-test-monitor timed out after {} seconds",
                    node.timeout.as_secs()
                ),
            ));
        }
        let m = match ctx.conn()?.expect(&patterns, wait.min(left)).await {
            Ok(m) => m,
            Err(WaitError::Timeout) => {
                ctx.log.line(
                    crate::store::joblog::Level::Warning,
                    "err: lava test monitoring has timed out",
                );
                return Ok(());
            }
            Err(WaitError::Closed(why)) => {
                return Err(JobError::new(
                    ErrorType::Infrastructure,
                    format!("Connection closed: {why}"),
                ));
            }
        };
        if m.index == 0 {
            ctx.log
                .info("ok: end string found, lava test monitoring stopped");
            return Ok(());
        }
        let re = monitor.pattern.get();
        let groups: Vec<(String, String)> = re
            .captures(&m.text)
            .map(|c| {
                re.capture_names()
                    .flatten()
                    .filter_map(|n| Some((n.to_owned(), c.name(n)?.as_str().to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        ctx.log.info("ok: test case found");
        match result_of(monitor, &groups) {
            Ok(Some((case, result, measurement, units))) => {
                let test_case_id = groups
                    .iter()
                    .find(|(k, _)| k == "test_case_id")
                    .map(|(_, v)| v.trim().to_owned())
                    .unwrap_or_default();
                let mut entry = json!({
                    "definition": monitor.suite,
                    "case": case,
                    "level": node.level,
                    "result": result.to_string(),
                    "extra": {"test_case_id": test_case_id},
                });
                let mut record = NewTestCase::new(monitor.suite.clone(), case, result);
                if let Some(x) = measurement {
                    entry["measurement"] = json!(x);
                    record.measurement = Some(x);
                }
                if let Some(u) = units {
                    entry["units"] = json!(u);
                    record.units = u;
                }
                record.metadata = serde_norway::to_string(&entry).ok();
                ctx.log.results(entry);
                ctx.dispatcher.record(ctx.job_id, vec![record]).await;
            }
            Ok(None) => {}
            Err(e) => ctx.log.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::step::Pattern;

    fn monitor() -> MonitorWork {
        MonitorWork {
            suite: "tests".into(),
            start: Pattern::literal("start"),
            end: Pattern::literal("end"),
            pattern: Pattern::literal("x"),
            fixupdict: vec![
                ("PASSED".into(), "pass".into()),
                ("FAILED".into(), "fail".into()),
            ],
        }
    }

    fn g(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect()
    }

    #[test]
    fn results_follow_lavas_monitor_rules() {
        let m = monitor();
        assert_eq!(
            result_of(
                &m,
                &g(&[("test_case_id", " Kernel Boot-Time "), ("result", "PASSED")])
            ),
            Ok(Some((
                "kernel_boot_time".into(),
                TestResult::Pass,
                None,
                None
            )))
        );
        assert_eq!(
            result_of(&m, &g(&[("test_case_id", "x"), ("result", "weird")])),
            Err("error: bad test results: weird".into())
        );
        assert_eq!(
            result_of(
                &m,
                &g(&[
                    ("test_case_id", "t"),
                    ("measurement", "1.5"),
                    ("units", "s")
                ])
            ),
            Ok(Some((
                "t".into(),
                TestResult::Pass,
                Some(1.5),
                Some("s".into())
            )))
        );
        assert_eq!(result_of(&m, &g(&[("result", "pass")])), Ok(None));
    }
}
