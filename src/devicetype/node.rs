//! A cursor over parsed YAML that remembers its dotted path, so every shape error can say
//! exactly which key is wrong.

use std::time::Duration;

use serde_norway::Value;

use super::Error;

/// A YAML value and the dotted path that leads to it from the document root.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The document root.
    pub(crate) fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }

    /// The dotted path of this node (`<root>` for the root).
    pub(crate) fn path(&self) -> &str {
        if self.path.is_empty() {
            "<root>"
        } else {
            &self.path
        }
    }

    /// An error about this node.
    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        Error::config(self.path(), message)
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// True when the value is YAML null (`key:` with nothing after it).
    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value under `key`, if this is a mapping that has it (null values included).
    pub(crate) fn get(&self, key: &str) -> Result<Option<Node<'a>>, Error> {
        match self.value {
            Value::Mapping(map) => Ok(map.get(key).map(|value| Node {
                value,
                path: self.child_path(key),
            })),
            Value::Null => Ok(None),
            _ => Err(self.error("expected a mapping")),
        }
    }

    /// The value under `key`, unless it is missing or null.
    pub(crate) fn get_some(&self, key: &str) -> Result<Option<Node<'a>>, Error> {
        Ok(self.get(key)?.filter(|n| !n.is_null()))
    }

    /// The value under `key`, which must be present.
    pub(crate) fn require(&self, key: &str) -> Result<Node<'a>, Error> {
        self.get(key)?
            .ok_or_else(|| Error::config(&self.child_path(key), "required key not provided"))
    }

    /// The entries of a mapping in document order, keys as strings; null counts as empty.
    pub(crate) fn entries(&self) -> Result<Vec<(String, Node<'a>)>, Error> {
        match self.value {
            Value::Null => Ok(Vec::new()),
            Value::Mapping(map) => map
                .iter()
                .map(|(k, value)| {
                    let key =
                        scalar_text(k).ok_or_else(|| self.error("mapping key is not a scalar"))?;
                    let path = self.child_path(&key);
                    Ok((key, Node { value, path }))
                })
                .collect(),
            _ => Err(self.error("expected a mapping")),
        }
    }

    /// The keys of a mapping; null counts as empty.
    pub(crate) fn keys(&self) -> Result<Vec<String>, Error> {
        Ok(self.entries()?.into_iter().map(|(k, _)| k).collect())
    }

    /// The items of a sequence; null counts as empty.
    pub(crate) fn items(&self) -> Result<Vec<Node<'a>>, Error> {
        match self.value {
            Value::Null => Ok(Vec::new()),
            Value::Sequence(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path()),
                })
                .collect()),
            _ => Err(self.error("expected a list")),
        }
    }

    /// A scalar as text: strings as they are, numbers and booleans as YAML writes them.
    pub(crate) fn text(&self) -> Result<String, Error> {
        scalar_text(self.value).ok_or_else(|| self.error("expected a string"))
    }

    /// Like [`Node::text`], with null as the empty string.
    pub(crate) fn text_or_empty(&self) -> Result<String, Error> {
        if self.is_null() {
            Ok(String::new())
        } else {
            self.text()
        }
    }

    /// Any value as compact JSON text (for nested values kept as text).
    pub(crate) fn json_text(&self) -> Result<String, Error> {
        serde_json::to_string(self.value)
            .map_err(|e| self.error(format!("cannot represent value: {e}")))
    }

    /// A list of scalars as text; null counts as empty.
    pub(crate) fn text_list(&self) -> Result<Vec<String>, Error> {
        self.items()?.iter().map(Node::text).collect()
    }

    /// One command or a list of commands (LAVA accepts both); null counts as none.
    pub(crate) fn commands(&self) -> Result<Vec<String>, Error> {
        match self.value {
            Value::Sequence(_) | Value::Null => self.text_list(),
            _ => Ok(vec![self.text()?]),
        }
    }

    /// A boolean; also accepts the strings Python and YAML 1.1 write for booleans.
    pub(crate) fn boolean(&self) -> Result<bool, Error> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) => match s.as_str() {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "on" | "On" => Ok(true),
                "false" | "False" | "FALSE" | "no" | "No" | "off" | "Off" | "" => Ok(false),
                _ => Err(self.error("expected true or false")),
            },
            _ => Err(self.error("expected true or false")),
        }
    }

    /// A non-negative integer; also accepts a string of digits (templates quote some numbers).
    pub(crate) fn unsigned(&self) -> Result<u64, Error> {
        match self.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.error("expected a non-negative integer"))
    }

    /// A LAVA timeout: a mapping with exactly one of `days`, `hours`, `minutes`, `seconds`
    /// (plus an optional `skip`).
    pub(crate) fn timeout(&self) -> Result<Duration, Error> {
        let mut found = None;
        for (key, value) in self.entries()? {
            let unit = match key.as_str() {
                "days" => 86_400,
                "hours" => 3_600,
                "minutes" => 60,
                "seconds" => 1,
                "skip" => {
                    value.boolean()?;
                    continue;
                }
                _ => return Err(value.error("unknown timeout unit")),
            };
            if found.is_some() {
                return Err(self.error("give exactly one of days, hours, minutes, seconds"));
            }
            let count = match value.value {
                Value::Number(n) => n.as_u64(),
                _ => None,
            }
            .ok_or_else(|| value.error("expected a whole number"))?;
            let seconds = count
                .checked_mul(unit)
                .ok_or_else(|| value.error("timeout too large"))?;
            found = Some(Duration::from_secs(seconds));
        }
        found.ok_or_else(|| self.error("give exactly one of days, hours, minutes, seconds"))
    }
}

/// Text of a scalar YAML value, or `None` for collections and null.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("true".to_owned()),
        Value::Bool(false) => Some("false".to_owned()),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
    }
}
