//! How every stored object except `config` is encoded: compressed, then (optionally)
//! encrypted with the repository's [`Cipher`], and how chunk ids are computed.
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

use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::id::Id;
use super::xaes::{Xaes256Gcm, NONCE_LEN, TAG_LEN};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
pub const KEY_CHECK_PLAINTEXT: &[u8] = b"backstop repository key check v1";

/// How the master key is derived from the user's secret, stored in the repository config so
/// that any reader derives the same key (docs/repository-format.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", deny_unknown_fields)]
pub enum KdfParams {
    /// For a secret a person chose: stretched, so that guessing it costs memory and time.
    #[serde(rename = "argon2id")]
    Argon2id {
        salt: String,
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    /// For a key Backstop generated (256 random bits): guessing it is already out of reach,
    /// so stretching would only cost every command 64 MiB and a fraction of a second.
    /// Format version 3 on.
    #[serde(rename = "hmac-sha256")]
    HmacSha256 { salt: String },
}

impl KdfParams {
    /// Argon2id with RFC 9106's second recommended setting (64 MiB, 3 passes, 1 lane).
    pub fn new_random() -> Self {
        Self::Argon2id {
            salt: random_salt(),
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }

    /// The derivation for a key from [`generate_key`]; [`Keys::derive_new`] refuses it for any
    /// other secret.
    pub fn for_generated_key() -> Self {
        Self::HmacSha256 {
            salt: random_salt(),
        }
    }

    /// The format version a repository needs to be read with this derivation.
    pub fn format_version(&self) -> u32 {
        match self {
            Self::Argon2id { .. } => 1,
            Self::HmacSha256 { .. } => 3,
        }
    }
}

fn random_salt() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A new random key as Backstop writes it to a key file: 64 lowercase hex digits (256 bits).
pub fn generate_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether `secret` has the shape of a [`generate_key`] key. Only the shape can be checked;
/// the caller vouches that it was generated.
pub fn is_generated_key(secret: &[u8]) -> bool {
    secret.len() == 64
        && secret
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The authenticated cipher of an encrypted repository, named in its config
/// (`encryption.algorithm`). Both take a random 24-byte nonce per object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// `xchacha20-poly1305`, every format version: the same speed on any CPU, since it needs
    /// no special instructions.
    XChaCha20Poly1305,
    /// `xaes-256-gcm` ([`super::xaes`]), format version 4 on, and what new repositories use:
    /// on CPUs with AES instructions it encrypts several times faster (docs/benchmarks.md).
    Xaes256Gcm,
}

impl Cipher {
    pub const ALL: [Cipher; 2] = [Self::XChaCha20Poly1305, Self::Xaes256Gcm];

    pub fn name(self) -> &'static str {
        match self {
            Self::XChaCha20Poly1305 => "xchacha20-poly1305",
            Self::Xaes256Gcm => "xaes-256-gcm",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The format version a repository needs to be read with this cipher.
    pub fn format_version(self) -> u32 {
        match self {
            Self::XChaCha20Poly1305 => 1,
            Self::Xaes256Gcm => 4,
        }
    }
}

#[derive(Clone)]
enum Aead {
    XChaCha20Poly1305(XChaCha20Poly1305),
    /// Shared: AES's key schedules take about 1 KiB, and a codec is cloned for each chunk
    /// read (`Repository::read_chunk`).
    Xaes256Gcm(Arc<Xaes256Gcm>),
}

/// The two secrets derived from the user's key: one encrypts, one names chunks.
#[derive(Clone)]
pub struct Keys {
    aead: Aead,
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
    /// Derives the keys from the user's secret (the content of the key file or variable),
    /// to encrypt with `cipher`.
    pub fn derive(secret: &[u8], kdf: &KdfParams, cipher: Cipher) -> Result<Self, String> {
        let master = match kdf {
            KdfParams::Argon2id {
                salt,
                memory_kib,
                iterations,
                parallelism,
            } => {
                let params = argon2::Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                    .map_err(|e| format!("kdf parameters: {e}"))?;
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let mut master = [0u8; 32];
                argon
                    .hash_password_into(secret, &decode_salt(salt)?, &mut master)
                    .map_err(|e| format!("kdf: {e}"))?;
                master
            }
            KdfParams::HmacSha256 { salt } => hmac_sha256(&decode_salt(salt)?, secret),
        };
        let data_key = hmac_sha256(&master, b"backstop-v1 data key");
        let aead = match cipher {
            Cipher::XChaCha20Poly1305 => {
                Aead::XChaCha20Poly1305(XChaCha20Poly1305::new((&data_key).into()))
            }
            Cipher::Xaes256Gcm => Aead::Xaes256Gcm(Arc::new(Xaes256Gcm::new(&data_key))),
        };
        Ok(Self {
            aead,
            id_key: hmac_sha256(&master, b"backstop-v1 chunk id key"),
        })
    }

    /// [`Keys::derive`] for a new repository, which also refuses to skip stretching a secret
    /// that is not a generated key: a passphrase must go through Argon2id.
    pub fn derive_new(secret: &[u8], kdf: &KdfParams, cipher: Cipher) -> Result<Self, String> {
        if matches!(kdf, KdfParams::HmacSha256 { .. }) && !is_generated_key(secret) {
            return Err(
                "the hmac-sha256 key derivation is only for a key Backstop generated \
                 (64 hex digits); any other secret needs argon2id"
                    .into(),
            );
        }
        Self::derive(secret, kdf, cipher)
    }
}

fn decode_salt(salt: &str) -> Result<Vec<u8>, String> {
    hex::decode(salt).map_err(|_| "kdf salt is not hex".to_string())
}

/// How an encrypted repository names its chunks, fixed by its format version
/// (docs/repository-format.md §6.2). Unencrypted chunk ids are SHA-256 in every version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedIds {
    /// Version 1: HMAC-SHA-256 over the plaintext, which costs a second pass over the data
    /// wherever its SHA-256 is needed too (a file's digest).
    OverPlaintext,
    /// Version 2 on: HMAC-SHA-256 over the plaintext's SHA-256, so one pass gives both.
    OverSha256,
}

impl KeyedIds {
    pub fn for_format(version: u32) -> Self {
        if version < 2 {
            Self::OverPlaintext
        } else {
            Self::OverSha256
        }
    }
}

/// Encodes and decodes objects for one repository.
#[derive(Debug, Clone)]
pub struct Codec {
    keys: Option<Keys>,
    keyed_ids: KeyedIds,
    zstd_level: i32,
}

impl Codec {
    /// A codec of the current format version.
    pub fn new(keys: Option<Keys>, zstd_level: i32) -> Self {
        Self {
            keys,
            keyed_ids: KeyedIds::OverSha256,
            zstd_level,
        }
    }

    /// The same codec, naming chunks as a repository of format `version` does.
    pub fn for_format(self, version: u32) -> Self {
        Self {
            keyed_ids: KeyedIds::for_format(version),
            ..self
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether `other` names every chunk as this codec does (both unencrypted, or the same id
    /// key and rule): then a chunk keeps its id from one repository to the other.
    pub fn same_chunk_ids(&self, other: &Codec) -> bool {
        match (&self.keys, &other.keys) {
            (None, None) => true,
            (Some(a), Some(b)) => a.id_key == b.id_key && self.keyed_ids == other.keyed_ids,
            _ => false,
        }
    }

    /// Whether `other` stores every chunk byte for byte as this codec does (both unencrypted,
    /// compressing at the same level): then a chunk's stored bytes, once decoded and checked
    /// against its id, are its encoding there too, and need not be compressed again.
    pub fn encodes_as(&self, other: &Codec) -> bool {
        self.keys.is_none() && other.keys.is_none() && self.zstd_level == other.zstd_level
    }

    /// SHA-256 of the plaintext, or when encrypted an HMAC-SHA-256 under the id key, so that
    /// ids reveal nothing about content to someone without the key.
    pub fn chunk_id(&self, plaintext: &[u8]) -> Id {
        self.id_and_maybe_sha256(plaintext).0
    }

    /// The chunk id and the plaintext's SHA-256 (a lone chunk's file digest), hashing the
    /// plaintext once where the format allows it.
    pub fn chunk_id_and_sha256(&self, plaintext: &[u8]) -> (Id, Id) {
        let (id, sha256) = self.id_and_maybe_sha256(plaintext);
        (id, sha256.unwrap_or_else(|| Id::sha256(plaintext)))
    }

    /// The chunk id, and the plaintext's SHA-256 when it was a step of computing the id.
    pub fn id_and_maybe_sha256(&self, plaintext: &[u8]) -> (Id, Option<Id>) {
        match (&self.keys, self.keyed_ids) {
            (None, _) => {
                let sha256 = Id::sha256(plaintext);
                (sha256, Some(sha256))
            }
            (Some(keys), KeyedIds::OverSha256) => {
                let sha256 = Id::sha256(plaintext);
                (Id(hmac_sha256(&keys.id_key, &sha256.0)), Some(sha256))
            }
            (Some(keys), KeyedIds::OverPlaintext) => {
                (Id(hmac_sha256(&keys.id_key, plaintext)), None)
            }
        }
    }

    pub fn encode(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(plaintext, aad, &mut out);
        out
    }

    /// [`Codec::encode`], appending to `out`: compressed and encrypted in that one buffer,
    /// so a reused `out` costs no allocation and no copy between the steps.
    pub fn encode_into(&self, plaintext: &[u8], aad: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        if self.keys.is_some() {
            out.extend_from_slice(&rand::random::<[u8; NONCE_LEN]>());
        }
        let body = out.len();
        out.push(ZSTD);
        let compressed = !looks_incompressible(plaintext, self.zstd_level)
            && with_compressor(self.zstd_level, |c| {
                out.reserve(zstd::zstd_safe::compress_bound(plaintext.len()));
                let mut after_tag = std::io::Cursor::new(&mut *out);
                after_tag.set_position((body + 1) as u64);
                c.compress_to_buffer(plaintext, &mut after_tag).ok()
            })
            .is_some_and(|n| n < plaintext.len());
        if !compressed {
            out.truncate(body);
            out.push(RAW);
            out.extend_from_slice(plaintext);
        }
        if let Some(keys) = &self.keys {
            let (nonce, body) = out[start..].split_at_mut(NONCE_LEN);
            let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().expect("split at NONCE_LEN");
            let tag: [u8; TAG_LEN] = match &keys.aead {
                Aead::XChaCha20Poly1305(aead) => aead
                    .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, body)
                    .expect("encryption of an in-memory buffer cannot fail")
                    .into(),
                Aead::Xaes256Gcm(aead) => aead.seal_in_place(nonce, aad, body),
            };
            out.extend_from_slice(&tag);
        }
    }

    /// The inverse of [`Codec::encode`]; the error says what failed, not where (callers add
    /// the object key).
    pub fn decode(&self, stored: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.decode_into(stored, aad, &mut out)?;
        Ok(out)
    }

    /// [`Codec::decode`] into `out`, replacing its content: a reused `out` (restores decode
    /// gigabytes through here) costs no allocation, and fresh buffers cost page faults.
    pub fn decode_into(&self, stored: &[u8], aad: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        let Some(keys) = &self.keys else {
            return decode_body(stored, out);
        };
        if stored.len() < NONCE_LEN + TAG_LEN + 1 {
            return Err("too short to be an encrypted object".into());
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        // Decrypted in `out` itself; a raw body is then shifted down by its tag byte, and
        // only a compressed one needs a second buffer.
        out.extend_from_slice(ciphertext);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("split at TAG_LEN from the end");
        let opened = match &keys.aead {
            Aead::XChaCha20Poly1305(aead) => aead
                .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, out, tag.into())
                .is_ok(),
            Aead::Xaes256Gcm(aead) => aead.open_in_place(nonce, aad, out, tag).is_ok(),
        };
        if !opened {
            return Err("authentication failed (corrupt, or not written with this key)".into());
        }
        match out.first() {
            Some(&RAW) => {
                out.remove(0);
                Ok(())
            }
            _ => DECODE_SCRATCH.with(|cell| {
                // Decompressed into the thread's spare buffer, which then takes the
                // ciphertext's: a caller that reuses `out` allocates nothing per object.
                let mut plain = cell.take();
                plain.clear();
                decode_body(out, &mut plain)?;
                std::mem::swap(out, &mut plain);
                if plain.capacity() <= SCRATCH_KEPT {
                    cell.replace(plain);
                }
                Ok(())
            }),
        }
    }
}

/// The body of an object (§6.1: a tag byte, then raw or zstd data) into `out`.
fn decode_body(body: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    match body.split_first() {
        Some((&RAW, rest)) => {
            out.extend_from_slice(rest);
            Ok(())
        }
        Some((&ZSTD, rest)) => decompress_into(rest, out),
        Some((other, _)) => Err(format!("unknown compression byte {other:#04x}")),
        None => Err("empty object".into()),
    }
}

thread_local! {
    /// One zstd compression context per thread and level, reused: making a context per chunk
    /// (allocating and clearing its tables) cost as much as compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// The second buffer of [`Codec::decode_into`] for encrypted, compressed objects.
    static DECODE_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A spare decode buffer larger than this (a chunk's maximum) is not kept.
const SCRATCH_KEPT: usize = 4 << 20;

/// Frees this thread's spare decode buffer ([`Codec::decode_into`]). For work that decodes a
/// burst of chunks on a pool thread it may not come back to (a copy's run): otherwise every
/// idle thread of the pool keeps a buffer of up to a chunk's maximum.
pub fn release_decode_scratch() {
    DECODE_SCRATCH.with(|cell| drop(cell.take()));
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

/// Decompresses a zstd frame into `out` (empty), sized once from the frame's recorded size
/// when it has one (the writer always records it), else grown as the stream goes.
fn decompress_into(frame: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_OBJECT => DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
            }
            let decompressor = slot.as_mut().expect("made above");
            out.reserve_exact(size as usize);
            let n = decompressor
                .decompress_to_buffer(frame, out)
                .map_err(|e| format!("zstd: {e}"))?;
            if n as u64 != size {
                return Err(format!("zstd: frame says {size} bytes, holds {n}"));
            }
            Ok(())
        }),
        _ => zstd::stream::copy_decode(frame, out).map_err(|e| format!("zstd: {e}")),
    }
}

/// No chunk or object is anywhere near this; a frame claiming more is decoded as a stream.
const MAX_OBJECT: u64 = 1 << 30;

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
            let mut out = Vec::new();
            decompress_into(&frame, &mut out).unwrap();
            assert_eq!(out, text);
        }
    }

    fn test_kdf() -> KdfParams {
        KdfParams::Argon2id {
            salt: random_salt(),
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn only_unencrypted_codecs_of_one_level_encode_alike_and_then_byte_for_byte() {
        let text = b"the same line of text, again and again. ".repeat(2_000);
        let noise: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (a, b) = (Codec::new(None, 3), Codec::new(None, 3));
        assert!(a.encodes_as(&b));
        for plain in [&text[..], &noise[..]] {
            assert_eq!(a.encode(plain, b"x"), b.encode(plain, b"x"));
        }
        assert!(!a.encodes_as(&Codec::new(None, 1)));
        let keys = Keys::derive_new(
            generate_key().as_bytes(),
            &KdfParams::for_generated_key(),
            Cipher::Xaes256Gcm,
        );
        let encrypted = Codec::new(Some(keys.unwrap()), 3);
        assert!(!a.encodes_as(&encrypted));
        assert!(!encrypted.encodes_as(&a));
        assert!(!encrypted.encodes_as(&encrypted.clone()));
    }

    #[test]
    fn a_generated_key_is_derived_by_one_hmac_as_documented() {
        let kdf = KdfParams::for_generated_key();
        let KdfParams::HmacSha256 { salt } = &kdf else {
            panic!("{kdf:?}")
        };
        let key = generate_key();
        assert!(is_generated_key(key.as_bytes()), "{key}");
        let keys = Keys::derive_new(key.as_bytes(), &kdf, Cipher::Xaes256Gcm).unwrap();
        // docs/repository-format.md §5: master = HMAC-SHA-256(key = salt, message = secret).
        let master = hmac_sha256(&hex::decode(salt).unwrap(), key.as_bytes());
        assert_eq!(
            keys.id_key,
            hmac_sha256(&master, b"backstop-v1 chunk id key")
        );
        let again = Keys::derive(key.as_bytes(), &kdf, Cipher::Xaes256Gcm).unwrap();
        let stored = Codec::new(Some(keys), 3).encode(b"payload", b"x");
        assert_eq!(
            Codec::new(Some(again), 3).decode(&stored, b"x").unwrap(),
            b"payload"
        );
        assert_eq!(kdf.format_version(), 3);
        assert_eq!(KdfParams::new_random().format_version(), 1);
    }

    #[test]
    fn only_a_generated_key_skips_stretching() {
        let hmac = KdfParams::for_generated_key();
        let generated = generate_key();
        for passphrase in [
            &b"correct horse battery staple"[..],
            // Hex, but upper case or one digit short: not what Backstop writes.
            &generated.to_uppercase().into_bytes(),
            &generated.as_bytes()[1..],
        ] {
            let err = Keys::derive_new(passphrase, &hmac, Cipher::Xaes256Gcm).unwrap_err();
            assert!(err.contains("needs argon2id"), "{err}");
            assert!(Keys::derive_new(passphrase, &test_kdf(), Cipher::Xaes256Gcm).is_ok());
        }
        assert!(Keys::derive_new(generated.as_bytes(), &test_kdf(), Cipher::Xaes256Gcm).is_ok());
    }

    #[test]
    fn kdf_params_are_stored_with_their_algorithm_and_nothing_unknown() {
        let hmac = serde_json::to_value(KdfParams::for_generated_key()).unwrap();
        assert_eq!(hmac["algorithm"], "hmac-sha256");
        assert_eq!(hmac.as_object().unwrap().len(), 2, "{hmac}");
        let stored = r#"{"algorithm": "argon2id", "salt": "a97a909c667625bd8dcea0ad0a0059a8",
            "memory_kib": 65536, "iterations": 3, "parallelism": 1}"#;
        let argon: KdfParams = serde_json::from_str(stored).unwrap();
        assert_eq!(
            argon,
            KdfParams::Argon2id {
                salt: "a97a909c667625bd8dcea0ad0a0059a8".into(),
                memory_kib: 65536,
                iterations: 3,
                parallelism: 1
            }
        );
        for (bad, says) in [
            (r#"{"algorithm": "scrypt", "salt": "00"}"#, "scrypt"),
            (r#"{"algorithm": "argon2id", "salt": "00"}"#, "memory_kib"),
            (
                r#"{"algorithm": "hmac-sha256", "salt": "00", "iterations": 3}"#,
                "iterations",
            ),
        ] {
            let err = serde_json::from_str::<KdfParams>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn reused_buffers_encode_and_decode_like_fresh_ones() {
        let kdf = test_kdf();
        let keyed =
            Cipher::ALL.map(|c| Codec::new(Some(Keys::derive(b"secret", &kdf, c).unwrap()), 3));
        let text = b"some text that compresses, some text that compresses".repeat(50);
        let noise: Vec<u8> = (0..5000).map(|_| rand::random()).collect();
        for codec in [Codec::new(None, 3)].into_iter().chain(keyed) {
            // Appending after what a buffer holds, and decoding over a larger old content.
            let mut stored = b"prefix".to_vec();
            codec.encode_into(&text, b"a", &mut stored);
            let first = stored.len();
            codec.encode_into(&noise, b"b", &mut stored);
            assert_eq!(&stored[..6], b"prefix");
            let mut out = vec![7u8; 100_000];
            codec
                .decode_into(&stored[6..first], b"a", &mut out)
                .unwrap();
            assert_eq!(out, text);
            codec.decode_into(&stored[first..], b"b", &mut out).unwrap();
            assert_eq!(out, noise);
            assert_eq!(codec.decode(&codec.encode(b"", b"c"), b"c").unwrap(), b"");
            if codec.is_encrypted() {
                assert!(codec.decode_into(&stored[first..], b"a", &mut out).is_err());
            }
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
    fn encrypted_round_trip_detects_tampering_wrong_aad_wrong_key_and_wrong_cipher() {
        let kdf = test_kdf();
        for cipher in Cipher::ALL {
            let c = Codec::new(Some(Keys::derive(b"secret", &kdf, cipher).unwrap()), 3);
            let stored = c.encode(b"payload", b"chunk-1");
            assert_eq!(c.decode(&stored, b"chunk-1").unwrap(), b"payload");
            assert!(c.decode(&stored, b"chunk-2").is_err());
            // A byte of the nonce's first half (XAES derives the object's key from it), of
            // its second half, of the ciphertext and of the tag.
            for at in [3, 20, 30, stored.len() - 1] {
                let mut flipped = stored.clone();
                flipped[at] ^= 1;
                assert!(c.decode(&flipped, b"chunk-1").is_err(), "{cipher:?} {at}");
            }
            let other = Codec::new(Some(Keys::derive(b"other", &kdf, cipher).unwrap()), 3);
            assert!(other.decode(&stored, b"chunk-1").is_err());
        }
        // The same secret under the other cipher: not readable, but the same chunk ids.
        let [a, b] =
            Cipher::ALL.map(|c| Codec::new(Some(Keys::derive(b"secret", &kdf, c).unwrap()), 3));
        assert!(a.decode(&b.encode(b"payload", b"x"), b"x").is_err());
        assert!(b.decode(&a.encode(b"payload", b"x"), b"x").is_err());
        assert_eq!(a.chunk_id(b"payload"), b.chunk_id(b"payload"));
        assert!(a.same_chunk_ids(&b));
    }

    #[test]
    fn ciphers_are_named_in_the_config_and_need_their_format_version() {
        for cipher in Cipher::ALL {
            assert_eq!(Cipher::from_name(cipher.name()), Some(cipher));
        }
        assert_eq!(Cipher::Xaes256Gcm.name(), "xaes-256-gcm");
        assert_eq!(Cipher::XChaCha20Poly1305.name(), "xchacha20-poly1305");
        assert_eq!(Cipher::from_name("aes-256-gcm"), None);
        assert_eq!(Cipher::Xaes256Gcm.format_version(), 4);
        assert_eq!(Cipher::XChaCha20Poly1305.format_version(), 1);
    }

    #[test]
    fn keyed_chunk_ids_differ_from_plain_sha256() {
        let keyed = Codec::new(
            Some(Keys::derive(b"secret", &test_kdf(), Cipher::Xaes256Gcm).unwrap()),
            3,
        );
        let plain = Codec::new(None, 3);
        assert_eq!(plain.chunk_id(b"x"), Id::sha256(b"x"));
        assert_ne!(keyed.chunk_id(b"x"), Id::sha256(b"x"));
        assert_eq!(keyed.chunk_id(b"x"), keyed.chunk_id(b"x"));
    }

    #[test]
    fn keyed_ids_follow_the_format_version_and_give_the_sha256_alongside() {
        let keys = Keys::derive(b"secret", &test_kdf(), Cipher::Xaes256Gcm).unwrap();
        let sha = Id::sha256(b"chunk");
        let v1 = Codec::new(Some(keys.clone()), 3).for_format(1);
        let v2 = Codec::new(Some(keys.clone()), 3).for_format(2);
        assert_eq!(
            v1.chunk_id(b"chunk"),
            Id(hmac_sha256(&keys.id_key, b"chunk"))
        );
        assert_eq!(v2.chunk_id(b"chunk"), Id(hmac_sha256(&keys.id_key, &sha.0)));
        assert_ne!(v1.chunk_id(b"chunk"), v2.chunk_id(b"chunk"));
        // Version 1 computes the SHA-256 separately; version 2 gets it from the id's first step.
        assert_eq!(v1.id_and_maybe_sha256(b"chunk").1, None);
        assert_eq!(v2.id_and_maybe_sha256(b"chunk").1, Some(sha));
        for codec in [&v1, &v2, &Codec::new(None, 3)] {
            assert_eq!(
                codec.chunk_id_and_sha256(b"chunk"),
                (codec.chunk_id(b"chunk"), sha)
            );
        }
    }
}
