//! The history in the repositories: every run, drill report, sign-off, restore request (with
//! its decision) and audit event of the catalog, written into every configured repository as
//! append-only objects, encrypted like the rest, so that the record of recoverability
//! survives the host that keeps the catalog. `backstop catalog rebuild` on a fresh data
//! directory reads it back ([`read`], then [`backstop_catalog::Catalog::import_history`]).
//!
//! Object: `history/<table>/<row key>.<16 hex digits>`, the digits being the start of the
//! SHA-256 of the row's columns, so that each state of a row is written once and never
//! rewritten; a row that changes (a run that finishes, a request decided) gets a new object
//! beside the old. Content: `encode(JSON {"table", "key", "written_at", "columns"}, aad
//! "history")`. Reading takes, per row, the object written last. The audit events are tied
//! to the chain's anchors: [`crate::anchors::write`] writes the history first, so every
//! anchor names an event the history holds.

use std::collections::{BTreeMap, HashSet};

use backstop_catalog::{Catalog, HistoryRow};
use backstop_repo::{RepoError, Repository};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::Config;
use crate::error::EngineError;
use crate::repos::{self, OpenMode};

pub const PREFIX: &str = "history/";
const AAD: &[u8] = b"history";

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    table: String,
    key: String,
    written_at: jiff::Timestamp,
    columns: BTreeMap<String, serde_json::Value>,
}

/// The object key of one state of a row. Keys hold only `A–Z a–z 0–9 - _ .`: a row key with
/// anything else is named by its SHA-256 instead.
fn object_key(row: &HistoryRow) -> String {
    let content = serde_json::to_vec(&row.columns).expect("columns serialise");
    let digest = hex::encode(sha2::Sha256::digest(&content));
    let plain = !row.key.is_empty()
        && row.key.len() <= 100
        && row
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let name = if plain {
        row.key.clone()
    } else {
        hex::encode(sha2::Sha256::digest(row.key.as_bytes()))
    };
    format!("{PREFIX}{}/{name}.{}", row.table, &digest[..16])
}

/// A configured repository, opened, or `None` when it does not exist (a repository no backup
/// created yet holds nothing, and is not created for this).
async fn open_existing(
    settings: &crate::config::RepositorySettings,
    config: &Config,
) -> Result<Option<std::sync::Arc<Repository>>, EngineError> {
    match repos::open_with(settings, &config.base_dir, OpenMode::WithoutIndex).await {
        Ok(repo) => Ok(Some(repo)),
        Err(EngineError::Repo(RepoError::NotARepository { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The configured repositories that exist.
async fn existing(
    config: &Config,
) -> Result<Vec<(String, std::sync::Arc<Repository>)>, EngineError> {
    let mut out = Vec::new();
    for settings in config.repositories.values() {
        if let Some(repo) = open_existing(settings, config).await? {
            out.push((settings.name.clone(), repo));
        }
    }
    Ok(out)
}

/// What a [`sync`] wrote, per repository, and which repositories it could not write to.
#[derive(Debug, Default)]
pub struct Synced {
    pub written: Vec<(String, u64)>,
    /// Repository name and why (unreachable, refused, out of `patience`).
    pub failed: Vec<(String, String)>,
}

/// Writes every state of every history row that a repository lacks, to every configured
/// repository that exists. Each repository is done on its own: one that fails does not stop
/// the others. `patience` bounds the time given to each (a command's closing write must not
/// wait out the retry budget of a store that is down); `None` waits as long as it takes.
pub async fn sync(
    config: &Config,
    catalog: &Catalog,
    patience: Option<std::time::Duration>,
) -> Result<Synced, EngineError> {
    let rows = catalog.history_rows().await?;
    let now = jiff::Timestamp::now();
    let mut synced = Synced::default();
    for settings in config.repositories.values() {
        let one = sync_one(config, settings, &rows, now);
        let result = match patience {
            Some(limit) => tokio::time::timeout(limit, one).await.unwrap_or_else(|_| {
                Err(EngineError::Refused(format!(
                    "no answer within {}s",
                    limit.as_secs()
                )))
            }),
            None => one.await,
        };
        match result {
            Ok(Some(count)) => synced.written.push((settings.name.clone(), count)),
            Ok(None) => {}
            Err(e) => synced.failed.push((settings.name.clone(), e.to_string())),
        }
    }
    Ok(synced)
}

/// The history rows one repository lacks, written; `None` when the repository does not exist.
async fn sync_one(
    config: &Config,
    settings: &crate::config::RepositorySettings,
    rows: &[HistoryRow],
    now: jiff::Timestamp,
) -> Result<Option<u64>, EngineError> {
    let Some(repo) = open_existing(settings, config).await? else {
        return Ok(None);
    };
    let present: HashSet<String> = repo
        .storage()
        .list(PREFIX)
        .await
        .map_err(RepoError::from)?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut count = 0;
    for row in rows {
        let key = object_key(row);
        if present.contains(&key) {
            continue;
        }
        let stored = Stored {
            table: row.table.clone(),
            key: row.key.clone(),
            written_at: now,
            columns: row.columns.clone(),
        };
        let json = serde_json::to_vec(&stored).expect("history serialises");
        repo.storage()
            .put(&key, repo.codec().encode(&json, AAD).into())
            .await
            .map_err(RepoError::from)?;
        count += 1;
    }
    Ok(Some(count))
}

/// How long the closing write of a command gives each repository.
const PATIENCE_AT_THE_END: std::time::Duration = std::time::Duration::from_secs(15);

/// [`sync`], for the end of a command or job, each repository given
/// [`PATIENCE_AT_THE_END`]: a repository that fails is named in a warning, never the job's
/// failure.
pub async fn sync_or_warn(config: &Config, catalog: &Catalog) {
    match sync(config, catalog, Some(PATIENCE_AT_THE_END)).await {
        Ok(synced) => {
            for (repository, error) in synced.failed {
                tracing::warn!(repository, error, "could not write the history into this repository; the next command or the daemon's hourly anchoring retries");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the history to write it into the repositories")
        }
    }
}

/// The history as the repositories hold it: per row, the state written last, over every
/// configured repository. Objects that cannot be read are named beside it, never fatal.
pub async fn read(config: &Config) -> Result<(Vec<HistoryRow>, Vec<String>), EngineError> {
    let mut latest: BTreeMap<(String, String), (jiff::Timestamp, HistoryRow)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, repo) in existing(config).await? {
        let objects = repo.storage().list(PREFIX).await.map_err(RepoError::from)?;
        for object in objects {
            let stored = async {
                let raw = repo
                    .storage()
                    .get(&object.key)
                    .await
                    .map_err(|e| e.to_string())?;
                let plain = repo.codec().decode(&raw, AAD)?;
                serde_json::from_slice::<Stored>(&plain).map_err(|e| e.to_string())
            }
            .await;
            let stored = match stored {
                Ok(stored) => stored,
                Err(e) => {
                    problems.push(format!("repository `{name}`: {}: {e}", object.key));
                    continue;
                }
            };
            let id = (stored.table.clone(), stored.key.clone());
            if latest
                .get(&id)
                .is_some_and(|(t, _)| *t >= stored.written_at)
            {
                continue;
            }
            latest.insert(
                id,
                (
                    stored.written_at,
                    HistoryRow {
                        table: stored.table,
                        key: stored.key,
                        columns: stored.columns,
                    },
                ),
            );
        }
    }
    Ok((latest.into_values().map(|(_, row)| row).collect(), problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_of_a_row_has_its_own_safe_key() {
        let mut row = HistoryRow {
            table: "runs".into(),
            key: "20261204T101500-ab12cd34".into(),
            columns: BTreeMap::from([("status".into(), "running".into())]),
        };
        let running = object_key(&row);
        assert!(running.starts_with("history/runs/20261204T101500-ab12cd34."));
        row.columns.insert("status".into(), "succeeded".into());
        let finished = object_key(&row);
        assert_ne!(running, finished, "a new state is a new object");
        assert_eq!(
            finished,
            object_key(&row),
            "the same state, the same object"
        );
        row.key = "odd key/with: characters".into();
        let odd = object_key(&row);
        assert!(
            odd.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)),
            "{odd}"
        );
    }
}
