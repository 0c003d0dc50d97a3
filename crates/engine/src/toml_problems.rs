//! Every problem in a TOML file, not only the first: serde stops at the first field it
//! cannot take, so a file with two typos used to show the second only once the first was
//! fixed. [`deserialize_all`] blanks out the entry that failed (with spaces, so that every
//! offset, and every later line and column, stays as in the file) and tries again, up to a
//! bound, reporting each failure at its place.

use serde::de::DeserializeOwned;

use crate::error::{toml_problem, Problem};

/// How many failing entries one file is searched for.
const MOST_PROBLEMS: usize = 32;

/// `text` deserialized as `T`, with every problem found on the way: `Some` when what was
/// left after blanking the failing entries deserialized (so that the caller can validate
/// further and report those problems too), `None` when an error could not be pinned to an
/// entry (a syntax error, a missing required field).
pub fn deserialize_all<T: DeserializeOwned>(file: &str, text: &str) -> (Option<T>, Vec<Problem>) {
    let mut current = text.to_string();
    let mut problems = Vec::new();
    while problems.len() < MOST_PROBLEMS {
        match toml::from_str::<T>(&current) {
            Ok(value) => return (Some(value), problems),
            Err(e) => {
                // Offsets in `current` are those of `text`.
                let mut problem = toml_problem(file, text, &e);
                let mut entry = e.span().and_then(|s| entry_at(&current, s.start));
                if entry.is_none() {
                    // Placed at a whole table: the entry to blame is where it is.
                    entry = e
                        .span()
                        .and_then(|s| culprit::<T>(&current, s, e.message()));
                    if let Some((range, _)) = &entry {
                        problem.location =
                            crate::error::Location::from_offset(file, text, range.start);
                    }
                }
                // Named by its key when the message does not name it already.
                if let Some((_, key)) = &entry {
                    if !problem.message.contains(&format!("`{key}`")) {
                        problem.message = format!("{key}: {}", problem.message);
                    }
                }
                problems.push(problem);
                // A missing field is no entry to blank: blanking another would only find it
                // missing again.
                if e.message().starts_with("missing field") {
                    return (None, problems);
                }
                let Some((range, _)) = entry else {
                    return (None, problems);
                };
                blank(&mut current, range);
            }
        }
    }
    (None, problems)
}

/// The entry of the table whose span holds `span` (an error serde could only place at a
/// whole table, as inside an internally tagged enum such as `[source]`) that causes it:
/// the first whose blanking makes this error go away without a field going missing.
fn culprit<T: DeserializeOwned>(
    text: &str,
    span: std::ops::Range<usize>,
    message: &str,
) -> Option<(std::ops::Range<usize>, String)> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let table = table_at(doc.as_table(), span.start)?;
    for (name, item) in table.iter() {
        let (Some(key), Some(value)) = (table.key(name).and_then(|k| k.span()), item.span()) else {
            continue;
        };
        let range = key.start..value.end;
        let mut without = text.to_string();
        blank(&mut without, range.clone());
        let gone = match toml::from_str::<T>(&without) {
            Ok(_) => true,
            Err(other) => {
                other.message() != message && !other.message().starts_with("missing field")
            }
        };
        if gone {
            return Some((range, name.to_string()));
        }
    }
    None
}

/// The innermost standard table whose span holds `offset`.
fn table_at(table: &toml_edit::Table, offset: usize) -> Option<&toml_edit::Table> {
    for (_, item) in table.iter() {
        if let toml_edit::Item::Table(inner) = item {
            if let Some(found) = table_at(inner, offset) {
                return Some(found);
            }
            if inner.span().is_some_and(|s| s.contains(&offset)) {
                return Some(inner);
            }
        }
    }
    None
}

/// Where the entry at `path` (keys from the top: `["source", "paths"]`) starts in `text`:
/// its key, or a table's header; `None` when it is not there.
pub fn offset_of(text: &str, path: &[&str]) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let (last, parents) = path.split_last()?;
    let mut table = doc.as_table();
    for key in parents {
        table = table.get(key)?.as_table()?;
    }
    match table.get(last)? {
        toml_edit::Item::Table(inner) => inner.span().map(|s| s.start),
        item => table
            .key(last)
            .and_then(|k| k.span())
            .or_else(|| item.span())
            .map(|s| s.start),
    }
}

/// The byte range of the `key = value` entry of a standard table (or array of tables)
/// holding `offset`; an inline table or array is one entry, as blanking part of it could
/// leave it malformed.
fn entry_at(text: &str, offset: usize) -> Option<(std::ops::Range<usize>, String)> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    find_in(doc.as_table(), offset)
}

fn find_in(table: &toml_edit::Table, offset: usize) -> Option<(std::ops::Range<usize>, String)> {
    for (name, item) in table.iter() {
        match item {
            toml_edit::Item::Table(inner) => {
                if let Some(found) = find_in(inner, offset) {
                    return Some(found);
                }
            }
            toml_edit::Item::ArrayOfTables(tables) => {
                for inner in tables.iter() {
                    if let Some(found) = find_in(inner, offset) {
                        return Some(found);
                    }
                }
            }
            toml_edit::Item::Value(_) => {
                let (Some(key), Some(value)) =
                    (table.key(name).and_then(|k| k.span()), item.span())
                else {
                    continue;
                };
                let range = key.start..value.end;
                if range.contains(&offset) {
                    return Some((range, name.to_string()));
                }
            }
            toml_edit::Item::None => {}
        }
    }
    None
}

/// Spaces over `range`, line breaks kept.
fn blank(text: &mut String, range: std::ops::Range<usize>) {
    let blanked: String = text[range.clone()]
        .chars()
        .map(|c| if c == '\n' || c == '\r' { c } else { ' ' })
        .collect();
    // Multi-byte characters become one space each: pad to keep the byte length.
    let pad = range.len() - blanked.len();
    text.replace_range(range, &format!("{blanked}{}", " ".repeat(pad)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        name: String,
        count: Option<u32>,
        #[serde(default)]
        section: Section,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        size: Option<u64>,
    }

    #[test]
    fn every_failing_entry_is_reported_at_its_place() {
        let text =
            "name = \"x\"\nnmae = \"typo\"\ncount = \"many\"\n\n[section]\nsize = 1\nsiez = 2\n";
        let (parsed, problems) = deserialize_all::<File>("p.toml", text);
        let places: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.location.line, p.message.as_str()))
            .collect();
        assert_eq!(problems.len(), 3, "{places:?}");
        assert_eq!(places[0].0, 2);
        assert!(places[0].1.contains("nmae"), "{places:?}");
        assert_eq!(places[1].0, 3);
        assert_eq!(places[2].0, 7);
        assert!(places[2].1.contains("siez"), "{places:?}");
        let parsed = parsed.expect("the rest deserializes");
        assert_eq!(parsed.section.size, Some(1));
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Tagged {
        Db { url: String, jobs: Option<u32> },
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct WithTagged {
        source: Tagged,
    }

    /// Issue 15: a wrong type inside `[source]` (an internally tagged enum) was reported at
    /// the table's header, not naming the field.
    #[test]
    fn a_wrong_type_inside_a_tagged_table_is_at_its_key() {
        let text = "[source]\nkind = \"db\"\nurl = \"x\"\njobs = \"four\"\n";
        let (_, problems) = deserialize_all::<WithTagged>("p.toml", text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let shown = problems[0].to_string();
        assert!(shown.starts_with("p.toml:4:1: jobs: "), "{shown}");
    }

    #[test]
    fn a_clean_file_has_no_problems_and_a_broken_one_stops() {
        let (parsed, problems) = deserialize_all::<File>("p.toml", "name = \"ünï\"\n");
        assert!(parsed.is_some() && problems.is_empty());
        let (parsed, problems) = deserialize_all::<File>("p.toml", "name = \n");
        assert!(parsed.is_none());
        assert_eq!(problems.len(), 1);
        let (parsed, problems) = deserialize_all::<File>("p.toml", "count = 1\n");
        assert!(
            parsed.is_none(),
            "a missing required field cannot be blanked away"
        );
        assert_eq!(problems.len(), 1);
    }
}
