//! Integration tests: job notifications against real peers on loopback.
//!
//! E-mail goes to an aiosmtpd sink (python3-aiosmtpd, Mailbox handler), IRC to a real ngircd,
//! callbacks to an axum server in the test. Waits are on the peers' output or the notifier's
//! outcome stream, with timeouts only as safety nets; readiness of a freshly started peer is
//! a connect retried until it succeeds.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use lavabox::config::SmtpConfig;
use lavabox::model::{DeviceHealth, ErrorType, JobId};
use lavabox::notify::{Channel, Outcome, Retry, Settings};
use lavabox::store::{NewDevice, NewDeviceType};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc};

use crate::common::server::{Options, Server, scripted_job};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Where a peer announces that it listens.
#[derive(Clone, Copy)]
enum Announces {
    OnStdout,
    OnStderr,
}

/// Starts a peer and waits for the line of its own output that says it listens (a line
/// containing `ready`); the rest of its output is drained so it never blocks on a full pipe.
async fn start_peer(mut cmd: Command, on: Announces, ready: &str) -> Child {
    let (out, err) = match on {
        Announces::OnStdout => (Stdio::piped(), Stdio::null()),
        Announces::OnStderr => (Stdio::null(), Stdio::piped()),
    };
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let stream: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match on {
        Announces::OnStdout => Box::new(child.stdout.take().expect("piped stdout")),
        Announces::OnStderr => Box::new(child.stderr.take().expect("piped stderr")),
    };
    let mut lines = BufReader::new(stream).lines();
    let seen = tokio::time::timeout(WAIT, async {
        let mut seen = String::new();
        while let Some(line) = lines.next_line().await.expect("peer output") {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(ready) {
                return Ok(seen);
            }
        }
        Err(seen)
    })
    .await
    .expect("peer listening in time");
    if let Err(seen) = seen {
        panic!("{cmd:?} ended without saying `{ready}`:\n{seen}");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

fn settings(smtp_port: Option<u16>) -> Settings {
    Settings {
        base_url: "http://lavabox.test".into(),
        smtp: smtp_port.map(|p| SmtpConfig {
            relay: format!("127.0.0.1:{p}"),
            from: "lavabox@example.com".into(),
        }),
        retry: Retry {
            attempts: 3,
            backoff: Duration::from_millis(50),
            // ngircd's flood penalty makes a whole IRC exchange take about a second.
            timeout: Duration::from_secs(3),
        },
    }
}

/// An aiosmtpd sink writing each mail into `dir/new`.
async fn smtp_sink(dir: &Path) -> (Child, u16) {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub)).expect("maildir");
    }
    let port = free_port();
    let mut cmd = Command::new("/usr/bin/python3");
    // `-d` logs "Server is listening on …" once the socket is bound.
    cmd.args(["-u", "-m", "aiosmtpd", "-n", "-d", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir);
    let child = start_peer(cmd, Announces::OnStderr, "Server is listening on").await;
    (child, port)
}

/// Undoes quoted-printable soft breaks and escapes, enough for ASCII bodies.
fn unquote(mail: &str) -> String {
    let joined = mail.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let mut chars = joined.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '=' {
            let hex: String = chars.clone().take(2).collect();
            if let Ok(b) = u8::from_str_radix(&hex, 16) {
                out.push(char::from(b));
                chars.next();
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Mails in the sink whose text mentions `needle`.
fn mails(dir: &Path, needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("new")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .map(|m| unquote(&m))
        .filter(|m| m.contains(needle))
        .collect()
}

/// Collects outcomes until `n` of them satisfy `pred`.
async fn outcomes(
    rx: &mut broadcast::Receiver<Arc<Outcome>>,
    n: usize,
    pred: impl Fn(&Outcome) -> bool,
) -> Vec<Arc<Outcome>> {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        while got.len() < n {
            let o = rx.recv().await.expect("outcome stream");
            if pred(&o) {
                got.push(o);
            }
        }
    })
    .await
    .expect("outcomes in time");
    got
}

/// The whole appliance (`common::server`) with a scripted board `qemu-01` and `settings`:
/// jobs submitted to it are run by the real scheduler and dispatcher, so their logs, results
/// and ends come from the job path.
async fn scripted_server(settings: Settings) -> Server {
    scripted_server_with(settings, Options::scripted()).await
}

/// The signal lines of a test run of definition `0_smoke` with these `(case, result)`s.
fn smoke_run(cases: &[(&str, &str)]) -> String {
    let mut run = "<LAVA_SIGNAL_STARTRUN 0_smoke 1_smoke>\n".to_owned();
    for (case, result) in cases {
        run.push_str(&format!(
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID={case} RESULT={result}>\n"
        ));
    }
    run.push_str("<LAVA_SIGNAL_ENDRUN 0_smoke 1_smoke>\n<LAVA_TEST_RUNNER EXIT>\n");
    run
}

/// [`scripted_server`] from `options` (another board, failing power commands).
async fn scripted_server_with(settings: Settings, options: Options) -> Server {
    let mut options = options.seed(|s| {
        let mut qemu = NewDeviceType::named("qemu");
        qemu.disable_health_check = true;
        s.create_device_type(&qemu)?;
        let mut device = NewDevice::new("qemu-01", "qemu");
        // A reset command, which only jobs asking for a reset run.
        device.dictionary = Some(format!(
            "{}{{% set hard_reset_command = 'scripted-reset' %}}\n",
            crate::common::server::scripted_dictionary("qemu.jinja2")
        ));
        device.health = DeviceHealth::Good;
        s.create_device(&device)?;
        Ok(())
    });
    options.notify = Some(settings);
    Server::start(options).await
}

/// Submits the scripted job with `notify` (a `notify:` block) as alice through XML-RPC.
async fn submit_scripted(srv: &Server, notify: &str) -> JobId {
    submit_named(srv, "notify test", notify).await
}

/// [`submit_scripted`] with the job named `job_name`.
async fn submit_named(srv: &Server, job_name: &str, notify: &str) -> JobId {
    submit_definition(srv, format!("{}{notify}", scripted_job("qemu", job_name))).await
}

/// Submits `definition` as alice through XML-RPC.
async fn submit_definition(srv: &Server, definition: String) -> JobId {
    match crate::xmlrpc::rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "scheduler.jobs.submit",
        &[lavabox::api::xmlrpc::codec::Value::str(definition)],
    )
    .await
    {
        Ok(lavabox::api::xmlrpc::codec::Value::Int(id)) => JobId(id),
        other => panic!("submit: {other:?}"),
    }
}

#[tokio::test]
async fn email_reaches_smtp_sink_with_status_and_results() {
    lab_or_skip!();
    let maildir = tempfile::tempdir().expect("maildir");
    let (_sink, port) = smtp_sink(maildir.path()).await;
    // Job 1's test run passes `boot` and fails `net`; a job asking for a reset finds the
    // board's reset command failing (an Infrastructure error).
    let board = crate::common::server::scripted_board_with(&[(
        1,
        "<LAVA_SIGNAL_STARTRUN 0_smoke 1_smoke>\n\
         <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=boot RESULT=pass>\n\
         <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=net RESULT=fail>\n\
         <LAVA_SIGNAL_ENDRUN 0_smoke 1_smoke>\n<LAVA_TEST_RUNNER EXIT>\n",
    )]);
    let mut options = Options::scripted();
    options.board = crate::common::server::Board::Scripted(board);
    options.failing_commands = vec!["scripted-reset".into()];
    let mut srv = scripted_server_with(settings(Some(port)), options).await;

    let verbose = "notify:\n  criteria: {status: finished}\n  verbosity: verbose\n  recipients:\n  \
         - to: {method: email, email: bob@example.com}\n  - to: {method: email, user: alice}\n";
    let id = submit_scripted(&srv, verbose).await;
    assert_eq!(id, JobId(1), "the board's script is job 1's");
    let got = outcomes(&mut srv.outcomes, 2, |o| o.job == id).await;
    for o in &got {
        assert!(matches!(o.channel, Channel::Email(_)), "{o:?}");
        assert_eq!(o.result, Ok(1), "{o:?}");
    }
    let subject = format!(
        "Subject: LAVA notification for Test Job {} notify test",
        id.0
    );
    let sent = mails(maildir.path(), &subject);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let bob = sent
        .iter()
        .find(|m| m.contains("bob@example.com"))
        .expect("bob's mail");
    assert!(bob.contains("Hello,"), "{bob}");
    assert!(bob.contains("is now Finished, health Complete"), "{bob}");
    assert!(
        bob.contains(&format!("http://lavabox.test/scheduler/job/{}", id.0)),
        "{bob}"
    );
    assert!(bob.contains("suite 0_smoke"), "{bob}");
    // Issue 20: the `lava` suite's cases come before and after the test's, one block still.
    assert_eq!(bob.matches("suite lava:").count(), 1, "{bob}");
    assert!(
        bob.contains("boot: passed") && bob.contains("net: FAILED"),
        "{bob}"
    );
    assert!(bob.contains("hostname:    qemu-01"), "{bob}");
    let alice = sent
        .iter()
        .find(|m| m.contains("alice@example.com"))
        .expect("alice's mail");
    assert!(alice.contains("Dear alice,"), "{alice}");

    // status-only: the status lines, no device or results.
    let quiet = "notify:\n  criteria: {status: incomplete}\n  verbosity: status-only\n  recipients:\n  \
         - to: {method: email, email: carol@example.com}\n";
    let definition = format!("{}{quiet}", scripted_job("qemu", "notify test"))
        .replace("reset: false", "reset: true");
    let id = submit_definition(&srv, definition).await;
    srv.finished(id, lavabox::model::JobHealth::Incomplete)
        .await;
    let failed = srv
        .app
        .store()
        .call(move |s| s.job(id))
        .await
        .expect("job")
        .expect("stored");
    assert_eq!(
        failed.error_type,
        Some(ErrorType::Infrastructure),
        "{failed:?}"
    );
    let comment = failed.failure_comment.unwrap_or_default();
    assert!(!comment.is_empty());
    outcomes(&mut srv.outcomes, 1, |o| o.job == id && o.result.is_ok()).await;
    let subject = format!("Subject: LAVA notification for Test Job {} ", id.0);
    let sent = mails(maildir.path(), &subject);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("health Incomplete"), "{}", sent[0]);
    assert!(
        !sent[0].contains("qemu-01") && !sent[0].contains(&comment),
        "{}",
        sent[0]
    );
}

#[tokio::test]
async fn dead_smtp_relay_is_retried_and_recorded() {
    let dead = free_port();
    let mut srv = scripted_server(settings(Some(dead))).await;
    let id = submit_scripted(
        &srv,
        "notify:\n  criteria: {status: complete}\n  recipients:\n  - to: {method: email, email: bob@example.com}\n",
    )
    .await;
    srv.finished(id, lavabox::model::JobHealth::Complete).await;
    let got = outcomes(&mut srv.outcomes, 1, |o| o.job == id).await;
    let failed = got[0].result.as_ref().expect_err("relay is dead");
    assert_eq!(failed.attempts, 3);
    // The log the dispatcher wrote, at the one path rule, with the outcome appended.
    let text = std::fs::read_to_string(srv.app.config().job_log_path(id)).expect("log");
    assert!(
        text.contains("\"lvl\": \"info\"")
            && text.contains("e-mail to bob@example.com failed after 3 attempt(s)"),
        "{text}"
    );
}

/// Registers on ngircd as `nick`, then returns the first PRIVMSG line addressed to it.
async fn irc_listener(port: u16, nick: &'static str, ready: mpsc::Sender<()>) -> String {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("irc");
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :test\r\n").as_bytes())
        .await
        .expect("register");
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await.expect("irc line") {
        if let Some(token) = line.strip_prefix("PING ") {
            write
                .write_all(format!("PONG {token}\r\n").as_bytes())
                .await
                .expect("pong");
        } else if line.split(' ').nth(1) == Some("001") {
            ready.send(()).await.expect("ready");
        } else if line.contains(&format!("PRIVMSG {nick} :")) {
            return line;
        }
    }
    panic!("IRC connection closed before a message arrived");
}

#[tokio::test]
async fn irc_message_reaches_ngircd() {
    lab_or_skip!();
    let conf_dir = tempfile::tempdir().expect("conf dir");
    let port = free_port();
    let conf = conf_dir.path().join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.lavabox.test\nInfo = test\nAdminInfo1 = lab\nAdminInfo2 = lab\n\
             AdminEMail = root@localhost\nListen = 127.0.0.1\nPorts = {port}\n\
             [Options]\nPAM = no\nIdent = no\nDNS = no\n"
        ),
    )
    .expect("conf");
    let mut cmd = Command::new("ngircd");
    cmd.arg("-n").arg("-f").arg(&conf);
    // ngircd logs "Now listening on …" per socket, then "Server … ready." once all are bound.
    let _ngircd = start_peer(cmd, Announces::OnStdout, "ready.").await;
    let (ready_tx, mut ready_rx) = mpsc::channel(1);
    let listener = tokio::spawn(irc_listener(port, "alice", ready_tx));
    tokio::time::timeout(WAIT, ready_rx.recv())
        .await
        .expect("listener registered");

    let mut srv = scripted_server(settings(None)).await;
    let notify = format!(
        "notify:\n  criteria: {{status: finished}}\n  recipients:\n  \
         - to: {{method: irc, handle: alice, server: \"127.0.0.1:{port}\"}}\n"
    );
    let id = submit_named(&srv, "events test", &notify).await;
    let line = tokio::time::timeout(WAIT, listener)
        .await
        .expect("message in time")
        .expect("listener");
    assert!(line.starts_with(":lava-bot"), "{line}");
    assert!(
        line.contains(&format!(
            "job {} (events test) by alice is Finished, health Complete",
            id.0
        )),
        "{line}"
    );
    let got = outcomes(&mut srv.outcomes, 1, |o| o.job == id).await;
    assert_eq!(got[0].result, Ok(1));
}

/// One request seen by the webhook server.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

async fn hook(
    State(tx): State<mpsc::UnboundedSender<Hit>>,
    UrlPath((kind, _rest)): UrlPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _ = tx.send(Hit {
        method,
        uri,
        headers,
        body,
    });
    match kind.as_str() {
        "fail" => StatusCode::INTERNAL_SERVER_ERROR,
        "hang" => std::future::pending().await,
        _ => StatusCode::OK,
    }
}

/// A webhook server on a free port: its base URL, and every request it sees. `/fail/...`
/// answers 500 and `/hang/...` never answers; anything else is 200.
async fn hook_server() -> (String, mpsc::UnboundedReceiver<Hit>) {
    let (tx, hits) = mpsc::unbounded_channel();
    let hooks = Router::new()
        .route("/{kind}/{*rest}", any(hook))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, hooks).await;
    });
    (base, hits)
}

fn form_field(body: &[u8], key: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| unquote(&v.replace('+', " ").replace('%', "=")))
    })
}

#[tokio::test]
async fn callbacks_deliver_every_dataset_and_failures_do_not_delay_others() {
    let (base, mut hits) = hook_server().await;
    let mut srv = scripted_server(settings(None)).await;

    let notify = format!(
        "notify:\n  criteria: {{status: finished}}\n  callbacks:\n\
           \x20\x20- {{url: \"{base}/get/{{ID}}/{{STATUS_STRING}}\", token: s3cret}}\n\
           \x20\x20- {{url: \"{base}/minimal/{{ID}}\", method: POST, token: s3cret, header: X-Token}}\n\
           \x20\x20- {{url: \"{base}/results/x\", method: POST, dataset: results, content-type: json, token: s3cret}}\n\
           \x20\x20- {{url: \"{base}/logs/x\", method: POST, dataset: logs, content-type: json}}\n\
           \x20\x20- {{url: \"{base}/all/x\", method: POST, dataset: all}}\n\
           \x20\x20- {{url: \"{base}/fail/x\", method: POST}}\n\
           \x20\x20- {{url: \"{base}/hang/x\"}}\n"
    );
    let def = format!("{}{notify}", scripted_job("qemu", "notify test"));
    let parsed = lavabox::jobdef::parse_str(&def)
        .map_err(|p| format!("{p:?}"))
        .expect("valid job");
    assert_eq!(parsed.notify.map(|n| n.callbacks.len()), Some(7));
    // The scripted board runs it: its log, its `0_smoke`/`ls` case and its end come from the
    // job path.
    let id = submit_scripted(&srv, &notify).await;

    // The five good callbacks arrive (plus the first attempts at the bad ones).
    let mut seen: Vec<Hit> = Vec::new();
    tokio::time::timeout(WAIT, async {
        while seen
            .iter()
            .filter(|h| !h.uri.path().starts_with("/fail") && !h.uri.path().starts_with("/hang"))
            .count()
            < 5
        {
            seen.push(hits.recv().await.expect("hit"));
        }
    })
    .await
    .expect("callbacks in time");
    let find = |prefix: &str| {
        seen.iter()
            .find(|h| h.uri.path().starts_with(prefix))
            .cloned()
            .expect(prefix)
    };

    let get = find("/get/");
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.uri.path(), format!("/get/{}/complete", id.0));
    assert_eq!(get.headers["authorization"], "s3cret");
    assert!(get.body.is_empty());

    let minimal = find("/minimal/");
    assert_eq!(minimal.method, Method::POST);
    assert_eq!(minimal.headers["x-token"], "s3cret");
    assert_eq!(
        minimal.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        form_field(&minimal.body, "id").as_deref(),
        Some(id.0.to_string().as_str())
    );
    assert_eq!(form_field(&minimal.body, "status").as_deref(), Some("2"));
    assert_eq!(
        form_field(&minimal.body, "status_string").as_deref(),
        Some("complete")
    );
    assert_eq!(
        form_field(&minimal.body, "health_string").as_deref(),
        Some("Complete")
    );
    assert_eq!(
        form_field(&minimal.body, "token").as_deref(),
        Some("s3cret")
    );
    assert_eq!(
        form_field(&minimal.body, "actual_device_id").as_deref(),
        Some("qemu-01")
    );
    assert!(form_field(&minimal.body, "log").is_none());

    let results = find("/results/");
    assert_eq!(results.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&results.body).expect("json body");
    assert_eq!(json["id"], serde_json::json!(id.0));
    assert_eq!(json["submitter_username"], "alice");
    assert!(
        json["results"]["0_smoke"]
            .as_str()
            .is_some_and(|y| y.contains("name: ls") && y.contains("result: fail")),
        "{json}"
    );
    assert!(json.get("log").is_none());

    let logs = find("/logs/");
    let json: serde_json::Value = serde_json::from_slice(&logs.body).expect("json body");
    assert!(
        json["log"].as_str().is_some_and(|l| l.contains("start")),
        "{json}"
    );
    assert!(json.get("results").is_none() && json.get("token").is_none());

    let all = find("/all/");
    assert!(form_field(&all.body, "log").is_some_and(|l| l.contains("start")));
    assert!(form_field(&all.body, "results").is_some_and(|r| r.contains("0_smoke")));

    // While job 1's bad callbacks are still being retried, job 2's is delivered.
    let notify2 = format!(
        "notify:\n  criteria: {{status: finished}}\n  callback: {{url: \"{base}/second/{{ID}}\"}}\n"
    );
    let id2 = submit_scripted(&srv, &notify2).await;

    let mut order = Vec::new();
    let done = outcomes(&mut srv.outcomes, 8, |o| {
        if !matches!(o.channel, Channel::Callback(_)) {
            return false;
        }
        true
    })
    .await;
    for o in &done {
        order.push((o.job, o.channel.clone(), o.result.clone()));
    }
    type Delivery = (JobId, Channel, Result<u32, lavabox::notify::Failed>);
    let position =
        |pred: &dyn Fn(&Delivery) -> bool| order.iter().position(pred).expect("outcome present");
    let second = position(&|(j, _, r)| *j == id2 && r.is_ok());
    let hang = position(&|(j, c, _)| {
        *j == id && matches!(c, Channel::Callback(u) if u.contains("/hang/"))
    });
    let fail = position(&|(j, c, _)| {
        *j == id && matches!(c, Channel::Callback(u) if u.contains("/fail/"))
    });
    assert!(second < hang, "{order:#?}");
    for at in [hang, fail] {
        let failed = order[at].2.as_ref().expect_err("bad callback fails");
        assert_eq!(failed.attempts, 3, "{order:#?}");
    }
    let attempts_at_fail = {
        while let Ok(h) = hits.try_recv() {
            seen.push(h);
        }
        seen.iter()
            .filter(|h| h.uri.path().starts_with("/fail/"))
            .count()
    };
    assert_eq!(attempts_at_fail, 3);
    let log = std::fs::read_to_string(srv.app.config().job_log_path(id)).expect("log");
    assert!(log.contains("/hang/x failed after 3 attempt(s)"), "{log}");
    assert!(log.contains("/minimal/{ID} sent"), "{log}");
}

#[tokio::test]
async fn compare_reports_a_new_failure() {
    lab_or_skip!();
    let maildir = tempfile::tempdir().expect("maildir");
    let (_sink, port) = smtp_sink(maildir.path()).await;
    // Job 1 passes `a` and fails `b`, job 2 the other way round: the board plays each run.
    let (first_run, second_run) = (
        smoke_run(&[("a", "pass"), ("b", "fail")]),
        smoke_run(&[("a", "fail"), ("b", "pass")]),
    );
    let mut options = Options::scripted();
    options.board =
        crate::common::server::Board::Scripted(crate::common::server::scripted_board_with(&[
            (1, &first_run),
            (2, &second_run),
        ]));
    let mut srv = scripted_server_with(settings(Some(port)), options).await;
    let notify = "notify:\n  criteria: {status: finished}\n  recipients:\n  - to: {method: email, email: qa@example.com}\n  \
         compare:\n    blacklist: [lava]\n    query: {entity: testjob, conditions: {description: events test}}\n";
    let first = submit_named(&srv, "events test", notify).await;
    assert_eq!(first, JobId(1), "the board's scripts are jobs 1 and 2's");
    outcomes(&mut srv.outcomes, 1, |o| o.job == first).await;

    let second = submit_named(&srv, "events test", notify).await;
    let got = outcomes(&mut srv.outcomes, 1, |o| o.job == second).await;
    assert_eq!(got[0].result, Ok(1));
    let sent = mails(
        maildir.path(),
        &format!("Test Job {} events test", second.0),
    );
    assert_eq!(sent.len(), 1);
    let mail = &sent[0];
    assert!(
        mail.contains(&format!("Compared with job {}", first.0)),
        "{mail}"
    );
    assert!(mail.contains("newly failing: 0_smoke/a"), "{mail}");
    assert!(mail.contains("fixed: 0_smoke/b"), "{mail}");
    assert!(!mail.contains("lava/job"), "{mail}");
}

/// Collects outcomes into `all` until `done` holds for them.
async fn until(
    rx: &mut broadcast::Receiver<Arc<Outcome>>,
    all: &mut Vec<Arc<Outcome>>,
    done: impl Fn(&[Arc<Outcome>]) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        while !done(all) {
            all.push(rx.recv().await.expect("outcome stream"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("outcomes in time; got {all:#?}"));
}

/// `curl` GET of `url` with optional extra arguments; returns (HTTP status, body).
async fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("run curl");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_owned())
}

/// The `results` of a job's notifications page, as alice sees it.
async fn notifications(api: &str, id: JobId, token: &str) -> Vec<serde_json::Value> {
    let (status, body) = curl(
        &format!("{api}/jobs/{}/notifications/", id.0),
        &["-H", &format!("Authorization: Token {token}")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("json");
    page["results"].as_array().expect("results").clone()
}

fn row<'a>(rows: &'a [serde_json::Value], target: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["target"].as_str().is_some_and(|t| t.contains(target)))
        .unwrap_or_else(|| panic!("no row for {target}: {rows:#?}"))
}

/// Outcomes are stored per target (pending while retried, then sent or failed with attempts
/// and the last error) and served read-only over REST with the job's visibility; a `token`
/// naming one of the submitter's callback secrets sends that secret, else the literal.
#[tokio::test]
async fn outcomes_are_recorded_and_served_with_the_job() {
    let (base, mut hits) = hook_server().await;
    let dead_smtp = free_port();
    // The whole appliance: the jobs below are run by the scheduler and dispatcher on a
    // scripted board.
    let mut srv = scripted_server(settings(Some(dead_smtp))).await;
    let dir = srv.dir().to_owned();
    // The submitter stores the secret with the CLI, on the database the server uses.
    std::fs::write(dir.as_path().join("lavabox.toml"), "instance = \"test\"\n").expect("config");
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lavabox"));
        cmd.arg("--config")
            .arg(dir.as_path().join("lavabox.toml"))
            .arg("--data")
            .arg(dir.as_path().join("data"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let mut set = cli(&["token", "secret-set", "alice", "ci-hook"])
        .spawn()
        .expect("lavabox token secret-set");
    {
        use std::io::Write as _;
        let mut stdin = set.stdin.take().expect("stdin");
        stdin.write_all(b"the-real-secret\n").expect("secret");
    }
    let out = set.wait_with_output().expect("secret-set ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["token", "secret-list", "alice"])
        .output()
        .expect("list");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ci-hook\n");
    // No secret on standard input: refused with the reason.
    let out = cli(&["token", "secret-set", "alice", "x"])
        .output()
        .expect("set");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must not be empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (alice, bob) = (srv.alice_token.clone(), srv.bob_token.clone());
    let api = format!("http://{}/api/v0.2", srv.addr);

    let notify = format!(
        "notify:\n  criteria: {{status: finished}}\n  recipients:\n\
           \x20\x20- to: {{method: email, email: bob@example.com}}\n  callbacks:\n\
           \x20\x20- {{url: \"{base}/named/{{ID}}\", token: ci-hook}}\n\
           \x20\x20- {{url: \"{base}/literal/{{ID}}\", token: not-a-name}}\n\
           \x20\x20- {{url: \"{base}/fail/x\", method: POST}}\n\
           \x20\x20- {{url: \"{base}/hang/x\"}}\n"
    );
    let def = format!("{}{notify}", scripted_job("qemu", "personal"))
        .replace("visibility: public", "visibility: personal");
    let id = match crate::xmlrpc::rpc(
        srv.addr,
        Some(("alice", &alice)),
        "scheduler.jobs.submit",
        &[lavabox::api::xmlrpc::codec::Value::str(def)],
    )
    .await
    {
        Ok(lavabox::api::xmlrpc::codec::Value::Int(id)) => JobId(id),
        other => panic!("submit: {other:?}"),
    };

    // The good callbacks are delivered, with the named secret or the literal token.
    let mut all = Vec::new();
    let count = |all: &[Arc<Outcome>], job: JobId, ok: bool| {
        all.iter()
            .filter(|o| o.job == job && o.result.is_ok() == ok)
            .count()
    };
    until(&mut srv.outcomes, &mut all, |all| count(all, id, true) == 2).await;
    let mut seen = Vec::new();
    while let Ok(h) = hits.try_recv() {
        seen.push(h);
    }
    let header = |prefix: &str| {
        seen.iter()
            .find(|h| h.uri.path().starts_with(prefix))
            .map(|h| {
                h.headers["authorization"]
                    .to_str()
                    .expect("ascii")
                    .to_owned()
            })
            .expect(prefix)
    };
    assert_eq!(header("/named/"), "the-real-secret");
    assert_eq!(header("/literal/"), "not-a-name");

    // The hanging one is still being retried (three 3 s timeouts): pending, as the API says.
    let rows = notifications(&api, id, &alice).await;
    assert_eq!(rows.len(), 5, "{rows:#?}");
    let named = row(&rows, "/named/");
    assert_eq!(named["status"], "sent");
    assert_eq!(named["method"], "callback");
    assert_eq!(named["attempts"], 1);
    assert_eq!(named["job_state"], "Finished");
    assert!(named["last_error"].is_null());
    assert_eq!(row(&rows, "/hang/")["status"], "pending");

    // Meanwhile the next job's notification goes out and is recorded as sent.
    let notify2 = format!(
        "notify:\n  criteria: {{status: finished}}\n  callback: {{url: \"{base}/second/{{ID}}\"}}\n"
    );
    let id2 = submit_scripted(&srv, &notify2).await;
    until(&mut srv.outcomes, &mut all, |all| {
        count(all, id2, true) == 1
    })
    .await;
    let second = notifications(&api, id2, &alice).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["status"], "sent");
    assert_eq!(
        row(&notifications(&api, id, &alice).await, "/hang/")["status"],
        "pending"
    );

    // Then the dead relay and the bad callbacks end recorded as failed after their retries.
    until(&mut srv.outcomes, &mut all, |all| {
        count(all, id, false) == 3
    })
    .await;
    let rows = notifications(&api, id, &alice).await;
    for (target, error) in [
        ("bob@example.com", ""),
        ("/fail/", "500"),
        ("/hang/", "no answer within"),
    ] {
        let r = row(&rows, target);
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["attempts"], 3, "{r}");
        assert!(
            r["last_error"].as_str().is_some_and(|e| e.contains(error)),
            "{r}"
        );
    }
    assert_eq!(row(&rows, "bob@example.com")["method"], "email");

    // The job is personal: others get the 404 the job itself gives them.
    let url = format!("{api}/jobs/{}/notifications/", id.0);
    assert_eq!(curl(&url, &[]).await.0, 404);
    let as_bob = format!("Authorization: Token {bob}");
    assert_eq!(curl(&url, &["-H", &as_bob]).await.0, 404);
    assert_eq!(
        curl(&format!("{api}/jobs/nope/notifications/"), &[])
            .await
            .0,
        404
    );
}

/// Runs the real `lavabox` binary on `dir`'s data directory (the one `app` uses).
fn lavabox_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let config = dir.join("lavabox.toml");
    if !config.exists() {
        std::fs::write(&config, "instance = \"test\"\n").expect("config");
    }
    std::process::Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run lavabox")
}

/// `dependency_query` (LAVA: a testjob condition string): the callback of a job whose
/// criteria holds fires only once every other matched job is there too; before that each
/// target is recorded as not sent, with the job still missing, and REST serves the reason.
#[tokio::test]
async fn dependency_query_holds_the_callback_until_every_matched_job_is_complete() {
    let (base, mut hits) = hook_server().await;
    let mut srv = scripted_server(settings(None)).await;
    let api = format!("http://{}/api/v0.2", srv.addr);
    let token = srv.alice_token.clone();
    // The second job's type has one board, in maintenance: the job waits in the queue until
    // the board is put online.
    srv.app
        .store()
        .call(|s| {
            let mut qemu2 = NewDeviceType::named("qemu2");
            qemu2.disable_health_check = true;
            s.create_device_type(&qemu2)?;
            let mut device = NewDevice::new("qemu-02", "qemu2");
            device.dictionary = Some(crate::common::server::scripted_dictionary("qemu.jinja2"));
            device.health = DeviceHealth::Maintenance;
            s.create_device(&device)?;
            Ok(())
        })
        .await
        .expect("second board");
    let notify = format!(
        "notify:\n  criteria: {{status: complete, dependency_query: \"testjob__description__exact__events test\"}}\n  \
         callback: {{url: \"{base}/dep/{{ID}}\"}}\n"
    );
    let submit_to = |device_type: &'static str, notify: String| {
        let (addr, token) = (srv.addr, srv.alice_token.clone());
        async move {
            let definition = format!("{}{notify}", scripted_job(device_type, "events test"));
            match crate::xmlrpc::rpc(
                addr,
                Some(("alice", &token)),
                "scheduler.jobs.submit",
                &[lavabox::api::xmlrpc::codec::Value::str(definition)],
            )
            .await
            {
                Ok(lavabox::api::xmlrpc::codec::Value::Int(id)) => JobId(id),
                other => panic!("submit: {other:?}"),
            }
        }
    };
    let second = submit_to("qemu2", notify.clone()).await;
    let first = submit_to("qemu", notify.clone()).await;

    // The first completes while the second still waits in the queue: nothing is sent.
    let held = outcomes(&mut srv.outcomes, 1, |o| o.job == first).await;
    assert_eq!(
        held[0].channel,
        Channel::Callback(format!("{base}/dep/{{ID}}"))
    );
    let failed = held[0].result.clone().expect_err("held back");
    assert_eq!(failed.attempts, 0);
    let reason = format!(
        "not sent: dependency_query `testjob__description__exact__events test`: job {} is Submitted with health Unknown, not health Complete",
        second.0
    );
    assert_eq!(failed.error, reason);
    let rows = notifications(&api, first, &token).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["status"], "failed");
    assert_eq!(rows[0]["attempts"], 0);
    assert_eq!(rows[0]["last_error"], reason.as_str());

    // The second completes after the first: the dependency holds and its callback is sent.
    crate::xmlrpc::rpc(
        srv.addr,
        Some(("admin", &srv.admin_token)),
        "scheduler.put_into_online_mode",
        &[
            lavabox::api::xmlrpc::codec::Value::str("qemu-02"),
            lavabox::api::xmlrpc::codec::Value::str("the queue may go on"),
        ],
    )
    .await
    .expect("online");
    let sent = outcomes(&mut srv.outcomes, 1, |o| o.job == second).await;
    assert_eq!(sent[0].result, Ok(1), "{:?}", sent[0]);
    let rows = notifications(&api, second, &token).await;
    assert_eq!(rows[0]["status"], "sent", "{rows:#?}");
    // The only request the hook ever saw is the second job's.
    let mut paths = Vec::new();
    while let Ok(hit) = hits.try_recv() {
        paths.push(hit.uri.path().to_owned());
    }
    assert_eq!(paths, [format!("/dep/{}", second.0)]);

    // A condition string LAVA cannot run holds the callback back too, saying why.
    let bad = format!(
        "notify:\n  criteria: {{status: complete, dependency_query: \"testjob__health__is__Complete\"}}\n  \
         callback: {{url: \"{base}/bad/{{ID}}\"}}\n"
    );
    let third = submit_to("qemu", bad).await;
    let held = outcomes(&mut srv.outcomes, 1, |o| o.job == third).await;
    let error = held[0].result.clone().expect_err("held back").error;
    assert!(
        error.contains("condition 1 `testjob__health__is__Complete`: operator `is`"),
        "{error}"
    );
}

/// A named compare query (saved with `lavabox query add`) picks the job compared with: the
/// newest Complete job it matches, not merely the previous job.
#[tokio::test]
async fn named_compare_query_saved_with_the_cli_picks_the_job() {
    lab_or_skip!();
    let maildir = tempfile::tempdir().expect("maildir");
    let (_sink, port) = smtp_sink(maildir.path()).await;
    // The baseline (job 1) passes `0_smoke/a`; every later job fails it.
    let (pass, fail) = (smoke_run(&[("a", "pass")]), smoke_run(&[("a", "fail")]));
    let mut options = Options::scripted();
    options.board =
        crate::common::server::Board::Scripted(crate::common::server::scripted_board_with(&[
            (1, &pass),
            (2, &fail),
            (3, &fail),
            (4, &fail),
        ]));
    let mut srv = scripted_server_with(settings(Some(port)), options).await;
    let dir = srv.dir().to_owned();
    let add = lavabox_cli(
        &dir,
        &[
            "query",
            "add",
            "alice",
            "baselines",
            "--conditions",
            "testjob__description__exact__baseline,testjob__health__exact__Complete",
            "--description",
            "known-good runs",
        ],
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&add.stdout),
        "query ~alice/baselines created\n"
    );
    // A bad condition string is refused with where and why.
    let bad = lavabox_cli(
        &dir,
        &[
            "query",
            "add",
            "alice",
            "bad",
            "--conditions",
            "testjob__nope__exact__1",
        ],
    );
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "lavabox: error: checking the conditions of query ~alice/bad: condition 1 \
         `testjob__nope__exact__1`: testjob has no field `nope` a query may test\n"
    );

    let baseline = submit_named(&srv, "baseline", "").await;
    assert_eq!(baseline, JobId(1), "the board's scripts are jobs 1 to 4's");
    srv.finished(baseline, lavabox::model::JobHealth::Complete)
        .await;
    // The previous job, which a "same name" rule would pick, also fails 0_smoke/a.
    let previous = submit_named(&srv, "events test", "").await;
    srv.finished(previous, lavabox::model::JobHealth::Complete)
        .await;
    let notify = "notify:\n  criteria: {status: finished}\n  recipients:\n  - to: {method: email, email: qa@example.com}\n  \
         compare:\n    query: {username: alice, name: baselines}\n";
    let current = submit_named(&srv, "events test", notify).await;
    let got = outcomes(&mut srv.outcomes, 1, |o| o.job == current).await;
    assert_eq!(got[0].result, Ok(1), "{:?}", got[0]);
    let sent = mails(
        maildir.path(),
        &format!("Test Job {} events test", current.0),
    );
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].contains(&format!("Compared with job {}", baseline.0)),
        "{}",
        sent[0]
    );
    assert!(sent[0].contains("newly failing: 0_smoke/a"), "{}", sent[0]);

    // Removing the query after submission leaves the notification without a comparison,
    // saying why (submission itself refuses a query that does not exist, as LAVA's). The
    // board is in maintenance meanwhile, so the job waits in the queue.
    let admin = |method: &'static str| {
        let token = srv.admin_token.clone();
        let addr = srv.addr;
        async move {
            crate::xmlrpc::rpc(
                addr,
                Some(("admin", &token)),
                method,
                &[
                    lavabox::api::xmlrpc::codec::Value::str("qemu-01"),
                    lavabox::api::xmlrpc::codec::Value::str("holding the queue"),
                ],
            )
            .await
            .unwrap_or_else(|f| panic!("{method}: {f:?}"))
        }
    };
    admin("scheduler.put_into_maintenance_mode").await;
    let later = submit_named(&srv, "events test", notify).await;
    let removed = lavabox_cli(&dir, &["query", "remove", "alice", "baselines"]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    admin("scheduler.put_into_online_mode").await;
    outcomes(&mut srv.outcomes, 1, |o| o.job == later).await;
    let sent = mails(maildir.path(), &format!("Test Job {} events test", later.0));
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].contains("compare query ~alice/baselines does not exist"),
        "{}",
        sent[0]
    );
}
