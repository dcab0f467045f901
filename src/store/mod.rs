//! Persistent state in SQLite: the only module that holds SQL.
//!
//! [`Store`] owns one rusqlite connection to the database file (WAL journal, `foreign_keys`
//! on, a busy timeout so the CLI and the daemon can share the file) and offers typed methods:
//! users, groups and API tokens; device types and aliases (`device_types`), tags, and
//! devices; jobs (`jobs` inserts and reads them, `joblist` lists them, `snapshot` reads the
//! scheduler's view); LAVA's state machine and its device side effects in `lifecycle`, each
//! transition in one transaction, applying `model::lifecycle`'s rules and returning the
//! `changes` it made; test results and job metadata; and the index of job log files. The
//! job logs themselves are append-only files written by [`joblog`].
//!
//! Blocking calls must not run on async runtime workers: async callers use [`AsyncStore`],
//! which runs each call on tokio's blocking pool.
//!
//! Architecture invariant: no other module contains SQL or imports rusqlite.

mod accounts;
mod asyncstore;
mod changes;
mod condition;
mod device_types;
mod devices;
mod error;
mod jobadmin;
mod jobcond;
mod joblist;
pub mod joblog;
mod jobs;
mod lifecycle;
mod migrate;
mod notifications;
mod query;
mod results;
mod saved_query;
mod snapshot;
mod tags;
mod update;
mod users;
mod workers;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::model::JobState;
use crate::model::lifecycle::HOLDING_DEVICE;

pub use accounts::{SESSION_IDLE, Session};
pub use asyncstore::AsyncStore;
pub use changes::{Changes, CurrentJob, DeviceChange, JobChange, JobFacts};
pub use condition::{ConditionError, Problem, QuerySpec};
pub use device_types::{DeviceType, DeviceTypeUpdate, HealthDenominator, NewDeviceType};
pub use devices::{Device, DeviceUpdate, NewDevice};
pub use error::Error;
pub use jobadmin::JobRecordUpdate;
pub use jobcond::{Case, Cmp, JobCond, JobInt, JobText, JobTime, TextMatch};
pub use joblist::{JobFilter, JobOrder, JobOrderField, Viewer};
pub use jobs::{Job, NewJob, Visibility};
pub use migrate::SCHEMA_VERSION;
pub use notifications::{
    NewNotification, Notification, NotificationId, NotificationMethod, NotificationStatus,
};
pub use query::{
    Condition, Entity, Field, Operand, Operator, QueryCase, QueryJob, QueryRows, QuerySuite,
};
pub use results::{NewTestCase, TestCase, TestSuite};
pub use saved_query::{MIN_QUERY_LIMIT, NewSavedQuery, SavedQuery, SavedQueryId};
pub use snapshot::{DeviceSlot, QueuedJob, SchedulerSnapshot};
pub use tags::{Tag, TagId};
pub use users::{Group, NewToken, NewUser, Token, TokenId, User};
pub use workers::{Worker, WorkerFile, WorkerHealth, WorkerState, WorkerStatus, WorkerUpdate};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the lavabox database: one SQLite connection.
///
/// Not `Sync`: share it between async tasks through [`AsyncStore`].
#[derive(Debug)]
pub struct Store {
    /// The connection; every multi-statement change runs in one transaction on it.
    conn: Connection,
    /// The database file, for error messages.
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to
    /// [`SCHEMA_VERSION`]. A database written by a newer lavabox is refused unchanged.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, Error> {
        Self::open_with(path.as_ref(), migrate::MIGRATIONS)
    }

    /// [`Store::open`] with an explicit migration list (tests use broken ones).
    fn open_with(path: &Path, migrations: &[&str]) -> Result<Store, Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        let pragma = |pragma: &'static str| {
            let path = path.to_owned();
            move |source| Error::Pragma {
                path,
                pragma,
                source,
            }
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(pragma("busy_timeout"))?;
        // Refuse a newer database before any pragma could rewrite its header.
        let found = migrate::user_version(&conn).map_err(pragma("user_version"))?;
        let supported = migrations.len() as i64;
        if found > supported {
            return Err(Error::TooNew {
                path: path.to_owned(),
                found,
                supported,
            });
        }
        // Pragmas outside any transaction: SQLite ignores journal_mode inside one.
        let mode = wal_mode(&conn).map_err(pragma("journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "database is not in WAL mode");
        }
        // FULL: a committed job transition survives a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(pragma("synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(pragma("foreign_keys"))?;
        migrate::apply(&mut conn, path, migrations)?;
        error::Step::step(
            jobcond::register_functions(&conn),
            "registering the SQL functions",
        )?;
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, Error> {
        use error::Step;
        migrate::user_version(&self.conn).step("reading the schema version")
    }

    /// Starts a write transaction that takes the write lock at once, so it never fails
    /// half-way with SQLITE_BUSY when another connection writes.
    fn write_tx(&mut self, step: &'static str) -> Result<rusqlite::Transaction<'_>, Error> {
        use error::Step;
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .step(step)
    }
}

/// Switches the connection to WAL and returns the journal mode it ended in. Switching needs
/// the file to itself, and SQLite answers "database is locked" at once, without the busy
/// handler, when another connection opening the same fresh file holds it for a moment (the
/// CLI and the daemon starting together): retried, bounded by [`BUSY_TIMEOUT`].
fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                // No notification exists for another connection's lock going away.
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// The stored timestamp format: UTC, fixed width, so text order is time order.
const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The current time, as stored (microsecond precision).
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

/// Formats a timestamp for the database.
pub(crate) fn ts_to_sql(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(TIMESTAMP)
        .unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

/// Parses a timestamp read from `table`.
pub(crate) fn ts_from_sql(table: &'static str, text: &str) -> Result<OffsetDateTime, Error> {
    time::PrimitiveDateTime::parse(text, TIMESTAMP)
        .map(|t| t.assume_utc())
        .map_err(|err| Error::Corrupt {
            table,
            detail: format!("bad timestamp `{text}`: {err}"),
        })
}

/// Parses an optional timestamp read from `table`.
pub(crate) fn opt_ts_from_sql(
    table: &'static str,
    text: Option<String>,
) -> Result<Option<OffsetDateTime>, Error> {
    text.map(|t| ts_from_sql(table, &t)).transpose()
}

/// `values`' codes as SQL list items, `1, 2, 3`: for `IN (...)` clauses built once from the
/// states' codes rather than written as numbers.
pub(crate) fn code_list<T: Copy>(values: &[T], code: fn(T) -> i64) -> String {
    let codes: Vec<String> = values.iter().map(|v| code(*v).to_string()).collect();
    codes.join(", ")
}

/// The codes of the job states in which a job holds its device, as an SQL list.
pub(crate) static HOLDING_DEVICE_CODES: LazyLock<String> =
    LazyLock::new(|| code_list(&HOLDING_DEVICE, JobState::code));

/// Decodes one of LAVA's integer codes read from `table`.
pub(crate) fn decode<T>(
    table: &'static str,
    kind: &str,
    code: i64,
    from_code: fn(i64) -> Option<T>,
) -> Result<T, Error> {
    from_code(code).ok_or_else(|| Error::Corrupt {
        table,
        detail: format!("unknown {kind} code {code}"),
    })
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A store in a temporary directory, so WAL behaviour is real.

    use super::Store;
    use crate::model::{DeviceHealth, DeviceState};

    /// A fresh store; keep the directory alive as long as the store.
    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path().join("lavabox.db")).expect("open store");
        (dir, store)
    }

    /// A store with user alice, type qemu, and devices q1, q2 (Good).
    pub(crate) fn lab() -> (tempfile::TempDir, Store) {
        let (dir, mut store) = store();
        store
            .create_user(&super::NewUser::named("alice"))
            .expect("user alice");
        store
            .create_device_type(&super::NewDeviceType::named("qemu"))
            .expect("device type qemu");
        for host in ["q1", "q2"] {
            let mut dev = super::NewDevice::new(host, "qemu");
            dev.health = DeviceHealth::Good;
            store.create_device(&dev).expect("device");
        }
        (dir, store)
    }

    /// A job of alice's for a qemu device, named `smoke`.
    pub(crate) fn qemu_job() -> super::NewJob {
        let mut job = super::NewJob::new("alice", "device_type: qemu\n");
        job.requested_device_type = Some("qemu".into());
        job.description = "smoke".into();
        job
    }

    /// The state and health of device `host`.
    pub(crate) fn device(store: &Store, host: &str) -> (DeviceState, DeviceHealth) {
        let d = store.device(host).expect("read device").expect("device");
        (d.state, d.health)
    }

    /// Two jobs of `owner`: one public, one personal (`job_name: a` and `b`), for the
    /// visibility rules of queries.
    pub(crate) fn public_and_personal_jobs(
        s: &mut Store,
        owner: &str,
    ) -> (crate::model::JobId, crate::model::JobId) {
        let public = s
            .insert_job(&super::NewJob::new(owner, "job_name: a"))
            .expect("public job")
            .id;
        let mut personal = super::NewJob::new(owner, "job_name: b");
        personal.visibility = super::Visibility::Personal;
        let personal = s.insert_job(&personal).expect("personal job").id;
        (public, personal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_validate() {
        let (_dir, store) = testutil::store();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let problems: Vec<String> = store
            .conn
            .prepare("PRAGMA foreign_key_check")
            .unwrap()
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let integrity: String = store
            .conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let fk: i64 = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn reopen_keeps_data_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let mut store = Store::open(&path).unwrap();
            store.create_user(&NewUser::named("alice")).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(store.user("alice").unwrap().is_some());
    }

    #[test]
    fn newer_database_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let store = Store::open(&path).unwrap();
            store
                .conn
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, Error::TooNew { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        assert!(err.to_string().contains("newer than"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn failed_migration_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        // Schema version 1 only, so the broken list below is one step ahead of it.
        let v1 = &migrate::MIGRATIONS[..1];
        {
            let mut store = Store::open_with(&path, v1).unwrap();
            store.create_user(&NewUser::named("alice")).unwrap();
        }
        let mut broken = migrate::MIGRATIONS.to_vec();
        broken.push("CREATE TABLE extra (x INTEGER); INSERT INTO no_such_table VALUES (1);");
        let err = Store::open_with(&path, &broken).unwrap_err();
        assert!(
            matches!(err, Error::Migrate { from: 1, to, .. } if to == SCHEMA_VERSION + 1),
            "{err:?}"
        );
        // All steps run in one transaction: the database is still at version 1.
        let store = Store::open_with(&path, v1).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        assert!(store.user("alice").unwrap().is_some());
        let extra: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'extra'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(extra, 0);
    }

    #[test]
    fn upgrade_from_empty_applies_every_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let next = [
            migrate::MIGRATIONS[0],
            "ALTER TABLE users ADD COLUMN nickname TEXT;",
        ];
        {
            let _ = Store::open_with(&path, &migrate::MIGRATIONS[..1]).unwrap();
        }
        let store = Store::open_with(&path, &next).unwrap();
        assert_eq!(store.schema_version().unwrap(), 2);
    }

    #[test]
    fn concurrent_handles_share_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        // Several handles open a fresh file at once: one migrates, the others wait.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open(&path).unwrap();
                    for i in 0..10 {
                        store
                            .create_user(&NewUser::named(format!("u{t}-{i}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.users().unwrap().len(), 40);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn timestamps_round_trip() {
        let t = now();
        let text = ts_to_sql(t);
        assert_eq!(text.len(), "2023-01-10T10:00:00.123456Z".len());
        assert_eq!(ts_from_sql("t", &text).unwrap(), t);
        assert!(ts_from_sql("t", "yesterday").is_err());
    }
}
