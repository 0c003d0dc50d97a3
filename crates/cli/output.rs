//! How results reach people and scripts: human text, or JSON with `--json`.
//!
//! Exit codes (documented in README.md):
//! 0 success; 1 failure (error, failed check, or a listing, catalog rebuild or prune that
//! went on past an unreadable snapshot object and named it); 2 usage error; 3 backup
//! committed, but some files could not be read (listed as warnings).

use std::process::ExitCode;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INCOMPLETE: u8 = 3;

pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

pub fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// A count with its noun, singular or plural: `1 snapshot`, `2 snapshots`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

pub use backstop_engine::human::bytes;

/// Names, on stderr, a snapshot object a command could not read and went on without.
pub fn warn_unreadable(repository: &str, unreadable: &backstop_repo::UnreadableSnapshot) {
    eprintln!("warning: repository `{repository}`: {unreadable}");
}

/// History rows a rebuild took back, per table ("2 drills, 1 signoffs"), or `none` when
/// the catalog lacked nothing.
pub fn history_added(added: &std::collections::BTreeMap<String, u64>, none: &str) -> String {
    let parts: Vec<String> = added
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(table, n)| format!("{n} {}", table.replace('_', " ")))
        .collect();
    if parts.is_empty() {
        none.to_string()
    } else {
        parts.join(", ")
    }
}
