//! The crate's error type and the `line:column` positions it carries.
//!
//! Every error a user can cause names the pipeline file and, when it comes from the file's text,
//! the 1-based line and column of the offending key or value. Validation collects every problem
//! it finds, so one `caudal validate` shows them all; they come back as [`ConfigError::Several`],
//! sorted by position. No variant ever holds the value of a resolved secret: messages name the
//! environment variable or the secret file instead.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// `Result` with [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A 1-based line and column (in characters) within a pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The start of a file: where problems with no better position are reported.
    pub const START: Location = Location { line: 1, column: 1 };
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a pipeline file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The pipeline file itself could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the pipeline file: {cause}", path.display())]
    Read {
        /// The file as it was named.
        path: PathBuf,
        /// What the operating system said.
        cause: io::Error,
    },
    /// The text is not valid TOML, or a key is unknown or missing, or a value has the wrong type
    /// or an invalid value (a bad duration, cron expression, size, ...).
    #[error("{}:{location}: {message}", file.display())]
    Syntax {
        /// The pipeline file.
        file: PathBuf,
        /// Where the offending key or value starts.
        location: Location,
        /// What is wrong, and how to fix it when that is not obvious.
        message: String,
    },
    /// The file parses but breaks a rule between settings: a stream names a connection that does
    /// not exist, `merge` without `primary_key`, two streams with one name, ...
    #[error("{}:{location}: {message}", file.display())]
    Invalid {
        /// The pipeline file.
        file: PathBuf,
        /// Where the offending key or value starts.
        location: Location,
        /// What is wrong, and how to fix it.
        message: String,
    },
    /// A `${VAR}` reference names an environment variable that is not set.
    #[error(
        "{}:{location}: environment variable `{var}` is not set (used by `{key}`); \
         export it before running caudal",
        file.display()
    )]
    MissingEnv {
        /// The pipeline file.
        file: PathBuf,
        /// Where the reference is written.
        location: Location,
        /// The setting that uses it, e.g. `connections.tienda_01.url`.
        key: String,
        /// The variable's name.
        var: String,
    },
    /// A `file:PATH` secret could not be read.
    #[error(
        "{}:{location}: cannot read secret file `{}` (used by `{key}`): {cause}",
        file.display(),
        path.display()
    )]
    SecretFile {
        /// The pipeline file.
        file: PathBuf,
        /// Where the `file:` value is written.
        location: Location,
        /// The setting that uses it, e.g. `connections.warehouse.url`.
        key: String,
        /// The secret file, resolved against the pipeline file's directory.
        path: PathBuf,
        /// What the operating system said (never the file's content).
        cause: io::Error,
    },
    /// More than one problem; each is one of the other variants, sorted by position.
    #[error("{}", display_several(.0))]
    Several(Vec<ConfigError>),
}

fn display_several(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl ConfigError {
    /// The pipeline file the error is about (the first problem's, for [`ConfigError::Several`]).
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. } => path,
            ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::MissingEnv { file, .. }
            | ConfigError::SecretFile { file, .. } => file,
            ConfigError::Several(errors) => errors.first().map_or(Path::new(""), ConfigError::file),
        }
    }

    /// Where in the file the (first) problem is; `None` when the file could not be read at all.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { location, .. }
            | ConfigError::Invalid { location, .. }
            | ConfigError::MissingEnv { location, .. }
            | ConfigError::SecretFile { location, .. } => Some(*location),
            ConfigError::Several(errors) => errors.first().and_then(ConfigError::location),
        }
    }

    /// The 1-based line of the (first) problem.
    pub fn line(&self) -> Option<usize> {
        self.location().map(|l| l.line)
    }

    /// The 1-based column, in characters, of the (first) problem.
    pub fn column(&self) -> Option<usize> {
        self.location().map(|l| l.column)
    }

    /// Every single problem: the error itself, or the list inside [`ConfigError::Several`].
    pub fn problems(&self) -> &[ConfigError] {
        match self {
            ConfigError::Several(errors) => errors,
            single => std::slice::from_ref(single),
        }
    }

    /// Builds the error for a list of problems: the problem itself when there is one.
    pub(crate) fn from_list(mut errors: Vec<ConfigError>) -> ConfigError {
        errors.sort_by_key(|e| e.location());
        if errors.len() == 1
            && let Some(only) = errors.pop()
        {
            return only;
        }
        ConfigError::Several(errors)
    }
}
