//! Custom result queries (LAVA's `results.make_custom_query`): typed conditions on jobs,
//! suites, cases and job metadata, turned into one SELECT with bound parameters.
//!
//! Field names never reach the SQL text as user input: each [`Field`] maps to a fixed column
//! expression, and every value is a bound parameter.

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::error::Step;
use super::joblist::Viewer;
use super::{Error, Store, ts_from_sql};
use crate::model::{JobHealth, JobId, JobState};
use time::OffsetDateTime;

/// The rows a query returns (LAVA's content types `testjob`, `testsuite`, `testcase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// Jobs.
    TestJob,
    /// Test suites.
    TestSuite,
    /// Test cases.
    TestCase,
}

/// A field a condition may test, with its value already typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The submitter's username.
    Submitter,
    /// Job start time.
    StartTime,
    /// Job end time.
    EndTime,
    /// Job state code.
    State,
    /// Job health code.
    Health,
    /// The device's hostname.
    ActualDevice,
    /// The requested device type's name.
    RequestedDeviceType,
    /// Whether the job is a health check.
    HealthCheck,
    /// Job priority.
    Priority,
    /// Job description.
    Description,
    /// Test suite name.
    SuiteName,
    /// Test case name.
    CaseName,
    /// Test case result code.
    CaseResult,
    /// Test case measurement.
    Measurement,
    /// A job metadata entry (LAVA's `namedtestattribute`) with this name.
    Attribute(String),
}

/// A comparison (LAVA's condition operators that Django can run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Equal.
    Exact,
    /// Equal ignoring ASCII case.
    IExact,
    /// Contains, ignoring ASCII case.
    IContains,
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
}

/// A typed comparison value.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Text.
    Text(String),
    /// An integer (codes, priority, booleans).
    Int(i64),
    /// A number (measurements).
    Real(f64),
    /// A timestamp.
    Time(OffsetDateTime),
}

/// One condition: `field operator value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What is tested.
    pub field: Field,
    /// How.
    pub operator: Operator,
    /// Against what.
    pub value: Operand,
}

/// One job row of a query: the job and its submitter's user id.
#[derive(Debug, Clone)]
pub struct QueryJob {
    /// The job.
    pub job: super::Job,
    /// The submitter's user id.
    pub submitter_id: i64,
}

/// One test suite row of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySuite {
    /// Row id.
    pub id: i64,
    /// Its job.
    pub job_id: i64,
    /// Its name.
    pub name: String,
}

/// One test case row of a query, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryCase {
    /// Row id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Units of the measurement.
    pub units: String,
    /// LAVA's result code.
    pub result: i64,
    /// The measurement.
    pub measurement: Option<f64>,
    /// YAML metadata.
    pub metadata: Option<String>,
    /// Its suite.
    pub suite_id: i64,
    /// First log line.
    pub start_log_line: Option<i64>,
    /// Last log line.
    pub end_log_line: Option<i64>,
    /// Its test set.
    pub test_set_id: Option<i64>,
    /// When it was logged.
    pub logged: OffsetDateTime,
}

/// The answer of [`Store::custom_query`].
#[derive(Debug, Clone)]
pub enum QueryRows {
    /// `testjob` rows.
    Jobs(Vec<QueryJob>),
    /// `testsuite` rows.
    Suites(Vec<QuerySuite>),
    /// `testcase` rows.
    Cases(Vec<QueryCase>),
}

/// The column expression of a field (never user text).
fn column(field: &Field) -> &'static str {
    match field {
        Field::Submitter => "u.username",
        Field::StartTime => "j.start_time",
        Field::EndTime => "j.end_time",
        Field::State => "j.state",
        Field::Health => "j.health",
        Field::ActualDevice => "d.hostname",
        Field::RequestedDeviceType => "t.name",
        Field::HealthCheck => "j.health_check",
        Field::Priority => "j.priority",
        Field::Description => "j.description",
        Field::SuiteName => "s.name",
        Field::CaseName => "c.name",
        Field::CaseResult => "c.result",
        Field::Measurement => "c.measurement",
        Field::Attribute(_) => "m.value",
    }
}

fn operand(value: &Operand) -> Value {
    match value {
        Operand::Text(s) => Value::Text(s.clone()),
        Operand::Int(n) => Value::Integer(*n),
        Operand::Real(x) => Value::Real(*x),
        // The stored form is fixed-width, so text order is time order.
        Operand::Time(t) => Value::Text(super::ts_to_sql(*t)),
    }
}

/// `col op ?n`, with the operand pushed on `args`.
fn comparison(col: &str, c: &Condition, args: &mut Vec<Value>) -> String {
    args.push(operand(&c.value));
    let n = args.len();
    match c.operator {
        Operator::Exact => format!("{col} = ?{n}"),
        Operator::IExact => format!("lower({col}) = lower(?{n})"),
        // instr, not LIKE: the value's `%` and `_` are plain characters, as in Django.
        Operator::IContains => format!("instr(lower({col}), lower(?{n})) > 0"),
        Operator::Gt => format!("{col} > ?{n}"),
        Operator::Lt => format!("{col} < ?{n}"),
    }
}

fn touches_cases(c: &Condition) -> bool {
    matches!(
        c.field,
        Field::CaseName | Field::CaseResult | Field::Measurement
    )
}

fn touches_suites(c: &Condition) -> bool {
    touches_cases(c) || c.field == Field::SuiteName
}

/// The `FROM … WHERE …` of a query for `entity` rows with the row key column, its bound
/// arguments pushed on `args`.
fn filter_sql(
    entity: Entity,
    conditions: &[Condition],
    viewer: Viewer,
    args: &mut Vec<Value>,
) -> (&'static str, String) {
    let (key, mut sql) = match entity {
        Entity::TestJob => {
            let mut from = String::from("FROM jobs j");
            // Job rows join suites and cases only when a condition needs them (DISTINCT
            // then folds the repeated job rows, as Django's `.distinct()`).
            if conditions.iter().any(touches_suites) {
                from.push_str(" LEFT JOIN test_suites s ON s.job_id = j.id");
            }
            if conditions.iter().any(touches_cases) {
                from.push_str(" LEFT JOIN test_cases c ON c.suite_id = s.id");
            }
            ("j.id", from)
        }
        Entity::TestSuite => {
            let mut from = String::from("FROM test_suites s JOIN jobs j ON j.id = s.job_id");
            if conditions.iter().any(touches_cases) {
                from.push_str(" LEFT JOIN test_cases c ON c.suite_id = s.id");
            }
            ("s.id", from)
        }
        Entity::TestCase => (
            "c.id",
            String::from(
                "FROM test_cases c JOIN test_suites s ON s.id = c.suite_id \
                 JOIN jobs j ON j.id = s.job_id",
            ),
        ),
    };
    sql.push_str(
        " JOIN users u ON u.id = j.submitter_id \
         LEFT JOIN device_types t ON t.id = j.requested_device_type_id \
         LEFT JOIN devices d ON d.id = j.actual_device_id WHERE 1",
    );
    for c in conditions {
        if let Field::Attribute(name) = &c.field {
            // Name and value on the same metadata row, as LAVA's two filters in one
            // `filter()` call on the relation.
            args.push(Value::Text(name.clone()));
            let n = args.len();
            let cmp = comparison("m.value", c, args);
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM job_metadata m WHERE m.job_id = j.id \
                 AND m.name = ?{n} AND {cmp})"
            ));
        } else {
            let cmp = comparison(column(&c.field), c, args);
            sql.push_str(&format!(" AND {cmp}"));
        }
    }
    super::joblist::viewer_sql(viewer, &mut sql, args);
    (key, sql)
}

impl Store {
    /// The id, state and health of every job matching `conditions` (whoever may see it),
    /// newest first: what notify's `dependency_query` needs, without loading the jobs.
    pub fn query_job_states(
        &self,
        conditions: &[Condition],
    ) -> Result<Vec<(JobId, JobState, JobHealth)>, Error> {
        let mut args = Vec::new();
        let (key, sql) = filter_sql(Entity::TestJob, conditions, Viewer::Anyone, &mut args);
        let sql = format!("SELECT DISTINCT {key}, j.state, j.health {sql} ORDER BY {key} DESC");
        let step = "running a job-state query";
        let mut stmt = self.conn.prepare(&sql).step(step)?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| <(i64, i64, i64)>::try_from(r))
            .step(step)?
            .collect::<Result<Vec<_>, _>>()
            .step(step)?;
        rows.into_iter()
            .map(|(id, state, health)| {
                let corrupt = |what: &str, code: i64| Error::Corrupt {
                    table: "jobs",
                    detail: format!("job {id} has unknown {what} code {code}"),
                };
                Ok((
                    JobId(id),
                    JobState::from_code(state).ok_or_else(|| corrupt("state", state))?,
                    JobHealth::from_code(health).ok_or_else(|| corrupt("health", health))?,
                ))
            })
            .collect()
    }

    /// Runs a custom query: rows of `entity` matching every condition that `viewer` may see
    /// (through their job), newest first, at most `limit`.
    pub fn custom_query(
        &self,
        entity: Entity,
        conditions: &[Condition],
        viewer: Viewer,
        limit: u32,
    ) -> Result<QueryRows, Error> {
        let mut args: Vec<Value> = Vec::new();
        let (key, sql) = filter_sql(entity, conditions, viewer, &mut args);
        args.push(Value::Integer(i64::from(limit)));
        let sql = format!(
            "SELECT DISTINCT {key}, u.id {sql} ORDER BY {key} DESC LIMIT ?{}",
            args.len()
        );
        let ids: Vec<(i64, i64)> = {
            let mut stmt = self.conn.prepare(&sql).step("preparing a custom query")?;
            let rows = stmt
                .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))
                .step("running a custom query")?;
            rows.collect::<Result<_, _>>()
                .step("reading a custom query")?
        };
        match entity {
            Entity::TestJob => {
                let mut jobs = Vec::with_capacity(ids.len());
                for (id, submitter_id) in ids {
                    if let Some(job) = self.job(JobId(id))? {
                        jobs.push(QueryJob { job, submitter_id });
                    }
                }
                Ok(QueryRows::Jobs(jobs))
            }
            Entity::TestSuite => {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT id, job_id, name FROM test_suites WHERE id = ?1")
                    .step("preparing a suite read")?;
                let mut suites = Vec::with_capacity(ids.len());
                for (id, _) in ids {
                    suites.push(
                        stmt.query_row([id], |r| {
                            Ok(QuerySuite {
                                id: r.get(0)?,
                                job_id: r.get(1)?,
                                name: r.get(2)?,
                            })
                        })
                        .step("reading a suite")?,
                    );
                }
                Ok(QueryRows::Suites(suites))
            }
            Entity::TestCase => {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT id, name, units, result, measurement, metadata, suite_id, \
                         start_log_line, end_log_line, test_set_id, logged \
                         FROM test_cases WHERE id = ?1",
                    )
                    .step("preparing a case read")?;
                let mut cases = Vec::with_capacity(ids.len());
                for (id, _) in ids {
                    let (case, logged): (QueryCase, String) = stmt
                        .query_row([id], |r| {
                            Ok((
                                QueryCase {
                                    id: r.get(0)?,
                                    name: r.get(1)?,
                                    units: r.get(2)?,
                                    result: r.get(3)?,
                                    measurement: r.get(4)?,
                                    metadata: r.get(5)?,
                                    suite_id: r.get(6)?,
                                    start_log_line: r.get(7)?,
                                    end_log_line: r.get(8)?,
                                    test_set_id: r.get(9)?,
                                    logged: OffsetDateTime::UNIX_EPOCH,
                                },
                                r.get(10)?,
                            ))
                        })
                        .step("reading a case")?;
                    cases.push(QueryCase {
                        logged: ts_from_sql("test_cases", &logged)?,
                        ..case
                    });
                }
                Ok(QueryRows::Cases(cases))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TestResult;
    use crate::store::{NewTestCase, NewUser, testutil};

    fn cond(field: Field, operator: Operator, value: Operand) -> Condition {
        Condition {
            field,
            operator,
            value,
        }
    }

    #[test]
    fn conditions_cross_entities_and_respect_visibility() {
        let (_dir, mut s) = testutil::store();
        let alice = s.create_user(&NewUser::named("alice")).unwrap();
        let bob = s.create_user(&NewUser::named("bob")).unwrap();
        let (public, personal) = testutil::public_and_personal_jobs(&mut s, "alice");
        for job in [public, personal] {
            s.insert_test_cases(
                job,
                &[
                    NewTestCase::new("0_smoke", "ls", TestResult::Pass),
                    NewTestCase::new("0_smoke", "100% df", TestResult::Fail),
                ],
            )
            .unwrap();
        }
        let failed = [
            cond(
                Field::SuiteName,
                Operator::Exact,
                Operand::Text("0_smoke".into()),
            ),
            cond(Field::CaseResult, Operator::Exact, Operand::Int(1)),
        ];
        let jobs = |viewer| match s
            .custom_query(Entity::TestJob, &failed, viewer, 200)
            .unwrap()
        {
            QueryRows::Jobs(j) => j.iter().map(|q| q.job.id).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(jobs(Viewer::User(alice.id)), [personal, public]);
        assert_eq!(jobs(Viewer::User(bob.id)), [public]);
        assert_eq!(jobs(Viewer::Anonymous), [public]);
        // `%` is a plain character, not a LIKE wildcard.
        let pct = [cond(
            Field::CaseName,
            Operator::IContains,
            Operand::Text("0% D".into()),
        )];
        match s
            .custom_query(Entity::TestCase, &pct, Viewer::Anyone, 1)
            .unwrap()
        {
            QueryRows::Cases(c) => {
                assert_eq!(c.len(), 1, "limit applies");
                assert_eq!(c[0].name, "100% df");
                assert_eq!(c[0].result, 1);
            }
            other => panic!("{other:?}"),
        }
        let none = [cond(
            Field::CaseName,
            Operator::IContains,
            Operand::Text("_s".into()),
        )];
        match s
            .custom_query(Entity::TestSuite, &none, Viewer::Anyone, 200)
            .unwrap()
        {
            QueryRows::Suites(v) => assert!(v.is_empty()),
            other => panic!("{other:?}"),
        }
        match s
            .custom_query(Entity::TestSuite, &[], Viewer::User(bob.id), 200)
            .unwrap()
        {
            QueryRows::Suites(v) => {
                assert_eq!(v.len(), 1);
                assert_eq!(v[0].job_id, public.0);
            }
            other => panic!("{other:?}"),
        }
        // Job states ignore visibility (notify's dependency rule counts every job).
        assert_eq!(
            s.query_job_states(&failed).unwrap(),
            [
                (
                    personal,
                    crate::model::JobState::Submitted,
                    crate::model::JobHealth::Unknown
                ),
                (
                    public,
                    crate::model::JobState::Submitted,
                    crate::model::JobHealth::Unknown
                ),
            ]
        );
        let by_submitter = [cond(
            Field::Submitter,
            Operator::IExact,
            Operand::Text("ALICE".into()),
        )];
        match s
            .custom_query(Entity::TestJob, &by_submitter, Viewer::Anyone, 200)
            .unwrap()
        {
            QueryRows::Jobs(j) => assert_eq!(j[0].submitter_id, alice.id.0),
            other => panic!("{other:?}"),
        }
    }
}
