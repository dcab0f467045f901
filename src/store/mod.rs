//! Persistent state in SQLite: the only module that holds SQL.
