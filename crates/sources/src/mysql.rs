//! MySQL and MariaDB: `mariadb-dump --single-transaction` streamed into the repository, and
//! loaded into a target with the `mariadb` client.
//!
//! The dump tool cannot share its transaction with another session, so row counts are read
//! from the dump stream itself as it passes ([`crate::dump_rows`]): they describe exactly
//! the rows stored. The schema fingerprint is read from `information_schema` just before
//! the dump starts; the snapshot's facts say how each was taken.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use backstop_repo::format::snapshot::Root;
use backstop_repo::{SnapshotReader, SnapshotWriter, SourceFacts};
use serde::Deserialize;
use sqlx::MySqlConnection;
use tokio::process::Command;

use crate::dburl::{query_error, DbUrl, UrlSource};
use crate::dump_rows::{CountingReader, RowCounter};
use crate::tool::{side_by_side, FileStream, Running, Tool, Tools};
use crate::{fingerprint, stream_entry, BackedUp, SourceContext, SourceError};

/// The SQL dump in a snapshot's tree.
pub const DUMP_FILE: &str = "database.sql";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSpec {
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
}

impl MysqlSpec {
    pub fn url_source(&self) -> UrlSource {
        UrlSource {
            url_env: self.url_env.clone(),
            url_file: self.url_file.clone(),
        }
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub async fn connect(url: &DbUrl) -> Result<MySqlConnection, SourceError> {
    crate::dburl::connect(url).await
}

fn required_database(url: &DbUrl) -> Result<String, SourceError> {
    url.database().ok_or_else(|| {
        SourceError::Invalid(format!(
            "{url}: the URL names no database (mysql://user@host/DATABASE)"
        ))
    })
}

/// A client tool for `url`. Credentials go in a private option file (mode 0600, removed
/// when the returned handle drops), never in argv or the environment.
fn client_command(
    tools: &Tools,
    tool: Tool,
    url: &DbUrl,
) -> Result<(Command, tempfile::NamedTempFile), SourceError> {
    let mut options = tempfile::Builder::new()
        .prefix("backstop-my-")
        .tempfile()
        .map_err(|e| SourceError::io("a temporary option file", e))?;
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let mut text = String::from("[client]\n");
    if let Some(user) = url.user() {
        text.push_str(&format!("user={}\n", quote(&user)));
    }
    if let Some(password) = url.password() {
        text.push_str(&format!("password={}\n", quote(&password)));
    }
    let host = url.host();
    if host.starts_with('/') {
        text.push_str(&format!("socket={}\n", quote(&host)));
    } else {
        text.push_str(&format!(
            "host={}\nport={}\nprotocol=tcp\n",
            quote(&host),
            url.port()
        ));
    }
    options
        .write_all(text.as_bytes())
        .and_then(|()| options.flush())
        .map_err(|e| SourceError::io(options.path().display(), e))?;
    let mut cmd = tools.command(tool)?;
    // Must be the first argument.
    cmd.arg(format!(
        "--defaults-extra-file={}",
        options.path().display()
    ));
    Ok((cmd, options))
}

pub async fn back_up(
    spec: &crate::mysql::MysqlSpec,
    ctx: SourceContext<'_>,
    writer: &mut SnapshotWriter,
) -> Result<BackedUp, SourceError> {
    let url = spec.url_source().resolve(ctx.base)?;
    let database = required_database(&url)?;
    ctx.tools.find(Tool::MariadbDump)?;
    let mut conn = connect(&url).await?;
    let (server_version, size) = server_info(&mut conn, &url).await?;
    let schema = schema_fingerprint(&mut conn, &url).await?;
    drop(conn);

    let (mut dump, _options) = client_command(ctx.tools, Tool::MariadbDump, &url)?;
    dump.args([
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--skip-dump-date",
        "--default-character-set=utf8mb4",
    ])
    .arg(&database);
    // Counted on the server, independently of the dump (the dump's own counts cannot
    // disagree with the dump, these can). A dump must hold at least the smaller of two
    // counts per table: one in a snapshot opened just before the dump starts, one in a
    // snapshot opened once the dump's stream shows its first table (the dump's own snapshot
    // is taken by then). Rows inserted meanwhile leave the dump at or above the first, rows
    // deleted at or above the second. The first is counted while the dump streams, on its
    // own connection, so that counting adds no time in series with it; the second only for
    // the tables whose dump holds fewer rows than the first (the dump reaches the smaller of
    // the two wherever it reaches the first) and those the first did not see (created as the
    // dump started). A quiet database is counted once, not twice.
    let before_snapshot = open_snapshot(&url).await?;
    let data_point = jiff::Timestamp::now();
    let mut running = Running::spawn(Tool::MariadbDump, dump)?;
    let counter = Arc::new(Mutex::new(RowCounter::default()));
    let reader = CountingReader::new(running.blocking_stdout()?, counter.clone());
    let stream_ended = AtomicBool::new(false);
    let streaming = async {
        let streamed = writer.add_stream(stream_entry(DUMP_FILE), reader).await;
        stream_ended.store(true, Ordering::Release);
        streamed
    };
    let after_first_table = async {
        while counter
            .lock()
            .expect("row counter lock")
            .tables()
            .is_empty()
            && !stream_ended.load(Ordering::Acquire)
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        open_snapshot(&url).await
    };
    let (streamed, before, after_snapshot) = tokio::join!(
        streaming,
        count_in(before_snapshot, &url, None),
        after_first_table
    );
    // The tool's exit status decides: a dump killed mid-stream is never stored.
    let finished = running.finish().await;
    streamed?;
    finished?;
    let (before, after_snapshot) = (before?, after_snapshot?);
    let (tables, completed) = {
        let counter = counter.lock().expect("row counter lock");
        (counter.tables().clone(), counter.completed())
    };
    // A dump that stopped early but exited 0 lacks the trailer mariadb-dump writes last.
    if !completed {
        return Err(SourceError::ToolFailed {
            tool: Tool::MariadbDump.name(),
            detail: format!(
                "exited 0 but its stream of `{database}` ended without the completion trailer (`{}`): the dump is incomplete and was not committed",
                crate::dump_rows::TRAILER_TEXT
            ),
        });
    }
    let mut count_again = short_of(&tables, &before);
    count_again.extend(tables.keys().filter(|t| !before.contains_key(*t)).cloned());
    let after = if count_again.is_empty() {
        let _ = sqlx::Connection::close(after_snapshot).await;
        BTreeMap::new()
    } else {
        count_in(after_snapshot, &url, Some(&count_again)).await?
    };
    let server_min = server_minimums(&before, &after);

    let mut extra = BTreeMap::new();
    extra.insert(
        "row_counts".into(),
        "exact, counted in the dump stream (rows inserted per table)".into(),
    );
    extra.insert(
        "server_row_counts".into(),
        "counted on the server in a snapshot opened just before the dump, while it streamed, and for a table whose dump held fewer rows than that (or that it did not see), again in a snapshot opened once the dump had taken its own; server_rows_min holds per table the first count where the dump reached it and the smaller of the two otherwise, a bound the dump must reach".into(),
    );
    extra.insert(
        SERVER_ROWS_MIN.into(),
        serde_json::to_string(&server_min).unwrap_or_default(),
    );
    let short = short_tables(&tables, &server_min);
    if !short.is_empty() {
        let detail = short.join("; ");
        writer.warn(format!(
            "the dump of `{database}` holds fewer rows than the server had: {detail}"
        ));
        extra.insert("short_tables".into(), detail);
    }
    extra.insert(
        "schema_fingerprint".into(),
        "information_schema, read just before the dump".into(),
    );
    extra.insert("database".into(), database);
    // The server as the URL reaches it, `?host=`/`?port=` included (the URL in `roots` is
    // recorded without its query): what restore safety compares a target with.
    extra.insert("server".into(), crate::identity::server_fact(&url));
    Ok(BackedUp {
        roots: vec![Root {
            name: DUMP_FILE.into(),
            source: url.to_string(),
        }],
        facts: SourceFacts {
            server_version: Some(server_version),
            database_size: Some(size),
            tables,
            schema_fingerprint: Some(schema),
            extra,
            ..SourceFacts::default()
        },
        data_point,
    })
}

async fn server_info(
    conn: &mut MySqlConnection,
    url: &DbUrl,
) -> Result<(String, u64), SourceError> {
    let (version, size): (String, i64) = sqlx::query_as(
        "SELECT VERSION(), CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) \
         FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(query_error(url, "reading the server version"))?;
    Ok((version, size.max(0) as u64))
}

/// One line per schema object; the database's own name is taken out of view definitions so
/// that a restore under another name has the same fingerprint.
const SCHEMA_LINES: &str = r#"
SELECT CAST(line AS BINARY) FROM (
  SELECT CONCAT('column ', table_name, '.', column_name, ' #', ordinal_position, ' ', column_type,
                ' ', is_nullable, ' ', COALESCE(column_default, ''), ' ', extra) AS line
    FROM information_schema.columns WHERE table_schema = DATABASE()
  UNION ALL
  SELECT CONCAT('index ', table_name, ' ', index_name, ' ', non_unique, ' ', seq_in_index, ' ', column_name)
    FROM information_schema.statistics WHERE table_schema = DATABASE()
  UNION ALL
  SELECT CONCAT('foreign key ', table_name, ' ', constraint_name, ' ', referenced_table_name, ' ',
                update_rule, ' ', delete_rule)
    FROM information_schema.referential_constraints WHERE constraint_schema = DATABASE()
  UNION ALL
  SELECT CONCAT('view ', table_name, ' ', REPLACE(view_definition, CONCAT('`', DATABASE(), '`.'), ''))
    FROM information_schema.views WHERE table_schema = DATABASE()
  UNION ALL
  SELECT CONCAT('routine ', routine_type, ' ', routine_name, ' ', MD5(COALESCE(routine_definition, '')))
    FROM information_schema.routines WHERE routine_schema = DATABASE()
  UNION ALL
  SELECT CONCAT('trigger ', trigger_name, ' ', action_timing, ' ', event_manipulation, ' ',
                event_object_table, ' ', MD5(action_statement))
    FROM information_schema.triggers WHERE trigger_schema = DATABASE()
  UNION ALL
  SELECT CONCAT('event ', event_name, ' ', MD5(COALESCE(event_definition, '')))
    FROM information_schema.events WHERE event_schema = DATABASE()
) schema_lines
"#;

async fn schema_fingerprint(
    conn: &mut MySqlConnection,
    url: &DbUrl,
) -> Result<String, SourceError> {
    let lines: Vec<Vec<u8>> = sqlx::query_scalar(SCHEMA_LINES)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error(url, "reading the schema"))?;
    Ok(fingerprint(
        lines
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .collect(),
    ))
}

/// The facts of a database as it is now (a restored target): row counts in one consistent
/// snapshot, and the schema fingerprint.
pub async fn facts(url: &DbUrl) -> Result<SourceFacts, SourceError> {
    required_database(url)?;
    let mut conn = connect(url).await?;
    let (server_version, size) = server_info(&mut conn, url).await?;
    let schema = schema_fingerprint(&mut conn, url).await?;
    drop(conn);
    Ok(SourceFacts {
        server_version: Some(server_version),
        database_size: Some(size),
        tables: row_counts(url).await?,
        schema_fingerprint: Some(schema),
        ..SourceFacts::default()
    })
}

/// The facts key holding, per table, the fewest rows the server had around the dump.
pub const SERVER_ROWS_MIN: &str = "server_rows_min";

/// Per table, the smaller of two counts (a table in only one of them: that one).
fn server_minimums(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut min = before.clone();
    for (table, rows) in after {
        min.entry(table.clone())
            .and_modify(|r| *r = (*r).min(*rows))
            .or_insert(*rows);
    }
    min
}

/// Tables whose dump holds fewer rows than the server had at the least, described.
fn short_tables(dumped: &BTreeMap<String, u64>, server_min: &BTreeMap<String, u64>) -> Vec<String> {
    short_of(dumped, server_min)
        .into_iter()
        .map(|table| {
            let got = dumped.get(&table).copied().unwrap_or(0);
            let min = server_min[&table];
            format!("{table}: {got} row(s) in the dump, at least {min} on the server")
        })
        .collect()
}

/// The tables of `counted` whose dump holds fewer rows than `counted` gives them.
fn short_of(dumped: &BTreeMap<String, u64>, counted: &BTreeMap<String, u64>) -> Vec<String> {
    counted
        .iter()
        .filter(|(table, &rows)| dumped.get(*table).copied().unwrap_or(0) < rows)
        .map(|(table, _)| table.clone())
        .collect()
}

/// Row counts of every base table, in one consistent snapshot.
async fn row_counts(url: &DbUrl) -> Result<BTreeMap<String, u64>, SourceError> {
    count_in(open_snapshot(url).await?, url, None).await
}

/// A connection holding a consistent snapshot of the database as of now.
async fn open_snapshot(url: &DbUrl) -> Result<MySqlConnection, SourceError> {
    let mut conn = connect(url).await?;
    sqlx::query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(query_error(url, "starting a transaction"))?;
    Ok(conn)
}

/// Row counts of every base table as `conn`'s snapshot sees them (with `only`, of those of
/// its tables that exist).
async fn count_in(
    mut conn: MySqlConnection,
    url: &DbUrl,
    only: Option<&[String]>,
) -> Result<BTreeMap<String, u64>, SourceError> {
    let names: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(table_name AS BINARY) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(query_error(url, "listing tables"))?;
    let mut tables = BTreeMap::new();
    for name in names {
        let name = String::from_utf8_lossy(&name).into_owned();
        if only.is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        let count: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", quote_ident(&name)))
                .fetch_one(&mut conn)
                .await
                .map_err(query_error(url, format!("counting rows of {name}")))?;
        tables.insert(name, count.max(0) as u64);
    }
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
    Ok(tables)
}

fn admin_url(server: &DbUrl) -> DbUrl {
    server.with_database("")
}

pub async fn database_exists(server: &DbUrl, database: &str) -> Result<bool, SourceError> {
    let admin = admin_url(server);
    let mut conn = connect(&admin).await?;
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?")
            .bind(database)
            .fetch_optional(&mut conn)
            .await
            .map_err(query_error(&admin, "looking up the database"))?;
    Ok(found.is_some())
}

/// True when the database holds no tables, views or routines.
pub async fn database_is_empty(url: &DbUrl) -> Result<bool, SourceError> {
    let database = required_database(url)?;
    let admin = admin_url(url);
    let mut conn = connect(&admin).await?;
    let objects: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?) \
              + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = ?)",
    )
    .bind(&database)
    .bind(&database)
    .fetch_one(&mut conn)
    .await
    .map_err(query_error(&admin, "looking for existing objects"))?;
    Ok(objects == 0)
}

pub async fn create_database(server: &DbUrl, database: &str) -> Result<(), SourceError> {
    let admin = admin_url(server);
    let mut conn = connect(&admin).await?;
    sqlx::query(&format!(
        "CREATE DATABASE {} CHARACTER SET utf8mb4",
        quote_ident(database)
    ))
    .execute(&mut conn)
    .await
    .map_err(query_error(&admin, format!("creating database {database}")))?;
    Ok(())
}

pub async fn drop_database(server: &DbUrl, database: &str) -> Result<(), SourceError> {
    let admin = admin_url(server);
    let mut conn = connect(&admin).await?;
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {}",
        quote_ident(database)
    ))
    .execute(&mut conn)
    .await
    .map_err(query_error(&admin, format!("dropping database {database}")))?;
    Ok(())
}

pub async fn databases_with_prefix(
    server: &DbUrl,
    prefix: &str,
) -> Result<Vec<String>, SourceError> {
    let admin = admin_url(server);
    let mut conn = connect(&admin).await?;
    let names: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(schema_name AS BINARY) FROM information_schema.schemata \
         WHERE LEFT(schema_name, CHAR_LENGTH(?)) = ?",
    )
    .bind(prefix)
    .bind(prefix)
    .fetch_all(&mut conn)
    .await
    .map_err(query_error(&admin, "listing databases"))?;
    Ok(names
        .into_iter()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .collect())
}

/// Where a line of a `mariadb-dump` stream stands: the header (the session settings the
/// dump sets), a table's sections (its structure, its data and its triggers, which follow
/// its data), another object's section (a view, the routines, the events), or the footer
/// (the settings put back).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Header,
    /// A sequence (MariaDB dumps them before the tables, whose defaults may use them).
    Sequence,
    Table(String),
    Other,
    Footer,
}

/// Follows a dump line by line and says which [`Part`] each line belongs to.
#[derive(Debug)]
struct DumpSections {
    part: Part,
}

impl Default for DumpSections {
    fn default() -> Self {
        Self { part: Part::Header }
    }
}

impl DumpSections {
    /// The part `line` (its end included) belongs to, and whether a section starts with it.
    fn step(&mut self, line: &[u8]) -> (&Part, bool) {
        const TABLE: [&[u8]; 2] = [
            b"-- Table structure for table `",
            b"-- Dumping data for table `",
        ];
        const OTHERS: [&[u8]; 4] = [
            b"-- Temporary table structure for view `",
            b"-- Final view structure for view `",
            b"-- Dumping routines for database ",
            b"-- Dumping events for database ",
        ];
        let starts = if let Some(prefix) = TABLE.iter().find(|p| line.starts_with(p)) {
            self.part = Part::Table(backquoted(&line[prefix.len() - 1..]));
            true
        } else if OTHERS.iter().any(|p| line.starts_with(p)) {
            self.part = Part::Other;
            true
        } else if line.starts_with(b"-- Sequence structure for `") {
            self.part = Part::Sequence;
            true
        } else if line.starts_with(b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */") {
            self.part = Part::Footer;
            true
        } else {
            false
        };
        (&self.part, starts)
    }
}

/// Which lines of a `mariadb-dump` stream restore a set of tables: the header and footer
/// (the session settings the dump sets and restores), and each selected table's sections
/// (its structure, its data and its triggers); no other table, view, routine or event.
#[derive(Debug)]
pub struct TableFilter {
    tables: std::collections::HashSet<String>,
    sections: DumpSections,
}

impl TableFilter {
    pub fn new(tables: &[String]) -> Self {
        Self {
            tables: tables.iter().cloned().collect(),
            sections: DumpSections::default(),
        }
    }

    /// Whether `line` (its end included) belongs to the restore.
    pub fn keep(&mut self, line: &[u8]) -> bool {
        match self.sections.step(line).0 {
            Part::Header | Part::Sequence | Part::Footer => true,
            Part::Table(name) => self.tables.contains(name),
            Part::Other => false,
        }
    }
}

/// What the clients of a parallel load share: which client took each table, and the parts
/// loaded once every table is in (views, routines and events, and the dump's footer after
/// them), kept by the first client as it passes them.
#[derive(Debug, Default)]
struct SharedLoad {
    taken_by: std::collections::HashMap<String, usize>,
    others: Vec<u8>,
    footer: Vec<u8>,
}

/// One client's share of a parallel load ([`load`]). Every client reads the whole dump;
/// each takes the first table no client has taken when it reaches it, and passes on the
/// header, that table's sections and the footer. A client loading a large table falls
/// behind the stream while another reads on to the next table, so tables load side by
/// side without the dump being split or spooled first. Views, routines and events wait
/// for the end (a view needs its tables); client 0 keeps them.
struct LoadShare {
    client: usize,
    sections: DumpSections,
    shared: Arc<Mutex<SharedLoad>>,
    mine: bool,
}

impl LoadShare {
    fn keep(&mut self, line: &[u8]) -> bool {
        let first = self.client == 0;
        let (part, starts) = self.sections.step(line);
        let keep_for_the_end = |into: fn(&mut SharedLoad) -> &mut Vec<u8>| {
            if first {
                into(&mut self.shared.lock().expect("parallel load lock")).extend_from_slice(line);
            }
        };
        match part {
            Part::Header => true,
            Part::Footer => {
                keep_for_the_end(|s| &mut s.footer);
                true
            }
            Part::Other => {
                keep_for_the_end(|s| &mut s.others);
                false
            }
            // Made before the clients start ([`Prelude`]).
            Part::Sequence => false,
            Part::Table(name) => {
                if starts {
                    let mut shared = self.shared.lock().expect("parallel load lock");
                    let taker = match shared.taken_by.get(name) {
                        Some(taker) => *taker,
                        None => {
                            tracing::debug!(table = %name, client = self.client, "loading table");
                            shared.taken_by.insert(name.clone(), self.client);
                            self.client
                        }
                    };
                    self.mine = taker == self.client;
                }
                self.mine && !is_table_lock(line)
            }
        }
    }
}

/// The start of a dump, up to its first table, view or other object: the header (the
/// session settings) and the sequences, which a table's default may use (`CREATE TABLE`
/// refuses a default of `nextval` on a sequence that does not exist yet). A parallel load
/// makes the sequences first, with one client, before the clients that load tables start,
/// and loads the views and routines at the end under the same header.
#[derive(Default)]
struct Prelude {
    sections: DumpSections,
    line: Vec<u8>,
    header: Vec<u8>,
    sequences: Vec<u8>,
}

impl Prelude {
    /// Takes the stream's next bytes; true once the prelude is whole (a line after it has
    /// been read).
    fn take(&mut self, bytes: &[u8]) -> bool {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            self.line.extend_from_slice(piece);
            if !piece.ends_with(b"\n") {
                return false;
            }
            match self.sections.step(&self.line).0 {
                Part::Header => self.header.append(&mut self.line),
                Part::Sequence => self.sequences.append(&mut self.line),
                _ => return true,
            }
        }
        false
    }
}

/// The dump's `LOCK TABLES` and `UNLOCK TABLES` around a table's data. A parallel load leaves
/// them out: a session holding `LOCK TABLES` on a parent table fails its next insert ("was not
/// locked with LOCK TABLES") once another session has created a child table with a foreign
/// key to it. For InnoDB they change nothing else; a MyISAM table loads slower without.
fn is_table_lock(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line == b"UNLOCK TABLES;" || (line.starts_with(b"LOCK TABLES `") && line.ends_with(b"` WRITE;"))
}

/// The name in a line's backquotes (`` `a``b` `` is a`b).
fn backquoted(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let text = text.trim_end();
    let inner = text
        .strip_prefix('`')
        .and_then(|t| t.strip_suffix('`'))
        .unwrap_or(text);
    inner.replace("``", "`")
}

/// A `mariadb` client that loads what it is fed into `database`, and its options file (the
/// password), which must outlive the client's start.
fn loading_client(
    tools: &Tools,
    target: &DbUrl,
    database: &str,
) -> Result<(Running, tempfile::NamedTempFile), SourceError> {
    let (mut cmd, options) = client_command(tools, Tool::Mariadb, target)?;
    cmd.args(["--binary-mode", "--batch"])
        .arg(format!("--database={database}"));
    Ok((Running::spawn_fed(Tool::Mariadb, cmd)?, options))
}

/// Loads only `tables` of a snapshot's dump into the existing database `target`, the dump
/// filtered as it streams ([`TableFilter`]). A table the snapshot does not hold (by its
/// recorded row counts) is an error naming it, before anything is loaded.
pub async fn load_tables(
    reader: &SnapshotReader,
    target: &DbUrl,
    tools: &Tools,
    tables: &[String],
) -> Result<(), SourceError> {
    let database = required_database(target)?;
    // `schema.table` in the facts; the dump names tables without their database.
    let held: Vec<&str> = reader
        .snapshot()
        .facts
        .tables
        .keys()
        .map(|t| t.rsplit_once('.').map_or(t.as_str(), |(_, name)| name))
        .collect();
    let missing: Vec<&String> = tables
        .iter()
        .filter(|t| !held.contains(&t.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(SourceError::Invalid(format!(
            "snapshot {} holds no table {}",
            reader.id().short(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let entry = reader.file(DUMP_FILE).await?.ok_or_else(|| {
        SourceError::Invalid(format!(
            "snapshot {} holds no MySQL dump ({DUMP_FILE})",
            reader.id().short()
        ))
    })?;
    let (running, _options) = loading_client(tools, target, &database)?;
    let mut filter = TableFilter::new(tables);
    running
        .feed_lines(reader, entry, FileStream::Verifying, move |line| {
            filter.keep(line)
        })
        .await
}

/// Loads a snapshot's dump into the existing database `target` with `jobs` `mariadb` clients
/// at once, each taking whole tables as it reaches them ([`LoadShare`]); views, routines
/// and events follow once every table is in. The dump drops and recreates each table it
/// holds, so loading over existing tables replaces them.
pub async fn load(
    reader: &SnapshotReader,
    target: &DbUrl,
    tools: &Tools,
    jobs: u32,
) -> Result<(), SourceError> {
    let database = required_database(target)?;
    let entry = reader.file(DUMP_FILE).await?.ok_or_else(|| {
        SourceError::Invalid(format!(
            "snapshot {} holds no MySQL dump ({DUMP_FILE})",
            reader.id().short()
        ))
    })?;
    let client = || loading_client(tools, target, &database);
    if jobs <= 1 {
        let (running, _options) = client()?;
        return running.feed(reader, entry).await;
    }
    // The sequences first: tables' defaults may use them.
    let mut prelude = Prelude::default();
    let mut whole = false;
    let mut catcher = crate::tool::Catcher::new(|bytes: &[u8]| {
        whole = prelude.take(bytes);
        Ok(whole)
    });
    let read = reader.stream_file_again(entry, &mut catcher).await;
    if !whole {
        // The stream ended (or failed) before any table: the error, if any, is the
        // repository's.
        read?;
    }
    if !prelude.sequences.is_empty() {
        let (running, _options) = client()?;
        running
            .feed_bytes(&[&prelude.header[..], &prelude.sequences].concat())
            .await?;
    }
    let shared = Arc::new(Mutex::new(SharedLoad::default()));
    let clients = (0..jobs as usize)
        .map(|n| {
            let mut share = LoadShare {
                client: n,
                sections: DumpSections::default(),
                shared: shared.clone(),
                mine: false,
            };
            let (running, options) = client()?;
            let (reader, entry) = (reader.clone(), entry.clone());
            Ok(async move {
                let loaded = running
                    .feed_lines(&reader, &entry, FileStream::nth(n), move |line| {
                        share.keep(line)
                    })
                    .await;
                drop(options);
                loaded
            })
        })
        .collect::<Result<Vec<_>, SourceError>>()?;
    side_by_side(clients).await?;
    let rest = {
        let shared = shared.lock().expect("parallel load lock");
        (!shared.others.is_empty())
            .then(|| [&prelude.header[..], &shared.others, &shared.footer].concat())
    };
    match rest {
        Some(rest) => {
            let (running, _options) = client()?;
            running.feed_bytes(&rest).await
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod table_filter_tests {
    use super::*;

    const DUMP: &str = "\
/*!40101 SET NAMES utf8mb4 */;
--
-- Sequence structure for `invoice_seq`
--
DROP SEQUENCE IF EXISTS `invoice_seq`;
CREATE SEQUENCE `invoice_seq` start with 1000;
DO SETVAL(`invoice_seq`, 1000, 0);
--
-- Table structure for table `customers`
--
DROP TABLE IF EXISTS `customers`;
CREATE TABLE `customers` (id int);
--
-- Dumping data for table `customers`
--
INSERT INTO `customers` VALUES (1);
--
-- Table structure for table `orders`
--
CREATE TABLE `orders` (id int);
--
-- Dumping data for table `orders`
--
LOCK TABLES `orders` WRITE;
INSERT INTO `orders` VALUES (7);
UNLOCK TABLES;
DELIMITER ;;
/*!50003 CREATE*/ /*!50003 TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW SET @x = 1 */;;
DELIMITER ;
--
-- Temporary table structure for view `customer_totals`
--
CREATE VIEW `customer_totals` AS SELECT 1;
--
-- Dumping routines for database 'shop'
--
CREATE FUNCTION f() RETURNS int RETURN 1;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;
-- Dump completed
";

    /// Issue 18, item 1: the header, the chosen table's structure, data and trigger, and
    /// the footer; nothing of another table, a view or the routines.
    #[test]
    fn a_table_filter_keeps_that_tables_sections_and_the_session_settings() {
        let dump = DUMP;
        let mut filter = TableFilter::new(&["orders".to_string()]);
        let kept: String = dump
            .split_inclusive('\n')
            .filter(|line| filter.keep(line.as_bytes()))
            .collect();
        assert!(kept.starts_with("/*!40101 SET NAMES utf8mb4 */;"), "{kept}");
        assert!(kept.contains("CREATE TABLE `orders`") && kept.contains("VALUES (7)"));
        assert!(
            kept.contains("LOCK TABLES `orders` WRITE;\nINSERT"),
            "{kept}"
        );
        assert!(kept.contains("TRIGGER orders_audit"), "{kept}");
        assert!(kept.contains("CREATE SEQUENCE `invoice_seq`"), "{kept}");
        assert!(
            !kept.contains("customers` (id") && !kept.contains("VALUES (1)"),
            "{kept}"
        );
        assert!(
            !kept.contains("CREATE VIEW") && !kept.contains("CREATE FUNCTION"),
            "{kept}"
        );
        assert!(
            kept.contains("SET TIME_ZONE=@OLD_TIME_ZONE") && kept.ends_with("-- Dump completed\n")
        );
    }

    /// Issue 17, item 2: two clients of a parallel load. Client 0 takes `customers` and
    /// falls behind; client 1 reads on and takes `orders` (its trigger with it). Each passes
    /// on the header, its own table and the footer; the view and the routine are kept for
    /// the end, with the header and footer around them.
    #[test]
    fn parallel_clients_take_whole_tables_and_leave_views_and_routines_for_the_end() {
        let shared = Arc::new(Mutex::new(SharedLoad::default()));
        let share = |client| LoadShare {
            client,
            sections: DumpSections::default(),
            shared: shared.clone(),
            mine: false,
        };
        let (mut first, mut second) = (share(0), share(1));
        let lines: Vec<&str> = DUMP.split_inclusive('\n').collect();
        let behind = lines
            .iter()
            .position(|l| l.starts_with("INSERT INTO `customers`"))
            .unwrap();
        let mut kept = [String::new(), String::new()];
        for line in &lines[..=behind] {
            if first.keep(line.as_bytes()) {
                kept[0].push_str(line);
            }
        }
        for line in &lines {
            if second.keep(line.as_bytes()) {
                kept[1].push_str(line);
            }
        }
        for line in &lines[behind + 1..] {
            if first.keep(line.as_bytes()) {
                kept[0].push_str(line);
            }
        }
        for text in &kept {
            assert!(text.starts_with("/*!40101 SET NAMES utf8mb4 */;"), "{text}");
            assert!(text.ends_with("-- Dump completed\n"), "{text}");
            assert!(!text.contains("CREATE VIEW") && !text.contains("CREATE FUNCTION"));
            assert!(!text.contains("SEQUENCE"), "made before: {text}");
        }
        assert!(
            kept[0].contains("VALUES (1)") && !kept[0].contains("`orders`"),
            "{}",
            kept[0]
        );
        assert!(
            kept[1].contains("VALUES (7)")
                && kept[1].contains("TRIGGER orders_audit")
                && !kept[1].contains("`customers`")
                && !kept[1].contains("LOCK TABLES"),
            "{}",
            kept[1]
        );
        let shared = shared.lock().unwrap();
        let others = String::from_utf8_lossy(&shared.others);
        assert!(
            others.contains("CREATE VIEW") && others.contains("CREATE FUNCTION"),
            "{others}"
        );
        assert!(!others.contains("INSERT"), "{others}");
        assert!(String::from_utf8_lossy(&shared.footer).starts_with("/*!40103 SET TIME_ZONE"));
    }

    /// The e2e MariaDB restore failed once with "Table 'invoice_number_seq' already exists":
    /// every client ran the sequence, which sat before the first table. The prelude holds the
    /// header and the sequences, ends at the first table however the stream is cut, and is
    /// loaded once before the clients that load tables start.
    #[test]
    fn the_prelude_is_the_header_and_the_sequences_up_to_the_first_table() {
        for piece in [1, 7, 64, 100_000] {
            let mut prelude = Prelude::default();
            let whole = DUMP.as_bytes().chunks(piece).any(|part| prelude.take(part));
            assert!(whole, "pieces of {piece}");
            assert_eq!(prelude.header, b"/*!40101 SET NAMES utf8mb4 */;\n--\n");
            let text = String::from_utf8(prelude.sequences).unwrap();
            assert!(
                text.starts_with("-- Sequence structure for `invoice_seq`"),
                "{text}"
            );
            assert!(
                text.ends_with("DO SETVAL(`invoice_seq`, 1000, 0);\n--\n"),
                "{text}"
            );
            assert!(!text.contains("customers"), "{text}");
        }
    }
}
