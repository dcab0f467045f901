//! pdudaemon client: `GET <url>/power/control/{on,off,reboot}?hostname=H&port=P[&delay=S]`
//! (or `?alias=A`), pdudaemon's HTTP listener (default port 16421). pdudaemon answers
//! `200 OK - accepted request` and queues the request; anything else is a failure with its
//! answer. The same API is what lavabox serves itself ([`crate::hw::pdu_server`]).

use std::time::Duration;

use super::{Cycle, Power, PowerState, Transcript};
use crate::hw::{BoxFuture, Error};

/// pdudaemon's default HTTP port.
pub const DEFAULT_PORT: u16 = 16421;

/// Which outlet a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A PDU by its name in pdudaemon's configuration, and its port.
    Port {
        /// `hostname`.
        hostname: String,
        /// `port`.
        port: String,
    },
    /// An alias from pdudaemon's configuration.
    Alias(String),
}

/// Power through a pdudaemon (or lavabox's own served API).
#[derive(Debug, Clone)]
pub struct PduPower {
    /// Base URL, e.g. `http://127.0.0.1:16421`.
    pub url: String,
    /// The outlet.
    pub target: Target,
    /// Seconds a reboot keeps the board off (pdudaemon's `delay`; its default is 5).
    pub delay: Option<u32>,
    /// The board's minimum off-time between an off and an on.
    pub min_off: Duration,
    /// The client.
    pub http: reqwest::Client,
}

/// The request URL for `command` (`on`, `off` or `reboot`).
pub fn request_url(url: &str, target: &Target, command: &str, delay: Option<u32>) -> String {
    let mut q = match target {
        Target::Port { hostname, port } => {
            format!("hostname={}&port={}", encode(hostname), encode(port))
        }
        Target::Alias(a) => format!("alias={}", encode(a)),
    };
    if let Some(d) = delay {
        q.push_str(&format!("&delay={d}"));
    }
    format!("{}/power/control/{command}?{q}", url.trim_end_matches('/'))
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks a dictionary's pdudaemon URL: `http://host[:port]`, no path or query.
pub fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("pdudaemon URL '{url}' must start with http://"));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "pdudaemon URL '{url}' must be http://HOST[:PORT] with no path"
        ));
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && !host.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "pdudaemon URL '{url}': '{port}' is not a port number"
        ));
    }
    Ok(())
}

impl PduPower {
    async fn request(
        &self,
        command: &str,
        delay: Option<u32>,
        timeout: Duration,
        out: &dyn Transcript,
    ) -> Result<(), Error> {
        let url = request_url(&self.url, &self.target, command, delay);
        out.command(&format!("pdudaemon {url}"));
        let failed = |output: String| Error::Failed {
            command: url.clone(),
            code: None,
            output,
        };
        let answer = self
            .http
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    Error::Timeout {
                        command: url.clone(),
                        seconds: timeout.as_secs(),
                    }
                } else {
                    failed(format!("cannot reach pdudaemon: {e}"))
                }
            })?;
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        out.output(body.trim());
        if status.is_success() {
            Ok(())
        } else {
            Err(failed(format!(
                "pdudaemon answered {status}: {}",
                body.trim()
            )))
        }
    }
}

impl Power for PduPower {
    fn set<'a>(
        &'a self,
        state: PowerState,
        timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let command = match state {
                PowerState::On => "on",
                PowerState::Off => "off",
            };
            self.request(command, None, timeout, out).await
        })
    }

    fn min_off_time(&self) -> Duration {
        self.min_off
    }

    fn cycle<'a>(
        &'a self,
        timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<Cycle, Error>> {
        Box::pin(async move {
            // One reboot request: pdudaemon switches off, waits `delay`, switches on.
            let delay = self.delay.or_else(|| {
                (!self.min_off.is_zero()).then(|| self.min_off.as_secs_f64().ceil() as u32)
            });
            self.request("reboot", delay, timeout, out).await?;
            Ok(Cycle::HardReset)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_urls_are_pdudaemons() {
        let t = Target::Port {
            hostname: "pdu 1".into(),
            port: "3".into(),
        };
        assert_eq!(
            request_url("http://127.0.0.1:16421/", &t, "reboot", Some(5)),
            "http://127.0.0.1:16421/power/control/reboot?hostname=pdu%201&port=3&delay=5"
        );
        assert_eq!(
            request_url("http://h", &Target::Alias("board1".into()), "on", None),
            "http://h/power/control/on?alias=board1"
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:16421").is_ok());
        assert!(check_url("http://pdu.lab/").is_ok());
        assert!(check_url("https://x").unwrap_err().contains("http://"));
        assert!(
            check_url("http://x:port")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(check_url("http://x/power").is_err());
    }
}
