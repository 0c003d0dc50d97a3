//! The `config` object: the one plaintext JSON object, read first, naming the format version
//! and everything a reader needs to decode the rest.

use serde::{Deserialize, Serialize};

use super::chunker::ChunkerParams;
use super::crypto::KdfParams;
use super::id::Id;

pub const FORMAT_NAME: &str = "backstop-repository";
/// The version new repositories are created with, and the newest this build reads. Versions
/// 1 (keyed chunk ids over the plaintext), 2 (no `hmac-sha256` key derivation) and 3 (no
/// `xaes-256-gcm` encryption) are still read and written as they are.
pub const FORMAT_VERSION: u32 = 4;
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Pack headers, index objects and snapshots are at version 1 in every format version.
pub const OBJECT_VERSION: u32 = 1;
pub const DEFAULT_PACK_SIZE: u64 = 16 * 1024 * 1024;
/// Level 2: on the mixed benchmark data set (docs/benchmarks.md) it stores within 1% of
/// level 3's size, for about 17% less CPU over a whole backup.
pub const DEFAULT_ZSTD_LEVEL: i32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    pub id: Id,
    pub created: jiff::Timestamp,
    pub chunker: ChunkerParams,
    pub compression: Compression,
    /// Target size of a pack in bytes; packs are closed once they reach it.
    pub pack_size: u64,
    pub encryption: Option<Encryption>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    pub algorithm: String,
    /// The level writers use by default; readers do not need it.
    pub level: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    pub algorithm: String,
    pub kdf: KdfParams,
    /// `KEY_CHECK_PLAINTEXT` encoded with the derived keys (aad `config`), in hex: a wrong key
    /// is told apart from a corrupt object before anything else is read.
    pub key_check: String,
}

/// Reads the version before anything else, so a newer format is refused with a clear
/// message instead of a confusing parse error.
pub fn peek_version(bytes: &[u8]) -> Result<u32, String> {
    #[derive(Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if head.format != FORMAT_NAME {
        return Err(format!("format is `{}`, not `{FORMAT_NAME}`", head.format));
    }
    Ok(head.version)
}
