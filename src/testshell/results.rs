//! The results state machine of one test-shell stage: console [`Event`]s in, LAVA result
//! records and dispatcher actions out, following "From signals to test suites" of the test
//! shell reference.
//!
//! Time is passed in by the caller (a monotonic [`Duration`] since any origin) so the machine
//! stays pure. A [`Output::Fatal`] means LAVA would raise here: the caller stops reading,
//! calls [`ResultsMachine::finish`] for the clean-up records and fails the job with the given
//! error type. After a fatal output the machine ignores further events.
//!
//! Deliberate differences from LAVA 2023.01, both so no result is silently lost:
//! a `STARTRUN` that arrives while another run is still open records the open run as failed
//! (LAVA overwrites it), and `INSTALL_FAIL` records `lava`/`stage_<n>` as failed at once
//! (LAVA keeps it pending and loses it if another run starts).

use std::collections::BTreeMap;
use std::time::Duration;

use regex::{Regex, RegexBuilder};

use crate::model::{ErrorType, TestResult};
use crate::testshell::signal::{
    CaseResult, Event, Measurement, MultiNodeRequest, Signal, SignalError, TestCaseSignal,
};

/// The suite the dispatcher reports its own cases under.
pub const LAVA_SUITE: &str = "lava";

/// A test definition's `parse:` section, compiled.
#[derive(Debug, Clone)]
pub struct ParsePattern {
    regex: Regex,
    fixupdict: BTreeMap<String, String>,
}

/// The `parse: pattern` did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parse pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// The compiler's message.
    pub reason: String,
}

impl ParsePattern {
    /// Compiles `pattern` in multi-line mode (Python `re.M`); `(?P<name>…)` groups work.
    pub fn new(
        pattern: &str,
        fixupdict: BTreeMap<String, String>,
    ) -> Result<ParsePattern, PatternError> {
        let regex = RegexBuilder::new(pattern)
            .multi_line(true)
            .build()
            .map_err(|e| PatternError {
                pattern: pattern.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(ParsePattern { regex, fixupdict })
    }

    /// The pattern text.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    /// The fixup map, raw result text → result.
    pub fn fixupdict(&self) -> &BTreeMap<String, String> {
        &self.fixupdict
    }
}

/// What the machine needs to know about one test definition of the stage.
#[derive(Debug, Clone, Default)]
pub struct DefinitionInfo {
    /// `<index>_<name>`, e.g. `0_smoke`; matched against `STARTRUN`'s first parameter.
    pub testrun_id: String,
    /// The definition's `parse:` section, if any.
    pub pattern: Option<ParsePattern>,
    /// `repository` of the definition (`inline` definitions have none).
    pub repository: Option<String>,
    /// `path` inside the repository.
    pub path: Option<String>,
    /// `revision` requested, if any.
    pub revision: Option<String>,
    /// Commit actually checked out, if any.
    pub commit_id: Option<String>,
    /// The definition's `expected:` case ids: any not reported by its ENDRUN is recorded as
    /// failed, so a test that dies silently does not look like fewer passes.
    pub expected: Vec<String>,
}

/// Configuration of one stage's machine.
#[derive(Debug, Clone, Default)]
pub struct StageConfig {
    /// The stage number (`/lava-<id>/<stage>`), used for `stage_<n>`.
    pub stage: u32,
    /// The action's namespace (LAVA's default is `common`).
    pub namespace: String,
    /// `connection-namespace` of the test action, if set.
    pub connection_namespace: Option<String>,
    /// The stage's test definitions.
    pub definitions: Vec<DefinitionInfo>,
}

/// One result record, as the dispatcher logs it and the server stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    /// Suite name: `TESTRUN_ID` such as `0_smoke`, or `lava`.
    pub definition: String,
    /// Test case name.
    pub case: String,
    /// Outcome.
    pub result: TestResult,
    /// Measurement (for `lava` cases: the duration in seconds).
    pub measurement: Option<f64>,
    /// Units of the measurement (`seconds` for `lava` durations).
    pub units: Option<String>,
    /// Test set, if the case was reported inside `lava-test-set start`/`stop`.
    pub set: Option<String>,
    /// Other keys LAVA keeps as metadata (uuid, duration, reference, revision, …), in order.
    pub metadata: Vec<(String, String)>,
    /// First log line of the case, if known.
    pub start_line: Option<u64>,
    /// Last log line of the case, if known.
    pub end_line: Option<u64>,
}

impl ResultRecord {
    fn new(definition: &str, case: &str, result: TestResult) -> ResultRecord {
        ResultRecord {
            definition: definition.to_owned(),
            case: case.to_owned(),
            result,
            measurement: None,
            units: None,
            set: None,
            metadata: Vec::new(),
            start_line: None,
            end_line: None,
        }
    }

    fn meta(mut self, key: &str, value: impl Into<String>) -> ResultRecord {
        self.metadata.push((key.to_owned(), value.into()));
        self
    }

    /// A metadata value by key.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Severity of a log message produced by the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Progress.
    Info,
    /// Noise for debugging.
    Debug,
    /// Something was ignored.
    Error,
}

/// What the caller must do or record.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Record this result.
    Result(ResultRecord),
    /// Write this line to the job log.
    Log {
        /// Severity.
        level: LogLevel,
        /// Message.
        message: String,
    },
    /// `TESTEVENT`: publish this event message (log level `event`).
    Event {
        /// Message.
        message: String,
    },
    /// `TESTFEEDBACK`: read pending output of that namespace's connection.
    Feedback {
        /// Namespace.
        namespace: String,
    },
    /// A MultiNode request to forward to the coordinator; report the outcome with
    /// [`ResultsMachine::multinode_outcome`].
    MultiNode {
        /// Line number of the request.
        line: u64,
        /// The request.
        request: MultiNodeRequest,
    },
    /// `<LAVA_TEST_RUNNER EXIT>`: the stage is over; stop reading.
    StageDone,
    /// LAVA raises here: stop the stage and fail the job with this error.
    Fatal {
        /// Error class (`Test` or `Job`).
        error_type: ErrorType,
        /// The message.
        message: String,
    },
}

#[derive(Debug, Clone)]
struct OpenRun {
    testrun_id: String,
    uuid: String,
    started: Duration,
}

/// The state machine; see the module documentation.
#[derive(Debug, Clone)]
pub struct ResultsMachine {
    config: StageConfig,
    /// Last `STARTRUN`/`ENDRUN` id: the suite of case results.
    definition: Option<String>,
    /// Set once a `STARTRUN` was seen (LAVA never clears it within a stage).
    seen_startrun: bool,
    open_run: Option<OpenRun>,
    /// Index into `config.definitions` of the active parse pattern.
    pattern: Option<usize>,
    testset: Option<String>,
    start_markers: BTreeMap<String, u64>,
    install_failed: bool,
    stopped: bool,
    /// Cases reported in the open run's suite (for `expected`).
    reported: std::collections::BTreeSet<String>,
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn fatal(error_type: ErrorType, message: impl Into<String>) -> Output {
    Output::Fatal {
        error_type,
        message: message.into(),
    }
}

fn log(level: LogLevel, message: impl Into<String>) -> Output {
    Output::Log {
        level,
        message: message.into(),
    }
}

impl ResultsMachine {
    /// A machine at the start of a stage.
    pub fn new(config: StageConfig) -> ResultsMachine {
        ResultsMachine {
            config,
            definition: None,
            seen_startrun: false,
            open_run: None,
            pattern: None,
            testset: None,
            start_markers: BTreeMap::new(),
            install_failed: false,
            stopped: false,
            reported: std::collections::BTreeSet::new(),
        }
    }

    /// Whether a fatal output or the runner's exit ended the stage.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Handles one event seen at monotonic time `now`.
    pub fn handle(&mut self, event: &Event, now: Duration) -> Vec<Output> {
        let out = self.handle_event(event, now);
        if let Some(run) = &self.open_run {
            for o in &out {
                if let Output::Result(r) = o
                    && r.definition == run.testrun_id
                {
                    self.reported.insert(r.case.clone());
                }
            }
        }
        out
    }

    fn handle_event(&mut self, event: &Event, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        match event {
            Event::Line { line, text } => self.on_line(*line, text, &mut out),
            Event::Signal { line, signal } => self.on_signal(*line, signal, now, &mut out),
            Event::Malformed { line, name, error } => {
                self.on_malformed(*line, name, error, &mut out)
            }
            Event::RunnerExit { .. } => {
                out.push(log(
                    LogLevel::Info,
                    "ok: lava_test_shell seems to have completed",
                ));
                self.testset = None;
                self.stopped = true;
                out.push(Output::StageDone);
            }
            Event::InstallFail { .. } => {
                let stage = self.config.stage;
                out.push(log(
                    LogLevel::Error,
                    format!("Unable to start stage {stage}. Read the log for more details."),
                ));
                self.install_failed = true;
                out.push(Output::Result(ResultRecord::new(
                    LAVA_SUITE,
                    &format!("stage_{stage}"),
                    TestResult::Fail,
                )));
            }
            Event::MultiNode { line, request } => out.push(Output::MultiNode {
                line: *line,
                request: request.clone(),
            }),
        }
        if out.iter().any(|o| matches!(o, Output::Fatal { .. })) {
            self.stopped = true;
        }
        out
    }

    /// Records the outcome of a MultiNode call (`multinode-<api>-<id>`, pass or fail) in the
    /// current definition's suite.
    pub fn multinode_outcome(
        &mut self,
        line: u64,
        request: &MultiNodeRequest,
        ok: bool,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let tc = TestCaseSignal {
            id: request.test_case_name(),
            result: CaseResult::Known(if ok {
                TestResult::Pass
            } else {
                TestResult::Fail
            }),
            units: None,
            measurement: None,
            extra: Vec::new(),
        };
        self.on_testcase(line, &tc, &mut out);
        if out.iter().any(|o| matches!(o, Output::Fatal { .. })) {
            self.stopped = true;
        }
        out
    }

    /// Ends the stage at time `now` (after `StageDone`, a fatal output, a timeout or a closed
    /// connection): an open run is recorded as failed, and a failed install becomes the
    /// stage's error.
    pub fn finish(&mut self, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(run) = self.open_run.take() {
            out.push(log(
                LogLevel::Error,
                "Marking unfinished test run as failed",
            ));
            out.push(Output::Result(self.unfinished_record(&run, now)));
        }
        if self.install_failed {
            out.push(fatal(
                ErrorType::Test,
                format!("Unable to start test stage {}", self.config.stage),
            ));
        }
        self.install_failed = false;
        self.stopped = true;
        out
    }

    fn unfinished_record(&self, run: &OpenRun, now: Duration) -> ResultRecord {
        let duration = secs(now.saturating_sub(run.started));
        let mut rec = ResultRecord::new(LAVA_SUITE, &run.testrun_id, TestResult::Fail)
            .meta("uuid", run.uuid.clone())
            .meta("duration", duration.clone());
        if let Some(c) = self
            .definition_info(&run.testrun_id)
            .and_then(|d| d.commit_id.clone())
        {
            rec = rec.meta("commit_id", c);
        }
        rec.measurement = duration.parse().ok();
        rec.units = Some("seconds".to_owned());
        rec
    }

    fn definition_info(&self, testrun_id: &str) -> Option<&DefinitionInfo> {
        self.config
            .definitions
            .iter()
            .find(|d| d.testrun_id == testrun_id)
    }

    fn fixup(&self, raw: &CaseResult) -> CaseResult {
        let Some(p) = self.pattern.and_then(|i| self.config.definitions.get(i)) else {
            return raw.clone();
        };
        let Some(p) = &p.pattern else {
            return raw.clone();
        };
        match p.fixupdict.get(raw.as_str()) {
            Some(mapped) => CaseResult::parse(mapped),
            None => raw.clone(),
        }
    }

    fn on_line(&mut self, line: u64, text: &str, out: &mut Vec<Output>) {
        let Some(idx) = self.pattern else { return };
        let Some(pattern) = self
            .config
            .definitions
            .get(idx)
            .and_then(|d| d.pattern.clone())
        else {
            return;
        };
        let Some(definition) = self.definition.clone() else {
            return;
        };
        for caps in pattern.regex.captures_iter(text) {
            let (Some(id), Some(result)) = (caps.name("test_case_id"), caps.name("result")) else {
                out.push(log(
                    LogLevel::Error,
                    format!(
                        "Test case results without test_case_id or result (probably a sign of an incorrect parsing pattern being used): {}",
                        caps.get(0).map_or("", |m| m.as_str())
                    ),
                ));
                continue;
            };
            let id = id.as_str();
            if id.replace('/', "_").trim().contains(' ') {
                out.push(log(
                    LogLevel::Debug,
                    format!("Skipping invalid test_case_id '{}'", id.trim()),
                ));
                continue;
            }
            let result = self.fixup(&CaseResult::parse(result.as_str()));
            let mut rec = match result {
                CaseResult::Known(r) => ResultRecord::new(&definition, id.trim(), r),
                CaseResult::Other(raw) => {
                    out.push(log(
                        LogLevel::Error,
                        format!("Unrecognised result: '{raw}' for test case '{}'", id.trim()),
                    ));
                    continue;
                }
            };
            if let Some(m) = caps.name("measurement") {
                let Some(m) = Measurement::parse(m.as_str()) else {
                    out.push(fatal(
                        ErrorType::Test,
                        format!("Invalid measurement {}", m.as_str()),
                    ));
                    return;
                };
                rec.measurement = Some(m.value);
                rec.units = caps.name("units").map(|u| u.as_str().to_owned());
            }
            rec.start_line = Some(line);
            rec.end_line = Some(line);
            out.push(Output::Result(rec));
        }
    }

    fn on_signal(&mut self, line: u64, signal: &Signal, now: Duration, out: &mut Vec<Output>) {
        match signal {
            Signal::StartRun { testrun_id, uuid } => {
                if let Some(prev) = self.open_run.take() {
                    out.push(log(
                        LogLevel::Error,
                        format!(
                            "Test run {} did not end, marking it as failed",
                            prev.testrun_id
                        ),
                    ));
                    out.push(Output::Result(self.unfinished_record(&prev, now)));
                }
                self.seen_startrun = true;
                self.definition = Some(testrun_id.clone());
                self.pattern = None;
                out.push(log(
                    LogLevel::Info,
                    format!("Starting test lava.{testrun_id} ({uuid})"),
                ));
                if let Some(idx) = self
                    .config
                    .definitions
                    .iter()
                    .position(|d| d.testrun_id == *testrun_id && d.pattern.is_some())
                {
                    self.pattern = Some(idx);
                    if let Some(p) = &self.config.definitions[idx].pattern {
                        out.push(log(
                            LogLevel::Info,
                            format!("Enabling test definition pattern {:?}", p.pattern()),
                        ));
                    }
                }
                self.reported.clear();
                self.open_run = Some(OpenRun {
                    testrun_id: testrun_id.clone(),
                    uuid: uuid.clone(),
                    started: now,
                });
            }
            Signal::EndRun { testrun_id, uuid } => {
                self.pattern = None;
                self.definition = Some(testrun_id.clone());
                let expected = self
                    .definition_info(testrun_id)
                    .map(|i| i.expected.clone())
                    .unwrap_or_default();
                for case in expected {
                    if !self.reported.contains(&case) {
                        out.push(log(
                            LogLevel::Error,
                            format!(
                                "Expected test case {case} was not reported: marking it as failed"
                            ),
                        ));
                        out.push(Output::Result(
                            ResultRecord::new(testrun_id, &case, TestResult::Fail)
                                .meta("reason", "missing expected test case"),
                        ));
                    }
                }
                self.reported.clear();
                let started = self.open_run.take().map_or(now, |r| r.started);
                let duration = secs(now.saturating_sub(started));
                out.push(log(
                    LogLevel::Info,
                    format!("Ending test lava.{testrun_id} ({uuid}), duration {duration}"),
                ));
                let info = self
                    .definition_info(testrun_id)
                    .cloned()
                    .unwrap_or_default();
                let mut rec = ResultRecord::new(LAVA_SUITE, testrun_id, TestResult::Pass)
                    .meta("uuid", uuid.clone());
                if let Some(r) = &info.repository {
                    rec = rec.meta("repository", r.clone());
                }
                if let Some(p) = &info.path {
                    rec = rec.meta("path", p.clone());
                }
                rec = rec
                    .meta("duration", duration.clone())
                    .meta(
                        "revision",
                        info.revision
                            .clone()
                            .unwrap_or_else(|| "unspecified".into()),
                    )
                    .meta("namespace", self.config.namespace.clone());
                if let Some(c) = &self.config.connection_namespace {
                    rec = rec.meta("connection-namespace", c.clone());
                }
                if let Some(c) = &info.commit_id {
                    rec = rec.meta("commit_id", c.clone());
                }
                rec.measurement = duration.parse().ok();
                rec.units = Some("seconds".to_owned());
                out.push(Output::Result(rec));
            }
            Signal::StartTc { id } => {
                self.start_markers.insert(id.clone(), line);
            }
            Signal::EndTc { .. } => {}
            Signal::TestCase(tc) => self.on_testcase(line, tc, out),
            Signal::TestSetStart { name } => {
                out.push(log(LogLevel::Info, format!("Starting test_set {name}")));
                self.testset = Some(name.clone());
            }
            Signal::TestSetStop => {
                out.push(log(
                    LogLevel::Info,
                    format!(
                        "Closing test_set {}",
                        self.testset.as_deref().unwrap_or("None")
                    ),
                ));
                self.testset = None;
            }
            Signal::TestSetOther { .. } | Signal::Other { .. } => {}
            Signal::TestReference { id, result, url } => {
                let Some(definition) = self.definition.clone() else {
                    out.push(log(
                        LogLevel::Error,
                        format!("Ignoring TESTREFERENCE {id} outside a test run"),
                    ));
                    return;
                };
                let CaseResult::Known(r) = result else {
                    out.push(log(
                        LogLevel::Error,
                        format!(
                            "Unrecognised result: '{}' for test case '{id}'",
                            result.as_str()
                        ),
                    ));
                    return;
                };
                let mut rec = ResultRecord::new(&definition, id, *r).meta("reference", url.clone());
                rec.set = self.testset.clone();
                out.push(Output::Result(rec));
            }
            Signal::TestRaise { message } => out.push(fatal(ErrorType::Test, message.clone())),
            Signal::TestEvent { message } => out.push(Output::Event {
                message: message.clone(),
            }),
            Signal::TestFeedback { namespace } => out.push(Output::Feedback {
                namespace: namespace.clone(),
            }),
        }
    }

    fn on_testcase(&mut self, line: u64, tc: &TestCaseSignal, out: &mut Vec<Output>) {
        if !self.seen_startrun {
            out.push(log(
                LogLevel::Error,
                "Unknown test uuid. The STARTRUN signal for this test action was not received correctly.",
            ));
            out.push(fatal(ErrorType::Test, "Invalid TESTCASE signal"));
            return;
        }
        let Some(definition) = self.definition.clone() else {
            return;
        };
        let result = match self.fixup(&tc.result) {
            CaseResult::Known(r) => r,
            CaseResult::Other(_) => {
                out.push(log(
                    LogLevel::Error,
                    format!("Bad test result: {}", tc.result.as_str()),
                ));
                return;
            }
        };
        let mut rec = ResultRecord::new(&definition, &tc.id, result);
        if let Some(m) = &tc.measurement {
            rec.measurement = Some(m.value);
            rec.units = tc.units.clone();
        }
        rec.set = self.testset.clone();
        rec.start_line = Some(self.start_markers.remove(&tc.id).unwrap_or(line));
        rec.end_line = Some(line);
        out.push(Output::Result(rec));
    }

    fn on_malformed(&mut self, _line: u64, name: &str, error: &SignalError, out: &mut Vec<Output>) {
        match (name, error) {
            ("TESTCASE", _) if !self.seen_startrun => {
                out.push(fatal(ErrorType::Test, "Invalid TESTCASE signal"));
            }
            ("TESTCASE", e) => out.push(log(LogLevel::Error, e.to_string())),
            (_, SignalError::InvalidReference) => {
                out.push(fatal(ErrorType::Test, error.to_string()))
            }
            (_, SignalError::TestSetWithoutName) => {
                out.push(fatal(ErrorType::Job, error.to_string()))
            }
            (_, SignalError::BadMultiNodeArguments { .. }) => {
                out.push(fatal(ErrorType::Test, error.to_string()));
            }
            (name, e) => out.push(log(
                LogLevel::Error,
                format!("Ignoring malformed {name} signal: {e}"),
            )),
        }
    }
}

/// Runs a whole captured console log through a fresh machine with a constant clock and
/// returns the records and the first fatal error (for tests and log re-processing).
pub fn replay(
    config: StageConfig,
    events: &[Event],
) -> (Vec<ResultRecord>, Option<(ErrorType, String)>) {
    let mut m = ResultsMachine::new(config);
    let mut outputs = Vec::new();
    for e in events {
        outputs.extend(m.handle(e, Duration::ZERO));
        if m.is_stopped() {
            break;
        }
    }
    outputs.extend(m.finish(Duration::ZERO));
    let mut records = Vec::new();
    let mut err = None;
    for o in outputs {
        match o {
            Output::Result(r) => records.push(r),
            Output::Fatal {
                error_type,
                message,
            } if err.is_none() => err = Some((error_type, message)),
            _ => {}
        }
    }
    (records, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testshell::signal::parse_all;

    fn config(pattern: Option<ParsePattern>) -> StageConfig {
        StageConfig {
            stage: 0,
            namespace: "common".into(),
            connection_namespace: None,
            definitions: vec![
                DefinitionInfo {
                    testrun_id: "0_smoke".into(),
                    pattern,
                    ..Default::default()
                },
                DefinitionInfo {
                    testrun_id: "1_other".into(),
                    repository: Some("https://git.example/t.git".into()),
                    path: Some("t.yaml".into()),
                    commit_id: Some("abc".into()),
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn expected_cases_not_reported_fail_at_endrun() {
        let mut cfg = config(None);
        cfg.definitions[0].expected = vec!["boot".into(), "net".into()];
        let (records, err) = run(
            cfg,
            "<LAVA_SIGNAL_STARTRUN 0_smoke 1_1.1>\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=boot RESULT=pass>\n\
             <LAVA_SIGNAL_ENDRUN 0_smoke 1_1.1>\n\
             <LAVA_SIGNAL_STARTRUN 1_other 1_1.2>\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=net RESULT=pass>\n\
             <LAVA_SIGNAL_ENDRUN 1_other 1_1.2>\n",
        );
        assert_eq!(err, None);
        let b = brief(&records);
        assert!(b.contains(&"0_smoke/boot=pass".to_owned()), "{b:?}");
        assert!(b.contains(&"0_smoke/net=fail".to_owned()), "{b:?}");
        assert_eq!(
            b.iter().filter(|x| x.starts_with("0_smoke/")).count(),
            2,
            "{b:?}"
        );
        assert!(
            b.contains(&"1_other/net=pass".to_owned()),
            "only 0_smoke expects cases: {b:?}"
        );
    }

    fn run(cfg: StageConfig, log: &str) -> (Vec<ResultRecord>, Option<(ErrorType, String)>) {
        replay(cfg, &parse_all(log.as_bytes()))
    }

    fn brief(r: &[ResultRecord]) -> Vec<String> {
        r.iter()
            .map(|r| {
                let mut s = format!("{}/{}={}", r.definition, r.case, r.result);
                if let Some(m) = r.measurement {
                    s.push_str(&format!(" {m}{}", r.units.as_deref().unwrap_or("")));
                }
                if let Some(set) = &r.set {
                    s.push_str(&format!(" set={set}"));
                }
                s
            })
            .collect()
    }

    #[test]
    fn basic_run() {
        let (recs, err) = run(
            config(None),
            "<LAVA_SIGNAL_STARTRUN 0_smoke 42_1.1>\r\n\
             <LAVA_SIGNAL_STARTTC sh>\r\nhello\r\n<LAVA_SIGNAL_ENDTC sh>\r\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=sh RESULT=pass>\r\n\
             <LAVA_SIGNAL_TESTSET START net>\r\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=ping RESULT=fail UNITS=ms MEASUREMENT=3.5>\r\n\
             <LAVA_SIGNAL_TESTSET STOP>\r\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=u RESULT=pass UNITS=ms>\r\n\
             <LAVA_SIGNAL_TESTREFERENCE doc skip http://x>\r\n\
             <LAVA_SIGNAL_ENDRUN 0_smoke 42_1.1>\r\n<LAVA_TEST_RUNNER EXIT>\r\n",
        );
        assert_eq!(err, None);
        assert_eq!(
            brief(&recs),
            [
                "0_smoke/sh=pass",
                "0_smoke/ping=fail 3.5ms set=net",
                "0_smoke/u=pass",
                "0_smoke/doc=skip",
                "lava/0_smoke=pass 0seconds"
            ]
        );
        assert_eq!((recs[0].start_line, recs[0].end_line), (Some(2), Some(5)));
        assert_eq!(recs[3].metadata_value("reference"), Some("http://x"));
        assert_eq!(recs[4].metadata_value("revision"), Some("unspecified"));
        assert_eq!(recs[4].metadata_value("namespace"), Some("common"));
        assert_eq!(recs[4].metadata_value("uuid"), Some("42_1.1"));
    }

    #[test]
    fn endrun_metadata_and_duration() {
        let mut m = ResultsMachine::new(config(None));
        let ev =
            parse_all(b"<LAVA_SIGNAL_STARTRUN 1_other 1_2>\n<LAVA_SIGNAL_ENDRUN 1_other 1_2>\n");
        let mut out = Vec::new();
        for (i, e) in ev.iter().enumerate() {
            out.extend(m.handle(e, Duration::from_millis(1500 * i as u64)));
        }
        let recs: Vec<_> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Result(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.metadata_value("duration"), Some("3.00"));
        assert_eq!(r.measurement, Some(3.0));
        assert_eq!(
            r.metadata_value("repository"),
            Some("https://git.example/t.git")
        );
        assert_eq!(r.metadata_value("path"), Some("t.yaml"));
        assert_eq!(r.metadata_value("commit_id"), Some("abc"));
    }

    #[test]
    fn startrun_without_endrun_fails() {
        let (recs, err) = run(
            config(None),
            "<LAVA_SIGNAL_STARTRUN 0_smoke 1_1>\n<LAVA_SIGNAL_STARTRUN 1_other 1_2>\n<LAVA_TEST_RUNNER EXIT>\n",
        );
        assert_eq!(err, None);
        assert_eq!(
            brief(&recs),
            ["lava/0_smoke=fail 0seconds", "lava/1_other=fail 0seconds"]
        );
        assert_eq!(recs[1].metadata_value("commit_id"), Some("abc"));
    }

    #[test]
    fn testcase_before_startrun_is_fatal() {
        let (recs, err) = run(
            config(None),
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>\n",
        );
        assert!(recs.is_empty());
        assert_eq!(
            err,
            Some((ErrorType::Test, "Invalid TESTCASE signal".into()))
        );
        let (_, err) = run(config(None), "<LAVA_SIGNAL_TESTCASE junk>\n");
        assert_eq!(
            err,
            Some((ErrorType::Test, "Invalid TESTCASE signal".into()))
        );
    }

    #[test]
    fn malformed_and_bad_results_are_logged_not_fatal() {
        let (recs, err) = run(
            config(None),
            "<LAVA_SIGNAL_STARTRUN 0_smoke 1_1>\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass junk>\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=b RESULT=PASSED>\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=c RESULT=pass MEASUREMENT=x>\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=d RESULT=pass>\n\
             <LAVA_SIGNAL_ENDRUN 0_smoke 1_1>\n",
        );
        assert_eq!(err, None);
        assert_eq!(
            brief(&recs),
            ["0_smoke/d=pass", "lava/0_smoke=pass 0seconds"]
        );
    }

    #[test]
    fn fatal_signals() {
        let cases = [
            (
                "<LAVA_SIGNAL_TESTRAISE boom now>",
                ErrorType::Test,
                "boom now",
            ),
            (
                "<LAVA_SIGNAL_TESTREFERENCE a b>",
                ErrorType::Test,
                "Invalid use of TESTREFERENCE",
            ),
            (
                "<LAVA_SIGNAL_TESTSET START>",
                ErrorType::Job,
                "Test set declared without a name",
            ),
            (
                "<LAVA_MULTI_NODE> <LAVA_WAIT a b>",
                ErrorType::Test,
                "Unable to handle the test shell signal correctly: unexpected arguments [\"a\", \"b\"]",
            ),
        ];
        for (sig, ty, msg) in cases {
            let (recs, err) = run(
                config(None),
                &format!(
                    "<LAVA_SIGNAL_STARTRUN 0_smoke 1_1>\n{sig}\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=late RESULT=pass>\n"
                ),
            );
            assert_eq!(err, Some((ty, msg.to_owned())), "{sig}");
            // The open run is failed by finish(); nothing after the fatal signal counts.
            assert_eq!(brief(&recs), ["lava/0_smoke=fail 0seconds"], "{sig}");
        }
    }

    #[test]
    fn install_fail() {
        let (recs, err) = run(
            config(None),
            "<LAVA_TEST_RUNNER INSTALL_FAIL>\n<LAVA_TEST_RUNNER EXIT>\n",
        );
        assert_eq!(brief(&recs), ["lava/stage_0=fail"]);
        assert_eq!(
            err,
            Some((ErrorType::Test, "Unable to start test stage 0".into()))
        );
    }

    #[test]
    fn parse_pattern_and_fixupdict() {
        let fix: BTreeMap<String, String> = [("PASS", "pass"), ("FAIL", "fail"), ("SKIP", "skip")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let p = ParsePattern::new(
            r"^(?P<test_case_id>[a-z0-9_/ -]+):\s+(?P<result>PASS|FAIL|SKIP|WEIRD)(\s+(?P<measurement>\S+)\s+(?P<units>\S+))?$",
            fix,
        )
        .ok();
        let (recs, err) = run(
            config(p),
            "alpha: PASS\r\n\
             <LAVA_SIGNAL_STARTRUN 0_smoke 1_1>\r\n\
             beta: FAIL\r\n\
             ga/mma: SKIP\r\n\
             has space: PASS\r\n\
             odd: WEIRD\r\n\
             speed: PASS 12.5 MB/s\r\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=sig RESULT=FAIL>\r\n\
             <LAVA_SIGNAL_ENDRUN 0_smoke 1_1>\r\n\
             delta: PASS\r\n\
             <LAVA_SIGNAL_STARTRUN 1_other 1_2>\r\n\
             epsilon: PASS\r\n\
             <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=sig2 RESULT=FAIL>\r\n\
             <LAVA_SIGNAL_ENDRUN 1_other 1_2>\r\n",
        );
        assert_eq!(err, None);
        assert_eq!(
            brief(&recs),
            [
                "0_smoke/beta=fail",
                "0_smoke/ga/mma=skip",
                "0_smoke/speed=pass 12.5MB/s",
                "0_smoke/sig=fail",
                "lava/0_smoke=pass 0seconds",
                "lava/1_other=pass 0seconds"
            ]
        );
        assert_eq!(recs[0].start_line, Some(3));
    }

    #[test]
    fn pattern_invalid_measurement_is_fatal() {
        let p = ParsePattern::new(
            r"^(?P<test_case_id>\w+) (?P<result>\w+) (?P<measurement>\S+)$",
            BTreeMap::new(),
        )
        .ok();
        let (_, err) = run(
            config(p),
            "<LAVA_SIGNAL_STARTRUN 0_smoke 1_1>\nx pass abc\n",
        );
        assert_eq!(
            err,
            Some((ErrorType::Test, "Invalid measurement abc".into()))
        );
        assert!(ParsePattern::new("(?P<x", BTreeMap::new()).is_err());
    }

    #[test]
    fn multinode_cases() {
        let mut m = ResultsMachine::new(config(None));
        let ev = parse_all(
            b"<LAVA_SIGNAL_STARTRUN 0_smoke 1_1>\n<LAVA_MULTI_NODE> <LAVA_SYNC clients>\n",
        );
        let mut pending = None;
        for e in &ev {
            for o in m.handle(e, Duration::ZERO) {
                if let Output::MultiNode { line, request } = o {
                    pending = Some((line, request));
                }
            }
        }
        let Some((line, req)) = pending else {
            panic!("no request")
        };
        let out = m.multinode_outcome(line, &req, true);
        let Some(Output::Result(r)) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(
            (r.definition.as_str(), r.case.as_str(), r.result),
            ("0_smoke", "multinode-sync-clients", TestResult::Pass)
        );
        // Before any STARTRUN the case cannot be recorded.
        let mut m = ResultsMachine::new(config(None));
        let out = m.multinode_outcome(1, &req, false);
        assert!(out.iter().any(|o| matches!(o, Output::Fatal { .. })));
    }

    #[test]
    fn events_and_feedback() {
        let mut m = ResultsMachine::new(config(None));
        let mut out = Vec::new();
        for e in parse_all(b"<LAVA_SIGNAL_TESTEVENT hi there>\n<LAVA_SIGNAL_TESTFEEDBACK ns>\n") {
            out.extend(m.handle(&e, Duration::ZERO));
        }
        assert_eq!(
            out,
            [
                Output::Event {
                    message: "hi there".into()
                },
                Output::Feedback {
                    namespace: "ns".into()
                }
            ]
        );
    }

    static TOTAL_PATTERN: std::sync::LazyLock<Option<ParsePattern>> =
        std::sync::LazyLock::new(|| {
            ParsePattern::new(
                r"^(?P<test_case_id>\w+): (?P<result>\w+)( (?P<measurement>\S+) (?P<units>\S+))?$",
                [("PASS".to_owned(), "pass".to_owned())]
                    .into_iter()
                    .collect(),
            )
            .ok()
        });

    proptest::proptest! {
        /// Any sequence of (possibly malformed) signals is handled without panicking, and
        /// every record names its suite and case.
        #[test]
        fn machine_is_total(lines in proptest::collection::vec(proptest::sample::select(vec![
            "<LAVA_SIGNAL_STARTRUN 0_smoke 1_1>",
            "<LAVA_SIGNAL_STARTRUN 1_other 1_2>",
            "<LAVA_SIGNAL_ENDRUN 0_smoke 1_1>",
            "<LAVA_SIGNAL_ENDRUN>",
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>",
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=b RESULT=PASS MEASUREMENT=1e3 UNITS=ms>",
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=c RESULT=pass MEASUREMENT=x>",
            "<LAVA_SIGNAL_TESTCASE junk>",
            "<LAVA_SIGNAL_STARTTC a>",
            "<LAVA_SIGNAL_ENDTC a>",
            "<LAVA_SIGNAL_TESTSET START s>",
            "<LAVA_SIGNAL_TESTSET STOP>",
            "<LAVA_SIGNAL_TESTSET START>",
            "<LAVA_SIGNAL_TESTREFERENCE r pass http://x>",
            "<LAVA_SIGNAL_TESTREFERENCE r pass>",
            "<LAVA_SIGNAL_TESTRAISE oops>",
            "<LAVA_MULTI_NODE> <LAVA_SYNC x>",
            "<LAVA_TEST_RUNNER INSTALL_FAIL>",
            "<LAVA_TEST_RUNNER EXIT>",
            "alpha: PASS",
            "beta: WEIRD 1.5 s",
        ]), 0..40)) {
            let p = TOTAL_PATTERN.clone();
            let log = lines.join("\r\n");
            let (records, _) = replay(config(p), &parse_all(log.as_bytes()));
            for r in &records {
                proptest::prop_assert!(!r.definition.is_empty() && !r.case.is_empty());
            }
        }
    }
}
