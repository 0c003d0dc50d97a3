//! Engine errors. Rules: name the file (with line and column where there is one), the
//! policy, the repository or the environment variable; never print a secret's value.

use std::fmt;

/// A place in a file, for messages: `path:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn from_offset(file: &str, text: &str, offset: usize) -> Self {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        Self {
            file: file.to_string(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem in a configuration or policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Turns a TOML parse error into a located problem.
pub fn toml_problem(file: &str, text: &str, err: &toml::de::Error) -> Problem {
    let offset = err.span().map(|s| s.start).unwrap_or(0);
    Problem {
        location: Location::from_offset(file, text, offset),
        message: err.message().trim().to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no policy named `{0}`")]
    UnknownPolicy(String),
    #[error("no repository named `{0}` in the configuration")]
    UnknownRepository(String),
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
    /// Restore safety: the target is, is inside or holds a source; nothing was written.
    #[error("refusing to restore: {clash}; the restore would {}. {remedy}", .clash.consequence())]
    ReplacesSource {
        clash: Box<backstop_sources::SourceClash>,
        remedy: &'static str,
    },
    #[error(transparent)]
    Repo(#[from] backstop_repo::RepoError),
    #[error(transparent)]
    Source(#[from] backstop_sources::SourceError),
    #[error(transparent)]
    Catalog(#[from] backstop_catalog::CatalogError),
    #[error("cancelled before the snapshot was committed; nothing was made visible")]
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbb = 2\n  c";
        assert_eq!(Location::from_offset("f", text, 0).to_string(), "f:1:1");
        assert_eq!(Location::from_offset("f", text, 6).to_string(), "f:2:1");
        assert_eq!(Location::from_offset("f", text, 15).to_string(), "f:3:3");
    }
}
