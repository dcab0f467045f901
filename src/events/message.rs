//! lava-publisher's message: five strings (topic, uuid, time, username, JSON data), rendered
//! from a bus event alone.
//!
//! Every field comes from the change record the store made inside the transaction that
//! changed the job or device ([`JobChange`], [`DeviceChange`]), never from the store at
//! render time: rendering happens later, on another task, and a re-read would show a later
//! state (a device's `job` gone by the time `Reserved` is rendered). It also keeps rendering
//! free of I/O, so the publisher sustains far more than LAVA's event rates.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{Event, Published, WorkerChange};
use crate::model::{DeviceHealth, DeviceState, JobState};
use crate::pyfmt::{py_isoformat, py_isoformat_tz};
use crate::store::{CurrentJob, DeviceChange, JobChange};

/// The username LAVA puts on device, worker and event messages.
pub const SYSTEM_USER: &str = "lavaserver";

/// One published message: LAVA's five ZMQ frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `<topic>.testjob`, `<topic>.device` or `<topic>.worker`.
    pub topic: String,
    /// A version-1 UUID, as Python's `uuid.uuid1()`.
    pub uuid: String,
    /// When it was published: UTC, Python `isoformat()` without a zone.
    pub datetime: String,
    /// The job's submitter, or [`SYSTEM_USER`].
    pub username: String,
    /// The JSON object, as text.
    pub data: String,
}

impl Message {
    /// The five frames in order.
    pub fn frames(&self) -> [&str; 5] {
        [
            &self.topic,
            &self.uuid,
            &self.datetime,
            &self.username,
            &self.data,
        ]
    }

    /// The WebSocket form: a JSON array of the same five strings (data stays a string).
    pub fn to_ws_text(&self) -> String {
        Value::from(self.frames().map(Value::from).to_vec()).to_string()
    }
}

/// Renders bus events into [`Message`]s. Cheap to clone; needs no I/O.
#[derive(Debug, Clone)]
pub struct Renderer {
    /// The instance's topic prefix (`[events] topic`).
    topic: String,
}

impl Renderer {
    /// A renderer publishing under `topic` (e.g. `org.lavabox`).
    pub fn new(topic: impl Into<String>) -> Renderer {
        Renderer {
            topic: topic.into(),
        }
    }

    /// Renders one event.
    pub fn render(&self, published: &Published) -> Message {
        let datetime = py_isoformat(published.at, 'T');
        let uuid = published.uuid.clone();
        let (suffix, username, data) = match &published.event {
            Event::Worker(change) => ("worker", SYSTEM_USER.to_owned(), worker_json(change)),
            Event::Job(change) => ("testjob", change.facts.submitter.clone(), job_json(change)),
            Event::Device(change) => ("device", SYSTEM_USER.to_owned(), device_json(change)),
        };
        let mut topic = String::with_capacity(self.topic.len() + 8);
        let _ = write!(topic, "{}.{suffix}", self.topic);
        Message {
            topic,
            uuid,
            datetime,
            username,
            data: data.to_string(),
        }
    }
}

/// `.testjob` data.
fn job_json(change: &JobChange) -> Value {
    let job = &change.facts;
    let mut m = Map::new();
    m.insert("job".into(), json!(change.id.0));
    m.insert("state".into(), json!(change.state.as_str()));
    m.insert("health".into(), json!(change.health.as_str()));
    // LAVA's legacy status (`get_legacy_status_display`), which the clients written before
    // state and health existed wait on (the documented `zmq_client.py` of older releases).
    m.insert(
        "status".into(),
        json!(change.state.legacy_status(change.health).as_str()),
    );
    m.insert("description".into(), json!(job.description));
    m.insert("priority".into(), json!(job.priority.value()));
    m.insert(
        "submit_time".into(),
        json!(py_isoformat_tz(job.submit_time, 'T')),
    );
    m.insert("submitter".into(), json!(job.submitter));
    m.insert("health_check".into(), json!(job.health_check));
    if let Some(sub_id) = &job.sub_id {
        m.insert("sub_id".into(), json!(sub_id));
    }
    if let Some(hostname) = &change.device {
        m.insert("device".into(), json!(hostname));
        if let Some(worker) = &job.worker {
            m.insert("worker".into(), json!(worker));
        }
    }
    if let Some(device_type) = &job.requested_device_type {
        m.insert("device_type".into(), json!(device_type));
    }
    // A Running job being canceled keeps its start time; a cancel before the start has none.
    let started = matches!(
        change.state,
        JobState::Running | JobState::Canceling | JobState::Finished
    );
    if let Some(t) = job.start_time.filter(|_| started) {
        m.insert("start_time".into(), json!(py_isoformat_tz(t, 'T')));
    }
    if let Some(t) = job.end_time.filter(|_| change.state == JobState::Finished) {
        m.insert("end_time".into(), json!(py_isoformat_tz(t, 'T')));
    }
    Value::Object(m)
}

/// A device's status in the names of LAVA before state and health (`Device.STATUS_CHOICES`
/// up to 2017.12), for the clients written then.
fn legacy_device_status(state: DeviceState, health: DeviceHealth) -> &'static str {
    match (state, health) {
        (_, DeviceHealth::Retired) => "Retired",
        (DeviceState::Idle, DeviceHealth::Maintenance | DeviceHealth::Bad) => "Offline",
        (DeviceState::Idle, _) => "Idle",
        (DeviceState::Reserved, _) => "Reserved",
        (DeviceState::Running, DeviceHealth::Maintenance) => "Going offline",
        (DeviceState::Running, _) => "Running",
    }
}

/// `.device` data.
fn device_json(change: &DeviceChange) -> Value {
    let mut m = Map::new();
    m.insert("health".into(), json!(change.health.as_str()));
    m.insert("state".into(), json!(change.state.as_str()));
    // Beside state and health, as on job events: the clients written before them (the seed's
    // `zmq_client.py`) read `status` of every message that names their job.
    m.insert(
        "status".into(),
        json!(legacy_device_status(change.state, change.health)),
    );
    m.insert("device".into(), json!(change.hostname));
    m.insert("device_type".into(), json!(change.device_type));
    m.insert("worker".into(), json!(change.worker));
    if let Some(job) = &change.job {
        m.insert("job".into(), display_id(job));
    }
    Value::Object(m)
}

/// `.worker` data.
fn worker_json(change: &WorkerChange) -> Value {
    json!({
        "hostname": change.hostname,
        "health": change.health.as_str(),
        "state": change.state.as_str(),
    })
}

/// LAVA's display id: `"12.1"` for a MultiNode sub-job, else the number.
fn display_id(job: &CurrentJob) -> Value {
    match &job.sub_id {
        Some(sub_id) => json!(sub_id),
        None => json!(job.id.0),
    }
}

/// A version-1 UUID for time `at`: LAVA's consumers only need it unique, but its shape is
/// kept (time fields, a random clock sequence and a random multicast node, which RFC 4122
/// allows when no MAC address is used).
pub fn uuid1(at: OffsetDateTime) -> String {
    // 100 ns intervals since 1582-10-15.
    const GREGORIAN_OFFSET: i128 = 0x01B2_1DD2_1381_4000;
    let ticks = (at.unix_timestamp_nanos() / 100 + GREGORIAN_OFFSET).max(0) as u64;
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        // No entropy source: fall back to the sub-tick time, still unique enough per process.
        random = (at.unix_timestamp_nanos() as u64).to_le_bytes();
    }
    let time_low = ticks & 0xFFFF_FFFF;
    let time_mid = (ticks >> 32) & 0xFFFF;
    let time_hi = ((ticks >> 48) & 0x0FFF) | 0x1000;
    let clock_seq = (u16::from_le_bytes([random[0], random[1]]) & 0x3FFF) | 0x8000;
    let node = random[2..8].iter().enumerate().fold(0u64, |acc, (i, b)| {
        let b = if i == 0 { b | 0x01 } else { *b };
        (acc << 8) | u64::from(b)
    });
    format!("{time_low:08x}-{time_mid:04x}-{time_hi:04x}-{clock_seq:04x}-{node:012x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn uuid_shape() {
        let t = datetime!(2023-01-10 10:00:00.123456 UTC);
        let u = uuid1(t);
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('1'), "{u}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(uuid1(t), uuid1(t));
    }

    fn device(job: Option<CurrentJob>) -> Published {
        Published::new(
            datetime!(2023-01-10 10:00:00 UTC),
            Event::Device(DeviceChange {
                hostname: "bbb01".into(),
                state: crate::model::DeviceState::Running,
                health: crate::model::DeviceHealth::Good,
                device_type: "beaglebone-black".into(),
                worker: Some("box".into()),
                job,
            }),
        )
    }

    #[test]
    fn legacy_device_statuses() {
        use crate::model::{DeviceHealth as H, DeviceState as S};
        assert_eq!(legacy_device_status(S::Idle, H::Good), "Idle");
        assert_eq!(legacy_device_status(S::Idle, H::Maintenance), "Offline");
        assert_eq!(legacy_device_status(S::Reserved, H::Unknown), "Reserved");
        assert_eq!(
            legacy_device_status(S::Running, H::Maintenance),
            "Going offline"
        );
        assert_eq!(legacy_device_status(S::Idle, H::Retired), "Retired");
    }

    #[test]
    fn one_event_has_one_uuid_for_every_renderer() {
        let published = device(None);
        let a = Renderer::new("org.lavabox").render(&published);
        let b = Renderer::new("org.lavabox").render(&published);
        assert_eq!(a.uuid, b.uuid);
        assert_eq!(a.uuid, published.uuid);
        assert_ne!(device(None).uuid, published.uuid);
    }

    #[test]
    fn job_events_carry_the_worker_and_the_legacy_status() {
        use crate::model::{JobHealth, JobId, Priority};
        use crate::store::{JobChange, JobFacts};
        let change = |state, health| {
            Published::new(
                datetime!(2023-01-10 10:00:00 UTC),
                Event::Job(JobChange {
                    id: JobId(5),
                    state,
                    health,
                    device: Some("qemu-01".into()),
                    facts: JobFacts {
                        submitter: "alice".into(),
                        description: "d".into(),
                        priority: Priority::new(50).unwrap(),
                        health_check: false,
                        sub_id: None,
                        requested_device_type: Some("qemu".into()),
                        worker: Some("box".into()),
                        submit_time: datetime!(2023-01-10 09:00:00 UTC),
                        start_time: Some(datetime!(2023-01-10 09:30:00 UTC)),
                        end_time: Some(datetime!(2023-01-10 10:00:00 UTC)),
                    },
                }),
            )
        };
        let data = |p: Published| -> Value {
            serde_json::from_str(&Renderer::new("org.lavabox").render(&p).data).unwrap()
        };
        let running = data(change(JobState::Running, JobHealth::Unknown));
        assert_eq!(running["worker"], "box");
        assert_eq!(running["status"], "Running");
        let done = data(change(JobState::Finished, JobHealth::Incomplete));
        assert_eq!(
            (&done["state"], &done["health"], &done["status"]),
            (
                &json!("Finished"),
                &json!("Incomplete"),
                &json!("Incomplete")
            )
        );
        let queued = data(change(JobState::Scheduled, JobHealth::Unknown));
        assert_eq!(queued["status"], "Submitted");
    }

    #[test]
    fn device_events_show_the_job_of_their_change() {
        let r = Renderer::new("org.lavabox");
        let check = |job, want: Value| {
            let m = r.render(&device(job));
            assert_eq!(m.topic, "org.lavabox.device");
            assert_eq!(m.username, SYSTEM_USER);
            assert_eq!(serde_json::from_str::<Value>(&m.data).unwrap(), want);
        };
        let base = json!({"health": "Good", "state": "Running", "device": "bbb01",
                          "device_type": "beaglebone-black", "worker": "box",
                          "status": "Running"});
        check(None, base.clone());
        let mut single = base.clone();
        single["job"] = json!(12);
        check(
            Some(CurrentJob {
                id: crate::model::JobId(12),
                sub_id: None,
            }),
            single,
        );
        let mut multinode = base;
        multinode["job"] = json!("12.1");
        check(
            Some(CurrentJob {
                id: crate::model::JobId(13),
                sub_id: Some("12.1".into()),
            }),
            multinode,
        );
    }

    #[test]
    fn worker_events_use_lava_names() {
        let m = Renderer::new("org.lavabox").render(&Published::new(
            datetime!(2023-01-10 10:00:00.5 UTC),
            Event::Worker(WorkerChange {
                hostname: "worker1".into(),
                state: crate::store::WorkerState::Offline,
                health: crate::store::WorkerHealth::Maintenance,
            }),
        ));
        assert_eq!(m.topic, "org.lavabox.worker");
        assert_eq!(m.username, SYSTEM_USER);
        assert_eq!(m.datetime, "2023-01-10T10:00:00.500000");
        assert_eq!(
            serde_json::from_str::<Value>(&m.data).unwrap(),
            json!({"hostname": "worker1", "health": "Maintenance", "state": "Offline"})
        );
    }

    #[test]
    fn ws_form_is_an_array_of_strings() {
        let m = Message {
            topic: "org.lavabox.device".into(),
            uuid: "u".into(),
            datetime: "d".into(),
            username: SYSTEM_USER.into(),
            data: r#"{"device":"qemu-01"}"#.into(),
        };
        let v: Value = serde_json::from_str(&m.to_ws_text()).unwrap();
        assert_eq!(
            v,
            json!([
                "org.lavabox.device",
                "u",
                "d",
                "lavaserver",
                "{\"device\":\"qemu-01\"}"
            ])
        );
    }
}
