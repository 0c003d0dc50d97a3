//! Files and config sources: directory trees, with gitignore-style excludes.
//!
//! Kept: regular files, directories and symlinks, with mode, mtime, uid and gid. A file
//! whose size, mtime, ctime and inode equal the parent snapshot's entry is not read again:
//! its chunks are reused. A file that changes while it is read is kept as read and reported;
//! an unreadable file or directory, a special file (fifo, socket, device) or a name that is
//! not UTF-8 is reported and left out. Nothing is skipped silently: every such case becomes
//! a warning in the snapshot's summary. By default the walk stays on the file system of each
//! root (`one_file_system`), recording mount points as empty directories.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use backstop_repo::format::snapshot::Root;
use backstop_repo::{Entry, EntryKind, FileStatus, SnapshotWriter, TreeReader};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::SourceError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default = "yes")]
    pub one_file_system: bool,
}

fn yes() -> bool {
    true
}

/// One thing found by the walk.
enum Found {
    Entry { entry: Entry, source: PathBuf },
    Warning(String),
}

/// The name a root gets at the top of the snapshot tree: its last path component.
pub fn root_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn entry_for(path: String, meta: &std::fs::Metadata, kind: EntryKind) -> Entry {
    Entry {
        path,
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        size: 0,
        chunks: vec![],
        digest: None,
        target: None,
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
    }
}

/// Resolves the spec's paths against `base` and checks them: each must exist, and no two
/// may share a root name.
pub fn resolve_roots(spec: &FilesSpec, base: &Path) -> Result<Vec<(String, PathBuf)>, SourceError> {
    let mut roots = Vec::new();
    for path in &spec.paths {
        let abs = base.join(path);
        std::fs::symlink_metadata(&abs).map_err(|e| SourceError::Path {
            path: abs.display().to_string(),
            source: e,
        })?;
        let name = root_name(&abs);
        if roots.iter().any(|(n, _)| *n == name) {
            return Err(SourceError::Path {
                path: abs.display().to_string(),
                source: std::io::Error::other(format!("another path also ends in `{name}`")),
            });
        }
        roots.push((name, abs));
    }
    Ok(roots)
}

fn build_excludes(root: &Path, patterns: &[String]) -> Result<Gitignore, SourceError> {
    let mut builder = GitignoreBuilder::new(root);
    for pattern in patterns {
        builder
            .add_line(None, pattern)
            .map_err(|e| SourceError::Exclude {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
    }
    builder.build().map_err(|e| SourceError::Exclude {
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

/// What the walk still has to do, in the order it must be done.
enum Step {
    /// Send this entry (and a directory's own entry, before its content).
    Visit {
        rel: String,
        abs: PathBuf,
        meta: std::fs::Metadata,
    },
    /// Read this directory and plan its children.
    Descend {
        rel: String,
        abs: PathBuf,
        dev: u64,
        root: usize,
    },
}

/// A root as the walk needs it: its excludes and the device it stays on.
struct WalkRoot {
    excludes: Gitignore,
    dev: u64,
}

/// Orders one directory's steps so that the walk sends entries in the tree's order: paths in
/// byte order. A child's own entry sorts by its name, its content by its name followed by
/// `/`, so `a`, `a-b`, `a/c` come out in that order (`-` sorts before `/`), as they are in
/// the tree. Returned reversed, for the stack.
fn plan(mut steps: Vec<(String, Step)>) -> impl Iterator<Item = Step> {
    steps.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    steps.into_iter().rev().map(|(_, step)| step)
}

/// The steps for one child: its entry, and for a directory its content.
fn steps_for(
    name: &str,
    rel: String,
    abs: PathBuf,
    meta: std::fs::Metadata,
    root: usize,
) -> Vec<(String, Step)> {
    let mut steps = Vec::with_capacity(2);
    if meta.is_dir() {
        steps.push((
            format!("{name}/"),
            Step::Descend {
                rel: rel.clone(),
                abs: abs.clone(),
                dev: meta.dev(),
                root,
            },
        ));
    }
    steps.push((name.to_string(), Step::Visit { rel, abs, meta }));
    steps
}

/// Walks the roots on a blocking thread, sending what it finds in path order (the tree's
/// order), so that the parent's tree and the new one are both read and written as streams.
/// Memory holds the directories being walked, never the whole tree.
fn walk(roots: Vec<(String, PathBuf, Gitignore)>, one_fs: bool, tx: mpsc::Sender<Found>) {
    let send = |found: Found| tx.blocking_send(found).is_ok();
    let mut walk_roots = Vec::new();
    let mut top = Vec::new();
    for (name, abs, excludes) in roots {
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) => {
                if !send(Found::Warning(format!(
                    "{}: {e}; not in this snapshot",
                    abs.display()
                ))) {
                    return;
                }
                continue;
            }
        };
        walk_roots.push(WalkRoot {
            excludes,
            dev: meta.dev(),
        });
        top.extend(steps_for(
            &name,
            name.clone(),
            abs,
            meta,
            walk_roots.len() - 1,
        ));
    }
    let mut stack: Vec<Step> = plan(top).collect();
    while let Some(step) = stack.pop() {
        match step {
            Step::Visit { rel, abs, meta } => {
                if !send(visit(rel, abs, &meta)) {
                    return;
                }
            }
            Step::Descend {
                rel,
                abs,
                dev,
                root,
            } => {
                let this = &walk_roots[root];
                // A mount point is kept as an empty directory.
                if one_fs && dev != this.dev {
                    continue;
                }
                let (steps, warnings) = children(&rel, &abs, root, this);
                for warning in warnings {
                    if !send(Found::Warning(warning)) {
                        return;
                    }
                }
                stack.extend(plan(steps));
            }
        }
    }
}

/// The steps for a directory's children (excludes applied), and a warning for each child
/// left out because it cannot be read or named.
fn children(
    rel: &str,
    abs: &Path,
    root: usize,
    walk_root: &WalkRoot,
) -> (Vec<(String, Step)>, Vec<String>) {
    let mut warnings = Vec::new();
    let listed = match std::fs::read_dir(abs).and_then(|it| it.collect::<Result<Vec<_>, _>>()) {
        Ok(listed) => listed,
        Err(e) => {
            warnings.push(format!(
                "{}: cannot read directory: {e}; its content is not in this snapshot",
                abs.display()
            ));
            return (Vec::new(), warnings);
        }
    };
    let mut steps = Vec::with_capacity(listed.len());
    for child in listed {
        let child_abs = child.path();
        let Some(child_name) = child.file_name().to_str().map(str::to_string) else {
            warnings.push(format!(
                "{}: name is not UTF-8; not in this snapshot",
                child_abs.display()
            ));
            continue;
        };
        let child_meta = match std::fs::symlink_metadata(&child_abs) {
            Ok(m) => m,
            Err(e) => {
                warnings.push(format!(
                    "{}: {e}; not in this snapshot",
                    child_abs.display()
                ));
                continue;
            }
        };
        if walk_root
            .excludes
            .matched(&child_abs, child_meta.is_dir())
            .is_ignore()
        {
            continue;
        }
        let child_rel = format!("{rel}/{child_name}");
        steps.extend(steps_for(
            &child_name,
            child_rel,
            child_abs,
            child_meta,
            root,
        ));
    }
    (steps, warnings)
}

/// What one visited path becomes: an entry, or a warning when it cannot be kept.
fn visit(rel: String, abs: PathBuf, meta: &std::fs::Metadata) -> Found {
    let file_type = meta.file_type();
    if file_type.is_dir() {
        Found::Entry {
            entry: entry_for(rel, meta, EntryKind::Dir),
            source: abs,
        }
    } else if file_type.is_file() {
        let mut entry = entry_for(rel, meta, EntryKind::File);
        entry.size = meta.len();
        Found::Entry { entry, source: abs }
    } else if file_type.is_symlink() {
        match std::fs::read_link(&abs).map(|t| t.to_str().map(str::to_string)) {
            Ok(Some(target)) => {
                let mut entry = entry_for(rel, meta, EntryKind::Symlink);
                entry.target = Some(target);
                Found::Entry { entry, source: abs }
            }
            Ok(None) => Found::Warning(format!(
                "{}: link target is not UTF-8; not in this snapshot",
                abs.display()
            )),
            Err(e) => Found::Warning(format!("{}: {e}; not in this snapshot", abs.display())),
        }
    } else {
        Found::Warning(format!(
            "{}: special file (fifo, socket or device); not in this snapshot",
            abs.display()
        ))
    }
}

/// The parent snapshot's tree, read alongside the walk: both are in path order, so finding a
/// file's previous entry only moves forward. A tree that fails to read part-way is
/// abandoned with a warning in the log; the files after that point are read again (slower,
/// never wrong).
struct Parent<'a> {
    reader: Option<TreeReader<'a>>,
    head: Option<Entry>,
}

impl Parent<'_> {
    async fn find(&mut self, path: &str) -> Option<Entry> {
        loop {
            if self.head.is_none() {
                let reader = self.reader.as_mut()?;
                match reader.next().await {
                    Ok(Some(entry)) => self.head = Some(entry),
                    Ok(None) => {
                        self.reader = None;
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(
                            message = "the parent snapshot's tree could not be read to its end; the rest of the files are read",
                            error = %e,
                        );
                        self.reader = None;
                        return None;
                    }
                }
            }
            let head = self.head.as_ref().expect("filled above");
            match head.path.as_str().cmp(path) {
                std::cmp::Ordering::Less => self.head = None,
                std::cmp::Ordering::Equal => return self.head.take(),
                std::cmp::Ordering::Greater => return None,
            }
        }
    }
}

/// Backs up the spec's trees into `writer`. `parent` is the previous snapshot's tree, whose
/// unchanged files are reused without reading them.
pub async fn back_up(
    spec: &FilesSpec,
    base: &Path,
    writer: &mut SnapshotWriter,
    parent: Option<TreeReader<'_>>,
) -> Result<Vec<Root>, SourceError> {
    let roots = resolve_roots(spec, base)?;
    let mut walked = Vec::new();
    for (name, abs) in &roots {
        walked.push((
            name.clone(),
            abs.clone(),
            build_excludes(abs, &spec.exclude)?,
        ));
    }
    let mut parent = Parent {
        reader: parent,
        head: None,
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let one_fs = spec.one_file_system;
    let walker = tokio::task::spawn_blocking(move || walk(walked, one_fs, tx));
    while let Some(found) = rx.recv().await {
        match found {
            Found::Warning(w) => writer.warn(w),
            Found::Entry { entry, source } if entry.kind == EntryKind::File => {
                let before = parent.find(&entry.path).await;
                add_file(writer, entry, source, before.as_ref()).await?;
            }
            Found::Entry { entry, .. } => writer.add_entry(entry).await?,
        }
    }
    walker.await.map_err(|e| SourceError::Path {
        path: roots
            .iter()
            .map(|(_, abs)| abs.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(roots
        .into_iter()
        .map(|(name, abs)| Root {
            name,
            source: abs.display().to_string(),
        })
        .collect())
}

async fn add_file(
    writer: &mut SnapshotWriter,
    entry: Entry,
    source: PathBuf,
    before: Option<&Entry>,
) -> Result<(), SourceError> {
    let unchanged = before.filter(|b| {
        b.kind == EntryKind::File
            && b.size == entry.size
            && b.mtime_ns == entry.mtime_ns
            && b.ctime_ns == entry.ctime_ns
            && b.inode == entry.inode
    });
    if let Some(b) = unchanged {
        if writer.has_chunks(&b.chunks) {
            writer
                .add_unchanged(Entry {
                    chunks: b.chunks.clone(),
                    digest: b.digest,
                    ..entry
                })
                .await?;
            return Ok(());
        }
    }
    let status = if before.is_some() {
        FileStatus::Changed
    } else {
        FileStatus::New
    };
    let (size, mtime, ctime) = (entry.size, entry.mtime_ns, entry.ctime_ns);
    writer
        .add_file(entry, status, source.clone(), move |after| {
            let changed = after.len() != size
                || ns(after.mtime(), after.mtime_nsec()) != mtime
                || ns(after.ctime(), after.ctime_nsec()) != ctime;
            changed.then(|| {
                format!(
                    "{}: changed while it was read; the snapshot holds the content as read",
                    source.display()
                )
            })
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(roots: &[&Path]) -> (Vec<String>, Vec<String>) {
        let roots = roots
            .iter()
            .map(|abs| {
                (
                    root_name(abs),
                    abs.to_path_buf(),
                    build_excludes(abs, &[]).unwrap(),
                )
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(4);
        let walker = std::thread::spawn(move || walk(roots, true, tx));
        let (mut paths, mut warnings) = (Vec::new(), Vec::new());
        while let Some(found) = rx.blocking_recv() {
            match found {
                Found::Entry { entry, .. } => paths.push(entry.path),
                Found::Warning(w) => warnings.push(w),
            }
        }
        walker.join().unwrap();
        (paths, warnings)
    }

    #[test]
    fn the_walk_sends_entries_in_the_trees_byte_order() {
        // `-`, `.` and ` ` sort before `/`: a depth-first walk by name would send `a/c`
        // before `a-b`, which the tree (sorted by whole paths) has the other way round.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        for sub in ["a", "a/c", "a-b", "a.d/e", "ab", "a b", "Z"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for file in [
            "a/c/f", "a/c.txt", "a-b/g", "a.d/e/h", "ab/i", "a b/j", "a.txt", "é",
        ] {
            std::fs::write(root.join(file), file).unwrap();
        }
        // A second root whose name sorts between the first's entries: `data-2` < `data/…`.
        let other = dir.path().join("data-2");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("k"), "k").unwrap();

        let (paths, warnings) = walked(&[&root, &other]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut sorted = paths.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(paths, sorted, "sent in the tree's order");
        assert_eq!(paths.len(), 1 + 8 + 8 + 2, "every entry: {paths:?}");
        assert_eq!(&paths[..3], ["data", "data-2", "data-2/k"]);
    }
}
