//! Appliance configuration: TOML file → validated, typed [`Config`].
//!
//! Two stages, as ripgrep's LowArgs → HiArgs: [`RawConfig`] mirrors the file one to one
//! (`deny_unknown_fields`, everything optional), and [`Config::from_raw`] resolves defaults,
//! relative paths and addresses into the typed [`Config`] the rest of the program uses.
//! Nothing else reads the file or the environment; command-line overrides arrive as
//! [`Overrides`].
//!
//! Where the file comes from: `--config PATH` if given (it must exist), else
//! [`SYSTEM_CONFIG`] if it exists, else built-in defaults (a development setup:
//! `./lavabox-data`, `127.0.0.1:8000`). Relative paths in a file are relative to the file's
//! directory.
//!
//! ```toml
//! instance = "lab-pi"
//! listen = "0.0.0.0:80"
//! url = "http://lab-pi.example.com"
//! data_dir = "/var/lib/lavabox"
//! log = "info,lavabox=debug"
//! template_dirs = ["/etc/lavabox/device-types", "/usr/share/lavabox/device-types"]
//!
//! [tftp]
//! root = "/srv/tftp"
//!
//! [events]
//! zmq_port = 5500
//! topic = "org.lavabox"
//!
//! [smtp]
//! relay = "mail.example.com:25"
//! from = "lavabox@example.com"
//!
//! [hw]
//! min_off_seconds = 3
//! # pdudaemon's HTTP API served for the boards' relays (default; "off" for none). Loopback
//! # unless set otherwise: pdudaemon has no authentication.
//! pdudaemon_listen = "127.0.0.1:16421"
//! # The pdudaemon `lavabox_power: pdudaemon` dictionaries talk to by default.
//! pdudaemon_url = "http://127.0.0.1:16421"
//! # Where USB hub port power is switched (tests point it at a fake tree).
//! sysfs_root = "/sys"
//!
//! [http]
//! max_connections = 512
//! header_timeout_seconds = 10
//! idle_timeout_seconds = 60
//! shutdown_grace_seconds = 10
//! large_requests = 2
//! large_request_queue = 64
//! ```
//!
//! `[http]` holds what keeps the API answering under abuse on a small box (every listener
//! that speaks HTTP takes the same limits, see [`crate::net`]):
//! - `max_connections` (default 512): connections open at once. At the cap the longest-idle
//!   connection (no request in progress) is closed to admit a new one; only when all are
//!   busy do new clients wait. Each costs a file descriptor, so the cap is cut to the
//!   process's `RLIMIT_NOFILE` less 256 (the unit sets `LimitNOFILE=4096`), and at most
//!   32 KiB of buffer (a request header must fit in it, `net::http::MAX_BUF`).
//! - `header_timeout_seconds` (default 10): how long a client may take to send a whole request
//!   header, from connecting or from the first byte of a later request. A silent socket or
//!   half a header is closed after it; a request body that stalls this long between two
//!   chunks fails the request.
//! - `idle_timeout_seconds` (default 60): how long a kept-alive connection may wait for its
//!   next request.
//! - `shutdown_grace_seconds` (default 10): on SIGTERM, how long requests in flight may take
//!   to finish before their connections are dropped. With the jobs' own bound
//!   ([`crate::app::STOP_DEADLINE`]) the process exits well inside the unit's
//!   `TimeoutStopSec=90`.
//! - `large_requests` (default 2) and `large_request_queue` (default 64): requests with a body
//!   over 16 KiB (job submissions and validations, uploads) are read and handled at most
//!   `large_requests` at a time; up to `large_request_queue` more wait, unread, and beyond
//!   that a request is refused at once (XML-RPC fault 503, HTTP 503). Besides, at most
//!   `submit::PARALLEL_PARSES` (4) job definitions of any size are parsed at once. The
//!   ceiling this keeps is **128 MB above idle** whatever anonymous clients send: one 2 MiB
//!   validation peaks at about 16 MB above idle (its YAML tree is about 6× the text, its
//!   request a few copies of it), a 2 MiB submission at about 40 MB (the typed definition on
//!   top), and 32 concurrent 2 MiB validations at 43 MB (`cargo bench --bench
//!   validate_load`); small requests add at most `max_connections` × (16 KiB of body + 32 KiB
//!   of buffer).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration file read when no `--config` is given, if it exists.
pub const SYSTEM_CONFIG: &str = "/etc/lavabox/lavabox.toml";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("{path}: line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value is well-formed TOML but not usable.
    #[error("{path}: `{field}`: {reason}")]
    Invalid {
        /// The file (or `<defaults>` / `<command line>`).
        path: PathBuf,
        /// The dotted field name.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// The file as written: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Instance name shown in the UI, e-mails and events.
    pub instance: Option<String>,
    /// HTTP listen address, `ADDR:PORT`.
    pub listen: Option<String>,
    /// The instance's URL as users reach it (LAVA's site domain), for links in notifications.
    pub url: Option<String>,
    /// Directory for the database, job logs and job files.
    pub data_dir: Option<PathBuf>,
    /// `tracing` filter, e.g. `info,lavabox=debug`.
    pub log: Option<String>,
    /// Device-type template directories, searched in order.
    pub template_dirs: Option<Vec<PathBuf>>,
    /// TFTP section.
    pub tftp: Option<RawTftp>,
    /// Event publishing section.
    pub events: Option<RawEvents>,
    /// E-mail notification section.
    pub smtp: Option<RawSmtp>,
    /// Hardware section: how boards are driven.
    pub hw: Option<RawHw>,
    /// HTTP limits section.
    pub http: Option<RawHttp>,
}

/// `[http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Connections open at once.
    pub max_connections: Option<u64>,
    /// Seconds a client may take to send a request header.
    pub header_timeout_seconds: Option<f64>,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout_seconds: Option<f64>,
    /// Seconds requests in flight may take to finish after SIGTERM.
    pub shutdown_grace_seconds: Option<f64>,
    /// Requests with a large body handled at once.
    pub large_requests: Option<u64>,
    /// Requests with a large body waiting at most.
    pub large_request_queue: Option<u64>,
}

/// `[hw]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHw {
    /// Seconds a board stays off when it is power-cycled by switching it off and on.
    pub min_off_seconds: Option<f64>,
    /// The sysfs root USB port power is switched under (tests: a fake tree).
    pub sysfs_root: Option<PathBuf>,
    /// The pdudaemon a dictionary's `lavabox_power: pdudaemon` talks to by default.
    pub pdudaemon_url: Option<String>,
    /// Where lavabox serves pdudaemon's HTTP API (`off` for nowhere).
    pub pdudaemon_listen: Option<String>,
}

/// `[tftp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTftp {
    /// Root directory served over TFTP.
    pub root: Option<PathBuf>,
    /// TFTP listen address.
    pub listen: Option<String>,
    /// The address boards use to reach this appliance (`{SERVER_IP}` in jobs).
    pub server_ip: Option<String>,
}

/// `[events]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// ZMQ publisher port.
    pub zmq_port: Option<u16>,
    /// Event topic prefix.
    pub topic: Option<String>,
}

/// `[smtp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Relay, `HOST:PORT`.
    pub relay: Option<String>,
    /// Sender address.
    pub from: Option<String>,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// Instance name.
    pub instance: String,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The instance's URL (`http://host[:port]`, no trailing slash), when configured: links
    /// in notifications start with it (else with the listen address).
    pub url: Option<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// `tracing` filter directives.
    pub log_filter: String,
    /// Device-type template directories, searched in order.
    pub template_dirs: Vec<PathBuf>,
    /// TFTP settings.
    pub tftp: TftpConfig,
    /// Event settings.
    pub events: EventsConfig,
    /// E-mail notifications, if configured.
    pub smtp: Option<SmtpConfig>,
    /// How boards are driven.
    pub hw: HwConfig,
    /// HTTP limits.
    pub http: HttpConfig,
}

/// `[http]`: the limits of the HTTP listeners (see the module documentation for why each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Connections, timeouts and the shutdown grace period of each listener.
    pub limits: crate::net::Limits,
    /// Requests with a body over [`crate::api::LARGE_BODY`] handled at once.
    pub large_requests: usize,
    /// Such requests waiting at most; more are refused.
    pub large_request_queue: usize,
}

/// Default [`HttpConfig::large_requests`].
pub const DEFAULT_LARGE_REQUESTS: usize = 2;
/// Default [`HttpConfig::large_request_queue`].
pub const DEFAULT_LARGE_REQUEST_QUEUE: usize = 64;
/// The longest `[http]` timeout or grace period accepted: the shutdown must end within the
/// unit's stop timeout.
pub const MAX_HTTP_SECONDS: f64 = 3600.0;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            limits: crate::net::Limits::default(),
            large_requests: DEFAULT_LARGE_REQUESTS,
            large_request_queue: DEFAULT_LARGE_REQUEST_QUEUE,
        }
    }
}

/// How `hw` drives boards (what the dictionaries do not say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HwConfig {
    /// How long a board stays off when a power cycle switches it off and on (not when the
    /// dictionary has a `hard_reset_command`, which does the whole cycle itself). Default 0,
    /// as LAVA runs `power_off_command` and `power_on_command` back to back; a relay-switched
    /// board whose supply holds charge wants a few seconds.
    pub min_off: std::time::Duration,
    /// `[hw] sysfs_root` (`None`: `/sys`).
    pub sysfs_root: Option<PathBuf>,
    /// `[hw] pdudaemon_url` (`None`: `http://127.0.0.1:16421`).
    pub pdudaemon_url: Option<String>,
    /// `[hw] pdudaemon_listen`: where lavabox serves pdudaemon's API (default
    /// [`DEFAULT_PDUDAEMON_LISTEN`], loopback-only since pdudaemon has no authentication;
    /// `None` when set to `off`).
    pub pdudaemon_listen: Option<SocketAddr>,
    /// Whether `pdudaemon_listen` was set in the file: then failing to bind it stops start-up.
    pub pdudaemon_listen_explicit: bool,
}

/// Where lavabox serves pdudaemon's HTTP API unless `[hw] pdudaemon_listen` says otherwise.
pub const DEFAULT_PDUDAEMON_LISTEN: &str = "127.0.0.1:16421";

/// TFTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpConfig {
    /// Root directory served (default `<data_dir>/tftp`).
    pub root: PathBuf,
    /// Listen address (default [`DEFAULT_TFTP_LISTEN`]).
    pub listen: SocketAddr,
    /// Whether `listen` was set in the file: then failing to bind it stops start-up, while
    /// the default (port 69 needs root) only earns a warning.
    pub listen_explicit: bool,
    /// The address boards use to reach this appliance (default 127.0.0.1).
    pub server_ip: std::net::IpAddr,
}

/// Event publishing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// ZMQ publisher port (LAVA's default 5500).
    pub zmq_port: u16,
    /// Topic prefix (default `org.lavabox`).
    pub topic: String,
}

/// E-mail notification settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Relay, `HOST:PORT`.
    pub relay: String,
    /// Sender address.
    pub from: String,
}

/// Command-line values that win over the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--data DIR`.
    pub data_dir: Option<PathBuf>,
    /// `serve --listen ADDR:PORT`.
    pub listen: Option<SocketAddr>,
}

/// Default HTTP address without a configuration file (development).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Default data directory without a configuration file (development).
pub const DEFAULT_DATA_DIR: &str = "lavabox-data";
/// Default TFTP listen address: the virtual lab's boards reach 127.0.0.1:69 through QEMU's
/// user network; real boards need `[tftp] listen = "0.0.0.0:69"`.
pub const DEFAULT_TFTP_LISTEN: &str = "127.0.0.1:69";
/// Default ZMQ publisher port, as LAVA.
pub const DEFAULT_ZMQ_PORT: u16 = 5500;
/// Default event topic.
pub const DEFAULT_TOPIC: &str = "org.lavabox";
/// The longest `[hw] min_off_seconds`: longer is a typo, and would hold every job's power
/// cycle hostage.
pub const MAX_MIN_OFF: std::time::Duration = std::time::Duration::from_secs(300);

impl Config {
    /// Reads `explicit` (which must exist), else [`SYSTEM_CONFIG`] if it exists, else uses
    /// the defaults; then applies `overrides`.
    pub fn load(explicit: Option<&Path>, overrides: &Overrides) -> Result<Config, Error> {
        let path = match explicit {
            Some(path) => Some(path.to_owned()),
            None => Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.is_file()),
        };
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                Config::from_toml(&text, &path)?
            }
            None => Config::from_raw(RawConfig::default(), None)?,
        };
        config.apply(overrides);
        Ok(config)
    }

    /// Parses and validates `text`, read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, Error> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| Error::Parse {
            path: path.to_owned(),
            line: err.span().map_or(1, |span| line_of(text, span.start)),
            message: err.message().trim_end().to_owned(),
        })?;
        Config::from_raw(raw, Some(path))
    }

    /// Validates `raw`; relative paths are resolved against `path`'s directory.
    pub fn from_raw(raw: RawConfig, path: Option<&Path>) -> Result<Config, Error> {
        let origin = path.map_or_else(|| PathBuf::from("<defaults>"), Path::to_owned);
        let invalid = |field: &'static str, reason: String| Error::Invalid {
            path: origin.clone(),
            field,
            reason,
        };
        let base = path
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_owned);
        let resolve = |p: PathBuf| match &base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };

        let instance = raw.instance.unwrap_or_else(|| "lavabox".to_owned());
        if instance.trim().is_empty() {
            return Err(invalid("instance", "must not be empty".into()));
        }
        let listen = parse_addr(raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN))
            .map_err(|reason| invalid("listen", reason))?;
        let url = match raw.url {
            None => None,
            Some(url) => {
                let trimmed = url.trim().trim_end_matches('/');
                let host = trimmed
                    .strip_prefix("http://")
                    .or_else(|| trimmed.strip_prefix("https://"));
                if !host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace)) {
                    return Err(invalid(
                        "url",
                        format!("`{url}` is not an http:// or https:// URL"),
                    ));
                }
                Some(trimmed.to_owned())
            }
        };
        let data_dir = resolve(
            raw.data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        );
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty".into()));
        }
        let log_filter = raw.log.unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .map_err(|err| invalid("log", format!("`{log_filter}` is not a filter: {err}")))?;
        let template_dirs = match raw.template_dirs {
            Some(dirs) if dirs.is_empty() => {
                return Err(invalid(
                    "template_dirs",
                    "must list at least one directory".into(),
                ));
            }
            Some(dirs) => dirs.into_iter().map(resolve).collect(),
            None => default_template_dirs(),
        };
        let tftp = raw.tftp.unwrap_or_default();
        let tftp = TftpConfig {
            root: tftp
                .root
                .map(resolve)
                .unwrap_or_else(|| data_dir.join("tftp")),
            listen: parse_addr(tftp.listen.as_deref().unwrap_or(DEFAULT_TFTP_LISTEN))
                .map_err(|reason| invalid("tftp.listen", reason))?,
            listen_explicit: tftp.listen.is_some(),
            server_ip: match tftp.server_ip.as_deref() {
                None => std::net::IpAddr::from([127, 0, 0, 1]),
                Some(text) => text.parse().map_err(|_| {
                    invalid("tftp.server_ip", format!("`{text}` is not an IP address"))
                })?,
            },
        };
        let events = raw.events.unwrap_or_default();
        let events = EventsConfig {
            zmq_port: events.zmq_port.unwrap_or(DEFAULT_ZMQ_PORT),
            topic: events.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_owned()),
        };
        if events.zmq_port == 0 {
            return Err(invalid("events.zmq_port", "must not be 0".into()));
        }
        if events.topic.trim().is_empty() {
            return Err(invalid("events.topic", "must not be empty".into()));
        }
        let smtp = match raw.smtp {
            None => None,
            Some(smtp) => {
                let relay = smtp
                    .relay
                    .ok_or_else(|| invalid("smtp.relay", "is required in [smtp]".into()))?;
                if !relay.contains(':') {
                    return Err(invalid("smtp.relay", format!("`{relay}` is not HOST:PORT")));
                }
                let from = smtp.from.unwrap_or_else(|| format!("lavabox@{instance}"));
                if !from.contains('@') {
                    return Err(invalid("smtp.from", format!("`{from}` is not an address")));
                }
                Some(SmtpConfig { relay, from })
            }
        };
        let hw = raw.hw.unwrap_or_default();
        let hw = HwConfig {
            min_off: match hw.min_off_seconds {
                None => std::time::Duration::ZERO,
                Some(secs) => std::time::Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| *d <= MAX_MIN_OFF)
                    .ok_or_else(|| {
                        invalid(
                            "hw.min_off_seconds",
                            format!(
                                "`{secs}` is not a number of seconds from 0 to {}",
                                MAX_MIN_OFF.as_secs()
                            ),
                        )
                    })?,
            },
            sysfs_root: hw.sysfs_root.map(resolve),
            pdudaemon_url: match hw.pdudaemon_url {
                None => None,
                Some(url) => {
                    crate::hw::power::pdu::check_url(&url)
                        .map_err(|reason| invalid("hw.pdudaemon_url", reason))?;
                    Some(url)
                }
            },
            pdudaemon_listen: match hw.pdudaemon_listen.as_deref() {
                Some("off") => None,
                Some(addr) => Some(addr.parse().map_err(|_| {
                    invalid(
                        "hw.pdudaemon_listen",
                        format!("`{addr}` is not an address like 127.0.0.1:16421, or off"),
                    )
                })?),
                None => Some(DEFAULT_PDUDAEMON_LISTEN.parse().expect("static address")),
            },
            pdudaemon_listen_explicit: hw.pdudaemon_listen.is_some(),
        };
        let http = http_config(raw.http.unwrap_or_default())
            .map_err(|(field, reason)| invalid(field, reason))?;
        Ok(Config {
            source: path.map(Path::to_owned),
            instance,
            listen,
            url,
            data_dir,
            log_filter,
            template_dirs,
            tftp,
            events,
            smtp,
            hw,
            http,
        })
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(dir) = &overrides.data_dir {
            if self.tftp.root == self.data_dir.join("tftp") {
                self.tftp.root = dir.join("tftp");
            }
            self.data_dir = dir.clone();
        }
        if let Some(listen) = overrides.listen {
            self.listen = listen;
        }
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("lavabox.db")
    }

    /// The directory of one job's files.
    pub fn job_dir(&self, job: crate::model::JobId) -> PathBuf {
        crate::store::joblog::job_dir(&self.data_dir, job)
    }

    /// One job's log file, by `store::joblog`'s path rule (the only one).
    pub fn job_log_path(&self, job: crate::model::JobId) -> PathBuf {
        crate::store::joblog::log_path(&self.data_dir, job)
    }

    /// The template directories as the device-type checker takes them.
    pub fn template_dir_refs(&self) -> Vec<&Path> {
        self.template_dirs.iter().map(PathBuf::as_path).collect()
    }
}

/// Validates `[http]`: counts at least 1, durations positive and at most
/// [`MAX_HTTP_SECONDS`] (the shutdown grace may not exceed 60 s, to stay inside the unit's stop
/// timeout).
fn http_config(raw: RawHttp) -> Result<HttpConfig, (&'static str, String)> {
    use std::time::Duration;
    let d = HttpConfig::default();
    let count = |field: &'static str, v: Option<u64>, default: usize| match v {
        None => Ok(default),
        Some(0) => Err((field, "must be at least 1".to_owned())),
        Some(n) => usize::try_from(n).map_err(|_| (field, format!("`{n}` is too large"))),
    };
    let seconds = |field: &'static str, v: Option<f64>, default: Duration, max: f64| match v {
        None => Ok(default),
        Some(s) if s > 0.0 && s <= max => Duration::try_from_secs_f64(s)
            .map_err(|_| (field, format!("`{s}` is not a number of seconds"))),
        Some(s) => Err((
            field,
            format!("`{s}` is not a number of seconds above 0 and at most {max}"),
        )),
    };
    Ok(HttpConfig {
        limits: crate::net::Limits {
            max_connections: count(
                "http.max_connections",
                raw.max_connections,
                d.limits.max_connections,
            )?,
            header_timeout: seconds(
                "http.header_timeout_seconds",
                raw.header_timeout_seconds,
                d.limits.header_timeout,
                MAX_HTTP_SECONDS,
            )?,
            idle_timeout: seconds(
                "http.idle_timeout_seconds",
                raw.idle_timeout_seconds,
                d.limits.idle_timeout,
                MAX_HTTP_SECONDS,
            )?,
            shutdown_grace: seconds(
                "http.shutdown_grace_seconds",
                raw.shutdown_grace_seconds,
                d.limits.shutdown_grace,
                60.0,
            )?,
        },
        large_requests: count("http.large_requests", raw.large_requests, d.large_requests)?,
        large_request_queue: count(
            "http.large_request_queue",
            raw.large_request_queue,
            d.large_request_queue,
        )?,
    })
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an ADDRESS:PORT such as 0.0.0.0:80"))
}

/// Where the templates shipped with lavabox may be: next to the binary, in the source tree it
/// was built from, `/usr/share/lavabox/device-types`. Their `health-checks/` are examples,
/// never applied (`devicetype::TemplateDir::Shipped`).
pub fn shipped_template_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        dirs.push(dir.join("device-types"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("device-types"));
    dirs.push(PathBuf::from("/usr/share/lavabox/device-types"));
    dirs
}

/// `/etc/lavabox/device-types`, then the templates shipped with lavabox: next to the
/// binary, in the source tree it was built from, or `/usr/share/lavabox/device-types`.
/// Only existing directories are kept, unless none exists.
pub fn default_template_dirs() -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::from("/etc/lavabox/device-types")];
    candidates.extend(shipped_template_dirs());
    let existing: Vec<PathBuf> = candidates.iter().filter(|d| d.is_dir()).cloned().collect();
    if existing.is_empty() {
        candidates
    } else {
        existing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::from_toml(text, Path::new("/etc/lavabox/lavabox.toml"))
    }

    #[test]
    fn defaults_without_a_file() {
        let config = Config::from_raw(RawConfig::default(), None).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.events.zmq_port, 5500);
        assert_eq!(config.events.topic, "org.lavabox");
        assert_eq!(config.tftp.root, PathBuf::from("lavabox-data/tftp"));
        assert!(config.smtp.is_none());
        assert_eq!(config.hw.min_off, std::time::Duration::ZERO);
        assert!(!config.template_dirs.is_empty());
        assert_eq!(
            config.database_path(),
            PathBuf::from("lavabox-data/lavabox.db")
        );
        assert_eq!(
            config.job_log_path(crate::model::JobId(12)),
            PathBuf::from("lavabox-data/jobs/12/output.yaml")
        );
    }

    #[test]
    fn full_file_and_relative_paths() {
        let config = parse(
            r#"
instance = "lab-pi"
listen = "0.0.0.0:80"
url = "https://lab-pi.example.com/"
data_dir = "data"
log = "info,lavabox=debug"
template_dirs = ["/opt/dt", "local-dt"]

[tftp]
root = "/srv/tftp"

[events]
zmq_port = 5600
topic = "org.example"

[smtp]
relay = "mail:25"
from = "lab@example.com"

[hw]
min_off_seconds = 2.5
"#,
        )
        .unwrap();
        assert_eq!(config.instance, "lab-pi");
        assert_eq!(config.listen.port(), 80);
        assert_eq!(config.data_dir, PathBuf::from("/etc/lavabox/data"));
        assert_eq!(
            config.template_dirs,
            [
                PathBuf::from("/opt/dt"),
                PathBuf::from("/etc/lavabox/local-dt")
            ]
        );
        assert_eq!(config.tftp.root, PathBuf::from("/srv/tftp"));
        assert_eq!(config.events.zmq_port, 5600);
        assert_eq!(config.smtp.unwrap().relay, "mail:25");
        assert_eq!(config.hw.min_off, std::time::Duration::from_millis(2500));
        assert_eq!(config.url.as_deref(), Some("https://lab-pi.example.com"));
        let err = parse("url = \"lab-pi\"\n").unwrap_err().to_string();
        assert!(err.contains("url") && err.contains("lab-pi"), "{err}");
    }

    #[test]
    fn precise_errors() {
        let err = parse("instance = \"x\"\n\n[events]\nzmq_prot = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/lavabox/lavabox.toml: line 4: unknown field `zmq_prot`"),
            "{text}"
        );
        let err = parse("listen = \"localhost\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/lavabox/lavabox.toml: `listen`: `localhost` is not an ADDRESS:PORT such as 0.0.0.0:80"
        );
        let err = parse("instance = 3\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(parse("template_dirs = []\n").is_err());
        assert!(parse("[smtp]\nfrom = \"a@b\"\n").is_err());
        assert!(parse("[events]\ntopic = \"\"\n").is_err());
        assert!(parse("log = \"info,[\"\n").is_err());
        for bad in ["-1", "301", "nan"] {
            let err = parse(&format!("[hw]\nmin_off_seconds = {bad}\n")).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("/etc/lavabox/lavabox.toml: `hw.min_off_seconds`: `"),
                "{err}"
            );
        }
        let err = Config::load(
            Some(Path::new("/nonexistent/lavabox.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Read { .. }));
    }

    #[test]
    fn http_limits() {
        let config = Config::from_raw(RawConfig::default(), None).unwrap();
        assert_eq!(config.http, HttpConfig::default());
        assert_eq!(config.http.limits.max_connections, 512);
        let config = parse(
            "[http]\nmax_connections = 300\nheader_timeout_seconds = 0.5\n\
             idle_timeout_seconds = 2\nshutdown_grace_seconds = 3\nlarge_requests = 1\n\
             large_request_queue = 8\n",
        )
        .unwrap();
        let l = config.http.limits;
        assert_eq!(l.max_connections, 300);
        assert_eq!(l.header_timeout, std::time::Duration::from_millis(500));
        assert_eq!(l.idle_timeout, std::time::Duration::from_secs(2));
        assert_eq!(l.shutdown_grace, std::time::Duration::from_secs(3));
        assert_eq!(
            (config.http.large_requests, config.http.large_request_queue),
            (1, 8)
        );
        for (bad, field) in [
            ("max_connections = 0", "http.max_connections"),
            ("header_timeout_seconds = 0", "http.header_timeout_seconds"),
            ("idle_timeout_seconds = nan", "http.idle_timeout_seconds"),
            ("shutdown_grace_seconds = 61", "http.shutdown_grace_seconds"),
            ("large_requests = 0", "http.large_requests"),
        ] {
            let err = parse(&format!("[http]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
        }
    }

    #[test]
    fn overrides_win() {
        let mut config = Config::from_raw(RawConfig::default(), None).unwrap();
        config.apply(&Overrides {
            data_dir: Some(PathBuf::from("/tmp/x")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
        });
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.tftp.root, PathBuf::from("/tmp/x/tftp"));
        assert_eq!(config.listen.port(), 0);
    }
}
