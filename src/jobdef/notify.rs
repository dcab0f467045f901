//! The job's `notify:` block: when to tell whom, and which callbacks to call.

use crate::jobdef::action::deploy::names;
use crate::jobdef::action::{string, strings};
use crate::jobdef::yaml::Node;
use std::fmt;

names!(
    /// `criteria.status`: which job end (or start) triggers the notification.
    NotifyStatus {
        /// Any change.
        All = "all",
        /// Finished, whatever the health.
        Finished = "finished",
        /// Started running.
        Running = "running",
        /// Finished Complete.
        Complete = "complete",
        /// Finished Incomplete.
        Incomplete = "incomplete",
        /// Canceled.
        Canceled = "canceled",
    }
);

names!(
    /// `criteria.type`: compare with earlier jobs.
    ChangeType {
        /// Notify when results got worse.
        Regression = "regression",
        /// Notify when results got better.
        Progression = "progression",
    }
);

names!(
    /// `verbosity`.
    Verbosity {
        /// Everything.
        Verbose = "verbose",
        /// The default.
        Quiet = "quiet",
        /// Only the status.
        StatusOnly = "status-only",
    }
);

names!(
    /// Callback HTTP method.
    CallbackMethod {
        /// The default.
        Get = "GET",
        /// POST the data set.
        Post = "POST",
    }
);

names!(
    /// How much a callback sends.
    Dataset {
        /// The default.
        Minimal = "minimal",
        /// With logs.
        Logs = "logs",
        /// With results.
        Results = "results",
        /// Everything.
        All = "all",
    }
);

names!(
    /// Callback body encoding.
    ContentType {
        /// The default.
        Urlencoded = "urlencoded",
        /// JSON.
        Json = "json",
    }
);

/// `criteria:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criteria {
    /// `{status}` with an optional `dependency_query`.
    Status {
        /// Which status.
        status: NotifyStatus,
        /// LAVA query conditions (`entity__field__op__value,…` on test jobs, not the name of
        /// a saved query): every other job they match must have reached `status` too.
        dependency_query: Option<String>,
    },
    /// `{status: complete|incomplete, type: regression|progression}`, which may also carry a
    /// `dependency_query` (LAVA checks both).
    Change {
        /// Complete or incomplete.
        status: NotifyStatus,
        /// Regression or progression.
        kind: ChangeType,
        /// As for [`Criteria::Status`].
        dependency_query: Option<String>,
    },
}

impl Criteria {
    /// The status the criteria names.
    pub fn status(&self) -> NotifyStatus {
        match self {
            Criteria::Status { status, .. } | Criteria::Change { status, .. } => *status,
        }
    }

    /// The `dependency_query` conditions, if any.
    pub fn dependency_query(&self) -> Option<&str> {
        match self {
            Criteria::Status {
                dependency_query, ..
            }
            | Criteria::Change {
                dependency_query, ..
            } => dependency_query.as_deref(),
        }
    }
}

/// One recipient; who it is depends on the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// `method: email`.
    Email {
        /// A LAVA user (their address is used).
        user: Option<String>,
        /// An address.
        email: Option<String>,
    },
    /// `method: irc`.
    Irc {
        /// A LAVA user (their IRC handle is used).
        user: Option<String>,
        /// A nick.
        handle: Option<String>,
        /// IRC server.
        server: Option<String>,
    },
}

/// One callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// URL; `{ID}`, `{STATUS}`, … are replaced.
    pub url: String,
    /// HTTP method.
    pub method: CallbackMethod,
    /// Token description (or literal token).
    pub token: Option<String>,
    /// Header carrying the token.
    pub header: String,
    /// How much to send.
    pub dataset: Dataset,
    /// Encoding.
    pub content_type: ContentType,
}

/// `compare.query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareQuery {
    /// A stored query by owner and name.
    Named {
        /// Owner.
        username: String,
        /// Query name.
        name: String,
    },
    /// An ad-hoc query.
    Conditions {
        /// Must be `testjob`.
        entity: String,
        /// Field → value.
        conditions: Vec<(String, String)>,
    },
}

impl CompareQuery {
    /// An ad-hoc query's conditions as LAVA's condition string (`field__value,…`: LAVA joins
    /// the mapping so), or `None` for a stored query.
    pub fn condition_string(&self) -> Option<String> {
        let CompareQuery::Conditions { conditions, .. } = self else {
            return None;
        };
        let parts: Vec<String> = conditions
            .iter()
            .map(|(field, value)| format!("{field}__{value}"))
            .collect();
        Some(parts.join(","))
    }
}

/// `compare:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// Suite/case names left out.
    pub blacklist: Vec<String>,
    /// Jobs to compare with.
    pub query: Option<CompareQuery>,
}

/// The `notify:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// When.
    pub criteria: Criteria,
    /// How much.
    pub verbosity: Verbosity,
    /// Whom (empty and no callbacks: the submitter is emailed).
    pub recipients: Vec<Recipient>,
    /// Callbacks (`callback:` or `callbacks:`).
    pub callbacks: Vec<Callback>,
    /// Result comparison.
    pub compare: Option<Compare>,
}

fn callback(node: &Node) -> Option<Callback> {
    let pick = |key: &str| node.get(key).and_then(Node::as_str);
    Some(Callback {
        url: string(node, "url")?,
        method: pick("method")
            .and_then(CallbackMethod::from_name)
            .unwrap_or(CallbackMethod::Get),
        token: string(node, "token"),
        header: string(node, "header").unwrap_or_else(|| "Authorization".to_owned()),
        dataset: pick("dataset")
            .and_then(Dataset::from_name)
            .unwrap_or(Dataset::Minimal),
        content_type: pick("content-type")
            .and_then(ContentType::from_name)
            .unwrap_or(ContentType::Urlencoded),
    })
}

impl Notify {
    pub(crate) fn from_node(node: &Node) -> Option<Notify> {
        let criteria = node.get("criteria")?;
        let status = NotifyStatus::from_name(criteria.get("status")?.as_str()?)?;
        let criteria = match criteria.get("type").and_then(Node::as_str) {
            Some(kind) => Criteria::Change {
                status,
                kind: ChangeType::from_name(kind)?,
                dependency_query: string(criteria, "dependency_query"),
            },
            None => Criteria::Status {
                status,
                dependency_query: string(criteria, "dependency_query"),
            },
        };
        let mut recipients = Vec::new();
        for r in node.get("recipients").and_then(Node::as_seq).unwrap_or(&[]) {
            let to = r.get("to")?;
            recipients.push(match to.get("method")?.as_str()? {
                "email" => Recipient::Email {
                    user: string(to, "user"),
                    email: string(to, "email"),
                },
                _ => Recipient::Irc {
                    user: string(to, "user"),
                    handle: string(to, "handle"),
                    server: string(to, "server"),
                },
            });
        }
        let mut callbacks = Vec::new();
        if let Some(c) = node.get("callback") {
            callbacks.push(callback(c)?);
        }
        for c in node.get("callbacks").and_then(Node::as_seq).unwrap_or(&[]) {
            callbacks.push(callback(c)?);
        }
        let compare = node.get("compare").map(|c| Compare {
            blacklist: strings(c, "blacklist"),
            query: c.get("query").and_then(|q| {
                if let Some(entity) = string(q, "entity") {
                    Some(CompareQuery::Conditions {
                        entity,
                        conditions: q
                            .get("conditions")
                            .and_then(Node::as_map)
                            .map(|m| {
                                m.iter()
                                    .filter_map(|(k, v)| {
                                        Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                } else {
                    Some(CompareQuery::Named {
                        username: string(q, "username")?,
                        name: string(q, "name")?,
                    })
                }
            }),
        });
        Some(Notify {
            criteria,
            verbosity: node
                .get("verbosity")
                .and_then(Node::as_str)
                .and_then(Verbosity::from_name)
                .unwrap_or(Verbosity::Quiet),
            recipients,
            callbacks,
            compare,
        })
    }
}
