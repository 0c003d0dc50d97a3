//! A pack filled in a temporary file instead of memory, as restic fills its packs: a writer
//! that overlaps filling one pack with uploading the last would otherwise hold two packs'
//! bytes (up to twice the pack size) at once. The file is in a temporary directory (the
//! system's, `TMPDIR`, unless the writer is given one), written through the page cache,
//! hashed as it is written (a pack's id is its SHA-256) and uploaded from the file
//! ([`crate::storage::Storage::put_file`]). It is removed when the sealed pack is dropped,
//! uploaded or not.

use std::io::{BufWriter, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::error::{RepoError, Result};
use crate::format::crypto::Codec;
use crate::format::id::Id;
use crate::format::pack::{tail, BlobEntry};

/// Bytes buffered before each write to the file: small chunks (a tree's, a small file's)
/// are not a system call each.
const WRITE_BUFFER: usize = 256 << 10;

/// A pack being filled. Blocking: every method may write to the file.
#[derive(Debug)]
pub(crate) struct SpooledPack {
    file: BufWriter<NamedTempFile>,
    digest: Sha256,
    blobs: Vec<BlobEntry>,
    len: u64,
}

/// A finished pack in its file, ready to upload.
#[derive(Debug)]
pub(crate) struct SealedSpool {
    pub id: Id,
    pub file: NamedTempFile,
    pub size: u64,
    pub blobs: Vec<BlobEntry>,
}

impl SpooledPack {
    /// A new empty pack in a new temporary file in `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("backstop-pack-")
            .tempfile_in(dir)
            .map_err(|e| RepoError::Write {
                path: format!("a new pack in {}", dir.display()),
                source: e,
            })?;
        Ok(Self {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            digest: Sha256::new(),
            blobs: Vec::new(),
            len: 0,
        })
    }

    pub fn add(&mut self, id: Id, encoded: &[u8], raw_length: u64) -> Result<()> {
        self.write(encoded)?;
        self.blobs.push(BlobEntry {
            id,
            offset: self.len,
            length: encoded.len() as u64,
            raw_length,
        });
        self.len += encoded.len() as u64;
        Ok(())
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Writes the pack's header and trailer and closes its buffer.
    pub fn seal(mut self, codec: &Codec) -> Result<SealedSpool> {
        let tail = tail(codec, &self.blobs);
        self.write(&tail)?;
        let size = self.len + tail.len() as u64;
        let path = self.file.get_ref().path().to_path_buf();
        let file = self.file.into_inner().map_err(|e| RepoError::Write {
            path: path.display().to_string(),
            source: e.into_error(),
        })?;
        Ok(SealedSpool {
            id: Id(self.digest.finalize().into()),
            file,
            size,
            blobs: self.blobs,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.digest.update(bytes);
        self.file.write_all(bytes).map_err(|e| RepoError::Write {
            path: self.file.get_ref().path().display().to_string(),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::{parse_header, PackBuilder};

    /// The same blobs make the same pack, byte for byte, in a file as in memory (unencrypted,
    /// so that the two headers encode alike); its file goes when the sealed pack does.
    #[test]
    fn a_spooled_pack_is_the_pack_built_in_memory_and_its_file_is_removed() {
        let codec = Codec::new(None, 3);
        let dir = tempfile::tempdir().unwrap();
        let mut memory = PackBuilder::default();
        let mut spooled = SpooledPack::new(dir.path()).unwrap();
        for i in 0u32..500 {
            // From a few bytes to past the write buffer.
            let plain = vec![(i % 251) as u8; 1 + (i as usize * 997) % (300 << 10)];
            let id = Id::sha256(&plain);
            let encoded = codec.encode(&plain, &id.0);
            memory.add(id, &encoded, plain.len() as u64);
            spooled.add(id, &encoded, plain.len() as u64).unwrap();
        }
        assert_eq!(spooled.len(), memory.len() as u64);
        let (memory, spooled) = (memory.seal(&codec), spooled.seal(&codec).unwrap());
        let on_disk = std::fs::read(spooled.file.path()).unwrap();
        assert_eq!(on_disk, memory.bytes);
        assert_eq!(spooled.id, memory.id);
        assert_eq!(spooled.size, on_disk.len() as u64);
        assert_eq!(spooled.blobs, memory.blobs);
        assert_eq!(parse_header(&codec, &on_disk).unwrap().blobs, spooled.blobs);
        drop(spooled);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "left behind"
        );
    }
}
