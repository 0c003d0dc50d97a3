//! Restore requests: asked for by a recovery owner, approved or rejected by someone else,
//! run, and their outcome, every transition appended to the audit chain in the same
//! transaction. Four-eyes is enforced here too: a decision by the requester is refused
//! whatever the caller checked before.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{stamp, Catalog, Result};

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
    /// pending, approved, rejected, expired, running, succeeded or failed.
    pub status: String,
    pub created_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
    pub not_before: Option<jiff::Timestamp>,
    pub decided_by: Option<String>,
    pub decided_at: Option<jiff::Timestamp>,
    pub decision_comment: Option<String>,
    pub finished_at: Option<jiff::Timestamp>,
    pub outcome: Option<String>,
}

const COLUMNS: &str = "id, policy, snapshot_id, point_in_time, target, reason, allow_overlap, requester, status, \
     created_at, expires_at, not_before, decided_by, decided_at, decision_comment, finished_at, outcome";

impl Catalog {
    pub async fn create_request(&self, r: &RestoreRequest) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        sqlx::query(&format!(
            "INSERT INTO restore_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL, NULL, NULL, NULL)"
        ))
        .bind(&r.id)
        .bind(&r.policy)
        .bind(r.snapshot_id.clone())
        .bind(r.point_in_time.map(stamp))
        .bind(&r.target)
        .bind(&r.reason)
        .bind(i64::from(r.allow_overlap))
        .bind(&r.requester)
        .bind(&r.status)
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
        .ok_or_else(|| self.invalid(format!("no restore request `{id}`")))?;
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

    /// Moves a request from `from` to `to` (only from that status, so that two deciders
    /// cannot both win), recording who, when, why, and the audit event `event`.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_request(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        event: &str,
        by: &str,
        comment: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<RestoreRequest> {
        let current = self.request(id).await?;
        if !from.contains(&current.status.as_str()) {
            return Err(self.invalid(format!(
                "restore request {id} is {}, not {}",
                current.status,
                from.join(" or ")
            )));
        }
        let deciding = matches!(to, "approved" | "rejected");
        if deciding && current.requester.eq_ignore_ascii_case(by) {
            return Err(self.invalid(format!(
                "{by} asked for restore request {id} and cannot also {} it: another approver must",
                if to == "approved" {
                    "approve"
                } else {
                    "reject"
                }
            )));
        }
        let finishing = matches!(to, "succeeded" | "failed" | "expired");
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 6)).collect();
        let sql = format!(
            "UPDATE restore_requests SET status = $1, \
             decided_by = CASE WHEN $2 = 1 THEN $3 ELSE decided_by END, \
             decided_at = CASE WHEN $2 = 1 THEN $4 ELSE decided_at END, \
             decision_comment = CASE WHEN $2 = 1 THEN $5 ELSE decision_comment END, \
             finished_at = CASE WHEN ${f} = 1 THEN $4 ELSE finished_at END, \
             outcome = CASE WHEN ${f} = 1 THEN $5 ELSE outcome END \
             WHERE id = ${i} AND status IN ({})",
            placeholders.join(", "),
            f = from.len() + 6,
            i = from.len() + 7,
        );
        let mut query = sqlx::query(&sql)
            .bind(to)
            .bind(i64::from(deciding))
            .bind(by)
            .bind(stamp(now))
            .bind(comment.map(String::from));
        for status in from {
            query = query.bind(*status);
        }
        let updated = query
            .bind(i64::from(finishing))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        if updated.rows_affected() != 1 {
            return Err(self.invalid(format!("restore request {id} changed meanwhile; try again")));
        }
        self.append_in(
            &mut tx,
            event,
            id,
            serde_json::json!({"by": by, "status": to, "comment": comment, "policy": current.policy}),
        )
        .await?;
        tx.commit().await.map_err(self.db())?;
        self.request(id).await
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
            status: r.get(8),
            created_at: self.time(r.get(9))?,
            expires_at: self.time(r.get(10))?,
            not_before: time(11)?,
            decided_by: r.get(12),
            decided_at: time(13)?,
            decision_comment: r.get(14),
            finished_at: time(15)?,
            outcome: r.get(16),
        })
    }
}
