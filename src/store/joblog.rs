//! Job logs: one append-only file per job in LAVA's `output.yaml` line format.
//!
//! Each line is a one-entry YAML list in flow style, exactly as lava-dispatcher writes it:
//!
//! ```text
//! - {"dt": "2023-01-12T10:00:00.123456", "lvl": "info", "msg": "..."}
//! ```
//!
//! `dt` is UTC without a zone, `lvl` one of [`Level`], `msg` a string or a mapping. The
//! mapping is written as JSON, which is valid flow YAML, so the whole file parses as YAML.
//!
//! Durability: [`JobLogWriter`] writes each line (or batch) with its newline in one `write`,
//! then `fdatasync`s before returning, and `fsync`s the directory when it creates the file.
//! A line whose append returned `Ok` therefore survives a power cut. A line torn by a crash
//! has no final newline: readers ignore it and the next writer truncates it away.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// Why a job log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log file or its directory could not be opened or created.
    #[error("cannot open job log {path}")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Appending failed; the line may be torn and will be dropped on the next open.
    #[error("cannot append to job log {path}")]
    Write {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data could not be flushed to stable storage.
    #[error("cannot sync job log {path} to disk")]
    Sync {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading failed.
    #[error("cannot read job log {path}")]
    Read {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A pre-formatted line contained a newline (it would become two lines).
    #[error("a job log line must not contain a newline")]
    Newline,
}

/// LAVA's log levels (`lvl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warning`.
    Warning,
    /// `error`.
    Error,
    /// `exception`.
    Exception,
    /// `results`: `msg` is the result mapping.
    Results,
    /// `target`: output of the device.
    Target,
    /// `input`: what was sent to the device.
    Input,
    /// `feedback`: output of a secondary connection (with `ns`).
    Feedback,
    /// `event`.
    Event,
}

impl Level {
    /// LAVA's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Exception => "exception",
            Level::Results => "results",
            Level::Target => "target",
            Level::Input => "input",
            Level::Feedback => "feedback",
            Level::Event => "event",
        }
    }
}

/// One log entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Timestamp (written as UTC).
    pub dt: OffsetDateTime,
    /// Level.
    pub lvl: Level,
    /// A string or a mapping.
    pub msg: serde_json::Value,
    /// Namespace, for `feedback` lines.
    pub ns: Option<String>,
}

impl Entry {
    /// A text entry stamped now.
    pub fn now(lvl: Level, msg: impl Into<String>) -> Entry {
        Entry {
            dt: OffsetDateTime::now_utc(),
            lvl,
            msg: serde_json::Value::String(msg.into()),
            ns: None,
        }
    }

    /// The line as LAVA writes it, without the newline.
    pub fn to_line(&self) -> String {
        // LAVA cuts lines of 10^6 characters or more; do the same.
        const LIMIT: usize = 1_000_000;
        let line = self.render(&self.msg);
        if line.len() < LIMIT {
            return line;
        }
        let short = match &self.msg {
            serde_json::Value::String(_) => {
                serde_json::Value::String("<line way too long ...>".into())
            }
            _ => serde_json::json!({"skip": "line way too long ..."}),
        };
        self.render(&short)
    }

    fn render(&self, msg: &serde_json::Value) -> String {
        const DT: &[FormatItem<'static>] = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
        );
        let dt = self
            .dt
            .to_offset(time::UtcOffset::UTC)
            .format(DT)
            .unwrap_or_default();
        let msg = to_flow(msg);
        let mut line = format!(
            "- {{\"dt\": \"{dt}\", \"lvl\": \"{}\", \"msg\": {msg}",
            self.lvl.as_str()
        );
        if let Some(ns) = &self.ns {
            line.push_str(", \"ns\": ");
            line.push_str(&to_flow(&serde_json::Value::String(ns.clone())));
        }
        line.push('}');
        line
    }
}

/// JSON with PyYAML's flow-style separators (`", "` and `": "`), on one line, with every
/// character YAML does not accept raw (DEL, C1 controls, line and paragraph separators,
/// non-characters) escaped as `\uXXXX`, which both JSON and YAML read back. Console output
/// is full of such bytes, and one raw DEL would make the whole file unreadable to PyYAML.
fn to_flow(value: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, FlowFormatter);
    if value.serialize(&mut ser).is_err() {
        return "null".to_owned();
    }
    let text = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    if text.chars().all(yaml_printable) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if yaml_printable(c) {
            escaped.push(c);
        } else {
            // Only inside strings: serde_json escapes nothing outside them.
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    escaped
}

/// Whether YAML accepts `c` raw inside a double-quoted scalar on one line.
fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && c != '\u{feff}'
}

/// serde_json formatter writing `{"a": 1, "b": [1, 2]}`.
struct FlowFormatter;

impl serde_json::ser::Formatter for FlowFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Appends lines to one job's log file.
#[derive(Debug)]
pub struct JobLogWriter {
    file: File,
    path: PathBuf,
    lines: u64,
    size: u64,
}

impl JobLogWriter {
    /// Opens `path` for appending, creating it (and its directory) if needed. A torn last
    /// line left by a crash is cut off first.
    pub fn open(path: impl Into<PathBuf>) -> Result<JobLogWriter, Error> {
        let path = path.into();
        let open_err = |source| Error::Open {
            path: path.clone(),
            source,
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_err)?;
        if !existed {
            // Make the new directory entries durable too: the file's, and the job
            // directory's in its parent.
            let sync_err = |source| Error::Sync {
                path: path.clone(),
                source,
            };
            if let Some(dir) = dir {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(sync_err)?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    File::open(parent)
                        .and_then(|d| d.sync_all())
                        .map_err(sync_err)?;
                }
            }
        }
        let (lines, complete) = scan(&mut file, &path)?;
        let len = file
            .metadata()
            .map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?
            .len();
        if complete < len {
            file.set_len(complete).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            file.sync_data().map_err(|source| Error::Sync {
                path: path.clone(),
                source,
            })?;
        }
        file.seek(SeekFrom::Start(complete))
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        Ok(JobLogWriter {
            file,
            path,
            lines,
            size: complete,
        })
    }

    /// Appends one entry durably; returns its 0-based line number.
    pub fn append(&mut self, entry: &Entry) -> Result<u64, Error> {
        self.append_lines(&[entry.to_line()])
    }

    /// Appends entries with one write and one sync; returns the first one's line number.
    pub fn append_batch(&mut self, entries: &[Entry]) -> Result<u64, Error> {
        let lines: Vec<String> = entries.iter().map(Entry::to_line).collect();
        self.append_lines(&lines)
    }

    /// Appends pre-formatted lines (without newlines) with one write and one sync; returns
    /// the first one's line number.
    pub fn append_lines(&mut self, lines: &[String]) -> Result<u64, Error> {
        let first = self.lines;
        if lines.is_empty() {
            return Ok(first);
        }
        let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            if line.contains('\n') {
                return Err(Error::Newline);
            }
            buf.push_str(line);
            buf.push('\n');
        }
        if let Err(source) = self.file.write_all(buf.as_bytes()) {
            // Put the file back to the last complete line so later appends stay aligned.
            let _ = self.file.set_len(self.size);
            let _ = self.file.seek(SeekFrom::Start(self.size));
            return Err(Error::Write {
                path: self.path.clone(),
                source,
            });
        }
        self.file.sync_data().map_err(|source| Error::Sync {
            path: self.path.clone(),
            source,
        })?;
        self.size += buf.len() as u64;
        self.lines += lines.len() as u64;
        Ok(first)
    }

    /// Complete lines in the file.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Counts complete lines from the start of `file`; returns (lines, bytes they span).
fn scan(file: &mut File, path: &Path) -> Result<(u64, u64), Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let mut reader = BufReader::new(&mut *file);
    let (mut lines, mut complete) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        lines += 1;
        complete += n as u64;
    }
    Ok((lines, complete))
}

/// One complete line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 0-based line number.
    pub number: u64,
    /// Byte offset of its first character.
    pub start: u64,
    /// Byte offset just past its newline.
    pub end: u64,
    /// The text, without the newline.
    pub text: String,
}

/// Complete lines `start..end` (0-based, `end` exclusive, `None` = to the end) of the log at
/// `path`. A missing file has no lines; a torn last line is not returned.
pub fn read_lines(path: &Path, start: u64, end: Option<u64>) -> Result<Vec<LogLine>, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Open {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let (mut number, mut offset) = (0u64, 0u64);
    let mut buf = Vec::new();
    while end.is_none_or(|end| number < end) {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        if number >= start {
            buf.pop();
            out.push(LogLine {
                number,
                start: offset,
                end: offset + n as u64,
                text: String::from_utf8_lossy(&buf).into_owned(),
            });
        }
        number += 1;
        offset += n as u64;
    }
    Ok(out)
}

/// Lines `start..end` as the YAML text the logs APIs return (each line with its newline).
pub fn read_text(path: &Path, start: u64, end: Option<u64>) -> Result<String, Error> {
    let lines = read_lines(path, start, end)?;
    let mut text = String::with_capacity(lines.iter().map(|l| l.text.len() + 1).sum());
    for line in lines {
        text.push_str(&line.text);
        text.push('\n');
    }
    Ok(text)
}

/// Complete lines in the log at `path` (0 if it does not exist).
pub fn line_count(path: &Path) -> Result<u64, Error> {
    match File::open(path) {
        Ok(mut file) => scan(&mut file, path).map(|(lines, _)| lines),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(Error::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(msg: &str) -> Entry {
        Entry {
            dt: datetime!(2023-01-12 10:00:00.123456 UTC),
            lvl: Level::Info,
            msg: serde_json::Value::String(msg.into()),
            ns: None,
        }
    }

    #[test]
    fn line_format_matches_lava() {
        assert_eq!(
            entry("start: 0 validate").to_line(),
            r#"- {"dt": "2023-01-12T10:00:00.123456", "lvl": "info", "msg": "start: 0 validate"}"#
        );
        let results = Entry {
            lvl: Level::Results,
            msg: serde_json::json!({"case": "boot", "definition": "lava", "result": "pass"}),
            ..entry("")
        };
        assert_eq!(
            results.to_line(),
            r#"- {"dt": "2023-01-12T10:00:00.123456", "lvl": "results", "msg": {"case": "boot", "definition": "lava", "result": "pass"}}"#
        );
        let feedback = Entry {
            lvl: Level::Feedback,
            ns: Some("common".into()),
            ..entry("x\"y\n")
        };
        assert_eq!(
            feedback.to_line(),
            r#"- {"dt": "2023-01-12T10:00:00.123456", "lvl": "feedback", "msg": "x\"y\n", "ns": "common"}"#
        );
        let odd = entry("del\u{7f} nel\u{85} ls\u{2028} bom\u{feff} é");
        assert_eq!(
            odd.to_line(),
            r#"- {"dt": "2023-01-12T10:00:00.123456", "lvl": "info", "msg": "del\u007f nel\u0085 ls\u2028 bom\ufeff é"}"#
        );
        let long = entry(&"a".repeat(1_000_001));
        assert!(long.to_line().contains("<line way too long ...>"));
    }

    #[test]
    fn append_and_read_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs/1/output.yaml");
        let mut writer = JobLogWriter::open(&path).unwrap();
        assert_eq!(writer.append(&entry("zero")).unwrap(), 0);
        assert_eq!(
            writer
                .append_batch(&[entry("one"), entry("two"), entry("three")])
                .unwrap(),
            1
        );
        assert_eq!(writer.lines(), 4);
        assert!(matches!(
            writer.append_lines(&["a\nb".into()]),
            Err(Error::Newline)
        ));

        let all = read_lines(&path, 0, None).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].start, 0);
        assert_eq!(all[1].start, all[0].end);
        assert!(all[3].text.contains("\"three\""));
        let mid = read_lines(&path, 1, Some(3)).unwrap();
        assert_eq!(mid.iter().map(|l| l.number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(read_lines(&path, 10, None).unwrap(), []);
        assert_eq!(read_lines(&path, 3, Some(1)).unwrap(), []);
        let text = read_text(&path, 2, None).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("}\n"));
        assert_eq!(line_count(&path).unwrap(), 4);
        assert_eq!(read_lines(&dir.path().join("none"), 0, None).unwrap(), []);
        assert_eq!(line_count(&dir.path().join("none")).unwrap(), 0);
    }

    #[test]
    fn synced_lines_survive_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.yaml");
        {
            let mut writer = JobLogWriter::open(&path).unwrap();
            writer.append(&entry("kept 0")).unwrap();
            writer.append(&entry("kept 1")).unwrap();
            // The writer is dropped without any close: what append returned is on disk.
        }
        // A crash in the middle of the next write leaves a line without its newline.
        {
            let mut file = OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(b"- {\"dt\": \"2023-01-12T10:00:01").unwrap();
        }
        let lines = read_lines(&path, 0, None).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].text.contains("kept 1"));
        assert_eq!(line_count(&path).unwrap(), 2);

        let mut writer = JobLogWriter::open(&path).unwrap();
        assert_eq!(writer.lines(), 2);
        assert_eq!(writer.append(&entry("after")).unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("10:00:01"));
        assert!(
            text.lines()
                .all(|l| l.starts_with("- {") && l.ends_with('}'))
        );
    }
}
