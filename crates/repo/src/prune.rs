//! Retention, then garbage collection.
//!
//! [`apply_retention`] is a pure function: which snapshots a policy's rules keep. [`plan`]
//! adds what becomes unreferenced: packs whose chunks no kept snapshot needs (including
//! packs no index lists, left by an interrupted backup). [`execute`] runs under an exclusive
//! lock, in an order that never leaves a kept snapshot unrestorable, even if it is stopped
//! half way: (1) remove forgotten snapshots, (2) write the new index, (3) remove the old
//! index objects, (4) remove unreferenced packs. Packs with some live chunks are kept whole
//! (no repacking in format v1); the plan reports the bytes they waste.
//!
//! Degraded repositories: while a snapshot object is unreadable, retention still applies to
//! the readable snapshots (forgetting a snapshot deletes only its snapshot object), but no
//! pack and no index object is deleted or rewritten, since the unreadable snapshot may need
//! any of them; the plan says so (`garbage_collection: false`, `unreadable`). A pack that an
//! index lists but the storage lacks refuses the whole prune ([`RepoError::MissingPack`]):
//! a new index would forget it, and with it the only record of what it held. Temporary files
//! of writers killed mid-`put` are removed once older than [`TEMPORARY_FILE_MIN_AGE`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{RepoError, Result};
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexPack};
use crate::format::layout;
use crate::format::pack::BlobEntry;
use crate::lock::{LockGuard, LockKind, WAIT_AT_MOST};
use crate::repository::{Repository, UnreadableSnapshot};

/// A temporary file (`<key>.tmp-…`, local storage) this old is left by a writer that was
/// killed, never one still writing: a `put` writes its temporary file and renames it within
/// one call, which takes seconds even for a large pack on a slow disk. Younger ones are left
/// alone, since prune cannot know whether a writer without a lock (an audit anchor) or on
/// another host is still at it.
pub const TEMPORARY_FILE_MIN_AGE: Duration = Duration::from_secs(60 * 60);

/// How many snapshots to keep: the newest in each of the last N days, ISO weeks, months
/// (UTC), plus the last N in any case. A policy with no rule keeps everything; the newest
/// snapshot is always kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub last: Option<u32>,
    #[serde(default)]
    pub hourly: Option<u32>,
    #[serde(default)]
    pub daily: Option<u32>,
    #[serde(default)]
    pub weekly: Option<u32>,
    #[serde(default)]
    pub monthly: Option<u32>,
    #[serde(default)]
    pub yearly: Option<u32>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(Option::is_none)
    }
}

/// Snapshot ids to keep, with the rules that kept each. `snapshots` may be in any order.
pub fn apply_retention(
    snapshots: &[(Id, jiff::Timestamp)],
    rules: &Retention,
) -> BTreeMap<Id, Vec<&'static str>> {
    let mut sorted: Vec<_> = snapshots.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut keep: BTreeMap<Id, Vec<&'static str>> = BTreeMap::new();
    if rules.is_empty() {
        for (id, _) in &sorted {
            keep.insert(*id, vec!["no retention rule"]);
        }
        return keep;
    }
    type Bucket = fn(&jiff::civil::DateTime) -> (i32, i32, i32, i32);
    let rules_list: [(&'static str, Option<u32>, Bucket); 6] = [
        ("last", rules.last, |_| (0, 0, 0, 0)),
        ("hourly", rules.hourly, |d| {
            (
                d.year() as i32,
                d.month() as i32,
                d.day() as i32,
                d.hour() as i32,
            )
        }),
        ("daily", rules.daily, |d| {
            (d.year() as i32, d.month() as i32, d.day() as i32, 0)
        }),
        ("weekly", rules.weekly, |d| {
            let w = d.date().iso_week_date();
            (w.year() as i32, w.week() as i32, 0, 0)
        }),
        ("monthly", rules.monthly, |d| {
            (d.year() as i32, d.month() as i32, 0, 0)
        }),
        ("yearly", rules.yearly, |d| (d.year() as i32, 0, 0, 0)),
    ];
    for (name, count, bucket) in rules_list {
        let Some(mut remaining) = count else { continue };
        let mut last_bucket = None;
        for (i, (id, time)) in sorted.iter().enumerate() {
            if remaining == 0 {
                break;
            }
            let civil = time.to_zoned(jiff::tz::TimeZone::UTC).datetime();
            // "last" keeps each snapshot: its bucket is the position.
            let b = if name == "last" {
                (i as i32, 0, 0, 0)
            } else {
                bucket(&civil)
            };
            if last_bucket != Some(b) {
                keep.entry(*id).or_default().push(name);
                remaining -= 1;
                last_bucket = Some(b);
            }
        }
    }
    if let Some((newest, _)) = sorted.first() {
        keep.entry(*newest).or_insert_with(|| vec!["newest"]);
    }
    keep
}

/// An object prune leaves in place because its Object Lock has not lapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedObject {
    pub object: String,
    pub until: jiff::Timestamp,
}

/// When `key` is locked past `now` on a store with Object Lock.
async fn lock_in_force(repo: &Repository, key: &str) -> Result<Option<jiff::Timestamp>> {
    if repo.storage().object_lock().is_none() {
        return Ok(None);
    }
    let now = jiff::Timestamp::now();
    Ok(repo
        .storage()
        .locked_until(key)
        .await?
        .filter(|until| *until > now))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    pub keep: Vec<Id>,
    pub forget: Vec<Id>,
    pub delete_packs: Vec<Id>,
    pub delete_bytes: u64,
    pub keep_packs: usize,
    pub keep_bytes: u64,
    /// Bytes in kept packs that no kept snapshot needs (reclaimed by a future repack).
    pub unused_bytes_in_kept_packs: u64,
    pub old_index_objects: Vec<String>,
    /// Whether unreferenced packs are collected: false while a snapshot is unreadable (see
    /// the module docs), and then no pack or index object is deleted.
    pub garbage_collection: bool,
    /// Snapshot objects that could not be read, each with its cause.
    pub unreadable: Vec<UnreadableSnapshot>,
    /// Temporary files left by interrupted writes, older than [`TEMPORARY_FILE_MIN_AGE`].
    pub temporary_files: Vec<String>,
    /// Objects that would be deleted but are still under Object Lock: kept, and removed by
    /// a later prune once their lock has lapsed (a snapshot among them keeps its data).
    pub locked: Vec<LockedObject>,
    /// Index entries for the packs that stay.
    #[serde(skip)]
    new_index: Vec<IndexPack>,
    /// What retention keeps (not what only a lock keeps): snapshot objects and the packs
    /// they need, whose locks maintenance extends.
    #[serde(skip)]
    retained_objects: Vec<String>,
}

/// Decides what to forget and collect. `retention` maps a policy name to its rules;
/// snapshots of policies not in the map are kept.
pub async fn plan(
    repo: &Arc<Repository>,
    retention: &HashMap<String, Retention>,
) -> Result<PrunePlan> {
    // Refuse to plan on a damaged index: deleting on uncertain ground loses data.
    let (index, problems) = repo.load_index().await?;
    if let Some((key, problem)) = problems.into_iter().next() {
        return Err(RepoError::corrupt(key, format!("{problem}; run `backstop check` (prune deletes nothing while an index object is unreadable)")));
    }
    let repo = Arc::new(repo.with_index(index));
    let listing = repo.list_snapshots().await?;
    let snapshots = listing.snapshots;
    // A pack the index lists but the storage lacks: a new index would forget it.
    let stored = repo.storage().list(layout::DATA_PREFIX).await?;
    let stored_ids: HashSet<Id> = stored
        .iter()
        .filter_map(|o| layout::id_of(&o.key))
        .collect();
    let mut missing: Vec<&Id> = repo
        .index()
        .packs()
        .keys()
        .filter(|p| !stored_ids.contains(p))
        .collect();
    missing.sort();
    if let Some(pack) = missing.first() {
        return Err(RepoError::MissingPack {
            key: layout::pack_key(pack),
        });
    }
    let mut by_policy: HashMap<&str, Vec<(Id, jiff::Timestamp)>> = HashMap::new();
    for (id, s) in &snapshots {
        by_policy
            .entry(s.policy.as_str())
            .or_default()
            .push((*id, s.time));
    }
    let mut out = PrunePlan::default();
    for (policy, list) in by_policy {
        let keep = match retention.get(policy) {
            Some(rules) => apply_retention(&list, rules),
            None => list
                .iter()
                .map(|(id, _)| (*id, vec!["no policy"]))
                .collect(),
        };
        for (id, _) in list {
            if keep.contains_key(&id) {
                out.keep.push(id);
            } else {
                out.forget.push(id);
            }
        }
    }
    // A snapshot whose object is still locked cannot be forgotten yet: it stays, and so
    // does its data, until a prune after its lock has lapsed.
    let mut forget = Vec::new();
    let mut kept_by_lock = HashSet::new();
    for id in std::mem::take(&mut out.forget) {
        let object = layout::snapshot_key(&id);
        match lock_in_force(&repo, &object).await? {
            Some(until) => {
                out.locked.push(LockedObject { object, until });
                out.keep.push(id);
                kept_by_lock.insert(id);
            }
            None => forget.push(id),
        }
    }
    out.forget = forget;
    out.keep.sort();
    out.forget.sort();
    out.temporary_files = old_temporary_files(&repo).await?;
    out.unreadable = listing.unreadable;
    out.garbage_collection = out.unreadable.is_empty();
    if !out.garbage_collection {
        return Ok(out);
    }

    let mut live: HashSet<Id> = HashSet::new();
    let mut retained_live: HashSet<Id> = HashSet::new();
    for (id, s) in &snapshots {
        if !out.keep.contains(id) {
            continue;
        }
        let retained = !kept_by_lock.contains(id);
        if retained {
            out.retained_objects.push(layout::snapshot_key(id));
        }
        let unreadable = |e: RepoError| {
            RepoError::Invalid(format!(
                "snapshot {}: {e}; prune deletes nothing while a kept snapshot is unreadable",
                id.short()
            ))
        };
        let mut mark = |chunks: &[Id]| {
            if retained {
                retained_live.extend(chunks.iter().copied());
            }
            live.extend(chunks.iter().copied());
        };
        mark(&s.tree.chunks);
        // The tree is read as a stream: an entry at a time, never whole.
        let mut entries = repo.tree_reader(s);
        while let Some(entry) = entries.next().await.map_err(unreadable)? {
            mark(&entry.chunks);
        }
    }
    // Every needed chunk must be indexed before anything is deleted.
    if let Some(missing) = live.iter().find(|c| !repo.index().contains(c)) {
        return Err(RepoError::Invalid(format!(
            "chunk {missing} needed by a kept snapshot is in no index; run `backstop check`, then `backstop repair index` (prune deletes nothing)"
        )));
    }

    let mut blobs_by_pack: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    for (chunk, loc) in repo.index().chunks() {
        blobs_by_pack.entry(loc.pack).or_default().push(BlobEntry {
            id: *chunk,
            offset: loc.offset,
            length: loc.length,
            raw_length: loc.raw_length,
        });
    }
    // Index objects still locked stay, and with them every pack they list: an index must
    // never name a pack that is gone.
    let mut old_index_objects = Vec::new();
    let mut listed_by_locked_index: HashSet<Id> = HashSet::new();
    for object in repo.storage().list(layout::INDEX_PREFIX).await? {
        match lock_in_force(&repo, &object.key).await? {
            Some(until) => {
                let file = repo.read_index_file(&object.key).await?;
                listed_by_locked_index.extend(file.packs.iter().map(|p| p.id));
                out.locked.push(LockedObject {
                    object: object.key,
                    until,
                });
            }
            None => old_index_objects.push(object.key),
        }
    }
    for object in stored {
        let Some(pack) = layout::id_of(&object.key) else {
            continue;
        };
        let blobs = blobs_by_pack.remove(&pack).unwrap_or_default();
        if blobs.iter().any(|b| retained_live.contains(&b.id)) {
            out.retained_objects.push(object.key.clone());
        }
        if blobs.iter().any(|b| live.contains(&b.id)) {
            out.keep_packs += 1;
            out.keep_bytes += object.size;
            out.unused_bytes_in_kept_packs += blobs
                .iter()
                .filter(|b| !live.contains(&b.id))
                .map(|b| b.length)
                .sum::<u64>();
            let mut blobs = blobs;
            blobs.sort_by_key(|b| b.offset);
            out.new_index.push(IndexPack {
                id: pack,
                size: object.size,
                blobs,
            });
            continue;
        }
        // Unreferenced. It stays while a locked index object lists it, or while it is
        // locked itself, but out of the new index: it goes once those locks lapse, instead
        // of being listed, and so kept, by every new index after it.
        if listed_by_locked_index.contains(&pack) {
            continue;
        }
        if let Some(until) = lock_in_force(&repo, &object.key).await? {
            out.locked.push(LockedObject {
                object: object.key,
                until,
            });
            continue;
        }
        out.delete_packs.push(pack);
        out.delete_bytes += object.size;
    }
    out.old_index_objects = old_index_objects;
    Ok(out)
}

/// Temporary files old enough to be a killed writer's (see [`TEMPORARY_FILE_MIN_AGE`]).
async fn old_temporary_files(repo: &Repository) -> Result<Vec<String>> {
    let now = std::time::SystemTime::now();
    Ok(repo
        .storage()
        .leftovers("")
        .await?
        .into_iter()
        .filter(|l| {
            now.duration_since(l.modified)
                .is_ok_and(|age| age >= TEMPORARY_FILE_MIN_AGE)
        })
        .map(|l| l.key)
        .collect())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub snapshots_removed: usize,
    pub packs_removed: usize,
    pub bytes_removed: u64,
    pub stale_locks_removed: usize,
    pub temporary_files_removed: usize,
    /// Objects still referenced whose Object Lock was extended.
    pub locks_extended: usize,
}

/// Plans and executes under an exclusive lock (see the module docs for the order).
pub async fn prune(
    repo: Arc<Repository>,
    retention: &HashMap<String, Retention>,
    dry_run: bool,
) -> Result<(PrunePlan, Option<PruneReport>)> {
    if dry_run {
        return Ok((plan(&repo, retention).await?, None));
    }
    let stale = crate::lock::remove_stale_locks(&repo).await?;
    let lock = LockGuard::acquire_waiting(repo.clone(), LockKind::Exclusive, "prune", WAIT_AT_MOST)
        .await?;
    let result = async {
        let plan = plan(&repo, retention).await?;
        let report = execute(&repo, &plan).await?;
        Ok::<_, RepoError>((plan, report))
    }
    .await;
    let released = lock.release().await;
    let (plan, mut report) = result?;
    released?;
    report.stale_locks_removed = stale.len();
    Ok((plan, Some(report)))
}

async fn execute(repo: &Arc<Repository>, plan: &PrunePlan) -> Result<PruneReport> {
    let storage = repo.storage();
    for id in &plan.forget {
        storage.delete(&layout::snapshot_key(id)).await?;
    }
    let nothing_to_collect = plan.delete_packs.is_empty() && plan.unused_bytes_in_kept_packs == 0;
    let rewrite_index = plan.garbage_collection
        && (!nothing_to_collect || plan.old_index_objects.len() + locked_indexes(plan) > 1);
    if rewrite_index {
        let (new_id, _) = repo
            .write_index(&IndexFile {
                version: 1,
                packs: plan.new_index.clone(),
            })
            .await?;
        let new_key = layout::index_key(&new_id);
        for key in plan.old_index_objects.iter().filter(|k| **k != new_key) {
            storage.delete(key).await?;
        }
    }
    for pack in &plan.delete_packs {
        storage.delete(&layout::pack_key(pack)).await?;
    }
    for key in &plan.temporary_files {
        storage.delete(key).await?;
    }
    let locks_extended = if plan.garbage_collection {
        extend_locks(repo, plan, rewrite_index).await?
    } else {
        0
    };
    Ok(PruneReport {
        snapshots_removed: plan.forget.len(),
        packs_removed: plan.delete_packs.len(),
        bytes_removed: plan.delete_bytes,
        stale_locks_removed: 0,
        temporary_files_removed: plan.temporary_files.len(),
        locks_extended,
    })
}

/// Index objects the plan leaves because they are locked.
fn locked_indexes(plan: &PrunePlan) -> usize {
    plan.locked
        .iter()
        .filter(|l| l.object.starts_with(layout::INDEX_PREFIX))
        .count()
}

/// Every object still referenced, whose lock must outlive its snapshots: the config, the
/// snapshots retention keeps and the packs they need, the audit anchors and history
/// (evidence), and the index objects unless this prune wrote a new one (written just now,
/// it is locked for a full retention and lists every pack that stays, so the old ones are
/// left to lapse and go). What only a lock keeps is left to lapse.
async fn referenced_objects(
    repo: &Repository,
    plan: &PrunePlan,
    index_rewritten: bool,
) -> Result<Vec<String>> {
    let mut keys = vec![layout::CONFIG.to_string()];
    keys.extend(plan.retained_objects.iter().cloned());
    let mut prefixes = vec!["anchors/", "history/"];
    if !index_rewritten {
        prefixes.push(layout::INDEX_PREFIX);
    }
    for prefix in prefixes {
        keys.extend(
            repo.storage()
                .list(prefix)
                .await?
                .into_iter()
                .map(|o| o.key),
        );
    }
    Ok(keys)
}

/// With Object Lock, moves the retain-until date of every object still referenced to a
/// full retention from now, once less than half of it is left; returns how many were
/// extended. Without Object Lock, nothing.
pub async fn extend_locks(
    repo: &Repository,
    plan: &PrunePlan,
    index_rewritten: bool,
) -> Result<usize> {
    let Some(lock) = repo.storage().object_lock() else {
        return Ok(0);
    };
    let now = jiff::Timestamp::now();
    let half = jiff::SignedDuration::try_from(lock.retention / 2).unwrap_or_default();
    let full = jiff::SignedDuration::try_from(lock.retention).unwrap_or_default();
    let mut extended = 0;
    for key in referenced_objects(repo, plan, index_rewritten).await? {
        let until = repo.storage().locked_until(&key).await?;
        if until.is_none_or(|u| u < now + half) {
            repo.storage().extend_lock(&key, now + full).await?;
            extended += 1;
        }
    }
    Ok(extended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn snaps(times: &[&str]) -> Vec<(Id, jiff::Timestamp)> {
        times
            .iter()
            .map(|t| (Id::sha256(t.as_bytes()), ts(t)))
            .collect()
    }

    fn kept(list: &[(Id, jiff::Timestamp)], rules: &Retention) -> Vec<String> {
        let keep = apply_retention(list, rules);
        let mut out: Vec<String> = list
            .iter()
            .filter(|(id, _)| keep.contains_key(id))
            .map(|(_, t)| t.to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let list = snaps(&[
            "2026-11-20T01:00:00Z",
            "2026-11-20T13:00:00Z",
            "2026-11-21T05:00:00Z",
            "2026-11-22T05:00:00Z",
            "2026-11-22T23:00:00Z",
        ]);
        let rules = Retention {
            daily: Some(2),
            ..Default::default()
        };
        assert_eq!(
            kept(&list, &rules),
            vec!["2026-11-21T05:00:00Z", "2026-11-22T23:00:00Z"]
        );
    }

    #[test]
    fn weekly_and_monthly_combine() {
        let list = snaps(&[
            "2026-09-30T00:00:00Z",
            "2026-10-31T00:00:00Z",
            "2026-11-02T00:00:00Z", // Monday, ISO week 45
            "2026-11-08T00:00:00Z", // Sunday, ISO week 45
            "2026-11-09T00:00:00Z", // Monday, ISO week 46
        ]);
        let rules = Retention {
            weekly: Some(2),
            monthly: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&list, &rules),
            vec![
                "2026-09-30T00:00:00Z",
                "2026-10-31T00:00:00Z",
                "2026-11-08T00:00:00Z",
                "2026-11-09T00:00:00Z"
            ]
        );
    }

    #[test]
    fn no_rules_keep_everything_and_the_newest_is_always_kept() {
        let list = snaps(&["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]);
        assert_eq!(kept(&list, &Retention::default()).len(), 2);
        let rules = Retention {
            daily: Some(0),
            ..Default::default()
        };
        assert_eq!(kept(&list, &rules), vec!["2026-01-02T00:00:00Z"]);
        let rules = Retention {
            last: Some(5),
            ..Default::default()
        };
        assert_eq!(kept(&list, &rules).len(), 2);
    }
}
