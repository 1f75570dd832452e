//! The `[connections.NAME]` keys of a DuckDB connection.
//!
//! ```toml
//! [connections.warehouse]
//! connector = "duckdb"
//! path = "data/ventas.duckdb"   # relative to the pipeline file
//! read_only = false
//! threads = 2
//! memory_limit = "2GB"
//! ```
//!
//! The host hands the keys (without `connector`) to the plugin as JSON; serde rejects unknown
//! keys and wrong types, [`DuckDbConfig::validate`] checks the rules serde cannot express.

use std::path::{Path, PathBuf};

use caudal_connector::{Error, Result};
use serde::Deserialize;

/// What `path = ":memory:"` means: a private in-memory database that lives as long as the
/// connection (tests, scratch transformations).
pub const IN_MEMORY: &str = ":memory:";

/// A DuckDB connection's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckDbConfig {
    /// The database file, relative to the pipeline file's directory, or `:memory:`. Required.
    /// A missing file (and missing parent directories) is created unless `read_only` is set.
    pub path: String,
    /// Open the file read-only, so that other processes may read it at the same time. A
    /// read-only connection can be a source only. Default: `false`.
    #[serde(default)]
    pub read_only: bool,
    /// Worker threads DuckDB may use (at least 1). Default: half the cores, at least one
    /// ([`crate::database::default_threads`]): the engine's own threads use the others.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Memory limit as DuckDB spells it, e.g. `"2GB"` or `"512MiB"`. Default: for a file
    /// database, [`crate::database::DEFAULT_FILE_MEMORY_LIMIT_BYTES`], doubled when a write
    /// runs out and, before a write, until its commit has room for the batch
    /// ([`crate::database::Database::make_room_for_commit`]); its blocks are on disk, so memory
    /// stays the same whatever the table's size. For `:memory:`, DuckDB's own (80% of the
    /// machine's memory).
    #[serde(default)]
    pub memory_limit: Option<String>,
}

/// Where the database lives, resolved against the pipeline file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A private in-memory database.
    Memory,
    /// A database file.
    File(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Memory => f.write_str(IN_MEMORY),
            Location::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl DuckDbConfig {
    /// A writable file database at `path`, DuckDB's defaults otherwise.
    pub fn file(path: impl Into<String>) -> DuckDbConfig {
        DuckDbConfig {
            path: path.into(),
            read_only: false,
            threads: None,
            memory_limit: None,
        }
    }

    /// A private in-memory database.
    pub fn in_memory() -> DuckDbConfig {
        DuckDbConfig::file(IN_MEMORY)
    }

    /// Checks the rules serde cannot: a non-empty path, at least one thread, a non-empty
    /// memory limit, and no read-only in-memory database (it could never hold a row).
    pub fn validate(&self) -> Result<()> {
        if self.path.trim().is_empty() {
            return Err(Error::Config(
                "`path` is empty: give the database file (relative to the pipeline file) or \":memory:\"".into(),
            ));
        }
        if self.threads == Some(0) {
            return Err(Error::Config(
                "`threads` is 0: DuckDB needs at least one thread (omit the key for one per core)"
                    .into(),
            ));
        }
        if let Some(limit) = &self.memory_limit
            && limit.trim().is_empty()
        {
            return Err(Error::Config(
                "`memory_limit` is empty: write it as DuckDB does, e.g. \"2GB\", or omit the key"
                    .into(),
            ));
        }
        if self.read_only && self.path == IN_MEMORY {
            return Err(Error::Config(
                "`read_only` with `path = \":memory:\"`: a new in-memory database is empty, so a read-only one is useless".into(),
            ));
        }
        Ok(())
    }

    /// The database location; a relative path is taken relative to `base_dir` (the pipeline
    /// file's directory) when there is one, else to the current directory.
    pub fn location(&self, base_dir: Option<&str>) -> Location {
        if self.path == IN_MEMORY {
            return Location::Memory;
        }
        let path = Path::new(&self.path);
        match base_dir {
            Some(base) if path.is_relative() => Location::File(Path::new(base).join(path)),
            _ => Location::File(path.to_path_buf()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> std::result::Result<DuckDbConfig, String> {
        toml::from_str::<DuckDbConfig>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn full_config_parses_with_defaults() {
        let c = parse(r#"path = "data/v.duckdb""#).unwrap();
        assert_eq!(c, DuckDbConfig::file("data/v.duckdb"));
        c.validate().unwrap();
        let c = parse(
            r#"
            path = "/abs/v.duckdb"
            read_only = true
            threads = 2
            memory_limit = "1GB"
            "#,
        )
        .unwrap();
        assert!(c.read_only);
        assert_eq!(c.threads, Some(2));
        assert_eq!(c.memory_limit.as_deref(), Some("1GB"));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_by_name() {
        let err = parse("path = \"a\"\nthreadz = 2").unwrap_err();
        assert!(err.contains("threadz"), "{err}");
        let err = parse("path = \"a\"\nthreads = \"two\"").unwrap_err();
        assert!(err.contains("threads") || err.contains("integer"), "{err}");
        let err = parse("read_only = true").unwrap_err();
        assert!(err.contains("path"), "{err}");
    }

    #[test]
    fn json_from_the_host_parses_the_same_way() {
        let c: DuckDbConfig = serde_json::from_str(r#"{"path": ":memory:"}"#).unwrap();
        assert_eq!(c, DuckDbConfig::in_memory());
        let err = serde_json::from_str::<DuckDbConfig>(r#"{"path": "x", "url": "y"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("url"), "{err}");
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            ("path = \"  \"", "`path` is empty"),
            ("path = \"a\"\nthreads = 0", "`threads` is 0"),
            (
                "path = \"a\"\nmemory_limit = \"\"",
                "`memory_limit` is empty",
            ),
            ("path = \":memory:\"\nread_only = true", "`read_only`"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap().validate().unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{text}: {err:?}");
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_pipeline_directory() {
        let c = DuckDbConfig::file("data/v.duckdb");
        assert_eq!(
            c.location(Some("/etc/pipelines")),
            Location::File(PathBuf::from("/etc/pipelines/data/v.duckdb"))
        );
        assert_eq!(
            c.location(None),
            Location::File(PathBuf::from("data/v.duckdb"))
        );
        let abs = DuckDbConfig::file("/var/v.duckdb");
        assert_eq!(
            abs.location(Some("/etc")),
            Location::File(PathBuf::from("/var/v.duckdb"))
        );
        assert_eq!(
            DuckDbConfig::in_memory().location(Some("/etc")),
            Location::Memory
        );
    }
}
