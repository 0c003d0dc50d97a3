//! Retries with exponential backoff and full jitter, as a wrapper around any [`Storage`].
//!
//! Only transient errors are retried; a permanent error or `NotFound` is returned at once.
//! How long to keep trying is a budget of time, not a count of attempts: an operation is
//! retried until `budget` has passed since its first attempt began, so that a store that is
//! down for a while (a restart, a failover) is ridden out however many attempts that takes.
//! The last wait is cut short to end at the budget, and one last attempt is made there. Past
//! the budget the operation fails with [`StorageError::Unreachable`], naming the store, the
//! budget and the last cause.
//!
//! An attempt that never ends would hold the budget for ever: bounding one attempt is the
//! store's job, where the size of the transfer is known (S3 gives each request an attempt
//! timeout, see [`super::s3`]). An attempt that has begun is never cut off by the budget, so
//! an operation can last up to the budget plus one attempt.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use super::{Leftover, ObjectInfo, Storage, StorageError};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// How long an operation keeps being retried, from the start of its first attempt.
    pub budget: Duration,
    pub base_delay: Duration,
    /// The ceiling of one wait; it also bounds how long after the store comes back the next
    /// attempt is made.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            budget: Self::DEFAULT_BUDGET,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Enough to ride out a store that is down for about a minute.
    pub const DEFAULT_BUDGET: Duration = Duration::from_secs(90);

    /// The default policy with another budget.
    pub fn with_budget(budget: Duration) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }

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
    /// How the store is named in an `Unreachable` error.
    name: String,
}

impl<S: Storage> RetryStorage<S> {
    /// Names the store by its location in errors ("repository s3://bucket/prefix").
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        let name = format!("repository {}", inner.location());
        Self {
            inner,
            policy,
            name,
        }
    }

    /// Names the store as the configuration does, with its location: "repository offsite
    /// (s3://bucket/prefix)".
    pub fn named(inner: S, policy: RetryPolicy, name: &str) -> Self {
        let name = format!("repository {name} ({})", inner.location());
        Self {
            inner,
            policy,
            name,
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    async fn with_retry<T, F, Fut>(&self, mut op: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, StorageError>> + Send,
    {
        let start = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            let error = match op().await {
                Err(e) if e.is_transient() => e,
                other => return other,
            };
            let left = self.policy.budget.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(self.unreachable(error));
            }
            let delay = self.policy.delay(attempt).min(left);
            // Each attempt is logged as information; the failure, when the budget runs out,
            // is the error.
            tracing::info!(message = "storage operation failed, retrying", error = %error, attempt = attempt + 1, ?delay, ?left);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn unreachable(&self, error: StorageError) -> StorageError {
        match error {
            StorageError::Transient { op, key, message } => StorageError::Unreachable {
                store: self.name.clone(),
                op,
                key,
                budget: self.policy.budget,
                cause: message,
            },
            other => other,
        }
    }
}

#[async_trait]
impl<S: Storage> Storage for RetryStorage<S> {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.with_retry(|| self.inner.put(key, data.clone())).await
    }

    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StorageError> {
        // Each try reads the file from its start.
        self.with_retry(|| self.inner.put_file(key, path)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.with_retry(|| self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, StorageError> {
        self.with_retry(|| self.inner.get_range(key, offset, length))
            .await
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        length: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        // A failed try keeps the buffer; the next one starts with an empty one.
        let buf = std::sync::Mutex::new(Some(buf));
        self.with_retry(|| {
            let buf = buf.lock().expect("buffer lock").take().unwrap_or_default();
            self.inner.get_range_into(key, offset, length, buf)
        })
        .await
    }

    async fn sha256(&self, key: &str) -> Result<([u8; 32], u64), StorageError> {
        self.with_retry(|| self.inner.sha256(key)).await
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

    fn object_lock(&self) -> Option<super::ObjectLock> {
        self.inner.object_lock()
    }

    async fn locked_until(&self, key: &str) -> Result<Option<jiff::Timestamp>, StorageError> {
        self.with_retry(|| self.inner.locked_until(key)).await
    }

    async fn extend_lock(&self, key: &str, until: jiff::Timestamp) -> Result<(), StorageError> {
        self.with_retry(|| self.inner.extend_lock(key, until)).await
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

    /// Retries for one second, with waits of at most 100 ms.
    fn flaky(failures: u32, transient: bool) -> RetryStorage<Flaky> {
        RetryStorage::named(
            Flaky {
                inner: MemoryStorage::new(),
                failures: AtomicU32::new(failures),
                transient,
                calls: AtomicU32::new(0),
            },
            RetryPolicy {
                budget: Duration::from_secs(1),
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(100),
            },
            "offsite",
        )
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let s = flaky(3, true);
        s.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn issue_14_an_outage_is_ridden_out_however_many_attempts_it_takes_within_the_budget() {
        // Far more failures than any fixed count of attempts would allow, within the budget
        // (waits of at most 100 ms, 1 s budget).
        let s = flaky(8, true);
        s.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 9);
    }

    #[tokio::test]
    async fn issue_14_past_the_budget_the_error_names_the_store_the_budget_and_the_cause() {
        let s = flaky(u32::MAX, true);
        let start = tokio::time::Instant::now();
        let err = s.get("a/b").await.unwrap_err();
        // The whole budget is used before giving up.
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert!(!err.is_transient(), "not worth another round of retries");
        assert_eq!(err.key(), "a/b");
        assert_eq!(
            err.to_string(),
            "repository offsite (flaky:): unreachable after 1s of retries: 503 SlowDown (get a/b)"
        );
        assert!(s.inner().calls.load(Ordering::SeqCst) > 10);
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
