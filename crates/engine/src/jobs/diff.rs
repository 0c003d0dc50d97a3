//! What changed between two snapshots.

use std::cmp::Ordering;

use backstop_repo::{Entry, Repository};
use serde::Serialize;

use crate::error::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    /// Content (or link target, or type) changed.
    Modified,
    /// Only mode, owner or mtime changed.
    Metadata,
}

impl Change {
    pub fn symbol(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'm',
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub change: Change,
    pub path: String,
}

/// What changed at a path both snapshots hold, if anything.
fn change(before: &Entry, after: &Entry) -> Option<Change> {
    if before.kind != after.kind
        || before.digest != after.digest
        || before.target != after.target
        || before.size != after.size
    {
        Some(Change::Modified)
    } else if before.mode != after.mode
        || before.uid != after.uid
        || before.gid != after.gid
        || before.mtime_ns != after.mtime_ns
    {
        Some(Change::Metadata)
    } else {
        None
    }
}

/// The differences from snapshot `a` to snapshot `b`, in path order. Both trees are read side
/// by side as streams (each is sorted by path, and its reader refuses one that is not), so
/// neither is held whole: only the differences are.
pub async fn run(repo: &Repository, a: &str, b: &str) -> Result<Vec<Difference>, EngineError> {
    let (ia, ib) = (repo.find_snapshot(a).await?, repo.find_snapshot(b).await?);
    let (sa, sb) = (
        repo.load_snapshot(&ia).await?,
        repo.load_snapshot(&ib).await?,
    );
    let (mut old, mut new) = (repo.tree_reader(&sa), repo.tree_reader(&sb));
    let (mut before, mut after) = (old.next().await?, new.next().await?);
    let mut out = Vec::new();
    let mut note = |change, entry: Entry| {
        out.push(Difference {
            change,
            path: entry.path,
        })
    };
    loop {
        let order = match (&before, &after) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.path.cmp(&y.path),
        };
        match order {
            Ordering::Less => {
                note(Change::Removed, before.take().expect("an entry"));
                before = old.next().await?;
            }
            Ordering::Greater => {
                note(Change::Added, after.take().expect("an entry"));
                after = new.next().await?;
            }
            Ordering::Equal => {
                let (x, y) = (
                    before.take().expect("an entry"),
                    after.take().expect("an entry"),
                );
                if let Some(change) = change(&x, &y) {
                    note(change, y);
                }
                (before, after) = (old.next().await?, new.next().await?);
            }
        }
    }
    Ok(out)
}
