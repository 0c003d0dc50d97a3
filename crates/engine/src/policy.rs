//! Policies: one TOML file per protected asset, under the policies directory.
//!
//! [`PolicyFile`] is the file as written (unknown keys refused); [`Policy`] is the
//! validated, immutable form. Loading a directory reports every problem in every file, each
//! with its file, line and column, not only the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backstop_repo::prune::Retention;
use backstop_sources::scratch::ScratchSpec;
use backstop_sources::{SourceError, SourceSpec, UrlSource};
use serde::Deserialize;
use toml::Spanned;

use crate::config::Config;
use crate::error::{EngineError, Location, Problem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: Spanned<String>,
    repository: Spanned<String>,
    /// Secondary repositories every snapshot is copied to.
    #[serde(default)]
    copies: Vec<Spanned<String>>,
    source: SourceSpec,
    #[serde(default)]
    schedule: ScheduleFile,
    #[serde(default)]
    retention: Retention,
    #[serde(default)]
    objectives: ObjectivesFile,
    drill: Option<DrillPlan>,
    #[serde(default)]
    owners: Owners,
    notify: Option<crate::notify::NotifySettings>,
    #[serde(default)]
    anomalies: Option<Spanned<crate::anomalies::AnomalySettings>>,
    #[serde(default)]
    requirements: crate::compliance::Requirements,
    #[serde(default)]
    check: CheckFile,
}

/// `[check]`: what a scheduled check reads beyond the structure and indexes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    read_data_subset: Option<Spanned<String>>,
    egress_budget: Option<Spanned<String>>,
}

/// A policy's `[check]`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckPlan {
    /// The share of packs each scheduled check reads (rotating), in percent.
    pub read_data_subset: Option<f64>,
    /// At most this many bytes read per check.
    pub egress_budget: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    backup: Option<Spanned<String>>,
    drill: Option<Spanned<String>>,
    prune: Option<Spanned<String>>,
    check: Option<Spanned<String>>,
    copy: Option<Spanned<String>>,
    /// With `backup = "on-change"`: no two backups closer than this.
    min_interval: Option<Spanned<String>>,
    /// With `backup = "on-change"`: scan the paths this often instead of waiting for
    /// notifications.
    poll_interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectivesFile {
    rpo: Option<Spanned<String>>,
    rto: Option<Spanned<String>>,
}

/// The restore-test plan, as written; validated when the policy is loaded.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillPlan {
    pub target: Option<ScratchTarget>,
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Leave the scratch target in place after each drill.
    #[serde(default)]
    pub keep: bool,
    /// `newest` (the default) or `random` (any snapshot retention keeps).
    pub snapshot: Option<SnapshotPick>,
    /// A partial drill of a files or config policy: only these paths (globs, as `restore
    /// --include`) are restored and checked.
    #[serde(default)]
    pub paths: Vec<String>,
    /// A partial drill of a database policy: only these tables (`schema.table` or `table`,
    /// as `restore --table`) are restored and checked.
    #[serde(default)]
    pub tables: Vec<String>,
    /// The repository drills restore from: the policy's own (the default), one of its
    /// `copies`, or `rotate` (the primary and each copy in turn).
    pub from: Option<String>,
    /// How soon the recovery owner should sign a passed drill off ("7d"); later, a notice.
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    pub signoff_within: Option<Duration>,
    /// `checks`, validated into what each is (set when the policy is loaded).
    #[serde(skip)]
    pub validated: Vec<NamedCheck>,
}

/// A drill check as validated: exactly one kind, with what that kind takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// A query whose first value is compared with `expect` (a valid expectation).
    Sql { sql: String, expect: Option<String> },
    /// A program run with the scratch target in its environment.
    Command {
        argv: Vec<String>,
        timeout: Option<Duration>,
    },
    /// A file of the restored tree.
    File(FileCheck),
}

/// What a file check asks of one restored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub path: String,
    pub exists: bool,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// 64 hex digits of SHA-256, lower case.
    pub digest: Option<String>,
    /// `json`, `toml` or `yaml`.
    pub parses_as: Option<String>,
}

/// A check with the name it is reported under.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedCheck {
    pub name: String,
    pub check: Check,
}

impl DrillPlan {
    pub fn signoff_within(&self) -> Option<Duration> {
        self.signoff_within
    }
}

/// Which snapshot a scheduled drill restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotPick {
    Newest,
    /// Any snapshot retention keeps.
    Random,
}

/// What a drill restores into.
pub use backstop_sources::TargetKind as ScratchKind;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScratchTarget {
    pub kind: ScratchKind,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    pub path: Option<PathBuf>,
}

impl ScratchTarget {
    /// The scratch target, with its server URL read from the environment or file now.
    /// Relative paths resolve against `base`.
    pub fn resolve(&self, base: &Path) -> Result<ScratchSpec, SourceError> {
        let url = || {
            UrlSource {
                url_env: self.url_env.clone(),
                url_file: self.url_file.clone(),
            }
            .resolve(base)
        };
        let dir = self.path.as_ref().map(|p| base.join(p));
        match self.kind {
            ScratchKind::Postgres => Ok(ScratchSpec::Postgres(url()?)),
            ScratchKind::Mysql => Ok(ScratchSpec::Mysql(url()?)),
            ScratchKind::Sqlite => Ok(ScratchSpec::Sqlite { dir }),
            ScratchKind::Directory => Ok(ScratchSpec::Directory { dir }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub name: Option<String>,
    pub sql: Option<String>,
    pub expect: Option<String>,
    pub command: Option<Vec<String>>,
    pub file: Option<String>,
    pub exists: Option<bool>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub digest: Option<String>,
    pub parses_as: Option<String>,
    /// A command check's time limit ("30s").
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    pub timeout: Option<Duration>,
}

impl CheckSpec {
    /// The check this spec describes; call once [`CheckSpec::problems`] found nothing.
    pub(crate) fn validated(&self) -> Option<NamedCheck> {
        let check = match (&self.sql, &self.command, &self.file) {
            (Some(sql), None, None) => Check::Sql {
                sql: sql.clone(),
                expect: self.expect.clone(),
            },
            (None, Some(argv), None) => Check::Command {
                argv: argv.clone(),
                timeout: self.timeout,
            },
            (None, None, Some(path)) => Check::File(FileCheck {
                path: path.clone(),
                exists: self.exists.unwrap_or(true),
                min_size: self.min_size,
                max_size: self.max_size,
                digest: self
                    .digest
                    .as_ref()
                    .map(|d| d.trim_start_matches("sha256:").to_ascii_lowercase()),
                parses_as: self.parses_as.clone(),
            }),
            _ => return None,
        };
        Some(NamedCheck {
            name: crate::drill::checks::check_name(self),
            check,
        })
    }

    /// What is wrong with this check, for a database source or a file tree.
    fn problems(&self, is_database: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let kinds = [
            self.sql.is_some(),
            self.command.is_some(),
            self.file.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            problems.push("give exactly one of sql, command or file".into());
            return problems;
        }
        let file_keys = self.exists.is_some()
            || self.min_size.is_some()
            || self.max_size.is_some()
            || self.digest.is_some()
            || self.parses_as.is_some();
        if self.sql.is_some() && !is_database {
            problems.push("sql checks need a database source (postgres, mysql or sqlite)".into());
        }
        if self.file.is_some() && is_database {
            problems.push("file checks need a files or config source".into());
        }
        if file_keys && self.file.is_none() {
            problems.push(
                "exists, min_size, max_size, digest and parses_as belong to a file check".into(),
            );
        }
        if let Some(expect) = &self.expect {
            if self.sql.is_none() {
                problems.push("expect belongs to a sql check".into());
            } else if let Err(e) = crate::drill::expect::Expect::parse(expect) {
                problems.push(e);
            }
        }
        if let Some(format) = &self.parses_as {
            if !matches!(format.as_str(), "json" | "toml" | "yaml") {
                problems.push(format!("parses_as `{format}`: expected json, toml or yaml"));
            }
        }
        if let Some(digest) = &self.digest {
            let hex = digest.trim_start_matches("sha256:");
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                problems.push(format!(
                    "digest `{digest}`: expected 64 hex digits of SHA-256"
                ));
            }
        }
        if self.timeout.is_some() && self.command.is_none() {
            problems.push("timeout belongs to a command check".into());
        }
        if self.command.as_ref().is_some_and(|c| c.is_empty()) {
            problems.push("command must name a program".into());
        }
        problems
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owners {
    pub backup: Option<String>,
    pub recovery: Option<String>,
    #[serde(default)]
    pub approvers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    pub backup: Option<String>,
    pub drill: Option<String>,
    pub prune: Option<String>,
    pub check: Option<String>,
    /// Catching the copies up (copies are also made after each backup).
    pub copy: Option<String>,
    /// `backup = "on-change"`: backups follow changes to the source's paths (`backup` is
    /// then none).
    pub on_change: Option<crate::watch::OnChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objectives {
    pub rpo: Option<Duration>,
    pub rto: Option<Duration>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub file: PathBuf,
    pub repository: String,
    /// Secondary repositories every snapshot is copied to (`copies`).
    pub copies: Vec<String>,
    pub source: SourceSpec,
    pub schedule: Schedule,
    pub retention: Retention,
    pub objectives: Objectives,
    pub drill: Option<DrillPlan>,
    pub owners: Owners,
    /// This policy's `[notify]`, over the global one.
    pub notify: Option<crate::notify::NotifySettings>,
    /// How far a backup may move from the previous one before it is an anomaly.
    pub anomalies: crate::anomalies::AnomalySettings,
    /// `[requirements]`: what `backstop compliance` holds the policy to.
    pub requirements: crate::compliance::Requirements,
    /// `[check]`: how much data a scheduled check reads.
    pub check: CheckPlan,
}

impl Policy {
    /// The repositories holding this policy's snapshots: its own, then its copies.
    pub fn repositories(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.repository).chain(self.copies.iter())
    }

    /// Whether this policy's snapshots (and so its retention) live in `repository`.
    pub fn keeps_snapshots_in(&self, repository: &str) -> bool {
        self.repositories().any(|r| r == repository)
    }

    pub fn parse(file: &Path, text: &str, config: &Config) -> Result<Self, Vec<Problem>> {
        let file_name = file.display().to_string();
        // Every entry serde refuses is reported, then the rest is validated all the same.
        let (raw, mut problems) =
            crate::toml_problems::deserialize_all::<PolicyFile>(&file_name, text);
        let Some(raw) = raw else {
            return Err(problems);
        };
        let at = |offset: usize| Location::from_offset(&file_name, text, offset);
        let mut problem = |offset: usize, message: String| {
            problems.push(Problem {
                location: at(offset),
                message,
            })
        };

        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problem(
                raw.name.span().start,
                format!("name `{name}` must be letters, digits, `-` or `_`"),
            );
        }
        if !config.repositories.contains_key(raw.repository.get_ref()) {
            let known: Vec<&str> = config.repositories.keys().map(String::as_str).collect();
            problem(
                raw.repository.span().start,
                format!(
                    "repository `{}` is not in the configuration (known: {})",
                    raw.repository.get_ref(),
                    known.join(", ")
                ),
            );
        }
        let mut copies: Vec<String> = Vec::new();
        for copy in &raw.copies {
            let name = copy.get_ref();
            if name == raw.repository.get_ref() {
                problem(
                    copy.span().start,
                    format!("copies: `{name}` is this policy's own repository; a copy goes to another one"),
                );
            } else if !config.repositories.contains_key(name) {
                let known: Vec<&str> = config.repositories.keys().map(String::as_str).collect();
                problem(
                    copy.span().start,
                    format!(
                        "copies: repository `{name}` is not in the configuration (known: {})",
                        known.join(", ")
                    ),
                );
            } else if copies.contains(name) {
                problem(
                    copy.span().start,
                    format!("copies: `{name}` is named twice"),
                );
            } else {
                copies.push(name.clone());
            }
        }
        if let Some(from) = raw.drill.as_ref().and_then(|d| d.from.as_ref()) {
            let name = from.as_str();
            let fits = name == "rotate"
                || name == raw.repository.get_ref()
                || copies.iter().any(|c| c == name);
            if !fits {
                problem(
                    crate::toml_problems::offset_of(text, &["drill", "from"]).unwrap_or(0),
                    format!(
                        "[drill] from = \"{name}\": name this policy's repository (`{}`), one of its copies ({}), or \"rotate\"",
                        raw.repository.get_ref(),
                        if copies.is_empty() { "none".to_string() } else { copies.join(", ") }
                    ),
                );
            }
        }
        let anomalies = match raw.anomalies {
            Some(spanned) if spanned.get_ref().band.is_nan() || spanned.get_ref().band <= 0.0 => {
                problem(
                    spanned.span().start,
                    "[anomalies] band must be a fraction above 0 (0.5: more than half lost or gained)".into(),
                );
                crate::anomalies::AnomalySettings::default()
            }
            Some(spanned) => spanned.into_inner(),
            None => crate::anomalies::AnomalySettings::default(),
        };
        let mut check = CheckPlan::default();
        if let Some(text) = &raw.check.read_data_subset {
            match crate::jobs::maintenance::parse_percent(text.get_ref()) {
                Ok(p) => check.read_data_subset = Some(p),
                Err(e) => problem(text.span().start, format!("[check] read_data_subset {e}")),
            }
        }
        if let Some(text) = &raw.check.egress_budget {
            match crate::jobs::maintenance::parse_bytes(text.get_ref()) {
                Ok(b) => check.egress_budget = Some(b),
                Err(e) => problem(text.span().start, format!("[check] egress_budget {e}")),
            }
            if raw.check.read_data_subset.is_none() {
                problem(
                    text.span().start,
                    "[check] egress_budget caps the data a check reads, but read_data_subset asks for none".into(),
                );
            }
        }
        if let (Some(expr), true) = (&raw.schedule.copy, raw.copies.is_empty()) {
            problem(
                expr.span().start,
                "[schedule] copy catches up the policy's copies, but it names none (copies = [\"…\"])".into(),
            );
        }
        let mut schedule = Schedule::default();
        let on_change_asked = raw
            .schedule
            .backup
            .as_ref()
            .filter(|b| b.get_ref() == "on-change")
            .map(|b| b.span().start);
        let mut interval = |value: &Option<Spanned<String>>, key: &str| {
            value.as_ref().and_then(|v| {
                if on_change_asked.is_none() {
                    problem(
                        v.span().start,
                        format!("[schedule] {key} belongs to backup = \"on-change\""),
                    );
                    return None;
                }
                match humantime::parse_duration(v.get_ref()) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        problem(
                            v.span().start,
                            format!("[schedule] {key} `{}`: {e} (e.g. \"5m\")", v.get_ref()),
                        );
                        None
                    }
                }
            })
        };
        let min_interval = interval(&raw.schedule.min_interval, "min_interval");
        let poll_interval = interval(&raw.schedule.poll_interval, "poll_interval");
        let backup_cron = match on_change_asked {
            Some(at) => {
                match &raw.source {
                    SourceSpec::Files(spec) | SourceSpec::Config(spec) => {
                        schedule.on_change = Some(crate::watch::OnChange {
                            paths: spec.paths.iter().map(|p| config.base_dir.join(p)).collect(),
                            min_interval: min_interval
                                .unwrap_or(crate::watch::OnChange::DEFAULT_MIN_INTERVAL),
                            poll_interval,
                            debounce: crate::watch::OnChange::DEBOUNCE,
                        });
                    }
                    other => problem(
                        at,
                        format!(
                            "[schedule] backup = \"on-change\" watches files: a {} source needs a cron schedule",
                            other.kind()
                        ),
                    ),
                }
                None
            }
            None => raw.schedule.backup,
        };
        for (slot, value) in [
            (&mut schedule.backup, backup_cron),
            (&mut schedule.drill, raw.schedule.drill),
            (&mut schedule.prune, raw.schedule.prune),
            (&mut schedule.check, raw.schedule.check),
            (&mut schedule.copy, raw.schedule.copy),
        ] {
            if let Some(expr) = value {
                if let Err(e) = crate::schedule::CronSchedule::parse(expr.get_ref()) {
                    problem(expr.span().start, e);
                }
                *slot = Some(expr.into_inner());
            }
        }
        let mut duration = |value: Option<Spanned<String>>, what: &str| {
            value.and_then(|v| match humantime::parse_duration(v.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    problem(
                        v.span().start,
                        format!("{what} `{}`: {e} (e.g. \"4h\", \"30m\")", v.get_ref()),
                    );
                    None
                }
            })
        };
        let objectives = Objectives {
            rpo: duration(raw.objectives.rpo, "rpo"),
            rto: duration(raw.objectives.rto, "rto"),
        };
        // Each problem in [source] at its own key (or the table's header when the key is
        // missing).
        let at_key = |keys: &[&str]| {
            crate::toml_problems::offset_of(text, keys)
                .or_else(|| crate::toml_problems::offset_of(text, &keys[..1]))
                .unwrap_or(0)
        };
        for (keys, message) in raw.source.problems(&config.base_dir) {
            problem(at_key(&keys), message);
        }
        if let Some(target) = raw.drill.as_ref().and_then(|d| d.target.as_ref()) {
            let wants_url = target.kind.needs_server();
            let fits = raw.source.source_kind().accepts(target.kind);
            let target_at =
                crate::toml_problems::offset_of(text, &["drill", "target"]).unwrap_or(0);
            if !fits {
                problem(
                    target_at,
                    format!(
                        "[drill] target kind `{}` cannot receive a {} source (use {})",
                        target.kind.as_str(),
                        raw.source.kind(),
                        raw.source.source_kind().target_kind().as_str()
                    ),
                );
            } else if wants_url && target.url_env.is_none() == target.url_file.is_none() {
                problem(
                    target_at,
                    "[drill] target needs exactly one of url_env or url_file (the scratch server)"
                        .into(),
                );
            }
        }
        if let Some(drill) = raw.drill.as_ref().filter(|d| !d.paths.is_empty()) {
            let at = crate::toml_problems::offset_of(text, &["drill", "paths"]).unwrap_or(0);
            if !raw.source.source_kind().is_tree() {
                problem(
                    at,
                    "[drill] paths select files of a files or config source".into(),
                );
            } else if let Err(e) = crate::jobs::restore::PathSelection::new(&drill.paths, &[]) {
                problem(at, format!("[drill] paths: {e}"));
            }
        }
        if let Some(drill) = raw.drill.as_ref().filter(|d| !d.tables.is_empty()) {
            let at = crate::toml_problems::offset_of(text, &["drill", "tables"]).unwrap_or(0);
            if !raw.source.source_kind().is_database() {
                problem(
                    at,
                    "[drill] tables select tables of a database source (paths, for files)".into(),
                );
            } else if let Some(bad) = drill
                .tables
                .iter()
                .find(|t| t.trim().is_empty() || t.matches('.').count() > 1)
            {
                problem(
                    at,
                    format!("[drill] tables: `{bad}`: expected schema.table or table"),
                );
            }
        }
        if let Some(drill) = &raw.drill {
            let offset = text.find("[drill]").unwrap_or(0);
            let is_database = raw.source.source_kind().is_database();
            // Each [[drill.checks]] is located at its own header.
            let headers: Vec<usize> = text
                .match_indices("[[drill.checks]]")
                .map(|(i, _)| i)
                .collect();
            for (i, check) in drill.checks.iter().enumerate() {
                let at = headers.get(i).copied().unwrap_or(offset);
                let mut check_problem = |message: String| {
                    problem(at, format!("[[drill.checks]] number {}: {message}", i + 1))
                };
                for message in check.problems(is_database) {
                    check_problem(message);
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut drill = raw.drill;
        if let Some(plan) = drill.as_mut() {
            plan.validated = plan
                .checks
                .iter()
                .filter_map(CheckSpec::validated)
                .collect();
        }
        Ok(Policy {
            name: raw.name.into_inner(),
            file: file.to_path_buf(),
            repository: raw.repository.into_inner(),
            copies,
            source: raw.source,
            schedule,
            retention: raw.retention,
            objectives,
            drill,
            owners: raw.owners,
            notify: raw.notify,
            anomalies,
            requirements: raw.requirements,
            check,
        })
    }
}

/// What may go wrong at this policy's first backup though the policy is valid: a source
/// path that does not exist, a database URL whose variable is not set or whose file cannot
/// be read, a dump tool that is not installed, a scratch server's URL that cannot be read.
/// Read only: nothing is connected to or written.
pub fn preflight(policy: &Policy, config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let base = &config.base_dir;
    warnings.extend(policy.source.preflight(base, &config.tools));
    if let Some(target) = policy.drill.as_ref().and_then(|d| d.target.as_ref()) {
        if let Err(e) = target.resolve(base) {
            warnings.push(format!("[drill] target: {e}"));
        }
    }
    warnings
}

/// Every `*.toml` file in `dir`, validated. Two policies with one name are an error naming
/// both files.
pub fn load_dir(dir: &Path, config: &Config) -> Result<BTreeMap<String, Policy>, EngineError> {
    let read_err = |e: std::io::Error| {
        if config.path.is_none() && e.kind() == std::io::ErrorKind::NotFound {
            // Said plainly: the usual cause is running outside the installation.
            return EngineError::Refused(format!(
                "no configuration found: there is no {} here (nor --config or BACKSTOP_CONFIG), so the embedded default is used, and its policies directory {} does not exist; run where backstop.toml is, or pass --config",
                crate::config::DEFAULT_CONFIG,
                dir.display()
            ));
        }
        EngineError::Read {
            path: dir.display().to_string(),
            source: e,
        }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut problems = Vec::new();
    let mut policies: BTreeMap<String, Policy> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| EngineError::Read {
            path: file.display().to_string(),
            source: e,
        })?;
        match Policy::parse(&file, &text, config) {
            Ok(policy) => {
                if let Some(other) = policies.get(&policy.name) {
                    problems.push(Problem {
                        location: Location::from_offset(&file.display().to_string(), "", 0),
                        message: format!(
                            "policy name `{}` is also used by {}",
                            policy.name,
                            other.file.display()
                        ),
                    });
                } else {
                    policies.insert(policy.name.clone(), policy);
                }
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(policies)
    } else {
        Err(EngineError::Invalid(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::embedded(Path::new("/srv"))
    }

    const GOOD: &str = r#"
name = "orders-db"
repository = "local"

[source]
kind = "postgres"
url_env = "ORDERS_DB_URL"

[schedule]
backup = "0 15 */4 * * *"
drill = "0 0 3 * * Tue"

[retention]
daily = 7
weekly = 4
monthly = 12

[objectives]
rpo = "4h"
rto = "30m"

[drill]
target = { kind = "postgres", url_env = "SCRATCH_PG_URL" }

[[drill.checks]]
sql = "SELECT count(*) FROM orders"
expect = ">= 1000"

[[drill.checks]]
command = ["./fixtures/checks/orders-smoke.sh"]

[owners]
backup = "ops@example.com"
recovery = "dba@example.com"
approvers = ["it-manager@example.com"]
"#;

    #[test]
    fn the_product_example_validates() {
        let p = Policy::parse(Path::new("p.toml"), GOOD, &config()).unwrap();
        assert_eq!(p.objectives.rpo, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(p.retention.daily, Some(7));
        let plan = p.drill.unwrap();
        assert_eq!(plan.checks.len(), 2);
        // Each check validated into what it is.
        assert!(matches!(
            &plan.validated[0].check,
            Check::Sql { expect: Some(e), .. } if e == ">= 1000"
        ));
        assert!(matches!(
            &plan.validated[1].check,
            Check::Command { argv, timeout: None } if argv == &["./fixtures/checks/orders-smoke.sh"]
        ));
        assert_eq!(plan.validated[0].name, "sql: SELECT count(*) FROM orders");
    }

    /// Issue 16: `copies`, `[schedule] copy` and `[drill] from`, each problem at its key.
    #[test]
    fn copies_name_other_configured_repositories() {
        let mut config = config();
        let mut offsite = config.repositories["local"].clone();
        offsite.name = "offsite".into();
        config.repositories.insert("offsite".into(), offsite);
        let good = GOOD
            .replace(
                "repository = \"local\"\n",
                "repository = \"local\"\ncopies = [\"offsite\"]\n",
            )
            .replace("[drill]\n", "[drill]\nfrom = \"rotate\"\n")
            .replace("[schedule]\n", "[schedule]\ncopy = \"0 0 * * * *\"\n");
        let p = Policy::parse(Path::new("p.toml"), &good, &config).unwrap();
        assert_eq!(p.copies, ["offsite"]);
        assert_eq!(p.schedule.copy.as_deref(), Some("0 0 * * * *"));
        assert!(p.keeps_snapshots_in("offsite") && p.keeps_snapshots_in("local"));
        assert!(!p.keeps_snapshots_in("elsewhere"));

        let bad = GOOD
            .replace(
                "repository = \"local\"\n",
                "repository = \"local\"\ncopies = [\"local\", \"nowhere\", \"offsite\", \"offsite\"]\n",
            )
            .replace("[drill]\n", "[drill]\nfrom = \"vault\"\n");
        let problems = Policy::parse(Path::new("p.toml"), &bad, &config).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{text:?}");
        assert!(
            text[0].starts_with("p.toml:4:11: copies: `local` is this policy's own"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("p.toml:4:20: copies: repository `nowhere`"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("p.toml:4:42: copies: `offsite` is named twice"),
            "{text:?}"
        );
        assert!(
            text[3].starts_with("p.toml:24:1: [drill] from = \"vault\""),
            "{text:?}"
        );

        let zero_band = format!("{GOOD}\n[anomalies]\nband = 0\n");
        let problems = Policy::parse(Path::new("p.toml"), &zero_band, &config).unwrap_err();
        assert!(
            problems[0].to_string().contains("[anomalies] band"),
            "{problems:?}"
        );

        let orphan = GOOD.replace("[schedule]\n", "[schedule]\ncopy = \"0 0 * * * *\"\n");
        let problems = Policy::parse(Path::new("p.toml"), &orphan, &config).unwrap_err();
        assert!(
            problems[0].to_string().contains("[schedule] copy"),
            "{problems:?}"
        );
    }

    /// Issue 18, item 3: `backup = "on-change"` watches a files or config policy's paths;
    /// a database policy, or the intervals without it, are errors at their keys.
    #[test]
    fn on_change_backups_are_for_files_and_config() {
        let files = "name = \"site\"\nrepository = \"local\"\n[source]\nkind = \"config\"\npaths = [\"./etc\"]\n\
                     [schedule]\nbackup = \"on-change\"\nmin_interval = \"5m\"\n";
        let policy = Policy::parse(Path::new("p.toml"), files, &config()).unwrap();
        assert_eq!(policy.schedule.backup, None);
        let on = policy.schedule.on_change.unwrap();
        assert_eq!(on.paths, vec![Path::new("/srv/./etc").to_path_buf()]);
        assert_eq!(on.min_interval, Duration::from_secs(300));
        assert_eq!(on.poll_interval, None);

        let db = GOOD.replace("backup = \"0 15 */4 * * *\"", "backup = \"on-change\"");
        let problems = Policy::parse(Path::new("p.toml"), &db, &config()).unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .contains("a postgres source needs a cron schedule"),
            "{problems:?}"
        );
        let stray = GOOD.replace("[schedule]\n", "[schedule]\npoll_interval = \"30s\"\n");
        let problems = Policy::parse(Path::new("p.toml"), &stray, &config()).unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .contains("poll_interval belongs to backup = \"on-change\""),
            "{problems:?}"
        );
    }

    /// Issue 18, item 1: `[drill] tables` for database policies only.
    #[test]
    fn drill_tables_are_for_database_policies() {
        let text = GOOD.replace("[drill]\n", "[drill]\ntables = [\"public.orders\"]\n");
        let policy = Policy::parse(Path::new("p.toml"), &text, &config()).unwrap();
        assert_eq!(policy.drill.unwrap().tables, ["public.orders"]);
        let files = "name = \"site\"\nrepository = \"local\"\n[source]\nkind = \"files\"\npaths = [\"./www\"]\n[drill]\ntables = [\"orders\"]\n";
        let problems = Policy::parse(Path::new("p.toml"), files, &config()).unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .contains("[drill] tables select tables of a database source"),
            "{problems:?}"
        );
    }

    /// Issue 18, items 5 and 6: `[check]` and `[requirements]` are read, and a bad value is
    /// an error at its key.
    #[test]
    fn check_and_requirements_are_read_and_bad_values_located() {
        let config = config();
        let text = format!(
            "{GOOD}\n[check]\nread_data_subset = \"5%\"\negress_budget = \"2GiB\"\n\
             [requirements]\nfrequency = \"1h\"\noffsite = true\ncopies = 2\n"
        );
        let policy = Policy::parse(Path::new("p.toml"), &text, &config).unwrap();
        assert_eq!(policy.check.read_data_subset, Some(5.0));
        assert_eq!(policy.check.egress_budget, Some(2 << 30));
        assert_eq!(
            policy.requirements.frequency,
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(policy.requirements.copies, Some(2));

        let bad = format!("{GOOD}\n[check]\nread_data_subset = \"500%\"\n");
        let problems = Policy::parse(Path::new("p.toml"), &bad, &config).unwrap_err();
        let line = bad
            .lines()
            .position(|l| l.starts_with("read_data_subset"))
            .unwrap()
            + 1;
        assert!(
            problems[0]
                .to_string()
                .starts_with(&format!("p.toml:{line}:"))
                && problems[0].to_string().contains("500%"),
            "{problems:?}"
        );
        let bad = format!("{GOOD}\n[requirements]\nfrequency = \"often\"\n");
        let problems = Policy::parse(Path::new("p.toml"), &bad, &config).unwrap_err();
        assert!(problems[0].to_string().contains("often"), "{problems:?}");
    }

    #[test]
    fn every_problem_is_located() {
        let text = GOOD
            .replace("repository = \"local\"", "repository = \"nowhere\"")
            .replace("rpo = \"4h\"", "rpo = \"four hours\"")
            .replace("0 0 3 * * Tue", "0 3 * * Tue");
        let problems = Policy::parse(Path::new("p.toml"), &text, &config()).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("p.toml:3:14: repository `nowhere`"),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("p.toml:11:9: cron expression")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("p.toml:19:7: rpo")),
            "{text:?}"
        );
    }

    /// Issue 15: errors inside [source] pointed at its header or at 1:1; a bad duration was
    /// re-parsed later into a silent default; two paths of one basename passed the check and
    /// then failed every backup.
    #[test]
    fn problems_inside_source_and_drill_are_at_their_keys() {
        let located = |text: &str| -> Vec<String> {
            Policy::parse(Path::new("p.toml"), text, &config())
                .unwrap_err()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let jobs = located(
            "name = \"x\"\nrepository = \"local\"\n\n[source]\nkind = \"postgres\"\nurl_env = \"U\"\njobs = 4\n",
        );
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert!(jobs[0].starts_with("p.toml:7:1: [source] jobs"), "{jobs:?}");
        let typed = located(
            "name = \"x\"\nrepository = \"local\"\n\n[source]\nkind = \"postgres\"\nurl_env = \"U\"\njobs = \"four\"\n",
        );
        assert_eq!(typed.len(), 1, "{typed:?}");
        assert!(typed[0].starts_with("p.toml:7:1: jobs: "), "{typed:?}");
        let url = located("name = \"x\"\nrepository = \"local\"\n\n[source]\nkind = \"mysql\"\n");
        assert!(
            url[0].starts_with("p.toml:4:1: [source] needs exactly one"),
            "{url:?}"
        );
        let paths = located(
            "name = \"x\"\nrepository = \"local\"\n\n[source]\nkind = \"files\"\npaths = [\"a/data\", \"b/data\"]\n",
        );
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert!(
            paths[0]
                .starts_with("p.toml:6:1: [source] paths `a/data` and `b/data` both end in `data`"),
            "{paths:?}"
        );
        // Durations and kinds are parsed once, where they are written.
        let drill = located(
            "name = \"x\"\nrepository = \"local\"\n\n[source]\nkind = \"files\"\npaths = [\"a\"]\n\n[drill]\nsignoff_within = \"a week\"\nsnapshot = \"oldest\"\ntarget = { kind = \"tape\" }\n",
        );
        assert_eq!(drill.len(), 3, "{drill:?}");
        assert!(
            drill[0].starts_with("p.toml:9:18:") && drill[0].contains("a week"),
            "{drill:?}"
        );
        assert!(
            drill[1].starts_with("p.toml:10:12:") && drill[1].contains("oldest"),
            "{drill:?}"
        );
        assert!(
            drill[2].starts_with("p.toml:11:") && drill[2].contains("tape"),
            "{drill:?}"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_located() {
        let problems = Policy::parse(
            Path::new("p.toml"),
            "name = \"x\"\nrepository = \n",
            &config(),
        )
        .unwrap_err();
        assert!(
            problems[0].to_string().starts_with("p.toml:2:14:"),
            "{}",
            problems[0]
        );
        let text = GOOD.replace("[owners]", "[owners]\nbackups = \"typo\"");
        let problems = Policy::parse(Path::new("p.toml"), &text, &config()).unwrap_err();
        assert!(
            problems[0].to_string().contains("backups"),
            "{}",
            problems[0]
        );
        assert!(problems[0].location.line > 30, "{}", problems[0]);
    }

    #[test]
    fn database_sources_and_scratch_targets_are_checked() {
        let messages = |text: &str| -> String {
            Policy::parse(Path::new("p.toml"), text, &config())
                .unwrap_err()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let wrong_target = GOOD.replace(
            "target = { kind = \"postgres\"",
            "target = { kind = \"mysql\"",
        );
        assert!(
            messages(&wrong_target).contains("cannot receive a postgres source"),
            "{}",
            messages(&wrong_target)
        );
        let parallel_custom = GOOD.replace(
            "url_env = \"ORDERS_DB_URL\"",
            "url_env = \"ORDERS_DB_URL\"\njobs = 4",
        );
        assert!(messages(&parallel_custom).contains("format = \"directory\""));
        let no_url = GOOD.replace(
            "target = { kind = \"postgres\", url_env = \"SCRATCH_PG_URL\" }",
            "target = { kind = \"postgres\" }",
        );
        assert!(messages(&no_url).contains("the scratch server"));
        let directory = GOOD.replace(
            "url_env = \"ORDERS_DB_URL\"",
            "url_env = \"ORDERS_DB_URL\"\nformat = \"directory\"\njobs = 4",
        );
        Policy::parse(Path::new("p.toml"), &directory, &config()).unwrap();
    }

    #[test]
    fn drill_checks_are_validated_where_they_are_written() {
        let text = GOOD
            .replace("expect = \">= 1000\"", "expect = \"about 1000\"")
            .replace(
                "command = [\"./fixtures/checks/orders-smoke.sh\"]",
                "command = [\"./x.sh\"]\ntimeout = \"soon\"\n\n[[drill.checks]]\nfile = \"x.json\"\nparses_as = \"ini\"",
            )
            .replace("[drill]\n", "[drill]\nsignoff_within = \"a week\"\n");
        let problems = Policy::parse(Path::new("p.toml"), &text, &config()).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(has("signoff_within: `a week`"), "{text:?}");
        assert!(has("number 1: expect `about 1000`"), "{text:?}");
        assert!(has("timeout: `soon`"), "{text:?}");
        assert!(
            has("number 3: file checks need a files or config source"),
            "{text:?}"
        );
        assert!(has("number 3: parses_as `ini`"), "{text:?}");
        // Located where it is written.
        let second = text.iter().find(|t| t.contains("timeout: `soon`")).unwrap();
        assert!(second.starts_with("p.toml:32:11:"), "{second}");
        let third = text.iter().find(|t| t.contains("parses_as `ini`")).unwrap();
        assert!(third.starts_with("p.toml:34:1:"), "{third}");
    }
}
