//! The source kinds, parsed once, and what follows from a kind: its database engine, which
//! scratch target its snapshots restore into, and what a restore target of it looks like.
//! Code that needs any of these asks a [`SourceKind`] instead of comparing kind names.

use serde::Deserialize;

use crate::dburl::Engine;
use crate::scratch::ScratchSpec;

/// A kind of source, as a policy's `[source] kind` and a snapshot's `source_kind` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Postgres,
    Mysql,
    Sqlite,
    Files,
    Config,
    /// Any program's export (`kind = "command"`, [`crate::command`]).
    Command,
}

/// A kind of scratch target (`[drill] target = { kind = … }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Postgres,
    Mysql,
    Sqlite,
    Directory,
}

impl SourceKind {
    pub const ALL: [SourceKind; 6] = [
        SourceKind::Postgres,
        SourceKind::Mysql,
        SourceKind::Sqlite,
        SourceKind::Files,
        SourceKind::Config,
        SourceKind::Command,
    ];

    pub fn parse(kind: &str) -> Option<SourceKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
            SourceKind::Sqlite => "sqlite",
            SourceKind::Files => "files",
            SourceKind::Config => "config",
            SourceKind::Command => "command",
        }
    }

    /// The database server engine behind it; none for files, config and SQLite.
    pub fn engine(self) -> Option<Engine> {
        match self {
            SourceKind::Postgres => Some(Engine::Postgres),
            SourceKind::Mysql => Some(Engine::Mysql),
            _ => None,
        }
    }

    /// A database (tables, rows): `--table` and `[drill] tables` select from it.
    pub fn is_database(self) -> bool {
        matches!(
            self,
            SourceKind::Postgres | SourceKind::Mysql | SourceKind::Sqlite
        )
    }

    /// A tree of files: `--include` and `[drill] paths` select from it.
    pub fn is_tree(self) -> bool {
        matches!(self, SourceKind::Files | SourceKind::Config)
    }

    /// Whether a scratch target of `target` kind can receive its snapshots.
    pub fn accepts(self, target: TargetKind) -> bool {
        // A command's restore_command loads a directory or a database server alike.
        self == SourceKind::Command || self.target_kind() == target
    }

    /// Whether its backups record facts (row counts, file counts) that a restore can be
    /// compared with: the drill's fidelity check.
    pub fn compares_facts(self) -> bool {
        self != SourceKind::Command
    }

    /// The scratch target its snapshots restore into by default.
    pub fn target_kind(self) -> TargetKind {
        match self {
            SourceKind::Postgres => TargetKind::Postgres,
            SourceKind::Mysql => TargetKind::Mysql,
            SourceKind::Sqlite => TargetKind::Sqlite,
            SourceKind::Files | SourceKind::Config | SourceKind::Command => TargetKind::Directory,
        }
    }

    /// The scratch target a drill uses when the policy names none: a temporary directory
    /// or file; none for a database server, which must be named.
    pub fn default_scratch(self) -> Option<ScratchSpec> {
        match self.target_kind() {
            TargetKind::Directory => Some(ScratchSpec::Directory { dir: None }),
            TargetKind::Sqlite => Some(ScratchSpec::Sqlite { dir: None }),
            TargetKind::Postgres | TargetKind::Mysql => None,
        }
    }

    /// Whether a break-glass restore target (a URL or a path) can receive its snapshots: a
    /// URL of its engine for a database server, a path otherwise.
    pub fn fits_target(self, target: &str) -> bool {
        let scheme = target.split_once("://").map(|(scheme, _)| scheme);
        match self.engine() {
            Some(engine) => scheme.and_then(Engine::of_scheme) == Some(engine),
            None => scheme.is_none(),
        }
    }

    /// What a restore target of it is, for messages.
    pub fn target_description(self) -> &'static str {
        match self {
            SourceKind::Postgres => "a postgres:// URL",
            SourceKind::Mysql => "a mysql:// URL",
            SourceKind::Sqlite => "a file path (or a directory for the raw files)",
            SourceKind::Files | SourceKind::Config | SourceKind::Command => "a directory path",
        }
    }
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Postgres => "postgres",
            TargetKind::Mysql => "mysql",
            TargetKind::Sqlite => "sqlite",
            TargetKind::Directory => "directory",
        }
    }

    pub fn of_spec(spec: &ScratchSpec) -> TargetKind {
        match spec {
            ScratchSpec::Postgres(_) => TargetKind::Postgres,
            ScratchSpec::Mysql(_) => TargetKind::Mysql,
            ScratchSpec::Sqlite { .. } => TargetKind::Sqlite,
            ScratchSpec::Directory { .. } => TargetKind::Directory,
        }
    }

    /// A database server, named by a URL.
    pub fn needs_server(self) -> bool {
        matches!(self, TargetKind::Postgres | TargetKind::Mysql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_and_has_one_scratch_target() {
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                kind.default_scratch().is_none(),
                kind.target_kind().needs_server()
            );
        }
        assert_eq!(SourceKind::parse("redis"), None);
        assert!(SourceKind::Postgres.fits_target("postgresql://h/db"));
        assert!(!SourceKind::Postgres.fits_target("mysql://h/db"));
        assert!(SourceKind::Mysql.fits_target("mariadb://h/db"));
        assert!(SourceKind::Files.fits_target("/srv/restore"));
        assert!(!SourceKind::Sqlite.fits_target("postgres://h/db"));
    }
}
