//! Bounded retries with per-attempt timeouts and exponential backoff.

use std::future::Future;
use std::time::Duration;

/// How one delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in total (at least one is made).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub backoff: Duration,
    /// Each attempt is abandoned after this long (LAVA's callback timeout is 5 s).
    pub timeout: Duration,
}

impl Default for Retry {
    /// Three attempts, 2 s then 4 s apart, 10 s each: a dead peer costs under a minute of
    /// one background task.
    fn default() -> Self {
        Retry {
            attempts: 3,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The last error after every attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
}

impl Retry {
    /// Runs `attempt` until it succeeds or the attempts are used up; returns how many
    /// attempts it took.
    pub async fn run<F, Fut>(&self, mut attempt: F) -> Result<u32, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let attempts = self.attempts.max(1);
        let mut delay = self.backoff;
        let mut error = String::new();
        for n in 1..=attempts {
            match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(Ok(())) => return Ok(n),
                Ok(Err(err)) => error = err,
                Err(_) => error = format!("no answer within {:?}", self.timeout),
            }
            if n < attempts {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        Err(Failed { attempts, error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Short real durations: tokio's paused clock needs its `test-util` feature.
    const FAST: Retry = Retry {
        attempts: 3,
        backoff: Duration::from_millis(1),
        timeout: Duration::from_millis(30),
    };

    #[tokio::test]
    async fn retries_then_gives_up() {
        let retry = FAST;
        let calls = AtomicU32::new(0);
        let result = retry
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>("500".to_owned()) }
            })
            .await;
        assert_eq!(
            result,
            Err(Failed {
                attempts: 3,
                error: "500".into()
            })
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn hanging_attempts_time_out() {
        let retry = Retry {
            attempts: 2,
            ..FAST
        };
        let result = retry
            .run(|| async {
                std::future::pending::<()>().await;
                Ok(())
            })
            .await;
        assert!(
            matches!(result, Err(Failed { attempts: 2, ref error }) if error.contains("no answer"))
        );
    }

    #[tokio::test]
    async fn second_attempt_succeeds() {
        let calls = AtomicU32::new(0);
        let result = FAST
            .run(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err("refused".into())
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
        assert_eq!(result, Ok(2));
    }
}
