//! Incremental parser for the console stream of a LAVA test shell.
//!
//! Bytes arrive in arbitrary chunks from a serial line or ssh session. [`SignalParser`]
//! assembles them into lines (`\n`-terminated, `\r` dropped, terminal escape sequences such
//! as busybox's `ESC[6n` cursor query removed) and reports every line as an [`Event::Line`]
//! followed by the signals found on it, in the order they appear:
//!
//! - `<LAVA_SIGNAL_NAME params…>` test-shell signals ([`Signal`]),
//! - `<LAVA_TEST_RUNNER EXIT>` / `<LAVA_TEST_RUNNER INSTALL_FAIL>` runner markers,
//! - `<LAVA_MULTI_NODE> <LAVA_API params…>` MultiNode requests ([`MultiNodeRequest`]).
//!
//! Kernel messages written to the same console can cut into a signal
//! (`<LAVA_SIGNAL_TESTCASE TEST_CA[   12.3] usb 1-1: …\r\nSE_ID=x RESULT=pass>`): when a line
//! holds an unfinished signal followed by a kernel timestamp, the part before the timestamp
//! is joined with the next line, and the signal is reported on that next line.
//!
//! A signal whose parameters are unusable becomes [`Event::Malformed`] carrying the message
//! LAVA logs or raises for it; deciding whether that stops the job needs the run state and is
//! left to [`crate::testshell::results`].
//!
//! The parser is pure and total: it never panics, keeps at most [`MAX_LINE`] bytes of an
//! unterminated line (a longer line is cut there, deterministically), and the events it
//! yields do not depend on how the input was split into chunks.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::model::TestResult;

/// Longest line kept, in bytes; a longer run without `\n` is reported in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// LAVA's signal pattern: `<LAVA_SIGNAL_(\S+) ([^>]+)>`.
static SIGNAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<LAVA_SIGNAL_(\S+) ([^>]+)>").expect("static signal regex compiles")
});

/// LAVA's MultiNode request pattern: `<LAVA_MULTI_NODE> <LAVA_(\S+) ([^>]+)>`.
static MULTINODE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<LAVA_MULTI_NODE> <LAVA_(\S+) ([^>]+)>").expect("static multinode regex compiles")
});

/// A kernel log timestamp such as `[   12.345678]`, which marks printk output that cut
/// into a line.
static KERNEL_STAMP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[\s*\d+\.\d+\]").expect("static kernel timestamp regex compiles")
});

/// Prefixes that open something [`SignalParser`] recognises.
const OPENERS: [&str; 3] = ["<LAVA_SIGNAL_", "<LAVA_MULTI_NODE>", "<LAVA_TEST_RUNNER"];

/// The runner's exit marker.
pub const RUNNER_EXIT: &str = "<LAVA_TEST_RUNNER EXIT>";
/// The runner's install failure marker.
pub const RUNNER_INSTALL_FAIL: &str = "<LAVA_TEST_RUNNER INSTALL_FAIL>";

/// A test case result as printed: one of LAVA's four values, or other text to be mapped by a
/// `fixupdict` (or rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseResult {
    /// `pass`, `fail`, `skip` or `unknown`, exactly (LAVA compares case-sensitively).
    Known(TestResult),
    /// Anything else, verbatim.
    Other(String),
}

impl CaseResult {
    /// Classifies printed result text.
    pub fn parse(raw: &str) -> CaseResult {
        match raw {
            "pass" => CaseResult::Known(TestResult::Pass),
            "fail" => CaseResult::Known(TestResult::Fail),
            "skip" => CaseResult::Known(TestResult::Skip),
            "unknown" => CaseResult::Known(TestResult::Unknown),
            other => CaseResult::Other(other.to_owned()),
        }
    }

    /// The text as printed.
    pub fn as_str(&self) -> &str {
        match self {
            CaseResult::Known(r) => r.as_str(),
            CaseResult::Other(s) => s,
        }
    }
}

/// A measurement that parsed as a decimal: the text as printed and its value as a float
/// (LAVA stores `float(Decimal(text))`).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The text as printed.
    pub raw: String,
    /// The value.
    pub value: f64,
}

impl Measurement {
    /// Parses text the way Python's `decimal.Decimal` accepts it (surrounding whitespace,
    /// sign, digits with single `_` separators, fraction, exponent, `Infinity`/`Inf`/`NaN`).
    /// Signalling NaN is refused because it cannot become a float.
    pub fn parse(raw: &str) -> Option<Measurement> {
        let value = parse_decimal(raw)?;
        Some(Measurement {
            raw: raw.to_owned(),
            value,
        })
    }
}

fn parse_decimal(raw: &str) -> Option<f64> {
    let s = raw.trim();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let special = match lower.as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ if lower.starts_with("nan") && lower[3..].bytes().all(|b| b.is_ascii_digit()) => {
            Some(f64::NAN)
        }
        _ => None,
    };
    if let Some(v) = special {
        return Some(if neg { -v } else { v });
    }
    let (mantissa, exponent) = match lower.find('e') {
        Some(i) => (&lower[..i], Some(&lower[i + 1..])),
        None => (&lower[..], None),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let int_ok = digits_ok(int_part, true);
    let frac_ok = frac_part.is_none_or(|f| digits_ok(f, true));
    let has_digit = !int_part.is_empty() || frac_part.is_some_and(|f| !f.is_empty());
    if !int_ok || !frac_ok || !has_digit {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !digits_ok(e, false) {
            return None;
        }
    }
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok()
}

/// Digits with optional single underscores between digits; empty allowed if `allow_empty`.
fn digits_ok(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let b = s.as_bytes();
    if b[0] == b'_' || b[b.len() - 1] == b'_' {
        return false;
    }
    let mut prev_us = false;
    for &c in b {
        if c == b'_' {
            if prev_us {
                return false;
            }
            prev_us = true;
        } else if c.is_ascii_digit() {
            prev_us = false;
        } else {
            return false;
        }
    }
    true
}

/// A `TESTCASE` signal whose parameters were well formed.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCaseSignal {
    /// `TEST_CASE_ID`.
    pub id: String,
    /// `RESULT`, before any fixupdict.
    pub result: CaseResult,
    /// `UNITS`, if given.
    pub units: Option<String>,
    /// `MEASUREMENT`, if given (already checked to be a decimal).
    pub measurement: Option<Measurement>,
    /// Any other `KEY=VALUE` parameters, keys lower-cased, in order.
    pub extra: Vec<(String, String)>,
}

/// A test-shell signal, `<LAVA_SIGNAL_NAME params>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `STARTRUN <testrun_id> <uuid>`: a test definition starts.
    StartRun {
        /// `<index>_<name>`, e.g. `0_smoke`.
        testrun_id: String,
        /// `<jobid>_<level>`.
        uuid: String,
    },
    /// `ENDRUN <testrun_id> <uuid>`: a test definition ended.
    EndRun {
        /// `<index>_<name>`.
        testrun_id: String,
        /// `<jobid>_<level>`.
        uuid: String,
    },
    /// `STARTTC <id>`: `lava-test-case --shell` starts running its command.
    StartTc {
        /// Test case id.
        id: String,
    },
    /// `ENDTC <id>`: the command of `lava-test-case --shell` ended.
    EndTc {
        /// Test case id.
        id: String,
    },
    /// `TESTCASE TEST_CASE_ID=… RESULT=…[ UNITS=…][ MEASUREMENT=…]`.
    TestCase(TestCaseSignal),
    /// `TESTSET START <name>`.
    TestSetStart {
        /// Set name.
        name: String,
    },
    /// `TESTSET STOP`.
    TestSetStop,
    /// `TESTSET` with a first word other than START or STOP: LAVA ignores it.
    TestSetOther {
        /// The unrecognised word.
        action: String,
    },
    /// `TESTREFERENCE <id> <result> <url>`.
    TestReference {
        /// Test case id.
        id: String,
        /// Result as printed (no fixupdict applies).
        result: CaseResult,
        /// Reference URL.
        url: String,
    },
    /// `TESTRAISE <message…>`: the test asks to abort the job with a TestError.
    TestRaise {
        /// Parameter words joined by single spaces.
        message: String,
    },
    /// `TESTEVENT <message…>`: publish an event.
    TestEvent {
        /// Parameter words joined by single spaces.
        message: String,
    },
    /// `TESTFEEDBACK <namespace>`: read pending output of another namespace's connection.
    TestFeedback {
        /// The namespace.
        namespace: String,
    },
    /// Any other `LAVA_SIGNAL_*` name; LAVA has no handler and ignores it.
    Other {
        /// Name after `LAVA_SIGNAL_`.
        name: String,
        /// Whitespace-split parameters.
        params: Vec<String>,
    },
}

/// A MultiNode API request printed by `lava-send` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiNodeRequest {
    /// `<LAVA_SEND id k=v …>`: broadcast, no reply expected.
    Send {
        /// Message id.
        message_id: String,
        /// Key/value pairs (parts that are not exactly `key=value` are dropped, as LAVA does).
        data: Vec<(String, String)>,
    },
    /// `<LAVA_WAIT id>`: reply `<LAVA_WAIT_COMPLETE …>`.
    Wait {
        /// Message id.
        message_id: String,
    },
    /// `<LAVA_WAIT_ALL id [role]>`: reply `<LAVA_WAIT_ALL_COMPLETE …>`.
    WaitAll {
        /// Message id.
        message_id: String,
        /// Only wait for this role's members.
        role: Option<String>,
    },
    /// `<LAVA_SYNC id>`: reply `<LAVA_SYNC_COMPLETE>`.
    Sync {
        /// Message id.
        message_id: String,
    },
    /// Any other API name.
    Other {
        /// Name after `LAVA_`.
        name: String,
        /// Whitespace-split parameters.
        params: Vec<String>,
    },
}

impl MultiNodeRequest {
    /// The API name as printed (`SEND`, `WAIT`, `WAIT_ALL`, `SYNC`, …).
    pub fn api(&self) -> &str {
        match self {
            MultiNodeRequest::Send { .. } => "SEND",
            MultiNodeRequest::Wait { .. } => "WAIT",
            MultiNodeRequest::WaitAll { .. } => "WAIT_ALL",
            MultiNodeRequest::Sync { .. } => "SYNC",
            MultiNodeRequest::Other { name, .. } => name,
        }
    }

    /// The message id (first parameter).
    pub fn message_id(&self) -> &str {
        match self {
            MultiNodeRequest::Send { message_id, .. }
            | MultiNodeRequest::Wait { message_id }
            | MultiNodeRequest::WaitAll { message_id, .. }
            | MultiNodeRequest::Sync { message_id } => message_id,
            MultiNodeRequest::Other { params, .. } => {
                params.first().map(String::as_str).unwrap_or("")
            }
        }
    }

    /// The test case LAVA records for this call, e.g. `multinode-sync-clients`.
    pub fn test_case_name(&self) -> String {
        format!("multinode-{}-{}", self.api(), self.message_id()).to_lowercase()
    }
}

/// Why a signal's parameters were unusable; `Display` gives LAVA's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalError {
    /// A `TESTCASE` parameter was not exactly `KEY=VALUE`.
    MalformedParameter {
        /// The offending parameter.
        param: String,
    },
    /// `TESTCASE` without `TEST_CASE_ID`.
    MissingTestCaseId,
    /// `TESTCASE` without `RESULT`.
    MissingResult,
    /// `MEASUREMENT` is not a decimal.
    InvalidMeasurement {
        /// The text as printed.
        value: String,
    },
    /// `TESTREFERENCE` without exactly three parameters.
    InvalidReference,
    /// `TESTSET START` without a name.
    TestSetWithoutName,
    /// A signal that needs more parameters than were given (`STARTRUN`, `ENDRUN`, …).
    MissingParameters {
        /// How many were expected.
        expected: usize,
    },
    /// A MultiNode request with the wrong number of parameters.
    BadMultiNodeArguments {
        /// The parameters given.
        params: Vec<String>,
    },
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalError::MalformedParameter { param } => {
                write!(f, "Ignoring malformed parameter for signal: \"{param}\". ")
            }
            SignalError::MissingTestCaseId => f.write_str(
                "Test case results without test_case_id (probably a sign of an incorrect parsing pattern being used)",
            ),
            SignalError::MissingResult => f.write_str(
                "Test case results without result (probably a sign of an incorrect parsing pattern being used)",
            ),
            SignalError::InvalidMeasurement { value } => write!(f, "Invalid measurement {value}"),
            SignalError::InvalidReference => f.write_str("Invalid use of TESTREFERENCE"),
            SignalError::TestSetWithoutName => f.write_str("Test set declared without a name"),
            SignalError::MissingParameters { expected } => {
                write!(f, "signal needs {expected} parameter(s)")
            }
            SignalError::BadMultiNodeArguments { params } => write!(
                f,
                "Unable to handle the test shell signal correctly: unexpected arguments {params:?}"
            ),
        }
    }
}

/// One thing found in the console stream. `line` numbers count from 1 and are those of the
/// [`Event::Line`] the item was found on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A complete console line, cleaned (no `\r`, no terminal escape sequences).
    Line {
        /// Line number.
        line: u64,
        /// The text (invalid UTF-8 replaced).
        text: String,
    },
    /// A well-formed `LAVA_SIGNAL`.
    Signal {
        /// Line number.
        line: u64,
        /// The signal.
        signal: Signal,
    },
    /// A `LAVA_SIGNAL` whose parameters were unusable.
    Malformed {
        /// Line number.
        line: u64,
        /// Name after `LAVA_SIGNAL_` (or `MULTI_NODE`).
        name: String,
        /// What was wrong.
        error: SignalError,
    },
    /// `<LAVA_TEST_RUNNER EXIT>`: the runner finished this stage.
    RunnerExit {
        /// Line number.
        line: u64,
    },
    /// `<LAVA_TEST_RUNNER INSTALL_FAIL>`: an `install.sh` failed.
    InstallFail {
        /// Line number.
        line: u64,
    },
    /// A MultiNode API request.
    MultiNode {
        /// Line number.
        line: u64,
        /// The request.
        request: MultiNodeRequest,
    },
}

impl Event {
    /// The line number the event belongs to.
    pub fn line(&self) -> u64 {
        match self {
            Event::Line { line, .. }
            | Event::Signal { line, .. }
            | Event::Malformed { line, .. }
            | Event::RunnerExit { line }
            | Event::InstallFail { line }
            | Event::MultiNode { line, .. } => *line,
        }
    }
}

/// Incremental console parser; see the module documentation.
#[derive(Debug, Default, Clone)]
pub struct SignalParser {
    buf: Vec<u8>,
    line: u64,
    /// Start of a signal cut off by a kernel message, to be completed by the next line.
    pending: Option<String>,
}

impl SignalParser {
    /// A parser at the start of a stream.
    pub fn new() -> SignalParser {
        SignalParser::default()
    }

    /// Feeds the next chunk; returns the events of every line it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            let room = MAX_LINE - self.buf.len();
            let window = &rest[..rest.len().min(room)];
            match window.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.buf.extend_from_slice(&window[..i]);
                    rest = &rest[i + 1..];
                    self.emit(&mut out);
                }
                None => {
                    self.buf.extend_from_slice(window);
                    rest = &rest[window.len()..];
                    if self.buf.len() >= MAX_LINE {
                        self.emit(&mut out);
                    }
                }
            }
        }
        out
    }

    /// Ends the stream: reports the unterminated last line, if any.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            self.emit(&mut out);
        }
        out
    }

    /// Number of lines reported so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    fn emit(&mut self, out: &mut Vec<Event>) {
        self.line += 1;
        let raw = std::mem::take(&mut self.buf);
        let text = clean_line(&raw);
        let scan_text = match self.pending.take() {
            Some(fragment) => fragment + &text,
            None => text.clone(),
        };
        let mut found = Vec::new();
        scan_line(self.line, &scan_text, &mut found);
        self.pending = cut_fragment(&scan_text);
        // The line goes first so that consumers see the text before its signals.
        out.push(Event::Line {
            line: self.line,
            text,
        });
        out.extend(found);
    }
}

/// Parses a whole stream at once (convenience for tests and log re-parsing).
pub fn parse_all(input: &[u8]) -> Vec<Event> {
    let mut p = SignalParser::new();
    let mut events = p.feed(input);
    events.extend(p.finish());
    events
}

/// If `text` ends in a signal that a kernel message cut into (an opener with no complete
/// match, followed by a kernel timestamp), returns the signal's beginning: the part from the
/// opener to the timestamp. The console then carries on with the rest of the signal on the
/// line after the kernel message.
fn cut_fragment(text: &str) -> Option<String> {
    // Most console lines have no `<` at all; a byte scan rules them out cheaply.
    if !text.as_bytes().contains(&b'<') {
        return None;
    }
    let start = OPENERS.iter().filter_map(|o| text.rfind(o)).max()?;
    let tail = &text[start..];
    let complete = SIGNAL_RE.find(tail).is_some_and(|m| m.start() == 0)
        || MULTINODE_RE.find(tail).is_some_and(|m| m.start() == 0)
        || tail.starts_with(RUNNER_EXIT)
        || tail.starts_with(RUNNER_INSTALL_FAIL);
    if complete {
        return None;
    }
    let stamp = KERNEL_STAMP_RE.find(tail)?;
    let fragment = &tail[..stamp.start()];
    (fragment.len() < MAX_LINE).then(|| fragment.to_owned())
}

/// Decodes a raw line and removes `\r` and terminal escape sequences.
fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => match chars.peek() {
                Some('[') => {
                    chars.next();
                    // CSI: parameter and intermediate bytes, then one final byte 0x40..=0x7e.
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

fn scan_line(line: u64, text: &str, out: &mut Vec<Event>) {
    if !text.as_bytes().contains(&b'<') || !text.contains("<LAVA_") {
        return;
    }
    let mut found: Vec<(usize, Event)> = Vec::new();
    for caps in SIGNAL_RE.captures_iter(text) {
        let (Some(all), Some(name), Some(params)) = (caps.get(0), caps.get(1), caps.get(2)) else {
            continue;
        };
        let ev = match parse_signal(name.as_str(), params.as_str()) {
            Ok(signal) => Event::Signal { line, signal },
            Err(error) => Event::Malformed {
                line,
                name: name.as_str().to_owned(),
                error,
            },
        };
        found.push((all.start(), ev));
    }
    for caps in MULTINODE_RE.captures_iter(text) {
        let (Some(all), Some(name), Some(params)) = (caps.get(0), caps.get(1), caps.get(2)) else {
            continue;
        };
        let ev = match parse_multinode(name.as_str(), params.as_str()) {
            Ok(request) => Event::MultiNode { line, request },
            Err(error) => Event::Malformed {
                line,
                name: "MULTI_NODE".to_owned(),
                error,
            },
        };
        found.push((all.start(), ev));
    }
    for (pos, _) in text.match_indices(RUNNER_EXIT) {
        found.push((pos, Event::RunnerExit { line }));
    }
    for (pos, _) in text.match_indices(RUNNER_INSTALL_FAIL) {
        found.push((pos, Event::InstallFail { line }));
    }
    found.sort_by_key(|(pos, _)| *pos);
    out.extend(found.into_iter().map(|(_, e)| e));
}

fn words(params: &str) -> Vec<String> {
    params.split_whitespace().map(str::to_owned).collect()
}

/// Parses one `LAVA_SIGNAL` from its name and parameter text.
pub fn parse_signal(name: &str, params: &str) -> Result<Signal, SignalError> {
    let p = words(params);
    let need = |n: usize| {
        if p.len() < n {
            Err(SignalError::MissingParameters { expected: n })
        } else {
            Ok(())
        }
    };
    Ok(match name {
        "STARTRUN" | "ENDRUN" => {
            need(2)?;
            let testrun_id = p[0].clone();
            let uuid = p[1].clone();
            if name == "STARTRUN" {
                Signal::StartRun { testrun_id, uuid }
            } else {
                Signal::EndRun { testrun_id, uuid }
            }
        }
        "STARTTC" => {
            need(1)?;
            Signal::StartTc { id: p[0].clone() }
        }
        "ENDTC" => {
            need(1)?;
            Signal::EndTc { id: p[0].clone() }
        }
        "TESTCASE" => Signal::TestCase(parse_testcase(&p)?),
        "TESTSET" => {
            need(1)?;
            match p[0].as_str() {
                "START" => match p.get(1) {
                    Some(n) => Signal::TestSetStart { name: n.clone() },
                    None => return Err(SignalError::TestSetWithoutName),
                },
                "STOP" => Signal::TestSetStop,
                other => Signal::TestSetOther {
                    action: other.to_owned(),
                },
            }
        }
        "TESTREFERENCE" => {
            if p.len() != 3 {
                return Err(SignalError::InvalidReference);
            }
            Signal::TestReference {
                id: p[0].clone(),
                result: CaseResult::parse(&p[1]),
                url: p[2].clone(),
            }
        }
        "TESTRAISE" => Signal::TestRaise {
            message: p.join(" "),
        },
        "TESTEVENT" => Signal::TestEvent {
            message: p.join(" "),
        },
        "TESTFEEDBACK" => {
            need(1)?;
            Signal::TestFeedback {
                namespace: p[0].clone(),
            }
        }
        other => Signal::Other {
            name: other.to_owned(),
            params: p,
        },
    })
}

fn parse_testcase(params: &[String]) -> Result<TestCaseSignal, SignalError> {
    let mut id = None;
    let mut result = None;
    let mut units = None;
    let mut measurement = None;
    let mut extra = Vec::new();
    for param in params {
        let mut parts = param.split('=');
        let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SignalError::MalformedParameter {
                param: param.clone(),
            });
        };
        let key = k.to_lowercase();
        let value = v.to_owned();
        match key.as_str() {
            "test_case_id" => id = Some(value),
            "result" => result = Some(value),
            "units" => units = Some(value),
            "measurement" => measurement = Some(value),
            _ => {
                extra.retain(|(k, _): &(String, String)| *k != key);
                extra.push((key, value));
            }
        }
    }
    let id = id.ok_or(SignalError::MissingTestCaseId)?;
    let result = result.ok_or(SignalError::MissingResult)?;
    let measurement = match measurement {
        Some(m) => {
            Some(Measurement::parse(&m).ok_or(SignalError::InvalidMeasurement { value: m })?)
        }
        None => None,
    };
    Ok(TestCaseSignal {
        id,
        result: CaseResult::parse(&result),
        units,
        measurement,
        extra,
    })
}

/// Parses one MultiNode request from its API name and parameter text.
pub fn parse_multinode(name: &str, params: &str) -> Result<MultiNodeRequest, SignalError> {
    let bad = |p: Vec<String>| SignalError::BadMultiNodeArguments { params: p };
    if name == "SEND" {
        let parts = split_send(params);
        let Some((first, rest)) = parts.split_first() else {
            return Err(bad(parts.clone()));
        };
        let data = rest
            .iter()
            .filter_map(|kv| {
                let mut it = kv.split('=');
                match (it.next(), it.next(), it.next()) {
                    (Some(k), Some(v), None) => Some((k.to_owned(), v.to_owned())),
                    _ => None,
                }
            })
            .collect();
        return Ok(MultiNodeRequest::Send {
            message_id: first.clone(),
            data,
        });
    }
    let p = words(params);
    match (name, p.as_slice()) {
        ("WAIT", [id]) => Ok(MultiNodeRequest::Wait {
            message_id: id.clone(),
        }),
        ("SYNC", [id]) => Ok(MultiNodeRequest::Sync {
            message_id: id.clone(),
        }),
        ("WAIT_ALL", [id]) => Ok(MultiNodeRequest::WaitAll {
            message_id: id.clone(),
            role: None,
        }),
        ("WAIT_ALL", [id, role]) => Ok(MultiNodeRequest::WaitAll {
            message_id: id.clone(),
            role: Some(role.clone()),
        }),
        ("WAIT" | "SYNC" | "WAIT_ALL", _) => Err(bad(p)),
        (other, _) if p.is_empty() => Err(bad(vec![other.to_owned()])),
        (other, _) => Ok(MultiNodeRequest::Other {
            name: other.to_owned(),
            params: p,
        }),
    }
}

/// Splits `lava-send` parameters before every whitespace run that is followed by `word=`,
/// so values may contain spaces (LAVA: `re.split(r"\s+(?=\w+(?:=))", params)`).
fn split_send(params: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut iter = params.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if !c.is_whitespace() {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = iter.peek() {
            if d.is_whitespace() {
                end = j + d.len_utf8();
                iter.next();
            } else {
                break;
            }
        }
        let after = &params[end..];
        let word_len: usize = after
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .map(char::len_utf8)
            .sum();
        if word_len > 0 && after[word_len..].starts_with('=') {
            parts.push(params[start..i].to_owned());
            start = end;
        }
    }
    parts.push(params[start..].to_owned());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signals(input: &str) -> Vec<Event> {
        parse_all(input.as_bytes())
            .into_iter()
            .filter(|e| !matches!(e, Event::Line { .. }))
            .collect()
    }

    fn one(input: &str) -> Event {
        let mut s = signals(input);
        assert_eq!(s.len(), 1, "{s:?}");
        s.remove(0)
    }

    #[test]
    fn startrun_endrun() {
        assert_eq!(
            one("<LAVA_SIGNAL_STARTRUN 0_smoke 42_1.4.2.1>\r\n"),
            Event::Signal {
                line: 1,
                signal: Signal::StartRun {
                    testrun_id: "0_smoke".into(),
                    uuid: "42_1.4.2.1".into()
                }
            }
        );
        assert!(matches!(
            one("x\r\n<LAVA_SIGNAL_ENDRUN 0_smoke 42_1>\r\n"),
            Event::Signal {
                line: 2,
                signal: Signal::EndRun { .. }
            }
        ));
        assert!(matches!(
            one("<LAVA_SIGNAL_ENDRUN 0_smoke>\n"),
            Event::Malformed {
                error: SignalError::MissingParameters { expected: 2 },
                ..
            }
        ));
    }

    #[test]
    fn testcase_full() {
        let e = one(
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=boot RESULT=pass UNITS=s MEASUREMENT=1.50>\r\n",
        );
        let Event::Signal {
            signal: Signal::TestCase(tc),
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(tc.id, "boot");
        assert_eq!(tc.result, CaseResult::Known(TestResult::Pass));
        assert_eq!(tc.units.as_deref(), Some("s"));
        assert_eq!(tc.measurement.as_ref().map(|m| m.value), Some(1.5));
        assert_eq!(tc.measurement.map(|m| m.raw), Some("1.50".to_owned()));
    }

    #[test]
    fn testcase_keys_lowercased_and_errors() {
        let e = one("<LAVA_SIGNAL_TESTCASE test_case_id=a Result=PASS Foo=bar>\n");
        let Event::Signal {
            signal: Signal::TestCase(tc),
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(tc.result, CaseResult::Other("PASS".into()));
        assert_eq!(tc.extra, vec![("foo".to_owned(), "bar".to_owned())]);

        let check = |input: &str, msg: &str| match one(input) {
            Event::Malformed { error, name, .. } => {
                assert_eq!(name, "TESTCASE");
                assert_eq!(error.to_string(), msg);
            }
            other => panic!("{other:?}"),
        };
        check(
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass oops>",
            "Ignoring malformed parameter for signal: \"oops\". ",
        );
        check(
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=a=b>",
            "Ignoring malformed parameter for signal: \"RESULT=a=b\". ",
        );
        check(
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass MEASUREMENT=fast>",
            "Invalid measurement fast",
        );
        check(
            "<LAVA_SIGNAL_TESTCASE RESULT=pass>",
            "Test case results without test_case_id (probably a sign of an incorrect parsing pattern being used)",
        );
    }

    #[test]
    fn decimals_like_python() {
        for ok in [
            "1",
            "-1",
            "+2.5",
            ".5",
            "5.",
            "1e3",
            "1E-3",
            "1_000",
            " 7 ",
            "inf",
            "-Infinity",
            "NaN",
            "nan12",
            "0.000",
        ] {
            assert!(Measurement::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "", ".", "e5", "1e", "1__0", "_1", "1_", "abc", "1.2.3", "0x10", "snan", "1 2", "--1",
        ] {
            assert!(Measurement::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Measurement::parse("1_000.5").map(|m| m.value), Some(1000.5));
    }

    #[test]
    fn reference_set_raise_event_feedback() {
        assert!(matches!(
            one("<LAVA_SIGNAL_TESTREFERENCE ltp pass http://x/y>"),
            Event::Signal {
                signal: Signal::TestReference { .. },
                ..
            }
        ));
        assert!(matches!(
            one("<LAVA_SIGNAL_TESTREFERENCE ltp pass>"),
            Event::Malformed {
                error: SignalError::InvalidReference,
                ..
            }
        ));
        assert_eq!(
            one("<LAVA_SIGNAL_TESTSET START net>"),
            Event::Signal {
                line: 1,
                signal: Signal::TestSetStart { name: "net".into() }
            }
        );
        assert_eq!(
            one("<LAVA_SIGNAL_TESTSET STOP>"),
            Event::Signal {
                line: 1,
                signal: Signal::TestSetStop
            }
        );
        assert!(matches!(
            one("<LAVA_SIGNAL_TESTSET START>"),
            Event::Malformed {
                error: SignalError::TestSetWithoutName,
                ..
            }
        ));
        assert_eq!(
            one("<LAVA_SIGNAL_TESTRAISE disk   full now>"),
            Event::Signal {
                line: 1,
                signal: Signal::TestRaise {
                    message: "disk full now".into()
                }
            }
        );
        assert_eq!(
            one("<LAVA_SIGNAL_TESTEVENT hello>"),
            Event::Signal {
                line: 1,
                signal: Signal::TestEvent {
                    message: "hello".into()
                }
            }
        );
        assert_eq!(
            one("<LAVA_SIGNAL_TESTFEEDBACK ns2>"),
            Event::Signal {
                line: 1,
                signal: Signal::TestFeedback {
                    namespace: "ns2".into()
                }
            }
        );
        assert_eq!(
            one("<LAVA_SIGNAL_FOO a b>"),
            Event::Signal {
                line: 1,
                signal: Signal::Other {
                    name: "FOO".into(),
                    params: vec!["a".into(), "b".into()]
                }
            }
        );
        assert!(signals("<LAVA_SIGNAL_ENDRUN>").is_empty());
    }

    #[test]
    fn runner_markers_and_escapes() {
        let ev = signals(
            "\x1b[6n<LAVA_TEST_RUNNER INSTALL_FAIL>\r\nroot@x:~# \x1b[6n<LAVA_TEST_RUNNER EXIT>\r\n",
        );
        assert_eq!(
            ev,
            vec![
                Event::InstallFail { line: 1 },
                Event::RunnerExit { line: 2 }
            ]
        );
        // The escape sequence in the middle of a signal is removed before matching.
        let ev = signals("<LAVA_SIGNAL_STARTTC \x1b[6nabc>\r\n");
        assert_eq!(
            ev,
            vec![Event::Signal {
                line: 1,
                signal: Signal::StartTc { id: "abc".into() }
            }]
        );
    }

    #[test]
    fn multinode_requests() {
        assert_eq!(
            one("<LAVA_MULTI_NODE> <LAVA_SEND ipv4 ipaddr=10.0.0.5 msg=hello world>"),
            Event::MultiNode {
                line: 1,
                request: MultiNodeRequest::Send {
                    message_id: "ipv4".into(),
                    data: vec![
                        ("ipaddr".into(), "10.0.0.5".into()),
                        ("msg".into(), "hello world".into())
                    ]
                }
            }
        );
        let req = |s: &str| match one(s) {
            Event::MultiNode { request, .. } => request,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            req("<LAVA_MULTI_NODE> <LAVA_WAIT ready>").test_case_name(),
            "multinode-wait-ready"
        );
        assert_eq!(
            req("<LAVA_MULTI_NODE> <LAVA_WAIT_ALL ready server>"),
            MultiNodeRequest::WaitAll {
                message_id: "ready".into(),
                role: Some("server".into())
            }
        );
        assert_eq!(
            req("<LAVA_MULTI_NODE> <LAVA_SYNC clients>").test_case_name(),
            "multinode-sync-clients"
        );
        assert!(matches!(
            one("<LAVA_MULTI_NODE> <LAVA_SYNC a b>"),
            Event::Malformed {
                error: SignalError::BadMultiNodeArguments { .. },
                ..
            }
        ));
        // The dispatcher's typed reply echoed back is not a request.
        assert!(signals("<LAVA_SYNC_COMPLETE>\r\n<LAVA_WAIT_COMPLETE 12:ip=1>\r\n").is_empty());
    }

    #[test]
    fn several_on_one_line_in_order_and_line_first() {
        let ev = parse_all(b"[ 1.0] <LAVA_SIGNAL_STARTTC a> x <LAVA_SIGNAL_ENDTC a>\n");
        assert!(matches!(ev[0], Event::Line { line: 1, .. }));
        assert!(matches!(
            ev[1],
            Event::Signal {
                signal: Signal::StartTc { .. },
                ..
            }
        ));
        assert!(matches!(
            ev[2],
            Event::Signal {
                signal: Signal::EndTc { .. },
                ..
            }
        ));
    }

    #[test]
    fn split_across_chunks_and_unterminated_tail() {
        let mut p = SignalParser::new();
        let mut ev = p.feed(b"<LAVA_SIGNAL_TEST");
        assert!(ev.is_empty());
        ev.extend(p.feed(b"CASE TEST_CASE_ID=x RESULT=fail>\r"));
        assert!(ev.is_empty());
        ev.extend(p.feed(b"\n<LAVA_TEST_RUNNER EXIT>"));
        assert_eq!(ev.len(), 2);
        ev.extend(p.finish());
        assert_eq!(ev.len(), 4);
        assert_eq!(p.lines(), 2);
    }

    #[test]
    fn kernel_message_inside_a_signal() {
        let ev = signals(
            "<LAVA_SIGNAL_TESTCASE TEST_CA[   12.345678] usb 1-1: new high-speed USB device\r\n\
             SE_ID=boot RESULT=pass>\r\n",
        );
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(matches!(
            &ev[0],
            Event::Signal { line: 2, signal: Signal::TestCase(tc) } if tc.id == "boot"
        ));
        let ev = signals("<LAVA_TEST_RUNNER [    1.000000] random: crng init done\r\nEXIT>\r\n");
        assert_eq!(ev, vec![Event::RunnerExit { line: 2 }]);
        // Without a kernel timestamp an unclosed signal is just text.
        assert!(signals("<LAVA_SIGNAL_TESTCASE TEST_CA\r\nSE_ID=boot RESULT=pass>\r\n").is_empty());
        // A complete signal followed by a kernel message leaves nothing pending.
        let ev = signals("<LAVA_SIGNAL_STARTTC a> [ 1.0] x\r\n<LAVA_SIGNAL_ENDTC a>\r\n");
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn overlong_line_is_cut() {
        let mut input = vec![b'a'; MAX_LINE + 10];
        input.push(b'\n');
        let ev = parse_all(&input);
        assert_eq!(ev.len(), 2);
    }

    fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop::collection::vec(
            prop_oneof![
                Just(
                    b"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass MEASUREMENT=1.5 UNITS=s>"
                        .to_vec()
                ),
                Just(b"<LAVA_SIGNAL_STARTRUN 0_x 1_1>".to_vec()),
                Just(b"<LAVA_SIGNAL_ENDRUN 0_x 1_1>".to_vec()),
                Just(b"<LAVA_MULTI_NODE> <LAVA_SEND m a=b c=d e>".to_vec()),
                Just(b"<LAVA_TEST_RUNNER EXIT>".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\x1b[6n".to_vec()),
                Just(b"\x1b".to_vec()),
                Just(b"<LAVA_SIGNAL_".to_vec()),
                Just(b"[   12.345] kernel: oops\r\n".to_vec()),
                Just(b"<LAVA_SIGNAL_TESTCASE TEST_CA[ 1.5] usb\r\nSE_ID=k RESULT=fail>".to_vec()),
                prop::collection::vec(any::<u8>(), 0..20),
            ],
            0..30,
        );
        pieces.prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..2000)) {
            let _ = parse_all(&input);
        }

        #[test]
        fn chunking_does_not_change_events(
            input in interesting_bytes(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let whole = parse_all(&input);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut p = SignalParser::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for c in points {
                got.extend(p.feed(&input[prev..c]));
                prev = c;
            }
            got.extend(p.feed(&input[prev..]));
            got.extend(p.finish());
            prop_assert_eq!(got, whole);
        }
    }
}
