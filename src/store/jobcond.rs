//! Typed conditions of the REST job list (django-filter lookups on LAVA's `TestJob`
//! fields), turned into SQL over the job-list join (`j` jobs, `u` submitter, `t` requested
//! device type, `d` actual device).
//!
//! Every field maps to a fixed column expression and every value is a bound parameter, so
//! no request text reaches the SQL. The comparisons keep the semantics the API gives them:
//! text matches are case-sensitive byte comparisons (`instr`/`substr`, not SQLite's
//! ASCII-case-folding `LIKE`), case-insensitive ones fold with Rust's Unicode
//! `to_lowercase` through the `lavabox_lower` SQL function the store registers, and a
//! many-to-many field (tags, viewing groups) matches when any of its values does.

use std::sync::LazyLock;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;
use time::{OffsetDateTime, UtcOffset};

use super::TIMESTAMP;
use super::jobs::Visibility;
use crate::model::{JobHealth, JobState};

/// An integer job field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobInt {
    /// The job id.
    Id,
    /// 0–100.
    Priority,
}

/// A timestamp job field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTime {
    /// Submission time.
    Submit,
    /// Start time (NULL until it runs).
    Start,
    /// End time (NULL until it finishes).
    End,
}

/// A text job field; [`JobText::Tag`] and [`JobText::ViewingGroup`] have many values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobText {
    /// Job name.
    Description,
    /// The definition the dispatcher runs.
    Definition,
    /// The text as submitted.
    OriginalDefinition,
    /// The MultiNode submission.
    MultinodeDefinition,
    /// Why it failed.
    FailureComment,
    /// MultiNode group name.
    TargetGroup,
    /// Requested device type name.
    RequestedDeviceType,
    /// Hostname of the device it ran on.
    ActualDevice,
    /// Submitter's username.
    Submitter,
    /// Names of its required device tags.
    Tag,
    /// Names of its viewing groups (group-visible jobs only).
    ViewingGroup,
}

/// An ordering comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Equal.
    Eq,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
        }
    }
}

/// A text match (django's text lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMatch {
    /// Equal.
    Exact,
    /// Contains.
    Contains,
    /// Starts with.
    StartsWith,
    /// Ends with.
    EndsWith,
}

/// Whether a [`TextMatch`] folds case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Byte for byte.
    Sensitive,
    /// Both sides lower-cased (Unicode).
    Insensitive,
}

/// One condition of a job list; a list matches the jobs that satisfy all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCond {
    /// `field cmp value`.
    Int(JobInt, Cmp, i64),
    /// `field` is one of the values.
    IntIn(JobInt, Vec<i64>),
    /// `field cmp value`; a NULL time matches nothing.
    Time(JobTime, Cmp, OffsetDateTime),
    /// `field` is NULL (true) or not (false).
    TimeIsNull(JobTime, bool),
    /// `field` (any of its values) matches the text.
    Text(JobText, TextMatch, Case, String),
    /// `field` (any of its values) is one of the texts.
    TextIn(JobText, Vec<String>),
    /// Health check or not.
    HealthCheck(bool),
    /// The state is one of these.
    State(Vec<JobState>),
    /// The health is one of these.
    Health(Vec<JobHealth>),
}

/// The SQL function that lower-cases as Rust's `str::to_lowercase` does (SQLite's own
/// `lower` folds ASCII only).
const LOWER: &str = "lavabox_lower";

/// Registers [`LOWER`] on `conn`.
pub(super) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        LOWER,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get::<Option<String>>(0)? {
                Some(text) => Value::Text(text.to_lowercase()),
                None => Value::Null,
            })
        },
    )
}

fn int_column(field: JobInt) -> &'static str {
    match field {
        JobInt::Id => "j.id",
        JobInt::Priority => "j.priority",
    }
}

fn time_column(field: JobTime) -> &'static str {
    match field {
        JobTime::Submit => "j.submit_time",
        JobTime::Start => "j.start_time",
        JobTime::End => "j.end_time",
    }
}

/// The start of a viewing-group condition: only group-visible jobs have viewing groups,
/// whatever rows linger (the visibility code formatted once from `Visibility::GROUP`).
static VIEWING_GROUP_EXISTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "j.visibility = {} AND EXISTS (SELECT 1 FROM job_viewing_groups v \
         JOIN groups g ON g.id = v.group_id WHERE v.job_id = j.id AND ",
        Visibility::GROUP
    )
});

/// The column of a single-valued text field, or the name column plus the membership
/// subquery a many-to-many field is tested in.
fn text_column(field: JobText) -> (&'static str, Option<(&'static str, &'static str)>) {
    let single = |col| (col, None);
    match field {
        JobText::Description => single("j.description"),
        JobText::Definition => single("j.definition"),
        JobText::OriginalDefinition => single("j.original_definition"),
        JobText::MultinodeDefinition => single("j.multinode_definition"),
        JobText::FailureComment => single("j.failure_comment"),
        JobText::TargetGroup => single("j.target_group"),
        JobText::RequestedDeviceType => single("t.name"),
        JobText::ActualDevice => single("d.hostname"),
        JobText::Submitter => single("u.username"),
        JobText::Tag => (
            "g.name",
            Some((
                "EXISTS (SELECT 1 FROM job_tags jt JOIN tags g ON g.id = jt.tag_id \
                 WHERE jt.job_id = j.id AND ",
                ")",
            )),
        ),
        // Only group-visible jobs have viewing groups, whatever rows linger.
        JobText::ViewingGroup => ("g.name", Some((VIEWING_GROUP_EXISTS.as_str(), ")"))),
    }
}

/// The stored text of `t`, or `None` when it lies after the latest storable time (the
/// store's UTC years end at 9999; a later offset can push a parsed time past that).
fn stored_time(t: OffsetDateTime) -> Option<String> {
    t.checked_to_offset(UtcOffset::UTC)?.format(TIMESTAMP).ok()
}

/// `?n` for `value`, pushed on `args`.
fn bind(value: Value, args: &mut Vec<Value>) -> String {
    args.push(value);
    format!("?{}", args.len())
}

fn list(values: impl IntoIterator<Item = Value>, args: &mut Vec<Value>) -> String {
    let slots: Vec<String> = values.into_iter().map(|v| bind(v, args)).collect();
    slots.join(", ")
}

/// The SQL of one condition, its values pushed on `args`.
pub(super) fn cond_sql(cond: &JobCond, args: &mut Vec<Value>) -> String {
    match cond {
        JobCond::Int(field, cmp, value) => {
            let slot = bind(Value::Integer(*value), args);
            format!("{} {} {slot}", int_column(*field), cmp.sql())
        }
        JobCond::IntIn(field, values) => format!(
            "{} IN ({})",
            int_column(*field),
            list(values.iter().map(|v| Value::Integer(*v)), args)
        ),
        JobCond::Time(field, cmp, value) => {
            let col = time_column(*field);
            match stored_time(*value) {
                Some(text) => {
                    // Fixed-width UTC text: text order is time order.
                    let slot = bind(Value::Text(text), args);
                    format!("{col} {} {slot}", cmp.sql())
                }
                None => match cmp {
                    Cmp::Lt | Cmp::Lte => format!("{col} IS NOT NULL"),
                    Cmp::Eq | Cmp::Gt | Cmp::Gte => "0".to_owned(),
                },
            }
        }
        JobCond::TimeIsNull(field, null) => format!(
            "{} IS {}NULL",
            time_column(*field),
            if *null { "" } else { "NOT " }
        ),
        JobCond::Text(field, how, case, value) => {
            let (col, within) = text_column(*field);
            let (col, value) = match case {
                Case::Sensitive => (col.to_owned(), value.clone()),
                Case::Insensitive => (format!("{LOWER}({col})"), value.to_lowercase()),
            };
            let slot = bind(Value::Text(value), args);
            // instr/substr, not LIKE: `%` and `_` in the value are plain characters.
            let test = match how {
                TextMatch::Exact => format!("{col} = {slot}"),
                TextMatch::Contains => format!("instr({col}, {slot}) > 0"),
                TextMatch::StartsWith => format!("substr({col}, 1, length({slot})) = {slot}"),
                TextMatch::EndsWith => format!("substr({col}, -length({slot})) = {slot}"),
            };
            wrap(within, test)
        }
        JobCond::TextIn(field, values) => {
            let (col, within) = text_column(*field);
            let test = format!(
                "{col} IN ({})",
                list(values.iter().map(|v| Value::Text(v.clone())), args)
            );
            wrap(within, test)
        }
        JobCond::HealthCheck(value) => {
            format!(
                "j.health_check = {}",
                bind(Value::Integer(i64::from(*value)), args)
            )
        }
        JobCond::State(states) => format!(
            "j.state IN ({})",
            list(states.iter().map(|s| Value::Integer(s.code())), args)
        ),
        JobCond::Health(healths) => format!(
            "j.health IN ({})",
            list(healths.iter().map(|h| Value::Integer(h.code())), args)
        ),
    }
}

fn wrap(within: Option<(&str, &str)>, test: String) -> String {
    match within {
        Some((open, close)) => format!("{open}{test}{close}"),
        None => test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobId;
    use crate::store::testutil::store;
    use crate::store::{JobFilter, NewJob, NewUser, Store, Visibility};

    /// Jobs 1–4 with varied text, tags and visibility; job 4 is canceled (Finished).
    fn seeded() -> (tempfile::TempDir, Store, Vec<JobId>) {
        let (dir, mut store) = store();
        store.create_user(&NewUser::named("alice")).unwrap();
        store.create_user(&NewUser::named("bob")).unwrap();
        store.create_tag("usb", None).unwrap();
        store.create_tag("hdmi", None).unwrap();
        store.create_group("lab").unwrap();
        let mut ids = Vec::new();
        let jobs: [(&str, &str, &[&str], Visibility); 4] = [
            ("Boot Test", "alice", &["usb"], Visibility::Public),
            (
                "ÜBER 100%_done",
                "bob",
                &["usb", "hdmi"],
                Visibility::Public,
            ),
            (
                "kelvin \u{212a}",
                "alice",
                &[],
                Visibility::Group(vec!["lab".into()]),
            ),
            ("boot", "bob", &[], Visibility::Personal),
        ];
        for (description, submitter, tags, visibility) in jobs {
            let mut job = NewJob::new(submitter, "job_name: x\n");
            job.description = description.to_owned();
            job.tags = tags.iter().map(|t| (*t).to_owned()).collect();
            job.visibility = visibility;
            ids.push(store.insert_job(&job).unwrap().id);
        }
        store.cancel_job(ids[3]).unwrap();
        (dir, store, ids)
    }

    /// The positions (0-based, into the seeded ids) of the jobs matching `conds`.
    fn check(store: &Store, ids: &[JobId], conds: Vec<JobCond>, expect: &[usize]) {
        let filter = JobFilter {
            conds: conds.clone(),
            ..JobFilter::default()
        };
        let mut found: Vec<usize> = store
            .jobs(&filter)
            .unwrap()
            .iter()
            .map(|j| ids.iter().position(|id| *id == j.id).unwrap())
            .collect();
        found.sort_unstable();
        assert_eq!(found, expect, "{conds:?}");
        assert_eq!(store.count_jobs(&filter).unwrap(), expect.len() as u64);
    }

    fn text(field: JobText, how: TextMatch, case: Case, value: &str) -> Vec<JobCond> {
        vec![JobCond::Text(field, how, case, value.to_owned())]
    }

    #[test]
    fn text_lookups_keep_case_and_wildcards_literal() {
        let (_dir, store, ids) = seeded();
        use Case::{Insensitive as I, Sensitive as S};
        use JobText::Description as D;
        use TextMatch::*;
        let s = &store;
        check(s, &ids, text(D, Exact, S, "boot"), &[3]);
        check(s, &ids, text(D, Exact, I, "BOOT"), &[3]);
        check(s, &ids, text(D, Contains, S, "oot"), &[0, 3]);
        check(s, &ids, text(D, Contains, S, "OOT"), &[]);
        check(s, &ids, text(D, Contains, I, "OOT"), &[0, 3]);
        // `%` and `_` are characters, not LIKE wildcards.
        check(s, &ids, text(D, Contains, S, "%_"), &[1]);
        check(s, &ids, text(D, Contains, S, "0_"), &[]);
        // Unicode case folding, as Rust's `to_lowercase` (SQLite's `lower` is ASCII only).
        check(s, &ids, text(D, StartsWith, I, "über"), &[1]);
        check(s, &ids, text(D, StartsWith, S, "über"), &[]);
        check(s, &ids, text(D, EndsWith, I, "K"), &[2]);
        check(s, &ids, text(D, EndsWith, S, "Test"), &[0]);
        check(
            s,
            &ids,
            text(D, EndsWith, S, "a much longer suffix than any"),
            &[],
        );
        check(
            s,
            &ids,
            text(JobText::FailureComment, Contains, S, "x"),
            &[],
        );
        check(
            s,
            &ids,
            vec![JobCond::TextIn(D, vec!["boot".into(), "Boot Test".into()])],
            &[0, 3],
        );
        check(s, &ids, text(JobText::Submitter, Exact, S, "bob"), &[1, 3]);
    }

    #[test]
    fn many_valued_fields_match_any_value() {
        let (_dir, store, ids) = seeded();
        let s = &store;
        let exact = TextMatch::Exact;
        check(
            s,
            &ids,
            text(JobText::Tag, exact, Case::Sensitive, "usb"),
            &[0, 1],
        );
        check(
            s,
            &ids,
            text(JobText::Tag, exact, Case::Insensitive, "HDMI"),
            &[1],
        );
        check(
            s,
            &ids,
            vec![JobCond::TextIn(
                JobText::Tag,
                vec!["hdmi".into(), "none".into()],
            )],
            &[1],
        );
        check(
            s,
            &ids,
            text(JobText::ViewingGroup, exact, Case::Sensitive, "lab"),
            &[2],
        );
        // The batched tag and group reads of a list give what a single read gives.
        for job in store.jobs(&JobFilter::default()).unwrap() {
            assert_eq!(Some(&job), store.job(job.id).unwrap().as_ref());
        }
    }

    #[test]
    fn numbers_times_and_codes() {
        let (_dir, store, ids) = seeded();
        let s = &store;
        check(
            s,
            &ids,
            vec![JobCond::Int(JobInt::Id, Cmp::Gt, ids[1].0)],
            &[2, 3],
        );
        check(
            s,
            &ids,
            vec![JobCond::Int(JobInt::Id, Cmp::Lte, ids[1].0)],
            &[0, 1],
        );
        check(
            s,
            &ids,
            vec![JobCond::IntIn(JobInt::Id, vec![ids[0].0, ids[3].0])],
            &[0, 3],
        );
        check(
            s,
            &ids,
            vec![JobCond::Int(JobInt::Priority, Cmp::Eq, 50)],
            &[0, 1, 2, 3],
        );
        check(
            s,
            &ids,
            vec![JobCond::State(vec![JobState::Finished])],
            &[3],
        );
        check(
            s,
            &ids,
            vec![
                JobCond::State(vec![JobState::Submitted]),
                JobCond::Int(JobInt::Id, Cmp::Gt, ids[0].0),
            ],
            &[1, 2],
        );
        check(
            s,
            &ids,
            vec![JobCond::Health(vec![JobHealth::Canceled])],
            &[3],
        );
        check(s, &ids, vec![JobCond::HealthCheck(false)], &[0, 1, 2, 3]);
        check(
            s,
            &ids,
            vec![JobCond::TimeIsNull(JobTime::End, false)],
            &[3],
        );
        check(
            s,
            &ids,
            vec![JobCond::TimeIsNull(JobTime::End, true)],
            &[0, 1, 2],
        );
        let submitted = store.job(ids[2]).unwrap().unwrap().submit_time;
        check(
            s,
            &ids,
            vec![JobCond::Time(JobTime::Submit, Cmp::Eq, submitted)],
            &[2],
        );
        // The same instant written with another offset.
        let shifted = submitted.to_offset(UtcOffset::from_hms(5, 30, 0).unwrap());
        check(
            s,
            &ids,
            vec![JobCond::Time(JobTime::Submit, Cmp::Eq, shifted)],
            &[2],
        );
        // Past the last storable UTC time: later than every job, never equal to one.
        let last = time::macros::datetime!(9999-12-31 23:00 -05:00);
        check(
            s,
            &ids,
            vec![JobCond::Time(JobTime::Submit, Cmp::Lt, last)],
            &[0, 1, 2, 3],
        );
        check(
            s,
            &ids,
            vec![JobCond::Time(JobTime::End, Cmp::Lte, last)],
            &[3],
        );
        check(
            s,
            &ids,
            vec![JobCond::Time(JobTime::Submit, Cmp::Gte, last)],
            &[],
        );
    }
}
