//! From configured repository settings to an opened [`Repository`].

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use backstop_repo::format::crypto::KdfParams;
use backstop_repo::open::{RepoUrl, S3Settings};
use backstop_repo::storage::RetryPolicy;
use backstop_repo::{InitOptions, RepoError, Repository};

use crate::config::{KeySource, RepositorySettings};
use crate::error::EngineError;

/// Reads the secret named by the settings. The value is never logged or printed.
pub fn read_secret(key: &KeySource) -> Result<Option<Vec<u8>>, EngineError> {
    match key {
        KeySource::None => Ok(None),
        KeySource::Env(var) => std::env::var(var)
            .map(|v| Some(v.trim_end_matches(['\n', '\r']).as_bytes().to_vec()))
            .map_err(|_| EngineError::MissingEnv(var.clone())),
        KeySource::File(path) => std::fs::read(path)
            .map(|mut bytes| {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Some(bytes)
            })
            .map_err(|e| EngineError::KeyFile {
                path: path.display().to_string(),
                source: e,
            }),
    }
}

/// Writes a new random key file (32 random bytes as hex, readable only by its owner) and
/// returns its hex text; refuses to overwrite one.
pub(crate) fn create_key_file(path: &Path) -> Result<Vec<u8>, EngineError> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = backstop_repo::format::crypto::generate_key();
    let err = |e| EngineError::KeyFile {
        path: path.display().to_string(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.write_all(format!("{key}\n").as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(key.into_bytes())
}

pub async fn storage_for(
    settings: &RepositorySettings,
    base_dir: &Path,
) -> Result<Arc<dyn backstop_repo::storage::Storage>, EngineError> {
    let url = RepoUrl::parse(&settings.url, base_dir)?;
    Ok(url
        .connect(
            &S3Settings {
                endpoint: settings.endpoint.clone(),
                region: settings.region.clone(),
                path_style: settings.path_style,
                object_lock: settings.object_lock,
            },
            settings
                .retry_budget
                .map(RetryPolicy::with_budget)
                .unwrap_or_default(),
            Some(&settings.name),
        )
        .await)
}

/// How much of the repository to read when opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Config, key and index: ready to read and write snapshots.
    Full,
    /// Config and key only (for `check`, which loads the index itself to report every
    /// broken index object rather than stop at the first).
    WithoutIndex,
}

/// Opens the repository; never creates one.
pub async fn open_with(
    settings: &RepositorySettings,
    base_dir: &Path,
    mode: OpenMode,
) -> Result<Arc<Repository>, EngineError> {
    let storage = storage_for(settings, base_dir).await?;
    let secret = match read_secret(&settings.key) {
        Ok(secret) => secret,
        // Before the first backup there is no key file, and no repository either: that is
        // what to say (callers treat a repository not made yet as empty), not the key.
        Err(missing @ EngineError::KeyFile { .. }) if matches!(&settings.key, KeySource::File(path) if !path.exists()) =>
        {
            return match Repository::open_without_index(storage, None).await {
                Err(e @ (RepoError::NotARepository { .. } | RepoError::Storage(_))) => {
                    Err(e.into())
                }
                _ => Err(missing),
            };
        }
        Err(e) => return Err(e),
    };
    let repo = match mode {
        OpenMode::Full => Repository::open(storage, secret.as_deref()).await?,
        OpenMode::WithoutIndex => {
            Repository::open_without_index(storage, secret.as_deref()).await?
        }
    };
    Ok(Arc::new(repo))
}

/// Opens the repository with its index; never creates one.
pub async fn open(
    settings: &RepositorySettings,
    base_dir: &Path,
) -> Result<Arc<Repository>, EngineError> {
    open_with(settings, base_dir, OpenMode::Full).await
}

/// Opens the repository without its index (a backup and a copy read the index themselves,
/// under their lock), creating it first if it does not exist yet (the first backup does
/// this). With `key_file` set and no such file, a new random key is written there, and the
/// new repository derives its keys from it without stretching (a passphrase, from a file or
/// a variable, is stretched with Argon2id).
pub async fn open_or_init(
    settings: &RepositorySettings,
    base_dir: &Path,
) -> Result<(Arc<Repository>, bool), EngineError> {
    let storage = storage_for(settings, base_dir).await?;
    let mut generated_key = false;
    let secret = match &settings.key {
        KeySource::File(path) if !path.exists() => {
            match Repository::open_without_index(storage.clone(), None).await {
                Err(RepoError::NotARepository { .. }) => {
                    let key = create_key_file(path)?;
                    tracing::warn!(message = "created a new repository key; keep a copy of it off this host", path = %path.display());
                    generated_key = true;
                    Some(key)
                }
                // Not reached: that is the error, not the key file the backup did not make.
                Err(e @ RepoError::Storage(_)) => return Err(e.into()),
                _ => read_secret(&settings.key)?,
            }
        }
        key => read_secret(key)?,
    };
    match Repository::open_without_index(storage.clone(), secret.as_deref()).await {
        Ok(repo) => Ok((Arc::new(repo), false)),
        Err(RepoError::NotARepository { .. }) => {
            let mut options = InitOptions {
                secret,
                kdf: generated_key.then(KdfParams::for_generated_key),
                ..InitOptions::default()
            };
            if let Some(level) = settings.compression_level {
                options.zstd_level = level;
            }
            if let Some(size) = settings.pack_size {
                options.pack_size = size;
            }
            Ok((Arc::new(Repository::init(storage, options).await?), true))
        }
        Err(e) => Err(e.into()),
    }
}

/// Warns of each snapshot object a job could not read and went on without (`during` says
/// what it was doing, e.g. "choosing the parent snapshot").
pub fn warn_unreadable(
    repository: &str,
    unreadable: &[backstop_repo::UnreadableSnapshot],
    during: &str,
) {
    for u in unreadable {
        tracing::warn!(
            message = "skipped an unreadable snapshot object",
            repository,
            object = %u.object,
            error = %u.error,
            during,
        );
    }
}
