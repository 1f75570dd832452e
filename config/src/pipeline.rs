//! [`Pipeline`]: a validated pipeline file, and the entry points that load one.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::connection::Connection;
use crate::error::{ConfigError, Location, Result};
use crate::glob;
use crate::journal::JournalSettings;
use crate::retry::RetryPolicy;
use crate::schedule::Schedule;
use crate::secret::{MASK, Secret};
use crate::stream::Stream;

/// A validated pipeline file.
///
/// Every rule of the file format holds: each stream's sources and destinations are defined
/// connections, each mode has what it needs, names are unique, secrets are resolved. Paths
/// (`journal.dir`, `plugin_dir`, connections' `path`) are resolved against the file's directory.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub(crate) path: PathBuf,
    pub(crate) base_dir: PathBuf,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) plugin_dir: Option<PathBuf>,
    pub(crate) journal: JournalSettings,
    pub(crate) connections: BTreeMap<String, Connection>,
    pub(crate) streams: Vec<Stream>,
    pub(crate) retry: RetryPolicy,
    pub(crate) schedule: Option<Schedule>,
    /// Every secret value resolved, longest first, for [`Pipeline::scrub`].
    pub(crate) secrets: Vec<Secret>,
}

impl Pipeline {
    /// Reads, parses and validates a pipeline file; `${VAR}` references read the process
    /// environment.
    pub fn from_path(path: &Path) -> Result<Pipeline> {
        let read_error = |cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        };
        let bytes = std::fs::read(path).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is not UTF-8",
            ))
        })?;
        Pipeline::from_str(&text, path)
    }

    /// Parses and validates pipeline text. `origin` is the file it came from: errors name it and
    /// relative paths resolve against its directory (it need not exist). `${VAR}` references
    /// read the process environment.
    pub fn from_str(text: &str, origin: &Path) -> Result<Pipeline> {
        Pipeline::from_str_with_env(text, origin, |var| std::env::var_os(var))
    }

    /// Like [`Pipeline::from_str`], with `env` answering `${VAR}` lookups instead of the process
    /// environment (for tests, and for callers that keep secrets elsewhere).
    pub fn from_str_with_env(
        text: &str,
        origin: &Path,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Pipeline> {
        let parent = origin.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = parent.unwrap_or(Path::new("."));
        // `absolute` neither touches the disk nor resolves symlinks; it only fails on an empty
        // path, which `dir` never is.
        let base_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        crate::load::load(text, origin, &base_dir, &env)
    }

    /// The pipeline file, as it was named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The absolute directory of the pipeline file, against which relative paths resolve.
    pub fn dir(&self) -> &Path {
        &self.base_dir
    }

    /// `[pipeline] name`: the pipeline's identity in the journal and in sinks' offset rows.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `[pipeline] description`, if given.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// `[pipeline] plugin_dir`, resolved: searched for connector plugins before
    /// `CAUDAL_PLUGIN_PATH` and the directory of the `caudal` binary.
    pub fn plugin_dir(&self) -> Option<&Path> {
        self.plugin_dir.as_deref()
    }

    /// The `[journal]` settings.
    pub fn journal(&self) -> &JournalSettings {
        &self.journal
    }

    /// The journal directory (`[journal] dir`, default `journal` next to the file), resolved.
    pub fn journal_dir(&self) -> PathBuf {
        self.journal.dir.clone()
    }

    /// Every connection, sorted by name.
    pub fn connections(&self) -> impl ExactSizeIterator<Item = &Connection> {
        self.connections.values()
    }

    /// A connection by name.
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.get(name)
    }

    /// The streams, in file order.
    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The pipeline's `[retry]` policy (streams may override it: see [`Stream::retry`]).
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The `[schedule]`, if any.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The connection names a `from` entry (a name or a pattern such as `tienda_*`) stands for,
    /// sorted. Useful for `--partition`: an exact name that is not defined gives nothing.
    pub fn expand_from(&self, name_or_pattern: &str) -> Vec<&str> {
        if glob::is_pattern(name_or_pattern) {
            self.connections
                .keys()
                .filter(|name| glob::matches(name_or_pattern, name))
                .map(String::as_str)
                .collect()
        } else {
            self.connections
                .get_key_value(name_or_pattern)
                .map(|(k, _)| k.as_str())
                .into_iter()
                .collect()
        }
    }

    /// `text` with every secret value of this pipeline replaced by `***`: pass a database's
    /// error message through this before it reaches a log, the journal or the terminal.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.expose().as_str()) {
                out = Cow::Owned(out.replace(secret.expose().as_str(), MASK));
            }
        }
        out
    }

    /// An error about this file at `location`, for checks made outside this crate (a
    /// connector that is not installed, a setting a plugin refuses).
    pub fn error_at(&self, location: Location, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.clone(),
            location,
            message: message.into(),
        }
    }
}
