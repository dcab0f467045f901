//! Fetch time of a `from: git` test definition for the first job and for a repeated job
//! from the same repository, printed (no assertions).
//!
//! `cargo bench --bench testdef` builds a repository the size of Linaro's test-definitions
//! (about 2,000 files of scripts and data over 50 commits), serves it with Debian's
//! `git daemon` (git://) and times `testdef::git::Mirrors::checkout`, the dispatcher's own
//! path: the first job creates the mirror (a full clone), the next ones refresh it (a fetch
//! that transfers nothing new) and clone from it locally. For comparison it times what LAVA
//! runs for every job, `git clone --depth=1` from the server.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lavabox::pipeline::step::GitSource;
use lavabox::testdef::git::Mirrors;

const FILES: usize = 2000;
const COMMITS: usize = 50;
const REPEATS: usize = 5;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.org")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.org")
        .status()
        .expect("git runs")
        .success();
    assert!(ok, "git {args:?}");
}

fn make_repo(base: &Path) -> std::path::PathBuf {
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "master"]);
    for c in 0..COMMITS {
        for f in (c..FILES).step_by(COMMITS) {
            let dir = work.join(format!("automated/linux/t{:03}", f % 200));
            std::fs::create_dir_all(&dir).unwrap();
            let body: String = (0..40)
                .map(|l| format!("echo 'test {f} line {l} revision {c}' # {}\n", f * l + c))
                .collect();
            std::fs::write(dir.join(format!("s{f}.sh")), body).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", &format!("commit {c}")]);
    }
    let srv = base.join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    git(
        base,
        &[
            "clone",
            "-q",
            "--bare",
            &work.display().to_string(),
            &srv.join("test-definitions.git").display().to_string(),
        ],
    );
    srv
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let base = tempfile::tempdir().unwrap();
    let srv = make_repo(base.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Command::new("/usr/lib/git-core/git-daemon")
        .args([
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", srv.display()),
        ])
        .arg(&srv)
        .spawn()
        .expect("git daemon");
    let url = format!("git://127.0.0.1:{port}/test-definitions.git");
    // The daemon is ready once it answers.
    let ready = Instant::now();
    while !Command::new("git")
        .args(["ls-remote", &url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "git daemon never answered"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mirrors = Mirrors::new(base.path().join("mirrors"));
    let source = GitSource {
        repository: url.clone(),
        branch: None,
        revision: None,
        shallow: true,
        history: true,
    };
    let quiet = |_: String| {};
    let mut times = Vec::new();
    for n in 0..=REPEATS {
        let dest = base.path().join(format!("job{n}"));
        let t = Instant::now();
        let out = rt
            .block_on(mirrors.checkout(&source, &dest, &quiet))
            .expect("checkout");
        times.push((t.elapsed(), out.mirror));
    }
    let mut lava = Vec::new();
    for n in 0..REPEATS {
        let dest = base.path().join(format!("lava{n}"));
        let t = Instant::now();
        git(
            base.path(),
            &[
                "clone",
                "-q",
                "--depth=1",
                &url,
                &dest.display().to_string(),
            ],
        );
        lava.push(t.elapsed());
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    println!("testdef fetch, {FILES} files over {COMMITS} commits, served by git daemon:");
    println!("  first job (mirror created):     {}", ms(times[0].0));
    let repeated: Vec<Duration> = times[1..].iter().map(|t| t.0).collect();
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "  repeated job (mirror refreshed): median {} of {REPEATS} ({})",
        ms(median(&repeated)),
        repeated
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  LAVA's per-job `git clone --depth=1`: median {} of {REPEATS}",
        ms(median(&lava))
    );
}
