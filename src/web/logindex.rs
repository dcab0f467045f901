//! Random access to a job log of any size: an index of the log file the dispatcher writes
//! (`store::joblog::log_path`), built on first use and extended on demand, so the job page
//! fetches any range of lines by number and filters levels and searches on the server; the
//! page never holds the whole log.
//!
//! Beside `output.yaml`, in the job's directory (`joblog::job_dir`):
//! - `output.idx`: for line `i` (0-based), the byte offset just past its newline, a `u64`
//!   little-endian (LAVA's `output.idx` is the same idea; its byte order is the host's);
//! - `output.lvl`: one byte per line, the line's level ([`level_code`]);
//! - `output.act`: one text line per pipeline action start and end the dispatcher logged
//!   (`<line>\t<start|end>\t<level>\t<name>\t<detail>`).
//!
//! `output.idx` is written last in each extension, so its length says how many lines are
//! indexed; files that disagree (a crash while extending) are rebuilt. Extensions hold an
//! exclusive lock on `output.idx`, so two requests never index the same lines twice. A torn
//! last line (no newline yet) is not indexed until it is complete.
//!
//! Everything here is blocking file I/O: async callers use `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the job log index at {path}")]
pub struct Error {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

trait Ctx<T> {
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T> Ctx<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error {
            path: path.to_owned(),
            source,
        })
    }
}

/// LAVA's level names, in code order; [`OTHER`] for anything else.
pub const LEVELS: &[&str] = &[
    "debug",
    "info",
    "warning",
    "error",
    "exception",
    "results",
    "target",
    "input",
    "feedback",
    "event",
];

/// The code of a level not in [`LEVELS`].
pub const OTHER: u8 = 255;

/// The `output.lvl` byte of level `name`.
pub fn level_code(name: &str) -> u8 {
    LEVELS
        .iter()
        .position(|l| *l == name)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(OTHER)
}

/// One log line as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// 0-based line number (the page shows `n + 1` and links `#L<n+1>`).
    pub n: u64,
    /// The `dt` field.
    pub dt: String,
    /// The `lvl` field.
    pub lvl: String,
    /// The message: a string as is, a mapping (results) as JSON.
    pub msg: String,
}

/// Parses one line of `output.yaml` (`- {"dt": …, "lvl": …, "msg": …}`, JSON after the
/// dash). A line that is not in that form is shown whole as a `debug` line.
pub fn parse_line(n: u64, text: &str) -> Row {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        dt: String,
        #[serde(default)]
        lvl: String,
        #[serde(default)]
        msg: serde_json::Value,
    }
    let parsed = text
        .strip_prefix("- ")
        .and_then(|json| serde_json::from_str::<Raw>(json).ok());
    match parsed {
        Some(raw) => Row {
            n,
            dt: raw.dt,
            lvl: raw.lvl,
            msg: match raw.msg {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
        },
        None => Row {
            n,
            dt: String::new(),
            lvl: "debug".into(),
            msg: text.to_owned(),
        },
    }
}

/// The level of a raw line without parsing all of it (indexing reads every line once).
fn raw_level(text: &str) -> u8 {
    const KEY: &str = "\"lvl\": \"";
    text.find(KEY)
        .map(|at| &text[at + KEY.len()..])
        .and_then(|rest| rest.split_once('"'))
        .map_or(OTHER, |(name, _)| level_code(name))
}

/// A pipeline action's start or end, as the dispatcher logs them (`start: 1.2 name (timeout
/// 30s)`, `end: 1.2 name (duration 1.50)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Marker {
    /// Its line.
    pub line: u64,
    /// `start` or `end`.
    pub kind: String,
    /// The pipeline level (`1.2`).
    pub level: String,
    /// The action name.
    pub name: String,
    /// The rest: the timeout or the duration.
    pub detail: String,
}

/// The action marker of an `info` message, if it is one.
pub fn marker(line: u64, msg: &str) -> Option<Marker> {
    let (kind, rest) = msg
        .strip_prefix("start: ")
        .map(|r| ("start", r))
        .or_else(|| msg.strip_prefix("end: ").map(|r| ("end", r)))?;
    let mut words = rest.splitn(3, ' ');
    let level = words.next()?;
    if !level.bytes().all(|b| b.is_ascii_digit() || b == b'.') || level.is_empty() {
        return None;
    }
    let name = words.next()?;
    let detail = words
        .next()
        .unwrap_or("")
        .trim_matches(|c| c == '(' || c == ')');
    Some(Marker {
        line,
        kind: kind.into(),
        level: level.into(),
        name: name.into(),
        detail: detail.into(),
    })
}

/// Which lines a view of the log shows: all levels or some, minus folded line ranges (an
/// action's lines folded under its `start:` line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Only lines of these level codes ([`level_code`]); `None`: every level.
    pub levels: Option<Vec<u8>>,
    /// Hidden line ranges, `from..to` (0-based, `to` exclusive).
    pub hidden: Vec<(u64, u64)>,
}

/// The most folded ranges a view takes.
pub const MAX_FOLDS: usize = 1000;

impl View {
    /// Parses the page's `levels=a,b` and `hide=10-20,30-40` parameters; malformed ranges
    /// are ignored.
    pub fn parse(levels: Option<&str>, hide: Option<&str>) -> View {
        let levels = levels
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').map(|name| level_code(name.trim())).collect());
        let hidden = hide
            .unwrap_or("")
            .split(',')
            .filter_map(|r| {
                let (a, b) = r.trim().split_once('-')?;
                let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
                (a < b).then_some((a, b))
            })
            .take(MAX_FOLDS)
            .collect();
        View { levels, hidden }
    }

    /// Whether nothing is filtered out.
    pub fn shows_all(&self) -> bool {
        self.levels.is_none() && self.hidden.is_empty()
    }

    /// Whether line `n` of level `code` is shown.
    pub fn shows(&self, n: u64, code: u8) -> bool {
        self.levels.as_ref().is_none_or(|l| l.contains(&code))
            && !self.hidden.iter().any(|(a, b)| (*a..*b).contains(&n))
    }
}

/// The index files of the log at `log` (`output.yaml`).
#[derive(Debug, Clone)]
pub struct LogIndex {
    log: PathBuf,
    idx: PathBuf,
    lvl: PathBuf,
    act: PathBuf,
}

/// What the index covers after [`LogIndex::extend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Complete lines indexed.
    pub lines: u64,
    /// Bytes they span.
    pub bytes: u64,
}

impl LogIndex {
    /// The index of the log file `log`.
    pub fn new(log: &Path) -> LogIndex {
        let with = |ext: &str| log.with_extension(ext);
        LogIndex {
            log: log.to_owned(),
            idx: with("idx"),
            lvl: with("lvl"),
            act: with("act"),
        }
    }

    /// Indexes the lines written since the last call; a missing log has no lines (and gets
    /// no index files).
    pub fn extend(&self) -> Result<Extent, Error> {
        let log = match File::open(&self.log) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Extent { lines: 0, bytes: 0 });
            }
            Err(e) => return Err(e).at(&self.log),
        };
        let mut idx = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.idx)
            .at(&self.idx)?;
        idx.lock().at(&self.idx)?;
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(p)
                .at(p)
        };
        let (mut lvl, mut act) = (open(&self.lvl)?, open(&self.act)?);
        let size = log.metadata().at(&self.log)?.len();
        let mut lines = idx.metadata().at(&self.idx)?.len() / 8;
        let mut end = if lines == 0 {
            0
        } else {
            read_u64(&idx, lines - 1).at(&self.idx)?
        };
        let levels_agree = lvl.metadata().at(&self.lvl)?.len() == lines;
        if !levels_agree || end > size {
            // A crash between the files' writes, or a log rewritten: start again.
            for (f, p) in [(&idx, &self.idx), (&lvl, &self.lvl), (&act, &self.act)] {
                f.set_len(0).at(p)?;
            }
            (lines, end) = (0, 0);
        }
        if end < size {
            let mut reader = BufReader::with_capacity(1 << 20, &log);
            reader.seek(SeekFrom::Start(end)).at(&self.log)?;
            let (mut ends, mut levels, mut acts) = (Vec::new(), Vec::new(), String::new());
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).at(&self.log)?;
                if n == 0 || buf.last() != Some(&b'\n') {
                    break;
                }
                end += n as u64;
                let text = String::from_utf8_lossy(&buf[..n - 1]);
                let level = raw_level(&text);
                if level == 1
                    && (text.contains("\"msg\": \"start: ") || text.contains("\"msg\": \"end: "))
                {
                    let row = parse_line(lines, &text);
                    if let Some(m) = marker(lines, &row.msg) {
                        acts.push_str(&format!(
                            "{}\t{}\t{}\t{}\t{}\n",
                            m.line, m.kind, m.level, m.name, m.detail
                        ));
                    }
                }
                ends.extend_from_slice(&end.to_le_bytes());
                levels.push(level);
                lines += 1;
                if ends.len() >= 8 << 16 {
                    flush(
                        &mut act,
                        &mut lvl,
                        &mut idx,
                        &mut acts,
                        &mut levels,
                        &mut ends,
                        self,
                    )?;
                }
            }
            flush(
                &mut act,
                &mut lvl,
                &mut idx,
                &mut acts,
                &mut levels,
                &mut ends,
                self,
            )?;
        }
        Ok(Extent { lines, bytes: end })
    }

    /// Lines `start..start + count` (clamped to the indexed ones) of an index that covers
    /// `extent`, or, with a [`View`] that filters, the `count` lines from position `start`
    /// among those it shows; returns the rows and how many lines the view has.
    pub fn rows(
        &self,
        extent: Extent,
        start: u64,
        count: u64,
        view: &View,
    ) -> Result<(u64, Vec<Row>), Error> {
        if extent.lines == 0 {
            return Ok((0, Vec::new()));
        }
        let idx = File::open(&self.idx).at(&self.idx)?;
        let log = File::open(&self.log).at(&self.log)?;
        if view.shows_all() {
            let first = start.min(extent.lines);
            let last = (start.saturating_add(count)).min(extent.lines);
            return Ok((extent.lines, self.range(&idx, &log, first, last)?));
        }
        let mut codes = Vec::new();
        File::open(&self.lvl)
            .at(&self.lvl)?
            .take(extent.lines)
            .read_to_end(&mut codes)
            .at(&self.lvl)?;
        let mut total = 0u64;
        let mut rows = Vec::new();
        for (n, code) in codes.iter().enumerate() {
            if view.shows(n as u64, *code) {
                if total >= start && total < start.saturating_add(count) {
                    let n = n as u64;
                    rows.extend(self.range(&idx, &log, n, n + 1)?);
                }
                total += 1;
            }
        }
        Ok((total, rows))
    }

    fn range(&self, idx: &File, log: &File, first: u64, last: u64) -> Result<Vec<Row>, Error> {
        if first >= last {
            return Ok(Vec::new());
        }
        let begin = if first == 0 {
            0
        } else {
            read_u64(idx, first - 1).at(&self.idx)?
        };
        let end = read_u64(idx, last - 1).at(&self.idx)?;
        let len = usize::try_from(end - begin).unwrap_or(usize::MAX);
        let mut bytes = vec![0u8; len];
        log.read_exact_at(&mut bytes, begin).at(&self.log)?;
        Ok(bytes
            .split(|&b| b == b'\n')
            .take((last - first) as usize)
            .enumerate()
            .map(|(i, line)| parse_line(first + i as u64, &String::from_utf8_lossy(line)))
            .collect())
    }

    /// Up to `limit` lines at or after line `from` whose text contains `needle` (case
    /// folded), in order; a search reads the file once from `from` in large blocks, never
    /// into memory whole, and finds each hit's line number in the index.
    pub fn search(
        &self,
        extent: Extent,
        needle: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Row>, Error> {
        if needle.is_empty() || from >= extent.lines {
            return Ok(Vec::new());
        }
        let Ok(pattern) = regex::bytes::RegexBuilder::new(&regex::escape(needle))
            .case_insensitive(true)
            .build()
        else {
            return Ok(Vec::new());
        };
        let idx = File::open(&self.idx).at(&self.idx)?;
        let log = File::open(&self.log).at(&self.log)?;
        let end_of = |n: u64| read_u64(&idx, n).at(&self.idx);
        let mut at = if from == 0 { 0 } else { end_of(from - 1)? };
        let mut found = Vec::new();
        let mut block = vec![0u8; 1 << 20];
        while at < extent.bytes && found.len() < limit {
            let want = usize::try_from(extent.bytes - at)
                .unwrap_or(usize::MAX)
                .min(block.len());
            log.read_exact_at(&mut block[..want], at).at(&self.log)?;
            // Whole lines only: a block ends after its last newline (a line longer than the
            // block is searched on its own).
            let len = block[..want]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(want, |i| i + 1);
            let mut pos = 0;
            while found.len() < limit {
                let Some(m) = pattern.find(&block[pos..len]) else {
                    break;
                };
                let hit = at + (pos + m.start()) as u64;
                let n = self.line_at(&idx, hit, extent.lines)?;
                found.extend(self.range(&idx, &log, n, n + 1)?);
                let next = end_of(n)?;
                pos = usize::try_from(next - at).unwrap_or(len).min(len);
            }
            at += len as u64;
        }
        Ok(found)
    }

    /// The line holding byte `offset`: the first whose end is past it (binary search over
    /// `output.idx`, a few reads).
    fn line_at(&self, idx: &File, offset: u64, lines: u64) -> Result<u64, Error> {
        let (mut lo, mut hi) = (0u64, lines);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if read_u64(idx, mid).at(&self.idx)? <= offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.min(lines.saturating_sub(1)))
    }

    /// The action markers among the first `extent.lines` lines.
    pub fn markers(&self, extent: Extent) -> Result<Vec<Marker>, Error> {
        let text = match std::fs::read_to_string(&self.act) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&self.act),
        };
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(5, '\t');
                Some(Marker {
                    line: f.next()?.parse().ok()?,
                    kind: f.next()?.into(),
                    level: f.next()?.into(),
                    name: f.next()?.into(),
                    detail: f.next().unwrap_or("").into(),
                })
            })
            .filter(|m| m.line < extent.lines)
            .collect())
    }
}

fn read_u64(idx: &File, i: u64) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    idx.read_exact_at(&mut b, i * 8)?;
    Ok(u64::from_le_bytes(b))
}

#[allow(clippy::too_many_arguments)]
fn flush(
    act: &mut File,
    lvl: &mut File,
    idx: &mut File,
    acts: &mut String,
    levels: &mut Vec<u8>,
    ends: &mut Vec<u8>,
    ix: &LogIndex,
) -> Result<(), Error> {
    // The index last: its length is what the other files are trusted up to.
    act.write_all(acts.as_bytes()).at(&ix.act)?;
    lvl.write_all(levels).at(&ix.lvl)?;
    idx.write_all(ends).at(&ix.idx)?;
    acts.clear();
    levels.clear();
    ends.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::joblog::{Entry, JobLogWriter, Level};

    #[test]
    fn lines_parse_into_rows() {
        let r = parse_line(
            3,
            r#"- {"dt": "2023-01-12T10:00:00.123456", "lvl": "target", "msg": "a \"b\""}"#,
        );
        assert_eq!(
            (r.n, r.dt.as_str(), r.lvl.as_str(), r.msg.as_str()),
            (3, "2023-01-12T10:00:00.123456", "target", "a \"b\"")
        );
        let r = parse_line(
            0,
            r#"- {"dt": "x", "lvl": "results", "msg": {"case": "ls", "result": "fail"}}"#,
        );
        assert_eq!(r.msg, r#"{"case":"ls","result":"fail"}"#);
        assert_eq!(parse_line(0, "garbage").msg, "garbage");
        assert_eq!(raw_level(r#"- {"dt": "x", "lvl": "error", "msg": "m"}"#), 3);
        assert_eq!(raw_level("nothing"), OTHER);
    }

    #[test]
    fn markers_are_the_dispatchers_action_lines() {
        let m = marker(7, "start: 1.2 login-action (timeout 30s)").unwrap();
        assert_eq!(
            (
                m.line,
                m.kind.as_str(),
                m.level.as_str(),
                m.name.as_str(),
                m.detail.as_str()
            ),
            (7, "start", "1.2", "login-action", "timeout 30s")
        );
        let m = marker(9, "end: 2 lava-test-retry (duration 1.50)").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.detail.as_str()),
            ("end", "duration 1.50")
        );
        assert!(marker(0, "start: the engine").is_none());
        assert!(marker(0, "restart: 1 x").is_none());
    }

    fn write_log(path: &Path, lines: &[(Level, &str)]) {
        let mut w = JobLogWriter::open(path).unwrap();
        let entries: Vec<Entry> = lines.iter().map(|(l, m)| Entry::now(*l, *m)).collect();
        w.write_batch(&entries).unwrap();
    }

    #[test]
    fn the_index_grows_with_the_log_and_serves_ranges_filters_and_search() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("output.yaml");
        let ix = LogIndex::new(&log);
        assert_eq!(ix.extend().unwrap().lines, 0);
        assert!(!dir.path().join("output.idx").exists());
        write_log(
            &log,
            &[
                (Level::Info, "start: 1 deploy (timeout 10s)"),
                (Level::Target, "hello"),
                (Level::Error, "Boom"),
            ],
        );
        let e = ix.extend().unwrap();
        assert_eq!(e.lines, 3);
        // A torn line is not indexed until complete.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"- {\"dt\": \"x\", \"lvl\": \"info\", \"msg\": \"end: 1 dep")
            .unwrap();
        assert_eq!(ix.extend().unwrap().lines, 3);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"loy (duration 0.50)\"}\n")
            .unwrap();
        let e = ix.extend().unwrap();
        assert_eq!(e.lines, 4);
        let (total, rows) = ix.rows(e, 1, 2, &View::default()).unwrap();
        assert_eq!(total, 4);
        assert_eq!(
            rows.iter().map(|r| r.msg.as_str()).collect::<Vec<_>>(),
            ["hello", "Boom"]
        );
        let (total, rows) = ix
            .rows(e, 0, 10, &View::parse(Some("error"), None))
            .unwrap();
        assert_eq!((total, rows[0].n, rows[0].msg.as_str()), (1, 2, "Boom"));
        // Folding the action's lines 1..3 leaves its start and end.
        let (total, rows) = ix
            .rows(e, 0, 10, &View::parse(None, Some("1-3,x,5-2")))
            .unwrap();
        assert_eq!(
            (total, rows.iter().map(|r| r.n).collect::<Vec<_>>()),
            (2, vec![0, 3])
        );
        let found = ix.search(e, "boom", 0, 10).unwrap();
        assert_eq!(
            (found.len(), found[0].n, found[0].msg.as_str()),
            (1, 2, "Boom")
        );
        assert!(ix.search(e, "boom", 3, 10).unwrap().is_empty());
        let every: Vec<u64> = ix
            .search(e, "\"lvl\"", 0, 10)
            .unwrap()
            .iter()
            .map(|r| r.n)
            .collect();
        assert_eq!(every, [0, 1, 2, 3]);
        assert_eq!(
            ix.search(e, "o", 1, 2)
                .unwrap()
                .iter()
                .map(|r| r.n)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(
            ix.search(e, "(", 0, 10)
                .unwrap()
                .iter()
                .all(|r| r.msg.contains('('))
        );
        let marks = ix.markers(e).unwrap();
        assert_eq!(
            marks
                .iter()
                .map(|m| (m.line, m.kind.as_str()))
                .collect::<Vec<_>>(),
            [(0, "start"), (3, "end")]
        );
        // Index files that disagree are rebuilt, with the same answers.
        std::fs::write(dir.path().join("output.lvl"), b"").unwrap();
        let e2 = ix.extend().unwrap();
        assert_eq!(e2, e);
        assert_eq!(
            ix.rows(e2, 3, 1, &View::default()).unwrap().1[0].msg,
            "end: 1 deploy (duration 0.50)"
        );
        assert_eq!(ix.markers(e2).unwrap().len(), 2);
    }
}
