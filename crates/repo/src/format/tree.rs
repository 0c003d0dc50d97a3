//! The content tree of a snapshot: one JSON object per line (JSON Lines), one line per entry,
//! sorted by path. The serialised tree is split into chunks like any file, so an unchanged
//! part of a tree deduplicates against the previous snapshot's.

use serde::{Deserialize, Serialize};

use super::id::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative to the snapshot root, `/`-separated; never absolute, never `..`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits and file type bits as `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// File size in bytes (0 for directories and symlinks).
    #[serde(default)]
    pub size: u64,
    /// The file's chunks, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<Id>,
    /// SHA-256 of the file's whole content (always unkeyed: it is a fact, compared after a
    /// restore and by drills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Id>,
    /// The link target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Change detection against the next backup: ctime and inode are not restored.
    #[serde(default)]
    pub ctime_ns: i64,
    #[serde(default)]
    pub inode: u64,
}

impl Entry {
    /// A path is safe to join under a restore directory.
    pub fn has_safe_path(&self) -> bool {
        !self.path.is_empty()
            && !self.path.starts_with('/')
            && !self
                .path
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
            && !self.path.contains('\0')
    }
}

/// Serialises entries (which must be sorted by path) as JSON Lines.
pub fn to_jsonl(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut out, e).expect("entries serialise");
        out.push(b'\n');
    }
    out
}

pub fn from_jsonl(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            let entry: Entry =
                serde_json::from_slice(line).map_err(|e| format!("tree line {}: {e}", i + 1))?;
            if !entry.has_safe_path() {
                return Err(format!("tree line {}: unsafe path `{}`", i + 1, entry.path));
            }
            Ok(entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o100644,
            uid: 1,
            gid: 2,
            mtime_ns: 3,
            size: 4,
            chunks: vec![Id::sha256(b"x")],
            digest: Some(Id::sha256(b"x")),
            target: None,
            ctime_ns: 5,
            inode: 6,
        }
    }

    #[test]
    fn jsonl_round_trip() {
        let entries = vec![entry("a"), entry("a/ü b"), entry("c")];
        assert_eq!(from_jsonl(&to_jsonl(&entries)).unwrap(), entries);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", ""] {
            let text = to_jsonl(&[entry(bad)]);
            assert!(from_jsonl(&text).is_err(), "{bad}");
        }
    }
}
