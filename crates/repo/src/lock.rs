//! Repository locks: backups hold a shared lock, prune an exclusive one, so prune never
//! deletes a pack that a running backup has written but not yet indexed.
//!
//! A lock is an object `locks/<random id>` (encoded, aad `lock`). To take a lock, write it,
//! then list the others: a conflicting live lock means removing ours and failing. Writing
//! first, then looking, means two racing writers both see each other and both back off
//! rather than both proceeding. A lock is stale, and ignored, when it was not refreshed for
//! [`STALE_AFTER`], or when it names this host and a process that no longer runs (a backup
//! killed with SIGKILL leaves such a lock).
//!
//! Backup, prune and `repair index` take their lock with [`LockGuard::acquire_waiting`]: a
//! conflict is retried with backoff for up to [`WAIT_AT_MOST`], with a warning naming the
//! holder while it waits, so that a prune started during a backup (or the reverse) runs
//! after it instead of failing.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{RepoError, Result};
use crate::format::id::Id;
use crate::format::layout;
use crate::repository::Repository;

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long a backup, prune or index repair waits for a conflicting lock before it fails.
/// Long enough for a prune (or a typical backup) to finish, short enough that a scheduled job
/// stuck behind a lock is reported the same hour. A constant, not a setting: nothing so far
/// needs another value.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(10 * 60);
/// The first retry comes after this; each next one after twice as long, up to
/// [`RETRY_AT_MOST`], each with jitter so that two waiters do not retry in step.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const RETRY_AT_MOST: Duration = Duration::from_secs(10);
const AAD: &[u8] = b"lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    pub hostname: String,
    pub pid: u32,
    pub time: jiff::Timestamp,
    pub purpose: String,
}

impl LockInfo {
    fn describe(&self) -> String {
        format!(
            "{} lock for {} by pid {} on {} since {}",
            match self.kind {
                LockKind::Shared => "a shared",
                LockKind::Exclusive => "an exclusive",
            },
            self.purpose,
            self.pid,
            self.hostname,
            self.time
        )
    }

    fn is_stale(&self, now: jiff::Timestamp) -> bool {
        let age = now.duration_since(self.time);
        if age > jiff::SignedDuration::try_from(STALE_AFTER).expect("fits") {
            return true;
        }
        self.hostname == hostname() && !process_is_running(self.pid)
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn process_is_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // Where /proc does not exist we cannot tell, so the lock counts as live.
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A held lock. Release it with [`LockGuard::release`]; dropping it stops the refresh and
/// removes it in the background.
#[derive(Debug)]
pub struct LockGuard {
    repo: Arc<Repository>,
    key: String,
    refresher: tokio::task::JoinHandle<()>,
    released: bool,
}

impl LockGuard {
    pub async fn acquire(repo: Arc<Repository>, kind: LockKind, purpose: &str) -> Result<Self> {
        let info = LockInfo {
            kind,
            hostname: hostname(),
            pid: std::process::id(),
            time: jiff::Timestamp::now(),
            purpose: purpose.to_string(),
        };
        let key = layout::lock_key(&Id::random());
        write_lock(&repo, &key, &info).await?;
        let conflict = match find_conflict(&repo, &key, kind).await {
            Ok(conflict) => conflict,
            Err(e) => {
                let _ = repo.storage().delete(&key).await;
                return Err(e);
            }
        };
        if let Some(other) = conflict {
            let _ = repo.storage().delete(&key).await;
            return Err(RepoError::Locked {
                location: repo.location(),
                holder: other.describe(),
                waited_secs: 0,
            });
        }
        let refresher = {
            let (repo, key, mut info) = (repo.clone(), key.clone(), info);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH_EVERY).await;
                    info.time = jiff::Timestamp::now();
                    if let Err(e) = write_lock(&repo, &key, &info).await {
                        tracing::warn!(message = "could not refresh the repository lock", error = %e);
                    }
                }
            })
        };
        Ok(Self {
            repo,
            key,
            refresher,
            released: false,
        })
    }

    /// [`LockGuard::acquire`], retried while another live lock conflicts, for up to
    /// `at_most`. Each new holder waited for is logged once, as a warning.
    pub async fn acquire_waiting(
        repo: Arc<Repository>,
        kind: LockKind,
        purpose: &str,
        at_most: Duration,
    ) -> Result<Self> {
        use rand::Rng;
        let started = std::time::Instant::now();
        let mut delay = FIRST_RETRY;
        let mut last_holder = None;
        loop {
            match Self::acquire(repo.clone(), kind, purpose).await {
                Err(RepoError::Locked {
                    location, holder, ..
                }) => {
                    let waited = started.elapsed();
                    if waited >= at_most {
                        return Err(RepoError::Locked {
                            location,
                            holder,
                            waited_secs: waited.as_secs(),
                        });
                    }
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::warn!(
                            message = "waiting for the repository lock",
                            purpose,
                            %location,
                            %holder,
                            at_most_secs = at_most.as_secs(),
                        );
                        last_holder = Some(holder);
                    }
                    let nanos = delay.as_nanos() as u64;
                    let nap = Duration::from_nanos(rand::thread_rng().gen_range(nanos / 2..=nanos))
                        .min(at_most.saturating_sub(waited));
                    tokio::time::sleep(nap).await;
                    delay = (delay * 2).min(RETRY_AT_MOST);
                }
                other => return other,
            }
        }
    }

    pub async fn release(mut self) -> Result<()> {
        self.refresher.abort();
        self.released = true;
        self.repo.storage().delete(&self.key).await?;
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
        if !self.released {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let (repo, key) = (self.repo.clone(), self.key.clone());
                handle.spawn(async move {
                    let _ = repo.storage().delete(&key).await;
                });
            }
        }
    }
}

async fn write_lock(repo: &Repository, key: &str, info: &LockInfo) -> Result<()> {
    let json = serde_json::to_vec(info).expect("lock serialises");
    let stored = repo.codec().encode(&json, AAD);
    repo.storage().put(key, stored.into()).await?;
    Ok(())
}

/// Every lock in the repository but `own`, decoded; an undecodable lock is reported as a
/// live exclusive lock, to stay on the safe side.
pub async fn list_locks(repo: &Repository, own: Option<&str>) -> Result<Vec<(String, LockInfo)>> {
    let mut out = Vec::new();
    for object in repo.storage().list(layout::LOCKS_PREFIX).await? {
        if Some(object.key.as_str()) == own {
            continue;
        }
        let info = match repo.storage().get(&object.key).await {
            Ok(raw) => repo
                .codec()
                .decode(&raw, AAD)
                .ok()
                .and_then(|plain| serde_json::from_slice::<LockInfo>(&plain).ok()),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        out.push((
            object.key.clone(),
            info.unwrap_or_else(|| LockInfo {
                kind: LockKind::Exclusive,
                hostname: "unknown".into(),
                pid: 0,
                time: jiff::Timestamp::now(),
                purpose: format!("an unreadable lock object {}", object.key),
            }),
        ));
    }
    Ok(out)
}

async fn find_conflict(repo: &Repository, own: &str, kind: LockKind) -> Result<Option<LockInfo>> {
    let now = jiff::Timestamp::now();
    Ok(list_locks(repo, Some(own))
        .await?
        .into_iter()
        .map(|(_, info)| info)
        .filter(|info| !info.is_stale(now))
        .find(|info| kind == LockKind::Exclusive || info.kind == LockKind::Exclusive))
}

/// Removes stale locks (see the module docs); returns their keys.
pub async fn remove_stale_locks(repo: &Repository) -> Result<Vec<String>> {
    let now = jiff::Timestamp::now();
    let mut removed = Vec::new();
    for (key, info) in list_locks(repo, None).await? {
        if info.pid != 0 && info.is_stale(now) {
            repo.storage().delete(&key).await?;
            removed.push(key);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::InitOptions;
    use crate::storage::MemoryStorage;

    async fn repo() -> Arc<Repository> {
        Arc::new(
            Repository::init(Arc::new(MemoryStorage::new()), InitOptions::default())
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_conflicting_lock_is_waited_for_until_it_is_released() {
        let repo = repo().await;
        let prune = LockGuard::acquire(repo.clone(), LockKind::Exclusive, "prune")
            .await
            .unwrap();
        let waiter = tokio::spawn({
            let repo = repo.clone();
            async move {
                LockGuard::acquire_waiting(
                    repo,
                    LockKind::Shared,
                    "backup",
                    Duration::from_secs(30),
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!waiter.is_finished(), "the backup waits for the prune");
        prune.release().await.unwrap();
        let backup = waiter.await.unwrap().unwrap();
        backup.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_lock_held_longer_than_the_wait_fails_naming_the_holder() {
        let repo = repo().await;
        let _backup = LockGuard::acquire(repo.clone(), LockKind::Shared, "backup")
            .await
            .unwrap();
        let err = LockGuard::acquire_waiting(
            repo.clone(),
            LockKind::Exclusive,
            "prune",
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a shared lock for backup") && err.contains("gave up after waiting 1 s"),
            "{err}"
        );
        // A shared lock does not wait for another shared one.
        LockGuard::acquire_waiting(repo, LockKind::Shared, "backup", Duration::ZERO)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}
