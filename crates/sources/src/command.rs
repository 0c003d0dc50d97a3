//! A generic source: any program that can export the data to stdout and import it from
//! stdin (`redis-cli --rdb -`, `etcdctl snapshot save`, an application's own export).
//!
//! ```toml
//! [source]
//! kind = "command"
//! backup_command = ["redis-cli", "--rdb", "-"]       # writes the data to stdout
//! restore_command = ["./scripts/redis-load.sh"]      # reads it on stdin, for drills
//! facts_command = ["./scripts/redis-facts.sh"]       # optional: prints a JSON object
//! ```
//!
//! The data is stored as one file, [`DATA_FILE`]. A drill restores it into a scratch
//! directory (or onto a scratch database server, when `[drill] target` names one) by
//! running `restore_command` with the data on stdin and the target in
//! `BACKSTOP_SCRATCH_DIR` (or `BACKSTOP_SCRATCH_URL`). The commands run in the
//! configuration's directory; relative program paths resolve there. A command that exits
//! non-zero, or is killed, fails the job with its stderr, as a dump tool's does, and a
//! backup whose command failed stores nothing.

use std::path::Path;

use backstop_repo::format::snapshot::Root;
use backstop_repo::{SnapshotReader, SnapshotWriter, SourceFacts};
use serde::Deserialize;
use tokio::process::Command;

use crate::tool::Running;
use crate::{stream_entry, BackedUp, SourceContext, SourceError};

/// The file a command source's data is stored as.
pub const DATA_FILE: &str = "command.out";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Writes the data to stdout: a program and its arguments.
    pub backup_command: Vec<String>,
    /// Reads the data on stdin into the scratch target, for drills.
    #[serde(default)]
    pub restore_command: Option<Vec<String>>,
    /// Prints the source's facts as a JSON object (kept with the snapshot).
    #[serde(default)]
    pub facts_command: Option<Vec<String>>,
}

impl CommandSpec {
    /// What is wrong with it as written.
    pub fn problems(&self) -> Vec<(Vec<&'static str>, String)> {
        let mut problems = Vec::new();
        for (key, argv) in [
            ("backup_command", Some(&self.backup_command)),
            ("restore_command", self.restore_command.as_ref()),
            ("facts_command", self.facts_command.as_ref()),
        ] {
            if argv.is_some_and(|a| a.first().is_none_or(|p| p.trim().is_empty())) {
                problems.push((
                    vec!["source", key],
                    format!(
                        "[source] {key} must name a program (a list: [\"program\", \"arg\", …])"
                    ),
                ));
            }
        }
        problems
    }

    /// What may go wrong at the first backup: a program that is not there.
    pub fn preflight(&self, base: &Path) -> Vec<String> {
        [
            ("backup_command", Some(&self.backup_command)),
            ("restore_command", self.restore_command.as_ref()),
            ("facts_command", self.facts_command.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, argv)| {
            let program = argv?.first()?;
            (!program_exists(program, base))
                .then(|| format!("[source] {key}: `{program}` is not found"))
        })
        .collect()
    }
}

/// A program given with a `/` resolves against `base`; otherwise it is looked up on PATH.
fn resolve(program: &str, base: &Path) -> std::path::PathBuf {
    if program.contains('/') && !Path::new(program).is_absolute() {
        base.join(program)
    } else {
        program.into()
    }
}

fn program_exists(program: &str, base: &Path) -> bool {
    let path = resolve(program, base);
    if program.contains('/') {
        return path.is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(&path).is_file()))
        .unwrap_or(false)
}

fn command(argv: &[String], base: &Path) -> Command {
    let mut cmd = Command::new(resolve(&argv[0], base));
    cmd.args(&argv[1..])
        .current_dir(base)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `backup_command` and stores what it writes; then `facts_command`, when there is one.
pub async fn back_up(
    spec: &CommandSpec,
    ctx: SourceContext<'_>,
    writer: &mut SnapshotWriter,
) -> Result<BackedUp, SourceError> {
    // The export starts now: its data is at least this fresh.
    let data_point = jiff::Timestamp::now();
    let mut running =
        Running::spawn_named("backup_command", command(&spec.backup_command, ctx.base))?;
    let stdout = running.blocking_stdout()?;
    let streamed = writer.add_stream(stream_entry(DATA_FILE), stdout).await;
    // The command's exit status decides: an export that failed is never stored.
    let finished = running.finish().await;
    streamed?;
    finished?;
    let facts = match &spec.facts_command {
        Some(argv) => facts(argv, ctx.base).await?,
        None => SourceFacts::default(),
    };
    Ok(BackedUp {
        roots: vec![Root {
            name: DATA_FILE.into(),
            source: format!("command: {}", spec.backup_command.join(" ")),
        }],
        facts,
        data_point,
    })
}

/// `facts_command`'s JSON object: each member kept as a fact (`extra`), and `tables`, when
/// it is an object of counts, as the row counts.
async fn facts(argv: &[String], base: &Path) -> Result<SourceFacts, SourceError> {
    let mut running = Running::spawn_named("facts_command", command(argv, base))?;
    let mut stdout = running.blocking_stdout()?;
    let read = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let text = read
        .await
        .map_err(|e| SourceError::Invalid(format!("facts_command: {e}")))?
        .map_err(|e| SourceError::io("facts_command's output", e))?;
    running.finish().await?;
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| SourceError::Invalid(format!("facts_command printed no JSON object: {e}")))?;
    let mut facts = SourceFacts::default();
    for (key, value) in object {
        if key == "tables" {
            if let Some(tables) = value.as_object() {
                for (table, rows) in tables {
                    if let Some(rows) = rows.as_u64() {
                        facts.tables.insert(table.clone(), rows);
                    }
                }
                continue;
            }
        }
        let text = match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        facts.extra.insert(key, text);
    }
    Ok(facts)
}

/// Runs `restore_command` with the snapshot's data on stdin and the scratch target in `env`.
pub async fn restore(
    reader: &SnapshotReader,
    spec: &CommandSpec,
    base: &Path,
    env: &[(String, String)],
) -> Result<(), SourceError> {
    let argv = spec.restore_command.as_ref().ok_or_else(|| {
        SourceError::Invalid(
            "[source] has no restore_command: a command source's drill needs one to restore into its scratch target".into(),
        )
    })?;
    let entry = reader.file(DATA_FILE).await?.ok_or_else(|| {
        SourceError::Invalid(format!(
            "snapshot {} holds no {DATA_FILE}",
            reader.id().short()
        ))
    })?;
    let mut cmd = command(argv, base);
    cmd.stdin(std::process::Stdio::piped())
        .envs(env.iter().cloned());
    Running::spawn_named("restore_command", cmd)?
        .feed(reader, entry)
        .await
}
