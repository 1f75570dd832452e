//! Errors of the plugin host: finding and loading plugins, and calls that fail inside them.

use std::path::PathBuf;

/// Result of host operations.
pub type Result<T, E = HostError> = std::result::Result<T, E>;

/// What went wrong finding, loading or calling a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No file `libcaudal_NAME.so` in any directory of the search path.
    #[error(
        "no plugin for connector `{name}`: {file} is not in {searched}; build it (cargo build --workspace) \
         or point plugin_dir / CAUDAL_PLUGIN_PATH at it"
    )]
    NotFound {
        /// The connector name asked for.
        name: String,
        /// The file name looked for.
        file: String,
        /// The directories searched, in order, joined for display.
        searched: String,
    },
    /// The connector name cannot be a plugin file name.
    #[error("`{name}` is not a valid connector name: use lower-case letters, digits and `_`")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The dynamic loader refused the file.
    #[error("cannot load plugin {path}: {message}")]
    Load {
        /// The plugin file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The file exports no caudal entry symbol of any version.
    #[error("{path} is not a caudal connector plugin: it exports no `{symbol}` symbol")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The symbol looked for.
        symbol: &'static str,
    },
    /// The plugin was built for another ABI major version.
    #[error(
        "plugin {path} was built for connector ABI version {plugin_abi}, but this caudal uses ABI version \
         {host_abi}; rebuild the plugin against a caudal-connector of ABI version {host_abi}"
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The ABI version the plugin declares.
        plugin_abi: u32,
        /// The ABI version of this host.
        host_abi: u32,
    },
    /// The plugin's function table is smaller than this host's table of the same ABI version.
    #[error(
        "plugin {path}: its function table has {plugin_size} bytes, ABI version {abi} needs at least \
         {host_size}; rebuild the plugin"
    )]
    TableTooSmall {
        /// The file.
        path: PathBuf,
        /// Size the plugin declares.
        plugin_size: u32,
        /// Size this host knows.
        host_size: u32,
        /// The ABI version.
        abi: u32,
    },
    /// The plugin's table is malformed (null, or a name that is not UTF-8).
    #[error("plugin {path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The file name says one connector, the plugin another.
    #[error("plugin {path} calls itself `{found}`, but its file name says `{expected}`")]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// Name from the file name.
        expected: String,
        /// Name the plugin reports.
        found: String,
    },
    /// A call into a plugin returned an error (or panicked, or hit a poisoned handle).
    #[error("plugin `{plugin}`, {function}: {source}")]
    Call {
        /// Plugin name.
        plugin: String,
        /// The ABI function called (`open`, `write`, ...).
        function: &'static str,
        /// The error the plugin reported; `source.is_retryable()` drives retries.
        source: caudal_connector::Error,
    },
    /// The host could not encode a request or decode a result of a plugin call.
    #[error("plugin `{plugin}`, {function}: {source}")]
    Exchange {
        /// Plugin name.
        plugin: String,
        /// The ABI function.
        function: &'static str,
        /// The encoding or decoding error.
        source: caudal_connector::Error,
    },
    /// A plugin directory exists but cannot be listed.
    #[error("cannot list plugin directory {dir}: {message}")]
    ListDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        message: String,
    },
}

impl HostError {
    /// Whether the failed operation may succeed when retried (a connector's retryable error).
    pub fn is_retryable(&self) -> bool {
        matches!(self, HostError::Call { source, .. } if source.is_retryable())
    }

    /// The connector's own error, for a failed call.
    pub fn connector_error(&self) -> Option<&caudal_connector::Error> {
        match self {
            HostError::Call { source, .. } => Some(source),
            _ => None,
        }
    }
}
