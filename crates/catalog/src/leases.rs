//! Who is running what, and whether they are still alive.
//!
//! Every process that starts a run or claims a job's lease is a [`Holder`]: its host, its
//! pid and a random nonce, so that a restarted process (even one given the same pid) is
//! never mistaken for the one that died. While a handle holds runs or leases, a heartbeat
//! task renews them every [`HEARTBEAT_EVERY`]: a lease lives [`LEASE_TTL`] past its last
//! renewal, not for a job's whole timeout, so a daemon killed mid-job blocks nothing for
//! more than seconds.
//!
//! [`Catalog::reconcile_abandoned`] turns a run left `running` by a holder that is gone
//! into `abandoned`, with an audit event, and frees its leases. A holder is gone when its
//! heartbeat is older than the time to live, or at once when it ran on this host and its
//! process no longer exists (a restart on the same machine waits for nothing).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::Row;

use crate::{hostname, stamp, Catalog, Result, Run, RunStatus};

/// How long a lease or a run's heartbeat stays valid without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How often a holder renews its leases and its runs' heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A process that holds runs and leases: `host:pid:nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub nonce: String,
}

impl Holder {
    /// This process's identity, made once.
    pub fn this_process() -> &'static Holder {
        static THIS: OnceLock<Holder> = OnceLock::new();
        THIS.get_or_init(|| Holder {
            host: hostname(),
            pid: std::process::id(),
            nonce: format!("{:08x}", rand::random::<u32>()),
        })
    }

    /// Parses `host:pid:nonce` (a host name never holds `:`, but is read from the right
    /// all the same).
    pub fn parse(text: &str) -> Option<Holder> {
        let mut parts = text.rsplitn(3, ':');
        let nonce = parts.next()?.to_string();
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        Some(Holder { host, pid, nonce })
    }

    /// Whether this holder's process is known to be gone without waiting for its heartbeat
    /// to age: it ran on this host and no process has its pid, or this process has its pid
    /// (so it is an earlier process that died).
    fn known_dead(&self) -> bool {
        let me = Holder::this_process();
        if self == me || self.host != me.host {
            return false;
        }
        self.pid == me.pid || !process_exists(self.pid)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.pid, self.nonce)
    }
}

/// The prefix of the lease a running daemon holds (see [`Catalog::announce_daemon`]).
const DAEMON_LEASE: &str = "daemon:";

/// Whether a process with `pid` exists on this host. Where `/proc` is missing, every pid is
/// taken to exist, and only heartbeats decide.
fn process_exists(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// A handle's holder and its heartbeat task, shared by the handle's clones; the task stops
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    pub(crate) holder: Holder,
    pub(crate) ttl: Duration,
    heartbeat: Arc<OnceLock<AbortOnDrop>>,
}

impl Liveness {
    pub(crate) fn new(holder: Holder, ttl: Duration) -> Self {
        Self {
            holder,
            ttl,
            heartbeat: Arc::default(),
        }
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Catalog {
    /// This handle, holding runs and leases as `holder` (another process's identity, for
    /// tests and tools; by default a handle holds them as this process).
    pub fn with_holder(mut self, holder: Holder) -> Self {
        self.liveness = Liveness::new(holder, self.liveness.ttl);
        self
    }

    /// This handle, with leases that live `ttl` past each renewal.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.liveness = Liveness::new(self.liveness.holder.clone(), ttl);
        self
    }

    pub fn holder(&self) -> &Holder {
        &self.liveness.holder
    }

    /// Starts this handle's heartbeat, once: from the first run or lease it takes until the
    /// last clone of the handle is dropped.
    pub(crate) fn keep_alive(&self) {
        self.liveness.heartbeat.get_or_init(|| {
            let catalog = self.clone_without_heartbeat();
            let every = (self.liveness.ttl / 6).max(Duration::from_secs(1));
            let task = tokio::spawn(async move {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(e) = catalog.heartbeat(jiff::Timestamp::now()).await {
                        // The next tick tries again; a lease outlives a few missed ones.
                        tracing::warn!(error = %e, "catalog heartbeat");
                    }
                }
            });
            AbortOnDrop(task.abort_handle())
        });
    }

    /// A clone that shares the pool and holder but not the heartbeat (the heartbeat task
    /// holds one, and must not keep itself alive).
    fn clone_without_heartbeat(&self) -> Catalog {
        Catalog {
            pool: self.pool.clone(),
            dialect: self.dialect,
            location: self.location.clone(),
            actor: self.actor.clone(),
            liveness: Liveness::new(self.liveness.holder.clone(), self.liveness.ttl),
        }
    }

    /// Renews every lease this handle's holder holds and the heartbeat of its running runs.
    pub async fn heartbeat(&self, now: jiff::Timestamp) -> Result<()> {
        let holder = self.liveness.holder.to_string();
        let until = now + self.ttl()?;
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE leases SET expires_at = $1 WHERE holder = $2")
            .bind(stamp(until))
            .bind(&holder)
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        for table in ["runs", "restore_requests"] {
            sqlx::query(&format!(
                "UPDATE {table} SET heartbeat_at = $1 WHERE holder = $2 AND status = 'running'"
            ))
            .bind(stamp(now))
            .bind(&holder)
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        }
        tx.commit().await.map_err(self.db())
    }

    fn ttl(&self) -> Result<jiff::SignedDuration> {
        jiff::SignedDuration::try_from(self.liveness.ttl).map_err(|e| self.invalid(e.to_string()))
    }

    /// Claims the job `name` for its scheduled `fire` as this handle's holder. Refused while
    /// another holder's lease is live (two runs of a job never overlap), and for a fire
    /// already claimed by anyone (several daemons sharing a catalog run each fire once, even
    /// when one wakes after another has finished and released it). The lease lives the
    /// handle's time to live and is renewed by its heartbeat until released.
    pub async fn claim_fire(&self, name: &str, fire: jiff::Timestamp) -> Result<bool> {
        self.keep_alive();
        let now = jiff::Timestamp::now();
        let until = now + self.ttl()?;
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO leases (name, holder, expires_at) VALUES ($1, '', $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(stamp(now))
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        let taken = sqlx::query(
            "UPDATE leases SET holder = $1, expires_at = $2, last_fire = $3 \
             WHERE name = $4 AND (holder = $1 OR holder = '' OR expires_at <= $5) AND last_fire < $3",
        )
        .bind(self.liveness.holder.to_string())
        .bind(stamp(until))
        .bind(stamp(fire))
        .bind(name)
        .bind(stamp(now))
        .execute(&mut *tx)
        .await
        .map_err(self.db())?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(self.db())?;
        Ok(taken)
    }

    /// Says, until [`Catalog::withdraw_daemon`] or the holder's death, that a daemon runs
    /// on this catalog as this handle's holder: a lease of its own, renewed by the heartbeat,
    /// so that `status` can tell whether anyone is running the schedules.
    pub async fn announce_daemon(&self) -> Result<()> {
        self.keep_alive();
        let now = jiff::Timestamp::now();
        let name = format!("{DAEMON_LEASE}{}", self.liveness.holder);
        sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3",
        )
        .bind(&name)
        .bind(self.liveness.holder.to_string())
        .bind(stamp(now + self.ttl()?))
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Takes back what [`Catalog::announce_daemon`] said (a daemon that stops).
    pub async fn withdraw_daemon(&self) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1")
            .bind(format!("{DAEMON_LEASE}{}", self.liveness.holder))
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }

    /// The daemons running on this catalog now (their holders), by their live leases; one
    /// on this host whose process is gone does not count.
    pub async fn running_daemons(&self, now: jiff::Timestamp) -> Result<Vec<Holder>> {
        let rows = sqlx::query(
            "SELECT holder FROM leases WHERE name LIKE $1 AND holder <> '' AND expires_at > $2",
        )
        .bind(format!("{DAEMON_LEASE}%"))
        .bind(stamp(now))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(rows
            .iter()
            .filter_map(|row| Holder::parse(&row.get::<String, _>(0)))
            .filter(|holder| !holder.known_dead())
            .collect())
    }

    /// Gives a lease back (only when this handle's holder holds it).
    pub async fn release_lease(&self, name: &str) -> Result<()> {
        sqlx::query(
            "UPDATE leases SET holder = '', expires_at = $1 WHERE name = $2 AND holder = $3",
        )
        .bind(stamp(jiff::Timestamp::now()))
        .bind(name)
        .bind(self.liveness.holder.to_string())
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Marks every run left `running` by a holder that is gone as `abandoned` (with an
    /// audit event each), fails the restore requests such holders left `running` (see
    /// [`Catalog::reconcile_requests`]), and frees the leases of gone holders. Returns the
    /// runs it marked.
    ///
    /// A run recorded before holders existed has none; it is abandoned once it is older
    /// than the time to live, as no heartbeat can keep it.
    pub async fn reconcile_abandoned(&self, now: jiff::Timestamp) -> Result<Vec<Run>> {
        let stale_before = stamp(now - self.ttl()?);
        let rows = sqlx::query(
            "SELECT id, holder, heartbeat_at, started_at FROM runs WHERE status = 'running'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        let mut gone_holders = Vec::new();
        let mut abandoned = Vec::new();
        for row in rows {
            let id: String = row.get(0);
            let holder: String = row.get(1);
            let last_sign: String = row
                .get::<Option<String>, _>(2)
                .unwrap_or_else(|| row.get(3));
            let parsed = Holder::parse(&holder);
            let gone = parsed.as_ref().is_some_and(Holder::known_dead)
                || (parsed.as_ref() != Some(&self.liveness.holder) && last_sign < stale_before);
            if !gone {
                continue;
            }
            if let Some(run) = self.abandon(&id, &holder, &last_sign, now).await? {
                abandoned.push(run);
            }
            gone_holders.push(holder);
        }
        // Leases of holders known dead, even those that died before starting their run.
        for row in sqlx::query("SELECT DISTINCT holder FROM leases WHERE holder <> ''")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?
        {
            let holder: String = row.get(0);
            if Holder::parse(&holder).is_some_and(|h| h.known_dead()) {
                gone_holders.push(holder);
            }
        }
        gone_holders.sort();
        gone_holders.dedup();
        for holder in gone_holders {
            sqlx::query("UPDATE leases SET holder = '', expires_at = $1 WHERE holder = $2")
                .bind(stamp(now))
                .bind(&holder)
                .execute(&self.pool)
                .await
                .map_err(self.db())?;
        }
        Ok(abandoned)
    }

    /// Fails, as interrupted, every restore request left `running` by a holder that is gone
    /// (by the same rule as runs), with its audit event. Returns them, failed.
    pub async fn reconcile_requests(
        &self,
        now: jiff::Timestamp,
    ) -> Result<Vec<crate::RestoreRequest>> {
        let stale_before = stamp(now - self.ttl()?);
        let me = self.liveness.holder.clone();
        self.fail_interrupted_requests(
            |holder, last_sign| {
                let parsed = Holder::parse(holder);
                parsed.as_ref().is_some_and(Holder::known_dead)
                    || (parsed.as_ref() != Some(&me) && last_sign < stale_before.as_str())
            },
            now,
        )
        .await
    }

    /// Fails the restore requests this handle's holder has left `running` (a daemon that
    /// shuts down before they finish), as interrupted.
    pub async fn fail_own_requests(
        &self,
        now: jiff::Timestamp,
    ) -> Result<Vec<crate::RestoreRequest>> {
        let me = self.liveness.holder.to_string();
        self.fail_interrupted_requests(|holder, _| holder == me, now)
            .await
    }

    /// Marks one run abandoned, unless it finished (or was reconciled) meanwhile.
    async fn abandon(
        &self,
        id: &str,
        holder: &str,
        last_sign: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<Run>> {
        let error = format!(
            "abandoned: the process running it ({}) stopped without finishing it; last heartbeat {last_sign}",
            if holder.is_empty() { "unknown" } else { holder }
        );
        let mut tx = self.begin_write().await?;
        let marked = sqlx::query(
            "UPDATE runs SET status = $1, finished_at = $2, error = $3 WHERE id = $4 AND status = 'running'",
        )
        .bind(RunStatus::Abandoned.as_str())
        .bind(stamp(now))
        .bind(&error)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(self.db())?
        .rows_affected()
            == 1;
        if !marked {
            return Ok(None);
        }
        self.append_in(
            &mut tx,
            "run.abandoned",
            id,
            serde_json::json!({"holder": holder, "last_heartbeat": last_sign, "error": error}),
        )
        .await?;
        let row = sqlx::query(
            "SELECT id, kind, policy, status, started_at, finished_at, bytes, snapshot_id, error, host, warnings \
             FROM runs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db())?;
        let run = self.run_from(&row)?;
        tx.commit().await.map_err(self.db())?;
        Ok(Some(run))
    }
}

#[cfg(test)]
mod tests {
    use super::Holder;

    #[test]
    fn holders_round_trip_through_text() {
        let h = Holder {
            host: "db-1.example".into(),
            pid: 4242,
            nonce: "0a1b2c3d".into(),
        };
        assert_eq!(Holder::parse(&h.to_string()), Some(h));
        assert_eq!(Holder::parse("nonsense"), None);
        assert_eq!(Holder::parse("host:notapid:n"), None);
    }

    #[test]
    fn a_dead_process_on_this_host_is_known_dead_and_others_are_not() {
        let me = Holder::this_process();
        assert!(!me.known_dead(), "this process is alive");
        let earlier_me = Holder {
            nonce: "ffffffff".into(),
            ..me.clone()
        };
        assert!(
            earlier_me.known_dead(),
            "same pid, another nonce: an earlier process"
        );
        let no_such_pid = Holder {
            pid: u32::MAX - 1,
            ..me.clone()
        };
        assert!(no_such_pid.known_dead());
        let elsewhere = Holder {
            host: format!("{}-elsewhere", me.host),
            pid: u32::MAX - 1,
            ..me.clone()
        };
        assert!(
            !elsewhere.known_dead(),
            "another host: only its heartbeat tells"
        );
    }
}
