//! Domain vocabulary shared by every module: ids as newtypes and LAVA's states, named and
//! numbered exactly as LAVA 2023.01 names and numbers them (the numbers are part of the
//! XML-RPC and REST wire formats, and of the database).
//!
//! This module is pure: no I/O, no serde. Wire formats convert at the edge. The rules of
//! LAVA's life cycle (which state follows which, what a job's end does to its device) are
//! in [`lifecycle`].

pub mod lifecycle;

use std::fmt;
use std::str::FromStr;

/// The LAVA release lavabox imitates and reports (REST `system/version`, the worker's
/// recorded version).
pub const LAVA_VERSION: &str = "2023.01";

/// Error returned when a state or health name or code is not one LAVA knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {expected})")]
pub struct UnknownName {
    /// What was being parsed, e.g. "job state".
    pub kind: &'static str,
    /// The offending input.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

macro_rules! lava_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in LAVA's numeric order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// LAVA's integer code (database and wire value).
            pub fn code(self) -> i64 {
                match self { $($name::$variant => $code,)+ }
            }

            /// LAVA's display name, e.g. `Submitted`.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The value for LAVA's integer code.
            pub fn from_code(code: i64) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            /// Parses LAVA's display name, case-insensitively.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.eq_ignore_ascii_case($text) { return Ok($name::$variant); })+
                Err(UnknownName { kind: $kind, value: s.to_owned(), expected: concat!($($text, " "),+) })
            }
        }
    };
}

lava_enum!(
    /// A job's position in its life cycle; only ever moves forward.
    JobState, "job state", {
        /// Waiting in the queue.
        Submitted = 0, "Submitted";
        /// MultiNode only: a device is picked, waiting for the rest of the group.
        Scheduling = 1, "Scheduling";
        /// A device is reserved; the dispatcher will start it.
        Scheduled = 2, "Scheduled";
        /// The dispatcher runs it.
        Running = 3, "Running";
        /// Cancel requested; the dispatcher is cleaning up.
        Canceling = 4, "Canceling";
        /// Over; see [`JobHealth`].
        Finished = 5, "Finished";
    }
);

lava_enum!(
    /// How a job ended; `Unknown` until it is Finished.
    JobHealth, "job health", {
        /// Not finished yet.
        Unknown = 0, "Unknown";
        /// The pipeline ran to its end (failed test cases do not change this).
        Complete = 1, "Complete";
        /// An error stopped the pipeline.
        Incomplete = 2, "Incomplete";
        /// Canceled by a user, a queue timeout or a MultiNode peer.
        Canceled = 3, "Canceled";
    }
);

lava_enum!(
    /// Whether a device is busy.
    DeviceState, "device state", {
        /// No job.
        Idle = 0, "Idle";
        /// A job is Scheduling or Scheduled on it.
        Reserved = 1, "Reserved";
        /// A job runs on it.
        Running = 2, "Running";
    }
);

lava_enum!(
    /// Whether a device may take jobs.
    DeviceHealth, "device health", {
        /// Passed its last health check (or has none to pass).
        Good = 0, "Good";
        /// Needs a health check before user jobs.
        Unknown = 1, "Unknown";
        /// Runs health checks again and again, never user jobs.
        Looping = 2, "Looping";
        /// Failed its health check.
        Bad = 3, "Bad";
        /// Taken out by an admin.
        Maintenance = 4, "Maintenance";
        /// Gone for good; hidden from lists.
        Retired = 5, "Retired";
    }
);

lava_enum!(
    /// The result of one test case.
    TestResult, "test result", {
        /// Passed.
        Pass = 0, "pass";
        /// Failed.
        Fail = 1, "fail";
        /// Skipped.
        Skip = 2, "skip";
        /// No usable outcome.
        Unknown = 3, "unknown";
    }
);

lava_enum!(
    /// LAVA's job priority names; any integer 0–100 is also valid (see [`Priority`]).
    PriorityName, "priority", {
        /// 0.
        Low = 0, "low";
        /// 50, the default.
        Medium = 50, "medium";
        /// 100.
        High = 100, "high";
    }
);

lava_enum!(
    /// LAVA's error classes: why a job ended Incomplete (`error_type` in results and APIs).
    ErrorType, "error type", {
        /// No error.
        None = 0, "None";
        /// Lab, worker or device problem: download, power, serial closed.
        Infrastructure = 1, "Infrastructure";
        /// Bad device or appliance configuration.
        Configuration = 2, "Configuration";
        /// A lavabox bug or unexpected failure.
        Bug = 3, "Bug";
        /// The job definition cannot run as written.
        Job = 4, "Job";
        /// A test failure severe enough to stop the job.
        Test = 5, "Test";
        /// Canceled.
        Canceled = 6, "Canceled";
        /// An action or test shell timed out.
        LavaTimeout = 7, "LAVATimeout";
        /// A MultiNode coordination call timed out.
        MultinodeTimeout = 8, "MultinodeTimeout";
    }
);

impl ErrorType {
    /// LAVA treats these as the lab's fault: the device goes back to health Unknown.
    pub fn is_infrastructure(self) -> bool {
        matches!(
            self,
            ErrorType::Infrastructure | ErrorType::Configuration | ErrorType::Bug
        )
    }
}

impl JobState {
    /// LAVA's legacy single status (XML-RPC `status`, callbacks' `{STATUS}`), which folds
    /// state and health together.
    pub fn legacy_status(self, health: JobHealth) -> LegacyStatus {
        match (self, health) {
            (JobState::Submitted | JobState::Scheduling | JobState::Scheduled, _) => {
                LegacyStatus::Submitted
            }
            (JobState::Running, _) => LegacyStatus::Running,
            (JobState::Canceling, _) => LegacyStatus::Canceling,
            (JobState::Finished, JobHealth::Complete) => LegacyStatus::Complete,
            (JobState::Finished, JobHealth::Canceled) => LegacyStatus::Canceled,
            (JobState::Finished, JobHealth::Incomplete | JobHealth::Unknown) => {
                LegacyStatus::Incomplete
            }
        }
    }
}

lava_enum!(
    /// LAVA's pre-2018 single job status, still returned by legacy XML-RPC calls.
    LegacyStatus, "legacy status", {
        /// Queued or being scheduled.
        Submitted = 0, "Submitted";
        /// Running.
        Running = 1, "Running";
        /// Finished, Complete.
        Complete = 2, "Complete";
        /// Finished, Incomplete.
        Incomplete = 3, "Incomplete";
        /// Finished, Canceled.
        Canceled = 4, "Canceled";
        /// Cancel in progress.
        Canceling = 5, "Canceling";
    }
);

/// A job priority, 0 (low) to 100 (high); LAVA's default is 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// LAVA's default, `medium`.
    pub const DEFAULT: Priority = Priority(50);

    /// A priority from an integer, if it lies in 0–100.
    pub fn new(value: i64) -> Option<Priority> {
        (0..=100).contains(&value).then_some(Priority(value as u8))
    }

    /// The integer value.
    pub fn value(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

impl From<PriorityName> for Priority {
    fn from(name: PriorityName) -> Self {
        Priority(name.code() as u8)
    }
}

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_newtype!(
    /// A job's numeric id (LAVA's `TestJob.id`). MultiNode sub-jobs have ids of their own
    /// and share a group.
    JobId
);
id_newtype!(
    /// A user's row id.
    UserId
);
id_newtype!(
    /// A group's row id.
    GroupId
);
id_newtype!(
    /// A test suite's row id.
    SuiteId
);
id_newtype!(
    /// A test case's row id.
    TestCaseId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::from_code(s.code()), Some(*s));
            assert_eq!(s.as_str().parse::<JobState>(), Ok(*s));
        }
        for h in DeviceHealth::ALL {
            assert_eq!(DeviceHealth::from_code(h.code()), Some(*h));
        }
        assert_eq!(
            "LAVATimeout".parse::<ErrorType>(),
            Ok(ErrorType::LavaTimeout)
        );
        assert!("Sleeping".parse::<DeviceHealth>().is_err());
    }

    #[test]
    fn legacy_status_matches_lava() {
        assert_eq!(
            JobState::Scheduling.legacy_status(JobHealth::Unknown),
            LegacyStatus::Submitted
        );
        assert_eq!(
            JobState::Finished.legacy_status(JobHealth::Unknown),
            LegacyStatus::Incomplete
        );
        assert_eq!(
            JobState::Finished.legacy_status(JobHealth::Canceled).code(),
            4
        );
        assert_eq!(
            JobState::Canceling.legacy_status(JobHealth::Unknown).code(),
            5
        );
    }

    #[test]
    fn priority_bounds() {
        assert_eq!(Priority::new(100).map(Priority::value), Some(100));
        assert_eq!(Priority::new(101), None);
        assert_eq!(Priority::new(-1), None);
        assert_eq!(Priority::from(PriorityName::High).value(), 100);
        assert_eq!("MEDIUM".parse::<PriorityName>(), Ok(PriorityName::Medium));
    }
}
