//! Typed `test:` blocks: test definitions (lava-test-shell), monitors, interactive.

use super::deploy::names;
use super::{string, strings};
use crate::jobdef::yaml::{Node, Value};
use std::fmt;

/// Where a test definition comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TestDefSource {
    /// `from: git`.
    Git {
        /// Clone URL.
        repository: String,
        /// Branch to check out.
        branch: Option<String>,
        /// Commit to check out.
        revision: Option<String>,
        /// Keep the git history (`history: false` removes `.git`).
        history: Option<bool>,
        /// `shallow:` (LAVA clones `--depth=1` unless told otherwise or a revision is asked).
        shallow: Option<bool>,
    },
    /// `from: url`: an archive.
    Url {
        /// Archive URL.
        repository: String,
        /// Its compression.
        compression: String,
    },
    /// `from: inline`: the test definition document itself.
    Inline(Node),
}

names!(
    /// `lava-signal`: where the test shell prints its signals.
    LavaSignal {
        /// Kernel message buffer.
        Kmsg = "kmsg",
        /// Standard output.
        Stdout = "stdout",
    }
);

names!(
    /// A part of a test definition's `install:` that the job skips.
    SkipInstall {
        /// `keys`.
        Keys = "keys",
        /// `sources`.
        Sources = "sources",
        /// `deps`.
        Deps = "deps",
        /// `steps`.
        Steps = "steps",
        /// `git-repos`.
        GitRepos = "git-repos",
        /// `all`.
        All = "all",
    }
);

/// One entry of `definitions:`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestDefinition {
    /// Suite name (`^[-_a-zA-Z0-9.]+$`, unique in the block, never `lava`).
    pub name: String,
    /// Path of the YAML file inside the repository (or file name for inline).
    pub path: String,
    /// Where it comes from.
    pub source: TestDefSource,
    /// `parameters:` (or legacy `params:`), exported as shell variables.
    pub parameters: Vec<(String, Node)>,
    /// `skip_install` steps (values the schema does not know are refused before this).
    pub skip_install: Vec<SkipInstall>,
    /// Signal channel.
    pub lava_signal: Option<LavaSignal>,
}

impl TestDefinition {
    /// `parameters:` as the shell variables the run scripts set (scalars as written, others
    /// in their short YAML form).
    pub fn parameters_text(&self) -> Vec<(String, String)> {
        self.parameters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.short(), str::to_owned),
                )
            })
            .collect()
    }

    fn from_node(node: &Node) -> Option<TestDefinition> {
        let repository = node.get("repository")?;
        let source = match node.get("from")?.as_str()? {
            "git" => TestDefSource::Git {
                repository: repository.as_str()?.to_owned(),
                branch: string(node, "branch"),
                revision: string(node, "revision"),
                history: node.get("history").and_then(Node::as_bool),
                shallow: node.get("shallow").and_then(Node::as_bool),
            },
            "url" => TestDefSource::Url {
                repository: repository.as_str()?.to_owned(),
                compression: string(node, "compression")?,
            },
            "inline" => TestDefSource::Inline(repository.clone()),
            _ => return None,
        };
        let parameters = node
            .get("parameters")
            .or_else(|| node.get("params"))
            .and_then(Node::as_map)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let key = match &k.value {
                            Value::Str(s) => s.clone(),
                            _ => k.short(),
                        };
                        (key, v.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(TestDefinition {
            name: string(node, "name")?,
            path: string(node, "path")?,
            source,
            parameters,
            skip_install: strings(node, "skip_install")
                .iter()
                .filter_map(|s| SkipInstall::from_name(s))
                .collect(),
            lava_signal: node
                .get("lava-signal")
                .and_then(Node::as_str)
                .and_then(LavaSignal::from_name),
        })
    }
}

/// One entry of `monitors:`: watch the console for test results without a shell.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    /// Suite name.
    pub name: String,
    /// Regex that starts the watch.
    pub start: String,
    /// Regex that ends it.
    pub end: String,
    /// Regex with named groups `test_case_id`, `result`, `measurement`, `units`.
    pub pattern: String,
    /// Maps result words to pass/fail/skip/unknown.
    pub fixupdict: Vec<(String, String)>,
}

/// What an interactive step expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Text that means failure.
    pub message: String,
    /// Raise this error class instead of recording a failed case.
    pub exception: Option<String>,
    /// Error text for the exception.
    pub error: Option<String>,
}

/// One step of an interactive script.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractiveStep {
    /// Command to send (`None`: send nothing, just wait).
    pub command: Option<String>,
    /// Test case name for the outcome.
    pub name: Option<String>,
    /// Seconds to wait before sending.
    pub delay: Option<i64>,
    /// Wait for a prompt after the command (LAVA's default is true).
    pub wait_for_prompt: bool,
    /// MultiNode call (`lava-send`, `lava-sync`, `lava-wait`, `lava-wait-all`) and its id.
    pub multinode: Vec<(String, String)>,
    /// Texts meaning success.
    pub successes: Vec<String>,
    /// Texts meaning failure.
    pub failures: Vec<Failure>,
}

/// One entry of `interactive:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interactive {
    /// Suite name.
    pub name: String,
    /// Prompts of the program being driven (e.g. `=> ` for U-Boot).
    pub prompts: Vec<String>,
    /// `echo: discard`: drop the echoed command.
    pub echo_discard: bool,
    /// The steps.
    pub script: Vec<InteractiveStep>,
}

/// A typed `test:` block.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `definitions:` run in the lava test shell (or in docker when `docker` is set).
    Definitions {
        /// The definitions, in order.
        definitions: Vec<TestDefinition>,
        /// `docker:` run them in a container, as written.
        docker: Option<Node>,
    },
    /// `monitors:`.
    Monitors(Vec<Monitor>),
    /// `interactive:`.
    Interactive(Vec<Interactive>),
}

fn pairs(node: Option<&Node>) -> Vec<(String, String)> {
    node.and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl Test {
    pub(crate) fn from_node(node: &Node) -> Option<Test> {
        if let Some(defs) = node.get("definitions") {
            return Some(Test::Definitions {
                definitions: defs
                    .as_seq()?
                    .iter()
                    .map(TestDefinition::from_node)
                    .collect::<Option<_>>()?,
                docker: node.get("docker").cloned(),
            });
        }
        if let Some(items) = node.get("interactive") {
            let mut out = Vec::new();
            for item in items.as_seq()? {
                let mut script = Vec::new();
                for step in item.get("script")?.as_seq()? {
                    script.push(InteractiveStep {
                        command: string(step, "command"),
                        name: string(step, "name"),
                        delay: step
                            .get("delay")
                            .and_then(Node::as_int)
                            .and_then(|d| i64::try_from(d).ok()),
                        wait_for_prompt: step
                            .get("wait_for_prompt")
                            .and_then(Node::as_bool)
                            .unwrap_or(true),
                        multinode: ["lava-send", "lava-sync", "lava-wait", "lava-wait-all"]
                            .iter()
                            .filter_map(|k| Some(((*k).to_owned(), string(step, k)?)))
                            .collect(),
                        successes: step
                            .get("successes")
                            .and_then(Node::as_seq)
                            .map(|s| s.iter().filter_map(|m| string(m, "message")).collect())
                            .unwrap_or_default(),
                        failures: step
                            .get("failures")
                            .and_then(Node::as_seq)
                            .map(|s| {
                                s.iter()
                                    .filter_map(|f| {
                                        Some(Failure {
                                            message: string(f, "message")?,
                                            exception: string(f, "exception"),
                                            error: string(f, "error"),
                                        })
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
                out.push(Interactive {
                    name: string(item, "name")?,
                    prompts: strings(item, "prompts"),
                    echo_discard: item.get("echo").and_then(Node::as_str) == Some("discard"),
                    script,
                });
            }
            return Some(Test::Interactive(out));
        }
        let monitors = node.get("monitors")?.as_seq()?;
        Some(Test::Monitors(
            monitors
                .iter()
                .map(|m| {
                    Some(Monitor {
                        name: string(m, "name")?,
                        start: string(m, "start")?,
                        end: string(m, "end")?,
                        pattern: string(m, "pattern")?,
                        fixupdict: pairs(m.get("fixupdict")),
                    })
                })
                .collect::<Option<_>>()?,
        ))
    }
}
