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

/// The JSON Lines of entries (which must be sorted by path) as a reader, written an entry
/// at a time as it is read and hashed on the way: a backup chunks its tree without holding
/// the whole text beside the entries.
#[derive(Debug)]
pub struct JsonlText {
    entries: Vec<Entry>,
    next: usize,
    line: Vec<u8>,
    at: usize,
    hasher: sha2::Sha256,
}

impl JsonlText {
    pub fn new(entries: Vec<Entry>) -> Self {
        Self {
            entries,
            next: 0,
            line: Vec::new(),
            at: 0,
            hasher: sha2::Digest::new(),
        }
    }

    /// The entries back, and the SHA-256 of the text read.
    pub fn finish(self) -> (Vec<Entry>, Id) {
        (self.entries, Id(sha2::Digest::finalize(self.hasher).into()))
    }
}

impl std::io::Read for JsonlText {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.line.len() {
            let Some(entry) = self.entries.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            self.line.clear();
            self.at = 0;
            serde_json::to_writer(&mut self.line, entry).expect("entries serialise");
            self.line.push(b'\n');
        }
        let n = buf.len().min(self.line.len() - self.at);
        buf[..n].copy_from_slice(&self.line[self.at..self.at + n]);
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.at += n;
        Ok(n)
    }
}

pub fn from_jsonl(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut reader = JsonlReader::default();
    reader.feed(bytes);
    reader.finish()
}

/// Parses a tree's JSON Lines fed in pieces (its chunks, as they are read), holding only
/// the entries and the unfinished last line: never the whole text beside its entries.
#[derive(Debug, Default)]
pub struct JsonlReader {
    entries: Vec<Entry>,
    partial: Vec<u8>,
    /// Lines seen, for messages.
    lines: usize,
    /// The last entry's path: entries must come in ascending order, since readers that
    /// walk two trees side by side (diff, copy) depend on it.
    last_path: Option<String>,
    error: Option<String>,
}

impl JsonlReader {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while self.error.is_none() {
            let Some(end) = bytes.iter().position(|b| *b == b'\n') else {
                self.partial.extend_from_slice(bytes);
                return;
            };
            if self.partial.is_empty() {
                self.line(&bytes[..end]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&bytes[..end]);
                self.line(&line);
            }
            bytes = &bytes[end + 1..];
        }
    }

    /// The entries parsed so far, taken out of the reader (a tree read as a stream).
    pub fn take(&mut self) -> Result<Vec<Entry>, String> {
        match &self.error {
            Some(error) => Err(error.clone()),
            None => Ok(std::mem::take(&mut self.entries)),
        }
    }

    pub fn finish(mut self) -> Result<Vec<Entry>, String> {
        let last = std::mem::take(&mut self.partial);
        if self.error.is_none() {
            self.line(&last);
        }
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.entries),
        }
    }

    fn line(&mut self, line: &[u8]) {
        self.lines += 1;
        if line.is_empty() {
            return;
        }
        let n = self.lines;
        let entry = match serde_json::from_slice::<Entry>(line) {
            Ok(entry) if entry.has_safe_path() => entry,
            Ok(entry) => {
                self.error = Some(format!("tree line {n}: unsafe path `{}`", entry.path));
                return;
            }
            Err(e) => {
                self.error = Some(format!("tree line {n}: {e}"));
                return;
            }
        };
        match &mut self.last_path {
            Some(last) if last.as_str() >= entry.path.as_str() => {
                self.error = Some(format!(
                    "tree line {n}: `{}` does not come after `{last}` (a tree is sorted by path, each path once)",
                    entry.path
                ));
                return;
            }
            Some(last) => {
                last.clear();
                last.push_str(&entry.path);
            }
            None => self.last_path = Some(entry.path.clone()),
        }
        self.entries.push(entry);
    }
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
    fn jsonl_fed_in_pieces_parses_as_a_whole() {
        let entries = vec![entry("a"), entry("a/ü b"), entry("c")];
        let text = to_jsonl(&entries);
        for piece in [1, 2, 7, 64, text.len()] {
            let mut reader = JsonlReader::default();
            for part in text.chunks(piece) {
                reader.feed(part);
            }
            assert_eq!(reader.finish().unwrap(), entries, "pieces of {piece}");
        }
        let mut cut = JsonlReader::default();
        cut.feed(&text[..text.len() - 5]);
        assert!(cut.finish().unwrap_err().starts_with("tree line 3:"));
    }

    #[test]
    fn jsonl_text_reads_as_to_jsonl_writes() {
        let entries = vec![entry("a"), entry("a/ü b"), entry("c")];
        let whole = to_jsonl(&entries);
        let mut text = JsonlText::new(entries.clone());
        let mut read = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = std::io::Read::read(&mut text, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            read.extend_from_slice(&buf[..n]);
        }
        assert_eq!(read, whole);
        let (back, digest) = text.finish();
        assert_eq!(back, entries);
        assert_eq!(digest, Id::sha256(&whole));
    }

    #[test]
    fn a_tree_out_of_order_or_with_a_path_twice_is_refused() {
        for (paths, line) in [
            (["a", "c", "b"], 3),
            (["a", "b", "b"], 3),
            (["b", "a", "c"], 2),
        ] {
            let text = to_jsonl(&paths.map(entry));
            let error = from_jsonl(&text).unwrap_err();
            assert!(
                error.starts_with(&format!("tree line {line}: `")),
                "{error}"
            );
        }
        // Byte order, not a walk's: `a-b` comes before `a/b` (a walk would give `a/b` first).
        assert!(from_jsonl(&to_jsonl(&["a", "a-b", "a/b"].map(entry))).is_ok());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", ""] {
            let text = to_jsonl(&[entry(bad)]);
            assert!(from_jsonl(&text).is_err(), "{bad}");
        }
    }
}
