//! How every stored object except `config` is encoded: compressed, then (optionally)
//! encrypted with XChaCha20-Poly1305, and how chunk ids are computed.
//!
//! ```text
//! body   = 0x00 || plaintext              (stored raw: compression did not help)
//!        | 0x01 || zstd_frame(plaintext)
//! stored = body                                       (unencrypted repository)
//!        | nonce[24] || aead(body, aad) (with tag)     (encrypted repository)
//! ```
//! The associated data binds a ciphertext to its place: a chunk's id for a chunk, the object
//! kind (`index`, `snapshot`, `pack-header`, `lock`, `config`) otherwise, so a blob cannot be
//! swapped for another without the swap being detected.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::id::Id;

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
pub const KEY_CHECK_PLAINTEXT: &[u8] = b"backstop repository key check v1";

/// Argon2id parameters, stored in the repository config so that any reader derives the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub algorithm: String,
    pub salt: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    pub fn new_random() -> Self {
        Self {
            algorithm: "argon2id".into(),
            salt: hex::encode(rand::random::<[u8; 16]>()),
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// The two secrets derived from the user's key: one encrypts, one names chunks.
#[derive(Clone)]
pub struct Keys {
    aead: XChaCha20Poly1305,
    id_key: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl Keys {
    /// Derives the keys from the user's secret (the content of the key file or variable).
    pub fn derive(secret: &[u8], kdf: &KdfParams) -> Result<Self, String> {
        if kdf.algorithm != "argon2id" {
            return Err(format!("unknown key derivation `{}`", kdf.algorithm));
        }
        let salt = hex::decode(&kdf.salt).map_err(|_| "kdf salt is not hex".to_string())?;
        let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
            .map_err(|e| format!("kdf parameters: {e}"))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut master = [0u8; 32];
        argon
            .hash_password_into(secret, &salt, &mut master)
            .map_err(|e| format!("kdf: {e}"))?;
        let data_key = hmac_sha256(&master, b"backstop-v1 data key");
        Ok(Self {
            aead: XChaCha20Poly1305::new((&data_key).into()),
            id_key: hmac_sha256(&master, b"backstop-v1 chunk id key"),
        })
    }
}

/// Encodes and decodes objects for one repository.
#[derive(Debug, Clone)]
pub struct Codec {
    keys: Option<Keys>,
    zstd_level: i32,
}

impl Codec {
    pub fn new(keys: Option<Keys>, zstd_level: i32) -> Self {
        Self { keys, zstd_level }
    }

    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// SHA-256 of the plaintext, or HMAC-SHA-256 under the id key when encrypted, so that
    /// ids reveal nothing about content to someone without the key.
    pub fn chunk_id(&self, plaintext: &[u8]) -> Id {
        match &self.keys {
            None => Id::sha256(plaintext),
            Some(keys) => Id(hmac_sha256(&keys.id_key, plaintext)),
        }
    }

    pub fn encode(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let compressed = if looks_incompressible(plaintext, self.zstd_level) {
            None
        } else {
            with_compressor(self.zstd_level, |c| c.compress(plaintext).ok())
        };
        let body = match compressed {
            Some(c) if c.len() < plaintext.len() => prefixed(ZSTD, &c),
            _ => prefixed(RAW, plaintext),
        };
        match &self.keys {
            None => body,
            Some(keys) => {
                let nonce: [u8; NONCE_LEN] = rand::random();
                let sealed = keys
                    .aead
                    .encrypt(XNonce::from_slice(&nonce), Payload { msg: &body, aad })
                    .expect("encryption of an in-memory buffer cannot fail");
                let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                out
            }
        }
    }

    /// The inverse of [`Codec::encode`]; the error says what failed, not where (callers add
    /// the object key).
    pub fn decode(&self, stored: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        // One buffer per object where possible: decrypted in place, and a raw body shifted
        // down by its tag byte rather than copied (restores read gigabytes through here).
        let mut opened;
        let body: &[u8] = match &self.keys {
            None => stored,
            Some(keys) => {
                if stored.len() < NONCE_LEN + TAG_LEN + 1 {
                    return Err("too short to be an encrypted object".into());
                }
                let (nonce, sealed) = stored.split_at(NONCE_LEN);
                let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
                opened = ciphertext.to_vec();
                keys.aead
                    .decrypt_in_place_detached(
                        XNonce::from_slice(nonce),
                        aad,
                        &mut opened,
                        chacha20poly1305::Tag::from_slice(tag),
                    )
                    .map_err(|_| "authentication failed (corrupt, or not written with this key)")?;
                if opened.first() == Some(&RAW) {
                    opened.remove(0);
                    return Ok(opened);
                }
                &opened
            }
        };
        match body.split_first() {
            Some((&RAW, rest)) => Ok(rest.to_vec()),
            Some((&ZSTD, rest)) => decompress(rest),
            Some((other, _)) => Err(format!("unknown compression byte {other:#04x}")),
            None => Err("empty object".into()),
        }
    }
}

thread_local! {
    /// One zstd compression context per thread and level, reused: making a context per chunk
    /// (allocating and clearing its tables) cost as much as compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> Option<T>,
) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        f(&mut slot.as_mut()?.1)
    })
}

/// Samples of this size are tried before a chunk is compressed whole.
const SAMPLE: usize = 8 << 10;

/// Whether compressing `data` is not worth trying: each sample (the start, and the middle of
/// a larger chunk) saves under 3% when compressed. Random or already-compressed data then
/// costs two small trial compressions instead of a whole one whose result would be thrown
/// away. Data shorter than a few samples is always tried whole.
fn looks_incompressible(data: &[u8], level: i32) -> bool {
    if data.len() < 4 * SAMPLE {
        return false;
    }
    let middle = data.len() / 2;
    [&data[..SAMPLE], &data[middle..middle + SAMPLE]]
        .into_iter()
        .all(|sample| {
            with_compressor(level, |c| c.compress(sample).ok())
                .is_some_and(|c| c.len() * 100 > sample.len() * 97)
        })
}

/// Decompresses a zstd frame into a buffer of its recorded size when the frame says it (the
/// writer always records it), else grows one as the stream goes.
fn decompress(frame: &[u8]) -> Result<Vec<u8>, String> {
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_OBJECT => DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
            }
            let decompressor = slot.as_mut().expect("made above");
            decompressor
                .decompress(frame, size as usize)
                .map_err(|e| format!("zstd: {e}"))
        }),
        _ => zstd::stream::decode_all(frame).map_err(|e| format!("zstd: {e}")),
    }
}

/// No chunk or object is anywhere near this; a frame claiming more is decoded as a stream.
const MAX_OBJECT: u64 = 1 << 30;

fn prefixed(tag: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(tag);
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_data_is_stored_raw_without_a_whole_trial_and_text_is_compressed() {
        let codec = Codec::new(None, 3);
        let mut random = vec![0u8; 1 << 20];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
        assert!(looks_incompressible(&random, 3));
        let stored = codec.encode(&random, b"x");
        assert_eq!(stored[0], RAW);
        assert_eq!(codec.decode(&stored, b"x").unwrap(), random);

        let text: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("line {i} of a log that repeats itself\n").into_bytes())
            .collect();
        assert!(!looks_incompressible(&text, 3));
        let stored = codec.encode(&text, b"x");
        assert_eq!(stored[0], ZSTD);
        assert!(stored.len() < text.len() / 4);
        assert_eq!(codec.decode(&stored, b"x").unwrap(), text);

        // Random at the sampled places but text elsewhere is still tried whole when one
        // sample compresses; small inputs are always tried whole.
        let mut mixed = text[..1 << 19].to_vec();
        mixed.extend_from_slice(&random[..1 << 19]);
        assert!(!looks_incompressible(&mixed, 3));
        assert!(!looks_incompressible(&random[..16 << 10], 3));
    }

    #[test]
    fn reused_contexts_give_the_same_frames_at_each_level() {
        let text = b"abcabcabcabc some text some text some text".repeat(100);
        for level in [1, 3, 19, 3] {
            let frame = with_compressor(level, |c| c.compress(&text).ok()).unwrap();
            assert_eq!(
                frame,
                zstd::bulk::compress(&text, level).unwrap(),
                "level {level}"
            );
            assert_eq!(decompress(&frame).unwrap(), text);
        }
    }

    fn test_kdf() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            ..KdfParams::new_random()
        }
    }

    #[test]
    fn plain_round_trip_compresses_when_it_helps() {
        let c = Codec::new(None, 3);
        let text = b"hello hello hello hello hello hello hello hello".repeat(20);
        let stored = c.encode(&text, b"");
        assert_eq!(stored[0], ZSTD);
        assert!(stored.len() < text.len());
        assert_eq!(c.decode(&stored, b"").unwrap(), text);
        let noise: Vec<u8> = (0..1000).map(|_| rand::random()).collect();
        let stored = c.encode(&noise, b"");
        assert_eq!(stored[0], RAW);
        assert_eq!(c.decode(&stored, b"").unwrap(), noise);
    }

    #[test]
    fn encrypted_round_trip_detects_tampering_wrong_aad_and_wrong_key() {
        let kdf = test_kdf();
        let c = Codec::new(Some(Keys::derive(b"secret", &kdf).unwrap()), 3);
        let stored = c.encode(b"payload", b"chunk-1");
        assert_eq!(c.decode(&stored, b"chunk-1").unwrap(), b"payload");
        assert!(c.decode(&stored, b"chunk-2").is_err());
        let mut flipped = stored.clone();
        flipped[30] ^= 1;
        assert!(c.decode(&flipped, b"chunk-1").is_err());
        let other = Codec::new(Some(Keys::derive(b"other", &kdf).unwrap()), 3);
        assert!(other.decode(&stored, b"chunk-1").is_err());
    }

    #[test]
    fn keyed_chunk_ids_differ_from_plain_sha256() {
        let keyed = Codec::new(Some(Keys::derive(b"secret", &test_kdf()).unwrap()), 3);
        let plain = Codec::new(None, 3);
        assert_eq!(plain.chunk_id(b"x"), Id::sha256(b"x"));
        assert_ne!(keyed.chunk_id(b"x"), Id::sha256(b"x"));
        assert_eq!(keyed.chunk_id(b"x"), keyed.chunk_id(b"x"));
    }
}
