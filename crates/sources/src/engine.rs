//! The database engines behind the database sources, in one place: how each creates, drops,
//! finds, inspects, loads and checks a database. The rest of the crate (scratch targets,
//! break-glass restores, probes) asks an [`Engine`] and never matches on it.

use backstop_repo::{SnapshotReader, SourceFacts};

use crate::dburl::{DbUrl, Engine};
use crate::tool::Tools;
use crate::{mysql, postgres, SourceError};

impl Engine {
    /// The source kind (as in a policy and a snapshot) of this engine's databases.
    pub fn source_kind(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }

    /// The engine of a source kind; none for files, config and sqlite.
    pub fn of_kind(kind: &str) -> Option<Engine> {
        match kind {
            "postgres" => Some(Engine::Postgres),
            "mysql" => Some(Engine::Mysql),
            _ => None,
        }
    }

    /// For people: `PostgreSQL`, `MySQL/MariaDB`.
    pub fn label(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Mysql => "MySQL/MariaDB",
        }
    }

    pub async fn create(self, server: &DbUrl, name: &str) -> Result<(), SourceError> {
        match self {
            Engine::Postgres => postgres::create_database(server, name).await,
            Engine::Mysql => mysql::create_database(server, name).await,
        }
    }

    /// Drops `name`; one that is not there is fine.
    pub async fn drop(self, server: &DbUrl, name: &str) -> Result<(), SourceError> {
        match self {
            Engine::Postgres => postgres::drop_database(server, name).await,
            Engine::Mysql => mysql::drop_database(server, name).await,
        }
    }

    pub async fn exists(self, server: &DbUrl, name: &str) -> Result<bool, SourceError> {
        match self {
            Engine::Postgres => postgres::database_exists(server, name).await,
            Engine::Mysql => mysql::database_exists(server, name).await,
        }
    }

    /// The database `url` names holds no table, view or function of its own.
    pub async fn is_empty(self, url: &DbUrl) -> Result<bool, SourceError> {
        match self {
            Engine::Postgres => postgres::database_is_empty(url).await,
            Engine::Mysql => mysql::database_is_empty(url).await,
        }
    }

    /// The server's databases whose names start with `prefix` (scratch targets to sweep).
    pub async fn list_with_prefix(
        self,
        server: &DbUrl,
        prefix: &str,
    ) -> Result<Vec<String>, SourceError> {
        match self {
            Engine::Postgres => postgres::databases_with_prefix(server, prefix).await,
            Engine::Mysql => mysql::databases_with_prefix(server, prefix).await,
        }
    }

    /// The database's facts, taken as a backup takes them.
    pub async fn facts(self, url: &DbUrl) -> Result<SourceFacts, SourceError> {
        match self {
            Engine::Postgres => postgres::facts(url).await,
            Engine::Mysql => mysql::facts(url).await,
        }
    }

    /// Loads a snapshot's dump into the existing database `url`: all of it, or only
    /// `tables` (`schema.table` or `table`). `clean` replaces objects already there.
    pub async fn load(
        self,
        reader: &SnapshotReader,
        url: &DbUrl,
        tools: &Tools,
        jobs: u32,
        clean: bool,
        tables: &[String],
    ) -> Result<(), SourceError> {
        match (self, tables.is_empty()) {
            (Engine::Postgres, true) => postgres::load(reader, url, tools, jobs, clean).await,
            (Engine::Mysql, true) => mysql::load(reader, url, tools, jobs).await,
            (Engine::Postgres, false) => {
                let named: Vec<(String, String)> = tables
                    .iter()
                    .map(|t| match t.split_once('.') {
                        Some((schema, name)) => (schema.to_string(), name.to_string()),
                        None => ("public".to_string(), t.clone()),
                    })
                    .collect();
                postgres::load_tables(reader, url, tools, &named, clean).await
            }
            (Engine::Mysql, false) => {
                let named: Vec<String> = tables.iter().map(|t| unqualified(t)).collect();
                mysql::load_tables(reader, url, tools, &named).await
            }
        }
    }

    /// The engine's own integrity check of the database `url` (amcheck, CHECK TABLE).
    pub async fn native_check(self, url: &DbUrl) -> Result<crate::probe::Native, SourceError> {
        match self {
            Engine::Postgres => crate::probe::amcheck(url).await,
            Engine::Mysql => crate::probe::check_tables(url).await,
        }
    }
}

/// `db.table` → `table`: MariaDB's and SQLite's dumps name tables without their database.
pub(crate) fn unqualified(table: &str) -> String {
    table
        .split_once('.')
        .map_or(table, |(_, name)| name)
        .to_string()
}
