//! Result comparison between a job and an earlier one (`notify.compare`): what newly fails,
//! what was fixed, which suites and cases appeared or disappeared.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{JobId, TestResult};
use crate::store::TestCase;

/// Per-suite counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed cases.
    pub pass: u64,
    /// Failed cases.
    pub fail: u64,
    /// Skipped cases.
    pub skip: u64,
}

/// The difference between two jobs' results; names are `suite/case`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The job compared against.
    pub previous: JobId,
    /// Suites only in this job.
    pub suites_added: Vec<String>,
    /// Suites only in the previous job.
    pub suites_removed: Vec<String>,
    /// Cases only in this job.
    pub cases_added: Vec<String>,
    /// Cases only in the previous job.
    pub cases_removed: Vec<String>,
    /// Cases that fail now and did not fail before (including new failing cases).
    pub new_failures: Vec<String>,
    /// Cases that failed before and pass now.
    pub fixed: Vec<String>,
    /// Suites whose counts changed: (suite, before, now).
    pub counts_changed: Vec<(String, Counts, Counts)>,
}

impl Comparison {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.suites_added.is_empty()
            && self.suites_removed.is_empty()
            && self.cases_added.is_empty()
            && self.cases_removed.is_empty()
            && self.new_failures.is_empty()
            && self.fixed.is_empty()
            && self.counts_changed.is_empty()
    }
}

/// `suite/[set/]case` → result, without blacklisted suites or cases.
fn index(cases: &[TestCase], blacklist: &[String]) -> BTreeMap<String, (String, TestResult)> {
    cases
        .iter()
        .filter(|c| !blacklist.iter().any(|b| *b == c.suite || *b == c.name))
        .map(|c| {
            let key = match &c.test_set {
                Some(set) => format!("{}/{set}/{}", c.suite, c.name),
                None => format!("{}/{}", c.suite, c.name),
            };
            (key, (c.suite.clone(), c.result))
        })
        .collect()
}

fn counts(index: &BTreeMap<String, (String, TestResult)>) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for (suite, result) in index.values() {
        let c = out.entry(suite.clone()).or_default();
        match result {
            TestResult::Pass => c.pass += 1,
            TestResult::Fail => c.fail += 1,
            TestResult::Skip => c.skip += 1,
            TestResult::Unknown => {}
        }
    }
    out
}

/// Compares `now` (this job's cases) with `before` (job `previous`'s), leaving out suites
/// and cases named in `blacklist`.
pub fn compare(
    previous: JobId,
    before: &[TestCase],
    now: &[TestCase],
    blacklist: &[String],
) -> Comparison {
    let old = index(before, blacklist);
    let new = index(now, blacklist);
    let (old_counts, new_counts) = (counts(&old), counts(&new));
    let old_suites: BTreeSet<&String> = old_counts.keys().collect();
    let new_suites: BTreeSet<&String> = new_counts.keys().collect();
    let mut c = Comparison {
        previous,
        suites_added: new_suites
            .difference(&old_suites)
            .map(|s| s.to_string())
            .collect(),
        suites_removed: old_suites
            .difference(&new_suites)
            .map(|s| s.to_string())
            .collect(),
        cases_added: Vec::new(),
        cases_removed: Vec::new(),
        new_failures: Vec::new(),
        fixed: Vec::new(),
        counts_changed: Vec::new(),
    };
    for (name, (_, result)) in &new {
        let before = old.get(name).map(|(_, r)| *r);
        if before.is_none() {
            c.cases_added.push(name.clone());
        }
        match (before, result) {
            (Some(TestResult::Fail), TestResult::Fail) => {}
            (_, TestResult::Fail) => c.new_failures.push(name.clone()),
            (Some(TestResult::Fail), TestResult::Pass) => c.fixed.push(name.clone()),
            _ => {}
        }
    }
    c.cases_removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    for (suite, now) in &new_counts {
        if let Some(before) = old_counts.get(suite).filter(|b| *b != now) {
            c.counts_changed.push((suite.clone(), *before, *now));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobId;
    use crate::store::TestCase;

    fn case(suite: &str, name: &str, result: TestResult) -> TestCase {
        TestCase {
            id: crate::model::TestCaseId(0),
            job: JobId(1),
            suite_id: crate::model::SuiteId(0),
            suite: suite.into(),
            test_set: None,
            name: name.into(),
            result,
            measurement: None,
            units: String::new(),
            metadata: None,
            metadata_json: None,
            start_log_line: None,
            end_log_line: None,
            logged: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn finds_failures_fixes_and_changes() {
        use TestResult::*;
        let before = [
            case("0_smoke", "a", Pass),
            case("0_smoke", "b", Fail),
            case("0_smoke", "gone", Pass),
            case("lava", "job", Pass),
            case("old", "x", Pass),
        ];
        let now = [
            case("0_smoke", "a", Fail),
            case("0_smoke", "b", Pass),
            case("0_smoke", "new", Fail),
            case("lava", "job", Fail),
            case("fresh", "y", Pass),
        ];
        let c = compare(JobId(7), &before, &now, &["lava".to_owned()]);
        assert_eq!(c.new_failures, ["0_smoke/a", "0_smoke/new"]);
        assert_eq!(c.fixed, ["0_smoke/b"]);
        assert_eq!(c.cases_added, ["0_smoke/new", "fresh/y"]);
        assert_eq!(c.cases_removed, ["0_smoke/gone", "old/x"]);
        assert_eq!(c.suites_added, ["fresh"]);
        assert_eq!(c.suites_removed, ["old"]);
        assert_eq!(c.counts_changed.len(), 1);
        assert!(!c.is_empty());
        assert!(compare(JobId(7), &now, &now, &[]).is_empty());
    }
}
