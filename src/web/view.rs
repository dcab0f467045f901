//! What pages show, as template values: jobs, devices and durations in the words the pages
//! use, and the appliance's own health. Pure apart from [`health`], which reads `/proc`,
//! `/sys` and the data directory's file system.

use std::path::Path;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::model::{JobHealth, JobState};
use crate::store::{Device, Job};

/// Percent-encodes `s` for a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A timestamp as pages show it (UTC, to the second).
pub fn time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A span as pages show it: `45s`, `3m 20s`, `2h 05m`, `3d 4h`.
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// The CSS class of a job's state and health (`ok`, `bad`, `live`, `idle`).
pub fn job_class(state: JobState, health: JobHealth) -> &'static str {
    match (state, health) {
        (JobState::Finished, JobHealth::Complete) => "ok",
        (JobState::Finished, JobHealth::Incomplete) => "bad",
        (JobState::Finished, _) => "idle",
        (JobState::Running | JobState::Canceling, _) => "live",
        _ => "wait",
    }
}

/// A job row.
pub fn job(j: &Job, now: OffsetDateTime) -> Value {
    let id = j.sub_id.clone().unwrap_or_else(|| j.id.to_string());
    let ran = j
        .start_time
        .map(|s| span((j.end_time.unwrap_or(now) - s).whole_seconds()));
    json!({
        "id": id,
        "description": j.description,
        "submitter": j.submitter,
        "state": j.state.as_str(),
        "health": j.health.as_str(),
        "class": job_class(j.state, j.health),
        "device_type": j.requested_device_type,
        "device": j.actual_device,
        "submitted": time(j.submit_time),
        "waited": span((j.start_time.unwrap_or(now) - j.submit_time).whole_seconds()),
        "started": j.start_time.map(time),
        "ended": j.end_time.map(time),
        "ran": ran,
        "health_check": j.health_check,
        "failure": j.failure_comment,
        "finished": j.state == JobState::Finished,
        "public": matches!(j.visibility, crate::store::Visibility::Public),
    })
}

/// A device row; `job` is its current job when the caller may see it, with how long it has
/// held the device.
pub fn device(d: &Device, current: Option<&Job>, now: OffsetDateTime) -> Value {
    let since =
        current.map(|j| span((now - j.start_time.unwrap_or(j.submit_time)).whole_seconds()));
    json!({
        "hostname": d.hostname,
        "device_type": d.device_type,
        "description": d.description,
        "state": d.state.as_str(),
        "health": d.health.as_str(),
        "health_class": match d.health {
            crate::model::DeviceHealth::Good => "ok",
            crate::model::DeviceHealth::Bad => "bad",
            crate::model::DeviceHealth::Maintenance | crate::model::DeviceHealth::Retired => "idle",
            _ => "wait",
        },
        "tags": d.tags,
        "public": d.is_public,
        "job": current.map(|j| j.sub_id.clone().unwrap_or_else(|| j.id.to_string())),
        "job_description": current.map(|j| j.description.clone()),
        "since": since,
        "worker": d.worker_name,
    })
}

/// The appliance's health: disk of the data directory, memory, uptime, load and the
/// temperatures the board reports (`/sys/class/thermal`); what cannot be read is left out.
pub fn health(data_dir: &Path) -> Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let memory = match (kib("MemTotal:"), kib("MemAvailable:")) {
        (Some(total), Some(avail)) => json!({
            "used_mib": (total - avail.min(total)) / 1024,
            "total_mib": total / 1024,
            "percent": (total - avail.min(total)) * 100 / total.max(1),
        }),
        _ => Value::Null,
    };
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
        })
        .map(|s| span(s as i64));
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let mut temperatures = Vec::new();
    if let Ok(zones) = std::fs::read_dir("/sys/class/thermal") {
        for zone in zones.flatten() {
            let p = zone.path();
            let Some(milli) = std::fs::read_to_string(p.join("temp"))
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
            else {
                continue;
            };
            let kind = std::fs::read_to_string(p.join("type")).unwrap_or_default();
            temperatures.push(
                json!({ "zone": kind.trim(), "celsius": format!("{:.1}", milli as f64 / 1000.0) }),
            );
        }
    }
    json!({
        "disk": disk(data_dir),
        "memory": memory,
        "uptime": uptime,
        "load": load,
        "temperatures": temperatures,
    })
}

/// Free and total space of the file system holding `dir`, from `df` (POSIX output), which
/// keeps `statvfs` and its `unsafe` out of the crate.
fn disk(dir: &Path) -> Value {
    let out = std::process::Command::new("df")
        .args(["-P", "-k"])
        .arg(dir)
        .output();
    let Ok(out) = out else { return Value::Null };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(row) = text.lines().nth(1) else {
        return Value::Null;
    };
    let f: Vec<&str> = row.split_whitespace().collect();
    match (
        f.get(1).and_then(|v| v.parse::<u64>().ok()),
        f.get(3).and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(total), Some(avail)) => json!({
            "free_gib": format!("{:.1}", avail as f64 / 1048576.0),
            "total_gib": format!("{:.1}", total as f64 / 1048576.0),
            "percent": (total - avail.min(total)) * 100 / total.max(1),
        }),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_urls() {
        assert_eq!(span(-3), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(200), "3m 20s");
        assert_eq!(span(7500), "2h 05m");
        assert_eq!(span(3 * 86400 + 4 * 3600), "3d 4h");
        assert_eq!(
            url_encode("/scheduler/job/1?x=a b"),
            "/scheduler/job/1%3Fx%3Da%20b"
        );
    }
}
