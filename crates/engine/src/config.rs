//! `backstop.toml`: raw as written ([`ConfigFile`]), then validated ([`Config`]). Relative
//! paths are resolved against the directory of the configuration file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backstop_sources::Tools;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{toml_problem, EngineError, Location, Problem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    policies: Option<PathBuf>,
    catalog: Option<String>,
    principal: Option<String>,
    #[serde(default)]
    repositories: BTreeMap<String, Spanned<RepositoryFile>>,
    api: Option<ApiFile>,
    #[serde(default)]
    tools: Tools,
    #[serde(default)]
    daemon: DaemonSettings,
    #[serde(default)]
    notify: crate::notify::NotifySettings,
}

/// `[daemon]`: how the scheduler runs jobs. Durations are humantime strings ("30s", "6h").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Jobs running at once, in all.
    #[serde(default = "default_max_jobs")]
    pub max_jobs: usize,
    /// Jobs running at once against one repository.
    #[serde(default = "default_max_jobs_per_repository")]
    pub max_jobs_per_repository: usize,
    #[serde(default = "default_job_timeout", with = "humantime_serde_compat")]
    pub job_timeout: std::time::Duration,
    #[serde(default = "default_jitter", with = "humantime_serde_compat")]
    pub jitter: std::time::Duration,
    #[serde(default = "default_shutdown_deadline", with = "humantime_serde_compat")]
    pub shutdown_deadline: std::time::Duration,
    /// The zone cron fields are read in (an IANA name such as "Europe/Berlin"); UTC when
    /// unset.
    #[serde(default)]
    pub timezone: Option<String>,
}

fn default_max_jobs() -> usize {
    2
}
fn default_max_jobs_per_repository() -> usize {
    1
}
fn default_job_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(6 * 3600)
}
fn default_jitter() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}
fn default_shutdown_deadline() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            max_jobs: default_max_jobs(),
            max_jobs_per_repository: default_max_jobs_per_repository(),
            job_timeout: default_job_timeout(),
            jitter: default_jitter(),
            shutdown_deadline: default_shutdown_deadline(),
            timezone: None,
        }
    }
}

impl DaemonSettings {
    /// The zone schedules are read in.
    pub fn zone(&self) -> Result<jiff::tz::TimeZone, String> {
        match &self.timezone {
            None => Ok(jiff::tz::TimeZone::UTC),
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|e| format!("[daemon] timezone = \"{name}\": {e}")),
        }
    }

    pub fn limits(&self) -> crate::scheduler::Limits {
        crate::scheduler::Limits {
            global: self.max_jobs.max(1),
            per_repository: self.max_jobs_per_repository.max(1),
            timeout: self.job_timeout,
            jitter: self.jitter,
            shutdown_deadline: self.shutdown_deadline,
        }
    }
}

/// Durations written as humantime strings.
/// A duration written for people (\"30s\", \"6h\", \"7d\"), parsed once when the file is read:
/// a value that does not parse is an error at its key, never a default later.
pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e} (e.g. \"30s\", \"6h\")")))
    }

    /// The same, for a key that may be left out.
    pub mod option {
        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<std::time::Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryFile {
    url: Spanned<String>,
    endpoint: Option<String>,
    region: Option<String>,
    #[serde(default)]
    path_style: bool,
    key_file: Option<PathBuf>,
    key_env: Option<String>,
    compression_level: Option<Spanned<i32>>,
    pack_size_mib: Option<Spanned<u64>>,
    /// How long one storage operation is retried before the job fails ("90s", "5m").
    #[serde(default, with = "humantime_serde_compat::option")]
    retry_budget: Option<std::time::Duration>,
    object_lock: Option<Spanned<ObjectLockFile>>,
}

/// `object_lock = { mode = "governance" | "compliance", days = N }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectLockFile {
    mode: backstop_repo::storage::LockMode,
    days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    pub listen: Option<String>,
    pub tokens_file: Option<PathBuf>,
    /// Require a token for /metrics too (by default it is open, like /healthz).
    #[serde(default)]
    pub metrics_token: bool,
    /// How long a web console session lasts ("8h" by default).
    #[serde(default, with = "humantime_serde_compat::option")]
    pub session_lifetime: Option<std::time::Duration>,
    /// The console's address as browsers reach it (`https://backups.example.com`), when a
    /// reverse proxy in front does not pass the `Host` the browser used: the console's forms
    /// are accepted from this origin only. Unset, a form's `Origin` must match `Host`.
    pub public_url: Option<String>,
}

impl ApiFile {
    /// `public_url` as an origin (`scheme://host[:port]`), or why it is not one.
    pub fn public_origin(&self) -> Result<Option<String>, String> {
        let Some(url) = &self.public_url else {
            return Ok(None);
        };
        let origin = url.trim_end_matches('/');
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']) => {
                Ok(Some(origin.to_string()))
            }
            _ => Err(format!(
                "[api] public_url = \"{url}\": give the console's origin, http(s)://host[:port], with no path"
            )),
        }
    }
}

/// Where the repository's key comes from. The key itself is never held in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    None,
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone)]
pub struct RepositorySettings {
    pub name: String,
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub key: KeySource,
    pub compression_level: Option<i32>,
    pub pack_size: Option<u64>,
    /// `retry_budget`: how long one storage operation is retried; the store's default
    /// ([`backstop_repo::storage::RetryPolicy::DEFAULT_BUDGET`]) when unset.
    pub retry_budget: Option<std::time::Duration>,
    /// S3 Object Lock on every object written (S3 repositories only).
    pub object_lock: Option<backstop_repo::storage::ObjectLock>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file read, or `None` for the embedded default.
    pub path: Option<PathBuf>,
    /// Relative paths in the configuration and in policies are relative to this.
    pub base_dir: PathBuf,
    pub data_dir: PathBuf,
    pub policies_dir: PathBuf,
    pub catalog: Option<String>,
    /// Who is at this command line (sign-offs are by a policy's recovery owner):
    /// `principal` in backstop.toml, overridden by `BACKSTOP_PRINCIPAL`.
    pub principal: Option<String>,
    pub repositories: BTreeMap<String, RepositorySettings>,
    pub api: Option<ApiFile>,
    /// Paths of dump and load tools (`[tools]`); others are found on PATH.
    pub tools: Tools,
    pub daemon: DaemonSettings,
    /// `[notify]`: where failures and objective breaches are reported.
    pub notify: crate::notify::NotifySettings,
}

pub const DEFAULT_CONFIG: &str = "backstop.toml";

/// `base` joined with `path`, without the `.` components that make printed paths read
/// `…/install/./policies/docs.toml`.
pub fn joined(base: &Path, path: impl AsRef<Path>) -> PathBuf {
    base.join(path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

impl Config {
    /// The embedded default: catalog and repository under `./backstop-data`, policies in
    /// `./policies`, relative to `base_dir`.
    pub fn embedded(base_dir: &Path) -> Self {
        let data_dir = base_dir.join("backstop-data");
        let mut repositories = BTreeMap::new();
        repositories.insert(
            "local".to_string(),
            RepositorySettings {
                name: "local".into(),
                url: "file://./backstop-data/repo".into(),
                endpoint: None,
                region: None,
                path_style: false,
                key: KeySource::None,
                compression_level: None,
                pack_size: None,
                retry_budget: None,
                object_lock: None,
            },
        );
        Self {
            path: None,
            base_dir: base_dir.to_path_buf(),
            data_dir,
            policies_dir: base_dir.join("policies"),
            catalog: None,
            principal: None,
            repositories,
            api: None,
            tools: Tools::default(),
            daemon: DaemonSettings::default(),
            notify: Default::default(),
        }
    }

    /// Loads `path`; when `path` is the default name and does not exist, the embedded default
    /// (relative to the current directory) is used instead.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, EngineError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                let cwd = std::env::current_dir().map_err(|e| EngineError::Read {
                    path: ".".into(),
                    source: e,
                })?;
                Ok(Self::embedded(&cwd))
            }
            Err(e) => Err(EngineError::Read {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, EngineError> {
        let file_name = path.display().to_string();
        let raw: ConfigFile = toml::from_str(text)
            .map_err(|e| EngineError::Invalid(vec![toml_problem(&file_name, text, &e)]))?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        let at = |offset: usize| Location::from_offset(&file_name, text, offset);
        let mut problems = Vec::new();
        let mut repositories = BTreeMap::new();
        for (name, spanned) in raw.repositories {
            let start = spanned.span().start;
            let repo = spanned.into_inner();
            let url_ok = backstop_repo::open::RepoUrl::parse(repo.url.get_ref(), &base_dir);
            if let Err(e) = &url_ok {
                problems.push(Problem {
                    location: at(repo.url.span().start),
                    message: e.to_string(),
                });
            }
            let key = match (repo.key_file, repo.key_env) {
                (Some(_), Some(_)) => {
                    problems.push(Problem {
                        location: at(start),
                        message: format!("repository `{name}`: set key_file or key_env, not both"),
                    });
                    KeySource::None
                }
                (Some(file), None) => KeySource::File(base_dir.join(file)),
                (None, Some(var)) => KeySource::Env(var),
                (None, None) => KeySource::None,
            };
            if let Some(level) = &repo.compression_level {
                if !(1..=22).contains(level.get_ref()) {
                    problems.push(Problem {
                        location: at(level.span().start),
                        message: "compression_level must be between 1 and 22".into(),
                    });
                }
            }
            if let Some(size) = &repo.pack_size_mib {
                if !(1..=1024).contains(size.get_ref()) {
                    problems.push(Problem {
                        location: at(size.span().start),
                        message: "pack_size_mib must be between 1 and 1024".into(),
                    });
                }
            }
            let object_lock = repo.object_lock.map(|lock| {
                let at_lock = lock.span().start;
                let lock = lock.into_inner();
                if !matches!(url_ok, Ok(backstop_repo::open::RepoUrl::S3 { .. })) {
                    problems.push(Problem {
                        location: at(at_lock),
                        message: format!("repository `{name}`: object_lock needs an s3:// repository (a bucket with versioning and Object Lock enabled)"),
                    });
                }
                if lock.days == 0 {
                    problems.push(Problem {
                        location: at(at_lock),
                        message: "object_lock days must be at least 1".into(),
                    });
                }
                backstop_repo::storage::ObjectLock {
                    mode: lock.mode,
                    retention: std::time::Duration::from_secs(u64::from(lock.days) * 86_400),
                }
            });
            repositories.insert(
                name.clone(),
                RepositorySettings {
                    name,
                    url: repo.url.into_inner(),
                    endpoint: repo.endpoint,
                    region: repo.region,
                    path_style: repo.path_style,
                    key,
                    compression_level: repo.compression_level.map(Spanned::into_inner),
                    pack_size: repo.pack_size_mib.map(|s| s.into_inner() * 1024 * 1024),
                    retry_budget: repo.retry_budget,
                    object_lock,
                },
            );
        }
        if let Some(Err(message)) = raw.api.as_ref().map(ApiFile::public_origin) {
            problems.push(Problem {
                location: at(text.find("public_url").unwrap_or(0)),
                message,
            });
        }
        if let Err(message) = raw.daemon.zone() {
            problems.push(Problem {
                location: at(text.find("timezone").unwrap_or(0)),
                message,
            });
        }
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        Ok(Self {
            path: Some(path.to_path_buf()),
            data_dir: joined(
                &base_dir,
                raw.data_dir.unwrap_or_else(|| "backstop-data".into()),
            ),
            policies_dir: joined(&base_dir, raw.policies.unwrap_or_else(|| "policies".into())),
            tools: resolve_tools(raw.tools, &base_dir),
            base_dir,
            catalog: raw.catalog,
            principal: raw.principal,
            repositories,
            api: raw.api,
            daemon: raw.daemon,
            notify: raw.notify,
        })
    }

    /// The principal acting at this command line, if one is configured.
    pub fn principal(&self) -> Option<String> {
        std::env::var("BACKSTOP_PRINCIPAL")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .or_else(|| self.principal.clone())
    }

    pub fn repository(&self, name: &str) -> Result<&RepositorySettings, EngineError> {
        self.repositories
            .get(name)
            .ok_or_else(|| EngineError::UnknownRepository(name.to_string()))
    }
}

/// Relative tool paths resolve against the configuration's directory.
fn resolve_tools(tools: Tools, base: &Path) -> Tools {
    let at = |p: Option<PathBuf>| p.map(|p| base.join(p));
    Tools {
        pg_dump: at(tools.pg_dump),
        pg_dumpall: at(tools.pg_dumpall),
        pg_restore: at(tools.pg_restore),
        mariadb_dump: at(tools.mariadb_dump),
        mariadb: at(tools.mariadb),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_timezone_is_an_error_naming_it() {
        let err = super::Config::parse(
            std::path::Path::new("b.toml"),
            "[daemon]\ntimezone = \"Mars/Olympus\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("Mars/Olympus") && err.starts_with("b.toml:2:1"),
            "{err}"
        );
        let ok = super::Config::parse(
            std::path::Path::new("b.toml"),
            "[daemon]\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        assert_eq!(ok.daemon.zone().unwrap().iana_name(), Some("Europe/Berlin"));
    }

    use super::*;

    #[test]
    fn parses_the_product_example() {
        let text = r#"
data_dir = "./backstop-data"
policies = "./policies"

[repositories.local]
url = "file://./backstop-data/repo"

[repositories.offsite]
url = "s3://backups/backstop"
endpoint = "https://s3.example.com"
region = "us-east-1"
path_style = true

[api]
listen = "127.0.0.1:8470"
tokens_file = "./access.toml"
"#;
        let c = Config::parse(Path::new("/etc/backstop/backstop.toml"), text).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/backstop/./backstop-data"));
        assert!(c.repositories["offsite"].path_style);
        assert_eq!(c.repositories["local"].key, KeySource::None);
        assert_eq!(c.repositories["offsite"].retry_budget, None);
    }

    #[test]
    fn the_consoles_public_url_is_an_origin() {
        let parse = |api: &str| {
            Config::parse(
                Path::new("/etc/backstop/backstop.toml"),
                &format!("[repositories.local]\nurl = \"file://./repo\"\n\n[api]\n{api}\n"),
            )
        };
        let c = parse("public_url = \"https://backups.example.com/\"").unwrap();
        assert_eq!(
            c.api.unwrap().public_origin().unwrap().as_deref(),
            Some("https://backups.example.com")
        );
        for bad in ["backups.example.com", "https://backups.example.com/console"] {
            let e = parse(&format!("public_url = \"{bad}\""))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("public_url") && e.contains("no path"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn issue_14_a_repository_takes_a_retry_budget() {
        let text =
            "[repositories.offsite]\nurl = \"s3://backups/backstop\"\nretry_budget = \"2m\"\n";
        let c = Config::parse(Path::new("b.toml"), text).unwrap();
        assert_eq!(
            c.repositories["offsite"].retry_budget,
            Some(std::time::Duration::from_secs(120))
        );
        let text =
            "[repositories.offsite]\nurl = \"s3://backups/backstop\"\nretry_budget = \"soon\"\n";
        let err = Config::parse(Path::new("b.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("b.toml:3:16: "), "{err}");
        assert!(err.contains("`soon`"), "{err}");
    }

    /// Issue 16: `object_lock` on an S3 repository; refused elsewhere, or for no days.
    #[test]
    fn an_s3_repository_takes_an_object_lock() {
        let text = "[repositories.offsite]\nurl = \"s3://backups/backstop\"\nobject_lock = { mode = \"compliance\", days = 30 }\n";
        let c = Config::parse(Path::new("b.toml"), text).unwrap();
        assert_eq!(
            c.repositories["offsite"].object_lock,
            Some(backstop_repo::storage::ObjectLock {
                mode: backstop_repo::storage::LockMode::Compliance,
                retention: std::time::Duration::from_secs(30 * 86_400),
            })
        );
        let text = "[repositories.local]\nurl = \"file://./repo\"\nobject_lock = { mode = \"governance\", days = 0 }\n";
        let err = Config::parse(Path::new("b.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("object_lock needs an s3:// repository"),
            "{err}"
        );
        assert!(err.contains("days must be at least 1"), "{err}");
        let text = "[repositories.offsite]\nurl = \"s3://b/p\"\nobject_lock = { mode = \"forever\", days = 1 }\n";
        let err = Config::parse(Path::new("b.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("forever"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let text = "data_dir = \"x\"\n[repositories.a]\nurl = \"s3://ab\"\n";
        let err = Config::parse(Path::new("b.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("b.toml:3:7: "), "{err}");
        let text = "data_dir = \"x\"\nbogus = 1\n";
        let err = Config::parse(Path::new("b.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("b.toml:2:1: "), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }
}
