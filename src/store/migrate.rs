//! Versioned schema migrations, mozilla application-services style.
//!
//! The schema version is `PRAGMA user_version`. Connection pragmas are set before and outside
//! any transaction (SQLite ignores `journal_mode` inside one). Every pending migration then
//! runs in one `IMMEDIATE` transaction that also bumps `user_version`, so a failure rolls back
//! to the old schema with the data intact. A database newer than this build is refused and
//! never modified.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error::Error;

/// The migrations, in order: entry `i` upgrades schema version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_notifications.sql"),
    include_str!("migrations/0003_workers.sql"),
    include_str!("migrations/0004_case_metadata_json.sql"),
    include_str!("migrations/0005_saved_queries.sql"),
    include_str!("migrations/0006_job_list_indexes.sql"),
    include_str!("migrations/0007_drop_job_logs.sql"),
    include_str!("migrations/0008_accounts.sql"),
    include_str!("migrations/0009_own_worker.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings the database at `path` up to `migrations.len()`, atomically.
pub(crate) fn apply(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), Error> {
    let supported = migrations.len() as i64;
    let pragma_err = |source| Error::Pragma {
        path: path.to_owned(),
        pragma: "user_version",
        source,
    };
    let found = user_version(conn).map_err(pragma_err)?;
    if found > supported {
        return Err(Error::TooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    if found == supported {
        return Ok(());
    }
    let migrate_err = |from: i64, to: i64| {
        let path = path.to_owned();
        move |source| Error::Migrate {
            path,
            from,
            to,
            source,
        }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(migrate_err(found, found + 1))?;
    // Another process may have migrated between the first read and the write lock.
    let current = user_version(&tx).map_err(migrate_err(found, found + 1))?;
    if current > supported {
        return Err(Error::TooNew {
            path: path.to_owned(),
            found: current,
            supported,
        });
    }
    for (index, sql) in migrations.iter().enumerate().skip(current as usize) {
        let to = index as i64 + 1;
        tx.execute_batch(sql).map_err(migrate_err(current, to))?;
    }
    tx.pragma_update(None, "user_version", supported)
        .map_err(migrate_err(current, supported))?;
    tx.commit().map_err(migrate_err(current, supported))?;
    tracing::info!(path = %path.display(), from = current, to = supported, "database schema migrated");
    Ok(())
}
