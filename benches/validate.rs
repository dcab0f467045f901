//! Benchmark: validating a generated ~2 MB LAVA job (valid, and with an error near its end),
//! and refusing hostile files (billion laughs, deep nesting). Prints figures; asserts nothing.
//! Run with `cargo bench --bench validate`.
//!
//! Each figure is the best of several runs, as wall time and as the CPU time of this thread
//! (`/proc/thread-self/schedstat`): on a shared machine the wall time includes waiting for a
//! core, the CPU time does not.

use std::time::{Duration, Instant};

use lavabox::jobdef::{self, Mode};

#[path = "support/bigjob.rs"]
mod bigjob;
use bigjob::big_job;

/// The same job with one mistake in its last action: an unknown boot method.
fn big_invalid_job(target: usize) -> String {
    let mut job = big_job(target);
    job.push_str("- boot:\n    namespace: target\n    method: no-such-method\n");
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

/// CPU time this thread has run, from the scheduler's own accounting.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

impl Timing {
    fn show(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        match self.cpu {
            Some(cpu) => format!("{:.1} ms wall, {:.1} ms CPU", ms(self.wall), ms(cpu)),
            None => format!("{:.1} ms wall", ms(self.wall)),
        }
    }
}

fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut wall = Duration::MAX;
    let mut cpu: Option<Duration> = None;
    let mut last = None;
    for _ in 0..runs {
        let (start, cpu_start) = (Instant::now(), thread_cpu());
        let out = f();
        wall = wall.min(start.elapsed());
        if let (Some(a), Some(b)) = (cpu_start, thread_cpu()) {
            let used = b.saturating_sub(a);
            cpu = Some(cpu.map_or(used, |c| c.min(used)));
        }
        last = Some(out);
    }
    let out = match last {
        Some(out) => out,
        None => f(),
    };
    (Timing { wall, cpu }, out)
}

/// Peak resident memory of this process since the last [`reset_peak`], in MB.
fn peak_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the kernel's peak-RSS mark to the current RSS (`clear_refs`, value 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn report(name: &str, job: &str, mode: Mode) {
    let (t, result) = time(10, || jobdef::parse_str_mode(job, mode));
    match &result {
        Ok(def) => println!(
            "{name} ({:.2} MB, {} actions, {mode:?}): ok, best of 10 {}",
            job.len() as f64 / 1e6,
            def.actions.len(),
            t.show()
        ),
        Err(problems) => {
            println!(
                "{name} ({:.2} MB, {mode:?}): {} problem(s), best of 10 {}",
                job.len() as f64 / 1e6,
                problems.len(),
                t.show()
            );
            for p in problems.iter().take(3) {
                println!("    {p}");
            }
        }
    }
}

/// Resident memory of this process now, in MB.
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak memory `f` adds to this process, in MB (one run, one thread).
fn added_peak<T>(f: impl FnOnce() -> T) -> Option<f64> {
    reset_peak();
    let before = rss_mb()?;
    let out = f();
    let peak = peak_mb()?;
    drop(out);
    Some(peak - before)
}

fn main() {
    let job = big_job(2_000_000);
    // Memory first, before the timings' allocations leave freed heap for later runs to reuse.
    // Each figure is a fresh process's growth, so later ones may reuse what earlier freed:
    // the tree alone, then validation (the tree and the checks), then the typed definition
    // a submission builds on top.
    let show = |mb: Option<f64>| mb.map_or("?".to_owned(), |mb| format!("{mb:.1} MB"));
    println!(
        "  memory of one {:.2} MB job: YAML tree {}, validation {}, typed definition (submission) {}",
        job.len() as f64 / 1e6,
        show(added_peak(|| jobdef::yaml::load(&job))),
        show(added_peak(|| jobdef::validate_str_mode(
            &job,
            Mode::Lenient
        ))),
        show(added_peak(|| jobdef::parse_str_mode(&job, Mode::Lenient))),
    );
    let (t, _) = time(5, || jobdef::yaml::load(&job));
    println!("  YAML tree (saphyr-parser events): {}", t.show());
    report("validate valid job", &job, Mode::Lenient);
    report("validate valid job", &job, Mode::Strict);
    report(
        "validate invalid job",
        &big_invalid_job(2_000_000),
        Mode::Lenient,
    );

    let laughs = billion_laughs();
    reset_peak();
    let before = peak_mb();
    let (t, result) = time(10, || jobdef::parse(laughs.as_bytes()));
    let peak = peak_mb();
    println!(
        "billion laughs ({} bytes, refused: {}): best of 10 {}; peak RSS {} MB (before: {} MB)",
        laughs.len(),
        result.is_err(),
        t.show(),
        peak.map_or("?".to_owned(), |p| format!("{p:.1}")),
        before.map_or("?".to_owned(), |p| format!("{p:.1}")),
    );
    let deep = "[".repeat(1_000_000);
    let (t, result) = time(10, || jobdef::parse(deep.as_bytes()));
    println!(
        "1,000,000 nested '[' (refused: {}): best of 10 {}",
        result.is_err(),
        t.show()
    );
}
