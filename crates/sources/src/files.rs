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
use backstop_repo::{Entry, EntryKind, FileStatus, SnapshotWriter};
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

/// Walks one root on a blocking thread, sending what it finds, parents before children.
fn walk(name: String, root: PathBuf, excludes: Gitignore, one_fs: bool, tx: mpsc::Sender<Found>) {
    let send = |found: Found| tx.blocking_send(found).is_ok();
    let meta = match std::fs::symlink_metadata(&root) {
        Ok(m) => m,
        Err(e) => {
            send(Found::Warning(format!(
                "{}: {e}; not in this snapshot",
                root.display()
            )));
            return;
        }
    };
    let root_dev = meta.dev();
    let mut stack = vec![(name, root, meta)];
    while let Some((rel, abs, meta)) = stack.pop() {
        let file_type = meta.file_type();
        if file_type.is_dir() {
            if !send(Found::Entry {
                entry: entry_for(rel.clone(), &meta, EntryKind::Dir),
                source: abs.clone(),
            }) {
                return;
            }
            if one_fs && meta.dev() != root_dev {
                continue;
            }
            let mut children =
                match std::fs::read_dir(&abs).and_then(|it| it.collect::<Result<Vec<_>, _>>()) {
                    Ok(children) => children,
                    Err(e) => {
                        send(Found::Warning(format!(
                            "{}: cannot read directory: {e}; its content is not in this snapshot",
                            abs.display()
                        )));
                        continue;
                    }
                };
            children.sort_by_key(|c| std::cmp::Reverse(c.file_name()));
            for child in children {
                let child_abs = child.path();
                let Some(child_name) = child.file_name().to_str().map(str::to_string) else {
                    send(Found::Warning(format!(
                        "{}: name is not UTF-8; not in this snapshot",
                        child_abs.display()
                    )));
                    continue;
                };
                let child_meta = match std::fs::symlink_metadata(&child_abs) {
                    Ok(m) => m,
                    Err(e) => {
                        send(Found::Warning(format!(
                            "{}: {e}; not in this snapshot",
                            child_abs.display()
                        )));
                        continue;
                    }
                };
                if excludes
                    .matched(&child_abs, child_meta.is_dir())
                    .is_ignore()
                {
                    continue;
                }
                stack.push((format!("{rel}/{child_name}"), child_abs, child_meta));
            }
        } else if file_type.is_file() {
            let mut entry = entry_for(rel, &meta, EntryKind::File);
            entry.size = meta.len();
            if !send(Found::Entry { entry, source: abs }) {
                return;
            }
        } else if file_type.is_symlink() {
            match std::fs::read_link(&abs).map(|t| t.to_str().map(str::to_string)) {
                Ok(Some(target)) => {
                    let mut entry = entry_for(rel, &meta, EntryKind::Symlink);
                    entry.target = Some(target);
                    if !send(Found::Entry { entry, source: abs }) {
                        return;
                    }
                }
                Ok(None) => {
                    send(Found::Warning(format!(
                        "{}: link target is not UTF-8; not in this snapshot",
                        abs.display()
                    )));
                }
                Err(e) => {
                    send(Found::Warning(format!(
                        "{}: {e}; not in this snapshot",
                        abs.display()
                    )));
                }
            }
        } else {
            send(Found::Warning(format!(
                "{}: special file (fifo, socket or device); not in this snapshot",
                abs.display()
            )));
        }
    }
}

/// Backs up the spec's trees into `writer`. `parent` is the previous snapshot's tree, whose
/// unchanged files are reused without reading them.
pub async fn back_up(
    spec: &FilesSpec,
    base: &Path,
    writer: &mut SnapshotWriter,
    parent: Option<&[Entry]>,
) -> Result<Vec<Root>, SourceError> {
    let roots = resolve_roots(spec, base)?;
    // A tree is sorted by path: a file's entry in it is found by binary search, with no
    // map of the whole tree beside it.
    let previous = parent.unwrap_or_default();
    let mut out = Vec::new();
    for (name, abs) in roots {
        let excludes = build_excludes(&abs, &spec.exclude)?;
        let (tx, mut rx) = mpsc::channel(1024);
        let walker = {
            let (name, abs, one_fs) = (name.clone(), abs.clone(), spec.one_file_system);
            tokio::task::spawn_blocking(move || walk(name, abs, excludes, one_fs, tx))
        };
        while let Some(found) = rx.recv().await {
            match found {
                Found::Warning(w) => writer.warn(w),
                Found::Entry { entry, source } if entry.kind == EntryKind::File => {
                    let before = previous
                        .binary_search_by(|e| e.path.as_str().cmp(entry.path.as_str()))
                        .ok()
                        .map(|i| &previous[i]);
                    add_file(writer, entry, source, before).await?;
                }
                Found::Entry { entry, .. } => writer.add_entry(entry),
            }
        }
        walker.await.map_err(|e| SourceError::Path {
            path: abs.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        out.push(Root {
            name,
            source: abs.display().to_string(),
        });
    }
    Ok(out)
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
            writer.add_unchanged(Entry {
                chunks: b.chunks.clone(),
                digest: b.digest,
                ..entry
            });
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
