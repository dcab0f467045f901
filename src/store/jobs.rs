//! Jobs: insertion (single and MultiNode) and reading one job back. Their state machine
//! is `store::lifecycle`; lists and filters are `store::joblist`.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::error::{Error, Step};
use super::tags::tag_id;
use super::update::SetColumns;
use super::users::{group_id, user_id};
use super::{Store, decode, now, opt_ts_from_sql, ts_from_sql, ts_to_sql};
use crate::model::{ErrorType, JobHealth, JobId, JobState, Priority};

/// Who may see a job (LAVA's `visibility`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Everyone, anonymous users included (LAVA's default).
    #[default]
    Public,
    /// The submitter (and superusers) only.
    Personal,
    /// Members of these groups (and the submitter).
    Group(Vec<String>),
}

impl Visibility {
    /// LAVA's code for [`Visibility::Personal`].
    pub(super) const PERSONAL: i64 = 0;
    /// LAVA's code for [`Visibility::Public`].
    pub(super) const PUBLIC: i64 = 1;
    /// LAVA's code for [`Visibility::Group`].
    pub(super) const GROUP: i64 = 2;

    fn code(&self) -> i64 {
        match self {
            Visibility::Personal => Visibility::PERSONAL,
            Visibility::Public => Visibility::PUBLIC,
            Visibility::Group(_) => Visibility::GROUP,
        }
    }
}

/// What [`Store::insert_job`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Username of the submitter (must exist).
    pub submitter: String,
    /// The job name.
    pub description: String,
    /// The definition the dispatcher runs.
    pub definition: String,
    /// The text as submitted.
    pub original_definition: String,
    /// 0–100.
    pub priority: Priority,
    /// Who may see it.
    pub visibility: Visibility,
    /// Device type name or alias; `None` for jobs without a device.
    pub requested_device_type: Option<String>,
    /// Device tags the job requires (must exist).
    pub tags: Vec<String>,
    /// Whether this is a health check.
    pub health_check: bool,
    /// Cancel the job if still queued after this long.
    pub queue_timeout: Option<Duration>,
}

impl NewJob {
    /// A public, medium-priority job whose original definition is `definition`.
    pub fn new(submitter: impl Into<String>, definition: impl Into<String>) -> NewJob {
        let definition = definition.into();
        NewJob {
            submitter: submitter.into(),
            description: String::new(),
            original_definition: definition.clone(),
            definition,
            priority: Priority::DEFAULT,
            visibility: Visibility::Public,
            requested_device_type: None,
            tags: Vec::new(),
            health_check: false,
            queue_timeout: None,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Submitter's username.
    pub submitter: String,
    /// Job name.
    pub description: String,
    /// The definition the dispatcher runs.
    pub definition: String,
    /// The text as submitted.
    pub original_definition: String,
    /// MultiNode: the whole submission; empty otherwise.
    pub multinode_definition: String,
    /// Life-cycle state.
    pub state: JobState,
    /// Outcome; Unknown until Finished.
    pub health: JobHealth,
    /// 0–100.
    pub priority: Priority,
    /// Who may see it.
    pub visibility: Visibility,
    /// Requested device type.
    pub requested_device_type: Option<String>,
    /// The device it was scheduled on.
    pub actual_device: Option<String>,
    /// Required device tags, sorted.
    pub tags: Vec<String>,
    /// Health-check job.
    pub health_check: bool,
    /// MultiNode group name.
    pub target_group: Option<String>,
    /// MultiNode sub id, e.g. `12.1`.
    pub sub_id: Option<String>,
    /// Submission time.
    pub submit_time: OffsetDateTime,
    /// When it started running.
    pub start_time: Option<OffsetDateTime>,
    /// When it finished.
    pub end_time: Option<OffsetDateTime>,
    /// Why it failed, as reported by the dispatcher.
    pub failure_comment: Option<String>,
    /// LAVA's error class of the failure.
    pub error_type: Option<ErrorType>,
    /// Queue timeout.
    pub queue_timeout: Option<Duration>,
}

pub(super) const JOB_SELECT: &str = "SELECT j.id, u.username, j.description, j.definition, \
     j.original_definition, j.multinode_definition, j.state, j.health, j.priority, \
     j.visibility, t.name, d.hostname, j.health_check, j.target_group, j.sub_id, \
     j.submit_time, j.start_time, j.end_time, j.failure_comment, j.error_type, \
     j.queue_timeout_secs \
     FROM jobs j JOIN users u ON u.id = j.submitter_id \
     LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
     LEFT JOIN devices d ON d.id = j.actual_device_id";

/// A job row before decoding codes and timestamps.
pub(super) struct JobRow {
    pub(super) id: i64,
    pub(super) submitter: String,
    pub(super) description: String,
    pub(super) definition: String,
    pub(super) original_definition: String,
    pub(super) multinode_definition: String,
    pub(super) state: i64,
    pub(super) health: i64,
    pub(super) priority: i64,
    pub(super) visibility: i64,
    pub(super) requested_device_type: Option<String>,
    pub(super) actual_device: Option<String>,
    pub(super) health_check: bool,
    pub(super) target_group: Option<String>,
    pub(super) sub_id: Option<String>,
    pub(super) submit_time: String,
    pub(super) start_time: Option<String>,
    pub(super) end_time: Option<String>,
    pub(super) failure_comment: Option<String>,
    pub(super) error_type: Option<i64>,
    pub(super) queue_timeout: Option<i64>,
}

pub(super) fn job_row(row: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: row.get(0)?,
        submitter: row.get(1)?,
        description: row.get(2)?,
        definition: row.get(3)?,
        original_definition: row.get(4)?,
        multinode_definition: row.get(5)?,
        state: row.get(6)?,
        health: row.get(7)?,
        priority: row.get(8)?,
        visibility: row.get(9)?,
        requested_device_type: row.get(10)?,
        actual_device: row.get(11)?,
        health_check: row.get(12)?,
        target_group: row.get(13)?,
        sub_id: row.get(14)?,
        submit_time: row.get(15)?,
        start_time: row.get(16)?,
        end_time: row.get(17)?,
        failure_comment: row.get(18)?,
        error_type: row.get(19)?,
        queue_timeout: row.get(20)?,
    })
}

fn names(conn: &Connection, sql: &str, id: i64, step: &'static str) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(sql).step(step)?;
    stmt.query_map([id], |r| r.get(0))
        .step(step)?
        .collect::<Result<Vec<String>, _>>()
        .step(step)
}

pub(super) fn job_tags(conn: &Connection, id: i64) -> Result<Vec<String>, Error> {
    names(
        conn,
        "SELECT g.name FROM tags g JOIN job_tags jt ON jt.tag_id = g.id \
         WHERE jt.job_id = ?1 ORDER BY g.name",
        id,
        "reading job tags",
    )
}

pub(super) fn priority_from(table: &'static str, value: i64) -> Result<Priority, Error> {
    Priority::new(value).ok_or_else(|| Error::Corrupt {
        table,
        detail: format!("priority {value} outside 0-100"),
    })
}

pub(super) fn timeout_from(secs: Option<i64>) -> Option<Duration> {
    secs.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
}

/// Reads one job's tags and viewing groups, then decodes it.
fn finish_job(conn: &Connection, raw: JobRow) -> Result<Job, Error> {
    let groups = if raw.visibility == Visibility::GROUP {
        names(
            conn,
            "SELECT g.name FROM groups g JOIN job_viewing_groups v ON v.group_id = g.id \
             WHERE v.job_id = ?1 ORDER BY g.name",
            raw.id,
            "reading job viewing groups",
        )?
    } else {
        Vec::new()
    };
    let tags = job_tags(conn, raw.id)?;
    decode_job(raw, tags, groups)
}

/// Decodes a job row given its tags and (for group visibility) viewing groups, both sorted.
pub(super) fn decode_job(
    raw: JobRow,
    tags: Vec<String>,
    groups: Vec<String>,
) -> Result<Job, Error> {
    const T: &str = "jobs";
    let visibility = match raw.visibility {
        Visibility::PERSONAL => Visibility::Personal,
        Visibility::PUBLIC => Visibility::Public,
        Visibility::GROUP => Visibility::Group(groups),
        other => {
            return Err(Error::Corrupt {
                table: T,
                detail: format!("unknown visibility code {other}"),
            });
        }
    };
    Ok(Job {
        id: JobId(raw.id),
        submitter: raw.submitter,
        description: raw.description,
        definition: raw.definition,
        original_definition: raw.original_definition,
        multinode_definition: raw.multinode_definition,
        state: decode(T, "job state", raw.state, JobState::from_code)?,
        health: decode(T, "job health", raw.health, JobHealth::from_code)?,
        priority: priority_from(T, raw.priority)?,
        visibility,
        requested_device_type: raw.requested_device_type,
        actual_device: raw.actual_device,
        tags,
        health_check: raw.health_check,
        target_group: raw.target_group,
        sub_id: raw.sub_id,
        submit_time: ts_from_sql(T, &raw.submit_time)?,
        start_time: opt_ts_from_sql(T, raw.start_time)?,
        end_time: opt_ts_from_sql(T, raw.end_time)?,
        failure_comment: raw.failure_comment,
        error_type: raw
            .error_type
            .map(|c| decode(T, "error type", c, ErrorType::from_code))
            .transpose()?,
        queue_timeout: timeout_from(raw.queue_timeout),
    })
}

/// [`Error::NotFound`] unless job `id` exists.
pub(super) fn job_exists(conn: &Connection, id: JobId) -> Result<(), Error> {
    let found: Option<i64> = conn
        .query_row("SELECT id FROM jobs WHERE id = ?1", [id.0], |r| r.get(0))
        .optional()
        .step("reading a job")?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::NotFound {
            kind: "job",
            name: id.to_string(),
        }),
    }
}

pub(super) fn read_job(conn: &Connection, id: JobId) -> Result<Option<Job>, Error> {
    conn.query_row(&format!("{JOB_SELECT} WHERE j.id = ?1"), [id.0], job_row)
        .optional()
        .step("reading a job")?
        .map(|raw| finish_job(conn, raw))
        .transpose()
}

/// Inserts one job row (tags, viewing groups included) inside the caller's transaction.
pub(super) fn insert_row(
    conn: &Connection,
    new: &NewJob,
    multinode: Option<MultinodeSlot<'_>>,
    submit_time: &str,
) -> Result<JobId, Error> {
    let step = "inserting a job";
    let submitter = user_id(conn, &new.submitter)?;
    let type_id = match &new.requested_device_type {
        None => None,
        Some(name) => Some(resolve_type_id(conn, name)?),
    };
    let timeout = new
        .queue_timeout
        .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
    let (id, target_group, sub_id, multinode_definition) = match &multinode {
        Some(slot) => (
            Some(slot.first.0 + slot.index as i64),
            Some(slot.group),
            // LAVA's sub id: the group's first job id, a dot, the sub-job's index.
            Some(format!("{}.{}", slot.first, slot.index)),
            slot.definition,
        ),
        None => (None, None, None, ""),
    };
    conn.execute(
        "INSERT INTO jobs (id, submitter_id, description, definition, original_definition, \
         multinode_definition, priority, visibility, requested_device_type_id, health_check, \
         target_group, sub_id, submit_time, queue_timeout_secs) \
         VALUES (?13, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?14, ?11, ?12)",
        params![
            submitter.0,
            new.description,
            new.definition,
            new.original_definition,
            multinode_definition,
            new.priority.value(),
            new.visibility.code(),
            type_id,
            new.health_check,
            target_group,
            submit_time,
            timeout,
            id,
            sub_id
        ],
    )
    .step(step)?;
    let id = JobId(conn.last_insert_rowid());
    for tag in &new.tags {
        let tag = tag_id(conn, tag)?;
        conn.execute(
            "INSERT OR IGNORE INTO job_tags (job_id, tag_id) VALUES (?1, ?2)",
            params![id.0, tag],
        )
        .step(step)?;
    }
    if let Visibility::Group(groups) = &new.visibility {
        if groups.is_empty() {
            return Err(Error::Invalid {
                what: "job visibility",
                reason: "group visibility needs at least one group".into(),
            });
        }
        for group in groups {
            let gid = group_id(conn, group)?;
            conn.execute(
                "INSERT OR IGNORE INTO job_viewing_groups (job_id, group_id) VALUES (?1, ?2)",
                params![id.0, gid.0],
            )
            .step(step)?;
        }
    }
    Ok(id)
}

/// Where a MultiNode sub-job goes.
pub(super) struct MultinodeSlot<'a> {
    /// The group's first job id; sub-job `index` gets id `first + index`.
    first: JobId,
    /// Its index in the group.
    index: usize,
    /// The group name.
    group: &'a str,
    /// The whole submission.
    definition: &'a str,
}

/// The id the next inserted job would get (AUTOINCREMENT never reuses ids).
fn next_job_id(conn: &Connection) -> Result<JobId, Error> {
    conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0), \
         coalesce((SELECT max(id) FROM jobs), 0)) + 1",
        [],
        |r| r.get(0).map(JobId),
    )
    .step("allocating job ids")
}

fn resolve_type_id(conn: &Connection, name: &str) -> Result<i64, Error> {
    conn.query_row(
        "SELECT id FROM device_types WHERE name = ?1 \
         UNION ALL SELECT device_type_id FROM aliases WHERE name = ?1 LIMIT 1",
        [name],
        |r| r.get(0),
    )
    .optional()
    .step("resolving a device type")?
    .ok_or_else(|| Error::NotFound {
        kind: "device type",
        name: name.to_owned(),
    })
}

/// A random MultiNode group name, `lava-multinode-<32 hex digits>`.
fn new_target_group() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("lava-multinode-{hex}"))
}

impl Store {
    /// Inserts a Submitted job. The submitter, device type (name or alias), tags and viewing
    /// groups must exist.
    pub fn insert_job(&mut self, new: &NewJob) -> Result<Job, Error> {
        let tx = self.write_tx("inserting a job")?;
        let id = insert_row(&tx, new, None, &ts_to_sql(now()))?;
        let job = read_job(&tx, id)?.ok_or_else(|| Error::NotFound {
            kind: "job",
            name: id.to_string(),
        })?;
        tx.commit().step("inserting a job")?;
        Ok(job)
    }

    /// Inserts the sub-jobs of one MultiNode submission atomically: one new target group,
    /// sub ids `<first id>.0`, `<first id>.1`, ..., and `multinode_definition` on each.
    pub fn insert_multinode(
        &mut self,
        sub_jobs: &[NewJob],
        multinode_definition: &str,
    ) -> Result<Vec<Job>, Error> {
        if sub_jobs.is_empty() {
            return Err(Error::Invalid {
                what: "MultiNode submission",
                reason: "it has no sub-jobs".into(),
            });
        }
        let group = new_target_group()?;
        let submit_time = ts_to_sql(now());
        let tx = self.write_tx("inserting a MultiNode job")?;
        // The write lock is held, so nobody else can take these ids.
        let first = next_job_id(&tx)?;
        let mut ids = Vec::with_capacity(sub_jobs.len());
        for (index, new) in sub_jobs.iter().enumerate() {
            let slot = MultinodeSlot {
                first,
                index,
                group: &group,
                definition: multinode_definition,
            };
            ids.push(insert_row(&tx, new, Some(slot), &submit_time)?);
        }
        let jobs = ids
            .iter()
            .map(|id| {
                read_job(&tx, *id)?.ok_or_else(|| Error::NotFound {
                    kind: "job",
                    name: id.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().step("inserting a MultiNode job")?;
        Ok(jobs)
    }

    /// The job with id `id`.
    pub fn job(&self, id: JobId) -> Result<Option<Job>, Error> {
        read_job(&self.conn, id)
    }

    /// The MultiNode job with sub id `sub_id` (e.g. `12.1`).
    pub fn job_by_sub_id(&self, sub_id: &str) -> Result<Option<Job>, Error> {
        self.conn
            .query_row(
                &format!("{JOB_SELECT} WHERE j.sub_id = ?1"),
                [sub_id],
                job_row,
            )
            .optional()
            .step("reading a job")?
            .map(|raw| finish_job(&self.conn, raw))
            .transpose()
    }

    /// Replaces the definition the dispatcher will run (e.g. to add the MultiNode roles map).
    pub fn set_job_definition(&mut self, id: JobId, definition: &str) -> Result<(), Error> {
        let n = SetColumns::new("jobs", "id")
            .set("definition", definition.to_owned())
            .run(&self.conn, id.0, "updating a job definition")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "job",
                name: id.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TestResult;
    use crate::store::testutil::{lab, qemu_job};
    use crate::store::{JobFilter, NewTestCase};

    #[test]
    fn insert_validates_references() {
        let (_dir, mut store) = lab();
        let mut job = qemu_job();
        job.submitter = "nobody".into();
        assert!(matches!(
            store.insert_job(&job),
            Err(Error::NotFound { kind: "user", .. })
        ));
        let mut job = qemu_job();
        job.tags = vec!["missing".into()];
        assert!(matches!(
            store.insert_job(&job),
            Err(Error::NotFound { kind: "tag", .. })
        ));
        let mut job = qemu_job();
        job.visibility = Visibility::Group(vec!["ghosts".into()]);
        assert!(matches!(
            store.insert_job(&job),
            Err(Error::NotFound { kind: "group", .. })
        ));
        store.add_alias("kvm", "qemu").unwrap();
        let mut job = qemu_job();
        job.requested_device_type = Some("kvm".into());
        let job = store.insert_job(&job).unwrap();
        assert_eq!(job.requested_device_type.as_deref(), Some("qemu"));
        assert_eq!(store.count_jobs(&JobFilter::default()).unwrap(), 1);
        assert!(matches!(
            store.start_job(JobId(999)),
            Err(Error::NotFound { kind: "job", .. })
        ));
    }

    #[test]
    fn results_metadata_and_log_index() {
        let (_dir, mut store) = lab();
        let job = store.insert_job(&qemu_job()).unwrap();
        let mut measured = NewTestCase::new("0_smoke", "latency", TestResult::Pass);
        measured.measurement = Some(12.5);
        measured.units = "ms".into();
        measured.test_set = Some("net".into());
        measured.start_log_line = Some(10);
        measured.end_log_line = Some(12);
        measured.metadata = Some("{case: latency}".into());
        let ids = store
            .insert_test_cases(
                job.id,
                &[
                    NewTestCase::new("lava", "job", TestResult::Pass),
                    measured,
                    NewTestCase::new("0_smoke", "boot", TestResult::Fail),
                ],
            )
            .unwrap();
        assert_eq!(ids.len(), 3);
        let suites = store.test_suites(job.id).unwrap();
        assert_eq!(
            suites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["lava", "0_smoke"]
        );
        assert_eq!(store.count_test_cases(job.id, None).unwrap(), 3);
        assert_eq!(store.count_test_cases(job.id, Some("0_smoke")).unwrap(), 2);
        let smoke = store.test_cases(job.id, Some("0_smoke"), 0, None).unwrap();
        assert_eq!(smoke[0].measurement, Some(12.5));
        assert_eq!(smoke[0].test_set.as_deref(), Some("net"));
        assert_eq!(smoke[0].end_log_line, Some(12));
        assert_eq!(smoke[1].result, TestResult::Fail);
        let page = store.test_cases(job.id, None, 1, Some(1)).unwrap();
        assert_eq!(page[0].id, ids[1]);
        assert_eq!(store.test_case(ids[2]).unwrap().unwrap().name, "boot");
        // A bad case rolls the whole batch back.
        assert!(
            store
                .insert_test_cases(
                    job.id,
                    &[
                        NewTestCase::new("x", "ok", TestResult::Pass),
                        NewTestCase::new("x", "", TestResult::Pass)
                    ]
                )
                .is_err()
        );
        assert_eq!(store.count_test_cases(job.id, None).unwrap(), 3);
        assert!(matches!(
            store.insert_test_cases(JobId(999), &[]),
            Err(Error::NotFound { .. })
        ));

        store
            .set_job_metadata(
                job.id,
                &[
                    ("boot.commands".into(), "ramdisk".into()),
                    ("source".into(), "a".into()),
                    ("source".into(), "b".into()),
                ],
            )
            .unwrap();
        assert_eq!(
            store.job_metadata(job.id).unwrap(),
            [
                ("boot.commands".to_string(), "ramdisk".to_string()),
                ("source".to_string(), "b".to_string())
            ]
        );
    }

    #[test]
    fn check_constraints_guard_the_state_invariants() {
        let (_dir, mut store) = lab();
        let job = store.insert_job(&qemu_job()).unwrap();
        // Finished without a health (or health without Finished) is refused by the schema.
        let err = store
            .conn
            .execute(
                "UPDATE jobs SET state = ?2 WHERE id = ?1",
                params![job.id.0, JobState::Finished.code()],
            )
            .step("forcing a bad state")
            .unwrap_err();
        assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
        let err = store
            .conn
            .execute("UPDATE jobs SET priority = 101 WHERE id = ?1", [job.id.0])
            .step("forcing a bad priority")
            .unwrap_err();
        assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
    }
}
