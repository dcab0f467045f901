//! The dispatcher's own entries in a job's `lava` suite, shaped as LAVA 2023.01 records them.
//!
//! LAVA does not record every action: an action gets a case only when it produced result data
//! (a download's size and checksums, the addresses the bootloader commands were given, a
//! power command that ran). The case is the action's name, its measurement the action's
//! duration in seconds, and its metadata the whole result dict (`definition`, `namespace`,
//! `case`, `level`, `duration`, `result`, `extra`). The `validate`, test-run and `job` cases
//! are made elsewhere (`dispatcher`, `testshell::results`).

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::model::TestResult;
use crate::store::NewTestCase;
use crate::testshell::results::LAVA_SUITE;

/// One finished action with result data.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionResult {
    /// LAVA's action name, e.g. `http-download`.
    pub name: String,
    /// Its level in the pipeline, e.g. `1.1.1`.
    pub level: String,
    /// The job action's `namespace` (LAVA: `common` when unset).
    pub namespace: String,
    /// How long it took.
    pub duration: Duration,
    /// Whether it succeeded.
    pub passed: bool,
    /// The action's own data, LAVA's `extra`.
    pub extra: Map<String, Value>,
}

impl ActionResult {
    /// A result for `name` at `level`, in `namespace` (`None`: LAVA's `common`).
    pub fn new(
        name: impl Into<String>,
        level: impl Into<String>,
        namespace: Option<&str>,
        duration: Duration,
    ) -> ActionResult {
        ActionResult {
            name: name.into(),
            level: level.into(),
            namespace: namespace.unwrap_or("common").to_owned(),
            duration,
            passed: true,
            extra: Map::new(),
        }
    }

    /// Adds one item of `extra`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ActionResult {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The duration as LAVA prints it: seconds with two decimals.
    fn duration_text(&self) -> String {
        format!("{:.2}", self.duration.as_secs_f64())
    }

    /// The `results` entry of the job log.
    pub fn log_entry(&self) -> Value {
        json!({
            "definition": LAVA_SUITE,
            "namespace": self.namespace,
            "case": self.name,
            "level": self.level,
            "duration": self.duration_text(),
            "result": if self.passed { "pass" } else { "fail" },
            "extra": self.extra,
        })
    }

    /// Where LAVA keeps this result's `extra`, relative to the job's directory.
    pub fn extra_file(&self) -> Option<String> {
        match self.log_entry() {
            Value::Object(entry) => crate::testshell::metadata::extra_file(&entry),
            _ => None,
        }
    }

    /// The stored test case; `extra_path` is where [`ActionResult::extra`] was written.
    pub fn case(&self, extra_path: Option<&str>) -> NewTestCase {
        let result = if self.passed {
            TestResult::Pass
        } else {
            TestResult::Fail
        };
        let mut case = NewTestCase::new(LAVA_SUITE, self.name.clone(), result);
        case.measurement = Some((self.duration.as_secs_f64() * 100.0).round() / 100.0);
        case.units = "seconds".into();
        if let Value::Object(entry) = self.log_entry() {
            case.metadata = Some(crate::testshell::metadata::case_metadata(
                &entry, extra_path,
            ));
        }
        case
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download() -> ActionResult {
        ActionResult::new("http-download", "1.1.1", None, Duration::from_millis(1234))
            .with("label", "kernel")
            .with("size", 4_194_304)
            .with("md5sum", "0f343b0931126a20f133d67c2b018a3b")
    }

    #[test]
    fn log_entry_has_lavas_keys_and_duration_text() {
        let e = download().log_entry();
        assert_eq!(e["definition"], "lava");
        assert_eq!(e["namespace"], "common");
        assert_eq!(e["case"], "http-download");
        assert_eq!(e["level"], "1.1.1");
        assert_eq!(e["duration"], "1.23");
        assert_eq!(e["result"], "pass");
        assert_eq!(e["extra"]["label"], "kernel");
        assert_eq!(e["extra"]["size"], 4_194_304);
    }

    #[test]
    fn case_measures_seconds_and_keeps_the_dict_as_metadata() {
        let mut r = download();
        r.namespace = "target".into();
        r.passed = false;
        let c = r.case(Some("/data/jobs/7/metadata/lava-http-download-1.1.1.yaml"));
        assert_eq!(
            (c.suite.as_str(), c.name.as_str()),
            ("lava", "http-download")
        );
        assert_eq!(c.result, TestResult::Fail);
        assert_eq!(c.measurement, Some(1.23));
        assert_eq!(c.units, "seconds");
        let meta: Value = serde_norway::from_str(c.metadata.as_deref().unwrap()).unwrap();
        assert_eq!(meta["namespace"], "target");
        assert_eq!(meta["result"], "fail");
        // LAVA's rule: `extra` is replaced by the path of the file that holds it.
        assert_eq!(
            meta["extra"],
            "/data/jobs/7/metadata/lava-http-download-1.1.1.yaml"
        );
        assert_eq!(
            r.extra_file().as_deref(),
            Some("metadata/lava-http-download-1.1.1.yaml")
        );
    }
}
