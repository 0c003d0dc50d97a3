//! Scratch targets: a snapshot restored into a throwaway database (`backstop_drill_<id>` on
//! a scratch server) or a temporary file or directory, checked, then removed.
//!
//! Removal is guaranteed on every path: [`Scratch::discard`] on success and failure; `Drop`
//! (a panic, a cancelled task) removes it synchronously on a thread of its own; and what a
//! killed process leaves behind is swept by name prefix and age ([`sweep`]) before the next
//! scratch target is made on the same server. `keep` leaves one for investigation.
//!
//! Restore safety: a scratch target that is the source (same host, port and database; the
//! same or a nested path) is refused before anything is written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backstop_repo::{Snapshot, SnapshotReader, SourceFacts};

use crate::dburl::{DbUrl, Engine};
use crate::identity::{clash_with, Identity, Protected};
use crate::tool::Tools;
use crate::{sqlite, SourceError};

/// Every scratch database, file and directory is named with this prefix.
pub const PREFIX: &str = "backstop_drill_";

/// How old a leftover scratch target must be before a sweep removes it (one that another
/// drill may still be using is younger).
pub const SWEEP_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Where a scratch target is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScratchSpec {
    /// A scratch PostgreSQL server; the URL's database is the maintenance database that
    /// scratch databases are created from.
    Postgres(DbUrl),
    /// A scratch MySQL/MariaDB server.
    Mysql(DbUrl),
    /// A temporary SQLite file, under `dir` or the system's temporary directory.
    Sqlite { dir: Option<PathBuf> },
    /// A temporary directory for files and config snapshots.
    Directory { dir: Option<PathBuf> },
}

#[derive(Debug, Clone)]
pub struct ScratchOptions {
    /// Leave the target in place after the drill, for investigation.
    pub keep: bool,
    /// Parallel load jobs: `pg_restore` workers, or `mariadb` clients loading tables at once.
    pub jobs: u32,
    pub sweep_after: Duration,
    /// The scratch target's name, made by [`new_name`] when not given (a drill names it up
    /// front, so that its report can say which target was made and removed even when the
    /// restore fails).
    pub name: Option<String>,
    /// Only these tables of a database snapshot (a partial drill); empty: all of it.
    pub tables: Vec<String>,
    /// The policy's source as configured, for kinds whose restore the policy describes
    /// (a command source's `restore_command`), with the directory its paths resolve in.
    pub source: Option<(crate::SourceSpec, PathBuf)>,
}

impl Default for ScratchOptions {
    fn default() -> Self {
        Self {
            keep: false,
            jobs: 2,
            sweep_after: SWEEP_AFTER,
            name: None,
            tables: Vec::new(),
            source: None,
        }
    }
}

/// A new scratch name: the prefix, the UTC time (so a sweep can tell its age) and a random
/// suffix. Lower case and at most 63 bytes, a valid identifier on every server.
pub fn new_name(now: jiff::Timestamp) -> String {
    let time = now.strftime("%Y%m%dt%H%M%S").to_string();
    format!("{PREFIX}{time}_{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The creation time encoded in a scratch name.
pub fn name_time(name: &str) -> Option<jiff::Timestamp> {
    let rest = name.strip_prefix(PREFIX)?;
    let stamp = rest.split('_').next()?;
    let civil = jiff::civil::DateTime::strptime("%Y%m%dt%H%M%S", stamp).ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Database {
        server: DbUrl,
        url: DbUrl,
    },
    /// A directory holding the restore (and, for SQLite, the database file in it).
    Dir {
        dir: PathBuf,
        file: Option<PathBuf>,
    },
}

/// A restored scratch target. Call [`Scratch::discard`] when done; dropping it without
/// that removes it too (synchronously), and says so in the log.
#[derive(Debug)]
pub struct Scratch {
    name: String,
    pub(crate) target: Target,
    keep: bool,
    done: bool,
}

impl Scratch {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scratch database's URL (with its password: for tools, never for printing).
    pub fn url(&self) -> Option<&DbUrl> {
        match &self.target {
            Target::Database { url, .. } => Some(url),
            Target::Dir { .. } => None,
        }
    }

    /// The SQLite file, or the directory a files snapshot was restored into.
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::Database { .. } => None,
            Target::Dir { file: Some(f), .. } => Some(f),
            Target::Dir { dir, .. } => Some(dir),
        }
    }

    /// Connection details for a workflow script run against the target.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("BACKSTOP_SCRATCH_NAME".to_string(), self.name.clone())];
        match &self.target {
            Target::Database { url, .. } => {
                env.push(("BACKSTOP_SCRATCH_URL".into(), url.expose()));
                let prefix = match url.engine() {
                    Engine::Postgres => "PG",
                    Engine::Mysql => "MYSQL_",
                };
                if url.engine() == Engine::Postgres {
                    env.push((format!("{prefix}HOST"), url.host()));
                    env.push((format!("{prefix}PORT"), url.port().to_string()));
                    env.push((format!("{prefix}DATABASE"), self.name.clone()));
                    if let Some(user) = url.user() {
                        env.push((format!("{prefix}USER"), user));
                    }
                    if let Some(password) = url.password() {
                        env.push((format!("{prefix}PASSWORD"), password));
                    }
                }
            }
            Target::Dir { dir, file } => {
                env.push(("BACKSTOP_SCRATCH_DIR".into(), dir.display().to_string()));
                if let Some(file) = file {
                    env.push(("BACKSTOP_SCRATCH_PATH".into(), file.display().to_string()));
                }
            }
        }
        env
    }

    /// The restored target's facts, taken the way the backup took them.
    pub async fn facts(&self) -> Result<SourceFacts, SourceError> {
        match &self.target {
            Target::Database { url, .. } => url.engine().facts(url).await,
            Target::Dir {
                file: Some(file), ..
            } => sqlite::facts(file).await,
            Target::Dir { file: None, .. } => Ok(SourceFacts::default()),
        }
    }

    /// Removes the target, or keeps it when asked to (and says where it is).
    pub async fn discard(mut self) -> Result<(), SourceError> {
        self.done = true;
        if self.keep {
            tracing::info!(scratch = %self.name, "scratch target kept for investigation");
            return Ok(());
        }
        remove(&self.target, &self.name).await
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.done || self.keep {
            return;
        }
        tracing::warn!(scratch = %self.name, "scratch target abandoned (failure or cancellation); removing it");
        let (target, name) = (self.target.clone(), self.name.clone());
        // A thread with its own runtime: Drop cannot await, and may run while the caller's
        // runtime is shutting down.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| SourceError::io("a cleanup runtime", e))?;
            runtime.block_on(async {
                remove(&target, &name).await?;
                // A CREATE DATABASE still running when the task was cancelled commits after
                // the first DROP found nothing; a second look catches it (and the sweep
                // anything later still).
                if matches!(target, Target::Database { .. }) {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    remove(&target, &name).await?;
                }
                Ok::<(), SourceError>(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(scratch = %self.name, error = %e, "removing the scratch target failed; the next sweep removes it")
            }
            Err(_) => tracing::error!(scratch = %self.name, "removing the scratch target panicked"),
        }
    }
}

async fn remove(target: &Target, name: &str) -> Result<(), SourceError> {
    match target {
        Target::Database { server, .. } => server.engine().drop(server, name).await,
        Target::Dir { dir, .. } => match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SourceError::io(dir.display(), e)),
        },
    }
}

/// Refuses a scratch target that is, or overlaps, the snapshot's source: a scratch server
/// URL naming the source database (in any spelling, [`crate::identity`]), or a scratch
/// directory that is, is inside or holds a source path.
pub fn check_overlap(snapshot: &Snapshot, spec: &ScratchSpec) -> Result<(), SourceError> {
    let protected = Protected::of_snapshot(
        snapshot,
        &format!("this snapshot (policy `{}`)", snapshot.policy),
    );
    match spec {
        ScratchSpec::Postgres(server) | ScratchSpec::Mysql(server) => {
            match clash_with(&server.to_string(), &Identity::of_url(server), &protected) {
                Some(clash) => Err(SourceError::Refused(format!(
                    "refusing scratch target: {clash}. A scratch URL names a server and its \
                     maintenance database (for example /postgres); Backstop creates {PREFIX}<id> there"
                ))),
                None => Ok(()),
            }
        }
        ScratchSpec::Sqlite { dir: Some(dir) } | ScratchSpec::Directory { dir: Some(dir) } => {
            match clash_with(
                &dir.display().to_string(),
                &Identity::of_path(dir),
                &protected,
            ) {
                Some(clash) => Err(SourceError::Refused(format!(
                    "refusing scratch directory: {clash}"
                ))),
                None => Ok(()),
            }
        }
        ScratchSpec::Sqlite { dir: None } | ScratchSpec::Directory { dir: None } => Ok(()),
    }
}

/// Removes leftover scratch targets (by name prefix) older than `older_than`, and returns
/// their names.
pub async fn sweep(spec: &ScratchSpec, older_than: Duration) -> Result<Vec<String>, SourceError> {
    let cutoff =
        jiff::Timestamp::now() - jiff::SignedDuration::try_from(older_than).unwrap_or_default();
    let is_old = |name: &str| name_time(name).is_some_and(|t| t < cutoff);
    let mut removed = Vec::new();
    match spec {
        ScratchSpec::Postgres(server) | ScratchSpec::Mysql(server) => {
            let names = server.engine().list_with_prefix(server, PREFIX).await?;
            for name in names.into_iter().filter(|n| is_old(n)) {
                let target = Target::Database {
                    server: server.clone(),
                    url: server.with_database(&name),
                };
                remove(&target, &name).await?;
                removed.push(name);
            }
        }
        ScratchSpec::Sqlite { dir } | ScratchSpec::Directory { dir } => {
            let parent = crate::temp_parent(dir.as_ref());
            let Ok(entries) = std::fs::read_dir(&parent) else {
                return Ok(removed);
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_old(&name) {
                    let target = Target::Dir {
                        dir: entry.path(),
                        file: None,
                    };
                    remove(&target, &name).await?;
                    removed.push(name);
                }
            }
        }
    }
    if !removed.is_empty() {
        tracing::info!(removed = ?removed, "swept leftover scratch targets");
    }
    Ok(removed)
}

/// Restores `reader`'s snapshot into a new scratch target made from `spec`.
pub async fn restore(
    reader: &SnapshotReader,
    spec: &ScratchSpec,
    tools: &Tools,
    options: &ScratchOptions,
) -> Result<Scratch, SourceError> {
    let kind = reader.snapshot().source_kind.as_str();
    let fits =
        crate::SourceKind::parse(kind).is_some_and(|k| k.accepts(crate::TargetKind::of_spec(spec)));
    if !fits {
        return Err(SourceError::Invalid(format!(
            "a {kind} snapshot cannot be restored into a {} scratch target",
            spec_kind(spec)
        )));
    }
    if let ScratchSpec::Postgres(url) | ScratchSpec::Mysql(url) = spec {
        let expected = if matches!(spec, ScratchSpec::Postgres(_)) {
            Engine::Postgres
        } else {
            Engine::Mysql
        };
        if url.engine() != expected {
            return Err(SourceError::Invalid(format!(
                "scratch target {url} is not a {} URL",
                spec_kind(spec)
            )));
        }
    }
    check_overlap(reader.snapshot(), spec)?;
    // A command source's snapshot is loaded by its policy's restore_command.
    let command = match &options.source {
        Some((crate::SourceSpec::Command(command), base)) if kind == "command" => {
            Some((command, base.as_path()))
        }
        _ if kind == "command" => {
            return Err(SourceError::Invalid(
                "a command source's snapshot is restored by its policy's restore_command, which this restore was not given".into(),
            ))
        }
        _ => None,
    };
    if let Err(e) = sweep(spec, options.sweep_after).await {
        tracing::warn!(error = %e, "sweeping leftover scratch targets failed");
    }
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| new_name(jiff::Timestamp::now()));
    let scratch = match spec {
        // The guard exists before the target does: a cancellation at any await below,
        // even during the CREATE, removes what was made.
        ScratchSpec::Postgres(server) | ScratchSpec::Mysql(server) => {
            let scratch = Scratch::new(
                &name,
                Target::Database {
                    server: server.clone(),
                    url: server.with_database(&name),
                },
                options.keep,
            );
            let url = scratch.url().expect("a database target").clone();
            let loaded = async {
                server.engine().create(server, &name).await?;
                match command {
                    Some((command, base)) => {
                        crate::command::restore(reader, command, base, &scratch.env()).await
                    }
                    None => {
                        server
                            .engine()
                            .load(reader, &url, tools, options.jobs, false, &options.tables)
                            .await
                    }
                }
            }
            .await;
            scratch.or_discard(loaded).await?
        }
        ScratchSpec::Sqlite { dir } => {
            let dir = crate::temp_parent(dir.as_ref()).join(&name);
            let file = dir.join(sqlite::dump_name(Path::new(
                &reader
                    .snapshot()
                    .roots
                    .first()
                    .map(|r| r.name.clone())
                    .unwrap_or_default(),
            )));
            let scratch = Scratch::new(
                &name,
                Target::Dir {
                    dir: dir.clone(),
                    file: Some(file.clone()),
                },
                options.keep,
            );
            let loaded = match (std::fs::create_dir_all(&dir), command) {
                (Ok(()), Some((command, base))) => {
                    crate::command::restore(reader, command, base, &scratch.env()).await
                }
                (Ok(()), None) => {
                    crate::restore::load_sqlite(reader, &file, false, &options.tables).await
                }
                (Err(e), _) => Err(SourceError::io(dir.display(), e)),
            };
            scratch.or_discard(loaded).await?
        }
        ScratchSpec::Directory { dir } => {
            let dir = crate::temp_parent(dir.as_ref()).join(&name);
            let scratch = Scratch::new(
                &name,
                Target::Dir {
                    dir: dir.clone(),
                    file: None,
                },
                options.keep,
            );
            let loaded = match command {
                Some((command, base)) => match std::fs::create_dir_all(&dir) {
                    Ok(()) => crate::command::restore(reader, command, base, &scratch.env()).await,
                    Err(e) => Err(SourceError::io(dir.display(), e)),
                },
                None => reader
                    .restore_to(&dir)
                    .await
                    .map(|_| ())
                    .map_err(SourceError::from),
            };
            scratch.or_discard(loaded).await?
        }
    };
    Ok(scratch)
}

fn spec_kind(spec: &ScratchSpec) -> &'static str {
    crate::TargetKind::of_spec(spec).as_str()
}

impl Scratch {
    fn new(name: &str, target: Target, keep: bool) -> Self {
        Self {
            name: name.to_string(),
            target,
            keep,
            done: false,
        }
    }

    /// On a failed load the target is removed even when `keep` is set: a half-loaded
    /// target proves nothing, and the error says what went wrong.
    async fn or_discard(mut self, loaded: Result<(), SourceError>) -> Result<Self, SourceError> {
        match loaded {
            Ok(()) => Ok(self),
            Err(e) => {
                self.keep = false;
                if let Err(cleanup) = self.discard().await {
                    tracing::error!(error = %cleanup, "removing a failed scratch target");
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_of(kind: &str, sources: &[&str]) -> Snapshot {
        let t: jiff::Timestamp = "2026-11-25T15:30:07Z".parse().unwrap();
        Snapshot {
            version: 1,
            policy: "orders".into(),
            source_kind: kind.into(),
            time: t,
            data_point: t,
            hostname: "db1".into(),
            roots: sources
                .iter()
                .map(|s| backstop_repo::format::snapshot::Root {
                    name: "dump".into(),
                    source: s.to_string(),
                })
                .collect(),
            parent: None,
            tree: backstop_repo::format::snapshot::TreeRef {
                chunks: Vec::new(),
                digest: backstop_repo::Id([0; 32]),
                entries: 0,
            },
            facts: SourceFacts::default(),
            summary: Default::default(),
        }
    }

    /// Issue 15: the drill's check missed `…/orders/` and a percent-encoded socket host.
    #[test]
    fn issue_15_scratch_server_naming_the_source_in_any_spelling_is_refused() {
        let snapshot = snapshot_of("postgres", &["postgres://app@localhost/orders"]);
        for scratch in [
            "postgres://app@localhost/orders",
            "postgres://app@localhost/orders/",
            "postgres://app@%2Fvar%2Frun%2Fpostgresql/orders",
            "postgresql://app@LOCALHOST:5432/orders?sslmode=disable",
            "postgres:///orders?host=/var/run/postgresql",
        ] {
            let spec = ScratchSpec::Postgres(DbUrl::parse(scratch).unwrap());
            let err = check_overlap(&snapshot, &spec).unwrap_err().to_string();
            assert!(err.contains("database `orders`"), "{scratch}: {err}");
        }
        let spec =
            ScratchSpec::Postgres(DbUrl::parse("postgres://app@localhost/postgres").unwrap());
        check_overlap(&snapshot, &spec).unwrap();
        let snapshot = snapshot_of("mysql", &["mysql://root@127.0.0.1/shop"]);
        let spec = ScratchSpec::Mysql(DbUrl::parse("mariadb://root@localhost/shop/").unwrap());
        assert!(check_overlap(&snapshot, &spec).is_err());
    }

    #[test]
    fn scratch_directory_that_is_inside_or_holds_the_source_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("srv/app");
        std::fs::create_dir_all(&source).unwrap();
        let snapshot = snapshot_of("files", &[source.to_str().unwrap()]);
        for scratch in [source.clone(), source.join("tmp"), dir.path().join("srv")] {
            let spec = ScratchSpec::Directory {
                dir: Some(scratch.clone()),
            };
            assert!(check_overlap(&snapshot, &spec).is_err(), "{scratch:?}");
        }
        let spec = ScratchSpec::Directory {
            dir: Some(dir.path().join("scratch")),
        };
        check_overlap(&snapshot, &spec).unwrap();
    }

    #[test]
    fn names_carry_their_time_and_fit_an_identifier() {
        let now: jiff::Timestamp = "2026-11-25T15:30:07Z".parse().unwrap();
        let name = new_name(now);
        assert!(
            name.starts_with("backstop_drill_20261125t153007_"),
            "{name}"
        );
        assert!(name.len() <= 63);
        assert_eq!(name, name.to_lowercase());
        assert_eq!(name_time(&name), Some(now));
        assert_eq!(name_time("backstop_drill_garbage"), None);
        assert_eq!(name_time("orders"), None);
    }
}
