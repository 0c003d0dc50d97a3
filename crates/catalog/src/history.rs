//! The catalog's history as plain rows: runs, drills, sign-offs, restore requests and audit
//! events, column by column as stored. The engine writes them into every repository, so that
//! the record survives the loss of the catalog's host; [`Catalog::import_history`] takes them
//! back into a fresh catalog (`backstop catalog rebuild`) exactly as they were, without
//! appending audit events of its own, so that the audit chain and its anchors still agree.
//! Snapshots are not part of it: the repositories hold them already.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Catalog, ChainStatus, Result};

/// How a column is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Text,
    OptText,
    Int,
    OptInt,
}

struct Table {
    name: &'static str,
    /// The column that names a row (its primary key).
    key: &'static str,
    columns: &'static [(&'static str, Col)],
}

use Col::{Int, OptInt, OptText, Text};

/// Every table of history, in the order they are imported (a sign-off after its drill).
const TABLES: &[Table] = &[
    Table {
        name: "runs",
        key: "id",
        columns: &[
            ("id", Text),
            ("kind", Text),
            ("policy", Text),
            ("status", Text),
            ("started_at", Text),
            ("finished_at", OptText),
            ("bytes", OptInt),
            ("snapshot_id", OptText),
            ("error", OptText),
            ("host", Text),
            ("holder", Text),
            ("heartbeat_at", OptText),
            ("warnings", Text),
        ],
    },
    Table {
        name: "drills",
        key: "id",
        columns: &[
            ("id", Text),
            ("policy", Text),
            ("repository", Text),
            ("snapshot_id", Text),
            ("data_point", Text),
            ("target", Text),
            ("status", Text),
            ("started_at", Text),
            ("finished_at", Text),
            ("rto_ms", OptInt),
            ("rto_objective_ms", OptInt),
            ("rpo_ms", OptInt),
            ("rpo_objective_ms", OptInt),
            ("error", OptText),
            ("report", Text),
        ],
    },
    Table {
        name: "signoffs",
        key: "drill_id",
        columns: &[
            ("drill_id", Text),
            ("principal", Text),
            ("comment", Text),
            ("signed_at", Text),
        ],
    },
    Table {
        name: "restore_requests",
        key: "id",
        columns: &[
            ("id", Text),
            ("policy", Text),
            ("snapshot_id", OptText),
            ("point_in_time", OptText),
            ("target", Text),
            ("reason", Text),
            ("allow_overlap", Int),
            ("requester", Text),
            ("status", Text),
            ("created_at", Text),
            ("expires_at", Text),
            ("not_before", OptText),
            ("decided_by", OptText),
            ("decided_at", OptText),
            ("decision_comment", OptText),
            ("finished_at", OptText),
            ("outcome", OptText),
            ("holder", Text),
            ("heartbeat_at", OptText),
            ("run_id", OptText),
            ("creates_target", Int),
        ],
    },
    Table {
        name: "audit_events",
        key: "seq",
        columns: &[
            ("seq", Int),
            ("time", Text),
            ("actor", Text),
            ("kind", Text),
            ("subject", Text),
            ("detail", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
    },
];

/// One row of history: its table, the value of its key column (as text), and every column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub table: String,
    pub key: String,
    pub columns: BTreeMap<String, serde_json::Value>,
}

/// What an import added, per table, and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Rows added, per table; rows already present are left as they are.
    pub added: BTreeMap<String, u64>,
    /// Why the audit events were not imported, when they were not: the catalog already
    /// holds a chain that the history's does not continue.
    pub audit_refused: Option<String>,
}

fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

impl Catalog {
    /// Every row of every history table.
    pub async fn history_rows(&self) -> Result<Vec<HistoryRow>> {
        let mut out = Vec::new();
        for t in TABLES {
            let names: Vec<&str> = t.columns.iter().map(|(n, _)| *n).collect();
            let rows = sqlx::query(&format!(
                "SELECT {} FROM {} ORDER BY {}",
                names.join(", "),
                t.name,
                t.key
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
            for row in &rows {
                out.push(self.history_row(t, row)?);
            }
        }
        Ok(out)
    }

    fn history_row(&self, t: &Table, row: &AnyRow) -> Result<HistoryRow> {
        let mut columns = BTreeMap::new();
        for (i, (name, col)) in t.columns.iter().enumerate() {
            let value = match col {
                Text | OptText => row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.map_or(serde_json::Value::Null, serde_json::Value::String)),
                Int | OptInt => row
                    .try_get::<Option<i64>, _>(i)
                    .map(|v| v.map_or(serde_json::Value::Null, serde_json::Value::from)),
            }
            .map_err(self.db())?;
            columns.insert(name.to_string(), value);
        }
        let key = match &columns[t.key] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(HistoryRow {
            table: t.name.to_string(),
            key,
            columns,
        })
    }

    /// Inserts rows that the catalog does not hold yet, column for column, appending no
    /// audit event. Audit events are taken only when they continue the catalog's own chain
    /// (an empty one, on a fresh data directory): each already present must be the same
    /// event, and the new ones must follow on without a gap.
    pub async fn import_history(&self, rows: &[HistoryRow]) -> Result<Imported> {
        let mut imported = Imported::default();
        for row in rows {
            if table(&row.table).is_none() {
                return Err(self.invalid(format!(
                    "history row of unknown table `{}` (key {})",
                    row.table, row.key
                )));
            }
        }
        for t in TABLES {
            let mut mine: Vec<&HistoryRow> = rows.iter().filter(|r| r.table == t.name).collect();
            if t.name == "audit_events" {
                mine.sort_by_key(|r| r.columns["seq"].as_i64().unwrap_or(i64::MAX));
                let held = match self.audit_rows_to_add(&mine).await? {
                    Ok(held) => held,
                    Err(why) => {
                        imported.audit_refused = Some(why);
                        continue;
                    }
                };
                mine.drain(..held);
            }
            let added = imported.added.entry(t.name.to_string()).or_default();
            for row in mine {
                if self.insert_history_row(t, row).await? {
                    *added += 1;
                }
            }
        }
        Ok(imported)
    }

    /// How many of `events` (sorted by seq) the catalog holds already, when the rest
    /// continue its chain; otherwise why not.
    async fn audit_rows_to_add(
        &self,
        events: &[&HistoryRow],
    ) -> Result<std::result::Result<usize, String>> {
        let held = match self.verify_audit().await? {
            ChainStatus::Intact { events, .. } => events as i64,
            ChainStatus::Broken { seq, reason, .. } => {
                return Ok(Err(format!(
                    "the catalog's own audit chain is broken at event #{seq} ({reason})"
                )))
            }
        };
        let existing = self.audit_events(0, u32::MAX).await?;
        for (i, event) in events.iter().enumerate() {
            let seq = event.columns["seq"].as_i64().unwrap_or(0);
            let hash = event.columns["hash"].as_str().unwrap_or_default();
            if seq != i as i64 + 1 {
                return Ok(Err(format!(
                    "the history's audit events are not contiguous: event #{} is missing",
                    i + 1
                )));
            }
            if seq <= held && existing[i].hash != hash {
                return Ok(Err(format!(
                    "the catalog already holds {held} audit events, and event #{seq} differs from the history's; rebuild into an empty data directory"
                )));
            }
        }
        Ok(Ok((held as usize).min(events.len())))
    }

    /// Inserts one row unless its key is taken; whether it was added.
    async fn insert_history_row(&self, t: &Table, row: &HistoryRow) -> Result<bool> {
        let names: Vec<&str> = t.columns.iter().map(|(n, _)| *n).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            t.name,
            names.join(", "),
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (name, col) in t.columns {
            let value = row.columns.get(*name).unwrap_or(&serde_json::Value::Null);
            let missing = || {
                self.invalid(format!(
                    "history row {} of {}: column `{name}` is missing or of the wrong type",
                    row.key, t.name
                ))
            };
            query = match col {
                Text => query.bind(value.as_str().ok_or_else(missing)?.to_string()),
                OptText => query.bind(value.as_str().map(str::to_string)),
                Int => query.bind(value.as_i64().ok_or_else(missing)?),
                OptInt => query.bind(value.as_i64()),
            };
        }
        let done = query.execute(&self.pool).await.map_err(self.db())?;
        Ok(done.rows_affected() > 0)
    }
}
