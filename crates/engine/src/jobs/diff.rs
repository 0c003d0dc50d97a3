//! What changed between two snapshots.

use std::collections::BTreeMap;

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

pub fn compare(a: &[Entry], b: &[Entry]) -> Vec<Difference> {
    let old: BTreeMap<&str, &Entry> = a.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: BTreeMap<&str, &Entry> = b.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = Vec::new();
    for (path, before) in &old {
        match new.get(path) {
            None => out.push((Change::Removed, *path)),
            Some(after) => {
                if before.kind != after.kind
                    || before.digest != after.digest
                    || before.target != after.target
                    || before.size != after.size
                {
                    out.push((Change::Modified, *path));
                } else if before.mode != after.mode
                    || before.uid != after.uid
                    || before.gid != after.gid
                    || before.mtime_ns != after.mtime_ns
                {
                    out.push((Change::Metadata, *path));
                }
            }
        }
    }
    for path in new.keys().filter(|p| !old.contains_key(*p)) {
        out.push((Change::Added, *path));
    }
    out.sort_by(|x, y| x.1.cmp(y.1));
    out.into_iter()
        .map(|(change, path)| Difference {
            change,
            path: path.to_string(),
        })
        .collect()
}

pub async fn run(repo: &Repository, a: &str, b: &str) -> Result<Vec<Difference>, EngineError> {
    let (ia, ib) = (repo.find_snapshot(a).await?, repo.find_snapshot(b).await?);
    let (sa, sb) = (
        repo.load_snapshot(&ia).await?,
        repo.load_snapshot(&ib).await?,
    );
    let (ta, tb) = (repo.read_tree(&sa).await?, repo.read_tree(&sb).await?);
    Ok(compare(&ta, &tb))
}
