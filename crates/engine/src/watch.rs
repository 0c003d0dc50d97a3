//! Per-change backups: `[schedule] backup = "on-change"` on a files or config policy. The
//! paths are watched (inotify through the `notify` crate, or polling where notification does
//! not work); a change fires the policy's backup once the paths have been quiet for a moment
//! (the debounce), and never sooner than `min_interval` after the previous backup fire.
//!
//! The watcher is a [`Timer`]: it hands fires to the scheduler like the cron timer does, so a
//! per-change backup runs under the same limits, leases and records as any other.

use std::path::PathBuf;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use crate::scheduler::{Fire, ScheduledJob, Timer, Trigger};

/// How a policy's backup follows changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChange {
    /// The source's paths, absolute.
    pub paths: Vec<PathBuf>,
    /// No two backup fires closer than this (`[schedule] min_interval`, 1 minute by default).
    pub min_interval: Duration,
    /// Scan the paths this often instead of waiting for notifications
    /// (`[schedule] poll_interval`), for filesystems that send none.
    pub poll_interval: Option<Duration>,
    /// Quiet time after the last change before the backup fires.
    pub debounce: Duration,
}

impl OnChange {
    pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEBOUNCE: Duration = Duration::from_secs(1);
    /// The polling interval used when notifications cannot be set up (for example, the
    /// inotify watch limit is reached).
    pub const FALLBACK_POLL: Duration = Duration::from_secs(60);
}

/// Whether a notification is a change of content or of the tree. Reads (and the access-time
/// updates a backup's own reads cause) are not: they would fire a backup after every backup.
fn is_change(event: &notify::Event) -> bool {
    use notify::event::{EventKind, ModifyKind};
    match event.kind {
        EventKind::Access(_) | EventKind::Other => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
    }
}

/// Watches `on.paths`, sending a unit per change into `changes`: by notification, or by
/// polling when `poll_interval` asks for it or notifications cannot be set up (a watch
/// limit reached). The watcher stops when dropped.
fn start(
    job: &str,
    on: &OnChange,
    changes: mpsc::UnboundedSender<()>,
) -> notify::Result<Box<dyn Watcher + Send>> {
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if is_change(&event) => {
            let _ = changes.send(());
        }
        Ok(_) => {}
        // An error (an overflowed event queue) may hide a change: take it as one.
        Err(_) => {
            let _ = changes.send(());
        }
    };
    let polling = |every: Duration| -> notify::Result<Box<dyn Watcher + Send>> {
        let mut watcher = notify::PollWatcher::new(
            handler.clone(),
            notify::Config::default().with_poll_interval(every),
        )?;
        for path in &on.paths {
            watcher.watch(path, notify::RecursiveMode::Recursive)?;
        }
        Ok(Box::new(watcher))
    };
    if let Some(every) = on.poll_interval {
        return polling(every);
    }
    let notified = notify::RecommendedWatcher::new(handler.clone(), notify::Config::default())
        .and_then(|mut watcher| {
            for path in &on.paths {
                watcher.watch(path, notify::RecursiveMode::Recursive)?;
            }
            Ok(watcher)
        });
    match notified {
        Ok(watcher) => Ok(Box::new(watcher)),
        Err(e) => {
            tracing::warn!(job, error = %e, poll_every = ?OnChange::FALLBACK_POLL, "change notifications are not available; polling the paths instead");
            polling(OnChange::FALLBACK_POLL)
        }
    }
}

/// Fires `job` after each burst of changes, once quiet for the debounce and no sooner than
/// the minimum interval after the previous fire (`last_fire`, from the catalog at first).
async fn follow(
    job: String,
    on: OnChange,
    mut last_fire: Option<jiff::Timestamp>,
    mut changes: mpsc::UnboundedReceiver<()>,
    queue: mpsc::UnboundedSender<Fire>,
) {
    loop {
        if changes.recv().await.is_none() {
            return;
        }
        // Quiet for the debounce: a save that writes several files is one backup.
        loop {
            match tokio::time::timeout(on.debounce, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if let Some(last) = last_fire {
            let since =
                Duration::try_from(jiff::Timestamp::now().duration_since(last)).unwrap_or_default();
            if since < on.min_interval {
                tokio::time::sleep(on.min_interval - since).await;
            }
        }
        // What changed meanwhile is in this backup.
        while changes.try_recv().is_ok() {}
        let fire = jiff::Timestamp::now();
        tracing::info!(job, "a change under the watched paths fires a backup");
        if queue
            .send(Fire {
                job: job.clone(),
                fire,
            })
            .is_err()
        {
            return;
        }
        last_fire = Some(fire);
    }
}

/// The [`Timer`] of per-change jobs: one watcher and one task per job.
#[derive(Default)]
pub struct ChangeWatcher {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ChangeWatcher {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Timer for ChangeWatcher {
    async fn schedule(&mut self, jobs: &[ScheduledJob], queue: mpsc::UnboundedSender<Fire>) {
        self.stop().await;
        for job in jobs {
            let Trigger::OnChange(on) = &job.trigger else {
                continue;
            };
            let name = job.name();
            let (tx, rx) = mpsc::unbounded_channel();
            let watcher = match start(&name, on, tx) {
                Ok(watcher) => watcher,
                Err(e) => {
                    tracing::error!(job = name, error = %e, "watching the paths failed; this policy's backups will not follow changes");
                    continue;
                }
            };
            let task = follow(name, on.clone(), job.last_run, rx, queue.clone());
            self.tasks.push(tokio::spawn(async move {
                // The watcher lives as long as the task that follows it.
                let _watcher = watcher;
                task.await
            }));
        }
    }

    async fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_change(dir: &std::path::Path, min_interval: Duration) -> OnChange {
        OnChange {
            paths: vec![dir.to_path_buf()],
            min_interval,
            poll_interval: None,
            debounce: Duration::from_millis(200),
        }
    }

    async fn next_fire(
        fires: &mut mpsc::UnboundedReceiver<Fire>,
        within: Duration,
    ) -> Option<Fire> {
        tokio::time::timeout(within, fires.recv())
            .await
            .ok()
            .flatten()
    }

    /// A burst of writes is one fire; a later change fires again, but not before the minimum
    /// interval has passed since the previous fire.
    #[tokio::test]
    async fn a_burst_of_changes_fires_once_and_fires_keep_the_minimum_interval() {
        let dir = tempfile::tempdir().unwrap();
        let on = on_change(dir.path(), Duration::from_secs(2));
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = start("backup:x", &on, tx).unwrap();
        let (queue, mut fires) = mpsc::unbounded_channel();
        let task = tokio::spawn(follow("backup:x".into(), on, None, rx, queue));

        assert!(
            next_fire(&mut fires, Duration::from_millis(600))
                .await
                .is_none(),
            "no change, no fire"
        );
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("{i}.conf")), "x").unwrap();
        }
        let first = next_fire(&mut fires, Duration::from_secs(5))
            .await
            .expect("a fire");
        assert_eq!(first.job, "backup:x");
        assert!(
            next_fire(&mut fires, Duration::from_millis(800))
                .await
                .is_none(),
            "the burst fired once"
        );
        std::fs::write(dir.path().join("0.conf"), "changed").unwrap();
        let second = next_fire(&mut fires, Duration::from_secs(5))
            .await
            .expect("a second fire");
        let gap = second.fire.duration_since(first.fire);
        assert!(
            gap >= jiff::SignedDuration::from_secs(2),
            "fired {gap:?} after the first"
        );
        // Reading the files (as a backup does) is not a change.
        for i in 0..5 {
            let _ = std::fs::read(dir.path().join(format!("{i}.conf"))).unwrap();
        }
        assert!(next_fire(&mut fires, Duration::from_millis(3000))
            .await
            .is_none());
        task.abort();
        drop(watcher);
    }

    #[tokio::test]
    async fn polling_sees_changes_where_notifications_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut on = on_change(dir.path(), Duration::ZERO);
        on.poll_interval = Some(Duration::from_millis(200));
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = start("backup:p", &on, tx).unwrap();
        let (queue, mut fires) = mpsc::unbounded_channel();
        let task = tokio::spawn(follow("backup:p".into(), on, None, rx, queue));
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(dir.path().join("a.conf"), "x").unwrap();
        assert!(next_fire(&mut fires, Duration::from_secs(5))
            .await
            .is_some());
        task.abort();
        drop(watcher);
    }
}
