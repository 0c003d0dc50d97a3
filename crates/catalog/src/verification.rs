//! Verification coverage: which packs of each repository a reading check has found clean, and
//! when, so that `check --read-data-subset` rotates through the repository (the least recently
//! read first) and `status`, `/metrics` and the evidence can say how recently every pack was
//! read.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use crate::{stamp, Catalog, Result};

/// A repository's coverage as of its last reading check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    pub repository: String,
    pub checked_at: jiff::Timestamp,
    /// Packs in the repository at that check.
    pub packs: u64,
    /// Of those, the ones no check has read clean yet.
    pub packs_never_read: u64,
    /// The oldest clean read among the packs present; none when none was read.
    pub oldest_read_at: Option<jiff::Timestamp>,
    /// Bytes that check read.
    pub bytes_read: u64,
}

impl Coverage {
    /// Every pack read clean within this long before `now`; none while some pack was never
    /// read.
    pub fn every_pack_within(&self, now: jiff::Timestamp) -> Option<std::time::Duration> {
        if self.packs_never_read > 0 {
            return None;
        }
        match self.oldest_read_at {
            Some(oldest) => Some(now.duration_since(oldest).unsigned_abs()),
            // An empty repository: nothing to read.
            None => Some(std::time::Duration::ZERO),
        }
    }
}

impl Catalog {
    /// When each pack of `repository` was last read clean, by pack id.
    pub async fn pack_reads(&self, repository: &str) -> Result<HashMap<String, jiff::Timestamp>> {
        let rows = sqlx::query("SELECT pack, read_at FROM pack_reads WHERE repository = $1")
            .bind(repository)
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
        rows.iter()
            .map(|r| Ok((r.get::<String, _>(0), self.time(r.get(1))?)))
            .collect()
    }

    /// Records a reading check of `repository` at `at`: `read_clean` were read whole and found
    /// clean; `present` are all its packs now (reads of packs gone since are forgotten).
    /// Returns the coverage it leaves, which [`Catalog::coverage`] gives from then on.
    pub async fn record_verification(
        &self,
        repository: &str,
        present: &[String],
        read_clean: &[String],
        bytes_read: u64,
        at: jiff::Timestamp,
    ) -> Result<Coverage> {
        let mut tx = self.begin_write().await?;
        for pack in read_clean {
            sqlx::query(
                "INSERT INTO pack_reads (repository, pack, read_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (repository, pack) DO UPDATE SET read_at = excluded.read_at",
            )
            .bind(repository)
            .bind(pack)
            .bind(stamp(at))
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        }
        let rows = sqlx::query("SELECT pack, read_at FROM pack_reads WHERE repository = $1")
            .bind(repository)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db())?;
        let present_set: HashSet<&str> = present.iter().map(String::as_str).collect();
        let mut read: HashMap<String, jiff::Timestamp> = HashMap::new();
        for row in &rows {
            let pack: String = row.get(0);
            if present_set.contains(pack.as_str()) {
                read.insert(pack, self.time(row.get(1))?);
            } else {
                sqlx::query("DELETE FROM pack_reads WHERE repository = $1 AND pack = $2")
                    .bind(repository)
                    .bind(&pack)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db())?;
            }
        }
        let coverage = Coverage {
            repository: repository.to_string(),
            checked_at: at,
            packs: present_set.len() as u64,
            packs_never_read: present_set
                .iter()
                .filter(|p| !read.contains_key(**p))
                .count() as u64,
            oldest_read_at: read.values().min().copied(),
            bytes_read,
        };
        sqlx::query(
            "INSERT INTO coverage (repository, checked_at, packs, packs_never_read, oldest_read_at, bytes_read) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repository) DO UPDATE SET \
             checked_at = excluded.checked_at, packs = excluded.packs, \
             packs_never_read = excluded.packs_never_read, \
             oldest_read_at = excluded.oldest_read_at, bytes_read = excluded.bytes_read",
        )
        .bind(repository)
        .bind(stamp(at))
        .bind(coverage.packs as i64)
        .bind(coverage.packs_never_read as i64)
        .bind(coverage.oldest_read_at.map(stamp))
        .bind(bytes_read as i64)
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        tx.commit().await.map_err(self.db())?;
        Ok(coverage)
    }

    /// `repository`'s coverage as of its last reading check; none before the first.
    pub async fn coverage(&self, repository: &str) -> Result<Option<Coverage>> {
        let row = sqlx::query(
            "SELECT checked_at, packs, packs_never_read, oldest_read_at, bytes_read \
             FROM coverage WHERE repository = $1",
        )
        .bind(repository)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(Coverage {
            repository: repository.to_string(),
            checked_at: self.time(r.get(0))?,
            packs: r.get::<i64, _>(1).max(0) as u64,
            packs_never_read: r.get::<i64, _>(2).max(0) as u64,
            oldest_read_at: r
                .get::<Option<String>, _>(3)
                .map(|t| self.time(t))
                .transpose()?,
            bytes_read: r.get::<i64, _>(4).max(0) as u64,
        }))
    }
}
