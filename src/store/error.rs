//! The store's error type: one variant per failing step, the cause kept as `#[source]`.

use std::path::PathBuf;

use crate::model::{DeviceHealth, DeviceState, JobId};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be opened or created.
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A connection pragma (WAL, foreign keys, busy timeout) could not be set.
    #[error("cannot set `{pragma}` on database {path}")]
    Pragma {
        /// The database file.
        path: PathBuf,
        /// The pragma that failed.
        pragma: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer lavabox; it is left untouched.
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this lavabox \
         supports; run a newer lavabox or restore a backup (the database was not changed)"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A schema migration failed; the transaction was rolled back and the data is unchanged.
    #[error("cannot migrate database {path} from schema version {from} to {to}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version found before migrating.
        from: i64,
        /// The version whose migration failed.
        to: i64,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A named object does not exist.
    #[error("{kind} `{name}` not found")]
    NotFound {
        /// What was looked up, e.g. "device type".
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// A name is already taken.
    #[error("{kind} `{name}` already exists")]
    AlreadyExists {
        /// What was created, e.g. "user".
        kind: &'static str,
        /// The duplicate name.
        name: String,
    },
    /// An argument was rejected before touching the database.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was wrong, e.g. "job priority".
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A device cannot take a job in its current state or health.
    #[error("device `{hostname}` is {state} with health {health}; it cannot take job {job}")]
    DeviceUnavailable {
        /// The device.
        hostname: String,
        /// Its state.
        state: DeviceState,
        /// Its health.
        health: DeviceHealth,
        /// The job that was to run on it.
        job: JobId,
    },
    /// A job transition that LAVA does not allow (e.g. Running before it was scheduled).
    #[error("job {job} cannot go from {from} to {to}")]
    Transition {
        /// The job.
        job: JobId,
        /// Its current state.
        from: crate::model::JobState,
        /// The requested state.
        to: crate::model::JobState,
    },
    /// A row holds a value this build cannot interpret (e.g. an unknown state code).
    #[error("corrupt row in `{table}`: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A statement was refused by a constraint (foreign key, check, unique).
    #[error("constraint violated while {step}")]
    Constraint {
        /// What the store was doing.
        step: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error("database error while {step}")]
    Query {
        /// What the store was doing.
        step: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The operating system's random source failed while making a token secret.
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    /// The blocking task running a store call panicked or was cancelled.
    #[error("the database task did not finish")]
    Task(#[source] tokio::task::JoinError),
}

impl Error {
    /// Whether the database itself cannot be used (not openable, not a database, damaged,
    /// written by a newer lavabox, a failed migration, a stored value no code can read, or a
    /// read-only or full file system under it), rather than one request failing: at start-up
    /// `lavabox serve` exits with `EX_DATAERR` for these and systemd does not restart it
    /// (`crate::exitcode`).
    pub fn is_data_damage(&self) -> bool {
        use rusqlite::ErrorCode as C;
        let sqlite = |source: &rusqlite::Error| {
            matches!(
                source.sqlite_error_code(),
                Some(
                    C::DatabaseCorrupt
                        | C::NotADatabase
                        | C::CannotOpen
                        | C::ReadOnly
                        | C::DiskFull
                        | C::SystemIoFailure
                        | C::PermissionDenied
                )
            )
        };
        match self {
            Error::Open { .. }
            | Error::Pragma { .. }
            | Error::TooNew { .. }
            | Error::Migrate { .. }
            | Error::Corrupt { .. } => true,
            Error::Query { source, .. } | Error::Constraint { source, .. } => sqlite(source),
            _ => false,
        }
    }
}

/// Adds the failing step to a rusqlite error.
pub(crate) trait Step<T> {
    /// Maps the error to [`Error::Query`] or [`Error::Constraint`] with `step` as context.
    fn step(self, step: &'static str) -> Result<T, Error>;
}

impl<T> Step<T> for Result<T, rusqlite::Error> {
    fn step(self, step: &'static str) -> Result<T, Error> {
        self.map_err(|source| classify(step, source))
    }
}

/// [`Error::Constraint`] for constraint violations, [`Error::Query`] otherwise.
pub(crate) fn classify(step: &'static str, source: rusqlite::Error) -> Error {
    if is_constraint(&source) {
        Error::Constraint { step, source }
    } else {
        Error::Query { step, source }
    }
}

/// Whether `err` is a constraint violation.
pub(crate) fn is_constraint(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

/// Whether `err` is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_extended_error_code(),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

/// Maps a UNIQUE violation to [`Error::AlreadyExists`], anything else as [`Step::step`] does.
pub(crate) fn unique_or(
    kind: &'static str,
    name: &str,
    step: &'static str,
) -> impl FnOnce(rusqlite::Error) -> Error {
    let name = name.to_owned();
    move |source| {
        if is_unique(&source) {
            Error::AlreadyExists { kind, name }
        } else {
            classify(step, source)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::Error;
    use crate::model::{DeviceHealth, DeviceState, JobId, JobState};

    #[test]
    fn display_strings() {
        insta::assert_snapshot!(
            Error::TooNew { path: PathBuf::from("/var/lib/lavabox/lavabox.db"), found: 7, supported: 1 },
            @"database /var/lib/lavabox/lavabox.db has schema version 7, newer than the 1 this lavabox supports; run a newer lavabox or restore a backup (the database was not changed)"
        );
        insta::assert_snapshot!(
            Error::NotFound { kind: "device type", name: "bbb".into() },
            @"device type `bbb` not found"
        );
        insta::assert_snapshot!(
            Error::AlreadyExists { kind: "user", name: "alice".into() },
            @"user `alice` already exists"
        );
        insta::assert_snapshot!(
            Error::DeviceUnavailable {
                hostname: "bbb01".into(),
                state: DeviceState::Running,
                health: DeviceHealth::Good,
                job: JobId(12),
            },
            @"device `bbb01` is Running with health Good; it cannot take job 12"
        );
        insta::assert_snapshot!(
            Error::Transition { job: JobId(3), from: JobState::Submitted, to: JobState::Running },
            @"job 3 cannot go from Submitted to Running"
        );
    }
}
