//! Questions a drill asks a restored scratch target: a user's SQL query, and the engine's
//! own integrity check (`PRAGMA integrity_check`, `CHECK TABLE`, amcheck).

use futures::TryStreamExt;
use sqlx::{Connection, Row};

use crate::dburl::{query_error, DbUrl, Engine};
use crate::scratch::{Scratch, Target};
use crate::{mysql, sqlite, SourceError};

/// The first row of `sql` on a concrete connection, run through the simple (text)
/// protocol. A macro, not a generic function: the generic executor bound makes the future
/// not `Send` for every lifetime, and drills run on spawned tasks.
macro_rules! first_row {
    ($conn:expr, $sql:expr) => {{
        let mut rows = sqlx::raw_sql($sql).fetch(&mut $conn);
        rows.try_next().await
    }};
}

/// The outcome of a native integrity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Native {
    Passed(String),
    Failed(String),
    /// The check cannot run here (for example amcheck is not installed); says why.
    Unavailable(String),
}

impl Scratch {
    /// Runs `sql` against the scratch database and returns the first column of the first
    /// row as text (`None` for SQL NULL). No row at all is an error: an expectation about a
    /// value needs one. Queries go through the simple (text) protocol, so any column type
    /// reads as the server prints it.
    pub async fn first_value(&self, sql: &str) -> Result<Option<String>, SourceError> {
        let no_row = || SourceError::Invalid("the query returned no row".into());
        match &self.target {
            Target::Database { url, .. } => match url.engine() {
                Engine::Postgres => {
                    let mut conn: sqlx::PgConnection = crate::dburl::connect(url).await?;
                    let row = first_row!(conn, sql)
                        .map_err(query_error(url, "the check query"))?
                        .ok_or_else(no_row)?;
                    let _ = conn.close().await;
                    first_column(&row)
                }
                Engine::Mysql => {
                    let mut conn: sqlx::MySqlConnection = crate::dburl::connect(url).await?;
                    let row = first_row!(conn, sql)
                        .map_err(query_error(url, "the check query"))?
                        .ok_or_else(no_row)?;
                    let _ = conn.close().await;
                    first_column(&row)
                }
            },
            Target::Dir {
                file: Some(file), ..
            } => {
                let mut conn = sqlite::open(file, false).await?;
                let row = first_row!(conn, sql)
                    .map_err(sqlite::query_error(file, "the check query"))?
                    .ok_or_else(no_row)?;
                let _ = conn.close().await;
                first_column(&row)
            }
            Target::Dir { dir, .. } => Err(SourceError::Invalid(format!(
                "sql checks need a database target; {} is a directory",
                dir.display()
            ))),
        }
    }

    /// The engine's own integrity check of the restored database; `None` for a directory.
    pub async fn native_check(&self) -> Option<Result<Native, SourceError>> {
        match &self.target {
            Target::Database { url, .. } => Some(url.engine().native_check(url).await),
            Target::Dir {
                file: Some(file), ..
            } => Some(integrity_check(file).await),
            Target::Dir { file: None, .. } => None,
        }
    }
}

fn first_column<R: Row>(row: &R) -> Result<Option<String>, SourceError>
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    if row.is_empty() {
        return Err(SourceError::Invalid("the query returned no column".into()));
    }
    // Unchecked: a text-protocol value of any type decodes as its text.
    row.try_get_unchecked::<Option<String>, _>(0)
        .map_err(|e| SourceError::Invalid(format!("reading the first column: {e}")))
}

async fn integrity_check(file: &std::path::Path) -> Result<Native, SourceError> {
    let mut conn = sqlite::open(file, true).await?;
    let lines: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .map_err(sqlite::query_error(file, "PRAGMA integrity_check"))?;
    let _ = conn.close().await;
    Ok(if lines == ["ok"] {
        Native::Passed("PRAGMA integrity_check: ok".into())
    } else {
        Native::Failed(format!("PRAGMA integrity_check: {}", lines.join("; ")))
    })
}

pub(crate) async fn check_tables(url: &DbUrl) -> Result<Native, SourceError> {
    let mut conn: sqlx::MySqlConnection = crate::dburl::connect(url).await?;
    let names: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(table_name AS BINARY) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(query_error(url, "listing tables"))?;
    if names.is_empty() {
        return Ok(Native::Passed("CHECK TABLE: no tables".into()));
    }
    let list: Vec<String> = names
        .iter()
        .map(|n| mysql::quote_ident(&String::from_utf8_lossy(n)))
        .collect();
    let statement = format!("CHECK TABLE {}", list.join(", "));
    let mut rows = Vec::new();
    {
        let mut stream = sqlx::raw_sql(&statement).fetch(&mut conn);
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(query_error(url, "CHECK TABLE"))?
        {
            rows.push(row);
        }
    }
    let _ = conn.close().await;
    let mut problems = Vec::new();
    for row in &rows {
        let text = |i: usize| -> String {
            row.try_get_unchecked::<Option<String>, _>(i)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let (table, kind, message) = (text(0), text(2), text(3));
        let fine = match kind.as_str() {
            "status" => message.eq_ignore_ascii_case("OK"),
            "note" | "info" => true,
            _ => false,
        };
        if !fine {
            problems.push(format!("{table}: {kind}: {message}"));
        }
    }
    Ok(if problems.is_empty() {
        Native::Passed(format!("CHECK TABLE: {} table(s) OK", names.len()))
    } else {
        Native::Failed(format!("CHECK TABLE: {}", problems.join("; ")))
    })
}

pub(crate) async fn amcheck(url: &DbUrl) -> Result<Native, SourceError> {
    let mut conn: sqlx::PgConnection = crate::dburl::connect(url).await?;
    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(query_error(url, "looking for amcheck"))?;
    if !available {
        return Ok(Native::Unavailable(
            "the amcheck extension is not installed on the scratch server".into(),
        ));
    }
    // The scratch database is throwaway: installing the extension there touches nothing else.
    if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS amcheck")
        .execute(&mut conn)
        .await
    {
        return Ok(Native::Unavailable(format!(
            "cannot create the amcheck extension in the scratch database: {e}"
        )));
    }
    let indexes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, c.relname), c.oid::bigint \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam \
         WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't' \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
         ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(query_error(url, "listing btree indexes"))?;
    let mut problems = Vec::new();
    for (name, oid) in &indexes {
        if let Err(e) = sqlx::query("SELECT bt_index_check(($1::bigint)::oid::regclass, true)")
            .bind(oid)
            .execute(&mut conn)
            .await
        {
            problems.push(format!("{name}: {e}"));
        }
    }
    let _ = conn.close().await;
    Ok(if problems.is_empty() {
        Native::Passed(format!(
            "amcheck: {} btree index(es) consistent with their tables",
            indexes.len()
        ))
    } else {
        Native::Failed(format!("amcheck: {}", problems.join("; ")))
    })
}
