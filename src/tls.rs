//! The process's TLS crypto provider for outbound HTTPS (reqwest over rustls: notification
//! callbacks, the dispatcher's downloads).
//!
//! rustls is built without a default provider, and reqwest panics when it builds a client
//! before one is chosen, so the provider is installed once per process, before anything
//! builds a client: by `lavabox serve` ([`crate::cli::serve`]) at start-up and by
//! [`crate::app::App::build`] (so an embedded or test `App` needs no set-up of its own), and by
//! tests that build a client without an `App`. Nothing else installs it.

use std::sync::Once;

/// Installs ring as rustls's process-wide crypto provider. Idempotent: later calls, from any
/// thread, do nothing.
pub fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Refused only when a provider is already installed, which is what we want anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_stays_installed() {
        install_tls_provider();
        install_tls_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
