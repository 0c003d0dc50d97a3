//! Size and content anomalies: each backup compared with the policy's previous one. A
//! measure that moved further than the policy's band (`[anomalies] band`, a fraction of the
//! previous value) is an anomaly: a table that lost 90% of its rows, a files source that
//! shrank by more than half. Measures too small to judge are left alone (under 10 files,
//! 1 MiB, or 100 rows, before and after).

use serde::Deserialize;

use backstop_repo::SourceFacts;

/// `[anomalies]` in a policy.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySettings {
    /// How far a measure may move from the previous backup's, as a fraction of it, before it
    /// is an anomaly: 0.5 flags losing more than half or growing by more than half.
    #[serde(default = "default_band")]
    pub band: f64,
}

fn default_band() -> f64 {
    0.5
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            band: default_band(),
        }
    }
}

/// One measure that moved beyond the band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// `bytes`, `files`, `tables`, or `rows of schema.table`.
    pub measure: String,
    pub before: u64,
    pub after: u64,
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let change = (self.after as f64 - self.before as f64) / self.before.max(1) as f64;
        write!(
            f,
            "anomaly: {} went from {} to {} ({:+.0}%) since the previous backup",
            self.measure,
            self.before,
            self.after,
            change * 100.0
        )
    }
}

/// The measures of `current` that moved beyond `band` from `previous`.
pub fn compare(previous: &SourceFacts, current: &SourceFacts, band: f64) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut judge = |measure: String, before: u64, after: u64, floor: u64| {
        if before.max(after) < floor {
            return;
        }
        let moved = (after as f64 - before as f64).abs();
        if moved > band * before as f64 {
            out.push(Anomaly {
                measure,
                before,
                after,
            });
        }
    };
    judge("bytes".into(), previous.bytes, current.bytes, 1 << 20);
    judge("files".into(), previous.file_count, current.file_count, 10);
    for (table, before) in &previous.tables {
        let after = current.tables.get(table).copied().unwrap_or(0);
        judge(format!("rows of {table}"), *before, after, 100);
    }
    for (table, after) in &current.tables {
        if !previous.tables.contains_key(table) {
            judge(format!("rows of {table}"), 0, *after, 100);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(files: u64, bytes: u64, tables: &[(&str, u64)]) -> SourceFacts {
        SourceFacts {
            file_count: files,
            bytes,
            tables: tables.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            ..SourceFacts::default()
        }
    }

    #[test]
    fn a_table_losing_most_of_its_rows_or_a_tree_shrinking_by_more_than_half_is_named() {
        let before = facts(
            40,
            10 << 20,
            &[
                ("public.orders", 2000),
                ("public.tiny", 5),
                ("public.items", 500),
            ],
        );
        let after = facts(
            15,
            4 << 20,
            &[
                ("public.orders", 150),
                ("public.tiny", 0),
                ("public.items", 520),
            ],
        );
        let found = compare(&before, &after, 0.5);
        let measures: Vec<&str> = found.iter().map(|a| a.measure.as_str()).collect();
        assert_eq!(measures, ["bytes", "files", "rows of public.orders"]);
        assert_eq!(
            found[2].to_string(),
            "anomaly: rows of public.orders went from 2000 to 150 (-92%) since the previous backup"
        );
        // Within the band, nothing; a table that appears with many rows is a jump.
        assert!(compare(&before, &before, 0.5).is_empty());
        let grown = facts(
            40,
            10 << 20,
            &[("public.orders", 2900), ("public.new", 1000)],
        );
        let found = compare(&before, &grown, 0.5);
        let measures: Vec<&str> = found.iter().map(|a| a.measure.as_str()).collect();
        assert_eq!(
            measures,
            ["rows of public.items", "rows of public.new"],
            "items vanished, new appeared; orders grew 45%, within the band"
        );
    }
}
