//! One `UPDATE` statement that sets the columns a caller chose: the store's partial updates
//! (an admin changing two fields of a device, a transition stamping a job) are built here
//! instead of one hand-written statement per column.
//!
//! Table, key and column names are `&'static str` constants of the calling module, never
//! input; only the values and the key are bound.

use rusqlite::types::Value;
use rusqlite::{Connection, ToSql, params_from_iter};

use super::error::{Error, Step};

/// The columns to set on the rows of `table` whose `key` column equals a value.
#[derive(Debug)]
pub(super) struct SetColumns {
    table: &'static str,
    key: &'static str,
    values: Vec<(&'static str, Value)>,
}

impl SetColumns {
    /// Nothing set yet on rows of `table` chosen by column `key`.
    pub(super) fn new(table: &'static str, key: &'static str) -> SetColumns {
        SetColumns {
            table,
            key,
            values: Vec::new(),
        }
    }

    /// Sets `column` to `value`.
    pub(super) fn set(mut self, column: &'static str, value: impl Into<Value>) -> SetColumns {
        self.values.push((column, value.into()));
        self
    }

    /// Sets `column` to `value` if there is one (an update's "leave as it is" is `None`).
    pub(super) fn set_some<T: Into<Value>>(self, column: &'static str, value: Option<T>) -> Self {
        match value {
            Some(value) => self.set(column, value),
            None => self,
        }
    }

    /// Whether no column is set.
    pub(super) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The statement's text: `UPDATE t SET a = ?2, b = ?3 WHERE k = ?1`.
    fn sql(&self) -> String {
        let sets: Vec<String> = self
            .values
            .iter()
            .enumerate()
            .map(|(i, (column, _))| format!("{column} = ?{}", i + 2))
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {} = ?1",
            self.table,
            sets.join(", "),
            self.key
        )
    }

    /// Runs the update on the rows whose key is `key`; returns how many rows matched (with
    /// nothing to set, how many rows have that key), so callers can report a missing row.
    pub(super) fn run(
        self,
        conn: &Connection,
        key: impl ToSql,
        step: &'static str,
    ) -> Result<usize, Error> {
        if self.is_empty() {
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {} = ?1",
                self.table, self.key
            );
            let n: i64 = conn.query_row(&sql, [key], |r| r.get(0)).step(step)?;
            return Ok(usize::try_from(n).unwrap_or(0));
        }
        let sql = self.sql();
        let args = std::iter::once(&key as &dyn ToSql)
            .chain(self.values.iter().map(|(_, v)| v as &dyn ToSql));
        conn.prepare_cached(&sql)
            .step(step)?
            .execute(params_from_iter(args))
            .step(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER);
             INSERT INTO t VALUES (1, 'x', 1), (2, 'y', 2);",
        )
        .unwrap();
        conn
    }

    fn row(conn: &Connection, id: i64) -> (Option<String>, i64) {
        conn.query_row("SELECT a, b FROM t WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    #[test]
    fn sets_only_the_chosen_columns_of_the_keyed_row() {
        let conn = table();
        let update = SetColumns::new("t", "id")
            .set_some("a", None::<String>)
            .set("b", 7);
        assert_eq!(update.sql(), "UPDATE t SET b = ?2 WHERE id = ?1");
        assert_eq!(update.run(&conn, 2, "test").unwrap(), 1);
        assert_eq!(row(&conn, 2), (Some("y".into()), 7));
        assert_eq!(row(&conn, 1), (Some("x".into()), 1));

        let clear = SetColumns::new("t", "id")
            .set("a", None::<String>)
            .set_some("b", Some(3));
        assert_eq!(clear.sql(), "UPDATE t SET a = ?2, b = ?3 WHERE id = ?1");
        assert_eq!(clear.run(&conn, 1, "test").unwrap(), 1);
        assert_eq!(row(&conn, 1), (None, 3));
    }

    #[test]
    fn reports_missing_rows_with_or_without_columns() {
        let conn = table();
        assert_eq!(
            SetColumns::new("t", "id")
                .set("b", 1)
                .run(&conn, 9, "test")
                .unwrap(),
            0
        );
        assert_eq!(SetColumns::new("t", "id").run(&conn, 9, "test").unwrap(), 0);
        assert_eq!(SetColumns::new("t", "id").run(&conn, 1, "test").unwrap(), 1);
    }
}
