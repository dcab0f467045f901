//! The superuser's edits of a job record (REST `PUT`/`PATCH`/`DELETE /jobs/<id>/`): the
//! fields that do not take part in the job's life cycle, and deleting a job that holds no
//! device.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::error::{Error, Step};
use crate::model::{JobId, JobState, Priority};

/// What [`Store::update_job_record`] changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRecordUpdate {
    /// New description (LAVA's `description`, the job name).
    pub description: Option<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New failure comment (`Some(None)` clears it).
    pub failure_comment: Option<Option<String>>,
}

fn not_found(id: JobId) -> Error {
    Error::NotFound {
        kind: "job",
        name: id.to_string(),
    }
}

impl Store {
    /// Applies `update` to job `id`.
    pub fn update_job_record(&mut self, id: JobId, update: &JobRecordUpdate) -> Result<(), Error> {
        let n = self
            .conn
            .execute(
                "UPDATE jobs SET description = coalesce(?2, description), \
                 priority = coalesce(?3, priority), \
                 failure_comment = CASE WHEN ?4 THEN ?5 ELSE failure_comment END \
                 WHERE id = ?1",
                params![
                    id.0,
                    update.description,
                    update.priority.map(Priority::value),
                    update.failure_comment.is_some(),
                    update.failure_comment.clone().flatten()
                ],
            )
            .step("updating a job record")?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Deletes job `id` with its results, metadata and notifications; its files (the log at
    /// `joblog::log_path`) are the caller's to remove, by the same path rule. A job that may hold a device (scheduled,
    /// running or canceling) is refused, so no device is ever left without its job; so is a
    /// queued MultiNode sub-job, whose group would never start without it.
    pub fn delete_job(&mut self, id: JobId) -> Result<(), Error> {
        let step = "deleting a job";
        let tx = self.write_tx(step)?;
        let (state, sub_id): (i64, Option<String>) = tx
            .query_row(
                "SELECT state, sub_id FROM jobs WHERE id = ?1",
                [id.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .step(step)?
            .ok_or_else(|| not_found(id))?;
        let state = JobState::from_code(state).ok_or_else(|| Error::Invalid {
            what: "job state",
            reason: format!("unknown code {state}"),
        })?;
        let refusal = match state {
            JobState::Finished => None,
            JobState::Submitted if sub_id.is_none() => None,
            JobState::Submitted => Some("it is a queued MultiNode sub-job; cancel it first"),
            _ => Some("it may hold a device; cancel it and wait until it is finished"),
        };
        if let Some(reason) = refusal {
            return Err(Error::Invalid {
                what: "job deletion",
                reason: format!("job {id} cannot be deleted: {reason}"),
            });
        }
        tx.execute("DELETE FROM jobs WHERE id = ?1", [id.0])
            .step(step)?;
        tx.commit().step(step)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lifecycle::JobEnd;
    use crate::store::testutil;
    use crate::store::{NewDevice, NewDeviceType, NewJob, NewUser};

    #[test]
    fn records_change_and_only_idle_jobs_are_deleted() {
        let (_dir, mut s) = testutil::store();
        s.create_user(&NewUser::named("alice")).unwrap();
        s.create_device_type(&NewDeviceType::named("qemu")).unwrap();
        let mut device = NewDevice::new("qemu01", "qemu");
        device.health = crate::model::DeviceHealth::Good;
        s.create_device(&device).unwrap();
        let mut new = NewJob::new("alice", "job: x");
        new.requested_device_type = Some("qemu".into());
        let queued = s.insert_job(&new).unwrap().id;
        let running = s.insert_job(&new).unwrap().id;

        s.update_job_record(
            queued,
            &JobRecordUpdate {
                description: Some("renamed".into()),
                priority: Priority::new(90),
                failure_comment: Some(Some("why".into())),
            },
        )
        .unwrap();
        let job = s.job(queued).unwrap().unwrap();
        assert_eq!(
            (job.description.as_str(), job.priority.value()),
            ("renamed", 90)
        );
        assert!(matches!(
            s.update_job_record(JobId(999), &JobRecordUpdate::default()),
            Err(Error::NotFound { .. })
        ));

        s.schedule_job(running, "qemu01").unwrap();
        assert!(matches!(s.delete_job(running), Err(Error::Invalid { .. })));
        s.start_job(running).unwrap();
        s.finish_job(running, &JobEnd::complete()).unwrap();
        s.delete_job(running).unwrap();
        assert_eq!(s.job(running).unwrap(), None);
        s.delete_job(queued).unwrap();
        assert!(matches!(s.delete_job(queued), Err(Error::NotFound { .. })));
    }
}
