//! Database URLs: parsed once, compared by server and database, and shown only with the
//! password removed. A URL comes from an environment variable or a file named in the policy;
//! errors name that variable or file, never the value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity::{normalise_host, Host};
use crate::SourceError;

/// Which database engine a URL speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    /// The engine a URL scheme names: `postgres`/`postgresql`, `mysql`/`mariadb`.
    pub fn of_scheme(scheme: &str) -> Option<Engine> {
        match scheme {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mysql" | "mariadb" => Some(Engine::Mysql),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
        }
    }
}

/// Where a database URL is read from: an environment variable or a file, never inline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UrlSource {
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
}

impl UrlSource {
    /// Reads and parses the URL. `base` resolves a relative `url_file`.
    pub fn resolve(&self, base: &Path) -> Result<DbUrl, SourceError> {
        let (text, origin) = match (&self.url_env, &self.url_file) {
            (Some(var), None) => {
                let value = std::env::var(var).map_err(|_| {
                    SourceError::Secret(format!("environment variable {var} is not set"))
                })?;
                (value, format!("environment variable {var}"))
            }
            (None, Some(file)) => {
                let path = base.join(file);
                let value = std::fs::read_to_string(&path).map_err(|e| {
                    SourceError::Secret(format!("url_file {}: {e}", path.display()))
                })?;
                (
                    value.trim().to_string(),
                    format!("url_file {}", path.display()),
                )
            }
            (Some(_), Some(_)) => {
                return Err(SourceError::Secret(
                    "set url_env or url_file, not both".into(),
                ))
            }
            (None, None) => {
                return Err(SourceError::Secret(
                    "no database URL: set url_env (an environment variable) or url_file".into(),
                ))
            }
        };
        DbUrl::parse(&text).map_err(|message| SourceError::Secret(format!("{origin}: {message}")))
    }
}

/// A parsed `postgres://` or `mysql://` (`mariadb://`) URL. `Debug` and `Display` show it
/// without the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    url: url::Url,
    engine: Engine,
}

impl DbUrl {
    /// Parses a URL. The error never repeats the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| format!("not a database URL ({e})"))?;
        let engine = Engine::of_scheme(url.scheme()).ok_or_else(|| {
            format!(
                "unsupported scheme `{}` (expected postgres://, mysql:// or mariadb://)",
                url.scheme()
            )
        })?;
        Ok(Self { url, engine })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The host as written (percent-decoded, so a socket directory spelled
    /// `%2Fvar%2Frun%2Fpostgresql` is `/var/run/postgresql`); a Unix socket directory given
    /// as `?host=/run/...` counts too.
    pub fn host(&self) -> String {
        match self.url.host_str() {
            Some(h) if !h.is_empty() => percent_decode(h.trim_matches(['[', ']'])),
            _ => self
                .query("host")
                .unwrap_or_else(|| "localhost".to_string()),
        }
    }

    pub fn port(&self) -> u16 {
        self.url.port().unwrap_or(self.engine.default_port())
    }

    /// The server this URL reaches, for comparison: a `host` or `socket` query parameter
    /// (which the drivers prefer to the URL's host) or the URL's host, normalised
    /// ([`crate::identity`]).
    pub(crate) fn server_host(&self) -> Host {
        let given = ["host", "socket"]
            .into_iter()
            .find_map(|key| self.query(key).filter(|v| !v.is_empty()));
        normalise_host(&given.unwrap_or_else(|| self.host()))
    }

    /// The port this URL reaches: a `port` query parameter, the URL's port, or the engine's
    /// default.
    pub(crate) fn server_port(&self) -> u16 {
        self.query("port")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| self.port())
    }

    pub fn user(&self) -> Option<String> {
        let user = self.url.username();
        (!user.is_empty()).then(|| decode(user))
    }

    pub fn password(&self) -> Option<String> {
        self.url.password().map(decode)
    }

    /// The database named in the path (percent-decoded, without the slashes around it), or
    /// in a `dbname` query parameter, which libpq prefers; `None` when there is none.
    pub fn database(&self) -> Option<String> {
        if let Some(db) = self.query("dbname").filter(|d| !d.is_empty()) {
            return Some(db);
        }
        let db = self.url.path().trim_matches('/');
        (!db.is_empty()).then(|| percent_decode(db))
    }

    fn query(&self, key: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, database: &str) -> DbUrl {
        let mut url = self.url.clone();
        url.set_path(&format!("/{}", encode_path(database)));
        DbUrl {
            url,
            engine: self.engine,
        }
    }

    /// The full URL, password included: only for handing to a driver, never for printing.
    pub fn expose(&self) -> String {
        let mut url = self.url.clone();
        if self.engine == Engine::Mysql {
            // The driver knows the scheme `mysql` only.
            let text = url.as_str().replacen("mariadb://", "mysql://", 1);
            url = url::Url::parse(&text).expect("only the scheme changed");
        }
        url.to_string()
    }

    /// The URL without its password, for libpq tools (the password goes in PGPASSWORD).
    pub fn without_password(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_password(None);
        url.to_string()
    }

    /// True when both name the same server: the same engine family, port and host, where
    /// every spelling of this machine is one host ([`crate::identity`]).
    pub fn same_server(&self, other: &DbUrl) -> bool {
        self.engine == other.engine
            && self.server_port() == other.server_port()
            && self.server_host() == other.server_host()
    }

    /// True when both name the same database on the same server.
    pub fn same_database(&self, other: &DbUrl) -> bool {
        crate::identity::Identity::of_url(self)
            .overlap(&crate::identity::Identity::of_url(other))
            .is_some()
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// `%XX` escapes decoded (and nothing else: a `+` in a path or host is a plus sign).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How long connecting to a database server may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects to `url` with sqlx's driver `C`; the error names the server, never the password.
pub async fn connect<C: sqlx::Connection>(url: &DbUrl) -> Result<C, SourceError> {
    let failed = |source| SourceError::Connect {
        server: url.to_string(),
        source,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, C::connect(&url.expose())).await {
        Ok(connected) => connected.map_err(failed),
        Err(_) => Err(failed(sqlx::Error::PoolTimedOut)),
    }
}

/// Maps a query's error to one naming the server and what was being done.
pub(crate) fn query_error(
    url: &DbUrl,
    what: impl Into<String>,
) -> impl FnOnce(sqlx::Error) -> SourceError {
    let server = url.to_string();
    let what = what.into();
    move |source| SourceError::Query {
        server,
        what,
        source,
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        url.set_query(None);
        write!(f, "{url}")
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_hides_the_password() {
        let url =
            DbUrl::parse("postgres://app:s3cret@db.example:6432/orders?sslmode=require").unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db.example:6432/orders");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.password().as_deref(), Some("s3cret"));
        assert!(!url.without_password().contains("s3cret"));
        assert!(url.without_password().contains("sslmode=require"));
    }

    #[test]
    fn parse_errors_never_repeat_the_url() {
        let err = DbUrl::parse("redis://u:topsecret@h/0").unwrap_err();
        assert!(err.contains("redis"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
    }

    #[test]
    fn same_server_treats_every_local_spelling_as_one_host() {
        let a = DbUrl::parse("postgres://postgres@127.0.0.1/orders").unwrap();
        let b = DbUrl::parse("postgresql://other@localhost:5432/orders").unwrap();
        let c = DbUrl::parse("postgres://postgres@localhost:5433/orders").unwrap();
        let d = DbUrl::parse("postgres://postgres@localhost/postgres").unwrap();
        assert!(a.same_database(&b));
        assert!(!a.same_server(&c));
        assert!(a.same_server(&d) && !a.same_database(&d));
        let m = DbUrl::parse("mariadb://root@127.0.0.1/orders").unwrap();
        assert!(!a.same_server(&m));
        assert_eq!(m.port(), 3306);
        assert!(m.expose().starts_with("mysql://"));
    }

    #[test]
    fn with_database_keeps_server_and_credentials() {
        let a = DbUrl::parse("postgres://u:p%40ss@h:1/admin?sslmode=disable").unwrap();
        let b = a.with_database("backstop_drill_x");
        assert_eq!(b.database().as_deref(), Some("backstop_drill_x"));
        assert_eq!(b.password().as_deref(), Some("p@ss"));
        assert!(b.same_server(&a));
    }
}
