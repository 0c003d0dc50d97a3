//! Running an approved restore request: the snapshot it names (or the newest at or before
//! its point in time) restored into its target with the break-glass restore, under the same
//! restore safety: a target that is, or overlaps, the source is refused unless the request
//! asked for exactly that and was approved so.
//!
//! A request runs as a job like the scheduled ones ([`RequestJobs`]): a run record, a
//! concurrency permit from the same gates, the job timeout, cancellation on shutdown, and
//! its requester told how it ended. Its lease is the request itself: only one caller moves
//! it out of `approved`, and while it runs its holder's heartbeat keeps it, so that a
//! request whose daemon died is failed (interrupted) by the next reconciliation, and the
//! target it was creating removed ([`remove_interrupted_target`]).

use std::sync::Arc;
use std::time::Duration;

use backstop_catalog::{
    Catalog, CatalogError, RequestStatus, RestoreRequest, RunEnd, RunKind, RunStatus,
};
use backstop_sources::{DbUrl, Protected, SourceClash, SourceError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{notify_requester, ApiState};
use crate::config::Config;
use crate::error::EngineError;
use crate::jobs::restore::{self, protected_sources, RestoreOptions, Restored};
use crate::policy::Policy;
use crate::repos;
use crate::scheduler::Gates;

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

/// Whether `target` can receive a snapshot of a `kind` source: a database URL of its
/// engine for postgres and mysql, a path otherwise.
pub fn target_fits(target: &str, kind: &str) -> Result<(), String> {
    let Some(source_kind) = backstop_sources::SourceKind::parse(kind) else {
        return Err(format!("snapshot of an unknown source kind `{kind}`"));
    };
    if source_kind.fits_target(target) {
        return Ok(());
    }
    Err(format!(
        "target `{target}`: a snapshot of a {kind} source restores into {}",
        source_kind.target_description()
    ))
}

/// The full id of the snapshot `prefix` names in `policy`'s repository, refused unless it is
/// a snapshot of that policy.
pub async fn snapshot_of_policy(
    config: &Config,
    policy: &Policy,
    prefix: &str,
) -> Result<String, EngineError> {
    let settings = config.repository(&policy.repository)?;
    let repo = repos::open(settings, &config.base_dir).await?;
    let id = repo.find_snapshot(prefix).await?;
    crate::jobs::restore::load_for_policy(&repo, &id, &policy.name).await?;
    Ok(id.to_hex())
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

/// Runs request `r` (already moved to `running`) and returns its outcome. Before the restore
/// creates its target, the request records so in `catalog`, so that the target of a
/// request interrupted by a crash can be removed by whoever reconciles it.
pub async fn execute(
    config: &Config,
    catalog: &Catalog,
    policy: &Policy,
    r: &RestoreRequest,
    cancel: &CancellationToken,
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
    let prepared = restore::prepare(
        repo,
        &id.to_hex(),
        &r.target,
        &protected,
        options.replace_source,
    )
    .await?;
    if !target_exists(&r.target).await? {
        catalog.mark_request_creates_target(&r.id).await?;
    }
    let (id, restored) =
        restore::run(prepared, options.force, &config.tools, options.jobs, cancel).await?;
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

/// Whether a request's target is already there: a database on its server, or anything at
/// a path.
async fn target_exists(target: &str) -> Result<bool, EngineError> {
    if target.contains("://") {
        let url = DbUrl::parse(target)
            .map_err(|message| SourceError::Invalid(format!("target: {message}")))?;
        return Ok(backstop_sources::restore::database_exists(&url).await?);
    }
    Ok(std::fs::symlink_metadata(target).is_ok())
}

/// Removes the target an interrupted request was creating (its database dropped, its
/// directory or file removed); one that never came to be is fine. A request that restored
/// into something already there leaves it alone.
pub async fn remove_interrupted_target(r: &RestoreRequest) {
    if !r.creates_target {
        return;
    }
    if r.target.contains("://") {
        let dropped = match DbUrl::parse(&r.target) {
            Ok(url) => backstop_sources::restore::drop_database(&url)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match dropped {
            Ok(()) => tracing::info!(
                request = r.id,
                "dropped the database an interrupted request was creating"
            ),
            Err(e) => {
                tracing::error!(request = r.id, error = %e, "dropping the database an interrupted request was creating")
            }
        }
        return;
    }
    let path = std::path::Path::new(&r.target);
    if path.is_dir() {
        restore::remove_created_directory(path);
    } else if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::error!(request = r.id, error = %e, "removing the file an interrupted request was creating");
        }
    }
}

/// The daemon's runner of restore requests: each runs as a job (see the module's notes).
#[derive(Clone)]
pub struct RequestJobs {
    gates: Arc<Gates>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    timeout: Duration,
}

impl RequestJobs {
    /// Requests take their permits from `gates`, are stopped after `timeout`, and are
    /// cancelled when `shutdown` is.
    pub fn new(gates: Arc<Gates>, timeout: Duration, shutdown: CancellationToken) -> Self {
        Self {
            gates,
            tracker: TaskTracker::new(),
            shutdown,
            timeout,
        }
    }

    /// Moves approved request `id` to `running` (as `by`), records the run that carries it
    /// and starts it; returns the request, running. Refused (a conflict) unless it is
    /// approved, so that it runs once however many callers ask.
    pub async fn start(
        &self,
        state: &ApiState,
        policy: &Policy,
        id: &str,
        by: &str,
    ) -> Result<RestoreRequest, CatalogError> {
        // Started by `by`, as the audit log says; ended by the daemon.
        let catalog = &state.catalog.clone().with_actor(by);
        catalog
            .transition_request(id, RequestStatus::Running, by, None, jiff::Timestamp::now())
            .await?;
        // A request that cannot be recorded as a job does not stay `running` with no job.
        let fail = |e: CatalogError| async move {
            let outcome = format!("its run could not be recorded: {e}");
            if let Ok(r) = catalog
                .transition_request(
                    id,
                    RequestStatus::Failed,
                    by,
                    Some(&outcome),
                    jiff::Timestamp::now(),
                )
                .await
            {
                notify_requester(&state.config, &state.notifier, policy, &r);
            }
            e
        };
        let run_id = match catalog.start_run(RunKind::Restore, &policy.name).await {
            Ok(run_id) => run_id,
            Err(e) => return Err(fail(e).await),
        };
        if let Err(e) = catalog.set_request_run(id, &run_id).await {
            let end = RunEnd {
                error: Some(format!("the request could not be linked to its run: {e}")),
                ..RunEnd::default()
            };
            if let Err(record) = catalog.finish_run(&run_id, RunStatus::Failed, &end).await {
                tracing::error!(run = run_id, error = %record, "recording the request's run");
            }
            return Err(fail(e).await);
        }
        let r = catalog.request(id).await?;
        let job = RequestJob {
            state: state.clone(),
            policy: policy.clone(),
            request: r.clone(),
            run_id,
            by: by.to_string(),
            cancel: self.shutdown.child_token(),
            shutdown: self.shutdown.clone(),
            gates: self.gates.clone(),
            timeout: self.timeout,
        };
        self.tracker.spawn(job.run());
        Ok(r)
    }

    /// Waits for every request started to end (after shutdown, they are being cancelled).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// One running request.
struct RequestJob {
    state: ApiState,
    policy: Policy,
    request: RestoreRequest,
    run_id: String,
    by: String,
    cancel: CancellationToken,
    shutdown: CancellationToken,
    gates: Arc<Gates>,
    timeout: Duration,
}

impl RequestJob {
    async fn run(self) {
        let (state, r) = (&self.state, &self.request);
        let permits = tokio::select! {
            permits = self.gates.enter(&self.policy.repository) => Some(permits),
            _ = self.cancel.cancelled() => None,
        };
        let outcome = match permits {
            None => Err(EngineError::Source(SourceError::Cancelled(
                "nothing was restored".into(),
            ))),
            Some(_permits) => {
                let work = execute(&state.config, &state.catalog, &self.policy, r, &self.cancel);
                tokio::pin!(work);
                tokio::select! {
                    outcome = &mut work => outcome,
                    _ = tokio::time::sleep(self.timeout) => {
                        // Cancelled, the restore removes what it created before it returns.
                        self.cancel.cancel();
                        work.await
                    }
                }
            }
        };
        let stopped = self.cancel.is_cancelled();
        let (request_status, run_status, text) = match &outcome {
            Ok(text) => (RequestStatus::Succeeded, RunStatus::Succeeded, text.clone()),
            Err(e) if stopped && self.shutdown.is_cancelled() => (
                RequestStatus::Failed,
                RunStatus::Cancelled,
                format!("interrupted: the daemon shut down before it finished; {e:#}"),
            ),
            Err(e) if stopped => (
                RequestStatus::Failed,
                RunStatus::Cancelled,
                format!(
                    "stopped after the job timeout ({}); {e:#}",
                    humantime::format_duration(self.timeout)
                ),
            ),
            Err(e) => (RequestStatus::Failed, RunStatus::Failed, format!("{e:#}")),
        };
        let end = RunEnd {
            error: (run_status != RunStatus::Succeeded).then(|| text.clone()),
            ..RunEnd::default()
        };
        if let Err(e) = state
            .catalog
            .finish_run(&self.run_id, run_status, &end)
            .await
        {
            tracing::error!(request = r.id, run = self.run_id, error = %e, "recording the request's run");
        }
        match state
            .catalog
            .transition_request(
                &r.id,
                request_status,
                &self.by,
                Some(&text),
                jiff::Timestamp::now(),
            )
            .await
        {
            Ok(done) => {
                tracing::info!(
                    request = done.id,
                    status = done.status.as_str(),
                    outcome = text,
                    "restore request ended"
                );
                notify_requester(&state.config, &state.notifier, &self.policy, &done);
            }
            Err(e) => {
                tracing::error!(request = r.id, error = %e, "recording how the restore request ended")
            }
        }
    }
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
            run_id: None,
            creates_target: false,
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
