//! Running an approved restore request: the snapshot it names (or the newest at or before
//! its point in time) restored into its target with the break-glass restore, under the same
//! restore safety: a target that is, or overlaps, the source is refused unless the request
//! asked for exactly that and was approved so.

use backstop_catalog::{Catalog, RequestStatus, RestoreRequest};
use backstop_sources::{Protected, SourceClash};

use crate::config::Config;
use crate::error::EngineError;
use crate::jobs::restore::{protected_sources, to_target, RestoreOptions, Restored};
use crate::policy::Policy;
use crate::repos;

/// How long an unapproved request stays open.
pub const REQUEST_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Marks pending requests past their expiry as expired; returns them, expired.
pub async fn expire_stale(
    catalog: &Catalog,
    now: jiff::Timestamp,
) -> Result<Vec<RestoreRequest>, EngineError> {
    let mut expired = Vec::new();
    for r in catalog.requests(u32::MAX).await? {
        if r.status == RequestStatus::Pending && r.expires_at <= now {
            let r = catalog
                .transition_request(
                    &r.id,
                    RequestStatus::Expired,
                    "backstop",
                    Some("not approved in time"),
                    now,
                )
                .await?;
            expired.push(r);
        }
    }
    Ok(expired)
}

/// The source `target` would replace among `protected`, or `None`. A request is checked
/// with the same comparison as a break-glass restore and a drill ([`backstop_sources::clash`]).
pub fn source_clash(
    target: &str,
    protected: &[Protected],
) -> Result<Option<SourceClash>, EngineError> {
    backstop_sources::clash(target, protected)
        .map_err(|message| EngineError::Refused(format!("target: {message}")))
}

/// What a request must carry to restore over a source.
pub const REQUEST_REMEDY: &str =
    "A request must ask for that explicitly (allow_overlap) and be approved so";

/// Every configured policy's source that resolves (for a request's check; one that does
/// not resolve cannot be compared and is logged).
pub fn configured_protected(policies: &[&Policy], config: &Config) -> Vec<Protected> {
    let mut protected = Vec::new();
    for policy in policies {
        match Protected::of_policy(&policy.name, &policy.source, &config.base_dir) {
            Ok(sources) => protected.extend(sources),
            Err(e) => tracing::warn!(
                policy = %policy.name,
                error = %e,
                "a policy's source could not be resolved; restore requests are not compared with it"
            ),
        }
    }
    protected
}

/// Runs request `r` (already moved to `running`) and returns its outcome.
pub async fn execute(
    config: &Config,
    policy: &Policy,
    r: &RestoreRequest,
) -> Result<String, EngineError> {
    let settings = config.repository(&policy.repository)?;
    let repo = repos::open(settings, &config.base_dir).await?;
    let id = match (&r.snapshot_id, r.point_in_time) {
        (Some(prefix), _) => repo.find_snapshot(prefix).await?,
        (None, Some(at)) => {
            let listing = repo.list_snapshots().await?;
            repos::warn_unreadable(
                &policy.repository,
                &listing.unreadable,
                "choosing the snapshot at a point in time",
            );
            listing
                .snapshots
                .into_iter()
                .filter(|(_, s)| s.policy == policy.name && s.data_point <= at)
                .max_by_key(|(id, s)| (s.data_point, *id))
                .map(|(id, _)| id)
                .ok_or_else(|| {
                    EngineError::Refused(format!(
                        "policy `{}` has no snapshot at or before {at}",
                        policy.name
                    ))
                })?
        }
        (None, None) => {
            return Err(EngineError::Refused(
                "the request names no snapshot and no point in time".into(),
            ))
        }
    };
    let snapshot = crate::jobs::restore::load_for_policy(&repo, &id, &policy.name).await?;
    let protected = protected_sources(&id, &snapshot, &configured_protected(&[policy], config));
    if let Some(clash) = source_clash(&r.target, &protected)? {
        if !r.allow_overlap {
            return Err(EngineError::ReplacesSource {
                clash: Box::new(clash),
                remedy: REQUEST_REMEDY,
            });
        }
    }
    // Over the source only as asked and approved; the target then holds data by definition.
    let options = RestoreOptions {
        force: r.allow_overlap,
        replace_source: r.allow_overlap,
        jobs: 2,
    };
    let (id, restored) = to_target(
        repo,
        &id.to_hex(),
        &r.target,
        options,
        &protected,
        &config.tools,
    )
    .await?;
    Ok(match restored {
        Restored::Directory(report) => format!(
            "restored snapshot {} into {}: {} files, {} bytes, every chunk and file verified",
            id.short(),
            r.target,
            report.files,
            report.bytes
        ),
        Restored::Database { target, created } => format!(
            "restored snapshot {} into {target}{}",
            id.short(),
            if created { " (created)" } else { "" }
        ),
        Restored::SqliteFile(path) => {
            format!("restored snapshot {} into {}", id.short(), path.display())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, expires: &str) -> RestoreRequest {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        RestoreRequest {
            id: id.into(),
            policy: "orders".into(),
            snapshot_id: Some("abcd".into()),
            point_in_time: None,
            target: "/restore".into(),
            reason: "r".into(),
            allow_overlap: false,
            requester: "dba@example.com".into(),
            status: RequestStatus::Pending,
            created_at: t("2026-11-24T00:00:00Z"),
            expires_at: t(expires),
            not_before: None,
            decided_by: None,
            decided_at: None,
            decision_comment: None,
            finished_at: None,
            outcome: None,
        }
    }

    #[tokio::test]
    async fn unapproved_requests_expire_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(None, dir.path()).await.unwrap();
        catalog
            .create_request(&request("stale", "2026-11-25T00:00:00Z"))
            .await
            .unwrap();
        catalog
            .create_request(&request("fresh", "2026-11-26T00:00:00Z"))
            .await
            .unwrap();
        catalog
            .create_request(&request("decided", "2026-11-25T00:00:00Z"))
            .await
            .unwrap();
        let at: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        catalog
            .transition_request("decided", RequestStatus::Approved, "boss", None, at)
            .await
            .unwrap();
        let expired = expire_stale(&catalog, "2026-11-25T00:00:00Z".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(
            expired.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["stale"]
        );
        let status = |id: &'static str| {
            let catalog = catalog.clone();
            async move { catalog.request(id).await.unwrap().status }
        };
        assert_eq!(
            status("stale").await,
            RequestStatus::Expired,
            "pending at its expiry"
        );
        assert_eq!(status("fresh").await, RequestStatus::Pending);
        assert_eq!(
            status("decided").await,
            RequestStatus::Approved,
            "an approved request does not expire"
        );
    }

    #[test]
    fn a_target_is_compared_in_every_spelling_and_for_nested_paths() {
        let protected = |source: &str| {
            vec![Protected {
                identity: backstop_sources::Identity::parse(source).unwrap(),
                whose: "policy `orders`".into(),
            }]
        };
        let pg = protected("postgres://u@db:5432/orders");
        let clash = |t: &str, p: &[Protected]| source_clash(t, p).unwrap();
        assert!(clash("postgres://other@DB/orders/", &pg).is_some());
        assert!(clash("postgresql://other@db:5432/orders?sslmode=require", &pg).is_some());
        assert!(clash("postgres://u@db:5432/orders_copy", &pg).is_none());
        assert!(clash("postgres://u@scratch:5432/orders", &pg).is_none());
        let files = protected("/srv/app");
        assert!(clash("/srv/app", &files).is_some());
        assert!(clash("/srv/app/static", &files).is_some());
        assert!(clash("/srv", &files).is_some());
        assert!(clash("/restore/app", &files).is_none());
        let shown = clash("postgres://u:pw@db/orders", &pg).unwrap().to_string();
        assert!(!shown.contains("pw@"), "{shown}");
    }
}
