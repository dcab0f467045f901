//! REST and results-export throughput over a real socket: `/api/v0.2/jobs/` with 1,000 jobs,
//! the results CSV of a job with 10,000 test cases and of a small job, with 1 and 16
//! concurrent clients. Prints p50/p99 latency and requests per second.
//!
//! Run: `cargo bench --bench rest` (LAVA 2023.01 reference: REST jobs 46 ms, results CSV of
//! a small job 35 ms).

use std::time::{Duration, Instant};

use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::model::{JobId, TestResult};
use lavabox::store::{NewJob, NewTestCase, NewUser};

async fn run(
    client: &reqwest::Client,
    url: &str,
    clients: usize,
    per_client: usize,
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let resp = client.get(&url).send().await.expect("request");
                assert!(resp.status().is_success(), "{url}: {}", resp.status());
                let body = resp.bytes().await.expect("body");
                assert!(!body.is_empty());
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    (all, start.elapsed())
}

fn report(name: &str, clients: usize, mut times: Vec<Duration>, wall: Duration) {
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<38} clients={clients:<2} n={:<5} p50={:>8.2?} p99={:>8.2?} {:>8.1} req/s",
        times.len(),
        pct(0.50),
        pct(0.99),
        times.len() as f64 / wall.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    lavabox::tls::install_tls_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::from_raw(RawConfig::default(), None).expect("config");
    config.apply(&Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: None,
    });
    let app = App::build(config).await.expect("app");
    let (big, small) = app
        .store()
        .call(|s| {
            s.create_user(&NewUser::named("alice"))?;
            let mut ids: Vec<JobId> = Vec::new();
            for i in 0..1000 {
                let mut job = NewJob::new("alice", format!("job_name: bench {i}\n"));
                job.description = format!("bench {i}");
                ids.push(s.insert_job(&job)?.id);
            }
            let cases: Vec<NewTestCase> = (0..10_000)
                .map(|i| {
                    let mut c = NewTestCase::new(
                        format!("{}_suite", i / 2500),
                        format!("case-{i}"),
                        if i % 7 == 0 {
                            TestResult::Fail
                        } else {
                            TestResult::Pass
                        },
                    );
                    c.metadata = Some(format!(
                        "case: case-{i}\ndefinition: 0_suite\nresult: pass\n"
                    ));
                    c.start_log_line = Some(i);
                    c.end_log_line = Some(i + 1);
                    c
                })
                .collect();
            s.insert_test_cases(ids[0], &cases)?;
            let small: Vec<NewTestCase> = (0..20)
                .map(|i| NewTestCase::new("0_smoke", format!("case-{i}"), TestResult::Pass))
                .collect();
            s.insert_test_cases(ids[1], &small)?;
            Ok((ids[0], ids[1]))
        })
        .await
        .expect("seed");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // The production path: `api::serve` (TCP_NODELAY, body limit, tracing layers).
    tokio::spawn(lavabox::api::serve(listener, app, std::future::pending()));
    let client = reqwest::Client::new();
    let cases = [
        (
            "GET /api/v0.2/jobs/ (1,000 jobs)",
            format!("http://{addr}/api/v0.2/jobs/"),
            400,
        ),
        (
            "GET /api/v0.2/jobs/?state=Submitted&id__gt=10",
            format!("http://{addr}/api/v0.2/jobs/?state=Submitted&id__gt=10"),
            100,
        ),
        (
            "GET /results/<job>/csv (20 cases)",
            format!("http://{addr}/results/{small}/csv"),
            400,
        ),
        (
            "GET /results/<job>/csv (10,000 cases)",
            format!("http://{addr}/results/{big}/csv"),
            16,
        ),
        (
            "GET /results/<job>/yaml (10,000 cases)",
            format!("http://{addr}/results/{big}/yaml"),
            16,
        ),
    ];
    for (name, url, n) in &cases {
        // Warm up.
        let _ = run(&client, url, 1, 2).await;
        for clients in [1usize, 16] {
            let per_client = (n / clients).max(2);
            let (times, wall) = run(&client, url, clients, per_client).await;
            report(name, clients, times, wall);
        }
    }
}
