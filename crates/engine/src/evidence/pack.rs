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

/// The pack's files, in order: the evidence as JSON and HTML, the manifest of their
/// digests, and the manifest's signature.
pub fn files(evidence: &Evidence, key: &SigningKey) -> Vec<(String, Vec<u8>)> {
    let json = serde_json::to_vec_pretty(evidence).expect("evidence serialises");
    let html = super::html::render(evidence).into_bytes();
    let mut digests = BTreeMap::new();
    let mut out = Vec::new();
    for (name, bytes) in [("evidence.json", json), ("evidence.html", html)] {
        digests.insert(name.to_string(), hex::encode(Sha256::digest(&bytes)));
        out.push((name.to_string(), bytes));
    }
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        created_at: jiff::Timestamp::now(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        files: digests,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    let signature = key.sign(&manifest_bytes);
    out.push((MANIFEST.to_string(), manifest_bytes));
    out.push((
        SIGNATURE.to_string(),
        format!("{}\n", hex::encode(signature.to_bytes())).into_bytes(),
    ));
    out
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
    let mut written = Vec::new();
    for (name, bytes) in files(evidence, key) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io_error(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The pack as one tar archive (for a download), its files under the directory `top`.
pub fn tar(top: &str, evidence: &Evidence, key: &SigningKey) -> Vec<u8> {
    let mut archive = ::tar::Builder::new(Vec::new());
    for (name, bytes) in files(evidence, key) {
        let mut header = ::tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        header.set_cksum();
        archive
            .append_data(&mut header, format!("{top}/{name}"), bytes.as_slice())
            .expect("writing a tar into memory");
    }
    archive.into_inner().expect("writing a tar into memory")
}

/// Collects the evidence for `policies` over `[from, to]`, signs it, and hands the pack to
/// `deliver` (which writes it somewhere, returning what it made); then records the export
/// in the audit log. When the export cannot be audited, `undo` is called with what
/// `deliver` returned and the error says the pack was withdrawn.
pub async fn export<T>(
    config: &crate::config::Config,
    catalog: &backstop_catalog::Catalog,
    policies: &[&crate::policy::Policy],
    (from, to): (jiff::Timestamp, jiff::Timestamp),
    subject: &str,
    deliver: impl FnOnce(&Evidence, &SigningKey) -> Result<T, EngineError>,
    undo: impl FnOnce(&T),
) -> Result<(T, Evidence, SigningKey), EngineError> {
    let key = signing_key(&config.data_dir)?;
    let gathered = super::collect(config, catalog, policies, from, to).await?;
    let made = deliver(&gathered, &key)?;
    let audited = catalog
        .append_event(
            "evidence.exported",
            subject,
            serde_json::json!({
                "from": from.to_string(),
                "to": to.to_string(),
                "policies": policies.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            }),
        )
        .await;
    // An export that could not be audited is not left behind looking like one.
    if let Err(e) = audited {
        undo(&made);
        return Err(EngineError::Refused(format!(
            "recording the export in the audit log failed, so the pack was withdrawn: {e}"
        )));
    }
    Ok((made, gathered, key))
}

/// The installation's public key, hex (as `backstop evidence public-key` prints it).
pub fn public_key_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().to_bytes())
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

/// A pack's files by name, read from its directory or from a tar archive of it (as the
/// console's download gives it).
fn read_pack(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, Vec<String>> {
    let shown = path.display();
    let mut files = BTreeMap::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| vec![format!("{shown}: {e}")])?;
        for entry in entries {
            let entry = entry.map_err(|e| vec![format!("{shown}: {e}")])?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = if entry.path().is_file() {
                std::fs::read(entry.path()).map_err(|e| vec![format!("{name}: {e}")])?
            } else {
                Vec::new()
            };
            files.insert(name, bytes);
        }
        return Ok(files);
    }
    let file = std::fs::File::open(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    let mut archive = ::tar::Archive::new(file);
    let entries = archive
        .entries()
        .map_err(|e| vec![format!("{shown}: not a directory or a tar archive: {e}")])?;
    let mut tops = std::collections::BTreeSet::new();
    for entry in entries {
        let mut entry =
            entry.map_err(|e| vec![format!("{shown}: not a directory or a tar archive: {e}")])?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let inner = entry
            .path()
            .map_err(|e| vec![format!("{shown}: an entry's name: {e}")])?
            .into_owned();
        let parts: Vec<String> = inner
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        // The files, at the archive's root or in one directory.
        let name = match parts.as_slice() {
            [name] => name.clone(),
            [top, name] => {
                tops.insert(top.clone());
                name.clone()
            }
            _ => {
                return Err(vec![format!(
                    "{shown}: entry `{}` is not a file of an evidence pack",
                    inner.display()
                )])
            }
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)
            .map_err(|e| vec![format!("{shown}: {name}: {e}")])?;
        files.insert(name, bytes);
    }
    if tops.len() > 1 {
        return Err(vec![format!(
            "{shown}: the archive holds more than one pack ({})",
            tops.into_iter().collect::<Vec<_>>().join(", ")
        )]);
    }
    Ok(files)
}

/// Checks the signature over the manifest and every file's digest; every problem names the
/// file. `path` is the pack's directory or a tar archive of it; `trusted` is the
/// installation's public key, when the verifier has it.
pub fn verify(path: &Path, trusted: Option<&VerifyingKey>) -> Result<Verified, Vec<String>> {
    let files = read_pack(path)?;
    let read = |name: &str| {
        files
            .get(name)
            .cloned()
            .ok_or_else(|| vec![format!("{name}: not in the pack")])
    };
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
        match files.get(name) {
            Some(bytes) if hex::encode(Sha256::digest(bytes)) == *expected => {}
            Some(_) => problems.push(format!(
                "{name}: content does not match its SHA-256 in the manifest"
            )),
            None => problems.push(format!("{name}: not in the pack")),
        }
    }
    for name in files.keys() {
        if name != MANIFEST && name != SIGNATURE && !manifest.files.contains_key(name) {
            problems.push(format!("{name}: not listed in the manifest"));
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
