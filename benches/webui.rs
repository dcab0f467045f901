//! The web UI's speed: server time of the dashboard with 50 devices and 1,000 jobs and of the
//! page, first log range and a search near the end of a 1,000,000-line job log, over a real
//! socket; and, when Debian's chromium and chromium-driver are installed, time to first
//! screen in headless Chromium (navigation start to the first contentful paint of the
//! dashboard, and to the first log row on screen for the job page). Prints figures, asserts
//! nothing. Targets (issue 17): < 50 ms server time, < 300 ms to first screen.
//!
//! Run: `cargo bench --bench webui`.
//!
//! The jobs and the log are written here through store calls and `JobLogWriter` (a
//! benchmark, not a test of the job path): the log has the dispatcher's line format.

#[path = "../tests/it/common/webdriver.rs"]
#[allow(dead_code)]
mod webdriver;

use std::time::{Duration, Instant};

use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::model::lifecycle::JobEnd;
use lavabox::model::{DeviceHealth, ErrorType, JobId};
use lavabox::store::joblog::{Entry, JobLogWriter, Level, log_path};
use lavabox::store::{NewDevice, NewDeviceType, NewJob, NewUser};
use serde_json::json;

const DEVICES: usize = 50;
const JOBS: usize = 1000;
const LINES: usize = 1_000_000;

async fn time_get(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
    n: usize,
) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = client
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        let _ = resp.bytes().await.expect("body");
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[(times.len() - 1) * 99 / 100])
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
    let data_dir = config.data_dir.clone();
    let app = App::build(config).await.expect("app");
    let phc = lavabox::web::password::hash("bench-password").expect("hash");
    let big: JobId = app
        .store()
        .call(move |s| {
            let mut admin = NewUser::named("admin");
            admin.is_superuser = true;
            s.create_user(&admin)?;
            s.set_password("admin", &phc)?;
            let mut dt = NewDeviceType::named("qemu");
            dt.disable_health_check = true;
            s.create_device_type(&dt)?;
            for d in 0..DEVICES {
                let mut dev = NewDevice::new(format!("bench-{d:02}"), "qemu");
                dev.health = DeviceHealth::Good;
                s.create_device(&dev)?;
            }
            let mut first = None;
            for i in 0..JOBS {
                let mut job = NewJob::new("admin", format!("job_name: bench {i}\n"));
                job.description = format!("bench {i}");
                job.requested_device_type = Some("qemu".into());
                let id = s.insert_job(&job)?.id;
                first.get_or_insert(id);
                let host = format!("bench-{:02}", i % DEVICES);
                // 900 finished (every 7th failed), 50 running, 50 queued.
                if i < JOBS - 2 * DEVICES {
                    s.schedule_job(id, &host)?;
                    s.start_job(id)?;
                    let end = if i % 7 == 0 {
                        JobEnd::incomplete(ErrorType::Job, "bench failure")
                    } else {
                        JobEnd::complete()
                    };
                    s.finish_job(id, &end)?;
                } else if i < JOBS - DEVICES {
                    s.schedule_job(id, &host)?;
                    s.start_job(id)?;
                }
            }
            Ok(first.expect("a job"))
        })
        .await
        .expect("seed");
    let path = log_path(&data_dir, big);
    std::fs::create_dir_all(path.parent().expect("dir")).expect("job dir");
    let mut w = JobLogWriter::open(&path).expect("log");
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..LINES {
        let (lvl, msg) = match i % 1000 {
            0 => (
                Level::Info,
                format!("start: 2.{} lava-test-shell (timeout 120s)", i / 1000),
            ),
            500 => (Level::Debug, format!("debug line {i}")),
            _ => (Level::Target, format!("big test output line {i:07}")),
        };
        batch.push(Entry::now(lvl, msg));
        if batch.len() == batch.capacity() {
            w.write_batch(&batch).expect("write");
            batch.clear();
        }
    }
    w.write_batch(&batch).expect("write");
    w.sync().expect("sync");
    let log_mb = std::fs::metadata(&path).expect("log").len() as f64 / 1e6;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(lavabox::api::serve(
        listener,
        app.clone(),
        std::future::pending(),
    ));
    let base = format!("http://{addr}");
    let secret = app
        .store()
        .call(|s| {
            let admin = s.user("admin")?.expect("admin");
            s.create_session(admin.id)
        })
        .await
        .expect("session");
    let cookie = format!("lavabox_session={secret}");
    let client = reqwest::Client::new();

    println!(
        "web UI, {DEVICES} devices, {JOBS} jobs, a {LINES}-line log ({log_mb:.0} MB); server time over a socket (p50 / p99):"
    );
    let t = Instant::now();
    let _ = time_get(&client, &format!("{base}/scheduler/job/{big}"), &cookie, 1).await;
    println!(
        "  {:<52} {:>9.2?} (indexes the whole log once)",
        "job page, 1,000,000-line log, first view",
        t.elapsed()
    );
    for (name, url, n) in [
        (
            "dashboard (50 devices, 1,000 jobs)",
            format!("{base}/"),
            200,
        ),
        ("dashboard, anonymous", format!("{base}/"), 200),
        (
            "job list, first page",
            format!("{base}/scheduler/alljobs"),
            200,
        ),
        (
            "job page, 1,000,000-line log (indexed)",
            format!("{base}/scheduler/job/{big}"),
            200,
        ),
        (
            "log lines 0..200",
            format!("{base}/scheduler/job/{big}/lines?start=0&count=200"),
            200,
        ),
        (
            "log lines 999,800..1,000,000",
            format!("{base}/scheduler/job/{big}/lines?start=999800&count=200"),
            200,
        ),
        (
            "log, 200 debug lines from position 900 (filtered)",
            format!("{base}/scheduler/job/{big}/lines?start=900&count=200&levels=debug"),
            50,
        ),
        (
            "search near the end (full scan)",
            format!("{base}/scheduler/job/{big}/search?q=line%200999990"),
            10,
        ),
    ] {
        let c = if name.contains("anonymous") {
            ""
        } else {
            cookie.as_str()
        };
        let (p50, p99) = time_get(&client, &url, c, n).await;
        println!("  {name:<52} {p50:>9.2?} / {p99:>9.2?}");
    }

    if !webdriver::available() {
        println!("time to first screen: skipped (chromium and chromium-driver are not installed)");
        return;
    }
    let b = webdriver::Browser::start(1280, 900).await;
    // The session cookie is set on the server's origin before the measured loads.
    b.goto(&format!("{base}/static/app.css")).await;
    b.exec(
        "document.cookie = arguments[0] + '; path=/'",
        json!([cookie]),
    )
    .await;
    println!(
        "time to first screen in headless Chromium (navigation start to paint), 5 loads each:"
    );
    let mut dash = Vec::new();
    let mut log = Vec::new();
    for _ in 0..5 {
        b.goto(&format!("{base}/")).await;
        let ms = b
            .exec(
                "const p = performance.getEntriesByName('first-contentful-paint')[0];
                 return p ? p.startTime : performance.timing.domContentLoadedEventEnd - performance.timing.navigationStart;",
                json!([]),
            )
            .await;
        dash.push(ms.as_f64().unwrap_or(f64::NAN));
        b.goto(&format!("{base}/scheduler/job/{big}")).await;
        b.wait_text("#log .line", "start: 2.0").await;
        let ms = b.exec("return performance.now()", json!([])).await;
        log.push(ms.as_f64().unwrap_or(f64::NAN));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "  {:<52} {:>7.1} ms (median first contentful paint)",
        "dashboard (50 devices, 1,000 jobs)",
        med(&mut dash)
    );
    println!(
        "  {:<52} {:>7.1} ms (median, first log rows on screen)",
        "job page, 1,000,000-line log",
        med(&mut log)
    );
    b.quit().await;
}
