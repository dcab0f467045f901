//! Benchmark: validating a ~2 MB generated job, and refusing a billion-laughs file.
//! Prints figures; asserts nothing. Run with `cargo bench --bench validate`.

use std::time::{Duration, Instant};

use lavabox::jobdef;

/// A valid job of roughly `target` bytes: many deploy/boot/test blocks with inline tests.
fn big_job(target: usize) -> String {
    let mut job = String::from(
        "device_type: qemu\njob_name: bench\nvisibility: public\npriority: medium\ntimeouts:\n  job: {hours: 10}\n  action: {minutes: 10}\nmetadata: {build: '1'}\nactions:\n",
    );
    let mut i = 0;
    while job.len() < target {
        job.push_str(&format!(
            "- deploy:\n    to: tmpfs\n    images:\n      rootfs: {{url: 'https://files.example.org/{i}/disk.qcow2.xz', image_arg: '-drive format=qcow2,file={{rootfs}}', format: qcow2, compression: xz}}\n    os: debian\n- boot:\n    method: qemu\n    media: tmpfs\n    prompts: ['root@debian:~#']\n    auto_login: {{login_prompt: 'login:', username: root}}\n- test:\n    timeout: {{minutes: 5}}\n    definitions:\n"
        ));
        for t in 0..4 {
            job.push_str(&format!(
                "    - from: inline\n      name: smoke-{i}-{t}\n      path: inline/smoke-{t}.yaml\n      repository:\n        metadata: {{format: Lava-Test Test Definition 1.0, name: smoke-{t}, description: 'generated test {t}'}}\n        run:\n          steps:\n          - lava-test-case uname --shell uname -a\n          - lava-test-case kernel-{t} --result pass\n          - echo 'a longer step to make the job bigger {i} {t}'\n    - {{from: git, repository: 'https://git.example.org/tests-{i}.git', path: smoke/{t}.yaml, name: git-{i}-{t}, parameters: {{A: '1', B: '2'}}}}\n"
            ));
        }
        i += 1;
    }
    job
}

fn billion_laughs() -> String {
    let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(", ");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    text
}

fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    match last {
        Some(out) => (best, out),
        None => (best, f()),
    }
}

fn main() {
    let job = big_job(2_000_000);
    phases(&job);
    events_only(&job);
    let (elapsed, result) = time(10, || jobdef::parse(job.as_bytes()));
    let actions = result.as_ref().map(|j| j.actions.len()).unwrap_or(0);
    println!(
        "validate {:.2} MB job ({} actions, valid: {}): best of 10 {:.1} ms",
        job.len() as f64 / 1e6,
        actions,
        result.is_ok(),
        elapsed.as_secs_f64() * 1e3
    );
    if let Err(problems) = &result {
        for p in problems.iter().take(5) {
            println!("  {p}");
        }
    }
    let laughs = billion_laughs();
    let (elapsed, result) = time(10, || jobdef::parse(laughs.as_bytes()));
    println!(
        "billion laughs ({} bytes, refused: {}): best of 10 {:.3} ms",
        laughs.len(),
        result.is_err(),
        elapsed.as_secs_f64() * 1e3
    );
    let deep = "[".repeat(1_000_000);
    let (elapsed, result) = time(10, || jobdef::parse(deep.as_bytes()));
    println!(
        "1,000,000 nested '[' (refused: {}): best of 10 {:.3} ms",
        result.is_err(),
        elapsed.as_secs_f64() * 1e3
    );
}

/// Prints how long building the YAML tree alone takes.
fn phases(job: &str) {
    let (t, _) = time(5, || jobdef::yaml::load(job));
    println!("  load only: {:.1} ms", t.as_secs_f64() * 1e3);
}

/// Prints how long the YAML event parser alone takes (the floor for any validation).
fn events_only(job: &str) {
    let (t, n) = time(5, || {
        let mut parser = saphyr_parser::Parser::new_from_str(job);
        let mut n = 0usize;
        while let Some(Ok(_)) = parser.next_event() {
            n += 1;
        }
        n
    });
    println!(
        "  saphyr events only: {:.1} ms ({n} events)",
        t.as_secs_f64() * 1e3
    );
}
