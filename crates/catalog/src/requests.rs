//! Restore requests: asked for by a recovery owner, approved or rejected by someone else,
//! run, and their outcome, every transition appended to the audit chain in the same
//! transaction. Four-eyes is enforced here too: a decision by the requester is refused
//! whatever the caller checked before.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{stamp, Catalog, CatalogError, Result};

/// Where a restore request stands. The life cycle is written once, in
/// [`RequestStatus::allowed_from`]: pending, then approved, rejected or expired; approved,
/// then running; running, then succeeded or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
    Running,
    Succeeded,
    Failed,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Expired => "expired",
            RequestStatus::Running => "running",
            RequestStatus::Succeeded => "succeeded",
            RequestStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => RequestStatus::Pending,
            "approved" => RequestStatus::Approved,
            "rejected" => RequestStatus::Rejected,
            "expired" => RequestStatus::Expired,
            "running" => RequestStatus::Running,
            "succeeded" => RequestStatus::Succeeded,
            "failed" => RequestStatus::Failed,
            _ => return None,
        })
    }

    /// The statuses a request may move to this one from (a new request is created
    /// `pending`, and moves to nothing else from nowhere).
    pub fn allowed_from(self) -> &'static [RequestStatus] {
        use RequestStatus::*;
        match self {
            Pending => &[],
            Approved | Rejected | Expired => &[Pending],
            Running => &[Approved],
            Succeeded | Failed => &[Running],
        }
    }

    /// The audit event that records a move to this status.
    pub fn event(self) -> &'static str {
        match self {
            RequestStatus::Pending => "request.created",
            RequestStatus::Approved => "request.approved",
            RequestStatus::Rejected => "request.rejected",
            RequestStatus::Expired => "request.expired",
            RequestStatus::Running => "request.started",
            RequestStatus::Succeeded | RequestStatus::Failed => "request.executed",
        }
    }

    /// A decision by an approver (never the requester).
    pub fn is_decision(self) -> bool {
        matches!(self, RequestStatus::Approved | RequestStatus::Rejected)
    }

    /// The request is over: nothing moves it again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestStatus::Rejected
                | RequestStatus::Expired
                | RequestStatus::Succeeded
                | RequestStatus::Failed
        )
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub id: String,
    pub policy: String,
    /// The snapshot asked for, or (with `point_in_time`) resolved when it runs.
    pub snapshot_id: Option<String>,
    /// The newest snapshot at or before this time.
    pub point_in_time: Option<jiff::Timestamp>,
    pub target: String,
    pub reason: String,
    /// The request asks to restore over (or into) the source itself.
    pub allow_overlap: bool,
    pub requester: String,
    pub status: RequestStatus,
    pub created_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
    pub not_before: Option<jiff::Timestamp>,
    pub decided_by: Option<String>,
    pub decided_at: Option<jiff::Timestamp>,
    pub decision_comment: Option<String>,
    pub finished_at: Option<jiff::Timestamp>,
    pub outcome: Option<String>,
    /// The run carrying the request once it runs.
    pub run_id: Option<String>,
    /// Its restore is creating the target (a database or directory that was not there):
    /// an interrupted request has that target removed.
    pub creates_target: bool,
}

const COLUMNS: &str = "id, policy, snapshot_id, point_in_time, target, reason, allow_overlap, requester, status, \
     created_at, expires_at, not_before, decided_by, decided_at, decision_comment, finished_at, outcome, \
     run_id, creates_target";

impl Catalog {
    pub async fn create_request(&self, r: &RestoreRequest) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO restore_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL, NULL, NULL, NULL, NULL, 0)"
        ))
        .bind(&r.id)
        .bind(&r.policy)
        .bind(r.snapshot_id.clone())
        .bind(r.point_in_time.map(stamp))
        .bind(&r.target)
        .bind(&r.reason)
        .bind(i64::from(r.allow_overlap))
        .bind(&r.requester)
        .bind(r.status.as_str())
        .bind(stamp(r.created_at))
        .bind(stamp(r.expires_at))
        .bind(r.not_before.map(stamp))
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        self.append_in(
            &mut tx,
            "request.created",
            &r.id,
            serde_json::json!({
                "policy": r.policy,
                "requester": r.requester,
                "snapshot_id": r.snapshot_id,
                "point_in_time": r.point_in_time.map(stamp),
                "target": r.target,
                "reason": r.reason,
                "allow_overlap": r.allow_overlap,
            }),
        )
        .await?;
        tx.commit().await.map_err(self.db())
    }

    pub async fn request(&self, id: &str) -> Result<RestoreRequest> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM restore_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?
        .ok_or_else(|| CatalogError::NotFound {
            location: self.location.clone(),
            what: format!("restore request `{id}`"),
        })?;
        self.request_from(&row)
    }

    /// Requests, newest first.
    pub async fn requests(&self, limit: u32) -> Result<Vec<RestoreRequest>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM restore_requests ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.request_from(r)).collect()
    }

    /// Moves a request to `to`, only from a status [`RequestStatus::allowed_from`] allows
    /// (so that two deciders cannot both win), recording who, when, why, and the audit
    /// event. A move to `running` records this handle's holder, so that a request whose
    /// daemon died can be found and failed by [`Catalog::reconcile_abandoned`].
    pub async fn transition_request(
        &self,
        id: &str,
        to: RequestStatus,
        by: &str,
        comment: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<RestoreRequest> {
        let current = self.request(id).await?;
        let from = to.allowed_from();
        if !from.contains(&current.status) {
            let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
            return Err(self.conflict(format!(
                "restore request {id} is {}, not {}",
                current.status,
                allowed.join(" or ")
            )));
        }
        if to.is_decision() && current.requester.eq_ignore_ascii_case(by) {
            return Err(self.conflict(format!(
                "{by} asked for restore request {id} and cannot also {} it: another approver must",
                if to == RequestStatus::Approved {
                    "approve"
                } else {
                    "reject"
                }
            )));
        }
        let holder = if to == RequestStatus::Running {
            self.keep_alive();
            self.liveness.holder.to_string()
        } else {
            String::new()
        };
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE restore_requests SET status = $1, \
             decided_by = CASE WHEN $2 = 1 THEN $3 ELSE decided_by END, \
             decided_at = CASE WHEN $2 = 1 THEN $4 ELSE decided_at END, \
             decision_comment = CASE WHEN $2 = 1 THEN $5 ELSE decision_comment END, \
             finished_at = CASE WHEN $6 = 1 THEN $4 ELSE finished_at END, \
             outcome = CASE WHEN $6 = 1 THEN $5 ELSE outcome END, \
             holder = $7, heartbeat_at = CASE WHEN $7 = '' THEN heartbeat_at ELSE $4 END \
             WHERE id = $8 AND status = $9",
        )
        .bind(to.as_str())
        .bind(i64::from(to.is_decision()))
        .bind(by)
        .bind(stamp(now))
        .bind(comment.map(String::from))
        .bind(i64::from(to.is_final()))
        .bind(holder)
        .bind(id)
        .bind(current.status.as_str())
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        if updated.rows_affected() != 1 {
            return Err(self.conflict(format!("restore request {id} changed meanwhile; try again")));
        }
        self.append_in(
            &mut tx,
            to.event(),
            id,
            serde_json::json!({"by": by, "status": to.as_str(), "comment": comment, "policy": current.policy}),
        )
        .await?;
        tx.commit().await.map_err(self.db())?;
        self.request(id).await
    }

    /// Restore requests left `running` by holders for which `gone(holder, last heartbeat)`
    /// is true, moved to `failed` as interrupted (with their audit events). Returns them.
    pub(crate) async fn fail_interrupted_requests(
        &self,
        gone: impl Fn(&str, &str) -> bool,
        now: jiff::Timestamp,
    ) -> Result<Vec<RestoreRequest>> {
        let rows = sqlx::query(
            "SELECT id, holder, coalesce(heartbeat_at, created_at) FROM restore_requests WHERE status = 'running'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        let mut failed = Vec::new();
        for row in rows {
            let (id, holder, last_sign): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            if !gone(&holder, &last_sign) {
                continue;
            }
            let outcome = format!(
                "interrupted: the daemon running it ({}) stopped before it finished",
                if holder.is_empty() {
                    "unknown"
                } else {
                    &holder
                }
            );
            match self
                .transition_request(&id, RequestStatus::Failed, "backstop", Some(&outcome), now)
                .await
            {
                Ok(r) => failed.push(r),
                // Finished meanwhile by its own holder: nothing to do.
                Err(CatalogError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(failed)
    }

    fn request_from(&self, r: &AnyRow) -> Result<RestoreRequest> {
        let time = |i: usize| -> Result<Option<jiff::Timestamp>> {
            r.get::<Option<String>, _>(i)
                .map(|t| self.time(t))
                .transpose()
        };
        Ok(RestoreRequest {
            id: r.get(0),
            policy: r.get(1),
            snapshot_id: r.get(2),
            point_in_time: time(3)?,
            target: r.get(4),
            reason: r.get(5),
            allow_overlap: r.get::<i64, _>(6) != 0,
            requester: r.get(7),
            status: {
                let text: String = r.get(8);
                RequestStatus::parse(&text)
                    .ok_or_else(|| self.invalid(format!("unknown request status `{text}`")))?
            },
            created_at: self.time(r.get(9))?,
            expires_at: self.time(r.get(10))?,
            not_before: time(11)?,
            decided_by: r.get(12),
            decided_at: time(13)?,
            decision_comment: r.get(14),
            finished_at: time(15)?,
            outcome: r.get(16),
            run_id: r.get(17),
            creates_target: r.get::<i64, _>(18) != 0,
        })
    }

    /// Records the run carrying request `id` (while it is `running`).
    pub async fn set_request_run(&self, id: &str, run_id: &str) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE restore_requests SET run_id = $1 WHERE id = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        self.running_request_updated(id, updated.rows_affected())
    }

    /// Records, before the restore creates it, that request `id` is creating its target.
    pub async fn mark_request_creates_target(&self, id: &str) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE restore_requests SET creates_target = 1 WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        self.running_request_updated(id, updated.rows_affected())
    }

    fn running_request_updated(&self, id: &str, rows: u64) -> Result<()> {
        if rows != 1 {
            return Err(self.conflict(format!("restore request {id} is not running")));
        }
        Ok(())
    }
}
