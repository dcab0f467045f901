//! Job logs: one append-only file per job in LAVA's `output.yaml` line format, and the one
//! rule for where it is ([`log_path`]: `<data_dir>/jobs/<id>/output.yaml`).
//!
//! The log has no database row: every writer and reader derives its path from the job id
//! with [`log_path`], and whether more lines may come is the job's state (Finished or not).
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
//! and `fsync`s the directory when it creates the file. [`JobLogWriter::append`] and
//! [`JobLogWriter::append_lines`] `fdatasync` before returning, so a line they returned `Ok`
//! for survives a power cut; [`JobLogWriter::write_batch`] leaves that to a later
//! [`JobLogWriter::sync`], which the dispatcher's writer calls on a timer and at action and job
//! ends (`dispatcher::log`). A line torn by a crash has no final newline: readers ignore it and
//! the next writer truncates it away.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::model::JobId;
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

/// The directory of one job's files under `data_dir`: `<data_dir>/jobs/<id>` (the log, and
/// the configuration files `scheduler.jobs.configuration` serves).
pub fn job_dir(data_dir: &Path, job: JobId) -> PathBuf {
    data_dir.join("jobs").join(job.to_string())
}

/// Where the log of `job` is: `<data_dir>/jobs/<id>/output.yaml`, named as in LAVA. The
/// one path rule for the job log: the dispatcher writes there, every API reads there.
pub fn log_path(data_dir: &Path, job: JobId) -> PathBuf {
    job_dir(data_dir, job).join("output.yaml")
}

/// [`read_text`] on the blocking pool, for async callers (the file may be large, and a log
/// is never read on an async worker nor inside a store call).
pub async fn read_text_blocking(
    path: PathBuf,
    start: u64,
    end: Option<u64>,
) -> Result<String, Error> {
    let at = path.clone();
    tokio::task::spawn_blocking(move || read_text(&path, start, end))
        .await
        .map_err(|err| Error::Read {
            path: at,
            source: std::io::Error::other(err),
        })?
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
        let mut line = String::new();
        LineRenderer::default().push_line(self, &mut line);
        line
    }
}

/// Renders entries as log lines into a caller's buffer. It remembers the last second it
/// formatted: a console streaming 150 lines a second then formats each date and time once, not
/// per line, and a string message is escaped straight into the buffer without allocating.
#[derive(Debug, Default)]
pub struct LineRenderer {
    /// The Unix second `prefix` shows.
    second: Option<i64>,
    /// `2023-01-12T10:00:00` for `second`.
    prefix: String,
}

impl LineRenderer {
    /// Appends `entry`'s line, without the newline, to `out`.
    pub fn push_line(&mut self, entry: &Entry, out: &mut String) {
        // LAVA cuts lines of 10^6 characters or more; do the same.
        const LIMIT: usize = 1_000_000;
        let start = out.len();
        self.render(entry, &entry.msg, out);
        if out.len() - start < LIMIT {
            return;
        }
        out.truncate(start);
        let short = match &entry.msg {
            serde_json::Value::String(_) => {
                serde_json::Value::String("<line way too long ...>".into())
            }
            _ => serde_json::json!({"skip": "line way too long ..."}),
        };
        self.render(entry, &short, out);
    }

    fn render(&mut self, entry: &Entry, msg: &serde_json::Value, out: &mut String) {
        out.push_str("- {\"dt\": \"");
        self.push_dt(entry.dt, out);
        out.push_str("\", \"lvl\": \"");
        out.push_str(entry.lvl.as_str());
        out.push_str("\", \"msg\": ");
        match msg {
            serde_json::Value::String(text) => push_flow_str(out, text),
            other => out.push_str(&to_flow(other)),
        }
        if let Some(ns) = &entry.ns {
            out.push_str(", \"ns\": ");
            push_flow_str(out, ns);
        }
        out.push('}');
    }

    fn push_dt(&mut self, dt: OffsetDateTime, out: &mut String) {
        const SECONDS: &[FormatItem<'static>] =
            format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        let dt = dt.to_offset(time::UtcOffset::UTC);
        let second = dt.unix_timestamp();
        if self.second != Some(second) {
            self.prefix = dt.format(SECONDS).unwrap_or_default();
            self.second = Some(second);
        }
        out.push_str(&self.prefix);
        // Writing to a String cannot fail.
        let _ = write!(out, ".{:06}", dt.microsecond());
    }
}

/// Appends `text` as [`to_flow`] writes a string, without building a JSON value: serde_json's
/// escapes (`\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, `\u00XX` for other controls) and `\uXXXX`
/// for every other character YAML does not accept raw.
fn push_flow_str(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, c) in text.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{8}' => "\\b",
            '\t' => "\\t",
            '\n' => "\\n",
            '\u{c}' => "\\f",
            '\r' => "\\r",
            c if yaml_printable(c) => continue,
            _ => "",
        };
        out.push_str(&text[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escape);
        }
        plain = i + c.len_utf8();
    }
    out.push_str(&text[plain..]);
    out.push('"');
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
    renderer: LineRenderer,
    /// The last batch's text, kept so a streaming console costs no allocation per batch.
    buf: String,
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
        // O_APPEND: every `write` lands at the end of the file even when another writer
        // (a notification's outcome while the dispatcher still logs) appends too, so lines
        // never overwrite each other.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
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
            renderer: LineRenderer::default(),
            buf: String::new(),
        })
    }

    /// Appends one entry durably; returns its 0-based line number.
    pub fn append(&mut self, entry: &Entry) -> Result<u64, Error> {
        let first = self.write_batch(std::slice::from_ref(entry))?;
        self.sync()?;
        Ok(first)
    }

    /// Writes entries with one `write`, without syncing; returns the first one's line number.
    /// Readers of the file see them at once; they are durable after the next [`Self::sync`].
    pub fn write_batch(&mut self, entries: &[Entry]) -> Result<u64, Error> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for entry in entries {
            self.renderer.push_line(entry, &mut buf);
            buf.push('\n');
        }
        let written = self.write_text(&buf, entries.len() as u64);
        self.buf = buf;
        written
    }

    /// Flushes everything written so far to stable storage.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.file.sync_data().map_err(|source| Error::Sync {
            path: self.path.clone(),
            source,
        })
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
        self.write_text(&buf, lines.len() as u64)?;
        self.sync()?;
        Ok(first)
    }

    /// Writes `text` (`lines` complete lines) with one `write`; returns the first one's line
    /// number.
    fn write_text(&mut self, text: &str, lines: u64) -> Result<u64, Error> {
        let first = self.lines;
        if let Err(source) = self.file.write_all(text.as_bytes()) {
            // Put the file back to the last complete line so later appends stay aligned.
            let _ = self.file.set_len(self.size);
            let _ = self.file.seek(SeekFrom::Start(self.size));
            return Err(Error::Write {
                path: self.path.clone(),
                source,
            });
        }
        self.size += text.len() as u64;
        self.lines += lines;
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

    #[test]
    fn the_path_rule_is_lavas_layout() {
        let data = Path::new("/var/lib/lavabox");
        assert_eq!(
            job_dir(data, JobId(12)),
            Path::new("/var/lib/lavabox/jobs/12")
        );
        assert_eq!(
            log_path(data, JobId(12)),
            Path::new("/var/lib/lavabox/jobs/12/output.yaml")
        );
    }

    #[tokio::test]
    async fn a_missing_log_reads_empty_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), JobId(1));
        assert_eq!(read_text_blocking(path.clone(), 0, None).await.unwrap(), "");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = JobLogWriter::open(&path).unwrap();
        w.append(&Entry::now(Level::Info, "one")).unwrap();
        w.append(&Entry::now(Level::Info, "two")).unwrap();
        let text = read_text_blocking(path, 1, None).await.unwrap();
        assert!(
            text.contains("\"msg\": \"two\"") && !text.contains("one"),
            "{text}"
        );
    }

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
    fn cached_timestamps_follow_each_entry() {
        let mut renderer = LineRenderer::default();
        let mut out = String::new();
        for dt in [
            datetime!(2023-01-12 10:00:00.123456 UTC),
            datetime!(2023-01-12 10:00:00.999999 UTC),
            datetime!(2023-01-12 10:00:01.000001 UTC),
            datetime!(2023-01-12 09:59:59.5 UTC),
            datetime!(2023-01-12 11:00:01.000002 +01:00),
        ] {
            renderer.push_line(&Entry { dt, ..entry("x") }, &mut out);
            out.push('\n');
        }
        let stamps: Vec<&str> = out.lines().map(|l| &l[10..36]).collect();
        assert_eq!(
            stamps,
            [
                "2023-01-12T10:00:00.123456",
                "2023-01-12T10:00:00.999999",
                "2023-01-12T10:00:01.000001",
                "2023-01-12T09:59:59.500000",
                "2023-01-12T10:00:01.000002",
            ]
        );
    }

    proptest::proptest! {
        /// The direct string escaper writes exactly what serde_json plus the YAML escapes do.
        #[test]
        fn strings_escape_as_through_serde(text in "(?s).{0,40}", bytes in proptest::collection::vec(0u8..0xa0, 0..40)) {
            for text in [text, bytes.iter().map(|&b| char::from(b)).collect::<String>()] {
                let mut direct = String::new();
                push_flow_str(&mut direct, &text);
                proptest::prop_assert_eq!(direct, to_flow(&serde_json::Value::String(text)));
            }
        }
    }

    #[test]
    fn two_writers_of_one_log_never_overwrite_each_other() {
        // The dispatcher's writer and a notification's outcome may append at the same time.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.yaml");
        let mut first = JobLogWriter::open(&path).unwrap();
        let mut second = JobLogWriter::open(&path).unwrap();
        first.append(&entry("one")).unwrap();
        second.append(&entry("two")).unwrap();
        first.write_batch(&[entry("three")]).unwrap();
        first.sync().unwrap();
        let lines = read_lines(&path, 0, None).unwrap();
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        for (line, msg) in texts.iter().zip(["one", "two", "three"]) {
            assert!(line.contains(&format!("\"{msg}\"")), "{texts:?}");
        }
    }

    #[test]
    fn append_and_read_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs/1/output.yaml");
        let mut writer = JobLogWriter::open(&path).unwrap();
        assert_eq!(writer.append(&entry("zero")).unwrap(), 0);
        assert_eq!(
            writer
                .write_batch(&[entry("one"), entry("two"), entry("three")])
                .unwrap(),
            1
        );
        // Written without a sync: readers see the lines at once.
        assert_eq!(line_count(&path).unwrap(), 4);
        writer.sync().unwrap();
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
