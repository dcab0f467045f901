//! [`AsyncStore`]: the store for async callers, off the runtime's worker threads.

use std::sync::{Arc, Mutex};

use super::{Error, Store};

/// A cheap-to-clone handle that runs store calls on tokio's blocking pool.
///
/// SQLite calls block; running them on a runtime worker would stall every task on it. Each
/// [`AsyncStore::call`] moves its closure to `spawn_blocking` and locks the connection
/// there, so the lock is never held across an `.await`.
#[derive(Debug, Clone)]
pub struct AsyncStore {
    inner: Arc<Mutex<Store>>,
}

impl AsyncStore {
    /// Wraps an open store.
    pub fn new(store: Store) -> AsyncStore {
        AsyncStore {
            inner: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `f` with exclusive access to the store on the blocking pool.
    pub async fn call<F, R>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&mut Store) -> Result<R, Error> + Send + 'static,
        R: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier call poisons the lock; the connection itself is still
            // consistent (SQLite rolled back any open transaction), so keep going.
            let mut store = inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .map_err(Error::Task)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewUser;

    #[tokio::test]
    async fn calls_run_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = AsyncStore::new(Store::open(dir.path().join("db")).unwrap());
        let other = store.clone();
        let user = store
            .call(|s| s.create_user(&NewUser::named("alice")))
            .await
            .unwrap();
        let found = other.call(|s| s.user("alice")).await.unwrap();
        assert_eq!(found, Some(user));
        let err = store
            .call(|s| s.create_user(&NewUser::named("alice")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }));
    }
}
