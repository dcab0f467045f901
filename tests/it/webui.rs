//! The web UI, end to end: the real appliance (scheduler, dispatcher on a scripted board,
//! HTTP listener) and its pages seen by Debian's headless Chromium through chromedriver
//! (`common::webdriver`), and by a plain HTTP client for the visibility and CSRF rules.
//! Every job here is submitted through the UI or the API and run by the scheduler and
//! dispatcher; every log line the pages show was written by the job path.

use std::time::{Duration, Instant};

use lavabox::model::{DeviceHealth, JobHealth, JobId};
use lavabox::store::{NewDevice, NewDeviceType};
use serde_json::Value;

use crate::common::server::{
    Board, Options, SCRIPTED_PROMPT, Server, scripted_board_with, scripted_dictionary, scripted_job,
};
use crate::common::webdriver::{self, Browser};

const ADMIN_PW: &str = "admin-password-1";
const ALICE_PW: &str = "alice-password-1";
const BOB_PW: &str = "bob-password-1";

/// A scripted `qemu` device `qemu-01` (public) and `secret-01` restricted to group `lab`
/// (alice is a member), and passwords for admin, alice and bob.
fn options() -> Options {
    Options::scripted().seed(|s| {
        let mut qemu = NewDeviceType::named("qemu");
        qemu.disable_health_check = true;
        s.create_device_type(&qemu)?;
        let mut device = NewDevice::new("qemu-01", "qemu");
        device.dictionary = Some(scripted_dictionary("qemu.jinja2"));
        device.health = DeviceHealth::Good;
        s.create_device(&device)?;
        s.create_group("lab")?;
        s.add_group_member("lab", "alice")?;
        let mut secret = NewDevice::new("secret-01", "qemu");
        secret.dictionary = Some(scripted_dictionary("qemu.jinja2"));
        secret.health = DeviceHealth::Maintenance;
        secret.is_public = false;
        secret.owner_group = Some("lab".into());
        s.create_device(&secret)?;
        for (user, pw) in [("admin", ADMIN_PW), ("alice", ALICE_PW), ("bob", BOB_PW)] {
            s.set_password(user, &lavabox::web::password::hash(pw).expect("hash"))?;
        }
        Ok(())
    })
}

/// A browser-less visitor keeping its cookies, as a browser would for this one server.
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    fn new(srv: &Server) -> Visitor {
        Visitor {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: format!("http://{}", srv.addr),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().expect("cookie");
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').expect("cookie pair");
            self.cookies.retain(|(n, _)| n != k);
            if !attrs.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&resp);
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// The first SSE event of a stream (the streams send their current view at once).
    async fn first_event(&mut self, path: &str) -> (u16, String) {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        let mut text = String::new();
        while status == 200 && !text.contains("\n\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk())
                .await
                .expect("an event")
                .expect("chunk")
                .expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        (status, text)
    }

    async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("POST");
        self.keep(&resp);
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        (
            resp.status().as_u16(),
            location,
            resp.text().await.expect("body"),
        )
    }

    /// The CSRF token of the forms of page `path`.
    async fn token(&mut self, path: &str) -> String {
        let (status, html) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {html}");
        let at = html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a token")
            + 19;
        html[at..at + 64].to_owned()
    }

    async fn login(&mut self, user: &str, pw: &str) {
        let csrf = self.token("/accounts/login").await;
        let (status, location, body) = self
            .post(
                "/accounts/login",
                &[
                    ("csrf", &csrf),
                    ("username", user),
                    ("password", pw),
                    ("next", "/"),
                ],
                &[],
            )
            .await;
        assert_eq!(
            (status, location.as_str()),
            (303, "/"),
            "{body} {csrf} {:?}",
            self.cookies
        );
        assert!(self.cookies.iter().any(|(k, _)| k == "lavabox_session"));
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Submits `definition` through REST as `token`'s user; the job id.
async fn submit_rest(srv: &Server, token: &str, definition: &str) -> JobId {
    let body = serde_json::json!({ "definition": definition }).to_string();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v0.2/jobs/", srv.addr))
        .header("authorization", format!("Token {token}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("submit");
    let text = resp.text().await.expect("body");
    let v: Value = serde_json::from_str(&text).expect(&text);
    JobId(v["job_ids"][0].as_i64().unwrap_or_else(|| panic!("{text}")))
}

async fn set_health_rest(srv: &Server, device: &str, health: &str) {
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v0.2/devices/{device}/set_health/",
            srv.addr
        ))
        .header("authorization", format!("Token {}", srv.admin_token))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "health": health, "reason": "test" }).to_string())
        .send()
        .await
        .expect("set_health");
    assert_eq!(resp.status().as_u16(), 202);
}

/// A private job is invisible to anonymous visitors and other users on every page and
/// stream; forms without this browser's token, or sent from another origin, are refused.
#[tokio::test]
async fn private_jobs_stay_private_and_forms_need_their_token() {
    let mut srv = Server::start(options()).await;
    let private = scripted_job("qemu", "alice-private-job")
        .replace("visibility: public", "visibility: personal");
    let id = submit_rest(&srv, &srv.alice_token.clone(), &private).await;
    srv.finished(id, JobHealth::Complete).await;
    let pages = [
        format!("/scheduler/job/{id}"),
        format!("/scheduler/job/{id}/lines?start=0&count=50"),
        format!("/scheduler/job/{id}/search?q=smoke"),
        format!("/results/{id}"),
        format!("/results/{id}/0_smoke"),
    ];
    let mut anon = Visitor::new(&srv);
    let mut bob = Visitor::new(&srv);
    bob.login("bob", BOB_PW).await;
    let mut alice = Visitor::new(&srv);
    alice.login("alice", ALICE_PW).await;
    for v in [&mut anon, &mut bob] {
        for page in &pages {
            let (status, body) = v.get(page).await;
            assert_eq!(status, 404, "{page}: {body}");
            assert!(!body.contains("alice-private-job"), "{page}");
        }
        let (status, _) = v.first_event(&format!("/scheduler/job/{id}/live")).await;
        assert_eq!(status, 404);
        for page in [
            "/",
            "/scheduler/alljobs",
            "/scheduler/alljobs?submitter=alice",
        ] {
            let (status, body) = v.get(page).await;
            assert_eq!(status, 200);
            assert!(!body.contains("alice-private-job"), "{page}: {body}");
        }
        let (status, event) = v.first_event("/scheduler/live").await;
        assert_eq!(status, 200);
        assert!(
            event.contains("event: dashboard") && event.contains("qemu-01"),
            "{event}"
        );
        assert!(
            !event.contains("alice-private-job") && !event.contains("secret-01"),
            "{event}"
        );
        // The group's device is theirs only.
        let (status, _) = v.get("/scheduler/device/secret-01").await;
        assert_eq!(status, 404);
        assert!(!v.get("/scheduler/alldevices").await.1.contains("secret-01"));
    }
    // Alice sees her job everywhere, and the live stream says it is over.
    for page in &pages {
        let (status, body) = alice.get(page).await;
        assert_eq!(status, 200, "{page}: {body}");
    }
    assert!(
        alice
            .get(&format!("/scheduler/job/{id}"))
            .await
            .1
            .contains("alice-private-job")
    );
    assert!(
        alice
            .get("/scheduler/alljobs")
            .await
            .1
            .contains("alice-private-job")
    );
    assert!(
        alice
            .get("/scheduler/device/secret-01")
            .await
            .1
            .contains("secret-01")
    );
    let (_, event) = alice
        .first_event(&format!("/scheduler/job/{id}/live"))
        .await;
    assert!(
        event.contains("event: state") && event.contains("Complete"),
        "{event}"
    );
    let (_, lines) = alice
        .get(&format!("/scheduler/job/{id}/lines?start=0&count=2000"))
        .await;
    let lines: Value = serde_json::from_str(&lines).expect("json");
    assert!(lines["total"].as_u64().unwrap() > 5, "{lines}");
    assert!(
        lines["rows"].as_array().unwrap().iter().any(|r| r["msg"]
            .as_str()
            .unwrap()
            .contains("Linux version 6.1.0-scripted")),
        "{lines}"
    );

    // The UI's download links work from Alice's session alone (no `?user=&token=`): the
    // results exports, the plain log and REST reads; others get what anonymous gets.
    let downloads = [
        format!("/results/{id}/yaml"),
        format!("/results/{id}/csv"),
        format!("/results/{id}/0_smoke/yaml"),
        format!("/scheduler/job/{id}/log_file/plain"),
        format!("/api/v0.2/jobs/{id}/"),
        format!("/api/v0.2/jobs/{id}/junit/"),
    ];
    for path in &downloads {
        let (status, body) = alice.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert!(
        alice
            .get(&format!("/scheduler/job/{id}/log_file/plain"))
            .await
            .1
            .contains("Linux version 6.1.0-scripted")
    );
    for v in [&mut anon, &mut bob] {
        for path in &downloads {
            let (status, body) = v.get(path).await;
            assert!([403, 404].contains(&status), "{path}: {status} {body}");
            assert!(!body.contains("alice-private-job"), "{path}");
        }
    }

    // CSRF: a second job to cancel, queued behind a device in Maintenance.
    set_health_rest(&srv, "qemu-01", "MAINTENANCE").await;
    let queued = submit_rest(
        &srv,
        &srv.alice_token.clone(),
        &scripted_job("qemu", "to-cancel"),
    )
    .await;
    let path = format!("/scheduler/job/{queued}/cancel");
    let token = alice.token(&format!("/scheduler/job/{queued}")).await;
    let own_origin = format!("http://{}", srv.addr);
    let refused = [
        (vec![], vec![]),
        (vec![("csrf", "0".repeat(64))], vec![]),
        (vec![("csrf", bob.token("/").await)], vec![]),
        (
            vec![("csrf", token.clone())],
            vec![("origin", "http://evil.example")],
        ),
        (
            vec![("csrf", token.clone())],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ];
    for (form, headers) in refused {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = alice.post(&path, &form, &headers).await;
        assert_eq!(status, 403, "{form:?} {headers:?}: {body}");
    }
    let job = srv
        .app
        .store()
        .call(move |s| s.job(queued))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, lavabox::model::JobState::Submitted);
    // REST's `GET …/cancel/` is a link any page can make a browser follow: the session
    // cookie alone does not authorise it.
    let (status, body) = alice.get(&format!("/api/v0.2/jobs/{queued}/cancel/")).await;
    assert!([401, 403].contains(&status), "{status} {body}");
    let job = srv
        .app
        .store()
        .call(move |s| s.job(queued))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, lavabox::model::JobState::Submitted);
    // Bob may not cancel Alice's job even with his own valid token.
    let bob_token = bob.token("/scheduler/alljobs").await;
    let (status, _, _) = bob
        .post(&path, &[("csrf", &bob_token)], &[("origin", &own_origin)])
        .await;
    assert_eq!(status, 403);
    // A login form from another site is refused before any password is checked.
    let (status, _, _) = anon
        .post(
            "/accounts/login",
            &[("username", "alice"), ("password", ALICE_PW)],
            &[],
        )
        .await;
    assert_eq!(status, 403);
    let (status, location, _) = alice
        .post(&path, &[("csrf", &token)], &[("origin", &own_origin)])
        .await;
    assert_eq!(
        (status, location),
        (303, format!("/scheduler/job/{queued}"))
    );
    srv.finished(queued, JobHealth::Canceled).await;
    // Logging out ends the session on the server, not only the cookie.
    let session = alice
        .cookies
        .iter()
        .find(|(k, _)| k == "lavabox_session")
        .unwrap()
        .1
        .clone();
    let (status, _, _) = alice
        .post("/accounts/logout", &[("csrf", &token)], &[])
        .await;
    assert_eq!(status, 303);
    assert!(
        srv.app
            .store()
            .call(move |s| s.session(&session))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(alice.get(&format!("/scheduler/job/{id}")).await.0, 404);
    // A wrong password is refused with the form again.
    let csrf = anon.token("/accounts/login").await;
    let (status, _, body) = anon
        .post(
            "/accounts/login",
            &[("csrf", &csrf), ("username", "alice"), ("password", "nope")],
            &[],
        )
        .await;
    assert_eq!(status, 401);
    assert!(body.contains("Please enter a correct username and password."));
    srv.stop().await;
}

/// Logs in, puts the device in Maintenance, submits a job that waits for it, watches the log
/// arrive live once the device is back, sees the results; cancels another job; adds a device
/// from a dictionary; screenshots of the dashboard and the job page at two widths.
#[tokio::test]
async fn a_browser_session_runs_the_lab() {
    lab_or_skip!();
    if !webdriver::available() {
        panic!("chromium and chromium-driver are missing: run scripts/install-deps.sh");
    }
    let srv = Server::start(options()).await;
    let base = format!("http://{}", srv.addr);
    let b = Browser::start(1280, 900).await;
    b.goto(&format!("{base}/scheduler/job/1")).await;
    b.wait_text("h1", "Not found").await;
    b.goto(&format!("{base}/accounts/login?next=/scheduler/alldevices"))
        .await;
    b.type_into("#username", "admin").await;
    b.type_into("#password", ADMIN_PW).await;
    b.click("#signin").await;
    b.wait_text("#logout", "Sign out admin").await;
    assert!(b.current_url().await.ends_with("/scheduler/alldevices"));

    // Maintenance from the device page.
    b.goto(&format!("{base}/scheduler/device/qemu-01")).await;
    b.click("#maintenance").await;
    b.wait_text("#device-health", "Maintenance").await;

    // Submit, checked as typed: a mistake is shown at its line, then the job goes in.
    b.goto(&format!("{base}/scheduler/jobsubmit")).await;
    b.paste(
        "#definition",
        "device_type: qemu\njob_name: x\nactions: 7\n",
    )
    .await;
    let problem = b.wait_text("#problems li", "line").await;
    assert!(problem.contains("line"), "{problem}");
    b.paste("#definition", &scripted_job("qemu", "browser-job"))
        .await;
    b.wait_text("#valid", "Valid job definition").await;
    b.click("#submit").await;
    b.wait_text("#job-state", "Submitted").await;
    let job_url = b.current_url().await;
    assert!(job_url.ends_with("/scheduler/job/1"), "{job_url}");
    assert_eq!(b.text("#log-count").await, "0 lines");

    // The device comes back: the job runs and its log arrives in the open page.
    set_health_rest(&srv, "qemu-01", "GOOD").await;
    b.wait_text("#log .line", "Linux version 6.1.0-scripted")
        .await;
    b.wait_text("#log .line", "lava-test-runner").await;
    b.wait_text("#job-state", "Finished · Complete").await;
    b.wait_text("#results td", "ls").await;
    assert!(b.text("#results").await.contains("fail"));
    // The pipeline and details followed the job without a reload.
    b.wait_text(".pipeline", "lava-test-retry").await;
    assert!(b.text(".pipeline").await.contains("minimal-boot"));
    b.wait_text("#jobinfo dd a", "qemu-01").await;
    // Levels are filtered on the server: only the result lines are left.
    b.exec(
        "document.querySelectorAll('input[name=lvl]').forEach((c) => {
            if (c.value !== 'results') c.click();
         })",
        Value::Null,
    )
    .await;
    let only = b.wait_text("#log-count", " of ").await;
    assert!(only.starts_with("3 of ") || only.contains(" of "), "{only}");
    b.wait_text("#log .line.lvl-results", "\"case\"").await;
    let shown = b
        .exec(
            "return [...document.querySelectorAll('#log .line')].map((l) => l.className)",
            Value::Null,
        )
        .await;
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.as_str().unwrap().contains("lvl-results")),
        "{shown}"
    );
    // Folding the test action hides its lines under its start line, on the server.
    b.exec(
        "document.querySelectorAll('input[name=lvl]').forEach((c) => { if (!c.checked) c.click(); })",
        Value::Null,
    )
    .await;
    let all = b.text("#log-count").await;
    assert!(!all.contains(" of "), "{all}");
    b.wait_text("#log .line", "Linux version").await;
    b.click("button.fold[aria-label$='lava-test-retry']").await;
    let folded = b.wait_text("#log-count", " of ").await;
    assert!(folded.ends_with(&format!(" of {all}")), "{folded} / {all}");
    b.wait_text("#log .line", "end: 2 lava-test-retry").await;
    assert!(!b.text("#log").await.contains("LAVA_SIGNAL_ENDRUN"));
    b.click("button.fold[aria-label$='lava-test-retry']").await;
    assert_eq!(b.text("#log-count").await, all);
    b.wait_text("#log .line", "LAVA_SIGNAL_ENDRUN").await;
    // A message's own line breaks stay in its one row.
    let heights = b
        .exec(
            "return [...document.querySelectorAll('#log .line')].map((l) => l.getBoundingClientRect().height)",
            Value::Null,
        )
        .await;
    assert!(
        heights
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h.as_f64() == Some(18.0)),
        "{heights}"
    );
    let shot = webdriver::screenshot_dir();
    b.exec(
        "document.getElementById('h-results').scrollIntoView()",
        Value::Null,
    )
    .await;
    b.screenshot(&shot.join("job-desktop.png")).await;
    b.resize(390, 844).await;
    b.goto(&job_url).await;
    b.wait_text("#log .line", "Linux version").await;
    b.exec(
        "document.getElementById('h-log').scrollIntoView()",
        Value::Null,
    )
    .await;
    b.screenshot(&shot.join("job-phone.png")).await;
    b.resize(1280, 900).await;

    // Results page with its exports.
    b.goto(&format!("{base}/results/1")).await;
    b.wait_text("td a", "0_smoke").await;
    assert!(b.text(".cases").await.contains("ls"));
    assert!(
        b.exec(
            "return !!document.querySelector('a[href=\"/results/1/csv\"]')",
            Value::Null
        )
        .await
        .as_bool()
        .unwrap()
    );

    // Cancel another job, queued behind Maintenance.
    set_health_rest(&srv, "qemu-01", "MAINTENANCE").await;
    b.goto(&format!("{base}/scheduler/jobsubmit")).await;
    b.paste("#definition", &scripted_job("qemu", "to-cancel"))
        .await;
    b.wait_text("#valid", "Valid").await;
    b.click("#submit").await;
    b.wait_text("#job-state", "Submitted").await;
    b.click("#cancel").await;
    b.wait_text("#job-state", "Canceled").await;

    // Add a device from a dictionary.
    b.goto(&format!("{base}/scheduler/devices/add")).await;
    b.type_into("#hostname", "web-added-01").await;
    b.paste(
        "#dictionary",
        "{% extends 'qemu.jinja2' %}\n{% set connection_command = 'telnet localhost 7001' %}\n",
    )
    .await;
    b.click("#create").await;
    b.wait_text("h1", "web-added-01").await;
    assert!(
        b.text("#dictionary")
            .await
            .contains("telnet localhost 7001")
    );
    // A dictionary that does not render is refused with the reason.
    b.goto(&format!("{base}/scheduler/devices/add")).await;
    b.type_into("#hostname", "web-bad-01").await;
    b.paste("#dictionary", "{% extends 'no-such-type.jinja2' %}\n")
        .await;
    b.click("#create").await;
    b.wait_text("#add-error", "Device dictionary invalid").await;

    // The dashboard lists it, live: a change elsewhere shows without a reload.
    b.goto(&format!("{base}/")).await;
    b.wait_text("#dashboard tr[data-device='web-added-01']", "web-added-01")
        .await;
    set_health_rest(&srv, "qemu-01", "GOOD").await;
    b.wait_text("#dashboard tr[data-device='qemu-01']", "Good")
        .await;
    b.screenshot(&shot.join("dashboard-desktop.png")).await;
    b.resize(390, 844).await;
    b.goto(&format!("{base}/")).await;
    b.wait_text("#dashboard", "qemu-01").await;
    b.screenshot(&shot.join("dashboard-phone.png")).await;
    b.quit().await;
    for name in [
        "dashboard-desktop",
        "dashboard-phone",
        "job-desktop",
        "job-phone",
    ] {
        assert!(shot.join(format!("{name}.png")).metadata().unwrap().len() > 1000);
    }
    srv.stop().await;
}

/// The number of lines the big job's test prints.
const MILLION: usize = 1_000_000;

/// A job whose test prints a million lines: its page opens at once, the last line is
/// reachable, and a search finds a line near the end.
#[tokio::test]
async fn a_million_line_log_opens_at_once() {
    lab_or_skip!();
    if !webdriver::available() {
        panic!("chromium and chromium-driver are missing: run scripts/install-deps.sh");
    }
    let mut run = String::with_capacity(MILLION * 40);
    run.push_str("<LAVA_SIGNAL_STARTRUN 0_big 1_big>\n");
    for i in 0..MILLION {
        run.push_str(&format!("big test output line {i:07}\n"));
    }
    run.push_str("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=printed RESULT=pass>\n<LAVA_SIGNAL_ENDRUN 0_big 1_big>\n<LAVA_TEST_RUNNER EXIT>\n");
    let mut options = options();
    options.board = Board::Scripted(scripted_board_with(&[(1, &run)]));
    let _ = SCRIPTED_PROMPT;
    let mut srv = Server::start(options).await;
    let started = Instant::now();
    let id = submit_rest(
        &srv,
        &srv.admin_token.clone(),
        &scripted_job("qemu", "million"),
    )
    .await;
    srv.finished(id, JobHealth::Complete).await;
    eprintln!("million-line job ran in {:?}", started.elapsed());
    let mut admin = Visitor::new(&srv);
    admin.login("admin", ADMIN_PW).await;
    for round in ["cold", "warm"] {
        let t = Instant::now();
        let (status, _) = admin.get(&format!("/scheduler/job/{id}")).await;
        assert_eq!(status, 200);
        eprintln!("million-line job page ({round} index): {:?}", t.elapsed());
    }
    let t = Instant::now();
    let (_, body) = admin
        .get(&format!("/scheduler/job/{id}/lines?start=0&count=500"))
        .await;
    eprintln!(
        "first 500 lines: {:?} {}",
        t.elapsed(),
        &body[..200.min(body.len())]
    );
    let b = Browser::start(1280, 900).await;
    let base = format!("http://{}", srv.addr);
    b.goto(&format!("{base}/accounts/login?next=/scheduler/job/{id}"))
        .await;
    b.type_into("#username", "admin").await;
    b.type_into("#password", ADMIN_PW).await;
    let opened = Instant::now();
    b.click("#signin").await;
    b.wait_text("#log .line", "lavabox dispatcher: job").await;
    eprintln!(
        "login and first screen of the million-line job page: {:?}",
        opened.elapsed()
    );
    let count = b.text("#log-count").await;
    let lines: u64 = count.split_whitespace().next().unwrap().parse().unwrap();
    assert!(lines > MILLION as u64, "{count}");
    // The last line, by number.
    b.type_into("#goto-line", &lines.to_string()).await;
    b.click("#log-goto button").await;
    b.wait_text(&format!("#L{lines}"), &lines.to_string()).await;
    let near_end = format!("big test output line {:07}", MILLION - 3);
    b.type_into("#search-q", &near_end).await;
    b.click("#log-search button").await;
    let hit = b.wait_text("#search-results li", &near_end).await;
    let n: u64 = hit.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n > lines - 100, "{hit}");
    b.click("#search-results a").await;
    b.wait_text(&format!("#L{n} .msg"), &near_end).await;
    // Only the lines on screen are in the page.
    let rows = b
        .exec(
            "return document.querySelectorAll('#log .line').length",
            Value::Null,
        )
        .await;
    assert!(rows.as_u64().unwrap() < 200, "{rows}");
    b.quit().await;
    srv.stop().await;
}
