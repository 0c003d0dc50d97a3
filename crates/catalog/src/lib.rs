//! The catalog: what Backstop has done (runs) and what it holds (snapshots, mirrored from
//! the repositories' manifests), kept with sqlx in a SQLite file by default or in
//! PostgreSQL when several daemons share the work.
//!
//! The catalog is a convenience and a record, never the source of truth for recovery:
//! everything about snapshots can be rebuilt from the repositories (`backstop catalog
//! rebuild`), and a break-glass restore never opens it.
//!
//! One struct over `sqlx::AnyPool`: the dialect is chosen by the URL at connect time, the
//! matching migrations run, and queries use portable types (TEXT timestamps in RFC 3339 UTC,
//! BIGINT) with `$N` placeholders, which both drivers accept.

use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

mod audit;
mod drills;
mod history;
mod leases;
mod requests;
mod verification;
pub use audit::{event_hash, AuditEvent, ChainStatus, GENESIS};
pub use drills::{DrillRecord, Signoff};
pub use history::{HistoryRow, Imported};
pub use leases::{Holder, HEARTBEAT_EVERY, LEASE_TTL};
pub use requests::{RequestStatus, RestoreRequest};
pub use verification::Coverage;

/// One migration: its version and its SQL (statements separated by `;` at line ends), per
/// dialect; `migrations/common/` holds those that both dialects share word for word.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "runs_snapshots",
        sqlite: include_str!("../migrations/sqlite/0001_runs_snapshots.sql"),
        postgres: include_str!("../migrations/postgres/0001_runs_snapshots.sql"),
    },
    Migration {
        version: 2,
        name: "drills_signoffs",
        sqlite: include_str!("../migrations/common/0002_drills_signoffs.sql"),
        postgres: include_str!("../migrations/common/0002_drills_signoffs.sql"),
    },
    Migration {
        version: 3,
        name: "audit",
        sqlite: include_str!("../migrations/common/0003_audit.sql"),
        postgres: include_str!("../migrations/common/0003_audit.sql"),
    },
    Migration {
        version: 4,
        name: "restore_requests",
        sqlite: include_str!("../migrations/common/0004_restore_requests.sql"),
        postgres: include_str!("../migrations/common/0004_restore_requests.sql"),
    },
    Migration {
        version: 5,
        name: "lease_fires",
        sqlite: include_str!("../migrations/common/0005_lease_fires.sql"),
        postgres: include_str!("../migrations/common/0005_lease_fires.sql"),
    },
    Migration {
        version: 6,
        name: "run_holders",
        sqlite: include_str!("../migrations/common/0006_run_holders.sql"),
        postgres: include_str!("../migrations/common/0006_run_holders.sql"),
    },
    Migration {
        version: 7,
        name: "request_runs",
        sqlite: include_str!("../migrations/common/0007_request_runs.sql"),
        postgres: include_str!("../migrations/common/0007_request_runs.sql"),
    },
    Migration {
        version: 8,
        name: "run_warnings",
        sqlite: include_str!("../migrations/common/0008_run_warnings.sql"),
        postgres: include_str!("../migrations/common/0008_run_warnings.sql"),
    },
    Migration {
        version: 9,
        name: "pack_reads",
        sqlite: include_str!("../migrations/common/0009_pack_reads.sql"),
        postgres: include_str!("../migrations/common/0009_pack_reads.sql"),
    },
    Migration {
        version: 10,
        name: "snapshots_per_repository",
        sqlite: include_str!("../migrations/common/0010_snapshots_per_repository.sql"),
        postgres: include_str!("../migrations/common/0010_snapshots_per_repository.sql"),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {location}: {source}")]
    Db {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("catalog {location}: {message}")]
    Invalid { location: String, message: String },
    /// What was asked for is not in the catalog.
    #[error("catalog {location}: no {what}")]
    NotFound { location: String, what: String },
    /// The change contradicts the recorded state (a request already decided, four-eyes).
    #[error("catalog {location}: {message}")]
    Conflict { location: String, message: String },
}

/// What a caller can do about a catalog error: the API maps these to 404, 409 and 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    /// The database cannot be reached now; the same call may succeed later.
    Unavailable,
    Other,
}

impl CatalogError {
    /// What happened, without the catalog's location (a file path or a server's address,
    /// which callers outside the host have no business seeing).
    pub fn detail(&self) -> String {
        match self {
            CatalogError::Db { source, .. } => source.to_string(),
            CatalogError::Invalid { message, .. } | CatalogError::Conflict { message, .. } => {
                message.clone()
            }
            CatalogError::NotFound { what, .. } => format!("no {what}"),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::NotFound { .. } => ErrorKind::NotFound,
            CatalogError::Conflict { .. } => ErrorKind::Conflict,
            CatalogError::Db { source, .. } => match source {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            },
            CatalogError::Invalid { .. } => ErrorKind::Other,
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// What kind of job a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Backup,
    Restore,
    Drill,
    Check,
    Prune,
    /// A snapshot copied to a secondary repository.
    Copy,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Restore => "restore",
            RunKind::Drill => "drill",
            RunKind::Check => "check",
            RunKind::Prune => "prune",
            RunKind::Copy => "copy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Left `running` by a process that died: set by [`Catalog::reconcile_abandoned`].
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "abandoned" => RunStatus::Abandoned,
            _ => return None,
        })
    }
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub kind: String,
    pub policy: String,
    pub status: RunStatus,
    pub started_at: jiff::Timestamp,
    pub finished_at: Option<jiff::Timestamp>,
    pub bytes: Option<u64>,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    pub host: String,
    /// What the run warns of though it succeeded (a backup's anomalies).
    pub warnings: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunEnd {
    pub bytes: Option<u64>,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    /// What the run warns of though it succeeded (a backup's anomalies).
    pub warnings: Vec<String>,
}

/// What the catalog knows of one policy's backups, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupStats {
    /// When the newest successful backup finished.
    pub last_success: Option<jiff::Timestamp>,
    /// The newest finished backup run (succeeded, failed or cancelled).
    pub last_finished: Option<Run>,
    /// Finished backup runs by status.
    pub runs_by_status: std::collections::BTreeMap<String, u64>,
    /// The data point of the newest snapshot: RPO exposure is measured from it.
    pub newest_data_point: Option<jiff::Timestamp>,
}

/// A snapshot as the catalog mirrors it: the manifest's summary fields, and its facts and
/// backup summary as JSON (the repository's documented format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: String,
    pub repository: String,
    pub policy: String,
    pub source_kind: String,
    pub time: jiff::Timestamp,
    pub data_point: jiff::Timestamp,
    pub hostname: String,
    pub files: u64,
    pub bytes: u64,
    pub digest: String,
    pub facts: serde_json::Value,
    pub summary: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    dialect: Dialect,
    location: String,
    /// Who the audit events appended through this handle name as their actor.
    actor: String,
    /// Which process holds the runs and leases taken through this handle, kept alive by a
    /// heartbeat while any are held.
    liveness: leases::Liveness,
}

impl Catalog {
    /// Opens (creating when missing) the catalog: `url` when given (`postgres://…`, or
    /// `sqlite://PATH`), else `catalog.db` under `data_dir`. Runs pending migrations.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (url, dialect, location) = match url {
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                let shown = redact(u);
                (u.to_string(), Dialect::Postgres, shown)
            }
            Some(u) if u.starts_with("sqlite:") => (u.to_string(), Dialect::Sqlite, u.to_string()),
            Some(other) => {
                return Err(CatalogError::Invalid {
                    location: redact(other),
                    message: "catalog must be a postgres:// or sqlite: URL".into(),
                })
            }
            None => {
                std::fs::create_dir_all(data_dir).map_err(|e| CatalogError::Invalid {
                    location: data_dir.display().to_string(),
                    message: format!("creating the data directory: {e}"),
                })?;
                let path = data_dir.join("catalog.db");
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Dialect::Sqlite,
                    path.display().to_string(),
                )
            }
        };
        // No idle timeout nor lifetime: with either, sqlx 0.8 runs a reaper task whose sweep
        // can spin forever on a miscounted idle queue (sqlx issue 3645; seen here as an
        // `evidence export` at 100% CPU that never ended). The catalog's few connections
        // may stay open for the process's life.
        let pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 1 } else { 4 })
            .idle_timeout(None)
            .max_lifetime(None)
            .connect(&url)
            .await
            .map_err(|source| CatalogError::Db {
                location: location.clone(),
                source,
            })?;
        let catalog = Self {
            pool,
            dialect,
            location,
            actor: default_actor(),
            liveness: leases::Liveness::new(Holder::this_process().clone(), LEASE_TTL),
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// This handle, appending audit events as `actor` (a principal, or `daemon@host`).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn db(&self) -> impl FnOnce(sqlx::Error) -> CatalogError + '_ {
        move |source| CatalogError::Db {
            location: self.location.clone(),
            source,
        }
    }

    /// A transaction that writes. On SQLite it takes the write lock at its start (`BEGIN
    /// IMMEDIATE`), waiting for other writers as long as the busy timeout allows: a
    /// transaction begun as a reader that then writes (an audit event reads the chain's head,
    /// then appends) fails at once with "database is locked" when another process holds the
    /// write lock, since waiting could deadlock.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
        .map_err(self.db())
    }

    async fn migrate(&self) -> Result<()> {
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS catalog_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";
        match self.dialect {
            // Atomic under SQLite's database lock.
            Dialect::Sqlite => {
                sqlx::query(CREATE)
                    .execute(&self.pool)
                    .await
                    .map_err(self.db())?;
            }
            // Two sessions creating the table at once collide in PostgreSQL's catalog even
            // with IF NOT EXISTS: take the migration lock first.
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await.map_err(self.db())?;
                sqlx::query("SELECT pg_advisory_xact_lock(7340001)")
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db())?;
                sqlx::query(CREATE)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db())?;
                tx.commit().await.map_err(self.db())?;
            }
        }
        let applied: Vec<i64> = sqlx::query("SELECT version FROM catalog_migrations")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        if let Some(newest) = applied.iter().max() {
            let known = MIGRATIONS.last().map(|m| m.version).unwrap_or(0);
            if *newest > known {
                return Err(CatalogError::Invalid {
                    location: self.location.clone(),
                    message: format!(
                        "schema version {newest} is newer than this backstop knows ({known}); upgrade backstop"
                    ),
                });
            }
        }
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            self.apply(m).await?;
        }
        Ok(())
    }

    /// Applies one migration under an exclusive lock, unless another process (a daemon and a
    /// command starting together) applied it first.
    async fn apply(&self, m: &Migration) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(self.db())?;
        let (begin, lock) = match self.dialect {
            // IMMEDIATE takes the write lock now: a second migrator waits, then sees the row.
            Dialect::Sqlite => ("BEGIN IMMEDIATE", None),
            Dialect::Postgres => ("BEGIN", Some("SELECT pg_advisory_xact_lock(7340001)")),
        };
        sqlx::query(begin)
            .execute(&mut *conn)
            .await
            .map_err(self.db())?;
        let result = async {
            if let Some(lock) = lock {
                sqlx::query(lock).execute(&mut *conn).await?;
            }
            let done = sqlx::query("SELECT version FROM catalog_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            if done {
                return Ok(());
            }
            let sql = match self.dialect {
                Dialect::Sqlite => m.sqlite,
                Dialect::Postgres => m.postgres,
            };
            for statement in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *conn).await?;
            }
            sqlx::query(
                "INSERT INTO catalog_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(stamp(jiff::Timestamp::now()))
            .execute(&mut *conn)
            .await?;
            Ok::<(), sqlx::Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(self.db())?;
                Ok(())
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(self.db()(e))
            }
        }
    }

    /// Records the start of a run and returns its id.
    pub async fn start_run(&self, kind: RunKind, policy: &str) -> Result<String> {
        let now = jiff::Timestamp::now();
        let id = format!(
            "{}-{:08x}",
            now.strftime("%Y%m%dT%H%M%S"),
            rand::random::<u32>()
        );
        self.keep_alive();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO runs (id, kind, policy, status, started_at, host, holder, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $5)",
        )
        .bind(&id)
        .bind(kind.as_str())
        .bind(policy)
        .bind(RunStatus::Running.as_str())
        .bind(stamp(now))
        .bind(hostname())
        .bind(self.liveness.holder.to_string())
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        self.append_in(
            &mut tx,
            "run.started",
            &id,
            serde_json::json!({"kind": kind.as_str(), "policy": policy, "host": hostname()}),
        )
        .await?;
        tx.commit().await.map_err(self.db())?;
        Ok(id)
    }

    /// Records how a run ended.
    pub async fn finish_run(&self, id: &str, status: RunStatus, end: &RunEnd) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, finished_at = $2, bytes = $3, snapshot_id = $4, error = $5, warnings = $6 WHERE id = $7",
        )
        .bind(status.as_str())
        .bind(stamp(jiff::Timestamp::now()))
        .bind(end.bytes.map(|b| b as i64))
        .bind(end.snapshot_id.clone())
        .bind(end.error.clone())
        .bind(serde_json::to_string(&end.warnings).expect("strings serialise"))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        if updated.rows_affected() != 1 {
            return Err(CatalogError::NotFound {
                location: self.location.clone(),
                what: format!("run {id} to finish"),
            });
        }
        self.append_in(&mut tx, "run.finished", id, {
            let mut detail = serde_json::json!({
                "status": status.as_str(),
                "bytes": end.bytes,
                "snapshot_id": end.snapshot_id,
                "error": end.error,
            });
            if !end.warnings.is_empty() {
                detail["warnings"] = serde_json::json!(end.warnings);
            }
            detail
        })
        .await?;
        tx.commit().await.map_err(self.db())
    }

    /// Runs, newest first, optionally of one policy.
    pub async fn runs(&self, policy: Option<&str>, limit: u32) -> Result<Vec<Run>> {
        let rows = sqlx::query(
            "SELECT id, kind, policy, status, started_at, finished_at, bytes, snapshot_id, error, host, warnings \
             FROM runs WHERE ($1 = '' OR policy = $1) ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(policy.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.run_from(r)).collect()
    }

    /// When the newest run of `kind` for `policy` started (for a scheduler's catch-up).
    pub async fn last_run_started(
        &self,
        policy: &str,
        kind: RunKind,
    ) -> Result<Option<jiff::Timestamp>> {
        self.run_started(policy, kind, "max").await
    }

    /// When the oldest run of `kind` for `policy` started (where a policy's RPO period
    /// begins).
    pub async fn first_run_started(
        &self,
        policy: &str,
        kind: RunKind,
    ) -> Result<Option<jiff::Timestamp>> {
        self.run_started(policy, kind, "min").await
    }

    /// `aggregate` (`min` or `max`) of the start times of `policy`'s runs of `kind`.
    async fn run_started(
        &self,
        policy: &str,
        kind: RunKind,
        aggregate: &'static str,
    ) -> Result<Option<jiff::Timestamp>> {
        let row = sqlx::query(&format!(
            "SELECT {aggregate}(started_at) FROM runs WHERE policy = $1 AND kind = $2"
        ))
        .bind(policy)
        .bind(kind.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(self.db())?;
        row.get::<Option<String>, _>(0)
            .map(|t| self.time(t))
            .transpose()
    }

    /// What is known of `policy`'s backups.
    pub async fn backup_stats(&self, policy: &str) -> Result<BackupStats> {
        let last_success: Option<String> = sqlx::query(
            "SELECT max(finished_at) FROM runs WHERE policy = $1 AND kind = 'backup' AND status = 'succeeded'",
        )
        .bind(policy)
        .fetch_one(&self.pool)
        .await
        .map_err(self.db())?
        .get(0);
        let last_finished = sqlx::query(
            "SELECT id, kind, policy, status, started_at, finished_at, bytes, snapshot_id, error, host, warnings \
             FROM runs WHERE policy = $1 AND kind = 'backup' AND finished_at IS NOT NULL \
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(policy)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?
        .map(|r| self.run_from(&r))
        .transpose()?;
        let mut runs_by_status = std::collections::BTreeMap::new();
        for row in sqlx::query(
            "SELECT status, count(*) FROM runs WHERE policy = $1 AND kind = 'backup' AND finished_at IS NOT NULL GROUP BY status",
        )
        .bind(policy)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?
        {
            runs_by_status.insert(row.get::<String, _>(0), row.get::<i64, _>(1).max(0) as u64);
        }
        let newest: Option<String> =
            sqlx::query("SELECT max(data_point) FROM snapshots WHERE policy = $1")
                .bind(policy)
                .fetch_one(&self.pool)
                .await
                .map_err(self.db())?
                .get(0);
        Ok(BackupStats {
            last_success: last_success.map(|t| self.time(t)).transpose()?,
            last_finished,
            runs_by_status,
            newest_data_point: newest.map(|t| self.time(t)).transpose()?,
        })
    }

    fn run_from(&self, r: &AnyRow) -> Result<Run> {
        let status: String = r.get(3);
        Ok(Run {
            id: r.get(0),
            kind: r.get(1),
            policy: r.get(2),
            status: RunStatus::parse(&status)
                .ok_or_else(|| self.invalid(format!("unknown run status `{status}`")))?,
            started_at: self.time(r.get(4))?,
            finished_at: r
                .get::<Option<String>, _>(5)
                .map(|t| self.time(t))
                .transpose()?,
            bytes: r.get::<Option<i64>, _>(6).map(|b| b.max(0) as u64),
            snapshot_id: r.get(7),
            error: r.get(8),
            host: r.get(9),
            warnings: serde_json::from_str(&r.get::<String, _>(10)).unwrap_or_default(),
        })
    }

    fn conflict(&self, message: String) -> CatalogError {
        CatalogError::Conflict {
            location: self.location.clone(),
            message,
        }
    }

    fn invalid(&self, message: String) -> CatalogError {
        CatalogError::Invalid {
            location: self.location.clone(),
            message,
        }
    }

    fn time(&self, text: String) -> Result<jiff::Timestamp> {
        text.parse()
            .map_err(|e| self.invalid(format!("bad timestamp `{text}`: {e}")))
    }

    /// Records a snapshot (idempotent: the same id again changes nothing).
    pub async fn record_snapshot(&self, s: &SnapshotRecord) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO snapshots (id, repository, policy, source_kind, time, data_point, hostname, files, bytes, digest, facts, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (repository, id) DO NOTHING",
        )
        .bind(&s.id)
        .bind(&s.repository)
        .bind(&s.policy)
        .bind(&s.source_kind)
        .bind(stamp(s.time))
        .bind(stamp(s.data_point))
        .bind(&s.hostname)
        .bind(s.files as i64)
        .bind(s.bytes as i64)
        .bind(&s.digest)
        .bind(s.facts.to_string())
        .bind(s.summary.to_string())
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        let inserted = inserted.rows_affected() == 1;
        if inserted {
            self.append_in(
                &mut tx,
                "snapshot.recorded",
                &s.id,
                serde_json::json!({
                    "policy": s.policy,
                    "repository": s.repository,
                    "data_point": stamp(s.data_point),
                    "digest": s.digest,
                }),
            )
            .await?;
        }
        tx.commit().await.map_err(self.db())?;
        Ok(inserted)
    }

    /// Snapshots, oldest first, optionally of one policy.
    pub async fn snapshots(&self, policy: Option<&str>) -> Result<Vec<SnapshotRecord>> {
        let rows = sqlx::query(
            "SELECT id, repository, policy, source_kind, time, data_point, hostname, files, bytes, digest, facts, summary \
             FROM snapshots WHERE ($1 = '' OR policy = $1) ORDER BY time, id, repository",
        )
        .bind(policy.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter()
            .map(|r| {
                let json = |i: usize| -> Result<serde_json::Value> {
                    let text: String = r.get(i);
                    serde_json::from_str(&text)
                        .map_err(|e| self.invalid(format!("snapshot facts: {e}")))
                };
                Ok(SnapshotRecord {
                    id: r.get(0),
                    repository: r.get(1),
                    policy: r.get(2),
                    source_kind: r.get(3),
                    time: self.time(r.get(4))?,
                    data_point: self.time(r.get(5))?,
                    hostname: r.get(6),
                    files: r.get::<i64, _>(7).max(0) as u64,
                    bytes: r.get::<i64, _>(8).max(0) as u64,
                    digest: r.get(9),
                    facts: json(10)?,
                    summary: json(11)?,
                })
            })
            .collect()
    }

    /// Forgets snapshots of `repository` that are not in `keep` (pruned from the
    /// repository); returns how many.
    pub async fn forget_snapshots_except(&self, repository: &str, keep: &[String]) -> Result<u64> {
        let known: Vec<String> = sqlx::query("SELECT id FROM snapshots WHERE repository = $1")
            .bind(repository)
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        let mut forgotten = 0;
        for id in known.iter().filter(|id| !keep.contains(id)) {
            let mut tx = self.begin_write().await?;
            let removed = sqlx::query("DELETE FROM snapshots WHERE repository = $1 AND id = $2")
                .bind(repository)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.db())?
                .rows_affected();
            if removed > 0 {
                self.append_in(
                    &mut tx,
                    "snapshot.forgotten",
                    id,
                    serde_json::json!({"repository": repository}),
                )
                .await?;
            }
            tx.commit().await.map_err(self.db())?;
            forgotten += removed;
        }
        Ok(forgotten)
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text (nanoseconds always written), so
/// that text order is time order in both dialects.
pub fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

/// `$USER@host`, the actor of a command line without a configured principal.
fn default_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_sort_as_time_sorts() {
        let a: jiff::Timestamp = "2026-11-25T16:30:00Z".parse().unwrap();
        let b: jiff::Timestamp = "2026-11-25T16:30:00.5Z".parse().unwrap();
        let c: jiff::Timestamp = "2026-11-25T16:30:01Z".parse().unwrap();
        let (sa, sb, sc) = (super::stamp(a), super::stamp(b), super::stamp(c));
        assert!(sa < sb && sb < sc, "{sa} {sb} {sc}");
        assert_eq!(sa.len(), sc.len());
        assert_eq!(sa.parse::<jiff::Timestamp>().unwrap(), a);
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
