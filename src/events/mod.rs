//! The in-process event bus: every job and device state/health change is published here
//! once, by whoever applied it to the store; the scheduler's wake-ups, the ZMQ publisher,
//! notifications and the web UI subscribe.
//!
//! Publishing never blocks: the bus is a bounded `broadcast` channel, and a subscriber that
//! falls behind loses the oldest events (it is told how many) rather than stalling a job.
//!
//! LAVA's wire forms of these events live beside the bus: [`message`] renders an event into
//! lava-publisher's five strings (from the change record alone: the store captured what the
//! JSON needs inside the transaction that made the change), [`zmq`]
//! publishes them on a ZMQ `PUB` socket from its own thread, and [`ws`] serves them on `/ws/`.

pub mod message;
pub mod ws;
pub mod zmq;

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::store::{Changes, DeviceChange, JobChange, WorkerHealth, WorkerState};

/// How many events a slow subscriber may lag behind before it loses the oldest.
const CAPACITY: usize = 4096;

/// One change, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A job's state or health changed.
    Job(JobChange),
    /// A device's state or health changed.
    Device(DeviceChange),
    /// A worker's state or health changed.
    Worker(WorkerChange),
}

/// A worker's new state and health, for LAVA's `.worker` event ([`message`] writes them as
/// LAVA's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerChange {
    /// The worker's hostname.
    pub hostname: String,
    /// Online or Offline.
    pub state: WorkerState,
    /// Active, Maintenance or Retired.
    pub health: WorkerHealth,
}

/// An event with the time it was published and its message uuid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// When the change was published (UTC).
    pub at: OffsetDateTime,
    /// The event's message uuid (a version-1 UUID), made once when it is published so that
    /// every subscriber (ZMQ, each WebSocket) sees the same one, as lava-publisher forwards
    /// one message to all.
    pub uuid: String,
    /// What changed.
    pub event: Event,
}

impl Published {
    /// `event`, published at `at`, with a new uuid.
    pub fn new(at: OffsetDateTime, event: Event) -> Published {
        Published {
            at,
            uuid: message::uuid1(at),
            event,
        }
    }
}

/// The bus. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Published>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(CAPACITY);
        Bus { tx }
    }

    /// Publishes what one store call changed: devices first, then jobs, which is the order
    /// LAVA's publisher shows (device Reserved before job Scheduled, device Idle before job
    /// Finished).
    pub fn publish(&self, changes: &Changes) {
        let at = OffsetDateTime::now_utc();
        let events = changes
            .devices
            .iter()
            .cloned()
            .map(Event::Device)
            .chain(changes.jobs.iter().cloned().map(Event::Job));
        for event in events {
            // No subscribers is not an error: nobody is listening yet.
            let _ = self.tx.send(Arc::new(Published::new(at, event)));
        }
    }

    /// Publishes a worker change (lavabox's single built-in worker going on- or offline).
    pub fn publish_worker(&self, change: WorkerChange) {
        let at = OffsetDateTime::now_utc();
        let _ = self
            .tx
            .send(Arc::new(Published::new(at, Event::Worker(change))));
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceHealth, DeviceState, JobHealth, JobId, JobState, Priority};
    use crate::store::{CurrentJob, JobFacts};

    #[test]
    fn devices_come_before_jobs() {
        let bus = Bus::new();
        let mut rx = bus.subscribe();
        bus.publish(&Changes {
            jobs: vec![JobChange {
                id: JobId(1),
                state: JobState::Scheduled,
                health: JobHealth::Unknown,
                device: Some("qemu-01".into()),
                facts: JobFacts {
                    submitter: "alice".into(),
                    description: "d".into(),
                    priority: Priority::new(50).unwrap(),
                    health_check: false,
                    sub_id: None,
                    requested_device_type: Some("qemu".into()),
                    worker: None,
                    submit_time: OffsetDateTime::UNIX_EPOCH,
                    start_time: None,
                    end_time: None,
                },
            }],
            devices: vec![DeviceChange {
                hostname: "qemu-01".into(),
                state: DeviceState::Reserved,
                health: DeviceHealth::Good,
                device_type: "qemu".into(),
                worker: None,
                job: Some(CurrentJob {
                    id: JobId(1),
                    sub_id: None,
                }),
            }],
        });
        assert!(matches!(rx.try_recv().unwrap().event, Event::Device(_)));
        assert!(matches!(rx.try_recv().unwrap().event, Event::Job(_)));
        assert!(rx.try_recv().is_err());
    }
}
