//! A local directory. `put` writes `<key>.tmp-<random>`, fsyncs it, renames it over the final
//! name and fsyncs the directory, so a crash leaves either the old state or the whole object.
//! Temporary files are never listed; a crash can leave one behind, which `list` ignores and
//! `leftovers` names (prune removes it once it is old enough not to be a write in progress).

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{range_error, validate_key, Leftover, ObjectInfo, Storage, StorageError};
use crate::direct_io::DirectWriter;

const TEMP_MARKER: &str = ".tmp-";
/// Objects of at least this size (packs) are written with direct I/O (see `direct_io`): they
/// are written once and read back rarely, so they need not pass through the page cache.
const DIRECT_WRITE_MIN: usize = 1 << 20;
/// The block an object is hashed in when it is read back to confirm it.
const READ_BACK_BLOCK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    async fn blocking<T: Send + 'static>(
        op: &'static str,
        key: &str,
        f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StorageError::Permanent {
                op,
                key: key.to_string(),
                message: format!("worker failed: {e}"),
            })?
    }
}

fn io_error(op: &'static str, key: &str, e: std::io::Error) -> StorageError {
    match e.kind() {
        ErrorKind::NotFound => StorageError::NotFound { key: key.into() },
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            StorageError::Transient {
                op,
                key: key.into(),
                message: e.to_string(),
            }
        }
        _ => StorageError::Permanent {
            op,
            key: key.into(),
            message: e.to_string(),
        },
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, data.len(), |sink| sink.write(data))
}

/// Which side of a copy failed: reading the file, or writing the object.
enum CopyError {
    Source(std::io::Error),
    Object(std::io::Error),
}

/// Copies the file at `from` into a new object at `path` (as [`write_atomically`]), a block
/// at a time: a spooled pack never passes through memory whole.
fn copy_atomically(path: &Path, from: &Path) -> Result<(), CopyError> {
    let mut source = std::fs::File::open(from).map_err(CopyError::Source)?;
    let length = source.metadata().map_err(CopyError::Source)?.len() as usize;
    let mut read_failed = None;
    let written = write_atomically_with(path, length, |sink| {
        let mut block = vec![0u8; READ_BACK_BLOCK.min(length.max(1))];
        let mut left = length;
        while left > 0 {
            let n = block.len().min(left);
            if let Err(e) = source.read_exact(&mut block[..n]) {
                let kind = e.kind();
                read_failed = Some(e);
                return Err(kind.into());
            }
            sink.write(&block[..n])?;
            left -= n;
        }
        Ok(())
    });
    match (written, read_failed) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(CopyError::Source(e)),
        (Err(e), None) => Err(CopyError::Object(e)),
    }
}

/// Where an object's bytes go on their way to its temporary file.
enum ObjectSink {
    Direct(DirectWriter),
    Buffered(std::fs::File),
}

impl ObjectSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            ObjectSink::Direct(writer) => Ok(writer.write(data)?),
            ObjectSink::Buffered(file) => file.write_all(data),
        }
    }
}

/// Writes an object of `length` bytes, which `fill` writes to the sink it is given, to a
/// temporary file beside `path`, then makes it durable and renames it into place.
fn write_atomically_with(
    path: &Path,
    length: usize,
    fill: impl FnOnce(&mut ObjectSink) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().expect("object paths have a parent");
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().expect("object paths have a name");
    let temp = dir.join(format!(
        "{}{TEMP_MARKER}{:016x}",
        file_name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut sink = if length >= DIRECT_WRITE_MIN {
            ObjectSink::Direct(DirectWriter::create(std::slice::from_ref(&temp))?)
        } else {
            ObjectSink::Buffered(std::fs::File::create(&temp)?)
        };
        fill(&mut sink)?;
        let file = match sink {
            ObjectSink::Direct(writer) => writer.finish()?.0.pop().expect("one file in, one out"),
            ObjectSink::Buffered(file) => file,
        };
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// What a directory walk collects: finished objects, or the temporary files `put` left.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Objects,
    Leftovers,
}

fn list_dir(
    root: &Path,
    dir: &Path,
    prefix: &str,
    want: Want,
    out: &mut Vec<(ObjectInfo, std::fs::Metadata)>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let Some(key) = rel
            .to_str()
            .map(|k| k.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            continue;
        };
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            // Descend only where keys below can still match the prefix.
            let dir_key = format!("{key}/");
            if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                list_dir(root, &path, prefix, want, out)?;
            }
        } else if file_type.is_file()
            && key.starts_with(prefix)
            && key.contains(TEMP_MARKER) == (want == Want::Leftovers)
        {
            let metadata = match entry.metadata() {
                Ok(m) => m,
                // Renamed or removed meanwhile (a writer's temporary file, an object a
                // prune deleted): not there to list.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push((
                ObjectInfo {
                    key,
                    size: metadata.len(),
                },
                metadata,
            ));
        }
    }
    Ok(())
}

impl LocalStorage {
    async fn walk(
        &self,
        prefix: &str,
        want: Want,
    ) -> Result<Vec<(ObjectInfo, std::fs::Metadata)>, StorageError> {
        let root = self.root.clone();
        let p = prefix.to_string();
        let mut found = Self::blocking("list", prefix, move || {
            let mut out = Vec::new();
            list_dir(&root, &root, &p, want, &mut out).map_err(|e| io_error("list", &p, e))?;
            Ok(out)
        })
        .await?;
        found.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        Ok(found)
    }
}

#[async_trait]
impl Storage for LocalStorage {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        validate_key("put", key)?;
        let path = self.path(key);
        let k = key.to_string();
        Self::blocking("put", key, move || {
            write_atomically(&path, &data).map_err(|e| io_error("put", &k, e))
        })
        .await
    }

    async fn put_file(&self, key: &str, from: &Path) -> Result<(), StorageError> {
        validate_key("put", key)?;
        let (path, from) = (self.path(key), from.to_path_buf());
        let k = key.to_string();
        Self::blocking("put", key, move || {
            copy_atomically(&path, &from).map_err(|e| match e {
                CopyError::Source(e) => super::spool_error("put", &k, &from, e),
                CopyError::Object(e) => io_error("put", &k, e),
            })
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        validate_key("get", key)?;
        let path = self.path(key);
        let k = key.to_string();
        Self::blocking("get", key, move || {
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| io_error("get", &k, e))
        })
        .await
    }

    async fn sha256(&self, key: &str) -> Result<([u8; 32], u64), StorageError> {
        validate_key("get", key)?;
        let path = self.path(key);
        let k = key.to_string();
        Self::blocking("get", key, move || {
            let read = || -> std::io::Result<([u8; 32], u64)> {
                use sha2::Digest;
                let mut file = std::fs::File::open(&path)?;
                let mut digest = sha2::Sha256::new();
                let mut block = vec![0u8; READ_BACK_BLOCK];
                let mut length = 0u64;
                loop {
                    match file.read(&mut block) {
                        Ok(0) => return Ok((digest.finalize().into(), length)),
                        Ok(n) => {
                            digest.update(&block[..n]);
                            length += n as u64;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            };
            read().map_err(|e| io_error("get", &k, e))
        })
        .await
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, StorageError> {
        self.get_range_into(key, offset, length, Vec::new())
            .await
            .map(Bytes::from)
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        length: u64,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        validate_key("get", key)?;
        let path = self.path(key);
        let k = key.to_string();
        Self::blocking("get", key, move || {
            let mut file = std::fs::File::open(&path).map_err(|e| io_error("get", &k, e))?;
            let size = file.metadata().map_err(|e| io_error("get", &k, e))?.len();
            if offset.checked_add(length).is_none_or(|end| end > size) {
                return Err(range_error("get", &k, offset, length, size));
            }
            // `read_to_end` fills the spare capacity without zeroing it first.
            buf.clear();
            buf.reserve_exact(length as usize);
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.take(length).read_to_end(&mut buf))
                .map_err(|e| io_error("get", &k, e))?;
            if buf.len() as u64 != length {
                // The file shrank after its size was read.
                return Err(range_error(
                    "get",
                    &k,
                    offset,
                    length,
                    offset + buf.len() as u64,
                ));
            }
            Ok(buf)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let found = self.walk(prefix, Want::Objects).await?;
        Ok(found.into_iter().map(|(info, _)| info).collect())
    }

    async fn leftovers(&self, prefix: &str) -> Result<Vec<Leftover>, StorageError> {
        let found = self.walk(prefix, Want::Leftovers).await?;
        Ok(found
            .into_iter()
            .map(|(info, metadata)| Leftover {
                key: info.key,
                size: info.size,
                // Without a time, it might be a write in progress: count it as new.
                modified: metadata
                    .modified()
                    .unwrap_or_else(|_| std::time::SystemTime::now()),
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key("delete", key)?;
        let path = self.path(key);
        let k = key.to_string();
        Self::blocking("delete", key, move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", &k, e)),
        })
        .await
    }

    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
