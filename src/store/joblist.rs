//! Job lists: LAVA's filters, ordering and pagination, and the one visibility rule every
//! job listing and query applies (`viewer_sql`).

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};
use time::OffsetDateTime;

use super::error::{Error, Step};
use super::jobcond::{self, JobCond};
use super::jobs::{JOB_SELECT, JobRow, Visibility, decode_job, job_exists, job_row};
use super::{Job, Store, ts_to_sql};
use crate::model::{JobHealth, JobId, JobState, UserId};

/// Whose view a job query takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Viewer {
    /// No restriction: internal callers and superusers.
    #[default]
    Anyone,
    /// Anonymous API clients: public jobs only.
    Anonymous,
    /// A user: public jobs, their own, and group jobs of their groups.
    User(UserId),
}

/// Sort key for [`JobFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobOrderField {
    /// Job id.
    #[default]
    Id,
    /// Submission time.
    SubmitTime,
    /// Start time.
    StartTime,
    /// End time.
    EndTime,
}

/// Ordering for [`JobFilter`]; ties are broken by id in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOrder {
    /// The key.
    pub field: JobOrderField,
    /// Largest first.
    pub descending: bool,
}

impl Default for JobOrder {
    /// Newest id first, as `scheduler.jobs.list` does.
    fn default() -> Self {
        JobOrder {
            field: JobOrderField::Id,
            descending: true,
        }
    }
}

/// Filters, ordering and pagination for [`Store::jobs`]; the default lists every job,
/// newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only these states (any, if empty).
    pub states: Vec<JobState>,
    /// Only this health.
    pub health: Option<JobHealth>,
    /// Only jobs of this submitter (username).
    pub submitter: Option<String>,
    /// Only jobs requesting one of these device types (any, if empty).
    pub requested_device_types: Vec<String>,
    /// Only jobs scheduled on this device.
    pub actual_device: Option<String>,
    /// Only health checks (true) or only other jobs (false).
    pub health_check: Option<bool>,
    /// Only this MultiNode group.
    pub target_group: Option<String>,
    /// Only jobs that ended at or after this time.
    pub ended_since: Option<OffsetDateTime>,
    /// Only jobs satisfying all of these (the REST list's django-filter conditions).
    pub conds: Vec<JobCond>,
    /// Visibility restriction.
    pub viewer: Viewer,
    /// Sort order.
    pub order: JobOrder,
    /// Rows to skip.
    pub offset: u64,
    /// At most this many rows.
    pub limit: Option<u64>,
}

/// Decodes a page of job rows, reading the tags and viewing groups of all of them in one
/// query each rather than two per job.
fn finish_jobs(conn: &Connection, raws: Vec<JobRow>) -> Result<Vec<Job>, Error> {
    if raws.is_empty() {
        return Ok(Vec::new());
    }
    // One bound JSON array keeps the statement text fixed, so it stays in the cache.
    let ids = |rows: &mut dyn Iterator<Item = &JobRow>| {
        let list: Vec<String> = rows.map(|r| r.id.to_string()).collect();
        format!("[{}]", list.join(","))
    };
    let mut tags = names_by_job(
        conn,
        "SELECT jt.job_id, g.name FROM job_tags jt JOIN tags g ON g.id = jt.tag_id \
         WHERE jt.job_id IN (SELECT value FROM json_each(?1)) ORDER BY jt.job_id, g.name",
        &ids(&mut raws.iter()),
        "reading job tags",
    )?;
    let mut group_jobs = raws
        .iter()
        .filter(|r| r.visibility == Visibility::GROUP)
        .peekable();
    let mut groups = if group_jobs.peek().is_some() {
        names_by_job(
            conn,
            "SELECT v.job_id, g.name FROM job_viewing_groups v JOIN groups g \
             ON g.id = v.group_id WHERE v.job_id IN (SELECT value FROM json_each(?1)) \
             ORDER BY v.job_id, g.name",
            &ids(&mut group_jobs),
            "reading job viewing groups",
        )?
    } else {
        HashMap::new()
    };
    raws.into_iter()
        .map(|raw| {
            let job_tags = tags.remove(&raw.id).unwrap_or_default();
            let job_groups = if raw.visibility == Visibility::GROUP {
                groups.remove(&raw.id).unwrap_or_default()
            } else {
                Vec::new()
            };
            decode_job(raw, job_tags, job_groups)
        })
        .collect()
}

/// `(job id, name)` rows of `sql` (one JSON-array parameter) grouped by job, names in
/// row order.
fn names_by_job(
    conn: &Connection,
    sql: &str,
    ids: &str,
    step: &'static str,
) -> Result<HashMap<i64, Vec<String>>, Error> {
    let mut stmt = conn.prepare_cached(sql).step(step)?;
    let mut rows = stmt.query([ids]).step(step)?;
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    while let Some(row) = rows.next().step(step)? {
        let (id, name): (i64, String) = row.try_into().step(step)?;
        out.entry(id).or_default().push(name);
    }
    Ok(out)
}

/// Appends the WHERE clause and parameters for `filter`.
fn filter_sql(filter: &JobFilter, sql: &mut String, args: &mut Vec<Value>) {
    sql.push_str(" WHERE 1 = 1");
    if !filter.states.is_empty() {
        let codes: Vec<String> = filter.states.iter().map(|s| s.code().to_string()).collect();
        sql.push_str(&format!(" AND j.state IN ({})", codes.join(", ")));
    }
    if let Some(health) = filter.health {
        args.push(Value::Integer(health.code()));
        sql.push_str(&format!(" AND j.health = ?{}", args.len()));
    }
    if let Some(name) = &filter.submitter {
        args.push(Value::Text(name.clone()));
        sql.push_str(&format!(" AND u.username = ?{}", args.len()));
    }
    if !filter.requested_device_types.is_empty() {
        let mut slots = Vec::new();
        for name in &filter.requested_device_types {
            args.push(Value::Text(name.clone()));
            slots.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND t.name IN ({})", slots.join(", ")));
    }
    if let Some(name) = &filter.actual_device {
        args.push(Value::Text(name.clone()));
        sql.push_str(&format!(" AND d.hostname = ?{}", args.len()));
    }
    if let Some(hc) = filter.health_check {
        args.push(Value::Integer(i64::from(hc)));
        sql.push_str(&format!(" AND j.health_check = ?{}", args.len()));
    }
    if let Some(group) = &filter.target_group {
        args.push(Value::Text(group.clone()));
        sql.push_str(&format!(" AND j.target_group = ?{}", args.len()));
    }
    if let Some(since) = filter.ended_since {
        args.push(Value::Text(ts_to_sql(since)));
        sql.push_str(&format!(" AND j.end_time >= ?{}", args.len()));
    }
    for cond in &filter.conds {
        sql.push_str(" AND ");
        sql.push_str(&jobcond::cond_sql(cond, args));
    }
    viewer_sql(filter.viewer, sql, args);
}

/// Appends the condition that limits jobs (aliased `j`) to those `viewer` may see: the one
/// visibility rule of every job listing and query.
pub(super) fn viewer_sql(viewer: Viewer, sql: &mut String, args: &mut Vec<Value>) {
    match viewer {
        Viewer::Anyone => {}
        Viewer::Anonymous => sql.push_str(&format!(" AND j.visibility = {}", Visibility::PUBLIC)),
        Viewer::User(user) => {
            args.push(Value::Integer(user.0));
            let n = args.len();
            sql.push_str(&format!(
                " AND (j.visibility = {public} OR j.submitter_id = ?{n} OR \
                 (j.visibility = {group} AND EXISTS (SELECT 1 FROM job_viewing_groups v JOIN group_members m \
                 ON m.group_id = v.group_id WHERE v.job_id = j.id AND m.user_id = ?{n})))",
                public = Visibility::PUBLIC,
                group = Visibility::GROUP,
            ));
        }
    }
}

impl Store {
    /// Whether `viewer` may see job `id` ([`Error::NotFound`] if there is no such job).
    pub fn can_view_job(&self, id: JobId, viewer: Viewer) -> Result<bool, Error> {
        job_exists(&self.conn, id)?;
        let filter = JobFilter {
            viewer,
            ..JobFilter::default()
        };
        let mut sql = String::from(
            "SELECT count(*) FROM jobs j JOIN users u ON u.id = j.submitter_id \
             LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
             LEFT JOIN devices d ON d.id = j.actual_device_id",
        );
        let mut args = Vec::new();
        filter_sql(&filter, &mut sql, &mut args);
        args.push(Value::Integer(id.0));
        sql.push_str(&format!(" AND j.id = ?{}", args.len()));
        let n: i64 = self
            .conn
            .query_row(&sql, params_from_iter(args), |r| r.get(0))
            .step("checking job visibility")?;
        Ok(n > 0)
    }

    /// Jobs matching `filter`, ordered and paginated.
    pub fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, Error> {
        let mut sql = String::from(JOB_SELECT);
        let mut args = Vec::new();
        filter_sql(filter, &mut sql, &mut args);
        let column = match filter.order.field {
            JobOrderField::Id => "j.id",
            JobOrderField::SubmitTime => "j.submit_time",
            JobOrderField::StartTime => "j.start_time",
            JobOrderField::EndTime => "j.end_time",
        };
        let dir = if filter.order.descending {
            "DESC"
        } else {
            "ASC"
        };
        sql.push_str(&format!(" ORDER BY {column} {dir}, j.id {dir}"));
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        args.push(Value::Integer(limit));
        args.push(Value::Integer(
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        ));
        sql.push_str(&format!(
            " LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
        // Cached: the common lists (default page, a state filter) repeat the same text.
        let mut stmt = self.conn.prepare_cached(&sql).step("listing jobs")?;
        let rows = stmt
            .query_map(params_from_iter(args), job_row)
            .step("listing jobs")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing jobs")?;
        finish_jobs(&self.conn, rows)
    }

    /// How many jobs match `filter` (ignoring ordering and pagination).
    pub fn count_jobs(&self, filter: &JobFilter) -> Result<u64, Error> {
        let mut sql = String::from(
            "SELECT count(*) FROM jobs j JOIN users u ON u.id = j.submitter_id \
             LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
             LEFT JOIN devices d ON d.id = j.actual_device_id",
        );
        let mut args = Vec::new();
        filter_sql(filter, &mut sql, &mut args);
        let n: i64 = self
            .conn
            .prepare_cached(&sql)
            .step("counting jobs")?
            .query_row(params_from_iter(args), |r| r.get(0))
            .step("counting jobs")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewUser;
    use crate::store::testutil::{lab, qemu_job};

    #[test]
    fn list_filters_orders_and_paginates() {
        let (_dir, mut store) = lab();
        store.create_user(&NewUser::named("bob")).unwrap();
        store.create_group("lab").unwrap();
        store.add_group_member("lab", "bob").unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut job = qemu_job();
            job.visibility = match i {
                0 => Visibility::Personal,
                1 => Visibility::Group(vec!["lab".into()]),
                _ => Visibility::Public,
            };
            ids.push(store.insert_job(&job).unwrap().id);
        }
        store.cancel_job(ids[4]).unwrap();

        let all = store.jobs(&JobFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|j| j.id).collect::<Vec<_>>(),
            ids.iter().rev().copied().collect::<Vec<_>>()
        );
        let page = store
            .jobs(&JobFilter {
                order: JobOrder {
                    field: JobOrderField::SubmitTime,
                    descending: false,
                },
                offset: 1,
                limit: Some(2),
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), &ids[1..3]);
        let finished = JobFilter {
            states: vec![JobState::Finished],
            health: Some(JobHealth::Canceled),
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&finished).unwrap(), 1);
        let submitted = JobFilter {
            states: vec![JobState::Submitted],
            submitter: Some("alice".into()),
            requested_device_types: vec!["qemu".into(), "other".into()],
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&submitted).unwrap(), 4);

        let anonymous = JobFilter {
            viewer: Viewer::Anonymous,
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&anonymous).unwrap(), 3);
        let bob = store.user("bob").unwrap().unwrap().id;
        let alice = store.user("alice").unwrap().unwrap().id;
        let as_bob = JobFilter {
            viewer: Viewer::User(bob),
            ..JobFilter::default()
        };
        assert_eq!(store.count_jobs(&as_bob).unwrap(), 4);
        assert!(!store.can_view_job(ids[0], Viewer::User(bob)).unwrap());
        assert!(store.can_view_job(ids[0], Viewer::User(alice)).unwrap());
        assert!(store.can_view_job(ids[1], Viewer::User(bob)).unwrap());
        assert!(!store.can_view_job(ids[1], Viewer::Anonymous).unwrap());
        assert_eq!(
            store.job(ids[1]).unwrap().unwrap().visibility,
            Visibility::Group(vec!["lab".into()])
        );
    }
}
