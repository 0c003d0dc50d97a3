//! Throwaway databases on the local PostgreSQL and MariaDB servers, named uniquely and
//! dropped when the guard drops (on success, failure and panic alike), plus content
//! checksums for comparing a restore with its source. Driven through the servers' own
//! command-line clients, so that a drop works from `Drop`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
pub const MY_SERVER: &str = "mysql://root@127.0.0.1:3306";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test run) uses.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_with_input(cmd: &mut Command, input: &Path, what: &str) -> String {
    let file = std::fs::File::open(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let out = cmd
        .stdin(file)
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn psql(db: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        db,
    ]);
    cmd
}

fn mariadb(db: Option<&str>) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        "root",
        "-N",
        "-B",
    ]);
    if let Some(db) = db {
        cmd.arg(db);
    }
    cmd
}

/// A database on the local PostgreSQL server, dropped on drop.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub fn create(prefix: &str) -> Self {
        let name = unique_name(prefix);
        run(
            psql("postgres")
                .arg("-c")
                .arg(format!("CREATE DATABASE \"{name}\"")),
            "create database",
        );
        Self { name }
    }

    /// A guard for a database someone else creates (a break-glass restore's target).
    pub fn adopt(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("{PG_SERVER}/{}", self.name)
    }

    pub fn seed(&self, file: &Path) {
        run(psql(&self.name).arg("-f").arg(file), "seeding");
    }

    /// Runs SQL and returns psql's unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        run(psql(&self.name).arg("-c").arg(sql), sql)
            .trim()
            .to_string()
    }

    /// `schema.table` → MD5 of every row's text, in order.
    pub fn checksums(&self) -> BTreeMap<String, String> {
        pg_checksums(&self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        pg_drop(&self.name);
    }
}

pub fn pg_drop(name: &str) {
    let _ = psql("postgres")
        .arg("-c")
        .arg(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .stdin(Stdio::null())
        .output();
}

pub fn pg_databases(prefix: &str) -> Vec<String> {
    run(
        psql("postgres").arg("-c").arg(format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}')"
        )),
        "listing databases",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

pub fn pg_checksums(db: &str) -> BTreeMap<String, String> {
    let tables = run(
        psql(db).arg("-c").arg(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        ),
        "listing tables",
    );
    tables
        .lines()
        .map(|t| {
            let sum = run(
                psql(db).arg("-c").arg(format!(
                    "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {t} t"
                )),
                "checksum",
            );
            (t.to_string(), sum.trim().to_string())
        })
        .collect()
}

/// A database on the local MariaDB server, dropped on drop.
pub struct MyDb {
    pub name: String,
}

impl MyDb {
    pub fn create(prefix: &str) -> Self {
        let name = unique_name(prefix);
        run(
            mariadb(None)
                .arg("-e")
                .arg(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4")),
            "create database",
        );
        Self { name }
    }

    pub fn adopt(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("{MY_SERVER}/{}", self.name)
    }

    pub fn seed(&self, file: &Path) {
        run_with_input(&mut mariadb(Some(&self.name)), file, "seeding");
    }

    pub fn sql(&self, sql: &str) -> String {
        run(mariadb(Some(&self.name)).arg("-e").arg(sql), sql)
            .trim()
            .to_string()
    }

    /// table → `CHECKSUM TABLE` (the row data's checksum).
    pub fn checksums(&self) -> BTreeMap<String, String> {
        my_checksums(&self.name)
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        my_drop(&self.name);
    }
}

pub fn my_drop(name: &str) {
    let _ = mariadb(None)
        .arg("-e")
        .arg(format!("DROP DATABASE IF EXISTS `{name}`"))
        .stdin(Stdio::null())
        .output();
}

pub fn my_databases(prefix: &str) -> Vec<String> {
    run(
        mariadb(None).arg("-e").arg("SHOW DATABASES"),
        "listing databases",
    )
    .lines()
    .filter(|d| d.starts_with(prefix))
    .map(str::to_string)
    .collect()
}

pub fn my_checksums(db: &str) -> BTreeMap<String, String> {
    let tables = run(
        mariadb(Some(db)).arg("-e").arg(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1",
        ),
        "listing tables",
    );
    tables
        .lines()
        .map(|t| {
            let out = run(
                mariadb(Some(db))
                    .arg("-e")
                    .arg(format!("CHECKSUM TABLE `{t}` EXTENDED")),
                "checksum",
            );
            let sum = out.split('\t').nth(1).unwrap_or("").trim().to_string();
            (t.to_string(), sum)
        })
        .collect()
}

/// table → SHA-256 of `sqlite3 -quote` output of its rows in rowid order.
pub fn sqlite_checksums(file: &Path) -> BTreeMap<String, String> {
    let sqlite = |sql: &str| {
        run(
            Command::new("sqlite3").arg("-quote").arg(file).arg(sql),
            sql,
        )
    };
    let tables = sqlite(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
    );
    tables
        .lines()
        .map(|t| {
            let t = t.trim_matches('\'');
            let rows = sqlite(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"));
            (t.to_string(), content_digest(rows.as_bytes()))
        })
        .collect()
}

fn content_digest(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

pub fn sqlite_seed(file: &Path, seed: &Path) {
    run_with_input(Command::new("sqlite3").arg(file), seed, "seeding sqlite");
}
