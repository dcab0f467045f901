//! The positional arguments of one call, read with Python's rules for missing and surplus
//! arguments and LAVA's faults for wrong types.

use super::{Fault, Value};

/// The positional arguments of one call.
/// A `start`/`limit` pair as LAVA's listings take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Page {
    /// Rows skipped (`start`, negative counts as 0).
    pub(super) offset: u64,
    /// Rows returned (`limit`, default 25, clamped to 0..=100).
    pub(super) limit: u64,
}

pub(super) struct Args<'a> {
    pub(super) method: &'a str,
    pub(super) v: Vec<Value>,
}

impl Args<'_> {
    /// Refuses calls with more than `n` arguments (Python's `TypeError`).
    pub(super) fn at_most(&self, n: usize) -> Result<(), Fault> {
        if self.v.len() > n {
            return Err(Fault::new(
                -32603,
                format!(
                    "Internal Server Error (contact server administrator for details): {}() takes at most {n} positional arguments but {} were given",
                    self.method,
                    self.v.len()
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn missing(&self, i: usize, what: &str) -> Fault {
        Fault::new(
            -32603,
            format!(
                "Internal Server Error (contact server administrator for details): {}() missing required positional argument {}: '{what}'",
                self.method,
                i + 1
            ),
        )
    }

    pub(super) fn wrong(&self, what: &str, expected: &str, got: &Value) -> Fault {
        Fault::new(
            400,
            format!(
                "Bad request: '{what}' must be {expected}, not {}",
                got.type_name()
            ),
        )
    }

    pub(super) fn present(&self, i: usize) -> Option<&Value> {
        match self.v.get(i) {
            None | Some(Value::Nil) => None,
            Some(v) => Some(v),
        }
    }

    pub(super) fn req(&self, i: usize, what: &str) -> Result<&Value, Fault> {
        self.v.get(i).ok_or_else(|| self.missing(i, what))
    }

    pub(super) fn string(&self, i: usize, what: &str) -> Result<String, Fault> {
        match self.req(i, what)? {
            Value::String(s) => Ok(s.clone()),
            Value::Int(n) => Ok(n.to_string()),
            other => Err(self.wrong(what, "a string", other)),
        }
    }

    pub(super) fn opt_string(&self, i: usize, what: &str) -> Result<Option<String>, Fault> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Int(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.wrong(what, "a string", other)),
        }
    }

    pub(super) fn opt_bool(&self, i: usize, what: &str, default: bool) -> Result<bool, Fault> {
        match self.present(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(n)) => Ok(*n != 0),
            Some(other) => Err(self.wrong(what, "a boolean", other)),
        }
    }

    pub(super) fn opt_bool_tri(&self, i: usize, what: &str) -> Result<Option<bool>, Fault> {
        match self.present(i) {
            None => Ok(None),
            Some(_) => self.opt_bool(i, what, false).map(Some),
        }
    }

    pub(super) fn opt_int(&self, i: usize, what: &str) -> Result<Option<i64>, Fault> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.wrong(what, "an integer", &Value::String(s.clone()))),
            Some(other) => Err(self.wrong(what, "an integer", other)),
        }
    }

    /// A job id: int, or string (`"12"` or MultiNode `"12.1"`).
    pub(super) fn job_id(&self, i: usize) -> Result<String, Fault> {
        match self.req(i, "job_id")? {
            Value::Int(n) => Ok(n.to_string()),
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Value::String(_) | Value::Nil => Err(Fault::new(
                400,
                "Bad request: TestJob id was not specified.",
            )),
            other => Err(self.wrong("job_id", "an integer or a string", other)),
        }
    }

    pub(super) fn list(&self, i: usize, what: &str) -> Result<Vec<Value>, Fault> {
        match self.req(i, what)? {
            Value::Array(items) => Ok(items.clone()),
            _ => Err(Fault::new(
                400,
                format!("Bad request: {what} must be a list"),
            )),
        }
    }

    /// `start` at `i` and `limit` at `i + 1`, both optional.
    pub(super) fn page(&self, i: usize) -> Result<Page, Fault> {
        let start = self.opt_int(i, "start")?.unwrap_or(0);
        let limit = self.opt_int(i + 1, "limit")?.unwrap_or(25);
        Ok(Page {
            offset: u64::try_from(start).unwrap_or(0),
            limit: u64::try_from(limit.clamp(0, 100)).unwrap_or(0),
        })
    }
}
