//! Packs: many encoded chunks in one object, so object storage sees few large objects.
//!
//! ```text
//! pack   = blob* || header || header_length (u32, little endian)
//! header = encode(JSON PackHeader, aad "pack-header")
//! id     = SHA-256(pack)            key: data/<first two hex digits>/<id>
//! ```
//! The header repeats what the index says about the pack, so the index can be rebuilt from
//! the packs alone.

use serde::{Deserialize, Serialize};

use super::config::RepoConfig;
use super::crypto::Codec;
use super::id::Id;

pub const HEADER_AAD: &[u8] = b"pack-header";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobEntry {
    pub id: Id,
    /// Position of the encoded blob in the pack.
    pub offset: u64,
    /// Length of the encoded blob (what is stored).
    pub length: u64,
    /// Length of the chunk's plaintext.
    pub raw_length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackHeader {
    pub version: u32,
    pub blobs: Vec<BlobEntry>,
}

/// A pack being filled.
#[derive(Debug, Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    blobs: Vec<BlobEntry>,
    /// The capacity each pack's buffer starts with (see [`PackBuilder::with_capacity`]).
    reserve: usize,
}

/// A finished pack, ready to upload.
#[derive(Debug)]
pub struct SealedPack {
    pub id: Id,
    pub bytes: bytes::Bytes,
    pub blobs: Vec<BlobEntry>,
}

impl PackBuilder {
    /// A builder whose packs start with room for `bytes`: a pack filled to its target size
    /// is then never reallocated on the way (a growing `Vec` doubles, copying what it holds
    /// and, past the target, reserving twice the pack).
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            blobs: Vec::new(),
            reserve: bytes,
        }
    }

    /// A builder for `config`'s packs, with room for a whole one: a pack closes once it
    /// reaches its target size, so it holds at most that plus one encoded chunk of the
    /// largest size (compression's worst case, nonce and tag) and its header.
    pub fn for_repository(config: &RepoConfig) -> Self {
        let chunk = config.chunker.max_size as usize;
        Self::with_capacity(config.pack_size as usize + chunk + chunk / 128 + (64 << 10))
    }

    pub fn add(&mut self, id: Id, encoded: &[u8], raw_length: u64) {
        self.blobs.push(BlobEntry {
            id,
            offset: self.buf.len() as u64,
            length: encoded.len() as u64,
            raw_length,
        });
        self.buf.extend_from_slice(encoded);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Takes the pack out, leaving an empty builder behind.
    pub fn take(&mut self) -> PackBuilder {
        std::mem::replace(self, PackBuilder::with_capacity(self.reserve))
    }

    pub fn seal(mut self, codec: &Codec) -> SealedPack {
        self.buf.extend_from_slice(&tail(codec, &self.blobs));
        SealedPack {
            id: Id::sha256(&self.buf),
            bytes: self.buf.into(),
            blobs: self.blobs,
        }
    }
}

/// What ends a pack whose blobs are `blobs`: its encoded header and the header's length.
pub fn tail(codec: &Codec, blobs: &[BlobEntry]) -> Vec<u8> {
    let header = PackHeader {
        version: 1,
        blobs: blobs.to_vec(),
    };
    let json = serde_json::to_vec(&header).expect("pack headers serialise");
    let mut tail = codec.encode(&json, HEADER_AAD);
    let length = tail.len() as u32;
    tail.extend_from_slice(&length.to_le_bytes());
    tail
}

/// Reads the header of a whole pack.
pub fn parse_header(codec: &Codec, pack: &[u8]) -> Result<PackHeader, String> {
    header_in_tail(codec, pack, 0, pack.len() as u64).expect("a whole pack holds its header")
}

/// Reads the header of a pack of `size` bytes from its last bytes, `tail`, which start at
/// `tail_start`: `None` when the header (as the trailer gives its length) begins before them.
pub fn header_in_tail(
    codec: &Codec,
    tail: &[u8],
    tail_start: u64,
    size: u64,
) -> Option<Result<PackHeader, String>> {
    if size < 4 {
        return Some(Err("too short to be a pack".into()));
    }
    let trailer: [u8; 4] = tail.get(tail.len().checked_sub(4)?..)?.try_into().ok()?;
    let len = match header_length(trailer, size) {
        Ok(len) => len,
        Err(e) => return Some(Err(e)),
    };
    let body = size - 4 - len;
    let from = usize::try_from(body.checked_sub(tail_start)?).ok()?;
    Some(decode_header(codec, &tail[from..tail.len() - 4], body))
}

/// The header's length from a pack's last 4 bytes, checked against the pack's size: the
/// header lies in the `length` bytes before those 4.
pub fn header_length(trailer: [u8; 4], pack_size: u64) -> Result<u64, String> {
    let len = u64::from(u32::from_le_bytes(trailer));
    if pack_size < 4 {
        return Err("too short to be a pack".into());
    }
    if len > pack_size - 4 {
        return Err(format!("header length {len} exceeds the pack"));
    }
    Ok(len)
}

/// Decodes a pack's header (its stored bytes), checking that every blob lies within the
/// first `body` bytes of the pack, before the header.
pub fn decode_header(codec: &Codec, stored: &[u8], body: u64) -> Result<PackHeader, String> {
    let json = codec.decode(stored, HEADER_AAD)?;
    let header: PackHeader =
        serde_json::from_slice(&json).map_err(|e| format!("pack header: {e}"))?;
    if header.version > 1 {
        return Err(format!(
            "pack header version {} is newer than this backstop reads",
            header.version
        ));
    }
    if header
        .blobs
        .iter()
        .any(|b| b.offset.checked_add(b.length).is_none_or(|end| end > body))
    {
        return Err("pack header points past the blobs".into());
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A builder made with room for a whole pack fills it in place, and so does the builder
    /// `take` leaves behind.
    #[test]
    fn a_pack_filled_to_its_reserve_is_never_reallocated() {
        let codec = Codec::new(None, 3);
        let mut b = PackBuilder::with_capacity(64 << 10);
        for round in 0..2 {
            let start = b.buf.as_ptr();
            for i in 0u32..60 {
                let data = vec![i as u8; 1000];
                b.add(Id::sha256(&data), &data, 1000);
            }
            assert_eq!(b.buf.as_ptr(), start, "round {round}: the pack moved");
            assert_eq!(b.buf.capacity(), 64 << 10);
            let full = b.take();
            assert_eq!(full.len(), 60_000);
            assert!(b.is_empty());
            assert_eq!(full.seal(&codec).blobs.len(), 60);
        }
    }

    #[test]
    fn sealed_pack_header_round_trips_and_id_is_content_hash() {
        let codec = Codec::new(None, 3);
        let mut b = PackBuilder::default();
        let one = codec.encode(b"one", b"");
        let two = codec.encode(b"two two", b"");
        b.add(Id::sha256(b"one"), &one, 3);
        b.add(Id::sha256(b"two two"), &two, 7);
        let sealed = b.seal(&codec);
        assert_eq!(sealed.id, Id::sha256(&sealed.bytes));
        let header = parse_header(&codec, &sealed.bytes).unwrap();
        assert_eq!(header.blobs, sealed.blobs);
        let second = header.blobs[1];
        let stored =
            &sealed.bytes[second.offset as usize..(second.offset + second.length) as usize];
        assert_eq!(codec.decode(stored, b"").unwrap(), b"two two");
        assert!(parse_header(&codec, &sealed.bytes[..sealed.bytes.len() - 1]).is_err());
    }
}
