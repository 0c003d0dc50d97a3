//! An evidence pack on disk: `evidence.json`, `evidence.html`, and `manifest.json` (the
//! SHA-256 of each, and the installation's public key) signed with the installation's
//! ed25519 key in `manifest.sig`. Verifying needs only the directory and, to trust the
//! signer, the installation's public key (`backstop evidence public-key`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Evidence;
use crate::error::EngineError;

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const MANIFEST_SCHEMA: &str = "backstop.evidence-manifest/v1";
/// The installation's signing key, under `data_dir`.
pub const KEY_FILE: &str = "evidence-signing.key";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub created_at: jiff::Timestamp,
    /// The signer's ed25519 public key, hex.
    pub public_key: String,
    /// File name → SHA-256, hex.
    pub files: BTreeMap<String, String>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// The installation's signing key: read from `data_dir`, or made on first use (readable
/// by its owner only).
pub fn signing_key(data_dir: &Path) -> Result<SigningKey, EngineError> {
    let path = data_dir.join(KEY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hex = crate::repos::create_key_file(&path)?;
            tracing::warn!(path = %path.display(), "created the installation's evidence signing key");
            String::from_utf8(hex).unwrap_or_default()
        }
        Err(e) => return Err(io_error(&path)(e)),
    };
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            EngineError::Refused(format!("{}: not a 32-byte hex ed25519 key", path.display()))
        })?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Writes the pack into `dir` (created; it must be empty or absent) and returns the files.
pub fn write(
    dir: &Path,
    evidence: &Evidence,
    key: &SigningKey,
) -> Result<Vec<PathBuf>, EngineError> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(EngineError::Refused(format!(
            "{} is not empty; an evidence pack goes into a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let json = serde_json::to_vec_pretty(evidence).expect("evidence serialises");
    let html = super::html::render(evidence);
    let mut files = BTreeMap::new();
    let mut written = Vec::new();
    for (name, bytes) in [
        ("evidence.json", json),
        ("evidence.html", html.into_bytes()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).map_err(io_error(&path))?;
        files.insert(name.to_string(), hex::encode(Sha256::digest(&bytes)));
        written.push(path);
    }
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        created_at: jiff::Timestamp::now(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        files,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    let signature = key.sign(&manifest_bytes);
    for (name, bytes) in [
        (MANIFEST, manifest_bytes),
        (
            SIGNATURE,
            format!("{}\n", hex::encode(signature.to_bytes())).into_bytes(),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io_error(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// What verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub files: Vec<String>,
    pub public_key: String,
    /// The signature was checked against a key given by the verifier, not only the key the
    /// pack carries.
    pub key_trusted: bool,
}

/// Parses a public key given as hex (as `backstop evidence public-key` prints it).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("not a 32-byte hex ed25519 public key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// Checks the signature over the manifest and every file's digest; every problem names the
/// file. `trusted` is the installation's public key, when the verifier has it.
pub fn verify(dir: &Path, trusted: Option<&VerifyingKey>) -> Result<Verified, Vec<String>> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| vec![format!("{name}: {e}")]);
    let manifest_bytes = read(MANIFEST)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| vec![format!("{MANIFEST}: not a manifest: {e}")])?;
    if manifest.schema != MANIFEST_SCHEMA {
        return Err(vec![format!(
            "{MANIFEST}: unknown schema `{}`",
            manifest.schema
        )]);
    }
    let signature_text = String::from_utf8(read(SIGNATURE)?).unwrap_or_default();
    let signature = hex::decode(signature_text.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| vec![format!("{SIGNATURE}: not an ed25519 signature")])?;
    let carried = parse_public_key(&manifest.public_key)
        .map_err(|e| vec![format!("{MANIFEST}: public_key: {e}")])?;
    let key = trusted.unwrap_or(&carried);
    if trusted.is_some_and(|t| t.to_bytes() != carried.to_bytes()) {
        return Err(vec![format!(
            "{MANIFEST}: signed by key {}, not by the installation key given",
            manifest.public_key
        )]);
    }
    if key.verify(&manifest_bytes, &signature).is_err() {
        return Err(vec![format!(
            "{MANIFEST}: the signature in {SIGNATURE} does not match: the manifest was changed or signed by another key"
        )]);
    }
    let mut problems = Vec::new();
    for (name, expected) in &manifest.files {
        if name.contains('/') || name.starts_with('.') {
            problems.push(format!(
                "{MANIFEST}: file name `{name}` is not a plain name"
            ));
            continue;
        }
        match std::fs::read(dir.join(name)) {
            Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == *expected => {}
            Ok(_) => problems.push(format!(
                "{name}: content does not match its SHA-256 in the manifest"
            )),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != MANIFEST && name != SIGNATURE && !manifest.files.contains_key(&name) {
                problems.push(format!("{name}: not listed in the manifest"));
            }
        }
    }
    if problems.is_empty() {
        Ok(Verified {
            files: manifest.files.keys().cloned().collect(),
            public_key: manifest.public_key,
            key_trusted: trusted.is_some(),
        })
    } else {
        Err(problems)
    }
}
