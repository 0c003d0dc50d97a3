//! The live counters of the backups running in this daemon, for the console to show their
//! progress. A backup registers its counters when it starts writing and they are dropped
//! when it ends, whatever the outcome ([`LiveBackups::track`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use backstop_repo::archiver::Progress;

/// The running backups' counters, by policy (a policy backs up once at a time: its lease).
#[derive(Clone, Default)]
pub struct LiveBackups {
    inner: Arc<Mutex<HashMap<String, Arc<Progress>>>>,
}

/// Keeps a backup's counters listed while it lives.
pub struct Tracked {
    live: LiveBackups,
    policy: String,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live
            .inner
            .lock()
            .expect("live backups lock")
            .remove(&self.policy);
    }
}

impl LiveBackups {
    /// Lists `policy`'s backup until the returned guard is dropped; its counters arrive
    /// through the callback given to the backup (`set`).
    pub fn track(&self, policy: &str) -> (Tracked, impl FnOnce(Arc<Progress>) + Send + 'static) {
        let guard = Tracked {
            live: self.clone(),
            policy: policy.to_string(),
        };
        let (live, name) = (self.clone(), policy.to_string());
        let set = move |progress: Arc<Progress>| {
            live.inner
                .lock()
                .expect("live backups lock")
                .insert(name, progress);
        };
        (guard, set)
    }

    /// What `policy`'s running backup has done so far: files, bytes read, bytes added.
    pub fn of(&self, policy: &str) -> Option<(u64, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let live = self.inner.lock().expect("live backups lock");
        live.get(policy).map(|p| {
            (
                p.files_done.load(Relaxed),
                p.bytes_read.load(Relaxed),
                p.bytes_added.load(Relaxed),
            )
        })
    }
}

/// A running backup's progress in words: what it has read, and against the size of the
/// policy's previous snapshot (the best estimate of the whole) a share, capped below 100%
/// until it ends, since a source can grow.
pub fn progress_words(files: u64, bytes_read: u64, previous_bytes: Option<u64>) -> String {
    // A dump or an export is one stream: no file is done until it ends.
    let read = match files {
        0 => format!("{} read", crate::human::bytes(bytes_read)),
        1 => format!("1 file and {} read", crate::human::bytes(bytes_read)),
        n => format!("{n} files and {} read", crate::human::bytes(bytes_read)),
    };
    match previous_bytes.filter(|b| *b > 0) {
        Some(whole) => {
            let share = (bytes_read as f64 / whole as f64 * 100.0).min(99.0);
            format!(
                "{read}, about {share:.0}% of the previous snapshot's {}",
                crate::human::bytes(whole)
            )
        }
        None => format!("{read} (no previous snapshot to estimate the whole)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_listed_while_it_runs_and_its_share_never_reads_done() {
        let live = LiveBackups::default();
        {
            let (_guard, set) = live.track("orders");
            let progress = Arc::new(Progress::default());
            set(progress.clone());
            progress
                .bytes_read
                .fetch_add(512, std::sync::atomic::Ordering::Relaxed);
            progress
                .files_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(live.of("orders"), Some((1, 512, 0)));
            assert_eq!(live.of("other"), None);
        }
        assert_eq!(live.of("orders"), None, "gone when the backup ends");
        assert_eq!(
            progress_words(3, 1024 * 1024, Some(4 * 1024 * 1024)),
            "3 files and 1.0 MiB read, about 25% of the previous snapshot's 4.0 MiB"
        );
        assert!(
            progress_words(1, 10 * 1024 * 1024, Some(1024 * 1024)).contains("about 99%"),
            "a grown source does not read as done before it is"
        );
        assert_eq!(
            progress_words(0, 2 * 1024 * 1024, None),
            "2.0 MiB read (no previous snapshot to estimate the whole)"
        );
    }
}
