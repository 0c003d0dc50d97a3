//! Restore safety: what a restore target *is*, normalised once, so that "would this
//! replace the source?" has one answer for the break-glass restore, restore requests and
//! drills.
//!
//! A database target is its engine family (`postgres`/`postgresql` are one,
//! `mysql`/`mariadb` the other), its server and its database. Every spelling of this machine
//! (`localhost` in any case, the loopback and unspecified addresses, a Unix socket directory
//! given as the host, percent-encoded or as `?host=`/`?socket=`, and this machine's own
//! host name) is one local server; the port defaults to the engine's; the database name is
//! percent-decoded and loses a trailing slash; other query parameters and the credentials
//! play no part. A file target is its absolute path with symlinks resolved as far as the
//! path exists (the rest is taken lexically), and it overlaps a source that is the same
//! path, is inside it, or holds it.
//!
//! What this cannot see: two names of one remote server (a DNS alias, an address instead of
//! a name) are two servers, and a path reached through a bind mount is another path.

use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use backstop_repo::{Snapshot, SourceFacts};

use crate::dburl::{DbUrl, Engine};
use crate::{SourceError, SourceSpec};

/// A server's host, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// This machine, by any of its spellings.
    Local,
    /// Another machine, by its lower-cased name or address.
    Named(String),
}

/// What a restore target or a source is, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Database {
        engine: Engine,
        host: Host,
        port: u16,
        /// `None` when the URL names no database.
        database: Option<String>,
    },
    /// Absolute, with symlinks resolved as far as the path exists.
    Path(PathBuf),
}

/// How a target overlaps a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// The same database, or the same path.
    Same,
    /// The target is inside the source (a path under the source directory).
    Inside,
    /// The target holds the source (a parent directory of it).
    Contains,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overlap::Same => "is",
            Overlap::Inside => "is inside",
            Overlap::Contains => "holds",
        })
    }
}

impl Identity {
    /// A `--to` target or a recorded source: a database URL when it contains `://`,
    /// otherwise a path (relative to the current directory).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains("://") {
            Ok(Self::of_url(&DbUrl::parse(text)?))
        } else {
            Ok(Self::of_path(Path::new(text)))
        }
    }

    pub fn of_url(url: &DbUrl) -> Self {
        Identity::Database {
            engine: url.engine(),
            host: url.server_host(),
            port: url.server_port(),
            database: url.database(),
        }
    }

    pub fn of_path(path: &Path) -> Self {
        Identity::Path(canonical_path(path))
    }

    /// Whether this target overlaps `source`, and how.
    pub fn overlap(&self, source: &Identity) -> Option<Overlap> {
        match (self, source) {
            (
                Identity::Database {
                    engine,
                    host,
                    port,
                    database,
                },
                Identity::Database {
                    engine: e,
                    host: h,
                    port: p,
                    database: d,
                },
            ) => (engine == e && host == h && port == p && database == d).then_some(Overlap::Same),
            (Identity::Path(target), Identity::Path(source)) => {
                if target == source {
                    Some(Overlap::Same)
                } else if target.starts_with(source) {
                    Some(Overlap::Inside)
                } else if source.starts_with(target) {
                    Some(Overlap::Contains)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Database {
                engine,
                host,
                port,
                database,
            } => {
                let engine = engine.label();
                let host = match host {
                    Host::Local => "this machine",
                    Host::Named(name) => name,
                };
                match database {
                    Some(db) => write!(f, "database `{db}` on the {engine} server {host}:{port}"),
                    None => write!(f, "the {engine} server {host}:{port}"),
                }
            }
            Identity::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A source a restore must not replace unless asked to: what it is, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub identity: Identity,
    /// For messages: "snapshot 1a2b3c4d of policy `orders` (backed up on db1)" or
    /// "policy `orders`".
    pub whose: String,
}

impl Protected {
    /// The sources a snapshot records: each root's `source` (a path, or a database URL
    /// recorded without its password). `whose` names the snapshot in messages.
    pub fn of_snapshot(snapshot: &Snapshot, whose: &str) -> Vec<Protected> {
        let mut out: Vec<Protected> = Vec::new();
        for root in &snapshot.roots {
            let identity = if root.source.contains("://") {
                match DbUrl::parse(&root.source) {
                    Ok(url) => with_recorded_server(Identity::of_url(&url), &snapshot.facts),
                    Err(_) => continue,
                }
            } else if Path::new(&root.source).is_absolute() {
                Identity::of_path(Path::new(&root.source))
            } else {
                continue;
            };
            if !out.iter().any(|p| p.identity == identity) {
                out.push(Protected {
                    identity,
                    whose: whose.to_string(),
                });
            }
        }
        out
    }

    /// A configured policy's source, resolved now: its paths against `base`, its database
    /// URL from the environment variable or file the policy names.
    pub fn of_policy(
        policy: &str,
        spec: &SourceSpec,
        base: &Path,
    ) -> Result<Vec<Protected>, SourceError> {
        Ok(spec
            .identities(base)?
            .into_iter()
            .map(|identity| Protected {
                identity,
                whose: format!("policy `{policy}`"),
            })
            .collect())
    }
}

/// A restore target that would replace (or write into) a protected source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceClash {
    /// The target as it may be printed (a URL without its password).
    pub target: String,
    pub overlap: Overlap,
    pub source: Identity,
    pub whose: String,
}

impl SourceClash {
    /// What restoring there would do to the source.
    pub fn consequence(&self) -> &'static str {
        match self.overlap {
            Overlap::Same | Overlap::Contains => "replace it",
            Overlap::Inside => "write into it",
        }
    }
}

impl fmt::Display for SourceClash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}, the source of {}",
            self.target, self.overlap, self.source, self.whose
        )
    }
}

/// The first of `protected` that `target` is, is inside, or holds: the one comparison
/// behind restore safety, for break-glass restores, restore requests and drills alike.
pub fn clash(target: &str, protected: &[Protected]) -> Result<Option<SourceClash>, String> {
    let identity = Identity::parse(target)?;
    let shown = match DbUrl::parse(target) {
        Ok(url) if target.contains("://") => url.to_string(),
        _ => target.to_string(),
    };
    Ok(clash_with(&shown, &identity, protected))
}

/// [`clash`] for a target already normalised; `shown` is how messages name it.
pub fn clash_with(shown: &str, target: &Identity, protected: &[Protected]) -> Option<SourceClash> {
    protected.iter().find_map(|p| {
        target.overlap(&p.identity).map(|overlap| SourceClash {
            target: shown.to_string(),
            overlap,
            source: p.identity.clone(),
            whose: p.whose.clone(),
        })
    })
}

/// The server a database URL reaches, as recorded in a snapshot's `facts.extra["server"]`:
/// `localhost:PORT` for this machine, else the lower-cased host and the port.
pub fn server_fact(url: &DbUrl) -> String {
    let host = match url.server_host() {
        Host::Local => "localhost".to_string(),
        Host::Named(name) if name.contains(':') => format!("[{name}]"),
        Host::Named(name) => name,
    };
    format!("{host}:{}", url.server_port())
}

/// A recorded database source with the server and database the backup recorded in its
/// facts (`server`, `database`; snapshots before these were recorded have only the URL in
/// `roots`, which lacks what its query said).
fn with_recorded_server(identity: Identity, facts: &SourceFacts) -> Identity {
    let Identity::Database { engine, .. } = identity else {
        return identity;
    };
    let recorded = facts
        .extra
        .get("server")
        .and_then(|s| s.rsplit_once(':'))
        .and_then(|(host, port)| Some((normalise_host(host), port.parse::<u16>().ok()?)));
    match (recorded, facts.extra.get("database")) {
        (Some((host, port)), Some(database)) => Identity::Database {
            engine,
            host,
            port,
            database: (!database.is_empty()).then(|| database.clone()),
        },
        _ => identity,
    }
}

/// A host as written in a URL (percent-decoded), normalised.
pub(crate) fn normalise_host(host: &str) -> Host {
    let host = host.trim_matches(['[', ']']).trim_end_matches('.');
    let lower = host.to_ascii_lowercase();
    if lower.is_empty() || lower.starts_with('/') || lower == "localhost" {
        return Host::Local;
    }
    if lower.ends_with(".localhost") {
        return Host::Local;
    }
    if let Ok(ip) = lower.parse::<IpAddr>() {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if ip.is_loopback() || ip.is_unspecified() {
            return Host::Local;
        }
        return Host::Named(ip.to_string());
    }
    if this_machine().is_some_and(|me| me == lower) {
        return Host::Local;
    }
    Host::Named(lower)
}

/// This machine's host name, lower-cased.
fn this_machine() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// `path` made absolute, with symlinks resolved for the longest part of it that exists; the
/// rest (what a restore would create) is appended with `.` and `..` taken lexically.
fn canonical_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let components: Vec<Component> = absolute.components().collect();
    for existing in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..existing].iter().collect();
        let Ok(mut out) = std::fs::canonicalize(&prefix) else {
            continue;
        };
        for c in &components[existing..] {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        return out;
    }
    absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Identity {
        Identity::parse(text).unwrap()
    }

    fn same(a: &str, b: &str) -> bool {
        id(a).overlap(&id(b)) == Some(Overlap::Same)
    }

    #[test]
    fn every_spelling_of_a_local_postgres_database_is_one_target() {
        let source = "postgres://app:secret@localhost:5432/orders";
        for target in [
            "postgres://app@localhost/orders",
            "postgres://postgres@LOCALHOST:5432/orders",
            "postgresql://other@127.0.0.1/orders",
            "postgres://u@127.0.0.2/orders",
            "postgres://u@[::1]:5432/orders",
            "postgres://u@0.0.0.0/orders",
            "postgres://u@localhost/orders?sslmode=disable",
            "postgres://u@localhost/orders/",
            "postgres://u@localhost/ord%65rs",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/orders",
            "postgres://u@%2fvar%2frun%2fpostgresql:5432/orders",
            "postgres:///orders?host=/var/run/postgresql",
            "postgres:///orders?host=%2Fvar%2Frun%2Fpostgresql",
            "postgres://u@localhost/orders?dbname=orders",
        ] {
            assert!(same(target, source), "{target}");
        }
    }

    #[test]
    fn every_spelling_of_a_local_mariadb_database_is_one_target() {
        let source = "mysql://root@127.0.0.1:3306/shop";
        for target in [
            "mariadb://root@localhost/shop",
            "mysql://app:pw@LocalHost/shop/",
            "MySQL://root@localhost:3306/shop",
            "mysql://root@localhost/shop?socket=/run/mysqld/mysqld.sock",
            "mysql://root@%2Frun%2Fmysqld/shop",
            "mariadb://root@[::ffff:127.0.0.1]/shop",
        ] {
            assert!(same(target, source), "{target}");
        }
    }

    #[test]
    fn another_database_port_engine_or_server_is_not_the_source() {
        let source = "postgres://app@localhost/orders";
        for target in [
            "postgres://app@localhost/orders_copy",
            "postgres://app@localhost/Orders",
            "postgres://app@localhost:5433/orders",
            "postgres://app@db.example/orders",
            "mysql://app@localhost:5432/orders",
            "postgres://app@localhost/",
            "postgres://app@localhost/orders?port=6432",
            "/srv/orders",
        ] {
            assert_eq!(id(target).overlap(&id(source)), None, "{target}");
        }
        assert!(same(
            "postgres://u@DB.Example.:5432/orders",
            "postgresql://v@db.example/orders"
        ));
        assert!(!same(
            "mysql://u@db.example/orders",
            "mysql://u@db2.example/orders"
        ));
    }

    #[test]
    fn this_machines_host_name_is_local() {
        if let Some(me) = this_machine() {
            assert!(same(
                &format!("postgres://u@{}/orders", me.to_uppercase()),
                "postgres://u@localhost/orders"
            ));
        }
    }

    #[test]
    fn display_names_the_database_and_the_server_without_credentials() {
        let shown = id("postgres://u:secret@LOCALHOST/orders/").to_string();
        assert_eq!(
            shown,
            "database `orders` on the PostgreSQL server this machine:5432"
        );
        let shown = id("mariadb://u:secret@Db.Example:3307/shop").to_string();
        assert_eq!(
            shown,
            "database `shop` on the MySQL/MariaDB server db.example:3307"
        );
    }

    #[test]
    fn paths_overlap_when_same_nested_or_parent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let source = root.join("srv/app");
        std::fs::create_dir_all(source.join("static")).unwrap();
        let source_id = Identity::of_path(&source);
        let overlap = |p: &Path| Identity::of_path(p).overlap(&source_id);
        assert_eq!(overlap(&source), Some(Overlap::Same));
        assert_eq!(overlap(&root.join("srv/app/")), Some(Overlap::Same));
        assert_eq!(overlap(&root.join("srv/./app")), Some(Overlap::Same));
        assert_eq!(
            overlap(&root.join("srv/app/static/../")),
            Some(Overlap::Same)
        );
        assert_eq!(overlap(&source.join("static")), Some(Overlap::Inside));
        assert_eq!(overlap(&source.join("new/deeper")), Some(Overlap::Inside));
        assert_eq!(overlap(&root.join("srv")), Some(Overlap::Contains));
        assert_eq!(overlap(&root), Some(Overlap::Contains));
        assert_eq!(overlap(&root.join("srv/app2")), None);
        assert_eq!(overlap(&root.join("restore/app")), None);
        assert_eq!(
            overlap(&root.join("missing/../srv/app")),
            Some(Overlap::Same)
        );
    }

    #[test]
    fn symlinks_are_resolved_on_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let source = root.join("data/app");
        std::fs::create_dir_all(&source).unwrap();
        std::os::unix::fs::symlink(root.join("data"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(&source, root.join("app-link")).unwrap();
        let source_id = Identity::of_path(&source);
        let overlap = |p: PathBuf| Identity::of_path(&p).overlap(&source_id);
        assert_eq!(overlap(root.join("link/app")), Some(Overlap::Same));
        assert_eq!(overlap(root.join("app-link")), Some(Overlap::Same));
        assert_eq!(overlap(root.join("link")), Some(Overlap::Contains));
        assert_eq!(overlap(root.join("app-link/new")), Some(Overlap::Inside));
        // A source recorded through a symlink is the same source.
        assert_eq!(
            Identity::of_path(&source).overlap(&Identity::of_path(&root.join("link/app"))),
            Some(Overlap::Same)
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_current_directory() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(
            id("some/where").overlap(&Identity::of_path(&here)),
            Some(Overlap::Inside)
        );
    }

    #[test]
    fn a_snapshot_records_the_server_its_url_query_named() {
        let url = DbUrl::parse("postgres:///orders?host=/var/run/postgresql&port=5433").unwrap();
        assert_eq!(server_fact(&url), "localhost:5433");
        let url = DbUrl::parse("mariadb://app@DB.example/shop").unwrap();
        assert_eq!(server_fact(&url), "db.example:3306");
        let mut facts = SourceFacts::default();
        // The URL as `roots` records it: without its query.
        let recorded = id("postgres:///orders");
        assert_eq!(
            with_recorded_server(recorded.clone(), &facts),
            recorded,
            "an older snapshot: the URL alone"
        );
        facts.extra.insert("server".into(), "localhost:5433".into());
        facts.extra.insert("database".into(), "orders".into());
        let source = with_recorded_server(recorded, &facts);
        assert_eq!(
            id("postgres://u@localhost:5433/orders").overlap(&source),
            Some(Overlap::Same)
        );
        assert_eq!(id("postgres://u@localhost/orders").overlap(&source), None);
    }

    #[test]
    fn a_database_and_a_path_never_overlap() {
        assert_eq!(
            id("/var/lib/postgresql").overlap(&id("postgres://u@localhost/x")),
            None
        );
    }
}
