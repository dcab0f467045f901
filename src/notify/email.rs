//! E-mail: the notification text and its delivery through the configured SMTP relay.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::JobData;
use super::compare::Comparison;
use crate::config::SmtpConfig;
use crate::jobdef::notify::Verbosity;
use crate::model::{JobHealth, JobState, TestResult};

/// The subject, as LAVA words it (clients filter on it): `LAVA notification for Test Job
/// <id> <description, at most 200 characters>`.
pub fn subject(data: &JobData) -> String {
    let description: String = data.job.description.chars().take(200).collect();
    format!(
        "LAVA notification for Test Job {} {description}",
        data.job.id.0
    )
}

fn when(t: Option<time::OffsetDateTime>) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] (+0000 UTC)"
    );
    t.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(FORMAT).ok())
        .unwrap_or_else(|| "-".to_owned())
}

/// The body text for `verbosity`; `name` greets a known user.
pub fn body(
    data: &JobData,
    verbosity: Verbosity,
    name: Option<&str>,
    comparison: Option<&Result<Comparison, String>>,
) -> String {
    let job = &data.job;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{}\n",
        name.map_or("Hello,".to_owned(), |n| format!("Dear {n},"))
    );
    let _ = writeln!(
        t,
        "Test job {} ({}) submitted by {} is now {}, health {}.",
        job.id.0, job.description, job.submitter, job.state, job.health
    );
    let _ = writeln!(t, "Details and log: {}", data.job_url);
    if verbosity == Verbosity::StatusOnly || job.state != JobState::Finished {
        return t;
    }
    if job.health == JobHealth::Incomplete {
        let kind = job
            .error_type
            .map_or("Unknown".to_owned(), |e| e.to_string());
        let _ = writeln!(
            t,
            "\n{kind} error: {}",
            job.failure_comment.as_deref().unwrap_or("(no message)")
        );
    }
    let _ = writeln!(t, "\nDevice");
    match &data.device {
        Some(d) => {
            let _ = writeln!(t, "  hostname:    {}", d.hostname);
            let _ = writeln!(t, "  device type: {}", d.device_type);
            if let Some(owner) = d.owner_user.as_ref().or(d.owner_group.as_ref()) {
                let _ = writeln!(t, "  owner:       {owner}");
            }
            if let Some(worker) = &d.worker_name {
                let _ = writeln!(t, "  worker:      {worker}");
            }
        }
        None => {
            let _ = writeln!(t, "  (none assigned)");
        }
    }
    let _ = writeln!(t, "\nJob");
    let _ = writeln!(t, "  priority:    {}", job.priority.value());
    let _ = writeln!(t, "  submitted:   {}", when(Some(job.submit_time)));
    let _ = writeln!(t, "  started:     {}", when(job.start_time));
    let _ = writeln!(t, "  finished:    {}", when(job.end_time));
    if let (Some(start), Some(end)) = (job.start_time, job.end_time) {
        let secs = (end - start).whole_seconds().max(0);
        let _ = writeln!(
            t,
            "  duration:    {}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
    }
    if verbosity == Verbosity::Verbose {
        if !data.metadata.is_empty() {
            let _ = writeln!(t, "\nMetadata");
            for (k, v) in &data.metadata {
                let _ = writeln!(t, "  {k}: {v}");
            }
        }
        let _ = writeln!(t, "\nResults");
        // One block per suite, in suite order (LAVA's `testsuite_set`): the `lava` suite's
        // cases come before and after the test suites', which must not split it in two.
        let mut cases: Vec<&crate::store::TestCase> = data.results.iter().collect();
        cases.sort_by_key(|c| (c.suite_id, c.id));
        let mut suite = None;
        for c in cases {
            if suite != Some(c.suite_id) {
                let _ = writeln!(
                    t,
                    "  suite {}: {}/results/{}/{}",
                    c.suite, data.base_url, job.id.0, c.suite
                );
                suite = Some(c.suite_id);
            }
            let outcome = match c.result {
                TestResult::Pass => "passed",
                TestResult::Fail => "FAILED",
                TestResult::Skip => "skipped",
                TestResult::Unknown => "unknown",
            };
            let _ = write!(t, "    {}: {outcome}", c.name);
            if let Some(m) = c.measurement {
                let _ = write!(t, " ({m} {})", c.units);
            }
            t.push('\n');
        }
        if data.results.is_empty() {
            let _ = writeln!(t, "  (none)");
        }
    }
    match comparison {
        Some(Ok(c)) => {
            let _ = writeln!(
                t,
                "\nCompared with job {}: {}/scheduler/job/{}",
                c.previous.0, data.base_url, c.previous.0
            );
            let lists = [
                ("newly failing", &c.new_failures),
                ("fixed", &c.fixed),
                ("new test cases", &c.cases_added),
                ("missing test cases", &c.cases_removed),
                ("new suites", &c.suites_added),
                ("missing suites", &c.suites_removed),
            ];
            for (what, list) in lists {
                if !list.is_empty() {
                    let _ = writeln!(t, "  {what}: {}", list.join(", "));
                }
            }
            for (suite, before, now) in &c.counts_changed {
                let _ = writeln!(
                    t,
                    "  suite {suite}: pass {} -> {}, fail {} -> {}, skip {} -> {}",
                    before.pass, now.pass, before.fail, now.fail, before.skip, now.skip
                );
            }
            if c.is_empty() {
                let _ = writeln!(t, "  no differences");
            }
        }
        Some(Err(why)) => {
            let _ = writeln!(t, "\nNo comparison: {why}");
        }
        None => {}
    }
    t
}

/// Sends one message through `smtp` (plain SMTP to the relay, no TLS: the relay is the
/// lab's local MTA).
pub async fn send(
    smtp: &SmtpConfig,
    to: &str,
    subject: &str,
    body: String,
    timeout: Duration,
) -> Result<(), String> {
    let (host, port) = match smtp.relay.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("bad SMTP relay port in `{}`", smtp.relay))?,
        ),
        None => (smtp.relay.as_str(), 25),
    };
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("bad sender address `{}`: {e}", smtp.from))?;
    let to: Mailbox = to.parse().map_err(|e| format!("bad address `{to}`: {e}"))?;
    let mail = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("cannot build the e-mail: {e}"))?;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(timeout))
        .build();
    mailer
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP relay {}: {e}", smtp.relay))
}
