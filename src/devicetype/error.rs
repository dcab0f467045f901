//! Why a device dictionary, a template or a rendered configuration cannot be used.

use std::fmt;
use std::path::PathBuf;

/// Why a device dictionary or device-type template cannot be used.
///
/// Each variant names the file (or rendered document) and, where known, the line that failed,
/// so the message can go straight back to an administrator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device-type template (or another file it extends) is in none of the template sources.
    #[error("device-type template `{name}` not found in {searched}")]
    TemplateNotFound {
        /// The template file name, e.g. `beaglebone-black.jinja2`.
        name: String,
        /// Human-readable list of the places searched.
        searched: String,
    },
    /// A device-type name that is not a plain file name (LAVA answers `Invalid device-type`).
    #[error("invalid device-type name `{0}`: use a plain name such as `qemu`")]
    InvalidName(String),
    /// The device dictionary does not extend exactly one template.
    #[error(
        "the device dictionary must contain exactly one {{% extends '<device-type>.jinja2' %}} line"
    )]
    NoExtends,
    /// A template or the dictionary failed to parse or to render.
    #[error("{}: {message}", Location { file, line: *line })]
    Template {
        /// The failing file: a template name or `device dictionary`.
        file: String,
        /// 1-based line in `file`, when the engine knows it.
        line: Option<usize>,
        /// What went wrong, e.g. `syntax error: unexpected end of input`.
        message: String,
    },
    /// The rendered configuration is not YAML.
    #[error("rendered device configuration is not valid YAML: line {line}: {message} (`{text}`)")]
    Yaml {
        /// 1-based line in the rendered YAML.
        line: usize,
        /// The text of that line, to help find the template line that produced it.
        text: String,
        /// The YAML parser's message.
        message: String,
    },
    /// The rendered YAML lacks a key or has a value of the wrong shape.
    #[error("rendered device configuration: `{path}`: {message}")]
    Config {
        /// Dotted path of the offending key, e.g. `actions.boot.methods`.
        path: String,
        /// What is wrong, e.g. `required key not provided`.
        message: String,
    },
    /// A template source could not be read (other than not existing).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A template or health check could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// No template directory is configured, so nothing can be written.
    #[error("no writable device-type directory is configured")]
    NotWritable,
    /// The blocking task doing template work panicked or was canceled.
    #[error("the device-type template task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// `file line N` or just `file`, for error messages.
struct Location<'a> {
    file: &'a str,
    line: Option<usize>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}", self.file),
            None => f.write_str(self.file),
        }
    }
}

impl Error {
    /// Shorthand for a [`Error::Config`] error.
    pub(crate) fn config(path: &str, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
