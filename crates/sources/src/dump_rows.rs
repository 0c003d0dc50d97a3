//! Row counts read from a `mariadb-dump` stream as it passes into the repository.
//!
//! `mariadb-dump --single-transaction` cannot share its snapshot with another session, so
//! counting rows in a separate session could disagree with the dump while writers are
//! active. Counting the rows *in the dump* cannot: the counts describe exactly the data
//! stored. The dump's shape is fixed by the flags Backstop passes (extended inserts, no
//! column lists): a table is `CREATE TABLE \`name\`` at the start of a line, and its rows
//! are the top-level tuples of `INSERT INTO \`name\` VALUES (…),(…);` statements, which
//! start a line and may run over several (MariaDB 10.11 writes one tuple per line). Strings
//! are quoted with backslash escapes. Routine, trigger and
//! event bodies sit between `DELIMITER ;;` and `DELIMITER ;` and are not looked into.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

const INSERT: &[u8] = b"INSERT INTO `";
const CREATE: &[u8] = b"CREATE TABLE `";
const DELIMITER: &[u8] = b"DELIMITER ";
/// The line mariadb-dump writes last (with `--skip-dump-date`, without a date after it).
pub const TRAILER_TEXT: &str = "-- Dump completed";
const TRAILER: &[u8] = TRAILER_TEXT.as_bytes();

/// The bytes that matter inside an INSERT's values outside a quoted string: every other byte
/// (digits, commas, hex, `NULL`, line breaks) is passed over.
const UNQUOTED_SPECIAL: [bool; 256] = {
    let mut special = [false; 256];
    let mut i = 0;
    while i < 5 {
        special[b"'\"();"[i] as usize] = true;
        i += 1;
    }
    special
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameFor {
    Create,
    Insert,
}

#[derive(Debug)]
enum State {
    /// At the start of a line, matching its first bytes against the prefixes above.
    LineStart(Vec<u8>),
    SkipLine,
    Name {
        name: Vec<u8>,
        for_: NameFor,
        tick: bool,
    },
    Delimiter(Vec<u8>),
    /// Inside an INSERT's values, after the table name.
    Values {
        quote: Option<u8>,
        escaped: bool,
        depth: u32,
    },
}

/// Counts tables and rows in a dump fed to it in pieces of any size.
#[derive(Debug)]
pub struct RowCounter {
    tables: BTreeMap<String, u64>,
    state: State,
    current: String,
    /// Rows of `current` seen since they were last added to `tables`: counted in a field
    /// rather than in the map, so that a row costs no lookup.
    current_rows: u64,
    in_routine: bool,
    completed: bool,
}

impl Default for RowCounter {
    fn default() -> Self {
        Self {
            tables: BTreeMap::new(),
            state: State::LineStart(Vec::new()),
            current: String::new(),
            current_rows: 0,
            in_routine: false,
            completed: false,
        }
    }
}

impl RowCounter {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        // Values and skipped lines are nearly all of a dump: they are scanned a slice at a
        // time, and only the bytes that change the state go through `step`.
        while let Some(&first) = bytes.first() {
            let used = match &mut self.state {
                State::SkipLine => match memchr::memchr(b'\n', bytes) {
                    Some(at) => {
                        self.state = State::LineStart(Vec::new());
                        at + 1
                    }
                    None => bytes.len(),
                },
                State::Values {
                    quote: Some(q),
                    escaped: false,
                    ..
                } => match memchr::memchr2(b'\\', *q, bytes) {
                    Some(at) => {
                        self.step(bytes[at]);
                        at + 1
                    }
                    None => bytes.len(),
                },
                State::Values { quote: None, .. } => {
                    match bytes.iter().position(|&b| UNQUOTED_SPECIAL[b as usize]) {
                        Some(at) => {
                            self.step(bytes[at]);
                            at + 1
                        }
                        None => bytes.len(),
                    }
                }
                _ => {
                    self.step(first);
                    1
                }
            };
            bytes = &bytes[used..];
        }
        self.add_current_rows();
    }

    /// Adds the rows counted in `current_rows` to their table.
    fn add_current_rows(&mut self) {
        if self.current_rows > 0 {
            *self.tables.entry(self.current.clone()).or_default() += self.current_rows;
            self.current_rows = 0;
        }
    }

    /// The completion trailer has been seen (mariadb-dump writes it last).
    pub fn completed(&self) -> bool {
        self.completed
    }

    /// Every table created in the dump, with the number of rows inserted into it.
    pub fn tables(&self) -> &BTreeMap<String, u64> {
        &self.tables
    }

    fn step(&mut self, b: u8) {
        let next = match &mut self.state {
            State::LineStart(seen) => {
                if b == b'\n' {
                    Some(State::LineStart(Vec::new()))
                } else {
                    seen.push(b);
                    let prefixes: &[&[u8]] = if self.in_routine {
                        &[DELIMITER]
                    } else {
                        &[INSERT, CREATE, DELIMITER, TRAILER]
                    };
                    if seen == INSERT && !self.in_routine {
                        Some(State::Name {
                            name: Vec::new(),
                            for_: NameFor::Insert,
                            tick: false,
                        })
                    } else if seen == CREATE && !self.in_routine {
                        Some(State::Name {
                            name: Vec::new(),
                            for_: NameFor::Create,
                            tick: false,
                        })
                    } else if seen == DELIMITER {
                        Some(State::Delimiter(Vec::new()))
                    } else if seen == TRAILER && !self.in_routine {
                        self.completed = true;
                        Some(State::SkipLine)
                    } else if prefixes.iter().any(|p| p.starts_with(seen)) {
                        None
                    } else {
                        Some(State::SkipLine)
                    }
                }
            }
            State::SkipLine => (b == b'\n').then(|| State::LineStart(Vec::new())),
            State::Delimiter(arg) => {
                if b == b'\n' {
                    let arg = String::from_utf8_lossy(arg);
                    self.in_routine = arg.trim() != ";";
                    Some(State::LineStart(Vec::new()))
                } else {
                    arg.push(b);
                    None
                }
            }
            State::Name { name, for_, tick } => {
                if *tick {
                    *tick = false;
                    if b == b'`' {
                        // A doubled backtick is a backtick in the name.
                        name.push(b);
                        None
                    } else {
                        let table = String::from_utf8_lossy(name).into_owned();
                        let for_ = *for_;
                        self.name_done(table, for_, b)
                    }
                } else if b == b'`' {
                    *tick = true;
                    None
                } else {
                    name.push(b);
                    None
                }
            }
            State::Values {
                quote,
                escaped,
                depth,
            } => {
                if let Some(q) = *quote {
                    if *escaped {
                        *escaped = false;
                    } else if b == b'\\' {
                        *escaped = true;
                    } else if b == q {
                        *quote = None;
                    }
                    None
                } else {
                    match b {
                        b'\'' | b'"' => {
                            *quote = Some(b);
                            None
                        }
                        b'(' => {
                            if *depth == 0 {
                                self.current_rows += 1;
                            }
                            *depth += 1;
                            None
                        }
                        b')' => {
                            *depth = depth.saturating_sub(1);
                            None
                        }
                        b';' if *depth == 0 => Some(State::SkipLine),
                        _ => None,
                    }
                }
            }
        };
        if let Some(next) = next {
            self.state = next;
        }
    }

    /// The closing backtick of a name has been read; `b` is the byte after it.
    fn name_done(&mut self, table: String, for_: NameFor, b: u8) -> Option<State> {
        match for_ {
            NameFor::Create => {
                self.tables.entry(table).or_insert(0);
                Some(if b == b'\n' {
                    State::LineStart(Vec::new())
                } else {
                    State::SkipLine
                })
            }
            NameFor::Insert => {
                if table != self.current {
                    self.add_current_rows();
                    self.current = table;
                }
                Some(if b == b'\n' {
                    State::LineStart(Vec::new())
                } else {
                    State::Values {
                        quote: None,
                        escaped: false,
                        depth: 0,
                    }
                })
            }
        }
    }
}

/// Passes a dump through unchanged while counting its rows.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<Mutex<RowCounter>>,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R, counter: Arc<Mutex<RowCounter>>) -> Self {
        Self { inner, counter }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter
            .lock()
            .expect("row counter lock")
            .feed(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DUMP: &str = r#"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB
/*!40101 SET NAMES utf8mb4 */;
DROP TABLE IF EXISTS `customers`;
CREATE TABLE `customers` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(100) NOT NULL COMMENT 'INSERT INTO `x` VALUES (1)',
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;
LOCK TABLES `customers` WRITE;
INSERT INTO `customers` VALUES (1,'O\'Brien (Ltd)'),(2,'Zoë \\'),(3,'a),(b'),(4,NULL);
INSERT INTO `customers` VALUES (5,'line\nbreak');
UNLOCK TABLES;
CREATE TABLE `empty``one` (
  `id` int(11)
);
CREATE TABLE `blobs` (`b` blob);
INSERT INTO `blobs` VALUES
(0x00FF28),
(0x29);
DELIMITER ;;
CREATE TRIGGER t AFTER INSERT ON customers FOR EACH ROW
INSERT INTO `customers` VALUES (99,'not a row of the dump');
;;
DELIMITER ;
/*!50001 CREATE VIEW `v` AS SELECT 1 AS `id` */;
"#;

    #[test]
    fn counts_rows_per_table_from_a_dump() {
        let mut counter = RowCounter::default();
        counter.feed(DUMP.as_bytes());
        let expected: BTreeMap<String, u64> = [("blobs", 2), ("customers", 5), ("empty`one", 0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(counter.tables(), &expected);
    }

    /// Issue 15: a dump that stopped part-way but exited 0 must not pass for a whole one.
    #[test]
    fn only_a_dump_that_reached_its_trailer_is_complete() {
        let mut cut = RowCounter::default();
        cut.feed(DUMP.as_bytes());
        assert!(!cut.completed(), "no trailer yet");
        let mut whole = RowCounter::default();
        whole.feed(DUMP.as_bytes());
        whole.feed(b"\n-- Dump completed\n");
        assert!(whole.completed());
        // The trailer's text inside a routine body or a value does not count.
        let mut fooled = RowCounter::default();
        fooled.feed(b"DELIMITER ;;\n-- Dump completed\n;;\nDELIMITER ;\n");
        fooled.feed(b"INSERT INTO `t` VALUES ('\n-- Dump completed\n');\n");
        assert!(!fooled.completed());
    }

    #[test]
    fn counting_does_not_depend_on_how_the_stream_is_split() {
        let mut whole = RowCounter::default();
        whole.feed(DUMP.as_bytes());
        for size in [1, 2, 3, 7, 64] {
            let mut split = RowCounter::default();
            DUMP.as_bytes().chunks(size).for_each(|c| split.feed(c));
            assert_eq!(split.tables(), whole.tables(), "pieces of {size}");
        }
    }

    proptest! {
        /// The counter scans whole slices between the bytes that matter; wherever the pieces
        /// are cut (inside a quoted value, between an escape and what it escapes, inside a
        /// table's name), it counts as it does over the whole dump.
        #[test]
        fn any_cut_of_the_stream_counts_alike(cuts in proptest::collection::vec(0..DUMP.len(), 0..12)) {
            let mut whole = RowCounter::default();
            whole.feed(DUMP.as_bytes());
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut split = RowCounter::default();
            let mut from = 0;
            for cut in cuts.into_iter().chain([DUMP.len()]) {
                split.feed(&DUMP.as_bytes()[from..cut]);
                from = cut;
            }
            prop_assert_eq!(split.tables(), whole.tables());
        }
    }

    #[test]
    fn rows_of_a_table_inserted_again_after_another_add_up() {
        let mut counter = RowCounter::default();
        counter.feed(b"CREATE TABLE `a` (`x` int);\nCREATE TABLE `b` (`x` int);\n");
        counter.feed(b"INSERT INTO `a` VALUES (1),(2);\nINSERT INTO `b` VALUES (1);\n");
        counter.feed(b"INSERT INTO `a` VALUES (3);\nINSERT INTO `a` VALUES\n(4),\n(5);\n");
        let counts: Vec<(&str, u64)> = counter
            .tables()
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(counts, [("a", 5), ("b", 1)]);
    }

    /// A string value as mariadb-dump escapes it.
    fn escape(s: &str) -> String {
        let mut out = String::from("'");
        for c in s.chars() {
            match c {
                '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    proptest! {
        #[test]
        fn any_string_values_count_as_one_row_each(
            rows in proptest::collection::vec(".*", 0..20),
            per_insert in 1usize..5,
        ) {
            let mut dump = String::from("CREATE TABLE `t` (\n  `s` text\n);\n");
            for group in rows.chunks(per_insert) {
                let tuples: Vec<String> = group.iter().map(|s| format!("({})", escape(s))).collect();
                dump.push_str(&format!("INSERT INTO `t` VALUES {};\n", tuples.join(",")));
            }
            let mut counter = RowCounter::default();
            counter.feed(dump.as_bytes());
            prop_assert_eq!(counter.tables().get("t").copied(), Some(rows.len() as u64));
        }
    }
}
