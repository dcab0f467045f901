//! The scheduler's snapshot: the queue and every device with its health-check history,
//! read in one transaction for one scheduler pass.

use std::time::Duration;

use rusqlite::params;
use time::OffsetDateTime;

use super::device_types::list_device_types;
use super::devices::read_device;
use super::error::{Error, Step};
use super::jobs::{job_tags, priority_from, timeout_from};
use super::{Device, DeviceType, Store, opt_ts_from_sql, ts_from_sql};
use crate::model::{DeviceHealth, JobId, JobState, Priority};

/// A Submitted job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// Its id.
    pub id: JobId,
    /// Requested device type.
    pub requested_device_type: Option<String>,
    /// Required tags.
    pub tags: Vec<String>,
    /// 0–100.
    pub priority: Priority,
    /// Submission time.
    pub submit_time: OffsetDateTime,
    /// Health-check job.
    pub health_check: bool,
    /// MultiNode group.
    pub target_group: Option<String>,
    /// MultiNode sub id.
    pub sub_id: Option<String>,
    /// Submitter's username.
    pub submitter: String,
    /// Queue timeout.
    pub queue_timeout: Option<Duration>,
}

/// A device as the scheduler sees it, with its health-check history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSlot {
    /// The device.
    pub device: Device,
    /// End time of its last health check, if any.
    pub last_health_check_end: Option<OffsetDateTime>,
    /// Finished non-health-check jobs since its last health check.
    pub jobs_since_health_check: u64,
}

/// Everything one scheduler pass needs, read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSnapshot {
    /// Submitted jobs in LAVA's order: priority desc, submit time, sub id, id.
    pub queued: Vec<QueuedJob>,
    /// Every device that is not Retired, by hostname.
    pub devices: Vec<DeviceSlot>,
    /// Every device type.
    pub device_types: Vec<DeviceType>,
}

impl Store {
    /// One consistent read of the queue and the devices for a scheduler pass.
    pub fn scheduler_snapshot(&mut self) -> Result<SchedulerSnapshot, Error> {
        let step = "reading the scheduler snapshot";
        let tx = self.conn.transaction().step(step)?;
        let queued = {
            let mut stmt = tx
                .prepare(
                    "SELECT j.id, t.name, j.priority, j.submit_time, j.health_check, \
                     j.target_group, j.sub_id, u.username, j.queue_timeout_secs \
                     FROM jobs j JOIN users u ON u.id = j.submitter_id \
                     LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
                     WHERE j.state = ?1 \
                     ORDER BY j.priority DESC, j.submit_time, j.sub_id, j.id",
                )
                .step(step)?;
            type Raw = (
                i64,
                Option<String>,
                i64,
                String,
                bool,
                Option<String>,
                Option<String>,
                String,
                Option<i64>,
            );
            let rows: Vec<Raw> = stmt
                .query_map([JobState::Submitted.code()], |r| r.try_into())
                .step(step)?
                .collect::<Result<Vec<_>, _>>()
                .step(step)?;
            rows.into_iter()
                .map(|(id, dt, prio, submit, hc, group, sub, user, timeout)| {
                    Ok(QueuedJob {
                        id: JobId(id),
                        requested_device_type: dt,
                        tags: job_tags(&tx, id)?,
                        priority: priority_from("jobs", prio)?,
                        submit_time: ts_from_sql("jobs", &submit)?,
                        health_check: hc,
                        target_group: group,
                        sub_id: sub,
                        submitter: user,
                        queue_timeout: timeout_from(timeout),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?
        };
        let mut devices = Vec::new();
        let hostnames: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT hostname FROM devices WHERE health <> ?1 ORDER BY hostname")
                .step(step)?;
            stmt.query_map([DeviceHealth::Retired.code()], |r| r.get(0))
                .step(step)?
                .collect::<Result<Vec<_>, _>>()
                .step(step)?
        };
        for hostname in hostnames {
            let Some(device) = read_device(&tx, &hostname)? else {
                continue;
            };
            let (last_end, since): (Option<String>, i64) = tx
                .query_row(
                    "SELECT (SELECT end_time FROM jobs WHERE id = d.last_health_report_job), \
                     (SELECT count(*) FROM jobs j WHERE j.actual_device_id = d.id \
                      AND j.state = ?2 AND j.health_check = 0 \
                      AND j.end_time > coalesce((SELECT end_time FROM jobs \
                          WHERE id = d.last_health_report_job), '')) \
                     FROM devices d WHERE d.hostname = ?1",
                    params![hostname, JobState::Finished.code()],
                    |r| r.try_into(),
                )
                .step(step)?;
            devices.push(DeviceSlot {
                device,
                last_health_check_end: opt_ts_from_sql("jobs", last_end)?,
                jobs_since_health_check: u64::try_from(since).unwrap_or(0),
            });
        }
        let device_types = list_device_types(&tx)?;
        drop(tx);
        Ok(SchedulerSnapshot {
            queued,
            devices,
            device_types,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobHealth;
    use crate::model::lifecycle::JobEnd;
    use crate::store::now;
    use crate::store::testutil::{lab, qemu_job};

    #[test]
    fn queue_timeout_and_snapshot() {
        let (_dir, mut store) = lab();
        let mut low = qemu_job();
        low.priority = Priority::new(10).unwrap();
        low.queue_timeout = Some(Duration::from_secs(60));
        let low = store.insert_job(&low).unwrap();
        let mut high = qemu_job();
        high.priority = Priority::new(90).unwrap();
        let high = store.insert_job(&high).unwrap();

        let snap = store.scheduler_snapshot().unwrap();
        assert_eq!(
            snap.queued.iter().map(|q| q.id).collect::<Vec<_>>(),
            [high.id, low.id]
        );
        assert_eq!(snap.devices.len(), 2);
        assert_eq!(snap.devices[0].device.hostname, "q1");
        assert_eq!(snap.device_types[0].name, "qemu");

        // A health check then two jobs on q1.
        let (hc, _) = store.insert_health_check("q1", &qemu_job()).unwrap();
        store.finish_job(hc.id, &JobEnd::complete()).unwrap();
        store.schedule_job(high.id, "q1").unwrap();
        store.finish_job(high.id, &JobEnd::complete()).unwrap();
        let snap = store.scheduler_snapshot().unwrap();
        assert_eq!(snap.devices[0].jobs_since_health_check, 1);
        assert!(snap.devices[0].last_health_check_end.is_some());
        assert_eq!(snap.devices[1].last_health_check_end, None);

        assert!(
            store
                .cancel_expired_jobs(now() + Duration::from_secs(30))
                .unwrap()
                .is_empty()
        );
        let changes = store
            .cancel_expired_jobs(now() + Duration::from_secs(120))
            .unwrap();
        assert_eq!(changes.jobs.len(), 1);
        assert_eq!(changes.jobs[0].id, low.id);
        assert_eq!(changes.jobs[0].health, JobHealth::Canceled);
    }
}
