//! PostgreSQL: `pg_dump` streamed into the repository, facts counted in the dump's own
//! snapshot, and `pg_restore` into a target.
//!
//! Consistency: Backstop opens a repeatable-read transaction, exports its snapshot
//! (`pg_export_snapshot`), and runs `pg_dump --snapshot` on it while it counts every
//! table's rows and fingerprints the schema in the same transaction. The counts therefore
//! describe exactly the data in the dump, however busy the writers are.
//!
//! The custom format is written uncompressed (`--compress=0`): the repository compresses
//! with zstd after content-defined chunking, which then finds the unchanged parts of the
//! next day's dump. It is streamed with no temporary copy. The directory format
//! (`format = "directory"`, with `jobs`) dumps tables in parallel into a temporary
//! directory first, because that is how `pg_dump -j` works.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use backstop_repo::format::snapshot::Root;
use backstop_repo::{Entry, EntryKind, SnapshotReader, SnapshotWriter, SourceFacts};
use serde::Deserialize;
use sqlx::PgConnection;
use tokio::process::Command;

use crate::dburl::{query_error, DbUrl, UrlSource};
use crate::pg_archive::{ArchiveChecker, CheckingReader};
use crate::tool::{side_by_side, FileStream, Running, Tool, Tools};
use crate::{fingerprint, quote_ident, stream_entry, BackedUp, SourceContext, SourceError};
use futures::FutureExt;

/// The custom-format dump in a snapshot's tree.
pub const DUMP_FILE: &str = "database.pgdump";
/// The directory-format dump in a snapshot's tree.
pub const DUMP_DIR: &str = "database.pgdir";
/// `pg_dumpall --globals-only`: roles and tablespaces, for a whole-server recovery.
pub const GLOBALS_FILE: &str = "globals.sql";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub format: DumpFormat,
    /// Parallel dump jobs (directory format only).
    #[serde(default)]
    pub jobs: Option<u32>,
}

impl PostgresSpec {
    pub fn url_source(&self) -> UrlSource {
        UrlSource {
            url_env: self.url_env.clone(),
            url_file: self.url_file.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    #[default]
    Custom,
    Directory,
}

pub async fn connect(url: &DbUrl) -> Result<PgConnection, SourceError> {
    crate::dburl::connect(url).await
}

/// A libpq tool connected to `url`: the password travels in PGPASSWORD, never in argv.
fn libpq_command(tools: &Tools, tool: Tool, url: &DbUrl) -> Result<Command, SourceError> {
    let mut cmd = tools.command(tool)?;
    cmd.arg(format!("--dbname={}", url.without_password()))
        .env("PGAPPNAME", "backstop");
    if let Some(password) = url.password() {
        cmd.env("PGPASSWORD", password);
    }
    Ok(cmd)
}

pub async fn back_up(
    spec: &PostgresSpec,
    ctx: SourceContext<'_>,
    writer: &mut SnapshotWriter,
) -> Result<BackedUp, SourceError> {
    let url = spec.url_source().resolve(ctx.base)?;
    // Find the tools before touching the server: a missing tool is the clearest error.
    ctx.tools.find(Tool::PgDump)?;
    ctx.tools.find(Tool::PgDumpall)?;
    let mut conn = connect(&url).await?;
    let (version_num, server_version, database_size): (String, String, i64) = sqlx::query_as(
        "SELECT current_setting('server_version_num'), current_setting('server_version'), \
         pg_database_size(current_database())",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(query_error(&url, "reading the server version"))?;
    let server_major: u32 = version_num.parse::<u32>().unwrap_or(0) / 10000;
    let (tool_major, tool_minor) = ctx.tools.version(Tool::PgDump).await?;
    if tool_major < server_major {
        return Err(SourceError::ToolTooOld {
            tool: "pg_dump",
            tool_version: format!("{tool_major}.{tool_minor}"),
            server: url.to_string(),
            server_version,
        });
    }

    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(query_error(&url, "starting the backup transaction"))?;
    let snapshot_name: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await
        .map_err(query_error(&url, "exporting the snapshot"))?;
    let data_point = jiff::Timestamp::now();
    let database = url.database().unwrap_or_default();

    let mut dump = libpq_command(ctx.tools, Tool::PgDump, &url)?;
    dump.arg(format!("--snapshot={snapshot_name}"))
        .arg("--no-sync");
    let spool = match spec.format {
        DumpFormat::Custom => {
            dump.args(["--format=custom", "--compress=0"]);
            None
        }
        DumpFormat::Directory => {
            let dir = crate::spool_dir("backstop-pgdump-")?;
            let out = dir.path().join(DUMP_DIR);
            dump.args(["--format=directory", "--compress=0"])
                .arg(format!("--jobs={}", spec.jobs.unwrap_or(1).max(1)))
                .arg(format!("--file={}", out.display()));
            Some(dir)
        }
    };

    let counting = table_facts(&mut conn, &url);
    let dumping = async {
        let mut running = Running::spawn(Tool::PgDump, dump)?;
        match &spool {
            None => {
                let checker = Arc::new(Mutex::new(ArchiveChecker::default()));
                let reader = CheckingReader::new(running.blocking_stdout()?, checker.clone());
                let streamed = writer.add_stream(stream_entry(DUMP_FILE), reader).await;
                // The tool's exit status decides: a dump killed mid-stream is never stored.
                let finished = running.finish().await;
                streamed?;
                finished?;
                // Nor is one that exited 0 with part of its archive: every table's data
                // must be there, each block terminated.
                let mut checker = checker.lock().expect("archive checker lock");
                if let Err(why) = checker.finish() {
                    return Err(SourceError::ToolFailed {
                        tool: Tool::PgDump.name(),
                        detail: format!(
                            "exited 0 but its archive of `{database}` is incomplete: {why}; it was not committed"
                        ),
                    });
                }
                // Where each table's data lies: a restore's loaders read only their own.
                Ok(Some(crate::pg_archive::encode_spans(checker.spans())))
            }
            Some(dir) => {
                running.finish().await?;
                add_directory(writer, &dir.path().join(DUMP_DIR), DUMP_DIR).await?;
                Ok(None)
            }
        }
    };
    let ((tables, schema), spans) = tokio::try_join!(counting, dumping)?;
    sqlx::query("COMMIT")
        .execute(&mut conn)
        .await
        .map_err(query_error(&url, "ending the backup transaction"))?;
    drop(spool);

    let globals_warning = dump_globals(ctx.tools, &url, writer).await?;
    if let Some(w) = globals_warning {
        writer.warn(w);
    }

    let mut extra = BTreeMap::new();
    extra.insert(
        "row_counts".into(),
        "exact, counted in the dump's own snapshot (pg_export_snapshot)".into(),
    );
    extra.insert(
        "format".into(),
        match spec.format {
            DumpFormat::Custom => "custom",
            DumpFormat::Directory => "directory",
        }
        .into(),
    );
    extra.insert("database".into(), database);
    if let Some(spans) = spans {
        extra.insert(crate::pg_archive::SPANS_FACT.into(), spans);
    }
    // The server as the URL reaches it, `?host=`/`?port=` included (the URL in `roots` is
    // recorded without its query): what restore safety compares a target with.
    extra.insert("server".into(), crate::identity::server_fact(&url));
    let dump_root = match spec.format {
        DumpFormat::Custom => DUMP_FILE,
        DumpFormat::Directory => DUMP_DIR,
    };
    Ok(BackedUp {
        roots: vec![
            Root {
                name: dump_root.into(),
                source: url.to_string(),
            },
            Root {
                name: GLOBALS_FILE.into(),
                source: url.to_string(),
            },
        ],
        facts: SourceFacts {
            server_version: Some(format!("PostgreSQL {server_version}")),
            database_size: Some(database_size.max(0) as u64),
            tables,
            schema_fingerprint: Some(schema),
            extra,
            ..SourceFacts::default()
        },
        data_point,
    })
}

/// Adds every file of a dump directory under `name/` in the tree.
async fn add_directory(
    writer: &mut SnapshotWriter,
    dir: &std::path::Path,
    name: &str,
) -> Result<(), SourceError> {
    let mut dir_entry = stream_entry(name);
    dir_entry.kind = EntryKind::Dir;
    dir_entry.mode = 0o040700;
    writer.add_entry(dir_entry).await?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| SourceError::io(dir.display(), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| SourceError::io(dir.display(), e))?;
    files.sort_by_key(|f| f.file_name());
    for file in files {
        let path = file.path();
        let file_name = file.file_name().to_string_lossy().into_owned();
        let reader = std::fs::File::open(&path).map_err(|e| SourceError::io(path.display(), e))?;
        writer
            .add_stream(stream_entry(&format!("{name}/{file_name}")), reader)
            .await?;
    }
    Ok(())
}

/// Roles and tablespaces. Reading role passwords needs a superuser; without one the dump
/// is taken without them and the snapshot says so.
async fn dump_globals(
    tools: &Tools,
    url: &DbUrl,
    writer: &mut SnapshotWriter,
) -> Result<Option<String>, SourceError> {
    let mut warning = None;
    for without_passwords in [false, true] {
        let mut cmd = libpq_command(tools, Tool::PgDumpall, url)?;
        cmd.arg("--globals-only");
        if without_passwords {
            cmd.arg("--no-role-passwords");
        }
        // Small: read it whole, so that a failed first attempt leaves nothing behind.
        let out = cmd.output().await.map_err(|e| SourceError::ToolFailed {
            tool: "pg_dumpall",
            detail: format!("could not be started: {e}"),
        })?;
        if out.status.success() {
            writer
                .add_stream(stream_entry(GLOBALS_FILE), std::io::Cursor::new(out.stdout))
                .await?;
            return Ok(warning);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if without_passwords || !stderr.contains("permission denied") {
            return Err(SourceError::ToolFailed {
                tool: "pg_dumpall",
                detail: format!("--globals-only failed: {stderr}"),
            });
        }
        warning = Some(format!(
            "{GLOBALS_FILE}: role passwords left out (reading them needs a superuser): {stderr}"
        ));
    }
    Ok(warning)
}

/// Exact row counts of every table and the schema fingerprint, in the connection's current
/// transaction.
async fn table_facts(
    conn: &mut PgConnection,
    url: &DbUrl,
) -> Result<(BTreeMap<String, u64>, String), SourceError> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                         AND d.objid = c.oid AND d.deptype = 'e') \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(query_error(url, "listing tables"))?;
    let mut counts = BTreeMap::new();
    for (schema, table) in tables {
        let sql = format!(
            "SELECT count(*) FROM ONLY {}.{}",
            quote_ident(&schema),
            quote_ident(&table)
        );
        let count: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&mut *conn)
            .await
            .map_err(query_error(
                url,
                format!("counting rows of {schema}.{table}"),
            ))?;
        counts.insert(format!("{schema}.{table}"), count.max(0) as u64);
    }
    let lines: Vec<String> = sqlx::query_scalar(SCHEMA_LINES)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error(url, "reading the schema"))?;
    Ok((counts, fingerprint(lines)))
}

/// One line per schema object, independent of OIDs, owners and the database's name, so
/// that a faithful restore has the same fingerprint as its source.
const SCHEMA_LINES: &str = r#"
WITH user_ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
)
SELECT 'column ' || table_schema || '.' || table_name || '.' || column_name || ' #'
       || ordinal_position || ' ' || udt_name || ' ' || coalesce(character_maximum_length::text, '')
       || ' ' || is_nullable || ' ' || coalesce(column_default, '')
  FROM information_schema.columns
  WHERE table_schema IN (SELECT nspname FROM user_ns)
UNION ALL
SELECT 'constraint ' || c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
  FROM pg_constraint c WHERE c.connamespace IN (SELECT oid FROM user_ns)
UNION ALL
SELECT 'index ' || schemaname || ' ' || indexdef FROM pg_indexes
  WHERE schemaname IN (SELECT nspname FROM user_ns)
UNION ALL
SELECT 'view ' || schemaname || '.' || viewname || ' ' || definition FROM pg_views
  WHERE schemaname IN (SELECT nspname FROM user_ns)
UNION ALL
SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)
       || ') ' || p.prokind::text || ' ' || md5(coalesce(p.prosrc, ''))
  FROM pg_proc p JOIN user_ns n ON n.oid = p.pronamespace
  WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                    AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'sequence ' || sequence_schema || '.' || sequence_name || ' ' || data_type || ' ' || increment
  FROM information_schema.sequences WHERE sequence_schema IN (SELECT nspname FROM user_ns)
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  WHERE NOT t.tgisinternal AND c.relnamespace IN (SELECT oid FROM user_ns)
"#;

/// The facts of a database as it is now (a restored target), taken the same way as at
/// backup, in one repeatable-read transaction.
pub async fn facts(url: &DbUrl) -> Result<SourceFacts, SourceError> {
    let mut conn = connect(url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(query_error(url, "starting a transaction"))?;
    let (server_version, database_size): (String, i64) = sqlx::query_as(
        "SELECT current_setting('server_version'), pg_database_size(current_database())",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(query_error(url, "reading the server version"))?;
    let (tables, schema) = table_facts(&mut conn, url).await?;
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
    Ok(SourceFacts {
        server_version: Some(format!("PostgreSQL {server_version}")),
        database_size: Some(database_size.max(0) as u64),
        tables,
        schema_fingerprint: Some(schema),
        ..SourceFacts::default()
    })
}

/// The maintenance connection for creating and dropping `database` on `server`: the
/// server URL's own database, or `postgres` when that is the one being created.
fn admin_url(server: &DbUrl, database: &str) -> DbUrl {
    match server.database() {
        Some(db) if db != database => server.clone(),
        _ => server.with_database("postgres"),
    }
}

pub async fn database_exists(server: &DbUrl, database: &str) -> Result<bool, SourceError> {
    let admin = admin_url(server, database);
    let mut conn = connect(&admin).await?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(database)
        .fetch_optional(&mut conn)
        .await
        .map_err(query_error(&admin, "looking up the database"))?;
    Ok(found.is_some())
}

/// True when the database holds no user tables, views, sequences or functions.
pub async fn database_is_empty(url: &DbUrl) -> Result<bool, SourceError> {
    let mut conn = connect(url).await?;
    let objects: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema') \
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(query_error(url, "looking for existing objects"))?;
    Ok(objects == 0)
}

pub async fn create_database(server: &DbUrl, database: &str) -> Result<(), SourceError> {
    let admin = admin_url(server, database);
    let mut conn = connect(&admin).await?;
    sqlx::query(&format!(
        "CREATE DATABASE {} TEMPLATE template0",
        quote_ident(database)
    ))
    .execute(&mut conn)
    .await
    .map_err(query_error(&admin, format!("creating database {database}")))?;
    Ok(())
}

/// Drops `database`, disconnecting anyone still in it (a killed pg_restore's backends).
pub async fn drop_database(server: &DbUrl, database: &str) -> Result<(), SourceError> {
    let admin = admin_url(server, database);
    let mut conn = connect(&admin).await?;
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(database)
    ))
    .execute(&mut conn)
    .await
    .map_err(query_error(&admin, format!("dropping database {database}")))?;
    Ok(())
}

/// Databases on `server` whose names start with `prefix`.
pub async fn databases_with_prefix(
    server: &DbUrl,
    prefix: &str,
) -> Result<Vec<String>, SourceError> {
    let admin = admin_url(server, "");
    let mut conn = connect(&admin).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut conn)
            .await
            .map_err(query_error(&admin, "listing databases"))?;
    Ok(names)
}

/// Loads a snapshot's dump into the existing database `target` with `pg_restore`.
/// Objects are restored without their owners and grants (a scratch server does not have
/// production's roles; `globals.sql` in the snapshot has them). `clean` drops objects that
/// already exist first; `jobs` applies to the directory format.
pub async fn load(
    reader: &SnapshotReader,
    target: &DbUrl,
    tools: &Tools,
    jobs: u32,
    clean: bool,
) -> Result<(), SourceError> {
    let restore_command = || -> Result<Command, SourceError> {
        let mut cmd = libpq_command(tools, Tool::PgRestore, target)?;
        cmd.args(["--no-owner", "--no-privileges", "--exit-on-error"]);
        if clean {
            cmd.args(["--clean", "--if-exists"]);
        }
        Ok(cmd)
    };
    if let Some(entry) = reader.file(DUMP_FILE).await? {
        // `--clean` drops what the dump holds before it creates it, post-data objects
        // (foreign keys) included: that needs the whole archive in one pass.
        if jobs > 1 && !clean {
            if let Some(head) = read_archive_head(reader, entry).await {
                return load_split(reader, entry, head, restore_command, jobs).await;
            }
        }
        let running = Running::spawn_fed(Tool::PgRestore, restore_command()?)?;
        return running.feed(reader, entry).await;
    }
    let mut cmd = restore_command()?;
    let spool = crate::spool_dir("backstop-pgrestore-")?;
    let dir = spool_directory_dump(reader, spool.path()).await?;
    cmd.args(["--format=directory", &format!("--jobs={}", jobs.max(1))])
        .arg(&dir);
    Running::spawn(Tool::PgRestore, cmd)?.finish().await?;
    Ok(())
}

/// Loads only `tables` (schema, name) of a snapshot's dump into the existing database
/// `target`: each with its data, defaults, indexes, constraints, triggers and the sequences,
/// functions and types it needs, and no other table (a foreign key to a table left out is
/// left out too). The dump's table of contents decides ([`pg_archive::select_tables`]);
/// `pg_restore -L` restores that list, from the stream for a custom-format dump. A table
/// the dump does not hold is an error naming it, before anything is loaded.
pub async fn load_tables(
    reader: &SnapshotReader,
    target: &DbUrl,
    tools: &Tools,
    tables: &[(String, String)],
    clean: bool,
) -> Result<(), SourceError> {
    let mut cmd = libpq_command(tools, Tool::PgRestore, target)?;
    cmd.args(["--no-owner", "--no-privileges", "--exit-on-error"]);
    if clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    let spool = crate::spool_dir("backstop-pgrestore-")?;
    let list = spool.path().join("tables.list");
    let select = |entries: &[crate::pg_archive::TocEntry]| -> Result<String, SourceError> {
        let chosen = crate::pg_archive::select_tables(entries, tables).map_err(|missing| {
            SourceError::Invalid(format!(
                "snapshot {} holds no table {}",
                reader.id().short(),
                missing.join(", ")
            ))
        })?;
        Ok(crate::pg_archive::restore_list(&chosen))
    };
    if let Some(entry) = reader.file(DUMP_FILE).await? {
        let head = read_archive_head(reader, entry).await.ok_or_else(|| {
            SourceError::Invalid(format!(
                "snapshot {}: {DUMP_FILE} has no readable table of contents",
                reader.id().short()
            ))
        })?;
        std::fs::write(&list, select(&head.entries)?)
            .map_err(|e| SourceError::io(list.display(), e))?;
        cmd.arg("--format=custom")
            .arg(format!("--use-list={}", list.display()));
        return Running::spawn_fed(Tool::PgRestore, cmd)?
            .feed(reader, entry)
            .await;
    }
    let dir = spool_directory_dump(reader, spool.path()).await?;
    let toc_path = dir.join("toc.dat");
    let toc = std::fs::read(&toc_path).map_err(|e| SourceError::io(toc_path.display(), e))?;
    std::fs::write(&list, select(&toc_entries(reader, &toc)?)?)
        .map_err(|e| SourceError::io(list.display(), e))?;
    cmd.arg("--format=directory")
        .arg(format!("--use-list={}", list.display()))
        .arg(&dir);
    Running::spawn(Tool::PgRestore, cmd)?.finish().await?;
    Ok(())
}

/// Writes a directory-format dump's files from the snapshot under `spool`; returns its
/// directory.
async fn spool_directory_dump(
    reader: &SnapshotReader,
    spool: &std::path::Path,
) -> Result<std::path::PathBuf, SourceError> {
    let parts: Vec<&Entry> = reader
        .entries()
        .await?
        .iter()
        .filter(|e| e.kind == EntryKind::File && e.path.starts_with(&format!("{DUMP_DIR}/")))
        .collect();
    if parts.is_empty() {
        return Err(SourceError::Invalid(format!(
            "snapshot {} holds no PostgreSQL dump ({DUMP_FILE} or {DUMP_DIR}/)",
            reader.id().short()
        )));
    }
    let dir = spool.join(DUMP_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| SourceError::io(dir.display(), e))?;
    for entry in parts {
        let path = spool.join(&entry.path);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| SourceError::io(path.display(), e))?;
        reader.stream_file(entry, &mut file).await?;
    }
    Ok(dir)
}

/// How far past a table's data block the stream must be before that data is taken as loaded
/// and committed. `pg_restore` ends a table's `COPY` (and, without `--single-transaction`,
/// commits it) before it reads the next block; bytes the stream has passed but
/// `pg_restore` has not processed are at most what the writer holds (its 64 KiB buffer, or
/// the routed piece it is writing), its input socket's buffer (1 MiB, [`Running::spawn_fed`])
/// and its own read buffer. A key built before its table's `COPY` began would be checked
/// against an empty table, and a foreign key would then refuse rows whose referenced table
/// loads later.
const LANDED_AFTER: u64 = 16 << 20;

/// Loads a custom-format dump with its tables' data loaded side by side and its post-data
/// objects built beside the data. A custom-format stream can only be restored by one
/// `pg_restore` job (`--jobs` needs to seek), and spooling the dump to a file first costs
/// its whole length in writes before the load starts. Instead:
/// - the schema is created from a file holding just the archive's head;
/// - `jobs` `pg_restore` processes load the data, each from its own stream of the dump:
///   the first to reach a table's block takes it and the others get an empty block in its
///   place ([`pg_archive::BlockRouter`]), so that one process loading a large table falls
///   behind while another reads on to the next;
/// - as each table's data is in, the keys and indexes that read only tables already loaded
///   are built from the head file (one batch at a time); what is left (the last tables'
///   keys, triggers, comments) is built by `jobs` parallel workers once the data is in
///   (docs/architecture.md, "Database loads").
async fn load_split(
    reader: &SnapshotReader,
    entry: &Entry,
    head: crate::pg_archive::ArchiveHead,
    restore_command: impl Fn() -> Result<Command, SourceError>,
    jobs: u32,
) -> Result<(), SourceError> {
    let (entries, head) = (head.entries, Arc::new(head.bytes));
    let mut plan = crate::pg_archive::PostDataPlan::new(&entries);
    let spool = crate::spool_dir("backstop-pgrestore-")?;
    let toc = spool.path().join("head.pgdump");
    std::fs::write(&toc, head.as_slice()).map_err(|e| SourceError::io(toc.display(), e))?;
    let post_data = |list: &[crate::pg_archive::TocEntry], name: &str, jobs: u32| {
        let path = spool.path().join(name);
        std::fs::write(&path, crate::pg_archive::restore_list(list))
            .map_err(|e| SourceError::io(path.display(), e))?;
        let mut cmd = restore_command()?;
        cmd.args([
            "--section=post-data",
            "--format=custom",
            &format!("--jobs={jobs}"),
        ])
        .arg(format!("--use-list={}", path.display()))
        .arg(&toc);
        Running::spawn(Tool::PgRestore, cmd)
    };

    let mut schema = restore_command()?;
    schema
        .args(["--section=pre-data", "--format=custom"])
        .arg(&toc);
    Running::spawn(Tool::PgRestore, schema)?.finish().await?;

    let (landed, mut landing) = tokio::sync::mpsc::unbounded_channel();
    let loaders = match recorded_spans(reader, entry, &head, &entries)? {
        Some(recorded) => span_loaders(
            reader,
            recorded,
            &entries,
            jobs,
            &restore_command,
            spool.path(),
            &landed,
        )?,
        None => routed_loaders(reader, entry, head, jobs, &restore_command, &landed)?,
    };
    // Loaders still loading: a batch of builds gets the jobs they have left free.
    let loading = Arc::new(std::sync::atomic::AtomicUsize::new(loaders.len()));
    let loaders: Vec<_> = loaders
        .into_iter()
        .map(|loader| {
            let (loading, landed) = (loading.clone(), landed.clone());
            async move {
                let blocks = loader.await?;
                loading.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                // Its `pg_restore` has ended: every block it loaded is in.
                let _ = landed.send(blocks);
                Ok(())
            }
        })
        .collect();
    drop(landed);
    let building = async {
        let mut loaded = std::collections::HashSet::new();
        let mut batch = 0;
        // Ends when every loader has (their senders are dropped).
        while let Some(blocks) = landing.recv().await {
            loaded.extend(blocks);
            while let Ok(blocks) = landing.try_recv() {
                loaded.extend(blocks);
            }
            let ready = plan.take_ready(&loaded);
            if !ready.is_empty() {
                batch += 1;
                let free =
                    jobs.saturating_sub(loading.load(std::sync::atomic::Ordering::SeqCst) as u32);
                tracing::debug!(
                    objects = ready.len(),
                    batch,
                    jobs = free.max(1),
                    "building post-data objects while the data loads"
                );
                post_data(&ready, &format!("early-{batch}.list"), free.max(1))?
                    .finish()
                    .await?;
            }
        }
        Ok::<_, SourceError>(())
    };
    let (loaded, built) = futures::join!(side_by_side(loaders), building);
    loaded?;
    built?;

    let rest = plan.rest();
    if !rest.is_empty() {
        post_data(&rest, "rest.list", jobs)?.finish().await?;
    }
    Ok(())
}

/// Where a dump's data blocks lie, as its backup recorded them ([`pg_archive::SPANS_FACT`]),
/// with the file's chunks: `None` for a snapshot that has no record, or one that does not
/// agree with the dump (blocks that do not follow each other from the end of its head to its
/// end, or of entries its table of contents does not list); the dump is then read whole by
/// every loader.
fn recorded_spans(
    reader: &SnapshotReader,
    entry: &Entry,
    head: &Arc<Vec<u8>>,
    entries: &[crate::pg_archive::TocEntry],
) -> Result<Option<RecordedSpans>, SourceError> {
    let Some(text) = reader
        .snapshot()
        .facts
        .extra
        .get(crate::pg_archive::SPANS_FACT)
    else {
        return Ok(None);
    };
    let disagrees = |why: String| {
        tracing::warn!(
            snapshot = %reader.id().short(),
            "{why}; the dump is read whole by every loader"
        );
        Ok(None)
    };
    let spans = match crate::pg_archive::decode_spans(text) {
        Ok(spans) => spans,
        Err(why) => return disagrees(why),
    };
    let start = spans.first().map_or(head.len() as u64, |s| s.start);
    let end = spans.last().map_or(start, |s| s.end);
    if start != head.len() as u64 || end != entry.size {
        return disagrees(format!(
            "the recorded data blocks span bytes {start}..{end} of a dump whose data is at {}..{}",
            head.len(),
            entry.size
        ));
    }
    let listed: std::collections::HashSet<i64> = entries.iter().map(|e| e.dump_id).collect();
    if let Some(stray) = spans.iter().find(|s| !listed.contains(&s.dump_id)) {
        return disagrees(format!(
            "a data block is recorded for entry {}, which the table of contents does not list",
            stray.dump_id
        ));
    }
    Ok(Some(RecordedSpans {
        file: Arc::new(reader.file_chunks(entry)?),
        head: head.clone(),
        spans,
    }))
}

/// A dump's data blocks as its backup recorded them ([`recorded_spans`]), its head and where
/// its chunks lie.
struct RecordedSpans {
    file: Arc<backstop_repo::FileChunks>,
    head: Arc<Vec<u8>>,
    spans: Vec<crate::pg_archive::BlockSpan>,
}

/// A loader's task: its `pg_restore` fed and finished; the blocks it loaded.
type LoaderTask = futures::future::BoxFuture<'static, Result<Vec<i64>, SourceError>>;

/// The loaders of a dump whose blocks' places the backup recorded: the blocks are shared
/// out before the load ([`pg_archive::share_blocks`], by size), and each loader's
/// `pg_restore` gets a list of its own blocks (the first one's also holds the data-section
/// entries without a block: sequence values) and a stream of the head and those blocks
/// only, read from the repository with each chunk verified against its id. The loaders read
/// the dump once between them and touch no table another one loads. No loader computes the
/// file's SHA-256: the blocks follow each other from the head to the file's end, so every
/// chunk of the dump is verified by the loader that reads it. The lists are written in
/// `spool`.
fn span_loaders(
    reader: &SnapshotReader,
    recorded: RecordedSpans,
    entries: &[crate::pg_archive::TocEntry],
    jobs: u32,
    restore_command: &impl Fn() -> Result<Command, SourceError>,
    spool: &std::path::Path,
    landed: &tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
) -> Result<Vec<LoaderTask>, SourceError> {
    let by_id: HashMap<i64, &crate::pg_archive::TocEntry> =
        entries.iter().map(|e| (e.dump_id, e)).collect();
    let with_block: std::collections::HashSet<i64> =
        recorded.spans.iter().map(|s| s.dump_id).collect();
    let blockless: Vec<crate::pg_archive::TocEntry> = entries
        .iter()
        .filter(|e| {
            e.section == crate::pg_archive::SECTION_DATA && !with_block.contains(&e.dump_id)
        })
        .cloned()
        .collect();
    let shares = crate::pg_archive::share_blocks(&recorded.spans, jobs.max(1) as usize);
    let mut loaders = Vec::new();
    for (loader, share) in shares.into_iter().enumerate() {
        if loader > 0 && share.is_empty() {
            continue;
        }
        let first = if loader == 0 { &blockless[..] } else { &[] };
        let list: Vec<crate::pg_archive::TocEntry> = first
            .iter()
            .cloned()
            .chain(share.iter().map(|s| by_id[&s.dump_id].clone()))
            .collect();
        let path = spool.join(format!("data-{loader}.list"));
        std::fs::write(&path, crate::pg_archive::restore_list(&list))
            .map_err(|e| SourceError::io(path.display(), e))?;
        let mut data = restore_command()?;
        data.arg("--section=data")
            .arg(format!("--use-list={}", path.display()));
        let running = Running::spawn_fed(Tool::PgRestore, data)?;
        loaders.push(
            feed_spans(
                running,
                loader,
                reader.clone(),
                recorded.file.clone(),
                share,
                recorded.head.clone(),
                landed.clone(),
            )
            .boxed(),
        );
    }
    Ok(loaders)
}

/// One loader's stream when the backup recorded where the blocks lie: the head, then its
/// own blocks in the archive's order, each read from the repository with every chunk
/// verified; the blocks it loaded.
async fn feed_spans(
    mut running: Running,
    loader: usize,
    reader: SnapshotReader,
    file: Arc<backstop_repo::FileChunks>,
    share: Vec<crate::pg_archive::BlockSpan>,
    head: Arc<Vec<u8>>,
    landed: tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
) -> Result<Vec<i64>, SourceError> {
    use tokio::io::AsyncWriteExt;
    let path = file.path().to_string();
    let mut stdin = LandingWriter {
        inner: tokio::io::BufWriter::with_capacity(1 << 16, running.stdin_writer()?),
        handed: 0,
        landings: Default::default(),
        landed,
    };
    let fed = async {
        let write_error = |e| backstop_repo::RepoError::write(&path, e);
        stdin.write_all(&head).await.map_err(write_error)?;
        let mut read = 0u64;
        for span in &share {
            tracing::debug!(block = span.dump_id, loader, "loading a table's data");
            read += reader
                .stream_range(&file, span.start..span.end, &mut stdin)
                .await?;
            stdin.landings.passed(span.dump_id, stdin.handed);
        }
        stdin.flush().await.map_err(write_error)?;
        tracing::debug!(loader, read, "the loader's blocks are read");
        Ok(())
    }
    .await;
    drop(stdin);
    running.after_streaming(fed).await?;
    Ok(share.iter().map(|span| span.dump_id).collect())
}

/// The loaders of a dump whose blocks' places were not recorded: each reads the whole
/// dump, and the first to reach a block takes it; the others get an empty block in its
/// place as it passes ([`pg_archive::BlockRouter`]). The first loader verifies the file's
/// SHA-256.
fn routed_loaders(
    reader: &SnapshotReader,
    entry: &Entry,
    head: Arc<Vec<u8>>,
    jobs: u32,
    restore_command: &impl Fn() -> Result<Command, SourceError>,
    landed: &tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
) -> Result<Vec<LoaderTask>, SourceError> {
    // Which loader took each data block.
    let taken: Arc<Mutex<HashMap<i64, usize>>> = Default::default();
    (0..jobs.max(1) as usize)
        .map(|loader| {
            let mut data = restore_command()?;
            data.arg("--section=data");
            let running = Running::spawn_fed(Tool::PgRestore, data)?;
            let take = {
                let taken = taken.clone();
                move |block| {
                    let mut taken = taken.lock().expect("loader lock");
                    let taker = *taken.entry(block).or_insert(loader);
                    if taker == loader {
                        tracing::debug!(block, loader, "loading a table's data");
                    }
                    taker == loader
                }
            };
            let mut router = crate::pg_archive::BlockRouter::new(&head, take);
            let (reader, entry, landing_now, taken) =
                (reader.clone(), entry.clone(), landed.clone(), taken.clone());
            Ok(async move {
                running
                    .feed_routed(
                        &reader,
                        &entry,
                        FileStream::nth(loader),
                        move |bytes, out| {
                            router.route(bytes, out);
                            let landed = router.landed(LANDED_AFTER);
                            if !landed.is_empty() {
                                let _ = landing_now.send(landed);
                            }
                        },
                    )
                    .await?;
                let taken = taken.lock().expect("loader lock");
                Ok(taken
                    .iter()
                    .filter(|(_, taker)| **taker == loader)
                    .map(|(block, _)| *block)
                    .collect())
            }
            .boxed())
        })
        .collect()
}

/// A loader's stdin that reports the blocks it passed whole as they land
/// ([`pg_archive::Landings`]), as the bytes after them are handed on.
struct LandingWriter<W> {
    inner: W,
    handed: u64,
    landings: crate::pg_archive::Landings,
    landed: tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for LandingWriter<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_write(cx, bytes))?;
        this.handed += written as u64;
        let landed = this.landings.landed(this.handed, LANDED_AFTER);
        if !landed.is_empty() {
            let _ = this.landed.send(landed);
        }
        std::task::Poll::Ready(Ok(written))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The entries of a dump's table of contents, or an error naming the snapshot.
fn toc_entries(
    reader: &SnapshotReader,
    toc: &[u8],
) -> Result<Vec<crate::pg_archive::TocEntry>, SourceError> {
    crate::pg_archive::toc_entries(toc).map_err(|e| {
        SourceError::Invalid(format!(
            "snapshot {}: the dump's table of contents: {e}",
            reader.id().short()
        ))
    })
}

/// The header and table of contents of a custom-format dump, read from the start of its
/// stream (the rest is not fetched); `None` when they do not parse, and the dump is then
/// loaded in one pass.
async fn read_archive_head(
    reader: &SnapshotReader,
    entry: &Entry,
) -> Option<crate::pg_archive::ArchiveHead> {
    let mut gatherer = crate::pg_archive::HeadGatherer::default();
    let mut head = None;
    let mut catcher = crate::tool::Catcher::new(|bytes: &[u8]| match gatherer.gather(bytes) {
        Ok(Some(whole)) => {
            head = Some(whole);
            Ok(true)
        }
        Ok(None) if gatherer.held() <= HEAD_LIMIT => Ok(false),
        Ok(None) | Err(_) => Err(std::io::Error::other("no custom-format head")),
    });
    // The catcher refuses the write after the one that completes the head, which stops
    // the stream.
    let _ = reader.stream_file(entry, &mut catcher).await;
    // A dump that is all head ends before the gatherer tries again.
    head.or_else(|| gatherer.finish().ok().flatten())
}

/// A table of contents larger than this (a schema of hundreds of thousands of objects) is
/// loaded in one pass rather than held.
const HEAD_LIMIT: usize = 256 << 20;
