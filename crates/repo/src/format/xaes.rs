//! XAES-256-GCM (<https://c2sp.org/XAES-256-GCM>): AES-256-GCM with 192-bit nonces, safe to
//! draw at random for as many objects as a repository will ever hold.
//!
//! AES-256-GCM's own nonce is 96 bits, which limits one key to about 2^32 random nonces. XAES
//! derives a fresh AES-256-GCM key for each object from the first 96 bits of its nonce (two AES
//! blocks under the repository key, in NIST SP 800-108r1's counter mode with CMAC) and uses
//! the last 96 bits as that key's nonce. Stored objects keep XChaCha20-Poly1305's layout: a
//! 24-byte nonce, the ciphertext, a 16-byte tag.
//!
//! The derivation uses RustCrypto's `aes` for its two blocks; the bulk encryption is ring's
//! AES-256-GCM, which runs on the CPU's AES and carry-less multiply instructions.

use aes::cipher::{BlockEncrypt, KeyInit};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// The repository key, ready to derive each object's key.
#[derive(Clone)]
pub struct Xaes256Gcm {
    aes: aes::Aes256,
    /// CMAC's first subkey: AES-256 of the zero block, doubled in GF(2^128).
    k1: [u8; 16],
}

impl Xaes256Gcm {
    pub fn new(key: &[u8; 32]) -> Self {
        let aes = aes::Aes256::new(key.into());
        let mut l = aes::Block::default();
        aes.encrypt_block(&mut l);
        let l = u128::from_be_bytes(l.into());
        let k1 = (l << 1) ^ if l >> 127 == 1 { 0x87 } else { 0 };
        Self {
            aes,
            k1: k1.to_be_bytes(),
        }
    }

    /// The AES-256-GCM key and nonce of the object sealed under `nonce`.
    fn object_key(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let mut blocks = [aes::Block::default(); 2];
        for (counter, block) in (1u8..).zip(blocks.iter_mut()) {
            let mut message = [0u8; 16];
            message[..4].copy_from_slice(&[0, counter, b'X', 0]);
            message[4..].copy_from_slice(&nonce[..12]);
            for (m, k) in message.iter_mut().zip(self.k1) {
                *m ^= k;
            }
            *block = message.into();
        }
        self.aes.encrypt_blocks(&mut blocks);
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&blocks[0]);
        key[16..].copy_from_slice(&blocks[1]);
        let key = UnboundKey::new(&AES_256_GCM, &key).expect("AES-256-GCM takes a 32-byte key");
        let nonce: [u8; 12] = nonce[12..].try_into().expect("24 - 12 bytes");
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(nonce))
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let (key, nonce) = self.object_key(nonce);
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
            .expect("AES-256-GCM seals any object under 64 GiB");
        tag.as_ref().try_into().expect("a 16-byte tag")
    }

    /// Decrypts `in_out` in place when `tag` authenticates it and `aad`; an error leaves
    /// `in_out` unspecified.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Unauthentic> {
        let (key, nonce) = self.object_key(nonce);
        key.open_in_place_separate_tag(nonce, Aad::from(aad), Tag::from(*tag), in_out, 0..)
            .map(|_| ())
            .map_err(|_| Unauthentic)
    }
}

/// The tag does not authenticate the ciphertext and associated data under this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic;

#[cfg(test)]
mod tests {
    use super::*;

    /// The two test vectors of the C2SP specification.
    #[test]
    fn seals_the_specification_vectors_and_opens_them() {
        for (key, aad, expected) in [
            (
                [1u8; 32],
                &b""[..],
                "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
            ),
            (
                [3u8; 32],
                &b"c2sp.org/XAES-256-GCM"[..],
                "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
            ),
        ] {
            let cipher = Xaes256Gcm::new(&key);
            let nonce = b"ABCDEFGHIJKLMNOPQRSTUVWX";
            let mut data = b"XAES-256-GCM".to_vec();
            let tag = cipher.seal_in_place(nonce, aad, &mut data);
            data.extend_from_slice(&tag);
            assert_eq!(hex::encode(&data), expected);

            let (body, tag) = data.split_at_mut(12);
            let tag: [u8; 16] = (&*tag).try_into().unwrap();
            cipher.open_in_place(nonce, aad, body, &tag).unwrap();
            assert_eq!(body, b"XAES-256-GCM");
        }
    }

    #[test]
    fn a_changed_byte_nonce_or_aad_fails_to_open() {
        let cipher = Xaes256Gcm::new(&[9u8; 32]);
        let nonce = *b"0123456789abcdefghijklmn";
        let mut sealed = b"some object".to_vec();
        let tag = cipher.seal_in_place(&nonce, b"chunk", &mut sealed);
        let opens = |data: &[u8], nonce: &[u8; 24], aad: &[u8]| {
            cipher
                .open_in_place(nonce, aad, &mut data.to_vec(), &tag)
                .is_ok()
        };
        assert!(opens(&sealed, &nonce, b"chunk"));
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert!(!opens(&flipped, &nonce, b"chunk"));
        assert!(!opens(&sealed, &nonce, b"index"));
        // Either half of the nonce: the derived key's, and the key's own nonce.
        for at in [0, 23] {
            let mut other = nonce;
            other[at] ^= 1;
            assert!(!opens(&sealed, &other, b"chunk"), "nonce byte {at}");
        }
    }
}
