//! Issue 20: the LAVA clients labs already run work unchanged against lavabox running real
//! QEMU jobs (the virtual lab's x86 boards, the real scheduler and dispatcher):
//! - Collabora's `lava-api` crate (0.2.1): devices, jobs with every filter (the time filters
//!   with `chrono`'s nanosecond times), test cases (every case's metadata parsed), JUnit, the
//!   log with start/end, submit and cancel;
//! - lava-gitlab-runner 0.3.6's verdict, reproduced from its source with the crate it uses
//!   (`junit-parser`): a job passes when it is Complete and the JUnit root counts no errors
//!   and no failures — false for a job whose test failed, true for a passing one;
//! - a kernelci-style notify callback (`dataset: all`) receives the job's log;
//! - the seed's `zmq_client.py` (tests/zmq_client.py) returns the job's end event, waiting on
//!   LAVA's legacy `status`;
//! - SQUAD 1.98's LAVA backend (tests/squad_driver.py, in the virtualenv `scripts/install-deps.sh`
//!   makes) submits, listens, fetches and receives a test run in XML-RPC and REST modes.

use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use lava_api::Lava;
use lava_api::job::{Health, Ordering, State as LavaState};
use lavabox::model::{JobHealth, JobId, JobState};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::common::health_check;
use crate::common::server::{Options, SAFETY_NET, Server};
use crate::common::webhook;

/// Where `scripts/install-deps.sh` puts SQUAD's virtualenv (overridable).
const SQUAD_PYTHON: &str = "/opt/lavabox-tests/squad-venv/bin/python3";

/// The x86 board's health check as a user job named `name` whose test runs `steps`, with an
/// optional `dataset: all` callback to `hook`.
fn qemu_job(name: &str, steps: &[&str], hook: Option<&str>) -> String {
    let base = health_check("qemu").replace("qemu health check", name);
    let start = base
        .find("          steps:\n")
        .expect("the health check has steps")
        + 17;
    let mut job = base[..start].to_owned();
    for step in steps {
        job.push_str(&format!("          - {step}\n"));
    }
    if let Some(hook) = hook {
        job.push_str(&format!(
            "notify:\n  criteria: {{status: finished}}\n  callbacks:\n\
             \x20 - {{url: \"{hook}\", method: POST, dataset: all, content-type: json}}\n"
        ));
    }
    job
}

const PASSING: &[&str] = &[
    "lava-test-case uname --shell uname -a",
    "lava-test-case proc-mounted --shell test -e /proc/cpuinfo",
];
const FAILING: &[&str] = &[
    "lava-test-case uname --shell uname -a",
    "lava-test-case missing-file --shell test -e /no/such/file",
];

/// Every job `query` yields, as ids, in order.
async fn ids(jobs: lava_api::job::JobsBuilder<'_>) -> Vec<i64> {
    jobs.query()
        .map(|j| j.expect("lava-api reads the job list").id)
        .collect()
        .await
}

/// lava-gitlab-runner 0.3.6's verdict on a finished job (`follow_job` → `all_tests_passed`):
/// Complete, and the JUnit report's root counts no errors and no failures.
async fn gitlab_runner_passes(lava: &Lava, id: i64) -> bool {
    let job = lava
        .jobs()
        .id(id)
        .query()
        .try_next()
        .await
        .expect("job query")
        .expect("the job exists");
    assert_eq!(job.state, LavaState::Finished);
    if job.health != Health::Complete {
        return false;
    }
    let bytes: Vec<Bytes> = lava
        .job_results_as_junit(id)
        .await
        .expect("junit")
        .try_collect()
        .await
        .expect("junit body");
    let xml = bytes.concat();
    let suites = junit_parser::from_reader(std::io::Cursor::new(xml)).expect("JUnit parses");
    suites.errors == 0 && suites.failures == 0
}

/// Starts the seed's `zmq_client.py` for job `id` and returns once it is subscribed.
async fn zmq_client(srv: &Server, id: JobId) -> tokio::process::Child {
    let script = env!("CARGO_MANIFEST_DIR").to_owned() + "/tests/zmq_client.py";
    let mut child = tokio::process::Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--hostname", &srv.addr.to_string()])
        .args(["--job-id", &id.0.to_string(), "--timeout", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with python3-zmq and python3-yaml");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut said = Vec::new();
    loop {
        match tokio::time::timeout(SAFETY_NET, lines.next_line()).await {
            Ok(Ok(Some(line))) if line == "listening" => break,
            Ok(Ok(Some(line))) => said.push(line),
            other => panic!("zmq_client.py did not start ({other:?}): {said:?}"),
        }
    }
    // The rest of its stderr goes to the test's output (a traceback, if it fails).
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("zmq_client.py: {line}");
        }
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lava_api_gitlab_runner_callbacks_and_the_seed_zmq_client_work_unchanged() {
    lab_or_skip!();
    lavabox::tls::install_tls_provider();
    let (hook, mut bodies) = webhook().await;
    let mut srv = Server::start(Options::lab(&["qemu-01", "qemu-02"])).await;
    let lava = Lava::new(
        &format!("http://{}/", srv.addr),
        Some(srv.alice_token.clone()),
    )
    .expect("lava-api client");

    // devices(): every device has the appliance's own worker as its worker host.
    let devices: Vec<_> = lava
        .devices()
        .map(|d| d.expect("lava-api reads devices"))
        .collect()
        .await;
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.hostname.as_str(), d.worker_host.as_str()))
            .collect::<Vec<_>>(),
        [
            ("qemu-01", srv.worker.as_str()),
            ("qemu-02", srv.worker.as_str())
        ]
    );

    // A time with nanoseconds (9 fraction digits on the wire), before any job.
    let before = chrono::Utc::now();
    let pass = lava
        .submit_job(&qemu_job("clients pass", PASSING, Some(&hook)))
        .await
        .expect("submit")[0];
    let fail = lava
        .submit_job(&qemu_job("clients fail", FAILING, None))
        .await
        .expect("submit")[0];
    let fail_events = zmq_client(&srv, JobId(fail)).await;
    let cancel = lava
        .submit_job(&qemu_job("clients cancel", PASSING, None))
        .await
        .expect("submit")[0];
    lava.cancel_job(cancel).await.expect("cancel");
    let mut ends = std::collections::BTreeMap::new();
    while ends.len() < 3 {
        let end = srv
            .until_job("our jobs Finished", |j| {
                [pass, fail, cancel].contains(&j.id.0) && j.state == JobState::Finished
            })
            .await;
        ends.insert(end.id.0, end.health);
    }
    assert_eq!(
        ends.into_iter().collect::<Vec<_>>(),
        [
            (pass, JobHealth::Complete),
            (fail, JobHealth::Complete),
            (cancel, JobHealth::Canceled)
        ],
        "log of {pass}: {}",
        std::fs::read_to_string(srv.app.config().job_log_path(JobId(pass))).unwrap_or_default()
    );

    // The seed's event client, as written, returns the failing job's end event.
    let out = tokio::time::timeout(SAFETY_NET, fail_events.wait_with_output())
        .await
        .expect("zmq_client.py ends")
        .expect("zmq_client.py output");
    assert!(out.status.success(), "{out:?}");
    let end: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the end event");
    assert_eq!(end["job"], fail);
    assert_eq!(
        (&end["state"], &end["health"], &end["status"]),
        (
            &serde_json::json!("Finished"),
            &serde_json::json!("Complete"),
            &serde_json::json!("Complete")
        )
    );
    assert_eq!(end["worker"], srv.worker.as_str(), "{end}");

    // lava-gitlab-runner's verdict: the failing test fails the CI job, the passing one passes.
    assert!(gitlab_runner_passes(&lava, pass).await);
    assert!(!gitlab_runner_passes(&lava, fail).await);

    // jobs() with every filter lava-api has.
    let ours = [pass, fail, cancel];
    let only_ours = |mut v: Vec<i64>| {
        v.retain(|id| ours.contains(id));
        v
    };
    assert_eq!(ids(lava.jobs().id(pass)).await, [pass]);
    assert_eq!(ids(lava.jobs().id(pass).id(cancel)).await, [pass, cancel]);
    assert_eq!(ids(lava.jobs().id_after(pass)).await, [fail, cancel]);
    assert_eq!(
        only_ours(ids(lava.jobs().state(LavaState::Finished)).await),
        ours
    );
    assert!(only_ours(ids(lava.jobs().state_not(LavaState::Finished)).await).is_empty());
    assert_eq!(
        only_ours(ids(lava.jobs().health(Health::Complete)).await),
        [pass, fail]
    );
    assert_eq!(
        only_ours(ids(lava.jobs().health_not(Health::Complete)).await),
        [cancel]
    );
    assert_eq!(
        only_ours(ids(lava.jobs().submitted_after(before)).await),
        ours
    );
    assert_eq!(only_ours(ids(lava.jobs().ended_after(before)).await), ours);
    let started = only_ours(ids(lava.jobs().started_after(before)).await);
    assert!(
        started.starts_with(&[pass, fail]) && started.len() <= 3,
        "{started:?}"
    );
    let after_all = chrono::Utc::now();
    assert!(
        only_ours(ids(lava.jobs().submitted_after(after_all)).await).is_empty()
            && only_ours(ids(lava.jobs().ended_after(after_all)).await).is_empty()
            && only_ours(ids(lava.jobs().started_after(after_all)).await).is_empty()
    );
    // Descending submit time, one job per page: the pages' `next` links are followed.
    assert_eq!(
        only_ours(
            ids(lava
                .jobs()
                .ordering(Ordering::SubmitTime, false)
                .limit(1)
                .submitted_after(before))
            .await
        ),
        [cancel, fail, pass]
    );
    for ordering in [Ordering::Id, Ordering::StartTime, Ordering::EndTime] {
        assert_eq!(
            only_ours(ids(lava.jobs().ordering(ordering, true).id_after(pass - 1)).await).len(),
            3
        );
    }

    // test_cases(): every case of the failing job, each with its metadata parsed.
    let cases: Vec<_> = lava
        .test_cases(fail)
        .try_collect()
        .await
        .expect("lava-api reads every test case");
    let names: Vec<(&str, String)> = cases
        .iter()
        .map(|c| (c.name.as_str(), c.result.to_string()))
        .collect();
    assert!(
        names.contains(&("missing-file", "fail".into())),
        "{names:?}"
    );
    assert!(names.contains(&("uname", "pass".into())), "{names:?}");
    assert!(names.contains(&("job", "pass".into())), "{names:?}");
    for case in &cases {
        let meta = case
            .metadata
            .as_ref()
            .unwrap_or_else(|| panic!("case {} has metadata", case.name));
        assert_eq!(meta.case, case.name);
        assert_eq!(meta.result, case.result);
    }
    assert!(
        cases
            .iter()
            .filter_map(|c| c.metadata.as_ref()?.extra.as_deref())
            .all(|path| std::path::Path::new(path).is_file()),
        "every `extra` names the file that holds it"
    );

    // The log, whole and with start/end, as lava-api reads it.
    let text = std::fs::read_to_string(srv.app.config().job_log_path(JobId(pass))).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    let entries: Vec<_> = lava
        .log(pass)
        .log()
        .map(|e| e.expect("lava-api parses every log entry"))
        .collect()
        .await;
    assert_eq!(entries.len(), lines.len());
    let raw: Vec<Bytes> = lava
        .log(pass)
        .start(2)
        .end(6)
        .raw()
        .try_collect()
        .await
        .expect("log slice");
    let want: String = lines[2..6].iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&raw.concat()), want);

    // The `dataset: all` callback of the passing job carried its log.
    let body = tokio::time::timeout(SAFETY_NET, bodies.recv())
        .await
        .expect("the callback came")
        .expect("a body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON callback");
    assert_eq!(body["id"], pass);
    let sent = body["log"].as_str().expect("a log in the callback");
    assert!(
        !sent.is_empty() && text.starts_with(sent),
        "the callback's log is the job's"
    );
    assert!(sent.contains("uname"), "{sent}");

    // SQUAD's job link and log download: `/scheduler/job/<id>/log_file/plain`.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://{}/scheduler/job/{pass}/log_file/plain?user=alice&token={}",
            srv.addr, srv.alice_token
        ))
        .send()
        .await
        .expect("plain log");
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.headers()["content-disposition"],
        format!("attachment; filename=job_{pass}.log").as_str()
    );
    let now = std::fs::read_to_string(srv.app.config().job_log_path(JobId(pass))).expect("log");
    assert_eq!(plain.text().await.expect("body"), now);
    srv.stop().await;
}

/// Runs tests/squad_driver.py in `mode` against `url`: SQUAD's JSON summary.
async fn squad(srv: &Server, mode: &str, url: String, job: &str) -> serde_json::Value {
    let python = std::env::var("LAVABOX_SQUAD_PYTHON").unwrap_or_else(|_| SQUAD_PYTHON.into());
    assert!(
        std::path::Path::new(&python).exists(),
        "SQUAD's virtualenv is missing ({python}): run scripts/install-deps.sh"
    );
    let dir = srv.dir().join(format!("squad-{mode}"));
    std::fs::create_dir_all(&dir).expect("squad dir");
    let definition = dir.join("job.yaml");
    std::fs::write(&definition, job).expect("job file");
    let script = env!("CARGO_MANIFEST_DIR").to_owned() + "/tests/squad_driver.py";
    let run = tokio::process::Command::new(&python)
        .arg(script)
        .args([mode, &url, "alice", &srv.alice_token])
        .arg(&definition)
        .arg(&dir)
        .arg("600")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SAFETY_NET + Duration::from_secs(60), run)
        .await
        .expect("SQUAD's driver ends")
        .expect("SQUAD's driver runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SQUAD {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("SQUAD {mode} summary ({e}):\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squad_submits_fetches_and_receives_test_runs_over_xmlrpc_and_rest() {
    lab_or_skip!();
    let srv = Server::start(Options::lab(&["qemu-01", "qemu-02"])).await;
    let job = qemu_job("squad job", FAILING, None);
    // `//RPC2` (SQUAD's XML-RPC transport) and `jobs/<id>`, `suites/<id>/tests` without
    // their slash (its REST mode) are what this exercises.
    let (rpc, rest) = tokio::join!(
        squad(&srv, "xmlrpc", format!("http://{}/RPC2", srv.addr), &job),
        squad(&srv, "rest", format!("http://{}/api/v0.2/", srv.addr), &job),
    );
    for (mode, run) in [("xmlrpc", &rpc), ("rest", &rest)] {
        assert_eq!(run["fetched"], true, "{mode}: {run}");
        assert_eq!(run["failure"], serde_json::Value::Null, "{mode}: {run}");
        assert_eq!(run["testrun"], true, "{mode}: {run}");
        assert_eq!(run["completed"], true, "{mode}: {run}");
        assert_eq!(run["tests"]["health/uname"], "pass", "{mode}: {run}");
        assert_eq!(run["tests"]["health/missing-file"], "fail", "{mode}: {run}");
        assert!(run["log_size"].as_u64().unwrap_or(0) > 0, "{mode}: {run}");
    }
    // XML-RPC reports LAVA's legacy status, REST the state.
    assert_eq!(rpc["job_status"], "Complete", "{rpc}");
    assert_eq!(rest["job_status"], "Complete", "{rest}");
    srv.stop().await;
}

/// A scripted board's server (no QEMU): `qemu-01` runs the scripted job.
async fn scripted_server() -> Server {
    let options = Options::scripted().seed(|s| {
        let mut qemu = lavabox::store::NewDeviceType::named("qemu");
        qemu.disable_health_check = true;
        s.create_device_type(&qemu)?;
        let mut device = lavabox::store::NewDevice::new("qemu-01", "qemu");
        device.dictionary = Some(crate::common::server::scripted_dictionary("qemu.jinja2"));
        device.health = lavabox::model::DeviceHealth::Good;
        s.create_device(&device)?;
        Ok(())
    });
    Server::start(options).await
}

/// `GET url` without following redirects, with `token` if any: (status, location, body).
async fn get_raw(url: &str, token: Option<&str>) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Token {token}"));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("ascii location").to_owned());
    (status, location, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_server_paths_results_and_the_plain_log_of_a_job_the_server_ran() {
    lavabox::tls::install_tls_provider();
    let mut srv = scripted_server().await;
    let base = format!("http://{}", srv.addr);
    let definition = crate::common::server::scripted_job("qemu", "clients scripted")
        .replace("visibility: public", "visibility: personal");
    // Submitted through `//RPC2`, as SQUAD's XML-RPC transport posts it.
    let call = format!(
        "<?xml version='1.0'?><methodCall><methodName>scheduler.submit_job</methodName>\
         <params><param><value><string>{}</string></value></param></params></methodCall>",
        definition
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    );
    let response = reqwest::Client::new()
        .post(format!("{base}//RPC2"))
        .basic_auth("alice", Some(&srv.alice_token))
        .header("Content-Type", "text/xml")
        .body(call)
        .send()
        .await
        .expect("//RPC2");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let id: i64 = text
        .split("<int>")
        .nth(1)
        .and_then(|rest| rest.split("</int>").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a job id from //RPC2: {text}"));
    srv.finished(JobId(id), JobHealth::Complete).await;

    // Django's APPEND_SLASH: a known path without its slash is a 301 to the slash form,
    // query kept; an unknown one stays a 404.
    let (status, location, _) = get_raw(
        &format!("{base}/api/v0.2/jobs/{id}?format=json"),
        Some(&srv.alice_token),
    )
    .await;
    assert_eq!(
        (status, location.as_deref()),
        (
            301,
            Some(format!("/api/v0.2/jobs/{id}/?format=json").as_str())
        )
    );
    assert_eq!(
        get_raw(
            &format!("{base}/api/v0.2//jobs/{id}/"),
            Some(&srv.alice_token)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get_raw(&format!("{base}/api/v0.2/nothing"), None).await.0,
        404
    );

    // REST devices: the appliance's own worker.
    let (_, _, devices) = get_raw(&format!("{base}/api/v0.2/devices/"), None).await;
    let devices: serde_json::Value = serde_json::from_str(&devices).expect("JSON");
    assert_eq!(devices["results"][0]["worker_host"], srv.worker.as_str());

    // Every case's metadata is the YAML of its result dict.
    let (_, _, cases) = get_raw(
        &format!("{base}/api/v0.2/jobs/{id}/tests/"),
        Some(&srv.alice_token),
    )
    .await;
    let cases: serde_json::Value = serde_json::from_str(&cases).expect("JSON");
    let cases = cases["results"].as_array().expect("cases");
    assert!(cases.len() >= 3, "{cases:?}");
    for case in cases {
        let meta: serde_json::Value =
            serde_norway::from_str(case["metadata"].as_str().expect("metadata text"))
                .expect("YAML metadata");
        assert_eq!(meta["case"], case["name"], "{case}");
        assert_eq!(meta["result"], case["result"], "{case}");
        assert!(meta["definition"].is_string(), "{case}");
    }

    // The JUnit root carries the totals.
    let (_, _, junit) = get_raw(
        &format!("{base}/api/v0.2/jobs/{id}/junit/"),
        Some(&srv.alice_token),
    )
    .await;
    let suites = junit_parser::from_reader(std::io::Cursor::new(junit.as_bytes())).expect("JUnit");
    assert_eq!(suites.tests as usize, cases.len(), "{junit}");
    let failed = cases.iter().filter(|c| c["result"] == "fail").count();
    assert!(failed > 0, "the scripted run fails a case: {cases:?}");
    assert_eq!(suites.failures as usize, failed, "{junit}");
    assert_eq!(suites.errors, 0, "{junit}");

    // XML-RPC results: a case without log lines has them empty, not "None".
    let yaml = match crate::xmlrpc::rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "results.get_testjob_results_yaml",
        &[lavabox::api::xmlrpc::codec::Value::Int(id)],
    )
    .await
    {
        Ok(lavabox::api::xmlrpc::codec::Value::String(s)) => s,
        other => panic!("results: {other:?}"),
    };
    let rows: Vec<serde_json::Value> = serde_norway::from_str(&yaml).expect("YAML results");
    let job_case = rows
        .iter()
        .find(|r| r["suite"] == "lava" && r["name"] == "job")
        .expect("lava/job");
    assert_eq!(job_case["log_start_line"], "", "{yaml}");
    assert_eq!(job_case["log_end_line"], "", "{yaml}");

    // The plain log: the job's visibility, the file the job path wrote.
    let plain = format!("{base}/scheduler/job/{id}/log_file/plain");
    let (status, _, body) = get_raw(&plain, Some(&srv.alice_token)).await;
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(srv.app.config().job_log_path(JobId(id))).expect("log");
    assert_eq!(body, log);
    assert_eq!(get_raw(&plain, Some(&srv.bob_token)).await.0, 403);
    assert_eq!(get_raw(&plain, None).await.0, 403);
    let by_query = format!("{plain}?user=alice&token={}", srv.alice_token);
    assert_eq!(get_raw(&by_query, None).await.0, 200);
    assert_eq!(
        get_raw(&format!("{base}/scheduler/job/999/log_file/plain"), None)
            .await
            .0,
        404
    );
    srv.stop().await;
}
