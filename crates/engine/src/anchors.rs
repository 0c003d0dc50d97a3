//! Off-site anchors of the audit chain. A catalog rewritten wholesale (every hash recomputed)
//! still verifies by itself; its head, written now and then to each repository as
//! `anchors/<seq>-<hash>`, does not move with it. `audit verify` compares the catalog with
//! every anchor it finds.

use backstop_catalog::{Catalog, ChainStatus};
use backstop_repo::RepoError;

use crate::config::Config;
use crate::error::EngineError;
use crate::repos::{self, OpenMode};

pub const PREFIX: &str = "anchors/";

/// The key of an anchor: zero-padded so that keys sort by sequence.
pub fn key(seq: i64, hash: &str) -> String {
    format!("{PREFIX}{seq:012}-{hash}")
}

/// The sequence number and hash an anchor key records.
pub fn parse(key: &str) -> Option<(i64, String)> {
    let (seq, hash) = key.strip_prefix(PREFIX)?.split_once('-')?;
    let valid = hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit());
    Some((seq.parse().ok()?, hash.to_string())).filter(|_| valid)
}

/// Writes the chain's head to every configured repository that exists; returns where.
/// A broken chain is not anchored: that would bless it.
pub async fn write(config: &Config, catalog: &Catalog) -> Result<Vec<String>, EngineError> {
    // The history first: every anchor then names an event the repositories hold.
    let synced = crate::history::sync(config, catalog, None).await?;
    if let Some((repository, error)) = synced.failed.into_iter().next() {
        return Err(EngineError::Refused(format!(
            "repository `{repository}`: writing the history before the anchor: {error}"
        )));
    }
    let (events, head) = match catalog.verify_audit().await? {
        ChainStatus::Intact { events, head } => (events, head),
        ChainStatus::Broken { seq, kind, reason } => {
            return Err(EngineError::Refused(format!(
                "the audit chain is broken at event #{seq} ({kind}): {reason}; not anchoring it"
            )))
        }
    };
    if events == 0 {
        return Ok(Vec::new());
    }
    let key = key(events as i64, &head);
    let body = serde_json::json!({
        "seq": events,
        "hash": head,
        "time": jiff::Timestamp::now().to_string(),
        "catalog": catalog.location(),
    });
    let mut written = Vec::new();
    for settings in config.repositories.values() {
        let repo = match repos::open_with(settings, &config.base_dir, OpenMode::WithoutIndex).await
        {
            Ok(repo) => repo,
            Err(EngineError::Repo(RepoError::NotARepository { .. })) => continue,
            Err(e) => return Err(e),
        };
        repo.storage()
            .put(&key, serde_json::to_vec(&body).expect("json").into())
            .await
            .map_err(RepoError::from)?;
        written.push(format!("{}:{key}", settings.name));
    }
    Ok(written)
}

/// Every anchor that the catalog contradicts, named by repository and event.
pub async fn check(config: &Config, catalog: &Catalog) -> Result<AnchorCheck, EngineError> {
    let mut problems = Vec::new();
    let mut unread = Vec::new();
    let mut seen = 0;
    for settings in config.repositories.values() {
        // A repository that cannot be read contradicts nothing: it is named, and the
        // others are checked.
        let repo = match repos::open_with(settings, &config.base_dir, OpenMode::WithoutIndex).await
        {
            Ok(repo) => repo,
            Err(EngineError::Repo(RepoError::NotARepository { .. })) => continue,
            Err(e) => {
                unread.push(format!(
                    "repository `{}` ({}): {e}",
                    settings.name, settings.url
                ));
                continue;
            }
        };
        let objects = match repo.storage().list(PREFIX).await {
            Ok(objects) => objects,
            Err(e) => {
                unread.push(format!(
                    "repository `{}` ({}): {e}",
                    settings.name, settings.url
                ));
                continue;
            }
        };
        for object in objects {
            let Some((seq, hash)) = parse(&object.key) else {
                problems.push(format!(
                    "repository `{}`: {} is not an anchor key",
                    settings.name, object.key
                ));
                continue;
            };
            seen += 1;
            let event = catalog.audit_events(seq - 1, 1).await?.into_iter().next();
            match event {
                Some(e) if e.seq == seq && e.hash == hash => {}
                Some(e) if e.seq == seq => problems.push(format!(
                    "repository `{}` anchors event #{seq} ({}) with hash {hash}, but the catalog's event #{seq} has {}: the catalog was rewritten",
                    settings.name, e.kind, e.hash
                )),
                _ => problems.push(format!(
                    "repository `{}` anchors event #{seq} with hash {hash}, but the catalog has no event #{seq}: events were removed",
                    settings.name
                )),
            }
        }
    }
    Ok(AnchorCheck {
        seen,
        problems,
        unread,
    })
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct AnchorCheck {
    /// Anchors read.
    pub seen: usize,
    /// Each anchor the catalog contradicts.
    pub problems: Vec<String>,
    /// Repositories whose anchors could not be read, with why.
    pub unread: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_keys_round_trip_and_sort_by_sequence() {
        let hash = "ab".repeat(32);
        let k = key(42, &hash);
        assert_eq!(k, format!("anchors/000000000042-{hash}"));
        assert_eq!(parse(&k), Some((42, hash.clone())));
        assert!(key(9, &hash) < key(10, &hash));
        assert_eq!(parse("anchors/12-short"), None);
        assert_eq!(parse("snapshots/x"), None);
    }
}
