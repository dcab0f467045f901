//! Regression tests for issue 11: what a job the scheduler ran leaves behind is readable
//! through every interface.
//!
//! The whole appliance runs (`common::server`), a job is submitted through XML-RPC, and the
//! real scheduler and dispatcher run it on the virtual lab's x86 QEMU board (`qemu-01`). Its
//! log is then read back through Debian's `lavacli jobs logs`, REST `/jobs/<id>/logs/` (with
//! and without `start`/`end`), XML-RPC `scheduler.jobs.logs` and `scheduler.job_output`; its
//! results through REST and the `/results/<id>/yaml` export; its configuration through
//! `scheduler.jobs.configuration`; and its notification through a webhook with `dataset:
//! all`, whose body carries the log. Every expectation is checked against the file the job
//! path wrote (`<data>/jobs/<id>/output.yaml`), never against one a fixture wrote.

use lavabox::api::xmlrpc::codec::Value;
use lavabox::model::{JobHealth, JobId, JobState};

use crate::common::health_check;
use crate::common::server::{Options, SAFETY_NET, Server};
use crate::common::webhook;
use crate::xmlrpc::rpc;

/// The x86 board's health check as a user job with a webhook notification.
fn smoke_job(hook: &str) -> String {
    format!(
        "{}notify:\n  criteria: {{status: finished}}\n  callbacks:\n\
         \x20 - {{url: \"{hook}\", method: POST, dataset: all, content-type: json}}\n",
        health_check("qemu").replace("qemu health check", "qemu smoke job")
    )
}

/// `GET path` on the API with alice's token; (status, body).
async fn get(srv: &Server, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}{path}", srv.addr))
        .header("Authorization", format!("Token {}", srv.alice_token))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// `scheduler.jobs.logs(id, start, end)` → (finished, text).
async fn rpc_logs(srv: &Server, id: JobId, start: i64, end: Option<i64>) -> (bool, String) {
    let mut params = vec![Value::Int(id.0), Value::Int(start)];
    if let Some(end) = end {
        params.push(Value::Int(end));
    }
    match rpc(srv.addr, None, "scheduler.jobs.logs", &params).await {
        Ok(Value::Array(v)) => match v.as_slice() {
            [Value::Bool(finished), Value::Base64(data)] => {
                (*finished, String::from_utf8_lossy(data).into_owned())
            }
            other => panic!("jobs.logs: {other:?}"),
        },
        other => panic!("jobs.logs: {other:?}"),
    }
}

/// Lines `start..end` of `lines` (LAVA's rule: 0-based, `end` exclusive, past the end is
/// empty), as the text the logs APIs return.
fn slice(lines: &[&str], start: usize, end: Option<usize>) -> String {
    let end = end.unwrap_or(lines.len()).min(lines.len());
    lines
        .get(start.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

/// lavacli with a `lavacli.yaml` pointing at `srv` (identity `default` = alice).
async fn lavacli(srv: &Server, args: &[&str]) -> String {
    let home = srv.dir().join("xdg");
    std::fs::create_dir_all(&home).expect("xdg dir");
    std::fs::write(
        home.join("lavacli.yaml"),
        format!(
            "default:\n  uri: http://{}/RPC2\n  username: alice\n  token: {}\n",
            srv.addr, srv.alice_token
        ),
    )
    .expect("lavacli.yaml");
    let out = tokio::process::Command::new("lavacli")
        .args(args)
        .env("XDG_CONFIG_HOME", &home)
        .env("HOME", &home)
        .output()
        .await
        .expect("running lavacli (apt-get install lavacli)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lavacli {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_scheduler_ran_is_readable_through_every_interface() {
    lab_or_skip!();
    let (hook, mut bodies) = webhook().await;
    let mut srv = Server::start(Options::lab(&["qemu-01"])).await;
    assert!(
        srv.zmq.is_some(),
        "the whole appliance runs, its publisher too"
    );

    // Before it runs: LAVA's answers for a job without a log.
    let id = match rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "scheduler.jobs.submit",
        &[Value::str(smoke_job(&hook))],
    )
    .await
    {
        Ok(Value::Int(id)) => JobId(id),
        other => panic!("submit: {other:?}"),
    };
    let end = srv.finished(id, JobHealth::Complete).await;
    assert_eq!(end.state, JobState::Finished);

    // The notification fired at Finished carries the log; its outcome is then recorded in
    // the log itself, so the file is read once that outcome is out.
    let body = tokio::time::timeout(SAFETY_NET, bodies.recv())
        .await
        .expect("the callback in time")
        .expect("a callback body");
    let outcome = tokio::time::timeout(SAFETY_NET, async {
        loop {
            match srv.outcomes.recv().await {
                Ok(o) if o.job == id && o.state == JobState::Finished => return o,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("outcomes: {e}"),
            }
        }
    })
    .await
    .expect("the outcome in time");
    assert!(outcome.result.is_ok(), "{}", outcome.describe());

    let written = std::fs::read_to_string(srv.app.config().job_log_path(id)).expect("output.yaml");
    let lines: Vec<&str> = written.lines().collect();
    assert!(
        lines.len() > 20,
        "a real boot logs more than this:\n{written}"
    );
    assert!(written.contains("Linux version"), "{written}");

    // The webhook (`dataset: all`): the log as it was at Finished, and the results.
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON callback");
    let sent_log = body["log"].as_str().expect("log in the callback");
    assert!(
        !sent_log.is_empty() && written.starts_with(sent_log),
        "the callback's log is the job's log:\n{sent_log}"
    );
    assert!(sent_log.contains("Linux version"), "{sent_log}");
    assert_eq!(body["status_string"], "complete", "{body}");

    // REST /jobs/<id>/logs/, whole and sliced.
    let logs = format!("/api/v0.2/jobs/{id}/logs/");
    assert_eq!(get(&srv, &logs).await, (200, written.clone()));
    for (start, end) in [
        (0, Some(1)),
        (3, Some(10)),
        (5, None),
        (7, Some(7)),
        (2, Some(1)),
    ] {
        let query = match end {
            Some(e) => format!("{logs}?start={start}&end={e}"),
            None => format!("{logs}?start={start}"),
        };
        let want = slice(&lines, start, end);
        let got = get(&srv, &query).await;
        if want.is_empty() {
            assert_eq!(got.0, 404, "{query}: an empty slice is LAVA's 404");
        } else {
            assert_eq!(got, (200, want), "{query}");
        }
    }
    let past = format!("{logs}?start={}", lines.len() + 5);
    assert_eq!(get(&srv, &past).await.0, 404);

    // XML-RPC scheduler.jobs.logs: finished flag and text, whole and sliced.
    assert_eq!(rpc_logs(&srv, id, 0, None).await, (true, written.clone()));
    assert_eq!(
        rpc_logs(&srv, id, 2, Some(6)).await,
        (true, slice(&lines, 2, Some(6)))
    );
    assert_eq!(
        rpc_logs(&srv, id, lines.len() as i64, None).await,
        (true, "[]".to_owned())
    );
    let parsed: Vec<serde_norway::Value> = serde_norway::from_str(&written).expect("YAML log");
    assert_eq!(parsed.len(), lines.len());

    // XML-RPC scheduler.job_output: the raw bytes from an offset.
    let offset = lines[0].len() + 1;
    match rpc(
        srv.addr,
        None,
        "scheduler.job_output",
        &[Value::Int(id.0), Value::Int(offset as i64)],
    )
    .await
    {
        Ok(Value::Base64(bytes)) => assert_eq!(bytes, written.as_bytes()[offset..]),
        other => panic!("job_output: {other:?}"),
    }

    // Debian's lavacli reads the same log.
    // `--raw` prints the entries it parsed again as YAML (its own dump): the same entries.
    let raw = lavacli(&srv, &["jobs", "logs", "--raw", &id.to_string()]).await;
    let printed: Vec<serde_norway::Value> = serde_norway::from_str(&raw).expect("YAML");
    assert_eq!(printed.len(), lines.len(), "{raw}");
    for (got, want) in printed.iter().zip(&parsed) {
        assert_eq!(got["lvl"], want["lvl"], "{raw}");
        if want["msg"].is_string() {
            assert_eq!(got["msg"], want["msg"], "{raw}");
        }
    }
    let pretty = lavacli(&srv, &["jobs", "logs", "--no-follow", &id.to_string()]).await;
    assert!(pretty.contains("Linux version"), "{pretty}");

    // Results: the board's test cases and the dispatcher's `lava` suite.
    let (status, tests) = get(&srv, &format!("/api/v0.2/jobs/{id}/tests/?limit=100")).await;
    assert_eq!(status, 200, "{tests}");
    let tests: serde_json::Value = serde_json::from_str(&tests).expect("JSON");
    let names: Vec<&str> = tests["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in ["uname", "proc-mounted", "job"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let (status, suites) = get(&srv, &format!("/api/v0.2/jobs/{id}/suites/")).await;
    assert_eq!(status, 200, "{suites}");
    assert!(
        suites.contains("\"0_health\"") && suites.contains("\"lava\""),
        "{suites}"
    );
    let (status, yaml) = get(&srv, &format!("/results/{id}/yaml")).await;
    assert_eq!(status, 200, "{yaml}");
    let cases: Vec<serde_norway::Value> = serde_norway::from_str(&yaml).expect("YAML results");
    assert!(
        cases.iter().any(|c| c["suite"].as_str() == Some("0_health")
            && c["name"].as_str() == Some("uname")
            && c["result"].as_str() == Some("pass")),
        "{yaml}"
    );
    match rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "results.get_testjob_results_yaml",
        &[Value::Int(id.0)],
    )
    .await
    {
        Ok(Value::String(text)) => assert!(text.contains("proc-mounted"), "{text}"),
        other => panic!("get_testjob_results_yaml: {other:?}"),
    }

    // scheduler.jobs.configuration: the definition and the rendered device configuration
    // the job path wrote into the job's directory at job start.
    match rpc(
        srv.addr,
        None,
        "scheduler.jobs.configuration",
        &[Value::Int(id.0)],
    )
    .await
    {
        Ok(Value::Array(files)) => {
            assert_eq!(files.len(), 5, "{files:?}");
            match &files[1] {
                Value::Base64(device) => {
                    let device = String::from_utf8_lossy(device);
                    assert!(device.contains("qemu-system-x86_64"), "{device}");
                }
                other => panic!("device.yaml not written by the job path: {other:?}"),
            }
        }
        other => panic!("configuration: {other:?}"),
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_job_that_never_started_has_no_log_anywhere() {
    // A scripted board is enough: the job is canceled before any device takes it.
    let srv = Server::start(Options::scripted().seed(|s| {
        s.create_device_type(&lavabox::store::NewDeviceType::named("qemu"))?;
        Ok(())
    }))
    .await;
    // No device of the type yet: the job is refused at submission unless one exists, so one
    // is added in Maintenance (it takes no job).
    srv.app
        .store()
        .call(|s| {
            let mut d = lavabox::store::NewDevice::new("parked", "qemu");
            d.dictionary = Some("{% extends 'qemu.jinja2' %}\n".into());
            d.health = lavabox::model::DeviceHealth::Maintenance;
            s.create_device(&d)?;
            Ok(())
        })
        .await
        .expect("device");
    let id = match rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "scheduler.jobs.submit",
        &[Value::str(crate::common::server::scripted_job(
            "qemu",
            "never runs",
        ))],
    )
    .await
    {
        Ok(Value::Int(id)) => JobId(id),
        other => panic!("submit: {other:?}"),
    };
    let logs = format!("/api/v0.2/jobs/{id}/logs/");
    assert_eq!(get(&srv, &logs).await.0, 404);
    assert_eq!(rpc_logs(&srv, id, 0, None).await, (false, "[]".to_owned()));
    assert_eq!(
        rpc(srv.addr, None, "scheduler.job_output", &[Value::Int(id.0)]).await,
        Err((404, "Job output not found.".to_owned()))
    );
}
