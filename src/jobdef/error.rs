//! Problems found in a job definition: where (YAML path and line) and what was expected.

use std::fmt;

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path into the job document, displayed like `actions[2].boot.method`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(pub Vec<Segment>);

impl YamlPath {
    /// The document root.
    pub fn root() -> YamlPath {
        YamlPath(Vec::new())
    }

    /// This path with a key appended.
    pub fn key(&self, key: impl Into<String>) -> YamlPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.into()));
        path
    }

    /// This path with an index appended.
    pub fn index(&self, index: usize) -> YamlPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One reason a job definition is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document; empty for problems about the whole file (size, encoding, syntax).
    pub path: YamlPath,
    /// 1-based line of the offending node (or of the mapping missing a key).
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong: LAVA's own message where LAVA has one (clients match on those).
    pub message: String,
    /// What would have been accepted, when that is short enough to say.
    pub expected: Option<String>,
}

impl Problem {
    /// The message and, if known, what was expected, on one line.
    pub fn describe(&self) -> String {
        match &self.expected {
            Some(expected) if !self.message.starts_with("expected") => format!("{} (expected {expected})", self.message),
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error at {} (line {}): {}",
            self.path,
            self.line,
            self.describe()
        )
    }
}
