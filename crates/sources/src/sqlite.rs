//! SQLite: a consistent copy of a live database (`VACUUM INTO`, which reads in one
//! transaction, never a raw copy of a file being written), streamed into the repository.
//! The facts (row counts, schema fingerprint, `PRAGMA integrity_check`) are taken from that
//! copy: exactly what is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backstop_repo::format::snapshot::Root;
use backstop_repo::{Entry, SnapshotReader, SnapshotWriter, SourceFacts};
use serde::Deserialize;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

use crate::{fingerprint, quote_ident, stream_entry, BackedUp, SourceContext, SourceError};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSpec {
    pub path: PathBuf,
}

pub(crate) fn query_error(path: &Path, what: &str) -> impl FnOnce(sqlx::Error) -> SourceError {
    let server = format!("sqlite {}", path.display());
    let what = what.to_string();
    move |source| SourceError::Query {
        server,
        what,
        source,
    }
}

pub(crate) async fn open(path: &Path, read_only: bool) -> Result<SqliteConnection, SourceError> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|source| SourceError::Connect {
            server: format!("sqlite {}", path.display()),
            source,
        })
}

/// The name of the database file in the snapshot's tree.
pub fn dump_name(source: &Path) -> String {
    source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "database.sqlite".into())
}

pub async fn back_up(
    spec: &SqliteSpec,
    ctx: SourceContext<'_>,
    writer: &mut SnapshotWriter,
) -> Result<BackedUp, SourceError> {
    let source = ctx.base.join(&spec.path);
    let meta = std::fs::metadata(&source).map_err(|e| SourceError::Path {
        path: source.display().to_string(),
        source: e,
    })?;
    if !meta.is_file() {
        return Err(SourceError::Invalid(format!(
            "sqlite source {} is not a file",
            source.display()
        )));
    }
    let spool = crate::spool_dir("backstop-sqlite-")?;
    let copy = spool.path().join("copy.sqlite");

    let mut conn = open(&source, true).await?;
    let data_point = jiff::Timestamp::now();
    sqlx::query("VACUUM INTO ?")
        .bind(copy.display().to_string())
        .execute(&mut conn)
        .await
        .map_err(query_error(&source, "copying with VACUUM INTO"))?;
    drop(conn);

    let mut facts = facts(&copy).await?;
    let integrity = facts
        .extra
        .get("integrity_check")
        .cloned()
        .unwrap_or_default();
    if integrity != "ok" {
        writer.warn(format!(
            "{}: PRAGMA integrity_check reported: {integrity}",
            source.display()
        ));
    }
    facts.extra.insert(
        "row_counts".into(),
        "exact, counted in the copy stored".into(),
    );
    let name = dump_name(&source);
    let file = std::fs::File::open(&copy).map_err(|e| SourceError::io(copy.display(), e))?;
    writer.add_stream(stream_entry(&name), file).await?;
    drop(spool);
    Ok(BackedUp {
        roots: vec![Root {
            name,
            source: source.display().to_string(),
        }],
        facts,
        data_point,
    })
}

/// Row counts per table, the schema fingerprint and `PRAGMA integrity_check` of a database
/// file (a restored copy, or the copy taken at backup).
pub async fn facts(path: &Path) -> Result<SourceFacts, SourceError> {
    let mut conn = open(path, true).await?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await
        .map_err(query_error(path, "reading the version"))?;
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .map_err(query_error(path, "PRAGMA integrity_check"))?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(query_error(path, "listing tables"))?;
    let mut tables = BTreeMap::new();
    for name in names {
        let count: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote_ident(&name)))
                .fetch_one(&mut conn)
                .await
                .map_err(query_error(path, &format!("counting rows of {name}")))?;
        tables.insert(name, count.max(0) as u64);
    }
    let lines: Vec<String> = sqlx::query_scalar(
        "SELECT type || ' ' || name || ' ' || tbl_name || ' ' || coalesce(sql, '') \
         FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(query_error(path, "reading the schema"))?;
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    let mut extra = BTreeMap::new();
    let mut integrity = check.join("; ");
    integrity.truncate(2000);
    extra.insert("integrity_check".into(), integrity);
    Ok(SourceFacts {
        server_version: Some(format!("SQLite {version}")),
        database_size: size,
        tables,
        schema_fingerprint: Some(fingerprint(lines)),
        extra,
        ..SourceFacts::default()
    })
}

/// The database file entry of a sqlite snapshot: its only top-level file.
pub async fn database_entry(reader: &SnapshotReader) -> Result<&Entry, SourceError> {
    let found = match reader.snapshot().roots.first() {
        Some(root) => reader.file(&root.name).await?,
        None => None,
    };
    found.ok_or_else(|| {
        SourceError::Invalid(format!(
            "snapshot {} holds no SQLite database file",
            reader.id().short()
        ))
    })
}

/// Loads only `tables` of a snapshot's database into the SQLite file `target` (created when
/// missing): each table's schema, rows, indexes and triggers, in one transaction. The whole
/// database is first written to the scratch area, then the tables are copied across. A
/// table the snapshot does not hold is an error naming it, before `target` is touched.
/// `clean` drops a table of the same name in `target` first.
pub async fn load_tables(
    reader: &SnapshotReader,
    target: &Path,
    tables: &[String],
    clean: bool,
) -> Result<(), SourceError> {
    let spool = crate::spool_dir("backstop-sqlite-")?;
    let whole = spool.path().join("whole.db");
    load(reader, &whole).await?;
    let mut source = open(&whole, true).await?;
    let mut schema: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut missing = Vec::new();
    for table in tables {
        let objects: Vec<(String, String)> = sqlx::query_as(
            "SELECT type, sql FROM sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL \
             ORDER BY type <> 'table', rowid",
        )
        .bind(table)
        .fetch_all(&mut source)
        .await
        .map_err(query_error(&whole, "reading the schema"))?;
        if objects.first().is_none_or(|(kind, _)| kind != "table") {
            missing.push(table.clone());
        }
        schema.push((table.clone(), objects));
    }
    drop(source);
    if !missing.is_empty() {
        return Err(SourceError::Invalid(format!(
            "snapshot {} holds no table {}",
            reader.id().short(),
            missing.join(", ")
        )));
    }
    // A table's foreign keys name tables that may not be restored with it: its rows are
    // copied as they were, unchecked (the declarations stay in its schema).
    let mut dest = SqliteConnectOptions::new()
        .filename(target)
        .create_if_missing(true)
        .foreign_keys(false)
        .connect()
        .await
        .map_err(query_error(target, "opening"))?;
    let copy = async {
        sqlx::query("ATTACH DATABASE ?1 AS backstop_source")
            .bind(whole.display().to_string())
            .execute(&mut dest)
            .await?;
        sqlx::query("BEGIN").execute(&mut dest).await?;
        for (table, objects) in &schema {
            let name = quote_ident(table);
            if clean {
                sqlx::query(&format!("DROP TABLE IF EXISTS main.{name}"))
                    .execute(&mut dest)
                    .await?;
            }
            let (_, create) = &objects[0];
            sqlx::query(create).execute(&mut dest).await?;
            sqlx::query(&format!(
                "INSERT INTO main.{name} SELECT * FROM backstop_source.{name}"
            ))
            .execute(&mut dest)
            .await?;
            for (_, sql) in &objects[1..] {
                sqlx::query(sql).execute(&mut dest).await?;
            }
        }
        sqlx::query("COMMIT").execute(&mut dest).await?;
        sqlx::query("DETACH DATABASE backstop_source")
            .execute(&mut dest)
            .await?;
        Ok::<(), sqlx::Error>(())
    };
    copy.await
        .map_err(query_error(target, "copying the tables"))
}

/// Writes the snapshot's database to `target`: into a temporary name beside it, renamed
/// into place only when whole and verified.
pub async fn load(reader: &SnapshotReader, target: &Path) -> Result<(), SourceError> {
    let entry = database_entry(reader).await?;
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| SourceError::io(dir.display(), e))?;
    let partial = tempfile::Builder::new()
        .prefix(".backstop-restore-")
        .tempfile_in(dir)
        .map_err(|e| SourceError::io(dir.display(), e))?;
    let mut file = tokio::fs::File::from_std(
        partial
            .reopen()
            .map_err(|e| SourceError::io(partial.path().display(), e))?,
    );
    reader.stream_file(entry, &mut file).await?;
    file.sync_all()
        .await
        .map_err(|e| SourceError::io(partial.path().display(), e))?;
    drop(file);
    partial
        .persist(target)
        .map_err(|e| SourceError::io(target.display(), e.error))?;
    Ok(())
}
