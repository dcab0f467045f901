//! A small declarative schema checker with the semantics of the Python `voluptuous` schemas
//! LAVA 2023.01 validates jobs with, producing LAVA's message texts. The tables for each action
//! type live in the sibling files.
//!
//! The tables are LAVA's job schema (`lava_common/schemas`) merged with the server's submission
//! schema (`lava_scheduler_app/schema.py`), which LAVA applies on top of it. The job schema
//! refuses unknown keys only in strict mode ([`Mode::Strict`]); where the submission schema
//! refuses them too, a mapping is [`Closed::Always`].

pub(crate) mod boot;
pub(crate) mod deploy;
pub(crate) mod job;
pub(crate) mod test;

use regex::Regex;

use super::Mode;
use super::error::{Problem, Segment, YamlPath};
use super::yaml::{Node, Value};

/// A path under construction, as a borrowed linked list, so checking allocates nothing until a
/// problem is found.
#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Key(&'a str),
    KeyNode(&'a Node),
    Index(usize),
}

impl<'a> Path<'a> {
    /// The document root.
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    /// Child under a string key.
    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    /// Child under a key node of any type.
    pub(crate) fn key_node(&'a self, key: &'a Node) -> Path<'a> {
        match key.as_str() {
            Some(s) => self.key(s),
            None => Path {
                parent: Some(self),
                seg: Seg::KeyNode(key),
            },
        }
    }

    /// Child at a sequence index.
    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(index),
        }
    }

    /// The owned path.
    pub(crate) fn to_path(self) -> YamlPath {
        let mut segments = Vec::new();
        let mut cur = Some(&self);
        while let Some(p) = cur {
            match p.seg {
                Seg::Root => {}
                Seg::Key(k) => segments.push(Segment::Key(k.to_owned())),
                Seg::KeyNode(n) => segments.push(Segment::Key(n.short())),
                Seg::Index(i) => segments.push(Segment::Index(i)),
            }
            cur = p.parent;
        }
        segments.reverse();
        YamlPath(segments)
    }
}

/// Problems found so far.
pub(crate) struct Report {
    /// The problems, in document order of discovery.
    pub(crate) problems: Vec<Problem>,
    /// Probe mode: only count problems, build nothing (trying `Any` options is then cheap).
    quiet: bool,
    /// Problems counted in probe mode.
    quiet_count: usize,
    /// Strict or lenient about unknown keys.
    pub(crate) mode: Mode,
}

impl Report {
    /// An empty report for checks in `mode`.
    pub(crate) fn new(mode: Mode) -> Report {
        Report {
            problems: Vec::new(),
            quiet: false,
            quiet_count: 0,
            mode,
        }
    }

    fn probe(mode: Mode) -> Report {
        Report {
            quiet: true,
            ..Report::new(mode)
        }
    }

    /// Whether a mapping closed as `closed` refuses keys it does not know.
    fn refuses_unknown(&self, closed: Closed) -> bool {
        closed == Closed::Always || self.mode == Mode::Strict
    }

    /// How many problems were found.
    pub(crate) fn count(&self) -> usize {
        self.problems.len() + self.quiet_count
    }

    /// Records a problem at `node`.
    pub(crate) fn at(&mut self, path: Path<'_>, node: &Node, message: impl Into<String>) {
        self.push(path, node, message, None::<String>);
    }

    /// Records a problem at `node`, saying what was expected.
    pub(crate) fn push(
        &mut self,
        path: Path<'_>,
        node: &Node,
        message: impl Into<String>,
        expected: Option<impl Into<String>>,
    ) {
        if self.quiet {
            self.quiet_count += 1;
            return;
        }
        self.problems.push(Problem {
            path: path.to_path(),
            line: node.mark.line,
            column: node.mark.column,
            message: message.into(),
            expected: expected.map(Into::into),
        });
    }
}

/// A schema: what a value must look like.
pub(crate) enum Sch {
    /// Anything (Python `object`).
    Anything,
    /// A string.
    Str,
    /// A string of at least `min` and at most `max` characters.
    StrLen(usize, usize),
    /// `True` or `False`.
    Bool,
    /// A Python `int` (booleans included, as in Python).
    Int,
    /// A number within bounds (Python compares `True` as 1).
    Range(Option<f64>, Option<f64>),
    /// Exactly this string.
    Lit(&'static str),
    /// The boot `method`, with LAVA's `'method' should be '…'` message.
    Method(&'static str),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `None`.
    Null,
    /// A string matching a regular expression (anchored at the start, like Python's
    /// `re.match`), with LAVA's own message if it has one.
    Match(Regex, Option<&'static str>),
    /// Any mapping.
    Dict,
    /// A list whose every item matches one of these.
    List(Vec<Sch>),
    /// A mapping with known keys.
    Map(Box<MapSch>),
    /// The first of these that matches.
    AnyOf(Vec<Sch>),
    /// A LAVA timeout mapping (`{minutes: 5}`); closed like a mapping.
    Timeout(Closed),
    /// Different schemas per mode, where the submission schema and the lenient job schema
    /// together accept more than the strict one.
    ByMode {
        /// In strict mode.
        strict: Box<Sch>,
        /// In lenient mode.
        lenient: Box<Sch>,
    },
    /// All of these.
    All(Vec<Sch>),
    /// A string not among these (message given).
    NotIn(&'static [&'static str], &'static str),
}

/// Where a mapping refuses keys it does not know.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Closed {
    /// In strict mode only: only LAVA's job schema looks at this mapping, and it tolerates
    /// unknown keys when not strict.
    InStrictMode,
    /// In both modes: the server's submission schema, which is never lenient, refuses them too.
    Always,
}

/// A key a mapping schema knows.
pub(crate) struct Field {
    key: &'static str,
    /// `Some(message)` when the key is required.
    required: Option<&'static str>,
    group: Option<&'static str>,
    sch: Sch,
}

/// Which keys a pattern entry matches.
pub(crate) enum KeyPat {
    /// Any string key.
    AnyStr,
    /// String keys matching the regex (see [`anchored`]).
    Regex(Regex),
}

/// A mapping schema.
pub(crate) struct MapSch {
    fields: Vec<Field>,
    patterns: Vec<(KeyPat, Sch)>,
    /// With a message: the mapping needs at least one key matching the patterns.
    nonempty: Option<&'static str>,
    /// `All({...}, Length(min=n))`.
    min_len: Option<usize>,
    closed: Closed,
}

/// Required key.
pub(crate) fn req(key: &'static str, sch: Sch) -> Field {
    Field {
        key,
        required: Some("required key not provided"),
        group: None,
        sch,
    }
}

/// Required key with LAVA's own message when it is missing.
pub(crate) fn req_msg(key: &'static str, msg: &'static str, sch: Sch) -> Field {
    Field {
        key,
        required: Some(msg),
        group: None,
        sch,
    }
}

/// Optional key.
pub(crate) fn opt(key: &'static str, sch: Sch) -> Field {
    Field {
        key,
        required: None,
        group: None,
        sch,
    }
}

/// Optional key in an exclusion group (at most one key of a group may be present).
pub(crate) fn excl(key: &'static str, group: &'static str, sch: Sch) -> Field {
    Field {
        key,
        required: None,
        group: Some(group),
        sch,
    }
}

impl Field {
    /// The key.
    pub(crate) fn key(&self) -> &'static str {
        self.key
    }
}

impl MapSch {
    /// A mapping of these fields, refusing other keys in strict mode.
    pub(crate) fn new(fields: Vec<Field>) -> MapSch {
        MapSch {
            fields,
            patterns: Vec::new(),
            nonempty: None,
            min_len: None,
            closed: Closed::InStrictMode,
        }
    }

    /// Refuses unknown keys in both modes (the submission schema also checks this mapping).
    pub(crate) fn closed_always(mut self) -> MapSch {
        self.closed = Closed::Always;
        self
    }

    /// The fields, to build a larger mapping from.
    pub(crate) fn into_fields(self) -> Vec<Field> {
        self.fields
    }

    /// Requires at least `n` entries.
    pub(crate) fn min_len(mut self, n: usize) -> MapSch {
        self.min_len = Some(n);
        self
    }

    /// Adds fields.
    pub(crate) fn with(mut self, fields: Vec<Field>) -> MapSch {
        for field in fields {
            // Later definitions replace earlier ones, as with Python dict unpacking.
            self.fields.retain(|f| f.key != field.key);
            self.fields.push(field);
        }
        self
    }

    /// Allows other keys matching `pat`, with values matching `sch`.
    pub(crate) fn pattern(mut self, pat: KeyPat, sch: Sch) -> MapSch {
        self.patterns.push((pat, sch));
        self
    }

    /// Requires at least one pattern key, with this message when there is none.
    pub(crate) fn nonempty(mut self, msg: &'static str) -> MapSch {
        self.nonempty = Some(msg);
        self
    }

    /// Wraps in a [`Sch`].
    pub(crate) fn sch(self) -> Sch {
        Sch::Map(Box::new(self))
    }

    fn check(&self, node: &Node, path: Path<'_>, report: &mut Report) {
        let Some(entries) = node.as_map() else {
            report.at(path, node, "expected a dictionary");
            return;
        };
        let mut seen = vec![false; self.fields.len()];
        let mut group_seen: Vec<&'static str> = Vec::new();
        let mut pattern_keys = 0usize;
        for (key, value) in entries {
            let key_str = key.as_str();
            let child = path.key_node(key);
            if let Some(i) = key_str.and_then(|k| self.fields.iter().position(|f| f.key == k)) {
                if let (Some(flag), Some(field)) = (seen.get_mut(i), self.fields.get(i)) {
                    *flag = true;
                    if let Some(group) = field.group {
                        if group_seen.contains(&group) {
                            report.at(
                                child,
                                key,
                                format!(
                                    "two or more values in the same group of exclusion '{group}'"
                                ),
                            );
                        }
                        group_seen.push(group);
                    }
                    field.sch.check(value, child, report);
                }
                continue;
            }
            let pattern = key_str.and_then(|k| {
                self.patterns.iter().find(|(pat, _)| match pat {
                    KeyPat::AnyStr => true,
                    KeyPat::Regex(re) => re.is_match(k),
                })
            });
            match pattern {
                Some((_, sch)) => {
                    pattern_keys += 1;
                    sch.check(value, child, report);
                }
                None if !report.refuses_unknown(self.closed) => {}
                None => report.push(child, key, "extra keys not allowed", self.allowed_keys()),
            }
        }
        for (field, present) in self.fields.iter().zip(&seen) {
            if let (Some(msg), false) = (field.required, present) {
                report.push(
                    path.key(field.key),
                    node,
                    msg,
                    Some(format!("a `{}` key", field.key)),
                );
            }
        }
        if let (Some(msg), 0) = (self.nonempty, pattern_keys) {
            report.at(path, node, msg);
        }
        if let Some(min) = self.min_len
            && entries.len() < min
        {
            report.at(
                path,
                node,
                format!("length of value must be at least {min}"),
            );
        }
    }

    fn allowed_keys(&self) -> Option<String> {
        if self.fields.is_empty() {
            return None;
        }
        let keys: Vec<&str> = self.fields.iter().map(|f| f.key).collect();
        let mut text = format!("one of: {}", keys.join(", "));
        if !self.patterns.is_empty() {
            text.push_str(", or a name");
        }
        Some(text)
    }
}

impl Sch {
    /// `All(str, Length(min=1))`.
    pub(crate) fn nonempty_str() -> Sch {
        Sch::StrLen(1, usize::MAX)
    }

    /// `Range(min=n)`.
    pub(crate) fn at_least(n: i32) -> Sch {
        Sch::Range(Some(f64::from(n)), None)
    }

    /// `[str]`.
    pub(crate) fn str_list() -> Sch {
        Sch::List(vec![Sch::Str])
    }

    /// `Any(str, [str])`.
    pub(crate) fn str_or_list() -> Sch {
        Sch::AnyOf(vec![Sch::Str, Sch::str_list()])
    }

    /// A timeout only LAVA's job schema checks (lenient when not strict).
    pub(crate) fn timeout() -> Sch {
        Sch::Timeout(Closed::InStrictMode)
    }

    /// A timeout the submission schema checks too (`_timeout_schema`: never lenient).
    pub(crate) fn submission_timeout() -> Sch {
        Sch::Timeout(Closed::Always)
    }

    /// `strict` in strict mode, `lenient` otherwise.
    pub(crate) fn by_mode(strict: Sch, lenient: Sch) -> Sch {
        Sch::ByMode {
            strict: Box::new(strict),
            lenient: Box::new(lenient),
        }
    }

    /// `Match(pattern)`.
    pub(crate) fn matching(pattern: &str) -> Sch {
        Sch::Match(anchored(pattern), None)
    }

    /// `Match(pattern, msg=...)`.
    pub(crate) fn matching_msg(pattern: &str, msg: &'static str) -> Sch {
        Sch::Match(anchored(pattern), Some(msg))
    }

    /// Checks `node`, recording problems.
    pub(crate) fn check(&self, node: &Node, path: Path<'_>, report: &mut Report) {
        match self {
            Sch::Anything => {}
            Sch::Str => {
                if node.as_str().is_none() {
                    report.push(path, node, "expected str", Some("a string"));
                }
            }
            Sch::StrLen(min, max) => match node.as_str() {
                None => report.push(path, node, "expected str", Some("a string")),
                Some(s) => {
                    let n = s.chars().count();
                    if n < *min {
                        report.at(
                            path,
                            node,
                            format!("length of value must be at least {min}"),
                        );
                    } else if n > *max {
                        report.at(path, node, format!("length of value must be at most {max}"));
                    }
                }
            },
            Sch::Bool => {
                if node.as_bool().is_none() {
                    report.push(path, node, "expected bool", Some("true or false"));
                }
            }
            Sch::Int => {
                if node.as_int().is_none() {
                    report.push(path, node, "expected int", Some("an integer"));
                }
            }
            Sch::Range(min, max) => match node.as_number() {
                None => report.push(
                    path,
                    node,
                    "invalid value or type (must have a partial ordering)",
                    Some("a number"),
                ),
                Some(v) => {
                    if let Some(min) = min
                        && (v.is_nan() || v < *min)
                    {
                        report.at(path, node, format!("value must be at least {min}"));
                        return;
                    }
                    if let Some(max) = max
                        && (v.is_nan() || v > *max)
                    {
                        report.at(path, node, format!("value must be at most {max}"));
                    }
                }
            },
            Sch::Lit(lit) => {
                if node.as_str() != Some(lit) {
                    report.push(path, node, "not a valid value", Some(format!("`{lit}`")));
                }
            }
            Sch::Method(lit) => {
                if node.as_str() != Some(lit) {
                    report.push(
                        path,
                        node,
                        format!("'method' should be '{lit}'"),
                        Some(format!("`{lit}`")),
                    );
                }
            }
            Sch::OneOf(options) => {
                if !node.as_str().is_some_and(|s| options.contains(&s)) {
                    report.push(
                        path,
                        node,
                        "not a valid value",
                        Some(format!("one of: {}", options.join(", "))),
                    );
                }
            }
            Sch::Null => {
                if node.value != Value::Null {
                    report.at(path, node, "expected None");
                }
            }
            Sch::Match(re, msg) => match node.as_str() {
                Some(s) if re.is_match(s) => {}
                Some(_) => match msg {
                    Some(msg) => report.at(path, node, *msg),
                    None => report.at(
                        path,
                        node,
                        format!("does not match regular expression {}", re.as_str()),
                    ),
                },
                None => report.push(path, node, "expected string or buffer", Some("a string")),
            },
            Sch::Dict => {
                if node.as_map().is_none() {
                    report.push(path, node, "expected dict", Some("a mapping"));
                }
            }
            Sch::List(items) => match node.as_seq() {
                None => report.at(path, node, "expected a list"),
                Some(seq) => {
                    for (i, item) in seq.iter().enumerate() {
                        let child = path.index(i);
                        if let [only] = items.as_slice() {
                            only.check(item, child, report);
                        } else {
                            check_any(items, item, child, report);
                        }
                    }
                }
            },
            Sch::Map(map) => map.check(node, path, report),
            Sch::AnyOf(options) => check_any(options, node, path, report),
            Sch::Timeout(closed) => {
                if report.refuses_unknown(*closed) {
                    check_timeout(node, path, report);
                } else {
                    check_lenient_timeout(node, path, report);
                }
            }
            Sch::ByMode { strict, lenient } => match report.mode {
                Mode::Strict => strict.check(node, path, report),
                Mode::Lenient => lenient.check(node, path, report),
            },
            Sch::All(all) => {
                for sch in all {
                    let before = report.count();
                    sch.check(node, path, report);
                    if report.count() > before {
                        return;
                    }
                }
            }
            Sch::NotIn(values, msg) => {
                if node.as_str().is_some_and(|s| values.contains(&s)) {
                    report.at(path, node, *msg);
                }
            }
        }
    }
}

/// How well an `Any` option fits: deepest problem first, then least to fix.
type Score = (usize, std::cmp::Reverse<usize>);

/// `Any(...)`: passes if one option passes; otherwise reports the problems of the option
/// that got furthest into the value (voluptuous keeps the error with the longest path).
fn check_any(options: &[Sch], node: &Node, path: Path<'_>, report: &mut Report) {
    // voluptuous keeps the error with the longest path; among equals we prefer the option
    // with the least to fix, counting a wrong literal (a wrong `from:`, `method:`) as worse.
    for option in options {
        let mut probe = Report::probe(report.mode);
        option.check(node, path, &mut probe);
        if probe.count() == 0 {
            return;
        }
    }
    if report.quiet {
        report.quiet_count += 1;
        return;
    }
    let mut best: Option<(Score, Vec<Problem>)> = None;
    let here = path.to_path().0.len();
    for option in options {
        let mut trial = Report::new(report.mode);
        option.check(node, path, &mut trial);
        if trial.problems.is_empty() {
            return;
        }
        let depth = trial
            .problems
            .iter()
            .map(|p| p.path.0.len())
            .max()
            .unwrap_or(0);
        let cost: usize = trial
            .problems
            .iter()
            .map(|p| {
                if p.path.0.len() == here && p.message.starts_with("expected") {
                    // The value is not even of this option's type.
                    5
                } else if p.message == "not a valid value"
                    || p.message.starts_with("'method' should")
                {
                    3
                } else {
                    1
                }
            })
            .sum();
        let score = (depth, std::cmp::Reverse(cost));
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, trial.problems));
        }
    }
    match best {
        Some((_, problems)) => report.problems.extend(problems),
        None => report.at(path, node, "no valid value"),
    }
}

/// A regex matching at the start of the text, like Python's `re.match`. The patterns are
/// constants of this crate; one that failed to compile would match nothing.
pub(crate) fn anchored(pattern: &str) -> Regex {
    let anchored = if pattern.starts_with('^') {
        pattern.to_owned()
    } else {
        format!("^(?:{pattern})")
    };
    Regex::new(&anchored).unwrap_or_else(|_| never())
}

fn never() -> Regex {
    Regex::new(r"[^\s\S]").unwrap_or_else(|_| never())
}

/// The time units a LAVA timeout may use.
pub(crate) const TIMEOUT_UNITS: [&str; 4] = ["days", "hours", "minutes", "seconds"];

fn check_timeout(node: &Node, path: Path<'_>, report: &mut Report) {
    let expected =
        "a mapping with one of days, hours, minutes, seconds (an integer >= 1) and optionally skip";
    let Some(entries) = node.as_map() else {
        report.push(path, node, "expected a dictionary", Some(expected));
        return;
    };
    let mut units = 0;
    for (key, value) in entries {
        let child = path.key_node(key);
        match key.as_str() {
            Some("skip") => Sch::Bool.check(value, child, report),
            Some(k) if TIMEOUT_UNITS.contains(&k) => {
                units += 1;
                if units > 1 {
                    report.push(child, key, "extra keys not allowed", Some(expected));
                } else {
                    Sch::All(vec![Sch::Int, Sch::at_least(1)]).check(value, child, report);
                }
            }
            _ => report.push(child, key, "extra keys not allowed", Some(expected)),
        }
    }
    if units == 0 {
        report.push(path, node, "required key not provided", Some(expected));
    }
}

/// LAVA's `timeout()` when not strict: `Any({days}, {hours}, {minutes}, {seconds})`, each with
/// an optional `skip`, tolerating other keys. So one good unit is enough, whatever else is there.
fn check_lenient_timeout(node: &Node, path: Path<'_>, report: &mut Report) {
    let expected = "a mapping with one of days, hours, minutes, seconds (an integer >= 1)";
    let Some(entries) = node.as_map() else {
        report.push(path, node, "expected a dictionary", Some(expected));
        return;
    };
    let value_sch = Sch::All(vec![Sch::Int, Sch::at_least(1)]);
    let mut first_bad_unit = None;
    let mut good_unit = false;
    for (key, value) in entries {
        let child = path.key_node(key);
        match key.as_str() {
            Some("skip") => Sch::Bool.check(value, child, report),
            Some(k) if TIMEOUT_UNITS.contains(&k) => {
                let mut probe = Report::probe(report.mode);
                value_sch.check(value, child, &mut probe);
                if probe.count() == 0 {
                    good_unit = true;
                } else if first_bad_unit.is_none() {
                    first_bad_unit = Some((key, value));
                }
            }
            _ => {}
        }
    }
    if good_unit {
        return;
    }
    match first_bad_unit {
        Some((key, value)) => value_sch.check(value, path.key_node(key), report),
        None => report.push(path, node, "required key not provided", Some(expected)),
    }
}
