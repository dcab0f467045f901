//! Integration tests: XML-RPC.
//!
//! The one server fixture (`common::server`) on ephemeral ports with a temporary data
//! directory, driven by raw HTTP (wire errors, limits, auth), by Python's `xmlrpc.client`
//! (`tests/python/xmlrpc_api.py`, return shapes and types of every method) and, in
//! `lavacli.rs`, by Debian's `lavacli`. The finished job the suites read was run by the
//! whole appliance ([`with_finished_job`]), never written by the fixture.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use lavabox::api::xmlrpc::codec::{self, Value};
use lavabox::model::{DeviceHealth, JobHealth, JobId};
use lavabox::store::{DeviceTypeUpdate, NewDevice, NewDeviceType, NewSavedQuery, QuerySpec, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::common::server::ALICE_EMAIL;
use crate::common::server::{Options, Server, scripted_job};

/// A single-node job the seeded `qemu` device can take.
pub const QEMU_JOB: &str = "device_type: qemu
job_name: xmlrpc test job
visibility: public
priority: high
metadata:
  build: '42'
timeouts:
  job: {minutes: 30}
  action: {minutes: 5}
actions:
- boot: {method: qemu, media: tmpfs, connection: serial, prompts: ['root@debian:~#']}
";

/// A personal job: only its submitter (and superusers) may see it.
pub const PRIVATE_JOB: &str = "device_type: qemu
job_name: private job
visibility: personal
timeouts:
  job: {minutes: 30}
actions:
- boot: {method: qemu, media: tmpfs, connection: serial, prompts: ['root@debian:~#']}
";

/// A MultiNode job for two qemu devices.
pub const MULTINODE_JOB: &str = "job_name: multinode test
visibility: public
timeouts:
  job: {minutes: 30}
protocols:
  lava-multinode:
    roles:
      server: {device_type: qemu, count: 1}
      client: {device_type: qemu, count: 1}
actions:
- boot: {role: [server, client], method: qemu, media: tmpfs, connection: serial, prompts: ['# ']}
";

/// LAVA 2023.01's `system.listMethods`: every public routine of the API classes that
/// `lava_server/urls.py` registers (read from Debian's lava-server 2023.01-2).
pub const LAVA_2023_01_METHODS: &[&str] = &[
    "results.get_testcase_results_csv",
    "results.get_testcase_results_yaml",
    "results.get_testjob_metadata",
    "results.get_testjob_results_csv",
    "results.get_testjob_results_yaml",
    "results.get_testjob_suites_list_csv",
    "results.get_testjob_suites_list_yaml",
    "results.get_testsuite_results_count",
    "results.get_testsuite_results_csv",
    "results.get_testsuite_results_yaml",
    "results.make_custom_query",
    "results.refresh_all_queries",
    "results.refresh_query",
    "results.run_query",
    "scheduler.aliases.add",
    "scheduler.aliases.delete",
    "scheduler.aliases.list",
    "scheduler.aliases.show",
    "scheduler.all_device_types",
    "scheduler.all_devices",
    "scheduler.all_jobs",
    "scheduler.cancel_job",
    "scheduler.device_types.add",
    "scheduler.device_types.aliases.add",
    "scheduler.device_types.aliases.delete",
    "scheduler.device_types.aliases.list",
    "scheduler.device_types.get_health_check",
    "scheduler.device_types.get_template",
    "scheduler.device_types.list",
    "scheduler.device_types.set_health_check",
    "scheduler.device_types.set_template",
    "scheduler.device_types.show",
    "scheduler.device_types.update",
    "scheduler.devices.add",
    "scheduler.devices.get_dictionary",
    "scheduler.devices.list",
    "scheduler.devices.set_dictionary",
    "scheduler.devices.show",
    "scheduler.devices.tags.add",
    "scheduler.devices.tags.delete",
    "scheduler.devices.tags.list",
    "scheduler.devices.update",
    "scheduler.export_device_dictionary",
    "scheduler.get_device_config",
    "scheduler.get_device_status",
    "scheduler.get_device_type_by_alias",
    "scheduler.get_publisher_event_socket",
    "scheduler.get_recent_jobs_for_device",
    "scheduler.get_recent_jobs_for_device_type",
    "scheduler.import_device_dictionary",
    "scheduler.job_details",
    "scheduler.job_health",
    "scheduler.job_output",
    "scheduler.job_state",
    "scheduler.jobs.cancel",
    "scheduler.jobs.configuration",
    "scheduler.jobs.definition",
    "scheduler.jobs.list",
    "scheduler.jobs.logs",
    "scheduler.jobs.queue",
    "scheduler.jobs.resubmit",
    "scheduler.jobs.show",
    "scheduler.jobs.submit",
    "scheduler.jobs.validate",
    "scheduler.pending_jobs_by_device_type",
    "scheduler.put_into_maintenance_mode",
    "scheduler.put_into_online_mode",
    "scheduler.resubmit_job",
    "scheduler.submit_job",
    "scheduler.tags.add",
    "scheduler.tags.delete",
    "scheduler.tags.list",
    "scheduler.tags.show",
    "scheduler.validate_pipeline_devices",
    "scheduler.validate_yaml",
    "scheduler.workers.add",
    "scheduler.workers.get_config",
    "scheduler.workers.get_env",
    "scheduler.workers.get_env_dut",
    "scheduler.workers.list",
    "scheduler.workers.set_config",
    "scheduler.workers.set_env",
    "scheduler.workers.set_env_dut",
    "scheduler.workers.show",
    "scheduler.workers.update",
    "system.api_version",
    "system.assign_perm_device",
    "system.assign_perm_device_type",
    "system.getCapabilities",
    "system.listMethods",
    "system.master_config",
    "system.methodHelp",
    "system.methodSignature",
    "system.multicall",
    "system.pipeline_network_map",
    "system.revoke_perm_device",
    "system.revoke_perm_device_type",
    "system.set_user_groups",
    "system.user_can_submit_to_types",
    "system.user_can_view_bundles",
    "system.user_can_view_devices",
    "system.user_can_view_jobs",
    "system.version",
    "system.whoami",
];

/// The XML-RPC suites' appliance: the one server fixture ([`Server`]) with users, tokens,
/// device types `qemu` and `bbb`, alias `qemu-alias`, tag `fast` and devices `qemu01`
/// (tagged) and `qemu02`.
pub type TestServer = Server;

/// `qemu01` (or `qemu02`): a `qemu` device of the appliance's worker, Good.
fn qemu_device(s: &mut Store, hostname: &str) -> Result<(), lavabox::store::Error> {
    let mut d = NewDevice::new(hostname, "qemu");
    d.dictionary = Some(format!(
        "{}{{% set arch = 'amd64' %}}\n",
        crate::common::server::scripted_dictionary("qemu.jinja2")
    ));
    d.worker_name = Some("lavabox-test".into());
    d.health = DeviceHealth::Good;
    s.create_device(&d)?;
    Ok(())
}

/// What the whole appliance runs the finished job on: the `qemu` type (its health check off,
/// so the job is the device's first) and `qemu01` alone.
fn seed_for_the_job(s: &mut Store) -> Result<(), lavabox::store::Error> {
    let mut qemu = NewDeviceType::named("qemu");
    qemu.disable_health_check = true;
    s.create_device_type(&qemu)?;
    qemu_device(s, "qemu01")
}

/// The rest of the seed, for the API suites.
fn seed_the_rest(s: &mut Store, with_job: bool) -> Result<(), lavabox::store::Error> {
    if with_job {
        s.update_device_type(
            "qemu",
            &DeviceTypeUpdate {
                disable_health_check: Some(false),
                ..DeviceTypeUpdate::default()
            },
        )?;
    } else {
        s.create_device_type(&NewDeviceType::named("qemu"))?;
        qemu_device(s, "qemu01")?;
    }
    s.create_group("lab")?;
    s.add_group_member("lab", "alice")?;
    s.create_device_type(&NewDeviceType::named("bbb"))?;
    s.add_alias("qemu-alias", "qemu")?;
    s.create_tag("fast", Some("a fast board"))?;
    qemu_device(s, "qemu02")?;
    s.add_device_tag("qemu01", "fast")?;
    Ok(())
}

/// The seeded API, without a finished job.
pub async fn start() -> Server {
    Server::start(Options::api_only().seed(|s| seed_the_rest(s, false))).await
}

/// The seeded API with one finished job: the whole appliance runs it first (submitted by
/// alice through XML-RPC, run by the real scheduler and dispatcher on `qemu01`, a scripted
/// board answering its test run with one failing case `0_smoke`/`ls`), then the same data
/// directory is served by the API alone, so the jobs the suites queue stay queued.
pub async fn with_finished_job() -> (Server, i64) {
    let mut srv = Server::start(Options::scripted().seed(seed_for_the_job)).await;
    let id = match rpc(
        srv.addr,
        Some(("alice", &srv.alice_token)),
        "scheduler.jobs.submit",
        &[Value::str(scripted_job("qemu", "xmlrpc test job"))],
    )
    .await
    {
        Ok(Value::Int(id)) => id,
        other => panic!("submit: {other:?}"),
    };
    srv.finished(JobId(id), JobHealth::Complete).await;
    let srv = srv
        .restart(Options::api_only().seed(|s| seed_the_rest(s, true)))
        .await;
    (srv, id)
}

/// One raw HTTP/1.1 request; returns (status, headers text, body).
pub async fn http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("write head");
    // The server may answer (413) and close before the whole body is sent.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let headers = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, headers, out[split + 4..].to_vec())
}

/// Calls `method` over XML-RPC with optional Basic credentials.
pub async fn rpc(
    addr: SocketAddr,
    auth: Option<(&str, &str)>,
    method: &str,
    params: &[Value],
) -> Result<Value, (i64, String)> {
    use base64::Engine as _;
    let mut head = "POST /RPC2 HTTP/1.1\r\nContent-Type: text/xml".to_owned();
    if let Some((u, t)) = auth {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{t}"));
        head.push_str(&format!("\r\nAuthorization: Basic {enc}"));
    }
    let (status, _, body) = http(addr, &head, codec::encode_call(method, params).as_bytes()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    codec::decode_response(&body).expect("valid methodResponse")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a Python client script with Debian's interpreter.
fn python(script: &Path, env: &[(&str, String)]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running /usr/bin/python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_suite() {
    // A finished job with a log and results, submitted through the API and run by the job
    // path.
    let (srv, id) = with_finished_job().await;
    // Saved queries, as `lavabox query add` makes them: alice's own (limit 20), a live one,
    // bob's shared with group `lab` (alice is a member) and bob's private one.
    srv.app
        .store()
        .call(|s| {
            let spec = |c: &str| QuerySpec::parse("testjob", c).expect(c);
            let mut done = NewSavedQuery::new(
                "alice",
                "done",
                spec("testjob__submitter__exact__alice,testjob__health__exact__Complete"),
            );
            done.limit = 20;
            s.add_saved_query(&done)?;
            let mut live = NewSavedQuery::new("alice", "live", spec("submitter__alice"));
            live.is_live = true;
            s.add_saved_query(&live)?;
            let mut shared = NewSavedQuery::new("bob", "shared", spec("health__Complete"));
            shared.group = Some("lab".into());
            s.add_saved_query(&shared)?;
            s.add_saved_query(&NewSavedQuery::new("bob", "private", spec("")))?;
            Ok(())
        })
        .await
        .expect("saved queries");
    // What the job path wrote for the finished job, for the counts the suite checks.
    let log = std::fs::read_to_string(srv.app.config().job_log_path(JobId(id))).expect("log");
    let (cases, lava_cases) = srv
        .app
        .store()
        .call(move |s| {
            Ok((
                s.count_test_cases(JobId(id), None)?,
                s.count_test_cases(JobId(id), Some("lava"))?,
            ))
        })
        .await
        .expect("case counts");
    assert!(cases >= 2 && lava_cases >= 1, "{cases} {lava_cases}");
    let out = python(
        &repo().join("tests/python/xmlrpc_api.py"),
        &[
            ("FINISHED_LOG_LINES", log.lines().count().to_string()),
            ("FINISHED_CASES", cases.to_string()),
            ("FINISHED_LAVA_CASES", lava_cases.to_string()),
            ("LAVABOX_ADDR", srv.addr.to_string()),
            ("ADMIN_TOKEN", srv.admin_token.clone()),
            ("ALICE_TOKEN", srv.alice_token.clone()),
            ("BOB_TOKEN", srv.bob_token.clone()),
            ("FINISHED_JOB", id.to_string()),
            ("WORKER", srv.worker.clone()),
            ("ALICE_EMAIL", ALICE_EMAIL.to_owned()),
            ("LAVA_METHODS", LAVA_2023_01_METHODS.join(" ")),
            ("QEMU_JOB", QEMU_JOB.to_owned()),
            ("PRIVATE_JOB", PRIVATE_JOB.to_owned()),
            ("MULTINODE_JOB", MULTINODE_JOB.to_owned()),
        ],
    );
    assert!(out.contains("ALL OK"), "{out}");
    // refresh_query and refresh_all_queries stamped the non-live queries only.
    let stamped = srv
        .app
        .store()
        .call(|s| {
            Ok(s.saved_queries()?
                .into_iter()
                .map(|q| (q.name, q.last_updated.is_some()))
                .collect::<Vec<_>>())
        })
        .await
        .expect("queries");
    assert_eq!(
        stamped,
        [
            ("done".to_owned(), true),
            ("live".to_owned(), false),
            ("private".to_owned(), true),
            ("shared".to_owned(), true)
        ]
    );
}

#[tokio::test]
async fn wire_errors_are_faults_or_4xx() {
    let srv = start().await;
    let post = "POST /RPC2 HTTP/1.1\r\nContent-Type: text/xml";
    // Malformed XML → fault, HTTP 200.
    for body in [
        &b"<methodCall><methodName>x"[..],
        b"not xml at all",
        b"<methodCall><params/></methodCall>",
        b"\xff\xfe\x00",
    ] {
        let (status, _, resp) = http(srv.addr, post, body).await;
        assert_eq!(status, 200);
        let fault = codec::decode_response(&resp)
            .expect("response")
            .unwrap_err();
        assert_eq!(fault.0, -32700, "{fault:?}");
    }
    // A 50 MB body is refused by size, not read into memory.
    let mut stream = TcpStream::connect(srv.addr).await.expect("connect");
    let head = format!(
        "{post}\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        50 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let _ = stream.write_all(&vec![b'a'; 1024 * 1024]).await;
    let mut resp = vec![0u8; 64];
    let n = stream.read(&mut resp).await.expect("read");
    let line = String::from_utf8_lossy(&resp[..n]).into_owned();
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    // Empty body / GET → redirect to the help page.
    let (status, headers, _) = http(srv.addr, "GET /RPC2 HTTP/1.1", b"").await;
    assert!((300..400).contains(&status), "{status}");
    assert!(headers.contains("/api/help/"), "{headers}");
    // Auth header errors are plain HTTP.
    let (status, _, _) = http(
        srv.addr,
        &format!("{post}\r\nAuthorization: Basic"),
        b"<x/>",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = http(
        srv.addr,
        &format!("{post}\r\nAuthorization: Bearer abc"),
        b"<x/>",
    )
    .await;
    assert_eq!(status, 400);
    let (status, headers, _) = http(
        srv.addr,
        &format!("{post}\r\nAuthorization: Basic YWxpY2U6d3Jvbmc="),
        codec::encode_call("system.version", &[]).as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        headers.contains("XML-RPC Authentication token"),
        "{headers}"
    );
    // Unknown methods and wrong argument types.
    assert_eq!(
        rpc(srv.addr, None, "system.nope", &[]).await,
        Err((-32601, "No such method: 'system.nope'".into()))
    );
    assert_eq!(
        rpc(srv.addr, None, "system.get_master_certificate", &[])
            .await
            .unwrap_err()
            .0,
        -32601
    );
    assert_eq!(
        rpc(srv.addr, None, "scheduler.job_status", &[Value::Int(1)])
            .await
            .unwrap_err()
            .0,
        -32601
    );
    let f = rpc(
        srv.addr,
        None,
        "scheduler.jobs.show",
        &[Value::Array(vec![])],
    )
    .await
    .unwrap_err();
    assert_eq!(f.0, 400, "{f:?}");
    let f = rpc(
        srv.addr,
        None,
        "scheduler.jobs.list",
        &[Value::Base64(vec![1])],
    )
    .await
    .unwrap_err();
    assert_eq!(f.0, 400, "{f:?}");
    let f = rpc(srv.addr, None, "scheduler.devices.show", &[])
        .await
        .unwrap_err();
    assert_eq!(f.0, -32603, "{f:?}");
    let f = rpc(
        srv.addr,
        None,
        "system.version",
        &[Value::Int(1), Value::Int(2)],
    )
    .await
    .unwrap_err();
    assert_eq!(f.0, -32603, "{f:?}");
    assert!(
        f.1.contains("takes at most 0 positional arguments but 2 were given"),
        "{f:?}"
    );
    // Every method, called by a superuser (so permission checks do not stop it early) with
    // argument lists of the wrong types and counts, answers HTTP 200 with a methodResponse
    // (`rpc` asserts both); the faults it gives are XML-RPC's or LAVA's codes, never 500.
    let admin = Some(("admin", srv.admin_token.as_str()));
    let wrong: [Vec<Value>; 4] = [
        vec![Value::Base64(vec![0, 159, 255])],
        vec![
            Value::Struct(vec![("x".into(), Value::Nil)]),
            Value::Double(1.5),
        ],
        vec![Value::Array(vec![Value::Nil]); 9],
        vec![Value::Int(-1), Value::Bool(true), Value::str("../..")],
    ];
    let mut faults = 0;
    for method in lavabox::api::xmlrpc::methods::METHODS {
        for params in &wrong {
            if let Err((code, message)) = rpc(srv.addr, admin, method, params).await {
                faults += 1;
                assert!(
                    [400, 401, 403, 404, -32602, -32603].contains(&code),
                    "{method}{params:?}: {code} {message}"
                );
                assert!(!message.is_empty(), "{method}: empty fault string");
            }
        }
    }
    // Nearly every such call is refused; the few that accept anything (e.g.
    // `system.listMethods` refuses extra arguments, `user_can_view_bundles` takes any list)
    // are the exception.
    assert!(
        faults >= lavabox::api::xmlrpc::methods::METHODS.len() * 3,
        "only {faults} faults"
    );
}

#[tokio::test]
async fn private_jobs_are_refused_to_others() {
    let srv = start().await;
    let alice = Some(("alice", srv.alice_token.as_str()));
    let bob = Some(("bob", srv.bob_token.as_str()));
    let admin = Some(("admin", srv.admin_token.as_str()));
    let Ok(Value::Int(id)) = rpc(
        srv.addr,
        alice,
        "scheduler.jobs.submit",
        &[Value::str(PRIVATE_JOB)],
    )
    .await
    else {
        panic!("submit failed");
    };
    assert!(
        rpc(srv.addr, alice, "scheduler.jobs.show", &[Value::Int(id)])
            .await
            .is_ok()
    );
    assert!(
        rpc(srv.addr, admin, "scheduler.jobs.show", &[Value::Int(id)])
            .await
            .is_ok()
    );
    assert_eq!(
        rpc(srv.addr, bob, "scheduler.jobs.show", &[Value::Int(id)]).await,
        Err((403, format!("Job '{id}' not available to user 'bob'.")))
    );
    assert_eq!(
        rpc(
            srv.addr,
            None,
            "scheduler.jobs.definition",
            &[Value::Int(id)]
        )
        .await,
        Err((
            403,
            format!("Job '{id}' not available to user 'AnonymousUser'.")
        ))
    );
    assert_eq!(
        rpc(
            srv.addr,
            bob,
            "results.get_testjob_results_yaml",
            &[Value::Int(id)]
        )
        .await,
        Err((401, format!("Permission denied for user to job {id}")))
    );
    assert_eq!(
        rpc(srv.addr, bob, "scheduler.jobs.cancel", &[Value::Int(id)])
            .await
            .unwrap_err()
            .0,
        403
    );
    // Anonymous listing does not show it.
    let Ok(Value::Array(jobs)) = rpc(srv.addr, None, "scheduler.jobs.list", &[]).await else {
        panic!("list failed");
    };
    assert!(jobs.is_empty(), "{jobs:?}");
    // Submission needs a user.
    assert_eq!(
        rpc(
            srv.addr,
            None,
            "scheduler.jobs.submit",
            &[Value::str(QEMU_JOB)]
        )
        .await
        .unwrap_err()
        .0,
        401
    );
    // The submitter may cancel; a second cancel is a silent no-op.
    assert_eq!(
        rpc(srv.addr, alice, "scheduler.jobs.cancel", &[Value::Int(id)]).await,
        Ok(Value::Bool(true))
    );
    assert_eq!(
        rpc(srv.addr, alice, "scheduler.jobs.cancel", &[Value::Int(id)]).await,
        Ok(Value::Bool(true))
    );
}
