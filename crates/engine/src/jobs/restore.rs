//! Break-glass restore: from the repository alone (no catalog, no daemon) into a directory,
//! a database URL (postgres://, mysql://) or, for SQLite snapshots, a database file.
//!
//! Restore safety comes first: a target that is, is inside, or holds a source (the one the
//! snapshot records, or a configured policy's) is refused unless the caller asks to replace
//! the source (`--replace-source`, or an approved request with `allow_overlap`); `force`
//! only allows writing into a target that holds other data.

use std::path::Path;
use std::sync::Arc;

use backstop_repo::restorer::RestoreReport;
use backstop_repo::{Id, Repository, SnapshotReader};
use backstop_sources::{restore as db_restore, DbUrl, Protected, SourceClash, SourceError, Tools};

use tokio_util::sync::CancellationToken;

use crate::error::EngineError;

/// Restores `snapshot` (an id or unique prefix) into `target`, which must be absent or an
/// empty directory unless `force` is given: a restore never mixes with existing files.
pub async fn to_directory(
    repo: Arc<Repository>,
    snapshot: &str,
    target: &Path,
    force: bool,
) -> Result<(backstop_repo::Id, RestoreReport), EngineError> {
    refuse_non_empty(target, force)?;
    let id = repo.find_snapshot(snapshot).await?;
    let reader = SnapshotReader::open(repo, id).await?;
    let report = reader.restore_to(target).await?;
    Ok((id, report))
}

/// Refuses a target directory that holds anything, unless `force`.
fn refuse_non_empty(target: &Path, force: bool) -> Result<(), EngineError> {
    if !force {
        match std::fs::read_dir(target).map(|mut entries| entries.next().is_some()) {
            Ok(true) => {
                return Err(EngineError::Refused(format!(
                    "restore target {} is not empty; choose an empty or new directory (or pass --force to write into it)",
                    target.display()
                )))
            }
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(EngineError::Read {
                    path: target.display().to_string(),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Which paths of a files or config snapshot a restore writes (`--include`, `--exclude`):
/// a path is kept when it or a directory above it matches an include pattern (every path,
/// with none), and neither it nor a directory above it matches an exclude pattern. Patterns
/// are globs over the snapshot's paths (`app/static/*.css`, `**/*.log`); the directories
/// above a kept path are restored too.
#[derive(Debug, Clone, Default)]
pub struct PathSelection {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
    patterns: Vec<String>,
}

impl PathSelection {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, EngineError> {
        let set = |flag: &str, patterns: &[String]| {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut builder = globset::GlobSetBuilder::new();
            for pattern in patterns {
                let glob = globset::GlobBuilder::new(pattern.trim_end_matches('/'))
                    .literal_separator(true)
                    .build()
                    .map_err(|e| EngineError::Refused(format!("{flag} `{pattern}`: {e}")))?;
                builder.add(glob);
            }
            builder
                .build()
                .map(Some)
                .map_err(|e| EngineError::Refused(format!("{flag}: {e}")))
        };
        let patterns = include
            .iter()
            .map(|p| format!("--include {p}"))
            .chain(exclude.iter().map(|p| format!("--exclude {p}")))
            .collect();
        Ok(Self {
            include: set("--include", include)?,
            exclude: set("--exclude", exclude)?,
            patterns,
        })
    }

    /// Every path: no pattern given.
    pub fn is_all(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    pub fn keeps(&self, path: &str) -> bool {
        let this_or_above = |set: &globset::GlobSet| {
            let mut at = path;
            loop {
                if set.is_match(at) {
                    return true;
                }
                match at.rsplit_once('/') {
                    Some((parent, _)) => at = parent,
                    None => return false,
                }
            }
        };
        self.include.as_ref().is_none_or(this_or_above)
            && !self.exclude.as_ref().is_some_and(this_or_above)
    }
}

/// Loads snapshot `id` and refuses it unless it is a snapshot of `policy` (a drill or a
/// request for one policy never restores another's data).
pub async fn load_for_policy(
    repo: &Repository,
    id: &Id,
    policy: &str,
) -> Result<backstop_repo::Snapshot, EngineError> {
    let snapshot = repo.load_snapshot(id).await?;
    if snapshot.policy != policy {
        return Err(EngineError::Refused(format!(
            "snapshot {} belongs to policy `{}`, not `{policy}`",
            id.short(),
            snapshot.policy
        )));
    }
    Ok(snapshot)
}

/// Where a break-glass restore went.
#[derive(Debug)]
pub enum Restored {
    Directory(RestoreReport),
    /// A database, shown without its password; `created` when the restore made it.
    Database {
        target: String,
        created: bool,
    },
    SqliteFile(std::path::PathBuf),
}

/// What a break-glass restore is allowed to do.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Write into a non-empty directory, replace a SQLite file, or replace the dump's
    /// objects in a database that holds some. Never allows replacing a source.
    pub force: bool,
    /// Allow a target that is, is inside, or holds a source (a snapshot's recorded source
    /// or a configured policy's): restoring over the source on purpose.
    pub replace_source: bool,
    /// Parallel load jobs: `pg_restore` workers, or `mariadb` clients loading tables at once.
    pub jobs: u32,
}

/// A restore whose snapshot is found and whose target is checked against the sources:
/// what [`prepare`] hands to [`run`], so that the caller can record a replacement of a
/// source before anything is written.
#[derive(Debug)]
pub struct Prepared {
    pub id: Id,
    reader: SnapshotReader,
    repo: Arc<Repository>,
    target: String,
    /// The source this restore replaces (only with `replace_source`).
    pub replaces: Option<SourceClash>,
    /// Only these tables of a database snapshot ([`Prepared::tables`]).
    tables: Vec<String>,
}

/// The sources a restore into `target` must not replace: those `snapshot` records, and
/// `configured` ones (every configured policy's, when there is a configuration).
pub fn protected_sources(
    id: &Id,
    snapshot: &backstop_repo::Snapshot,
    configured: &[Protected],
) -> Vec<Protected> {
    let whose = format!(
        "snapshot {} of policy `{}` (backed up on {})",
        id.short(),
        snapshot.policy,
        snapshot.hostname
    );
    let mut protected = Protected::of_snapshot(snapshot, &whose);
    protected.extend(configured.iter().cloned());
    protected
}

/// Every configured policy's source, resolved now, to protect from a restore; a policy
/// whose source cannot be resolved (its URL's environment variable unset, its URL file
/// unreadable) is named in the second list instead.
pub fn configured_sources(
    config: &crate::Config,
) -> Result<(Vec<Protected>, Vec<String>), EngineError> {
    let policies = crate::policy::load_dir(&config.policies_dir, config)?;
    let mut protected = Vec::new();
    let mut unresolved = Vec::new();
    for policy in policies.values() {
        match Protected::of_policy(&policy.name, &policy.source, &config.base_dir) {
            Ok(sources) => protected.extend(sources),
            Err(e) => unresolved.push(format!("policy `{}`: {e}", policy.name)),
        }
    }
    Ok((protected, unresolved))
}

impl Prepared {
    /// Restores only `tables` of a database snapshot (a partial restore:
    /// `schema.table` or `table`); refused for a files or config snapshot.
    pub fn tables(mut self, tables: &[String]) -> Result<Self, EngineError> {
        if tables.is_empty() {
            return Ok(self);
        }
        let kind = self.reader.snapshot().source_kind.clone();
        if !backstop_sources::SourceKind::parse(&kind).is_some_and(|k| k.is_database()) {
            return Err(EngineError::Refused(format!(
                "--table selects tables of a database snapshot; snapshot {} is a {kind} one (use --include)",
                self.id.short()
            )));
        }
        if let Some(bad) = tables
            .iter()
            .find(|t| t.trim().is_empty() || t.matches('.').count() > 1)
        {
            return Err(EngineError::Refused(format!(
                "--table `{bad}`: expected schema.table or table"
            )));
        }
        self.tables = tables.to_vec();
        Ok(self)
    }

    /// Restores only the paths `selection` keeps (a partial restore of a files or config
    /// snapshot); refused for a database snapshot, and when no path matches.
    pub async fn select(mut self, selection: &PathSelection) -> Result<Self, EngineError> {
        if selection.is_all() {
            return Ok(self);
        }
        let kind = self.reader.snapshot().source_kind.clone();
        if !backstop_sources::SourceKind::parse(&kind).is_some_and(|k| k.is_tree()) {
            return Err(EngineError::Refused(format!(
                "{} select files of a files or config snapshot; snapshot {} is a {kind} one",
                selection.patterns.join(" "),
                self.id.short()
            )));
        }
        self.reader = self.reader.select(|path| selection.keeps(path)).await?;
        if self.reader.entries().await?.is_empty() {
            return Err(EngineError::Refused(format!(
                "no path of snapshot {} matches {}",
                self.id.short(),
                selection.patterns.join(" ")
            )));
        }
        Ok(self)
    }
}

/// Finds `snapshot` and checks `target` against its sources and the `configured` ones:
/// a target that is, is inside or holds one is refused unless `replace_source` is given
/// (`force` never allows it).
pub async fn prepare(
    repo: Arc<Repository>,
    snapshot: &str,
    target: &str,
    configured: &[Protected],
    replace_source: bool,
) -> Result<Prepared, EngineError> {
    let id = repo.find_snapshot(snapshot).await?;
    let reader = SnapshotReader::open(Arc::clone(&repo), id).await?;
    let protected = protected_sources(&id, reader.snapshot(), configured);
    let clash = backstop_sources::clash(target, &protected)
        .map_err(|message| SourceError::Invalid(format!("--to: {message}")))?;
    if let Some(clash) = clash {
        if !replace_source {
            return Err(EngineError::ReplacesSource {
                clash: Box::new(clash),
                remedy: "--force never allows this; pass --replace-source to restore over the source on purpose",
            });
        }
        return Ok(Prepared {
            id,
            reader,
            repo,
            target: target.to_string(),
            replaces: Some(clash),
            tables: Vec::new(),
        });
    }
    Ok(Prepared {
        id,
        reader,
        repo,
        target: target.to_string(),
        replaces: None,
        tables: Vec::new(),
    })
}

/// Restores a prepared snapshot into its target: a database URL for postgres and mysql
/// snapshots, a file path for sqlite snapshots (a directory that exists gets the raw files
/// instead), and a directory otherwise. Replacing the source it was prepared to replace
/// implies `force` (the target holds data by definition).
///
/// A restore that fails or is cancelled removes the database or directory it created, so
/// that nothing half-restored is left looking restored.
pub async fn run(
    prepared: Prepared,
    force: bool,
    tools: &Tools,
    jobs: u32,
    cancel: &CancellationToken,
) -> Result<(Id, Restored), EngineError> {
    let Prepared {
        id,
        reader,
        repo,
        target,
        replaces,
        tables,
    } = prepared;
    let force = force || replaces.is_some();
    if target.contains("://") {
        let url = DbUrl::parse(&target)
            .map_err(|message| SourceError::Invalid(format!("--to: {message}")))?;
        let done =
            db_restore::to_database(&reader, &url, tools, force, jobs, &tables, cancel).await?;
        return Ok((
            id,
            Restored::Database {
                target: url.to_string(),
                created: done.created,
            },
        ));
    }
    let path = Path::new(&target);
    if !tables.is_empty() && path.is_dir() {
        return Err(SourceError::Invalid(format!(
            "--table restores into a SQLite file; {} is a directory",
            path.display()
        ))
        .into());
    }
    if reader.snapshot().source_kind == "sqlite" && !path.is_dir() {
        db_restore::sqlite_to_file(&reader, path, force, &tables).await?;
        return Ok((id, Restored::SqliteFile(path.to_path_buf())));
    }
    drop(repo);
    let created = std::fs::symlink_metadata(path).is_err();
    let into_directory = async {
        refuse_non_empty(path, force)?;
        let report = reader.restore_to(path).await?;
        Ok::<_, EngineError>((id, report))
    };
    let restored = tokio::select! {
        restored = into_directory => restored,
        _ = cancel.cancelled() => Err(SourceError::Cancelled(if created {
            format!("the directory {} it created was removed", path.display())
        } else {
            format!("the restore into {} was stopped part-way", path.display())
        })
        .into()),
    };
    match restored {
        Ok((id, report)) => Ok((id, Restored::Directory(report))),
        Err(e) => {
            if created {
                remove_created_directory(path);
            }
            Err(e)
        }
    }
}

/// Removes a directory a restore created and did not finish.
pub fn remove_created_directory(path: &Path) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed the partly restored directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(
            path = %path.display(),
            error = %e,
            "removing the partly restored directory"
        ),
    }
}

/// [`prepare`] and [`run`] in one.
pub async fn to_target(
    repo: Arc<Repository>,
    snapshot: &str,
    target: &str,
    options: RestoreOptions,
    configured: &[Protected],
    tools: &Tools,
    cancel: &CancellationToken,
) -> Result<(Id, Restored), EngineError> {
    let prepared = prepare(repo, snapshot, target, configured, options.replace_source).await?;
    run(prepared, options.force, tools, options.jobs, cancel).await
}
