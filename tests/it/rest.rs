//! REST API v0.2 and `/results/` exports over a real socket: pagination, filters, JSON
//! shapes, export bytes, visibility on every endpoint, malformed input.

use std::net::SocketAddr;

use lavabox::api::xmlrpc::codec::Value as Rpc;
use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::model::{DeviceHealth, JobHealth, JobId};
use lavabox::store::{DeviceUpdate, NewDevice, NewDeviceType};
use serde_json::Value;

use crate::common::server::{Board, Options, Server, scripted_board_with, scripted_job};
use crate::xmlrpc::rpc;

/// A running appliance with seeded users, a device and jobs.
pub(crate) struct Lab {
    srv: Server,
    addr: SocketAddr,
    client: reqwest::Client,
    pub(crate) alice: String,
    pub(crate) bob: String,
    pub(crate) admin: String,
    /// Public jobs, oldest first.
    pub(crate) public: Vec<JobId>,
    /// Alice's personal job, with test cases.
    private: JobId,
    /// The public job the scheduler ran (`public[1]`), with the results its run reported.
    results: JobId,
}

impl Lab {
    /// The temporary directory (`data/` inside).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.srv.dir()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(token) = token {
            req = req.header("Authorization", format!("Token {token}"));
        }
        req.send().await.expect("request")
    }

    pub(crate) async fn json(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let resp = self.get(path, token).await;
        let status = resp.status().as_u16();
        let body = body_json(resp).await;
        (status, body)
    }

    pub(crate) async fn text(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let resp = self.get(path, token).await;
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("text body"))
    }
}

async fn body_json(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// The appliance over data directory `data`, with the default configuration.
pub(crate) async fn build_app(data: &std::path::Path) -> App {
    // reqwest (in the app and the tests) needs the process's TLS provider chosen.
    lavabox::tls::install_tls_provider();
    let mut config = Config::from_raw(RawConfig::default(), None).expect("config");
    config.apply(&Overrides {
        data_dir: Some(data.to_owned()),
        listen: None,
    });
    App::build(config).await.expect("app")
}

/// Serves `app`'s API on a free local port until the test ends; returns the address.
pub(crate) async fn serve(app: App) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(lavabox::api::serve(listener, app, std::future::pending()));
    addr
}

/// Alice's personal job, run by the whole appliance on a scripted board (its log, its case
/// `0_smoke`/`ls` and its end come from the job path).
fn personal_job() -> String {
    scripted_job("qemu", "secret job").replace("visibility: public", "visibility: personal")
}

/// The test run the board plays for the results job: two definitions, a `lava-test-case
/// --shell` case (its log lines bracketed by STARTTC/ENDTC), a measurement in a test set, a
/// skip.
const RESULTS_RUN: &str = "<LAVA_SIGNAL_STARTRUN 0_smoke 3_1.1>\n\
     <LAVA_SIGNAL_STARTTC boot-ok>\n\
     booted fine\n\
     <LAVA_SIGNAL_ENDTC boot-ok>\n\
     <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=boot-ok RESULT=pass>\n\
     <LAVA_SIGNAL_TESTSET START net>\n\
     <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=ping RESULT=fail UNITS=ms MEASUREMENT=12.5>\n\
     <LAVA_SIGNAL_TESTSET STOP>\n\
     <LAVA_SIGNAL_ENDRUN 0_smoke 3_1.1>\n\
     <LAVA_SIGNAL_STARTRUN 1_more 3_1.2>\n\
     <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=skipped RESULT=skip>\n\
     <LAVA_SIGNAL_ENDRUN 1_more 3_1.2>\n\
     <LAVA_TEST_RUNNER EXIT>\n";

/// Public job `i` (`job <i>`, alice's when even, bob's when odd), medium priority.
fn public_job(i: usize) -> String {
    scripted_job("qemu", &format!("job {i}")).replace("priority: high", "priority: medium")
}

/// The results job (public job 1): no job metadata, a second test definition `more`.
fn results_job() -> String {
    format!(
        "{}    - from: inline
      name: more
      path: inline/more.yaml
      repository:
        metadata: {{format: Lava-Test Test Definition 1.0, name: more}}
        run: {{steps: ['true']}}
",
        public_job(1).replace("metadata:\n  build: '42'\n", "")
    )
}

/// Submits `definition` over XML-RPC as `user` (with `token`).
async fn submit_as(srv: &Server, user: &str, token: &str, definition: String) -> JobId {
    match rpc(
        srv.addr,
        Some((user, token)),
        "scheduler.jobs.submit",
        &[Rpc::str(definition)],
    )
    .await
    {
        Ok(Rpc::Int(id)) => JobId(id),
        other => panic!("submit: {other:?}"),
    }
}

/// `scheduler.devices.update` of `qemu01` as the superuser: its owning user, public flag
/// and health (`None` leaves one as it is).
async fn update_qemu01(
    srv: &Server,
    user: Option<&str>,
    public: Option<bool>,
    health: Option<&str>,
) {
    let params = [
        Rpc::str("qemu01"),
        Rpc::Nil,
        user.map_or(Rpc::Nil, Rpc::str),
        Rpc::Nil,
        public.map_or(Rpc::Nil, Rpc::Bool),
        health.map_or(Rpc::Nil, Rpc::str),
    ];
    let answer = rpc(
        srv.addr,
        Some(("admin", &srv.admin_token)),
        "scheduler.devices.update",
        &params,
    )
    .await;
    assert_eq!(answer, Ok(Rpc::Nil), "scheduler.devices.update {params:?}");
}

/// Every job comes through `scheduler.jobs.submit`; results and ends come from the scheduler
/// running them on the scripted board:
/// 1. alice's personal job runs and ends Complete;
/// 2. with `qemu01` in Maintenance, alice submits public job 0; the device is then
///    restricted to bob, bob submits public job 1 (the results job) and the device goes
///    Good: the scheduler may give it to bob's job only, which runs and ends Complete,
///    while alice's job 0 stays queued;
/// 3. the appliance restarts serving the API alone (no scheduler), `qemu01` is public
///    again, and jobs 2–6 are submitted and stay queued.
pub(crate) async fn start() -> Lab {
    let mut options = Options::scripted().seed(|s| {
        let mut qemu = NewDeviceType::named("qemu");
        qemu.disable_health_check = true;
        s.create_device_type(&qemu)?;
        let mut device = NewDevice::new("qemu01", "qemu");
        device.dictionary = Some(crate::common::server::scripted_dictionary("qemu.jinja2"));
        device.health = DeviceHealth::Good;
        s.create_device(&device)?;
        Ok(())
    });
    options.instance = "lavabox";
    // Job ids in a fresh data directory: 1 the personal job, 2 and 3 public jobs 0 and 1.
    options.board = Board::Scripted(scripted_board_with(&[(3, RESULTS_RUN)]));
    let mut srv = Server::start(options).await;
    let alice = srv.alice_token.clone();
    let bob = srv.bob_token.clone();
    let private = submit_as(&srv, "alice", &alice, personal_job()).await;
    srv.finished(private, JobHealth::Complete).await;
    update_qemu01(&srv, None, None, Some("MAINTENANCE")).await;
    let mut public = vec![submit_as(&srv, "alice", &alice, public_job(0)).await];
    update_qemu01(&srv, Some("bob"), Some(false), None).await;
    let results = submit_as(&srv, "bob", &bob, results_job()).await;
    assert_eq!(
        (public[0], results),
        (JobId(2), JobId(3)),
        "the board plays the results run for job 3"
    );
    public.push(results);
    update_qemu01(&srv, None, None, Some("GOOD")).await;
    srv.finished(results, JobHealth::Complete).await;
    // The device as it was seeded: public, no owner.
    let mut options = Options::api_only().seed(|s| {
        let open = DeviceUpdate {
            is_public: Some(true),
            owner_user: Some(None),
            ..DeviceUpdate::default()
        };
        s.update_device("qemu01", &open)?;
        Ok(())
    });
    options.instance = "lavabox";
    let srv = srv.restart(options).await;
    for i in 2..7 {
        let (user, token) = if i % 2 == 0 {
            ("alice", &srv.alice_token)
        } else {
            ("bob", &srv.bob_token)
        };
        public.push(submit_as(&srv, user, token, public_job(i)).await);
    }
    Lab {
        addr: srv.addr,
        client: reqwest::Client::new(),
        alice: srv.alice_token.clone(),
        bob: srv.bob_token.clone(),
        admin: srv.admin_token.clone(),
        public,
        private,
        results,
        srv,
    }
}

fn ids(body: &Value) -> Vec<i64> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn jobs_paginate_like_drf() {
    let lab = start().await;
    let (status, body) = lab.json("/api/v0.2/jobs/?limit=3&offset=3", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 7, "anonymous sees the public jobs only");
    let want: Vec<i64> = lab.public[3..6].iter().map(|j| j.0).collect();
    assert_eq!(ids(&body), want);
    assert_eq!(
        body["next"],
        format!("http://{}/api/v0.2/jobs/?limit=3&offset=6", lab.addr)
    );
    assert_eq!(
        body["previous"],
        format!("http://{}/api/v0.2/jobs/?limit=3", lab.addr)
    );
    let (_, last) = lab.json("/api/v0.2/jobs/?limit=3&offset=6", None).await;
    assert_eq!(last["next"], Value::Null);
    let (_, first) = lab.json("/api/v0.2/jobs/", None).await;
    assert_eq!(first["previous"], Value::Null);
    assert_eq!(first["results"].as_array().map(Vec::len), Some(7));
    // The owner sees the personal job too, the superuser as well, bob not.
    assert_eq!(
        lab.json("/api/v0.2/jobs/", Some(&lab.alice)).await.1["count"],
        8
    );
    assert_eq!(
        lab.json("/api/v0.2/jobs/", Some(&lab.admin)).await.1["count"],
        8
    );
    assert_eq!(
        lab.json("/api/v0.2/jobs/", Some(&lab.bob)).await.1["count"],
        7
    );
    // Bad limit falls back to the page size, as DRF does.
    assert_eq!(
        lab.json("/api/v0.2/jobs/?limit=x", None).await.1["count"],
        7
    );
}

#[tokio::test]
async fn jobs_filter_and_order() {
    let lab = start().await;
    let p = &lab.public;
    let (_, body) = lab.json("/api/v0.2/jobs/?state=Finished", None).await;
    assert_eq!(ids(&body), vec![p[1].0]);
    let (_, body) = lab.json("/api/v0.2/jobs/?health=Complete", None).await;
    assert_eq!(ids(&body), vec![p[1].0]);
    let (_, body) = lab
        .json("/api/v0.2/jobs/?state__in=Running,Finished", None)
        .await;
    assert_eq!(ids(&body), vec![p[1].0]);
    let q = format!("/api/v0.2/jobs/?id__in={},{}&ordering=-id", p[2], p[4]);
    assert_eq!(ids(&lab.json(&q, None).await.1), vec![p[4].0, p[2].0]);
    let q = format!("/api/v0.2/jobs/?id__lt={}", p[2]);
    assert_eq!(ids(&lab.json(&q, None).await.1), vec![p[0].0, p[1].0]);
    let (_, body) = lab
        .json("/api/v0.2/jobs/?submitter__username=bob", None)
        .await;
    assert_eq!(body["count"], 3);
    let (_, body) = lab
        .json(
            "/api/v0.2/jobs/?requested_device_type__name=qemu&description__icontains=JOB%205",
            None,
        )
        .await;
    assert_eq!(ids(&body), vec![p[5].0]);
    let (_, body) = lab
        .json("/api/v0.2/jobs/?actual_device__hostname=qemu01", None)
        .await;
    assert_eq!(ids(&body), vec![p[1].0]);
    let (_, body) = lab
        .json("/api/v0.2/jobs/?end_time__isnull=false", None)
        .await;
    assert_eq!(ids(&body), vec![p[1].0]);
    let (_, body) = lab
        .json(
            "/api/v0.2/jobs/?submit_time__gt=2000-01-01T00:00:00Z&limit=1",
            None,
        )
        .await;
    assert_eq!(body["count"], 7);
    // Filters combine in SQL with the count and the page (the bench's query).
    let q = format!("/api/v0.2/jobs/?state=Submitted&id__gt={}&limit=2", p[2]);
    let (_, body) = lab.json(&q, None).await;
    assert_eq!(body["count"], 4);
    assert_eq!(ids(&body), vec![p[3].0, p[4].0]);
    // Text lookups: case-sensitive unless `i…`, `%`/`_` literal, Unicode folding.
    let (_, body) = lab
        .json("/api/v0.2/jobs/?description__startswith=Job", None)
        .await;
    assert_eq!(body["count"], 0);
    let (_, body) = lab
        .json(
            "/api/v0.2/jobs/?description__istartswith=JOB&description__endswith=6",
            None,
        )
        .await;
    assert_eq!(ids(&body), vec![p[6].0]);
    let (_, body) = lab
        .json("/api/v0.2/jobs/?description__contains=%25", None)
        .await;
    assert_eq!(body["count"], 0);
    // States are case-sensitive display names; a bad value is a 400 field error.
    let (status, body) = lab.json("/api/v0.2/jobs/?state=running", None).await;
    assert_eq!(status, 400);
    assert!(
        body["state"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("Select a valid choice."),
        "{body}"
    );
    let (status, body) = lab.json("/api/v0.2/jobs/?id__lt=abc", None).await;
    assert_eq!(status, 400);
    assert_eq!(body["id"][0], "Enter a number.");
    let (status, _) = lab
        .json("/api/v0.2/jobs/?submit_time__gt=yesterday", None)
        .await;
    assert_eq!(status, 400);
    // Unknown parameters are ignored.
    assert_eq!(
        lab.json("/api/v0.2/jobs/?bogus__lt=1", None).await.1["count"],
        7
    );
}

#[tokio::test]
async fn job_detail_shape() {
    let lab = start().await;
    let (status, job) = lab
        .json(&format!("/api/v0.2/jobs/{}/", lab.public[1]), None)
        .await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = job
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "id",
        "submitter",
        "viewing_groups",
        "description",
        "health_check",
        "requested_device_type",
        "tags",
        "actual_device",
        "submit_time",
        "start_time",
        "end_time",
        "state",
        "health",
        "priority",
        "definition",
        "original_definition",
        "multinode_definition",
        "failure_tags",
        "failure_comment",
    ];
    let mut have = keys.clone();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want);
    assert_eq!(job["submitter"], "bob");
    assert_eq!(job["state"], "Finished");
    assert_eq!(job["health"], "Complete");
    assert_eq!(job["actual_device"], "qemu01");
    assert_eq!(job["requested_device_type"], "qemu");
    assert_eq!(job["priority"], 50);
    let end = job["end_time"].as_str().expect("end_time");
    assert!(end.ends_with('Z') && end.contains('T'), "{end}");
}

/// The results job's suites as `(id, name)`, in the order the API lists them.
async fn suites(lab: &Lab) -> Vec<(i64, String)> {
    let job = lab.results;
    let (status, suites) = lab
        .json(&format!("/api/v0.2/jobs/{job}/suites/"), None)
        .await;
    assert_eq!(status, 200, "{suites}");
    suites["results"]
        .as_array()
        .expect("suites")
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().expect("suite id"),
                s["name"].as_str().expect("suite name").to_owned(),
            )
        })
        .collect()
}

/// The REST test cases of suite `suite` of the results job, in order.
async fn suite_cases(lab: &Lab, suite: i64) -> Vec<Value> {
    let job = lab.results;
    let (status, tests) = lab
        .json(&format!("/api/v0.2/jobs/{job}/suites/{suite}/tests/"), None)
        .await;
    assert_eq!(status, 200, "{tests}");
    tests["results"].as_array().expect("cases").clone()
}

#[tokio::test]
async fn suites_and_tests() {
    let lab = start().await;
    let job = lab.results;
    // The board's two test definitions, and the dispatcher's own `lava` suite.
    let suites = suites(&lab).await;
    let names: Vec<&str> = suites.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["lava", "0_smoke", "1_more"]);
    let (_, listed) = lab
        .json(&format!("/api/v0.2/jobs/{job}/suites/"), None)
        .await;
    assert_eq!(listed["count"], 3);
    let smoke = &listed["results"][1];
    assert_eq!(smoke["name"], "0_smoke");
    assert_eq!(smoke["job"], job.0);
    let suite_id = smoke["id"].as_i64().expect("suite id");
    assert_eq!(
        smoke["resource_uri"],
        format!("http://{}/api/v0.2/jobs/{job}/suites/{suite_id}/", lab.addr)
    );
    let (_, tests) = lab
        .json(&format!("/api/v0.2/jobs/{job}/tests/"), None)
        .await;
    let all = tests["results"].as_array().expect("cases");
    assert_eq!(tests["count"], all.len());
    // What the board reported, as it reported it.
    let board: Vec<(&str, &str)> = all
        .iter()
        .filter(|c| c["suite"].as_i64() != Some(suites[0].0))
        .map(|c| {
            (
                c["name"].as_str().expect("name"),
                c["result"].as_str().expect("result"),
            )
        })
        .collect();
    assert_eq!(
        board,
        [("boot-ok", "pass"), ("ping", "fail"), ("skipped", "skip")]
    );
    let ping = all.iter().find(|c| c["name"] == "ping").expect("ping case");
    assert_eq!(ping["result"], "fail");
    assert_eq!(ping["measurement"], "12.5000000000");
    assert_eq!(ping["unit"], "ms");
    // The dispatcher's cases: one per test definition run, and the job's end.
    for case in ["0_smoke", "1_more", "job"] {
        assert!(
            all.iter()
                .any(|c| c["name"] == case && c["suite"].as_i64() == Some(suites[0].0)),
            "lava/{case} in {tests}"
        );
    }
    let (_, fails) = lab
        .json(&format!("/api/v0.2/jobs/{job}/tests/?result=FAIL"), None)
        .await;
    assert_eq!(fails["count"], 1);
    let (_, smoke) = lab
        .json(
            &format!("/api/v0.2/jobs/{job}/suites/{suite_id}/tests/?limit=1"),
            None,
        )
        .await;
    assert_eq!(smoke["count"], 2);
    assert!(smoke["next"].as_str().is_some());
    let case_id = smoke["results"][0]["id"].as_i64().expect("case id");
    let (status, case) = lab
        .json(
            &format!("/api/v0.2/jobs/{job}/suites/{suite_id}/tests/{case_id}/"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(case["name"], "boot-ok");
    let (status, _) = lab
        .json(&format!("/api/v0.2/jobs/{job}/suites/999999/"), None)
        .await;
    assert_eq!(status, 404);
    // TAP numbers the cases suite by suite, in the order the suites are listed.
    let mut numbered = Vec::new();
    for (id, _) in &suites {
        for c in suite_cases(&lab, *id).await {
            numbered.push(c["name"].as_str().expect("name").to_owned());
        }
    }
    let number = |name: &str| 1 + numbered.iter().position(|n| n == name).expect("numbered");
    let (status, tap) = lab
        .text(&format!("/api/v0.2/jobs/{job}/tap13/"), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        tap.starts_with(&format!("TAP version 13\n1..{}\n", all.len())),
        "{tap}"
    );
    assert!(
        tap.contains(&format!("not ok {} ping\n", number("ping")))
            && tap.contains(&format!(
                "ok {} skipped # SKIP test skipped\n",
                number("skipped")
            )),
        "{tap}"
    );
    let (status, junit) = lab
        .text(
            &format!("/api/v0.2/jobs/{job}/junit/?classname_prefix=lab"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        junit.contains("classname=\"lab_0_smoke\"") && junit.contains("<failure"),
        "{junit}"
    );
    let (status, meta) = lab
        .json(&format!("/api/v0.2/jobs/{job}/metadata/"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(meta, serde_json::json!({ "metadata": [] }));
    let queued = lab.public[2];
    let (status, _) = lab
        .json(&format!("/api/v0.2/jobs/{queued}/logs/"), None)
        .await;
    assert_eq!(status, 404, "no log yet");
}

/// The export rows of the cases the board reported (suites `0_smoke` and `1_more`), built
/// from what the REST API says the job path stored (ids, timestamps, log lines).
async fn expected_rows(lab: &Lab) -> (Vec<[String; 15]>, Vec<String>) {
    let job = lab.results.to_string();
    let mut rows = Vec::new();
    // Each row's metadata as the YAML export nests it (block style, 4 spaces in).
    let mut metas = Vec::new();
    for (id, suite) in suites(lab).await {
        if suite == "lava" {
            continue;
        }
        for c in suite_cases(lab, id).await {
            // DRF `2023-01-10T10:00:00.123456Z` → Python `2023-01-10 10:00:00.123456+00:00`.
            let logged = c["logged"]
                .as_str()
                .expect("logged")
                .replace('T', " ")
                .replace('Z', "+00:00");
            let line = |key: &str| c[key].as_i64().map_or_else(String::new, |n| n.to_string());
            let case = c["id"].as_i64().expect("id").to_string();
            // Issue 20: every case's metadata is the YAML of its result dict; the export
            // writes it as Python's repr, and its level (if any) in its own column.
            let meta: serde_norway::Value =
                serde_norway::from_str(c["metadata"].as_str().expect("metadata text"))
                    .expect("YAML metadata");
            assert_eq!(meta["case"].as_str(), c["name"].as_str(), "{c}");
            let mut repr = String::new();
            lavabox::pyfmt::py_repr(&meta, &mut repr);
            metas.push(
                c["metadata"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .map(|l| format!("\n    {l}"))
                    .collect::<String>(),
            );
            let level = meta
                .get("level")
                .and_then(serde_norway::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            rows.push([
                job.clone(),
                suite.clone(),
                c["result"].as_str().expect("result").to_owned(),
                c["measurement"].as_str().unwrap_or("None").to_owned(),
                c["unit"].as_str().expect("unit").to_owned(),
                String::new(),
                String::new(),
                logged,
                level,
                repr,
                format!("/results/testcase/{case}"),
                c["name"].as_str().expect("name").to_owned(),
                case,
                line("start_log_line"),
                line("end_log_line"),
            ]);
        }
    }
    let cases: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[11].as_str(), r[2].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        cases,
        [
            ("0_smoke", "boot-ok", "pass", "None"),
            ("0_smoke", "ping", "fail", "12.5000000000"),
            ("1_more", "skipped", "skip", "None"),
        ]
    );
    // `lava-test-case --shell`: its lines run from STARTTC to the result, the others are one
    // line long.
    let lines = |r: &[String; 15]| -> (u64, u64) {
        (
            r[13].parse().expect("start line"),
            r[14].parse().expect("end line"),
        )
    };
    let (start, end) = lines(&rows[0]);
    assert!(start < end, "{rows:?}");
    for row in &rows[1..] {
        let (start, end) = lines(row);
        assert_eq!(start, end, "{row:?}");
    }
    (rows, metas)
}

fn csv(rows: &[[String; 15]], all: bool, header: bool) -> String {
    let quote = |f: &str| {
        if all || f.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.to_owned()
        }
    };
    let mut out = String::new();
    if header {
        let head = "job,suite,result,measurement,unit,duration,timeout,logged,level,metadata,url,name,id,log_start_line,log_end_line";
        out.push_str(&head.split(',').map(quote).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    for row in rows {
        out.push_str(&row.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The bytes of one exported case as PyYAML dumps it; `meta` follows `metadata:`.
fn yaml_item(r: &[String; 15], meta: &str) -> String {
    let quoted = |f: &str| {
        if f.is_empty() {
            "''".to_owned()
        } else {
            format!("'{f}'")
        }
    };
    let plain = |f: &str| {
        if f.is_empty() {
            "''".to_owned()
        } else {
            f.to_owned()
        }
    };
    format!(
        "- id: '{id}'\n  job: '{job}'\n  level: {level}\n  log_end_line: {end}\n  log_start_line: {start}\n  \
         logged: '{logged}'\n  measurement: {m}\n  metadata:{meta}\n  name: {name}\n  result: {result}\n  \
         suite: {suite}\n  unit: {unit}\n  url: {url}\n",
        id = r[12],
        job = r[0],
        level = plain(&r[8]),
        end = quoted(&r[14]),
        start = quoted(&r[13]),
        logged = r[7],
        m = if r[3] == "None" {
            "None".to_owned()
        } else {
            format!("'{}'", r[3])
        },
        name = r[11],
        result = r[2],
        suite = r[1],
        unit = plain(&r[4]),
        url = r[10],
    )
}

/// The body of a results export without its first (header) line.
fn without_header(body: &str) -> &str {
    body.split_once("\r\n").map_or("", |(_, rest)| rest)
}

#[tokio::test]
async fn results_exports_match_lava_bytes() {
    let lab = start().await;
    let (rows, metas) = expected_rows(&lab).await;
    let job = lab.results;
    let suites = suites(&lab).await;
    // The whole job's exports are its suites' exports one after the other.
    let (mut stream, mut quoted, mut yaml) = (String::new(), String::new(), String::new());
    for (_, suite) in &suites {
        let (status, body) = lab
            .text(&format!("/results/{job}/{suite}/stream/csv"), None)
            .await;
        assert_eq!(status, 200, "{suite}: {body}");
        stream.push_str(&body);
        let (_, body) = lab.text(&format!("/results/{job}/{suite}/csv"), None).await;
        quoted.push_str(without_header(&body));
        let (_, body) = lab
            .text(&format!("/results/{job}/{suite}/yaml"), None)
            .await;
        yaml.push_str(&body);
    }
    let resp = lab.get(&format!("/results/{job}/csv"), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv");
    assert_eq!(
        resp.headers()["content-disposition"],
        format!("attachment; filename=\"lava_{job}.csv\"").as_str()
    );
    let body = resp.text().await.expect("body");
    assert_eq!(body, format!("{}{stream}", csv(&[], false, true)));
    assert!(body.ends_with(&csv(&rows, false, false)), "{body}");
    let (_, tests) = lab
        .json(&format!("/api/v0.2/jobs/{job}/tests/"), None)
        .await;
    assert_eq!(
        body.lines().count(),
        1 + tests["count"].as_u64().expect("count") as usize,
        "one row per case: {body}"
    );
    let (status, body) = lab.text(&format!("/results/{job}/0_smoke/csv"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, csv(&rows[..2], true, true));
    let (_, body) = lab
        .text(
            &format!("/results/{job}/0_smoke/csv?limit=1&offset=1"),
            None,
        )
        .await;
    assert_eq!(body, csv(&rows[1..2], true, true));
    let (_, body) = lab
        .text(&format!("/results/{job}/0_smoke/stream/csv"), None)
        .await;
    assert_eq!(body, csv(&rows[..2], false, false));
    let (_, body) = lab.text(&format!("/api/v0.2/jobs/{job}/csv/"), None).await;
    assert_eq!(body, format!("{}{quoted}", csv(&[], true, true)));
    assert!(body.ends_with(&csv(&rows, true, false)), "{body}");
    let (_, count) = lab
        .text(&format!("/results/{job}/0_smoke/+testcase-count"), None)
        .await;
    assert_eq!(count, "2");

    let board: String = rows
        .iter()
        .zip(&metas)
        .map(|(r, m)| yaml_item(r, m))
        .collect();
    let resp = lab.get(&format!("/results/{job}/yaml"), None).await;
    assert_eq!(resp.headers()["content-type"], "text/yaml");
    let body = resp.text().await.expect("body");
    assert_eq!(body, yaml);
    assert!(body.ends_with(&board), "{body}");
    let (_, body) = lab.text(&format!("/api/v0.2/jobs/{job}/yaml/"), None).await;
    assert_eq!(body, yaml);
    let (_, body) = lab.text(&format!("/results/{job}/1_more/yaml"), None).await;
    assert_eq!(body, yaml_item(&rows[2], &metas[2]));
    let (_, body) = lab
        .text(&format!("/results/{job}/yaml_summary"), None)
        .await;
    assert!(
        body.starts_with("- id: '") && body.contains("  name: 0_smoke\n"),
        "{body}"
    );
    let (status, _) = lab
        .text(&format!("/results/{job}/no_such_suite/csv"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = lab.text("/results/999999/csv", None).await;
    assert_eq!(status, 404);
    // A job without cases still has a header.
    let (_, body) = lab
        .text(&format!("/results/{}/csv", lab.public[2]), None)
        .await;
    assert_eq!(body, csv(&[], false, true));
    let (_, body) = lab
        .text(&format!("/api/v0.2/jobs/{}/yaml/", lab.public[2]), None)
        .await;
    assert_eq!(body, "[]\n");
}

#[tokio::test]
async fn private_job_refused_everywhere() {
    let lab = start().await;
    let job = lab.private;
    // The suite's row id and the case id, as the owner sees them.
    let (_, suites) = lab
        .json(&format!("/api/v0.2/jobs/{job}/suites/"), Some(&lab.alice))
        .await;
    let suite = suites["results"][0]["id"].as_i64().expect("suite id");
    let (_, tests) = lab
        .json(&format!("/api/v0.2/jobs/{job}/tests/"), Some(&lab.alice))
        .await;
    let case = tests["results"][0]["id"].as_i64().expect("case id");
    let rest = [
        format!("/api/v0.2/jobs/{job}/"),
        format!("/api/v0.2/jobs/{job}/suites/{suite}/"),
        format!("/api/v0.2/jobs/{job}/suites/{suite}/tests/"),
        format!("/api/v0.2/jobs/{job}/suites/{suite}/tests/{case}/"),
        format!("/api/v0.2/jobs/{job}/suites/{suite}/csv/"),
        format!("/api/v0.2/jobs/{job}/suites/{suite}/yaml/"),
        format!("/api/v0.2/jobs/{job}/logs/"),
        format!("/api/v0.2/jobs/{job}/metadata/"),
        format!("/api/v0.2/jobs/{job}/tests/"),
        format!("/api/v0.2/jobs/{job}/suites/"),
        format!("/api/v0.2/jobs/{job}/csv/"),
        format!("/api/v0.2/jobs/{job}/yaml/"),
        format!("/api/v0.2/jobs/{job}/junit/"),
        format!("/api/v0.2/jobs/{job}/tap13/"),
        format!("/api/v0.2/jobs/{job}/cancel/"),
    ];
    for path in &rest {
        for token in [None, Some(lab.bob.as_str())] {
            let (status, body) = lab.json(path, token).await;
            assert_eq!(status, 404, "{path} {token:?}");
            assert_eq!(body, serde_json::json!({ "detail": "Not found." }));
        }
        // Bob's credentials in the other forms every API accepts are refused the same way.
        let basic = lab
            .client
            .get(lab.url(path))
            .basic_auth("bob", Some(&lab.bob))
            .send()
            .await
            .expect("request");
        assert_eq!(basic.status(), 404, "{path} basic");
        let query = format!("{path}?user=bob&token={}", lab.bob);
        assert_eq!(lab.get(&query, None).await.status(), 404, "{query}");
        // The owner sees every one of them (cancel last: it changes the job).
        if !path.ends_with("/cancel/") {
            let (status, _) = lab.text(path, Some(&lab.alice)).await;
            assert_eq!(status, 200, "{path} as alice");
        }
    }
    let resubmit = lab
        .client
        .post(lab.url(&format!("/api/v0.2/jobs/{job}/resubmit/")))
        .header("Authorization", format!("Token {}", lab.bob))
        .send()
        .await
        .expect("request");
    assert_eq!(resubmit.status(), 404);
    let results = [
        format!("/results/{job}/csv"),
        format!("/results/{job}/yaml"),
        format!("/results/{job}/yaml_summary"),
        format!("/results/{job}/metadata"),
        format!("/results/{job}/0_smoke/csv"),
        format!("/results/{job}/0_smoke/stream/csv"),
        format!("/results/{job}/0_smoke/yaml"),
        format!("/results/{job}/0_smoke/+testcase-count"),
        format!("/results/testcase/{case}/yaml"),
    ];
    for path in &results {
        for token in [None, Some(lab.bob.as_str())] {
            let (status, body) = lab.json(path, token).await;
            assert_eq!(status, 403, "{path} {token:?}");
            assert!(body["detail"].is_string());
        }
        let bob = format!("{path}?user=bob&token={}", lab.bob);
        assert_eq!(lab.get(&bob, None).await.status(), 403, "{bob}");
        let wrong = format!("{path}?user=bob&token={}", lab.alice);
        assert_eq!(lab.get(&wrong, None).await.status(), 403, "{wrong}");
    }
    // The owner gets in by header or by query credentials, the superuser too.
    let (status, body) = lab
        .json(&format!("/api/v0.2/jobs/{job}/"), Some(&lab.alice))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["definition"], personal_job());
    let (status, _) = lab
        .text(&format!("/results/{job}/csv"), Some(&lab.admin))
        .await;
    assert_eq!(status, 200);
    let (status, body) = lab
        .text(
            &format!("/results/{job}/csv?user=alice&token={}", lab.alice),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains(",ls,"), "{body}");
    let resp = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(lab.url(&format!("/results/{job}/csv")))
        .output()
        .await;
    if let Ok(out) = resp {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    }
}

#[tokio::test]
async fn cancel_permissions() {
    let lab = start().await;
    let job = lab.public[2];
    let (status, body) = lab
        .json(&format!("/api/v0.2/jobs/{job}/cancel/"), None)
        .await;
    assert_eq!(
        (status, &body["detail"]),
        (
            403,
            &Value::from("You do not have permission to perform this action.")
        )
    );
    let (status, _) = lab
        .json(&format!("/api/v0.2/jobs/{job}/cancel/"), Some(&lab.bob))
        .await;
    assert_eq!(status, 403);
    let (status, body) = lab
        .json(&format!("/api/v0.2/jobs/{job}/cancel/"), Some(&lab.alice))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Job cancel signal sent.");
    let (_, job_body) = lab.json(&format!("/api/v0.2/jobs/{job}/"), None).await;
    assert_eq!(job_body["state"], "Finished");
    assert_eq!(job_body["health"], "Canceled");
    // Already finished: a silent no-op, even for others.
    let (status, _) = lab
        .json(&format!("/api/v0.2/jobs/{job}/cancel/"), Some(&lab.bob))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn malformed_input_is_4xx_json() {
    let lab = start().await;
    for (path, status) in [
        ("/api/v0.2/jobs/abc/", 404),
        ("/api/v0.2/jobs/99999999999999999999999/", 404),
        ("/api/v0.2/jobs/1/suites/x/", 404),
        ("/api/v0.2/nothing/", 404),
        ("/api/v0.2/jobs/?offset=-1&limit=-5", 200),
        ("/api/v0.2/jobs/?priority__gte=high", 400),
        ("/api/v0.2/devices/?state=idle", 400),
        ("/results/abc/csv", 404),
    ] {
        let (got, body) = lab.json(path, None).await;
        assert_eq!(got, status, "{path}: {body}");
    }
    let (status, body) = lab.json("/api/v0.2/jobs/", Some("nonsense")).await;
    assert_eq!(status, 401);
    assert_eq!(body["detail"], "Invalid token.");
    let resp = lab
        .client
        .get(lab.url("/api/v0.2/jobs/"))
        .header("Authorization", "Token")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let validate = lab.url("/api/v0.2/jobs/validate/");
    let resp = lab.client.post(&validate).send().await.expect("request");
    assert_eq!(resp.status(), 400);
    let body: Value = body_json(resp).await;
    assert_eq!(body["definition"], "Test job definition is required.");
    let resp = lab
        .client
        .post(&validate)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    assert!(body_json(resp).await["detail"].is_string());
    let resp = lab
        .client
        .post(&validate)
        .header("Content-Type", "application/json")
        .body(r#"{"definition": "job_name: x\n"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let msg = body_json(resp).await["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(msg.starts_with("Job invalid: "), "{msg}");
    let big = vec![b'a'; 3 * 1024 * 1024];
    let resp = lab
        .client
        .post(&validate)
        .body(big)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn devices_types_workers_system() {
    let lab = start().await;
    let (status, devices) = lab.json("/api/v0.2/devices/", None).await;
    assert_eq!(status, 200);
    assert_eq!(devices["count"], 1);
    let dev = &devices["results"][0];
    assert_eq!(dev["hostname"], "qemu01");
    assert_eq!(dev["device_type"], "qemu");
    assert_eq!(dev["state"], "Idle");
    assert_eq!(dev["last_health_report_job"], Value::Null);
    assert_eq!(
        lab.json("/api/v0.2/devices/?health=good", None).await.1["count"],
        1
    );
    assert_eq!(
        lab.json("/api/v0.2/devices/?health=BAD", None).await.1["count"],
        0
    );
    assert_eq!(lab.json("/api/v0.2/devices/qemu01/", None).await.0, 200);
    assert_eq!(lab.json("/api/v0.2/devices/nope/", None).await.0, 404);
    let (status, types) = lab.json("/api/v0.2/devicetypes/", None).await;
    assert_eq!(status, 200);
    assert_eq!(types["results"][0]["name"], "qemu");
    assert_eq!(types["results"][0]["health_denominator"], "hours");
    let (_, workers) = lab.json("/api/v0.2/workers/", None).await;
    assert_eq!(workers["count"], 1);
    // The store's worker row: the appliance that ran the private job marked it Offline when
    // it stopped, and this lab serves the API alone.
    assert_eq!(workers["results"][0]["hostname"], "lavabox");
    assert_eq!(workers["results"][0]["state"], "Offline");
    assert_eq!(
        lab.json("/api/v0.2/system/version/", None).await.1["version"],
        "2023.01"
    );
    assert_eq!(
        lab.json("/api/v0.2/system/whoami/", None).await.1["user"],
        ""
    );
    assert_eq!(
        lab.json("/api/v0.2/system/whoami/", Some(&lab.alice))
            .await
            .1["user"],
        "alice"
    );
    let (_, config) = lab.json("/api/v0.2/system/master_config/", None).await;
    assert!(
        config["EVENT_SOCKET"]
            .as_str()
            .unwrap_or("")
            .starts_with("tcp://")
    );
    assert_eq!(
        lab.json("/api/v0.1/system/version/", None).await.1["version"],
        "2023.01"
    );
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Token {}", lab.alice)])
        .arg(lab.url("/api/v0.2/system/whoami/"))
        .output()
        .await;
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"user":"alice"}"#);
    }
}

#[tokio::test]
async fn submit_resubmit_over_rest() {
    let lab = start().await;
    let jobs = lab.url("/api/v0.2/jobs/");
    let body = serde_json::json!({ "definition": crate::xmlrpc::QEMU_JOB }).to_string();
    let resp = lab
        .client
        .post(&jobs)
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401, "anonymous submit");
    let resp = lab
        .client
        .post(&jobs)
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Token {}", lab.alice))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201);
    let created = body_json(resp).await;
    assert_eq!(created["message"], "job(s) successfully submitted");
    let id = created["job_ids"][0].as_i64().expect("job id");
    let (status, job) = lab.json(&format!("/api/v0.2/jobs/{id}/"), None).await;
    assert_eq!(status, 200);
    assert_eq!(job["state"], "Submitted");
    assert_eq!(job["submitter"], "alice");
    let resp = lab
        .client
        .post(lab.url(&format!("/api/v0.2/jobs/{id}/resubmit/")))
        .header("Authorization", format!("Token {}", lab.alice))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201);
    let again = body_json(resp).await;
    assert!(again["job_ids"][0].as_i64().expect("id") > id);
    let resp = lab
        .client
        .post(&jobs)
        .header("Authorization", format!("Token {}", lab.alice))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("definition=job_name%3A+x%0A")
        .send()
        .await;
    // Form bodies are accepted as DRF accepts them; a bad definition is a 400 message.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 400);
        assert!(body_json(resp).await["message"].is_string());
    }
}

/// `curl -s -X METHOD [-H Authorization] [-H json] [-d BODY] URL` → (status, body).
pub(crate) async fn curl(
    lab: &Lab,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    let mut args = vec!["-X", method];
    if let Some(body) = json {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    curl_args(lab, path, token, &args).await
}

/// `curl -s [-H Authorization] ARGS... URL` → (status, body).
pub(crate) async fn curl_args(
    lab: &Lab,
    path: &str,
    token: Option<&str>,
    args: &[&str],
) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}"]);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Token {token}")]);
    }
    let out = cmd
        .args(args)
        .arg(lab.url(path))
        .output()
        .await
        .expect("running curl");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8 answer");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), body.to_owned())
}

pub(crate) fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

#[tokio::test]
async fn admin_writes_over_curl() {
    let lab = start().await;
    let admin = Some(lab.admin.as_str());
    let bob = Some(lab.bob.as_str());
    // Anonymous writes are 401, other users' 403, on every write endpoint.
    let writes = [
        ("POST", "/api/v0.2/devices/"),
        ("PATCH", "/api/v0.2/devices/qemu01/"),
        ("PUT", "/api/v0.2/devices/qemu01/"),
        ("DELETE", "/api/v0.2/devices/qemu01/"),
        ("POST", "/api/v0.2/devices/qemu01/dictionary/"),
        ("POST", "/api/v0.2/devicetypes/"),
        ("PATCH", "/api/v0.2/devicetypes/qemu/"),
        ("DELETE", "/api/v0.2/devicetypes/qemu/"),
        ("POST", "/api/v0.2/aliases/"),
        ("DELETE", "/api/v0.2/aliases/kvm/"),
        ("POST", "/api/v0.2/tags/"),
    ];
    for (method, path) in writes {
        let (status, body) = curl(&lab, method, path, None, Some("{}")).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(
            parse(&body)["detail"],
            "Authentication credentials were not provided."
        );
        let (status, body) = curl(&lab, method, path, bob, Some("{}")).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }

    // Every write below is the superuser's.
    let as_admin = async |method: &str, path: &str, json: Option<&str>| {
        curl(&lab, method, path, admin, json).await
    };

    // Device types: create, duplicate, update, read back.
    let (status, body) = as_admin(
        "POST",
        "/api/v0.2/devicetypes/",
        Some(r#"{"name": "bbb", "health_frequency": 12, "health_denominator": "jobs"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let dt = parse(&body);
    assert_eq!(
        (
            &dt["name"],
            &dt["health_frequency"],
            &dt["health_denominator"]
        ),
        (&Value::from("bbb"), &Value::from(12), &Value::from("jobs"))
    );
    let (status, body) =
        as_admin("POST", "/api/v0.2/devicetypes/", Some(r#"{"name": "bbb"}"#)).await;
    assert_eq!(status, 400, "{body}");
    assert!(parse(&body)["name"][0].is_string(), "{body}");
    let (status, body) = as_admin("POST", "/api/v0.2/devicetypes/", Some("{}")).await;
    assert_eq!(status, 400);
    assert_eq!(parse(&body)["name"][0], "This field is required.");
    let (status, body) = as_admin(
        "PATCH",
        "/api/v0.2/devicetypes/bbb/",
        Some(r#"{"description": "BeagleBone", "display": false}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["description"], "BeagleBone");
    assert_eq!(parse(&body)["display"], false);
    let (status, _) = as_admin("PATCH", "/api/v0.2/devicetypes/nope/", Some("{}")).await;
    assert_eq!(status, 404);

    // Aliases and tags.
    let (status, body) = as_admin(
        "POST",
        "/api/v0.2/aliases/",
        Some(r#"{"name": "beagle", "device_type": "bbb"}"#),
    )
    .await;
    assert_eq!(
        (status, parse(&body)["device_type"].clone()),
        (201, "bbb".into())
    );
    let (status, body) = lab
        .json("/api/v0.2/devicetypes/bbb/", Some(&lab.admin))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["aliases"], serde_json::json!(["beagle"]));
    let (status, _) = as_admin("DELETE", "/api/v0.2/aliases/beagle/", None).await;
    assert_eq!(status, 204);
    let (status, _) = lab.json("/api/v0.2/aliases/beagle/", None).await;
    assert_eq!(status, 404);
    let (status, body) = as_admin(
        "POST",
        "/api/v0.2/tags/",
        Some(r#"{"name": "usb", "description": "has USB"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let tag = parse(&body)["id"].as_i64().expect("tag id");
    let (_, body) = lab.json(&format!("/api/v0.2/tags/{tag}/"), None).await;
    assert_eq!(body["name"], "usb");

    // Devices: create (form body, as lavacli-style clients send), errors, update, delete.
    let (status, body) = curl_args(
        &lab,
        "/api/v0.2/devices/",
        admin,
        &[
            "-d",
            "hostname=bbb01",
            "-d",
            "device_type=bbb",
            "-d",
            "description=desk",
        ],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let device = parse(&body);
    assert_eq!(
        (
            &device["hostname"],
            &device["device_type"],
            &device["health"]
        ),
        (
            &Value::from("bbb01"),
            &Value::from("bbb"),
            &Value::from("Unknown")
        )
    );
    let (status, body) = as_admin(
        "POST",
        "/api/v0.2/devices/",
        Some(r#"{"hostname": "bbb01", "device_type": "bbb"}"#),
    )
    .await;
    assert_eq!(status, 400);
    assert!(parse(&body)["hostname"][0].is_string(), "{body}");
    let (status, body) = as_admin(
        "POST",
        "/api/v0.2/devices/",
        Some(r#"{"hostname": "x01", "device_type": "nope"}"#),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        parse(&body)["device_type"][0],
        "Object with name=nope does not exist."
    );
    let (status, body) = as_admin(
        "PATCH",
        "/api/v0.2/devices/bbb01/",
        Some(r#"{"health": "Maintenance", "description": null}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let device = parse(&body);
    assert_eq!(device["health"], "Maintenance");
    assert_eq!(device["description"], Value::Null);
    let (status, body) = as_admin(
        "PATCH",
        "/api/v0.2/devices/bbb01/",
        Some(r#"{"health": "sleepy"}"#),
    )
    .await;
    assert_eq!(status, 400);
    assert!(parse(&body)["health"][0].is_string(), "{body}");
    let (status, _) = as_admin("PATCH", "/api/v0.2/devices/nope/", Some("{}")).await;
    assert_eq!(status, 404);

    // Device dictionary: set, then read back; one that does not render is refused.
    let dict = r#"{"dictionary": "{% extends 'qemu.jinja2' %}\n{% set netdevice = 'user' %}\n"}"#;
    let (status, body) = as_admin("POST", "/api/v0.2/devices/bbb01/dictionary/", Some(dict)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse(&body)["message"],
        "device config successfully updated"
    );
    let (status, text) = lab
        .text("/api/v0.2/devices/bbb01/dictionary/", Some(&lab.admin))
        .await;
    assert_eq!(status, 200);
    assert!(text.contains("netdevice = 'user'"), "{text}");
    let bad = r#"{"dictionary": "{% extends 'no-such-type.jinja2' %}"}"#;
    let (status, body) = as_admin("POST", "/api/v0.2/devices/bbb01/dictionary/", Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        parse(&body)["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Device dictionary invalid: "),
        "{body}"
    );

    let (status, body) = as_admin("DELETE", "/api/v0.2/devices/bbb01/", None).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, _) = lab.json("/api/v0.2/devices/bbb01/", Some(&lab.admin)).await;
    assert_eq!(status, 404);
    let (status, _) = as_admin("DELETE", "/api/v0.2/devices/bbb01/", None).await;
    assert_eq!(status, 404);
    let (status, _) = as_admin("DELETE", "/api/v0.2/devicetypes/bbb/", None).await;
    assert_eq!(status, 204);
    let (status, _) = lab
        .json("/api/v0.2/devicetypes/bbb/", Some(&lab.admin))
        .await;
    assert_eq!(status, 404);
}
