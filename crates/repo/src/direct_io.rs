//! Writing a file sequentially with direct I/O (`O_DIRECT`) where the file system allows it.
//!
//! Used for what is written whole, in order, and rarely read back soon: restored files of
//! more than one chunk, and pack objects of a local repository. Their bytes go from an
//! aligned staging buffer to the disk instead of being copied into the page cache; that copy
//! was most of a restore's kernel time and a fifth of a local backup's (on a virtual machine,
//! each page-cache page not touched before also costs a hypervisor fault). A file system that
//! refuses direct I/O (some FUSE and network file systems) gets ordinary writes of the same
//! bytes.
//!
//! Direct I/O needs the buffer, the file offset and the length aligned. The content is staged
//! and written in aligned blocks; the last block is padded with zeros and the file then cut
//! to its real length.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Alignment for direct I/O: the page size, which covers every logical block size of the
/// devices and file systems that allow it.
const ALIGN: usize = 4096;
/// Bytes staged before each write (a multiple of `ALIGN`).
const STAGE: usize = 1 << 20;

/// The same content, written sequentially into one or more files.
pub(crate) struct DirectWriter {
    files: Vec<Sink>,
    /// Never reallocated: `stage[start..start + STAGE]` is aligned (unless a test misaligns
    /// it).
    stage: Vec<u8>,
    start: usize,
    staged: usize,
    /// The file offset of the staged bytes.
    offset: u64,
}

struct Sink {
    file: File,
    path: PathBuf,
    direct: bool,
    /// The end of the furthest write.
    end: u64,
}

/// A failed write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub(crate) struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        std::io::Error::new(e.source.kind(), e)
    }
}

impl DirectWriter {
    /// Creates (or truncates) every file in `paths`. A symlink at a path is never followed:
    /// opening it fails (`O_NOFOLLOW`), so a caller that may meet one removes it first.
    pub fn create(paths: &[PathBuf]) -> Result<Self, WriteError> {
        Self::with_misaligned_stage(paths, 0)
    }

    /// `misalign` > 0 moves the stage off its alignment: tests use it to have direct
    /// writes refused.
    fn with_misaligned_stage(paths: &[PathBuf], misalign: usize) -> Result<Self, WriteError> {
        let files = paths
            .iter()
            .map(|path| Sink::create(path))
            .collect::<Result<Vec<_>, _>>()?;
        let stage = vec![0u8; STAGE + ALIGN + misalign];
        let start = (ALIGN - stage.as_ptr() as usize % ALIGN) % ALIGN + misalign;
        Ok(Self {
            files,
            stage,
            start,
            staged: 0,
            offset: 0,
        })
    }

    /// Appends `data` to every file.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), WriteError> {
        while !data.is_empty() {
            let n = data.len().min(STAGE - self.staged);
            let at = self.start + self.staged;
            self.stage[at..at + n].copy_from_slice(&data[..n]);
            self.staged += n;
            data = &data[n..];
            if self.staged == STAGE {
                self.write_staged(STAGE)?;
                self.offset += STAGE as u64;
                self.staged = 0;
            }
        }
        Ok(())
    }

    /// Writes what is staged and gives the files and their length.
    pub fn finish(mut self) -> Result<(Vec<File>, u64), WriteError> {
        let len = self.offset + self.staged as u64;
        if self.staged > 0 {
            let padded = self.staged.div_ceil(ALIGN) * ALIGN;
            self.stage[self.start + self.staged..self.start + padded].fill(0);
            self.write_staged(self.staged)?;
        }
        let mut files = Vec::with_capacity(self.files.len());
        for sink in self.files {
            // A direct file got its last block padded: cut it to the content.
            if sink.end != len {
                sink.file
                    .set_len(len)
                    .map_err(|source| sink.error(source))?;
            }
            files.push(sink.file);
        }
        Ok((files, len))
    }

    /// Writes the `content` staged bytes at `offset` into every file, direct files up to
    /// the next aligned length (the stage is zeroed up to there).
    fn write_staged(&mut self, content: usize) -> Result<(), WriteError> {
        let padded = content.div_ceil(ALIGN) * ALIGN;
        let block = &self.stage[self.start..self.start + padded];
        for sink in &mut self.files {
            let n = if sink.direct { padded } else { content };
            sink.write_at(&block[..n], self.offset)?;
        }
        Ok(())
    }
}

impl Sink {
    fn create(path: &Path) -> Result<Self, WriteError> {
        let open = |direct: bool| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            let flags = if direct { direct_flag() } else { 0 };
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(flags | libc::O_NOFOLLOW);
            options.open(path)
        };
        let failed = |source| WriteError {
            path: path.to_path_buf(),
            source,
        };
        let direct = direct_flag() != 0;
        let (file, direct) = match open(direct) {
            Ok(file) => (file, direct),
            // The file system does not do direct I/O.
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                (open(false).map_err(failed)?, false)
            }
            Err(source) => return Err(failed(source)),
        };
        Ok(Self {
            file,
            path: path.to_path_buf(),
            direct,
            end: 0,
        })
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), WriteError> {
        self.end = self.end.max(offset + data.len() as u64);
        match self.file.write_all_at(data, offset) {
            // Some file systems accept the flag at open and refuse the write: reopen for
            // ordinary writes and write the same bytes again.
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                use std::os::unix::fs::OpenOptionsExt;
                self.file = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&self.path)
                    .map_err(|source| self.error(source))?;
                self.direct = false;
                self.file
                    .write_all_at(data, offset)
                    .map_err(|source| self.error(source))
            }
            other => other.map_err(|source| self.error(source)),
        }
    }

    fn error(&self, source: std::io::Error) -> WriteError {
        WriteError {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(target_os = "linux")]
fn direct_flag() -> i32 {
    libc::O_DIRECT
}

#[cfg(not(target_os = "linux"))]
fn direct_flag() -> i32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes that differ at every offset.
    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// The test directory is in the checkout, not in /tmp: direct I/O behaves as on the
    /// disk file systems restores go to (tmpfs accepts even unaligned direct writes).
    fn dir() -> tempfile::TempDir {
        tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap()
    }

    fn write_all(writer: &mut DirectWriter, data: &[u8], piece: usize) {
        for part in data.chunks(piece.max(1)) {
            writer.write(part).unwrap();
        }
    }

    #[test]
    fn every_length_is_written_exactly_into_every_copy() {
        let dir = dir();
        for len in [
            0,
            1,
            4095,
            4096,
            4097,
            STAGE - 1,
            STAGE,
            STAGE + 1,
            3 * STAGE + 12345,
        ] {
            let data = content(len);
            let paths = [dir.path().join("a"), dir.path().join("b")];
            let mut writer = DirectWriter::create(&paths).unwrap();
            // Pieces that never line up with the stage or the alignment.
            write_all(&mut writer, &data, 300_001);
            assert!(
                writer.files.iter().all(|f| f.direct),
                "direct I/O is used on this disk"
            );
            let (files, written) = writer.finish().unwrap();
            assert_eq!(written, len as u64);
            assert_eq!(files.len(), 2);
            for path in &paths {
                assert_eq!(
                    std::fs::read(path).unwrap(),
                    data,
                    "{len} bytes into {path:?}"
                );
            }
        }
    }

    #[test]
    fn a_refused_direct_write_is_written_again_without_direct_io() {
        let dir = dir();
        let data = content(2 * STAGE + 777);
        let paths = [dir.path().join("refused")];
        let mut writer = DirectWriter::with_misaligned_stage(&paths, 1).unwrap();
        write_all(&mut writer, &data, 65536);
        assert!(
            !writer.files[0].direct,
            "the misaligned write fell back to ordinary writes"
        );
        let (_, written) = writer.finish().unwrap();
        assert_eq!(written, data.len() as u64);
        assert_eq!(std::fs::read(&paths[0]).unwrap(), data);
    }

    #[test]
    fn a_file_that_cannot_be_created_is_named() {
        let dir = dir();
        let path = dir.path().join("missing-dir").join("file");
        let err = DirectWriter::create(std::slice::from_ref(&path))
            .err()
            .unwrap();
        assert_eq!(err.path, path);
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
