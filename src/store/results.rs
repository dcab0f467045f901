//! Test results (suites, sets, cases) and job metadata. The job log has no row here: its one
//! owner is `store::joblog` (path rule, writer, reader).

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::error::{Error, Step};
use super::{Store, decode, now, ts_from_sql, ts_to_sql};
use crate::model::{JobId, SuiteId, TestCaseId, TestResult};

/// One test case to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTestCase {
    /// Suite name (created on first use), e.g. `0_smoke` or `lava`.
    pub suite: String,
    /// Test set inside the suite, if any.
    pub test_set: Option<String>,
    /// Case name.
    pub name: String,
    /// Outcome.
    pub result: TestResult,
    /// Measurement, if any.
    pub measurement: Option<f64>,
    /// Measurement units, possibly empty.
    pub units: String,
    /// The result's metadata as YAML text.
    pub metadata: Option<String>,
    /// First job log line of the case.
    pub start_log_line: Option<u64>,
    /// Last job log line of the case.
    pub end_log_line: Option<u64>,
}

impl NewTestCase {
    /// A case with no measurement, metadata or log lines.
    pub fn new(suite: impl Into<String>, name: impl Into<String>, result: TestResult) -> Self {
        NewTestCase {
            suite: suite.into(),
            test_set: None,
            name: name.into(),
            result,
            measurement: None,
            units: String::new(),
            metadata: None,
            start_log_line: None,
            end_log_line: None,
        }
    }
}

/// A stored test suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSuite {
    /// Row id.
    pub id: SuiteId,
    /// Its job.
    pub job: JobId,
    /// Name.
    pub name: String,
}

/// A stored test case.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// Row id.
    pub id: TestCaseId,
    /// Its job.
    pub job: JobId,
    /// Its suite.
    pub suite_id: SuiteId,
    /// Suite name.
    pub suite: String,
    /// Test set name.
    pub test_set: Option<String>,
    /// Case name.
    pub name: String,
    /// Outcome.
    pub result: TestResult,
    /// Measurement.
    pub measurement: Option<f64>,
    /// Units.
    pub units: String,
    /// Metadata YAML.
    pub metadata: Option<String>,
    /// The same metadata as JSON, when it was recorded with it (cheaper to decode in bulk).
    pub metadata_json: Option<String>,
    /// First log line.
    pub start_log_line: Option<u64>,
    /// Last log line.
    pub end_log_line: Option<u64>,
    /// When it was recorded.
    pub logged: OffsetDateTime,
}

const CASE_SELECT: &str = "SELECT c.id, s.job_id, s.id, s.name, ts.name, c.name, c.result, \
     c.measurement, c.units, c.metadata, c.start_log_line, c.end_log_line, c.logged, c.metadata_json \
     FROM test_cases c JOIN test_suites s ON s.id = c.suite_id \
     LEFT JOIN test_sets ts ON ts.id = c.test_set_id";

type CaseRow = (TestCase, i64, String);

fn case_row(row: &Row<'_>) -> rusqlite::Result<CaseRow> {
    let line = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    Ok((
        TestCase {
            id: TestCaseId(row.get(0)?),
            job: JobId(row.get(1)?),
            suite_id: SuiteId(row.get(2)?),
            suite: row.get(3)?,
            test_set: row.get(4)?,
            name: row.get(5)?,
            result: TestResult::Unknown,
            measurement: row.get(7)?,
            units: row.get(8)?,
            metadata: row.get(9)?,
            metadata_json: row.get(13)?,
            start_log_line: line(row.get(10)?),
            end_log_line: line(row.get(11)?),
            logged: OffsetDateTime::UNIX_EPOCH,
        },
        row.get(6)?,
        row.get(12)?,
    ))
}

fn finish_case(raw: CaseRow) -> Result<TestCase, Error> {
    let (mut case, result, logged) = raw;
    case.result = decode("test_cases", "test result", result, TestResult::from_code)?;
    case.logged = ts_from_sql("test_cases", &logged)?;
    Ok(case)
}

fn ensure_job(conn: &Connection, job: JobId) -> Result<(), Error> {
    conn.query_row("SELECT 1 FROM jobs WHERE id = ?1", [job.0], |_| Ok(()))
        .optional()
        .step("looking up a job")?
        .ok_or_else(|| Error::NotFound {
            kind: "job",
            name: job.to_string(),
        })
}

/// The JSON form of a case's YAML metadata, stored beside it for bulk readers (exports).
/// Metadata that is not valid YAML is kept only as text: readers then fall back to it.
fn metadata_json(yaml: Option<&str>) -> Option<String> {
    let value: serde_json::Value = serde_norway::from_str(yaml?).ok()?;
    Some(value.to_string())
}

fn line_to_sql(line: Option<u64>) -> Option<i64> {
    line.map(|l| i64::try_from(l).unwrap_or(i64::MAX))
}

impl Store {
    /// Records test cases of `job` in one transaction, creating suites and sets as needed.
    /// Returns the new ids in input order.
    pub fn insert_test_cases(
        &mut self,
        job: JobId,
        cases: &[NewTestCase],
    ) -> Result<Vec<TestCaseId>, Error> {
        let step = "recording test cases";
        let tx = self.write_tx(step)?;
        ensure_job(&tx, job)?;
        let logged = ts_to_sql(now());
        let mut ids = Vec::with_capacity(cases.len());
        for case in cases {
            if case.suite.is_empty() || case.name.is_empty() {
                return Err(Error::Invalid {
                    what: "test case",
                    reason: "suite and case names must not be empty".into(),
                });
            }
            tx.execute(
                "INSERT OR IGNORE INTO test_suites (job_id, name) VALUES (?1, ?2)",
                params![job.0, case.suite],
            )
            .step(step)?;
            let suite: i64 = tx
                .query_row(
                    "SELECT id FROM test_suites WHERE job_id = ?1 AND name = ?2",
                    params![job.0, case.suite],
                    |r| r.get(0),
                )
                .step(step)?;
            let set = match &case.test_set {
                None => None,
                Some(name) => {
                    tx.execute(
                        "INSERT OR IGNORE INTO test_sets (suite_id, name) VALUES (?1, ?2)",
                        params![suite, name],
                    )
                    .step(step)?;
                    Some(
                        tx.query_row(
                            "SELECT id FROM test_sets WHERE suite_id = ?1 AND name = ?2",
                            params![suite, name],
                            |r| r.get::<_, i64>(0),
                        )
                        .step(step)?,
                    )
                }
            };
            tx.execute(
                "INSERT INTO test_cases (suite_id, test_set_id, name, result, measurement, \
                 units, metadata, start_log_line, end_log_line, logged, metadata_json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    suite,
                    set,
                    case.name,
                    case.result.code(),
                    case.measurement,
                    case.units,
                    case.metadata,
                    line_to_sql(case.start_log_line),
                    line_to_sql(case.end_log_line),
                    logged,
                    metadata_json(case.metadata.as_deref())
                ],
            )
            .step(step)?;
            ids.push(TestCaseId(tx.last_insert_rowid()));
        }
        tx.commit().step(step)?;
        Ok(ids)
    }

    /// The suites of `job`, in creation order.
    pub fn test_suites(&self, job: JobId) -> Result<Vec<TestSuite>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, job_id, name FROM test_suites WHERE job_id = ?1 ORDER BY id")
            .step("listing test suites")?;
        stmt.query_map([job.0], |r| {
            Ok(TestSuite {
                id: SuiteId(r.get(0)?),
                job: JobId(r.get(1)?),
                name: r.get(2)?,
            })
        })
        .step("listing test suites")?
        .collect::<Result<Vec<_>, _>>()
        .step("listing test suites")
    }

    /// Test cases of `job` (of one suite if `suite` is given), by id, paginated.
    pub fn test_cases(
        &self,
        job: JobId,
        suite: Option<&str>,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<Vec<TestCase>, Error> {
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{CASE_SELECT} WHERE s.job_id = ?1 AND (?2 IS NULL OR s.name = ?2) \
                 ORDER BY c.id LIMIT ?3 OFFSET ?4"
            ))
            .step("listing test cases")?;
        let rows = stmt
            .query_map(params![job.0, suite, limit, offset], case_row)
            .step("listing test cases")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing test cases")?;
        rows.into_iter().map(finish_case).collect()
    }

    /// Up to `limit` test cases of `job` (of one suite if `suite` is given) in export order
    /// (suite by suite in creation order, then by case id), starting after the case `after`
    /// names, else skipping `offset` cases. One indexed query per call: the `after` cursor
    /// keeps a long export from re-reading everything before each chunk, as `OFFSET` would.
    pub fn test_cases_after(
        &self,
        job: JobId,
        suite: Option<&str>,
        after: Option<(SuiteId, TestCaseId)>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TestCase>, Error> {
        let step = "reading test cases for export";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (after_suite, after_case) = after.map_or((None, None), |(s, c)| (Some(s.0), Some(c.0)));
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{CASE_SELECT} WHERE s.job_id = ?1 AND (?2 IS NULL OR s.name = ?2) \
                 AND (?3 IS NULL OR (s.id, c.id) > (?3, ?4)) \
                 ORDER BY s.id, c.id LIMIT ?5 OFFSET ?6"
            ))
            .step(step)?;
        let rows = stmt
            .query_map(
                params![job.0, suite, after_suite, after_case, limit, offset],
                case_row,
            )
            .step(step)?
            .collect::<Result<Vec<_>, _>>()
            .step(step)?;
        rows.into_iter().map(finish_case).collect()
    }

    /// How many test cases `job` has (in `suite`, if given).
    pub fn count_test_cases(&self, job: JobId, suite: Option<&str>) -> Result<u64, Error> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM test_cases c JOIN test_suites s ON s.id = c.suite_id \
                 WHERE s.job_id = ?1 AND (?2 IS NULL OR s.name = ?2)",
                params![job.0, suite],
                |r| r.get(0),
            )
            .step("counting test cases")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One test case by id.
    pub fn test_case(&self, id: TestCaseId) -> Result<Option<TestCase>, Error> {
        self.conn
            .query_row(&format!("{CASE_SELECT} WHERE c.id = ?1"), [id.0], case_row)
            .optional()
            .step("reading a test case")?
            .map(finish_case)
            .transpose()
    }

    /// Sets job metadata entries (a later value for a name replaces the earlier one).
    pub fn set_job_metadata(
        &mut self,
        job: JobId,
        entries: &[(String, String)],
    ) -> Result<(), Error> {
        let step = "recording job metadata";
        let tx = self.write_tx(step)?;
        ensure_job(&tx, job)?;
        for (name, value) in entries {
            tx.execute(
                "INSERT INTO job_metadata (job_id, name, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (job_id, name) DO UPDATE SET value = excluded.value",
                params![job.0, name, value],
            )
            .step(step)?;
        }
        tx.commit().step(step)
    }

    /// The metadata of `job`, in insertion order.
    pub fn job_metadata(&self, job: JobId) -> Result<Vec<(String, String)>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value FROM job_metadata WHERE job_id = ?1 ORDER BY id")
            .step("reading job metadata")?;
        stmt.query_map([job.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .step("reading job metadata")?
            .collect::<Result<Vec<_>, _>>()
            .step("reading job metadata")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil;
    use crate::store::{NewJob, NewUser};

    #[test]
    fn export_order_is_suite_then_case_with_a_cursor() {
        let (_dir, mut s) = testutil::store();
        s.create_user(&NewUser::named("alice")).unwrap();
        let job = s
            .insert_job(&NewJob::new("alice", "job_name: x"))
            .unwrap()
            .id;
        // Interleaved suites: export order groups them, unlike id order.
        let cases: Vec<NewTestCase> = ["a", "b", "a", "b", "a"]
            .iter()
            .enumerate()
            .map(|(i, suite)| NewTestCase::new(*suite, format!("c{i}"), TestResult::Pass))
            .collect();
        s.insert_test_cases(job, &cases).unwrap();
        let names = |cases: &[TestCase]| cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        let all = s.test_cases_after(job, None, None, 0, 100).unwrap();
        assert_eq!(names(&all), ["c0", "c2", "c4", "c1", "c3"]);
        let first = s.test_cases_after(job, None, None, 1, 2).unwrap();
        assert_eq!(names(&first), ["c2", "c4"]);
        let last = first.last().map(|c| (c.suite_id, c.id));
        let rest = s.test_cases_after(job, None, last, 0, 100).unwrap();
        assert_eq!(names(&rest), ["c1", "c3"]);
        let suite_b = s.test_cases_after(job, Some("b"), None, 0, 100).unwrap();
        assert_eq!(names(&suite_b), ["c1", "c3"]);
        assert!(
            s.test_cases_after(JobId(999), None, None, 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn metadata_is_kept_as_yaml_and_json() {
        let (_dir, mut s) = testutil::store();
        s.create_user(&NewUser::named("alice")).unwrap();
        let job = s
            .insert_job(&NewJob::new("alice", "job_name: x"))
            .unwrap()
            .id;
        let mut good = NewTestCase::new("0_smoke", "ok", TestResult::Pass);
        good.metadata = Some("case: ok\nlevel: 1.2\n".into());
        let mut bad = NewTestCase::new("0_smoke", "odd", TestResult::Fail);
        bad.metadata = Some("[unclosed".into());
        s.insert_test_cases(job, &[good, bad]).unwrap();
        let cases = s.test_cases_after(job, None, None, 0, 10).unwrap();
        assert_eq!(cases[0].metadata.as_deref(), Some("case: ok\nlevel: 1.2\n"));
        assert_eq!(
            cases[0].metadata_json.as_deref(),
            Some(r#"{"case":"ok","level":1.2}"#)
        );
        assert_eq!(cases[1].metadata.as_deref(), Some("[unclosed"));
        assert_eq!(cases[1].metadata_json, None);
    }
}
