//! The checks a drill runs on a restored scratch target: fidelity (against the facts the
//! backup recorded), the engine's native check, and the policy's own sql, file and command
//! checks. Every check returns a result (a check never aborts the drill); a failed one says
//! why in its detail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backstop_repo::{EntryKind, SnapshotReader, SourceFacts};
use backstop_sources::probe::Native;
use backstop_sources::scratch::Scratch;
use sha2::{Digest, Sha256};

use super::expect::Expect;
use super::report::{CheckResult, CheckStatus, Difference};
use crate::policy::{Check, CheckSpec, FileCheck, NamedCheck};

/// How long a command check may run unless its `timeout` says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of a command's output is kept: its beginning and its end.
const OUTPUT_HEAD: usize = 4 * 1024;
const OUTPUT_TAIL: usize = 12 * 1024;

/// Restored facts against the backup's: tables and row counts, the schema fingerprint; for
/// a file tree, every file's size and SHA-256 read back from disk, and nothing extra.
///
/// A file tree is compared a window of entries at a time; the third value is then what the
/// tree holds ([`TreeCounts`]), read in the same pass.
pub async fn fidelity(
    reader: &SnapshotReader,
    scratch: &Scratch,
    tables: &[String],
) -> (CheckResult, Vec<Difference>, Option<TreeCounts>) {
    let started = Instant::now();
    let restricted;
    let expected = if tables.is_empty() {
        &reader.snapshot().facts
    } else {
        restricted = only_tables(&reader.snapshot().facts, tables);
        &restricted
    };
    let kind = backstop_sources::SourceKind::parse(&reader.snapshot().source_kind);
    if kind.is_some_and(|k| !k.compares_facts()) {
        let mut r = CheckResult::new(
            "fidelity",
            "fidelity",
            CheckStatus::Skipped,
            format!(
                "a {} source records no facts to compare the restore with; its checks are the policy's own",
                reader.snapshot().source_kind
            ),
        );
        r.duration_ms = started.elapsed().as_millis() as u64;
        return (r, Vec::new(), None);
    }
    let tree = kind.is_some_and(|k| k.is_tree());
    let mut counts = None;
    let outcome = if tree {
        let dir = scratch.path().map(Path::to_path_buf).unwrap_or_default();
        compare_tree(reader, dir, expected)
            .await
            .map(|(summary, differences, c)| {
                counts = Some(c);
                (summary, differences)
            })
    } else {
        scratch
            .facts()
            .await
            .map(|actual| compare_facts(expected, &actual))
            .map_err(|e| format!("reading the restored facts: {e}"))
    };
    let mut result = match outcome {
        Ok((summary, differences)) => {
            let status = if differences.is_empty() {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            };
            let detail = if differences.is_empty() {
                summary
            } else {
                format!(
                    "{} difference(s) from the backup's facts: {}",
                    differences.len(),
                    differences
                        .iter()
                        .take(5)
                        .map(|d| format!(
                            "{} (expected {}, got {})",
                            d.object, d.expected, d.actual
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            let mut r = CheckResult::new("fidelity", "fidelity", status, detail);
            r.duration_ms = started.elapsed().as_millis() as u64;
            return (r, differences, counts);
        }
        Err(e) => CheckResult::new("fidelity", "fidelity", CheckStatus::Failed, e),
    };
    result.duration_ms = started.elapsed().as_millis() as u64;
    (result, Vec::new(), counts)
}

/// Whether the facts' table `key` (`schema.table`) is one of `tables` (`schema.table`, or
/// `table` in any schema).
fn is_selected(key: &str, tables: &[String]) -> bool {
    let name = key.rsplit_once('.').map_or(key, |(_, name)| name);
    tables
        .iter()
        .any(|t| t == key || (!t.contains('.') && t == name))
}

/// The facts of a partial restore: the selected tables' row counts, and no schema
/// fingerprint (it covers the whole database).
fn only_tables(facts: &SourceFacts, tables: &[String]) -> SourceFacts {
    let mut facts = facts.clone();
    facts.tables.retain(|key, _| is_selected(key, tables));
    facts.schema_fingerprint = None;
    let key = backstop_sources::mysql::SERVER_ROWS_MIN;
    if let Some(text) = facts.extra.get(key) {
        if let Ok(mut minimums) =
            serde_json::from_str::<std::collections::BTreeMap<String, u64>>(text)
        {
            minimums.retain(|table, _| is_selected(table, tables));
            let text = serde_json::to_string(&minimums).unwrap_or_default();
            facts.extra.insert(key.to_string(), text);
        }
    }
    facts
}

/// Row counts per table and the schema fingerprint; every difference listed by table.
pub fn compare_facts(expected: &SourceFacts, actual: &SourceFacts) -> (String, Vec<Difference>) {
    let mut differences = Vec::new();
    for (table, rows) in &expected.tables {
        match actual.tables.get(table) {
            None => differences.push(Difference {
                object: format!("table {table}"),
                expected: format!("{rows} rows"),
                actual: "missing".into(),
            }),
            Some(got) if got != rows => differences.push(Difference {
                object: format!("table {table}"),
                expected: format!("{rows} rows"),
                actual: format!("{got} rows"),
            }),
            Some(_) => {}
        }
    }
    for (table, rows) in &actual.tables {
        if !expected.tables.contains_key(table) {
            differences.push(Difference {
                object: format!("table {table}"),
                expected: "absent".into(),
                actual: format!("{rows} rows"),
            });
        }
    }
    // Counts taken on the server around the dump (MariaDB): the restored table must hold at
    // least as many rows, whatever the dump stream itself claimed.
    if let Some(text) = expected.extra.get(backstop_sources::mysql::SERVER_ROWS_MIN) {
        match serde_json::from_str::<std::collections::BTreeMap<String, u64>>(text) {
            Ok(minimums) => {
                for (table, least) in minimums {
                    let got = actual.tables.get(&table).copied().unwrap_or(0);
                    if got < least {
                        differences.push(Difference {
                            object: format!("table {table}"),
                            expected: format!(
                                "at least {least} rows (counted on the server at backup)"
                            ),
                            actual: format!("{got} rows"),
                        });
                    }
                }
            }
            Err(e) => differences.push(Difference {
                object: "server row counts".into(),
                expected: "the counts recorded at backup".into(),
                actual: format!("unreadable: {e}"),
            }),
        }
    }
    if let (Some(e), Some(a)) = (&expected.schema_fingerprint, &actual.schema_fingerprint) {
        if e != a {
            differences.push(Difference {
                object: "schema".into(),
                expected: format!("fingerprint {}", &e[..e.len().min(12)]),
                actual: format!("fingerprint {}", &a[..a.len().min(12)]),
            });
        }
    }
    let rows: u64 = expected.tables.values().sum();
    (
        format!(
            "{} table(s), {rows} row(s) and the schema fingerprint equal the backup's",
            expected.tables.len()
        ),
        differences,
    )
}

/// What a snapshot's tree holds: its files and the chunks they reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeCounts {
    pub files: u64,
    pub chunks: u64,
}

/// Reads every restored file back and compares it with the snapshot's tree, a window of
/// entries at a time (each on a blocking worker), so that what is held is a window, the
/// counts and the differences, whatever the tree's size. Files in the restore that the tree
/// does not hold are found by counting: every entry found in the restore is one path there,
/// so the restore holds more only when its walk counts more paths than were found, and only
/// then are the tree's paths read again and held, to name them.
async fn compare_tree(
    reader: &SnapshotReader,
    dir: PathBuf,
    facts: &SourceFacts,
) -> Result<(String, Vec<Difference>, TreeCounts), String> {
    let dir = std::sync::Arc::new(dir);
    let mut comparison = TreeComparison::default();
    let mut windows = reader.entry_windows();
    while let Some(window) = next_window(&mut windows).await? {
        let dir = dir.clone();
        comparison = tokio::task::spawn_blocking(move || {
            comparison.compare(&dir, &window);
            comparison
        })
        .await
        .map_err(|e| format!("comparing files: {e}"))?;
    }
    let walked = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || count_relative(&dir))
            .await
            .map_err(|e| format!("listing the restore: {e}"))?
    };
    if walked > comparison.found {
        let mut expected = std::collections::HashSet::new();
        let mut windows = reader.entry_windows();
        while let Some(window) = next_window(&mut windows).await? {
            expected.extend(window.into_iter().map(|e| e.path));
        }
        let mut present = Vec::new();
        list_relative(&dir, &dir, &mut present);
        present.sort();
        for path in present.into_iter().filter(|p| !expected.contains(p)) {
            comparison
                .differences
                .push(file_difference(&path, "absent".into(), "present".into()));
        }
    }
    Ok(comparison.finish(facts))
}

/// The tree's next window, `None` after the last.
async fn next_window(
    windows: &mut backstop_repo::EntryWindows<'_>,
) -> Result<Option<Vec<backstop_repo::Entry>>, String> {
    let window = windows
        .next()
        .await
        .map_err(|e| format!("reading the snapshot's tree: {e}"))?;
    Ok((!window.is_empty()).then_some(window))
}

/// A tree's comparison so far ([`compare_tree`]).
#[derive(Debug, Default)]
struct TreeComparison {
    differences: Vec<Difference>,
    /// Files read back, and their bytes.
    files: u64,
    bytes: u64,
    /// Entries found in the restore (of any kind, whatever their content).
    found: u64,
    counts: TreeCounts,
}

fn file_difference(object: &str, expected: String, actual: String) -> Difference {
    Difference {
        object: format!("file {object}"),
        expected,
        actual,
    }
}

impl TreeComparison {
    fn compare(&mut self, dir: &Path, entries: &[backstop_repo::Entry]) {
        let diff = file_difference;
        for entry in entries {
            self.counts.chunks += entry.chunks.len() as u64;
            let path = dir.join(&entry.path);
            match entry.kind {
                EntryKind::Dir => {
                    if path.is_dir() {
                        self.found += 1;
                    } else {
                        self.differences.push(diff(
                            &entry.path,
                            "a directory".into(),
                            "missing".into(),
                        ));
                    }
                }
                EntryKind::Symlink => match std::fs::read_link(&path) {
                    Ok(target) => {
                        self.found += 1;
                        if Some(target.to_string_lossy().as_ref()) != entry.target.as_deref() {
                            self.differences.push(diff(
                                &entry.path,
                                format!("a link to {}", entry.target.clone().unwrap_or_default()),
                                format!("a link to {}", target.display()),
                            ));
                        }
                    }
                    Err(e) => {
                        self.differences
                            .push(diff(&entry.path, "a symlink".into(), e.to_string()))
                    }
                },
                EntryKind::File => {
                    self.counts.files += 1;
                    match hash_file(&path) {
                        Ok((size, digest)) => {
                            self.found += 1;
                            self.files += 1;
                            self.bytes += size;
                            if size != entry.size {
                                self.differences.push(diff(
                                    &entry.path,
                                    format!("{} bytes", entry.size),
                                    format!("{size} bytes"),
                                ));
                            } else if entry.digest.is_some_and(|d| d.0 != digest) {
                                self.differences.push(diff(
                                    &entry.path,
                                    format!(
                                        "SHA-256 {}",
                                        entry.digest.map(|d| d.short()).unwrap_or_default()
                                    ),
                                    format!("SHA-256 {}", &hex::encode(digest)[..12]),
                                ));
                            }
                        }
                        Err(e) => self.differences.push(diff(
                            &entry.path,
                            format!("{} bytes", entry.size),
                            e.to_string(),
                        )),
                    }
                }
            }
        }
    }

    fn finish(self, facts: &SourceFacts) -> (String, Vec<Difference>, TreeCounts) {
        let Self {
            mut differences,
            files,
            bytes,
            counts,
            ..
        } = self;
        if facts.file_count > 0 && files != facts.file_count {
            differences.push(Difference {
                object: "file count".into(),
                expected: facts.file_count.to_string(),
                actual: files.to_string(),
            });
        }
        if facts.bytes > 0 && bytes != facts.bytes {
            differences.push(Difference {
                object: "bytes".into(),
                expected: facts.bytes.to_string(),
                actual: bytes.to_string(),
            });
        }
        (
            format!("{files} file(s), {bytes} bytes: every file's SHA-256 equals the snapshot's"),
            differences,
            counts,
        )
    }
}

/// How many paths lie under `dir` (itself not counted), as [`list_relative`] lists them.
fn count_relative(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        count += 1;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            count += count_relative(&entry.path());
        }
    }
    count
}

fn hash_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().into()))
}

fn list_relative(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().into_owned());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            list_relative(root, &path, out);
        }
    }
}

/// The engine's own integrity check; `None` when the target has none (a directory).
pub async fn native(scratch: &Scratch) -> Option<CheckResult> {
    let started = Instant::now();
    let outcome = scratch.native_check().await?;
    let mut result = match outcome {
        Ok(Native::Passed(d)) => CheckResult::new("native", "native", CheckStatus::Passed, d),
        Ok(Native::Failed(d)) => CheckResult::new("native", "native", CheckStatus::Failed, d),
        Ok(Native::Unavailable(d)) => CheckResult::new("native", "native", CheckStatus::Skipped, d),
        Err(e) => CheckResult::new("native", "native", CheckStatus::Failed, e.to_string()),
    };
    result.duration_ms = started.elapsed().as_millis() as u64;
    Some(result)
}

/// What a user's check runs with.
pub struct CheckContext<'a> {
    pub scratch: &'a Scratch,
    /// Relative command paths resolve here, and commands run here.
    pub base_dir: &'a Path,
    pub env: Vec<(String, String)>,
}

/// The name a check is shown under: its own, or what it does.
pub fn check_name(spec: &CheckSpec) -> String {
    if let Some(name) = &spec.name {
        return name.clone();
    }
    let shorten = |text: &str| {
        let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > 60 {
            format!("{}…", one_line.chars().take(59).collect::<String>())
        } else {
            one_line
        }
    };
    if let Some(sql) = &spec.sql {
        format!("sql: {}", shorten(sql))
    } else if let Some(file) = &spec.file {
        format!("file: {file}")
    } else if let Some(command) = &spec.command {
        format!("command: {}", shorten(&command.join(" ")))
    } else {
        "check".into()
    }
}

pub async fn user_check(check: &NamedCheck, ctx: &CheckContext<'_>) -> CheckResult {
    let started = Instant::now();
    let name = &check.name;
    let mut result = match &check.check {
        Check::Sql { sql, expect } => sql_check(name, sql, expect.as_deref(), ctx.scratch).await,
        Check::File(file) => file_check(name, file, ctx.scratch),
        Check::Command { argv, timeout } => command_check(name, argv, *timeout, ctx).await,
    };
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

async fn sql_check(name: &str, sql: &str, expect: Option<&str>, scratch: &Scratch) -> CheckResult {
    let expect = match expect.map(Expect::parse).transpose() {
        Ok(e) => e,
        Err(e) => return CheckResult::new(name, "sql", CheckStatus::Failed, e),
    };
    match scratch.first_value(sql).await {
        Err(e) => CheckResult::new(
            name,
            "sql",
            CheckStatus::Failed,
            format!("query failed: {e}"),
        ),
        Ok(value) => {
            let shown = value.clone().unwrap_or_else(|| "NULL".into());
            match expect {
                None => CheckResult::new(
                    name,
                    "sql",
                    CheckStatus::Passed,
                    format!("returned {shown}"),
                ),
                Some(expect) => match expect.check(value.as_deref()) {
                    Ok(()) => CheckResult::new(
                        name,
                        "sql",
                        CheckStatus::Passed,
                        format!("returned {shown}, expected {expect}"),
                    ),
                    Err(why) => CheckResult::new(name, "sql", CheckStatus::Failed, why),
                },
            }
        }
    }
}

fn file_check(name: &str, spec: &FileCheck, scratch: &Scratch) -> CheckResult {
    let file = spec.path.as_str();
    let fail = |detail: String| CheckResult::new(name, "file", CheckStatus::Failed, detail);
    let Some(root) = scratch.path().filter(|p| p.is_dir()) else {
        return fail("file checks need a directory target".into());
    };
    let relative = Path::new(file);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return fail(format!(
            "`{file}` must be a relative path inside the restore"
        ));
    }
    let path = root.join(relative);
    let want_exists = spec.exists;
    let meta = std::fs::metadata(&path);
    if !want_exists {
        return match meta {
            Err(_) => CheckResult::new(name, "file", CheckStatus::Passed, "absent, as expected"),
            Ok(_) => fail(format!("{file} exists, expected it absent")),
        };
    }
    let meta = match meta {
        Ok(m) if m.is_file() => m,
        Ok(_) => return fail(format!("{file} is not a regular file")),
        Err(e) => return fail(format!("{file}: {e}")),
    };
    let mut problems = Vec::new();
    let mut facts = vec![format!("{} bytes", meta.len())];
    if spec.min_size.is_some_and(|min| meta.len() < min) {
        problems.push(format!(
            "{} bytes, below min_size {}",
            meta.len(),
            spec.min_size.unwrap_or(0)
        ));
    }
    if spec.max_size.is_some_and(|max| meta.len() > max) {
        problems.push(format!(
            "{} bytes, above max_size {}",
            meta.len(),
            spec.max_size.unwrap_or(0)
        ));
    }
    if let Some(expected) = &spec.digest {
        match hash_file(&path) {
            Ok((_, digest)) if hex::encode(digest) == *expected => {
                facts.push("digest equal".into())
            }
            Ok((_, digest)) => problems.push(format!(
                "SHA-256 {}, expected {expected}",
                hex::encode(digest)
            )),
            Err(e) => problems.push(format!("reading it: {e}")),
        }
    }
    if let Some(format) = &spec.parses_as {
        match std::fs::read_to_string(&path) {
            Err(e) => problems.push(format!("reading it as text: {e}")),
            Ok(text) => match parse_as(format, &text) {
                Ok(()) => facts.push(format!("parses as {format}")),
                Err(e) => problems.push(format!("does not parse as {format}: {e}")),
            },
        }
    }
    if problems.is_empty() {
        CheckResult::new(name, "file", CheckStatus::Passed, facts.join(", "))
    } else {
        fail(format!("{file}: {}", problems.join("; ")))
    }
}

/// Parses `text` as json, toml or yaml.
pub fn parse_as(format: &str, text: &str) -> Result<(), String> {
    match format {
        "json" => serde_json::from_str::<serde_json::Value>(text)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "toml" => text
            .parse::<toml::Table>()
            .map(|_| ())
            .map_err(|e| e.message().to_string()),
        "yaml" => yaml_rust2::YamlLoader::load_from_str(text)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown format `{other}` (json, toml or yaml)")),
    }
}

/// A command check run with `env` from `base_dir`, its output cleared of `secrets`: a
/// system's check, which sees every member's target.
pub async fn command_check_with(
    check: &NamedCheck,
    base_dir: &Path,
    env: &[(String, String)],
    secrets: &[String],
) -> CheckResult {
    let started = Instant::now();
    let mut result = match &check.check {
        Check::Command { argv, timeout } => {
            run_command_check(&check.name, argv, *timeout, base_dir, env, secrets).await
        }
        _ => CheckResult::new(
            &check.name,
            "command",
            CheckStatus::Failed,
            "only a command check runs here".to_string(),
        ),
    };
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

async fn command_check(
    name: &str,
    argv: &[String],
    timeout: Option<Duration>,
    ctx: &CheckContext<'_>,
) -> CheckResult {
    let secrets: Vec<String> = ctx
        .scratch
        .url()
        .and_then(|u| u.password())
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    run_command_check(name, argv, timeout, ctx.base_dir, &ctx.env, &secrets).await
}

async fn run_command_check(
    name: &str,
    argv: &[String],
    timeout: Option<Duration>,
    base_dir: &Path,
    env: &[(String, String)],
    secrets: &[String],
) -> CheckResult {
    let fail = |detail: String| CheckResult::new(name, "command", CheckStatus::Failed, detail);
    let limit = timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
    let Some(program) = argv.first() else {
        return fail("the command is empty".into());
    };
    let program_path = if program.contains('/') && !Path::new(program).is_absolute() {
        base_dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let secrets: Vec<String> = secrets.iter().filter(|p| !p.is_empty()).cloned().collect();
    match run_command(&program_path, &argv[1..], base_dir, env, limit).await {
        Err(e) => fail(format!("could not run {}: {e}", program_path.display())),
        Ok(ran) => {
            let output = redact(&ran.output, &secrets);
            let mut result = match ran.exit {
                Some(0) => CheckResult::new(name, "command", CheckStatus::Passed, "exited 0"),
                Some(code) => fail(format!("exited {code}")),
                None if ran.timed_out => fail(format!(
                    "timed out after {} and was killed",
                    humantime::format_duration(limit)
                )),
                None => fail("killed by a signal".into()),
            };
            result.output = Some(output);
            result
        }
    }
}

struct Ran {
    exit: Option<i32>,
    timed_out: bool,
    output: String,
}

/// Runs a command in its own process group with stdout and stderr on one pipe; on timeout the
/// whole group is killed, so that a script's children cannot keep it alive.
async fn run_command(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &[(String, String)],
    limit: Duration,
) -> std::io::Result<Ran> {
    let (reader, writer) = rustix::pipe::pipe()?;
    let writer2 = writer.try_clone()?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    // Cancelled (a drill stopped by shutdown or its timeout), the whole group goes too:
    // a script's own children must not outlive the scratch target they were testing.
    let group = backstop_sources::tool::ProcessGroup::of(pid);
    let collect = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::from(reader);
        let mut kept = Output::default();
        let mut buffer = [0u8; 8192];
        while let Ok(n) = file.read(&mut buffer) {
            if n == 0 {
                break;
            }
            kept.push(&buffer[..n]);
        }
        kept.finish()
    });
    let (status, timed_out) = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => (Some(status?), false),
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            (None, true)
        }
    };
    // Children left behind by a script that exited are killed with the group.
    drop(group);
    // The pipe closes when the last process of the group exits; after a kill that is now.
    let output = match tokio::time::timeout(Duration::from_secs(5), collect).await {
        Ok(Ok(text)) => text,
        _ => "(output not collected: a child process still holds it open)".into(),
    };
    Ok(Ran {
        exit: status.and_then(|s| s.code()),
        timed_out,
        output,
    })
}

/// The first and last part of a stream, with what was dropped between them counted.
#[derive(Default)]
struct Output {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl Output {
    fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < OUTPUT_HEAD {
            let take = bytes.len().min(OUTPUT_HEAD - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        self.tail.extend(bytes);
        while self.tail.len() > OUTPUT_TAIL {
            self.tail.pop_front();
            self.dropped += 1;
        }
    }

    fn finish(self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!(
                "\n… ({} bytes of output omitted) …\n",
                self.dropped
            ));
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

/// `text` with every secret hidden, in each form a program is likely to print it: as is,
/// percent-encoded (as in a URL) and base64-encoded (standard or URL-safe, padded or not).
fn redact(text: &str, secrets: &[String]) -> String {
    let mut forms: Vec<String> = secrets.iter().flat_map(|s| secret_forms(s)).collect();
    // The longest first, so that a form containing another is hidden whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
        .iter()
        .fold(text.to_string(), |t, form| t.replace(form.as_str(), "***"))
}

fn secret_forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
    // What a URL's userinfo escapes (the WHATWG set): how a URL library writes a password.
    const USERINFO: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'/')
        .add(b':')
        .add(b';')
        .add(b'=')
        .add(b'@')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'|')
        .add(b'%');
    if secret.is_empty() {
        return Vec::new();
    }
    let everything = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
    let mut forms = vec![
        secret.to_string(),
        // A form-encoded body writes a space as `+`.
        everything.replace("%20", "+"),
        everything,
        utf8_percent_encode(secret, USERINFO).to_string(),
    ];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(secret));
    }
    // Lower-case hex digits in percent escapes are as valid as upper-case ones.
    let lower: Vec<String> = forms
        .iter()
        .filter(|f| f.contains('%'))
        .map(|f| lower_escapes(f))
        .collect();
    forms.extend(lower);
    forms.retain(|f| f.len() >= 3 || f == secret);
    forms
}

/// `%2F` → `%2f`, leaving everything else alone.
fn lower_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_percent = 0;
    for c in text.chars() {
        if c == '%' {
            after_percent = 2;
            out.push(c);
        } else if after_percent > 0 {
            after_percent -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(path: &str, kind: EntryKind, content: &[u8]) -> backstop_repo::Entry {
        backstop_repo::Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: content.len() as u64,
            chunks: match kind {
                EntryKind::File => vec![backstop_repo::Id::sha256(content)],
                _ => Vec::new(),
            },
            digest: (kind == EntryKind::File).then(|| backstop_repo::Id::sha256(content)),
            target: None,
            ctime_ns: 0,
            inode: 0,
        }
    }

    /// A drill's fidelity pass compares a tree a window at a time and holds no path of it:
    /// counts, content differences and a missing file come from the windows, and a file the
    /// tree does not hold shows as one path more in the restore than entries found there.
    #[test]
    fn a_tree_compared_by_windows_counts_finds_differences_and_sees_an_extra_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("a"), b"alpha").unwrap();
        std::fs::write(dir.path().join("b/c"), b"changed").unwrap();
        let windows = [
            vec![entry("a", EntryKind::File, b"alpha")],
            vec![
                entry("b", EntryKind::Dir, b""),
                entry("b/c", EntryKind::File, b"charlie"),
                entry("b/gone", EntryKind::File, b"gone"),
            ],
        ];
        let mut comparison = TreeComparison::default();
        for window in &windows {
            comparison.compare(dir.path(), window);
        }
        assert_eq!(comparison.found, 3, "a, b and b/c are there; b/gone is not");
        assert_eq!(count_relative(dir.path()), 3, "nothing extra");
        std::fs::write(dir.path().join("b/extra"), b"x").unwrap();
        assert_eq!(count_relative(dir.path()), 4, "one path more than found");

        let facts = SourceFacts {
            file_count: 3,
            ..SourceFacts::default()
        };
        let (summary, differences, counts) = comparison.finish(&facts);
        assert_eq!(
            counts,
            TreeCounts {
                files: 3,
                chunks: 3
            }
        );
        assert!(summary.starts_with("2 file(s), 12 bytes"), "{summary}");
        let objects: Vec<&str> = differences.iter().map(|d| d.object.as_str()).collect();
        assert_eq!(
            objects,
            ["file b/c", "file b/gone", "file count"],
            "{differences:?}"
        );
        assert!(
            differences[0].expected.starts_with("SHA-256 "),
            "{differences:?}"
        );
    }

    fn tables(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// Issue 15: a dump tool that dropped every row of a table gave a passing drill, as the
    /// counts came from the dump stream itself. The server's own counts catch it.
    #[test]
    fn a_table_with_fewer_rows_than_the_server_had_fails_fidelity() {
        let dumped = tables(&[("orders", 0), ("customers", 5)]);
        let mut expected = SourceFacts {
            tables: dumped.clone(),
            ..SourceFacts::default()
        };
        expected.extra.insert(
            backstop_sources::mysql::SERVER_ROWS_MIN.into(),
            r#"{"orders": 3, "customers": 5}"#.into(),
        );
        let restored = SourceFacts {
            tables: dumped,
            ..SourceFacts::default()
        };
        let (_, differences) = compare_facts(&expected, &restored);
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert_eq!(differences[0].object, "table orders");
        assert!(
            differences[0].expected.contains("at least 3"),
            "{differences:?}"
        );
    }

    #[test]
    fn every_table_difference_is_listed() {
        let expected = SourceFacts {
            tables: tables(&[
                ("public.orders", 2000),
                ("public.audit_log", 2000),
                ("public.items", 5),
            ]),
            schema_fingerprint: Some("aaaa".repeat(16)),
            ..SourceFacts::default()
        };
        let actual = SourceFacts {
            tables: tables(&[
                ("public.orders", 2000),
                ("public.audit_log", 0),
                ("public.extra", 1),
            ]),
            schema_fingerprint: Some("bbbb".repeat(16)),
            ..SourceFacts::default()
        };
        let (_, differences) = compare_facts(&expected, &actual);
        let objects: Vec<(&str, &str, &str)> = differences
            .iter()
            .map(|d| (d.object.as_str(), d.expected.as_str(), d.actual.as_str()))
            .collect();
        assert_eq!(
            objects,
            [
                ("table public.audit_log", "2000 rows", "0 rows"),
                ("table public.items", "5 rows", "missing"),
                ("table public.extra", "absent", "1 rows"),
                (
                    "schema",
                    "fingerprint aaaaaaaaaaaa",
                    "fingerprint bbbbbbbbbbbb"
                ),
            ]
        );
        assert!(compare_facts(&expected, &expected).1.is_empty());
    }

    #[test]
    fn output_keeps_its_head_and_tail() {
        let mut out = Output::default();
        out.push(&vec![b'a'; OUTPUT_HEAD]);
        out.push(&vec![b'b'; 100_000]);
        out.push(b"the end");
        let text = out.finish();
        assert!(text.starts_with("aaaa"));
        assert!(text.ends_with("bthe end"));
        assert!(text.contains(&format!(
            "({} bytes of output omitted)",
            100_007 - OUTPUT_TAIL
        )));
        assert!(text.len() < OUTPUT_HEAD + OUTPUT_TAIL + 100);
    }

    #[test]
    fn formats_parse_or_say_why() {
        assert!(parse_as("json", r#"{"a": [1, 2]}"#).is_ok());
        assert!(parse_as("json", r#"{"a": [1, 2}"#).is_err());
        assert!(parse_as("toml", "a = 1\n[b]\nc = 'x'\n").is_ok());
        assert!(parse_as("toml", "a = \n").is_err());
        assert!(parse_as("yaml", "a: 1\nb:\n  - x\n").is_ok());
        assert!(parse_as("yaml", "a: [1, 2\n").is_err());
        assert!(parse_as("ini", "").unwrap_err().contains("unknown format"));
    }

    #[test]
    fn secrets_are_redacted_from_output() {
        assert_eq!(
            redact(
                "connecting to postgres://u:hunter2@h/db",
                &["hunter2".into()]
            ),
            "connecting to postgres://u:***@h/db"
        );
    }

    /// Issue 15: a check script that printed the password percent-encoded had it stored.
    #[test]
    fn secrets_are_redacted_percent_encoded_and_base64_encoded_too() {
        use base64::Engine;
        let secret = "p@ss/w:rd hunter2";
        let encoded = "p%40ss%2Fw%3Ard%20hunter2";
        let printed = format!(
            "url postgres://u:{encoded}@h/db; lower {}; form {}; b64 {}; b64url {}",
            encoded.to_lowercase(),
            encoded.replace("%20", "+"),
            base64::engine::general_purpose::STANDARD.encode(secret),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        );
        let shown = redact(&printed, &[secret.into()]);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("40ss"), "{shown}");
        assert!(
            !shown.contains(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret)),
            "{shown}"
        );
        assert_eq!(shown.matches("***").count(), 5, "{shown}");
    }
}
