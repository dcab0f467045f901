//! `lavabox serve`: the appliance daemon (see [`crate::app`] for what it runs).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::{App, shutdown_signal};
use crate::config::Config;
use crate::tls::install_tls_provider;

/// How long the runtime waits for blocking work still running after the services stopped.
const RUNTIME_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// Logs to stdout (journald collects it) with the configured filter; `RUST_LOG` wins.
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

/// `lavabox serve`: builds the runtime, the app, and runs it until a signal.
pub fn main(config: Config) -> anyhow::Result<ExitCode> {
    init_logging(&config);
    // Before the app exists: its services build HTTPS clients (see `crate::tls`).
    install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lavabox")
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let app = App::build(config).await?;
        app.run(shutdown).await
    });
    // Work on the blocking pool (a validation, a store call) cannot be interrupted; it is not
    // waited for beyond this, so the process always exits.
    runtime.shutdown_timeout(RUNTIME_STOP);
    served?;
    Ok(ExitCode::SUCCESS)
}
