//! [`AsyncTemplates`]: the device-type templates for async callers, off the runtime's worker
//! threads.

use std::sync::{Arc, Mutex, PoisonError};

use super::check::{DeviceCheck, DeviceChecks};
use super::{Error, Templates};

/// A cheap-to-clone handle that runs template work (file reads and renders) on tokio's
/// blocking pool, as [`crate::store::AsyncStore`] does for the database, and keeps the
/// [`DeviceChecks`] cache the scheduler reads its device checks from.
#[derive(Debug, Clone)]
pub struct AsyncTemplates {
    templates: Templates,
    checks: Arc<Mutex<DeviceChecks>>,
}

impl From<Templates> for AsyncTemplates {
    fn from(templates: Templates) -> AsyncTemplates {
        AsyncTemplates::new(templates)
    }
}

impl AsyncTemplates {
    /// Wraps `templates`.
    pub fn new(templates: Templates) -> AsyncTemplates {
        AsyncTemplates {
            templates,
            checks: Arc::default(),
        }
    }

    /// The synchronous handle, for code that already runs off the runtime (the dispatcher's
    /// blocking steps, `spawn_blocking` closures). It shares the generation with this one, so
    /// what it writes invalidates the cache too.
    pub fn blocking(&self) -> &Templates {
        &self.templates
    }

    /// Runs `f` with the templates on the blocking pool and returns what it returned; the
    /// only error is [`Error::Task`] (the task panicked), so callers keep `f`'s own result
    /// apart from it.
    pub async fn call<F, R>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&Templates) -> R + Send + 'static,
        R: Send + 'static,
    {
        let templates = self.templates.clone();
        tokio::task::spawn_blocking(move || f(&templates))
            .await
            .map_err(Error::Task)
    }

    /// The checks of the given device dictionaries (in order), rendering only those whose
    /// dictionary or templates changed since they were last checked.
    pub async fn check_devices(
        &self,
        dictionaries: Vec<Option<String>>,
    ) -> Result<Vec<Arc<DeviceCheck>>, Error> {
        let checks = Arc::clone(&self.checks);
        self.call(move |templates| {
            let mut checks = checks.lock().unwrap_or_else(PoisonError::into_inner);
            checks.check_all(templates, &dictionaries)
        })
        .await
    }

    /// How many device checks were rendered so far (the rest came from the cache).
    pub fn check_renders(&self) -> u64 {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .renders()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_are_cached_across_calls() {
        let templates = AsyncTemplates::new(Templates::builtin());
        let dict = Some("{% extends 'qemu.jinja2' %}\n".to_owned());
        let first = templates.check_devices(vec![dict.clone()]).await.unwrap();
        assert_eq!(first[0].config_error, None);
        let other = templates.clone();
        other.check_devices(vec![dict]).await.unwrap();
        assert_eq!(templates.check_renders(), 1);
        let source = templates
            .call(|t| t.template_source("qemu"))
            .await
            .unwrap()
            .unwrap();
        assert!(source.contains("qemu"));
    }
}
