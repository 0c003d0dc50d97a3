//! Drills (restore tests) as recorded, their owners' sign-offs, and notices already sent
//! (so that an overdue sign-off is announced once, not on every tick).
//!
//! A drill's full report is kept as JSON beside the columns that status, metrics and
//! listings query; the report's shape belongs to the engine.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{stamp, Catalog, Result};

/// One drill as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRecord {
    pub id: String,
    pub policy: String,
    pub repository: String,
    pub snapshot_id: String,
    pub data_point: jiff::Timestamp,
    /// The scratch target, without secrets.
    pub target: String,
    /// `passed` or `failed`.
    pub status: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub rto_ms: Option<u64>,
    pub rto_objective_ms: Option<u64>,
    pub rpo_ms: Option<u64>,
    pub rpo_objective_ms: Option<u64>,
    pub error: Option<String>,
    pub report: serde_json::Value,
}

/// A recovery owner's sign-off of a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signoff {
    pub drill_id: String,
    pub principal: String,
    pub comment: String,
    pub signed_at: jiff::Timestamp,
}

const DRILL_COLUMNS: &str = "id, policy, repository, snapshot_id, data_point, target, status, \
     started_at, finished_at, rto_ms, rto_objective_ms, rpo_ms, rpo_objective_ms, error, report";

fn ms(value: Option<u64>) -> Option<i64> {
    value.map(|v| v.min(i64::MAX as u64) as i64)
}

impl Catalog {
    pub async fn record_drill(&self, d: &DrillRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO drills ({DRILL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&d.id)
        .bind(&d.policy)
        .bind(&d.repository)
        .bind(&d.snapshot_id)
        .bind(stamp(d.data_point))
        .bind(&d.target)
        .bind(&d.status)
        .bind(stamp(d.started_at))
        .bind(stamp(d.finished_at))
        .bind(ms(d.rto_ms))
        .bind(ms(d.rto_objective_ms))
        .bind(ms(d.rpo_ms))
        .bind(ms(d.rpo_objective_ms))
        .bind(d.error.clone())
        .bind(d.report.to_string())
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        self.append_in(
            &mut tx,
            "drill.recorded",
            &d.id,
            serde_json::json!({
                "policy": d.policy,
                "snapshot_id": d.snapshot_id,
                "status": d.status,
                "rto_ms": d.rto_ms,
                "rpo_ms": d.rpo_ms,
                "error": d.error,
            }),
        )
        .await?;
        tx.commit().await.map_err(self.db())
    }

    /// Drills, newest first, optionally of one policy.
    pub async fn drills(&self, policy: Option<&str>, limit: u32) -> Result<Vec<DrillRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DRILL_COLUMNS} FROM drills WHERE ($1 = '' OR policy = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        ))
        .bind(policy.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.drill_from(r)).collect()
    }

    /// The drill whose id is `id` or starts with it (a unique prefix).
    pub async fn drill(&self, id: &str) -> Result<DrillRecord> {
        let pattern = format!("{}%", id.replace(['%', '_'], ""));
        let rows = sqlx::query(&format!(
            "SELECT {DRILL_COLUMNS} FROM drills WHERE id LIKE $1 ORDER BY id LIMIT 2"
        ))
        .bind(&pattern)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        match rows.as_slice() {
            [one] => self.drill_from(one),
            [] => Err(crate::CatalogError::NotFound {
                location: self.location.clone(),
                what: format!("drill `{id}`"),
            }),
            _ => Err(self.conflict(format!("drill id `{id}` is ambiguous; give more of it"))),
        }
    }

    fn drill_from(&self, r: &AnyRow) -> Result<DrillRecord> {
        let ms = |i: usize| r.get::<Option<i64>, _>(i).map(|v| v.max(0) as u64);
        let report: String = r.get(14);
        Ok(DrillRecord {
            id: r.get(0),
            policy: r.get(1),
            repository: r.get(2),
            snapshot_id: r.get(3),
            data_point: self.time(r.get(4))?,
            target: r.get(5),
            status: r.get(6),
            started_at: self.time(r.get(7))?,
            finished_at: self.time(r.get(8))?,
            rto_ms: ms(9),
            rto_objective_ms: ms(10),
            rpo_ms: ms(11),
            rpo_objective_ms: ms(12),
            error: r.get(13),
            report: serde_json::from_str(&report)
                .map_err(|e| self.invalid(format!("drill report: {e}")))?,
        })
    }

    /// Records `principal`'s sign-off of a drill. A drill is signed off once: a second
    /// sign-off is refused and names the first.
    pub async fn sign_off(&self, signoff: &Signoff) -> Result<()> {
        if let Some(existing) = self.signoff(&signoff.drill_id).await? {
            return Err(self.invalid(format!(
                "drill {} was already signed off by {} at {}",
                signoff.drill_id, existing.principal, existing.signed_at
            )));
        }
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO signoffs (drill_id, principal, comment, signed_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&signoff.drill_id)
        .bind(&signoff.principal)
        .bind(&signoff.comment)
        .bind(stamp(signoff.signed_at))
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        self.append_in(
            &mut tx,
            "drill.signed_off",
            &signoff.drill_id,
            serde_json::json!({"principal": signoff.principal, "comment": signoff.comment}),
        )
        .await?;
        tx.commit().await.map_err(self.db())
    }

    pub async fn signoff(&self, drill_id: &str) -> Result<Option<Signoff>> {
        sqlx::query(
            "SELECT drill_id, principal, comment, signed_at FROM signoffs WHERE drill_id = $1",
        )
        .bind(drill_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?
        .map(|r| {
            Ok(Signoff {
                drill_id: r.get(0),
                principal: r.get(1),
                comment: r.get(2),
                signed_at: self.time(r.get(3))?,
            })
        })
        .transpose()
    }

    /// Passed drills of `policy` that nobody has signed off yet, oldest first.
    pub async fn pending_signoffs(&self, policy: &str) -> Result<Vec<DrillRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM drills d WHERE d.policy = $1 AND d.status = 'passed' \
             AND NOT EXISTS (SELECT 1 FROM signoffs s WHERE s.drill_id = d.id) \
             ORDER BY d.started_at, d.id",
            DRILL_COLUMNS
                .split(", ")
                .map(|c| format!("d.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(policy)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.drill_from(r)).collect()
    }

    /// Marks the notice `name` as sent; returns false when it already was (send it once).
    pub async fn first_notice(&self, name: &str, now: jiff::Timestamp) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO notices (name, sent_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(stamp(now))
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Forgets the notice `name`, so that the next [`Catalog::first_notice`] of it is first
    /// again (a breach that recovered alerts anew when it recurs).
    pub async fn clear_notice(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM notices WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }
}
