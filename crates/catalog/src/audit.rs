//! The audit log: an append-only, hash-chained record of every state change, appended in
//! the same transaction as the change it records.
//!
//! Each event's hash is SHA-256 over the previous event's hash and the event's canonical
//! content (a JSON object with sorted keys: seq, time, actor, kind, subject, detail), so
//! editing, removing or reordering any event breaks every hash after it. `verify` recomputes
//! the chain and names the first event that does not fit. The first event's previous hash
//! is [`GENESIS`].

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{stamp, Catalog, Dialect, Result};

/// The previous hash of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub seq: i64,
    pub time: jiff::Timestamp,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The outcome of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    Intact {
        events: u64,
        head: String,
    },
    /// The first event that does not fit, and why.
    Broken {
        seq: i64,
        kind: String,
        reason: String,
    },
}

/// The hash of an event: SHA-256 of `prev_hash`, a newline, and the canonical JSON of its
/// content.
pub fn event_hash(
    prev_hash: &str,
    seq: i64,
    time: jiff::Timestamp,
    actor: &str,
    kind: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> String {
    // serde_json's maps are sorted by key: this text is canonical.
    let content = serde_json::json!({
        "seq": seq,
        "time": stamp(time),
        "actor": actor,
        "kind": kind,
        "subject": subject,
        "detail": detail,
    });
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(content.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

impl Catalog {
    /// Appends an event inside `tx`, after the current head. On PostgreSQL the table is
    /// locked for the rest of the transaction, so that two daemons sharing the catalog
    /// append one after the other, never from the same head.
    pub(crate) async fn append_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("LOCK TABLE audit_events IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await
                .map_err(self.db())?;
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.db())?;
        let (seq, prev) = match head {
            Some(row) => (row.get::<i64, _>(0) + 1, row.get::<String, _>(1)),
            None => (1, GENESIS.to_string()),
        };
        let time = jiff::Timestamp::now();
        let hash = event_hash(&prev, seq, time, &self.actor, kind, subject, &detail);
        sqlx::query(
            "INSERT INTO audit_events (seq, time, actor, kind, subject, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(stamp(time))
        .bind(&self.actor)
        .bind(kind)
        .bind(subject)
        .bind(detail.to_string())
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Appends an event on its own (a change that has no other row, such as a policy set
    /// being loaded).
    pub async fn append_event(
        &self,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.append_in(&mut tx, kind, subject, detail).await?;
        tx.commit().await.map_err(self.db())
    }

    /// Events in order, from `after` (exclusive), at most `limit`.
    pub async fn audit_events(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT seq, time, actor, kind, subject, detail, prev_hash, hash FROM audit_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.event_from(r)).collect()
    }

    /// The events about `subject` (a request, a drill, a run), in order, at most `limit`.
    pub async fn audit_events_about(&self, subject: &str, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT seq, time, actor, kind, subject, detail, prev_hash, hash FROM audit_events \
             WHERE subject = $1 ORDER BY seq LIMIT $2",
        )
        .bind(subject)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.event_from(r)).collect()
    }

    fn event_from(&self, r: &AnyRow) -> Result<AuditEvent> {
        let detail: String = r.get(5);
        Ok(AuditEvent {
            seq: r.get(0),
            time: self.time(r.get(1))?,
            actor: r.get(2),
            kind: r.get(3),
            subject: r.get(4),
            // A detail that is no longer JSON is kept as text, so that verify can report
            // the event as altered rather than fail to read it.
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            prev_hash: r.get(6),
            hash: r.get(7),
        })
    }

    /// Recomputes the whole chain.
    pub async fn verify_audit(&self) -> Result<ChainStatus> {
        let mut expected_prev = GENESIS.to_string();
        let mut expected_seq = 1;
        let mut count = 0u64;
        let mut after = 0;
        loop {
            let page = self.audit_events(after, 1000).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                let broken = |reason: String| ChainStatus::Broken {
                    seq: e.seq,
                    kind: e.kind.clone(),
                    reason,
                };
                if e.seq != expected_seq {
                    return Ok(broken(format!(
                        "expected event #{expected_seq} here: events are missing or renumbered"
                    )));
                }
                if e.prev_hash != expected_prev {
                    return Ok(broken(
                        "its previous hash is not the hash of the event before it".into(),
                    ));
                }
                let hash = event_hash(
                    &e.prev_hash,
                    e.seq,
                    e.time,
                    &e.actor,
                    &e.kind,
                    &e.subject,
                    &e.detail,
                );
                if hash != e.hash {
                    return Ok(broken(
                        "its content does not match its hash: the event was altered".into(),
                    ));
                }
                expected_prev = e.hash.clone();
                expected_seq += 1;
                count += 1;
            }
            after = page.last().map(|e| e.seq).unwrap_or(after);
        }
        Ok(ChainStatus::Intact {
            events: count,
            head: expected_prev,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event's detail is hashed as it was written and again as it is read back from its
    /// stored text: a measured number (an RTO in seconds) must read back as the same number,
    /// or an intact chain would verify as altered.
    #[test]
    fn a_detail_with_measured_numbers_hashes_the_same_after_a_round_trip() {
        let t: jiff::Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let mut x = 0.123_456_789_f64;
        for i in 0..20_000u32 {
            x = (x * 1.618_033_988_749_895 + f64::from(i) * 1e-7).fract() * 1e3;
            let detail = serde_json::json!({"rto_seconds": x, "estate_rto_seconds": x / 7.0});
            let stored = detail.to_string();
            let read: serde_json::Value = serde_json::from_str(&stored).unwrap();
            assert_eq!(
                event_hash(GENESIS, 1, t, "ops", "dr.completed", "dr", &detail),
                event_hash(GENESIS, 1, t, "ops", "dr.completed", "dr", &read),
                "{stored} read back as {read}"
            );
        }
    }

    #[test]
    fn the_hash_covers_the_previous_hash_and_every_field() {
        let t: jiff::Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let detail = serde_json::json!({"policy": "orders", "status": "passed"});
        let base = event_hash(GENESIS, 1, t, "ops", "drill.recorded", "d1", &detail);
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            event_hash(GENESIS, 1, t, "ops", "drill.recorded", "d1", &detail)
        );
        let other_detail = serde_json::json!({"policy": "orders", "status": "failed"});
        for changed in [
            event_hash(
                &"1".repeat(64),
                1,
                t,
                "ops",
                "drill.recorded",
                "d1",
                &detail,
            ),
            event_hash(GENESIS, 2, t, "ops", "drill.recorded", "d1", &detail),
            event_hash(
                GENESIS,
                1,
                t + jiff::SignedDuration::from_secs(1),
                "ops",
                "drill.recorded",
                "d1",
                &detail,
            ),
            event_hash(GENESIS, 1, t, "eve", "drill.recorded", "d1", &detail),
            event_hash(GENESIS, 1, t, "ops", "drill.signed_off", "d1", &detail),
            event_hash(GENESIS, 1, t, "ops", "drill.recorded", "d2", &detail),
            event_hash(GENESIS, 1, t, "ops", "drill.recorded", "d1", &other_detail),
        ] {
            assert_ne!(changed, base);
        }
        // Key order in the detail does not matter: the content is canonical.
        let reordered: serde_json::Value =
            serde_json::from_str(r#"{"status": "passed", "policy": "orders"}"#).unwrap();
        assert_eq!(
            base,
            event_hash(GENESIS, 1, t, "ops", "drill.recorded", "d1", &reordered)
        );
    }
}
