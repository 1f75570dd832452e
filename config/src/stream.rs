//! Streams: what to read, from which connections, how, and where to write it.
//!
//! A validated [`Stream`] upholds its mode's rules: `incremental` has a cursor, `merge` a
//! primary key, `consolidate` several sources (or a pattern) and a source column, `snapshot`
//! exactly one source and no cursor. Its sources are already expanded against the pipeline's
//! connections, sorted and unique, and every destination names a defined connection.

use serde::Deserialize;

use crate::error::Location;
use crate::retry::RetryPolicy;

/// How a stream moves rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Copy the whole table into a staging table, then swap it in: readers never see half a
    /// table. One source.
    Snapshot,
    /// Read rows after the last cursor value journaled; the next run continues from there.
    /// Needs `cursor`.
    Incremental,
    /// Upsert by primary key and apply deletes. Needs `primary_key`; `cursor` optional.
    Merge,
    /// Several source connections into one table, each row tagged with its connection's name in
    /// the source column (`_source` by default). `cursor` and `primary_key` optional.
    Consolidate,
}

impl Mode {
    /// The name used in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Snapshot => "snapshot",
            Mode::Incremental => "incremental",
            Mode::Merge => "merge",
            Mode::Consolidate => "consolidate",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default for `chunk_rows`.
pub const DEFAULT_CHUNK_ROWS: u64 = 20_000;
/// The default for `chunk_bytes`: 8 MiB.
pub const DEFAULT_CHUNK_BYTES: u64 = 8 << 20;
/// The default for `source_column` in `consolidate` mode.
pub const DEFAULT_SOURCE_COLUMN: &str = "_source";

/// One `[[streams]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Stream {
    pub(crate) name: String,
    pub(crate) location: Location,
    pub(crate) from: Vec<String>,
    pub(crate) sources: Vec<String>,
    pub(crate) partitioned: bool,
    pub(crate) table: String,
    pub(crate) query: Option<String>,
    pub(crate) destinations: Vec<String>,
    pub(crate) mode: Mode,
    pub(crate) cursor: Option<String>,
    pub(crate) primary_key: Vec<String>,
    pub(crate) source_column: Option<String>,
    pub(crate) chunk_rows: u64,
    pub(crate) chunk_bytes: u64,
    pub(crate) retry: RetryPolicy,
}

impl Stream {
    /// The stream's name: `name`, or `table` when no name is given. Unique in the pipeline.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the stream's `[[streams]]` entry starts in the file.
    pub fn location(&self) -> Location {
        self.location
    }

    /// `from` as written: connection names and patterns such as `tienda_*`.
    pub fn from(&self) -> &[String] {
        &self.from
    }

    /// The source connections `from` expands to, sorted by name, without duplicates.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Whether `from` can name several connections (a pattern or a list): the stream then runs
    /// once per source connection, and one failing does not stop the others.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// The table read from each source when there is no `query`, and written in each
    /// destination.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The query run on each source instead of reading `table`, if given.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The destination connections (`to`), in the order written; at least one, no duplicates.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// How rows move. Default [`Mode::Snapshot`].
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The cursor column: always set in incremental mode, never in snapshot mode.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The primary key columns (empty when not given); never empty in merge mode.
    pub fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    /// In consolidate mode, the column that receives each row's source connection name
    /// (default `_source`); `None` in the other modes.
    pub fn source_column(&self) -> Option<&str> {
        self.source_column.as_deref()
    }

    /// The most rows in one batch. Default 20000.
    pub fn chunk_rows(&self) -> u64 {
        self.chunk_rows
    }

    /// The most bytes in one batch (whichever of rows and bytes comes first). Default 8 MiB.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// The stream's retry policy: the pipeline's `[retry]` with the stream's overrides.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
}
