//! Retries with exponential backoff and full jitter, as a wrapper around any [`Storage`].
//! Only transient errors are retried; a permanent error or `NotFound` is returned at once.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use super::{Leftover, ObjectInfo, Storage, StorageError};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a uniform delay in `[0, min(max, base * 2^attempt))`, so that many clients
    /// throttled together do not come back together.
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }
}

#[derive(Debug)]
pub struct RetryStorage<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: Storage> RetryStorage<S> {
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn with_retry<T, F, Fut>(&self, mut op: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, StorageError>> + Send,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt + 1 < self.policy.max_attempts => {
                    let delay = self.policy.delay(attempt);
                    tracing::warn!(message = "storage operation failed, retrying", error = %e, attempt = attempt + 1, ?delay);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl<S: Storage> Storage for RetryStorage<S> {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.with_retry(|| self.inner.put(key, data.clone())).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.with_retry(|| self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, StorageError> {
        self.with_retry(|| self.inner.get_range(key, offset, length))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.with_retry(|| self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.with_retry(|| self.inner.delete(key)).await
    }

    async fn leftovers(&self, prefix: &str) -> Result<Vec<Leftover>, StorageError> {
        self.with_retry(|| self.inner.leftovers(prefix)).await
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::storage::MemoryStorage;

    /// Fails the first `failures` calls with the given error, then delegates.
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryStorage,
        failures: AtomicU32,
        transient: bool,
        calls: AtomicU32,
    }

    impl Flaky {
        fn fail(&self, key: &str) -> Result<(), StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failures.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            self.failures.fetch_sub(1, Ordering::SeqCst);
            let (op, key, message) = ("get", key.to_string(), "503 SlowDown".to_string());
            Err(if self.transient {
                StorageError::Transient { op, key, message }
            } else {
                StorageError::Permanent { op, key, message }
            })
        }
    }

    #[async_trait]
    impl Storage for Flaky {
        async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
            self.fail(key)?;
            self.inner.put(key, data).await
        }
        async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
            self.fail(key)?;
            self.inner.get(key).await
        }
        async fn get_range(&self, key: &str, o: u64, l: u64) -> Result<Bytes, StorageError> {
            self.fail(key)?;
            self.inner.get_range(key, o, l).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
            self.fail(prefix)?;
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.fail(key)?;
            self.inner.delete(key).await
        }
        fn location(&self) -> String {
            "flaky:".into()
        }
    }

    fn flaky(failures: u32, transient: bool) -> RetryStorage<Flaky> {
        RetryStorage::new(
            Flaky {
                inner: MemoryStorage::new(),
                failures: AtomicU32::new(failures),
                transient,
                calls: AtomicU32::new(0),
            },
            RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
        )
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let s = flaky(3, true);
        s.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn transient_errors_give_up_after_max_attempts() {
        let s = flaky(10, true);
        let err = s.get("a/b").await.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(err.key(), "a/b");
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_errors_surface_at_once_naming_the_key() {
        let s = flaky(1, false);
        let err = s.get("index/abc").await.unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("index/abc"), "{err}");
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delays_stay_under_the_ceiling() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            assert!(p.delay(attempt) <= p.max_delay);
        }
    }
}
