//! The traits a connector implements, in plain Rust; [`crate::export_connector!`] turns an
//! implementation into the plugin's C-ABI entry point.
//!
//! A connector is one type implementing [`Connector`]: opened from its typed configuration,
//! it hands out itself as a [`Source`] and/or a [`Sink`]. Reading is a pull loop over a
//! [`BatchReader`] that yields [`Chunk`]s (a batch plus the cursor reached). Writing is one
//! [`Sink::write`] per journaled batch, which applies the rows *and* records the batch's
//! journal seq as the offset of `(pipeline, stream)` in one transaction, so that a crash at
//! any instant neither loses nor duplicates a row.
//!
//! Every method is synchronous and may block: the host calls plugins from blocking threads.
//! A connector that needs async I/O owns its own tokio runtime (created in `open`); no tokio
//! type ever crosses the plugin boundary.

use std::ops::Bound;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::builder::ChunkLimits;
use crate::digest::TableDigest;
use crate::error::Result;
use crate::types::{Capabilities, Schema};
use crate::value::{KeyRange, Value};

/// Where a connection comes from, besides its own configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenContext {
    /// The connection's name in the pipeline file (`[connections.NAME]`), for error messages.
    pub connection: String,
    /// Directory that relative paths in the configuration are relative to (the pipeline
    /// file's directory); `None` means the current directory.
    pub base_dir: Option<String>,
}

/// A connector implementation. One value of this type is one open connection.
pub trait Connector: Send + Sized + 'static {
    /// The connector's own configuration: the keys of `[connections.NAME]` except
    /// `connector`, deserialized from JSON. Use `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned;
    /// The plugin name: `connector = "NAME"` in pipelines, file `libcaudal_NAME.so`.
    const NAME: &'static str;
    /// The plugin version, usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// What the connector can do; must agree with [`Connector::source`] and [`Connector::sink`].
    const CAPABILITIES: Capabilities;

    /// Opens a connection. Errors name what is wrong in the configuration.
    fn open(config: Self::Config, context: &OpenContext) -> Result<Self>;

    /// This connection as a source, if the connector can read.
    fn source(&mut self) -> Option<&mut dyn Source> {
        None
    }

    /// This connection as a sink, if the connector can write.
    fn sink(&mut self) -> Option<&mut dyn Sink> {
        None
    }

    /// Flushes and closes the connection; the value is dropped right after.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A table the source offers, with its columns and primary key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Table name as the source spells it (schema-qualified where the database has schemas).
    pub name: String,
    /// Columns in table order, types mapped to logical types, and the primary key.
    pub schema: Schema,
    /// The database's row estimate, when it keeps one cheaply.
    pub estimated_rows: Option<u64>,
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadTarget {
    /// Every row of a table.
    Table(String),
    /// The rows of a query. Parameters `@from` and `@to` are bound to the cursor bounds.
    Query(String),
}

/// A read request: a table or query, an optional cursor range, and chunk limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The table or query.
    pub target: ReadTarget,
    /// The cursor column for incremental reads; rows are read in cursor order.
    pub cursor_column: Option<String>,
    /// Lower bound of the cursor (`Excluded(last cursor journaled)` when resuming).
    pub from: Bound<Value>,
    /// Upper bound of the cursor (`Excluded(to)` for a manual `--to`).
    pub to: Bound<Value>,
    /// Where to end each chunk.
    pub limits: ChunkLimits,
}

impl ReadRequest {
    /// Reads a whole table, default chunk limits.
    pub fn table(name: impl Into<String>) -> ReadRequest {
        ReadRequest {
            target: ReadTarget::Table(name.into()),
            cursor_column: None,
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            limits: ChunkLimits::default(),
        }
    }
}

/// One chunk read from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The rows.
    pub batch: Batch,
    /// The greatest cursor value read so far (`None` without a cursor column). A reader with
    /// a cursor column ends a chunk only between different cursor values, so that resuming
    /// with `from = Excluded(cursor)` neither skips nor repeats a row.
    pub cursor: Option<Value>,
}

/// A source connection.
pub trait Source {
    /// The tables the source offers, with columns and primary keys.
    fn discover(&mut self) -> Result<Vec<TableInfo>>;

    /// Starts reading; the reader owns what it needs (it may outlive this borrow).
    fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn BatchReader>>;
}

/// A running read: pull chunks until `None`.
pub trait BatchReader: Send {
    /// The schema of every chunk.
    fn schema(&self) -> &Arc<Schema>;

    /// The next chunk, or `None` when the read is complete.
    fn next_chunk(&mut self) -> Result<Option<Chunk>>;
}

/// How a sink creates a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareTable {
    /// Destination table name.
    pub table: String,
    /// Columns, logical types and primary key to create it with (the faithful mapping of the
    /// connector's `types.rs`).
    pub schema: Schema,
    /// Drop and recreate the table if it exists (snapshot staging tables); otherwise an
    /// existing table is kept as it is.
    pub replace: bool,
}

/// A step of rewriting a table in place, as a cache rebuild does: see
/// [`Sink::begin_rewrite`] and [`Sink::end_rewrite`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RewriteStep {
    /// [`Sink::begin_rewrite`] of the request's table.
    Begin(PrepareTable),
    /// [`Sink::end_rewrite`] of this table.
    End(String),
}

/// How a batch's rows are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Append the rows.
    Insert,
    /// Insert or replace by primary key.
    Upsert,
    /// Delete the rows whose primary key matches (only key columns are read).
    Delete,
}

/// A write of one journaled batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    /// Pipeline name: first half of the offset row's key.
    pub pipeline: String,
    /// Stream name (with partition, if any): second half of the offset row's key.
    pub stream: String,
    /// Destination table.
    pub table: String,
    /// The batch's journal seq, recorded as the new offset in the same transaction.
    pub seq: u64,
    /// How to apply the rows.
    pub op: WriteOp,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// Rows applied and offset advanced to the request's seq.
    Applied {
        /// Rows inserted, upserted or deleted.
        rows: u64,
    },
    /// The stored offset was already at or past this seq; nothing was changed.
    AlreadyApplied {
        /// The stored offset.
        last_seq: u64,
    },
}

/// A digest request: a table's rows over a primary-key range, read back in logical types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestRequest {
    /// Table to read.
    pub table: String,
    /// The schema the rows are digested in (column order, logical types, primary key): the
    /// stream's schema, so that source and destination digests agree.
    pub schema: Schema,
    /// Only rows whose primary key falls in this range.
    pub range: KeyRange,
}

/// A sink connection.
pub trait Sink {
    /// Creates the table (and the offsets table) if needed; see [`PrepareTable::replace`].
    fn prepare_table(&mut self, request: &PrepareTable) -> Result<()>;

    /// Applies `batch` and sets the offset of `(pipeline, stream)` to `seq`, in one
    /// transaction. If the stored offset is already `>= seq`, changes nothing and returns
    /// [`WriteOutcome::AlreadyApplied`] (this is what makes replays idempotent).
    fn write(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome>;

    /// The last seq applied for `(pipeline, stream)`, `None` if nothing was ever written.
    fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>>;

    /// The table digest of the rows in the range, computed with [`TableDigest::add_batch`]
    /// over batches read back in the request's schema (table name = `request.table`).
    fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest>;

    /// Atomically replaces `table` by `staging` (snapshot mode): readers see the old table
    /// or the new one, never half of it.
    fn replace_table(&mut self, staging: &str, table: &str) -> Result<()>;

    /// Starts writing every row of `request.table` again (a cache rebuild): the table ends up
    /// holding exactly the rows written between this call and [`Sink::end_rewrite`], with a
    /// digest of them alone. A sink whose readers must not see the table empty meanwhile (a
    /// cache) keeps the old rows readable and overwrites them in place; the default empties
    /// the table at once (`prepare_table` with `replace`).
    fn begin_rewrite(&mut self, request: &PrepareTable) -> Result<()> {
        self.prepare_table(&PrepareTable {
            replace: true,
            ..request.clone()
        })
    }

    /// Ends the rewrite [`Sink::begin_rewrite`] started: removes every row of `table` that
    /// was not written since. The default has nothing left to remove.
    fn end_rewrite(&mut self, table: &str) -> Result<()> {
        let _ = table;
        Ok(())
    }
}

/// A connector's static description, as the plugin reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// ABI major version the plugin was built for.
    pub abi_version: u32,
    /// What it can do.
    pub capabilities: Capabilities,
}

/// Helper for readers: wraps an iterator of batches, taking the cursor from each batch's
/// last row. For sources whose database driver already yields chunks in cursor order.
pub struct IterReader<I> {
    schema: Arc<Schema>,
    cursor_column: Option<usize>,
    batches: I,
}

impl<I: Iterator<Item = Result<Batch>> + Send> IterReader<I> {
    /// A reader over `batches` (all of schema `schema`), reporting the cursor from column
    /// `cursor_column` of each batch's last row.
    pub fn new(schema: Arc<Schema>, cursor_column: Option<usize>, batches: I) -> IterReader<I> {
        IterReader {
            schema,
            cursor_column,
            batches,
        }
    }
}

impl<I: Iterator<Item = Result<Batch>> + Send> BatchReader for IterReader<I> {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let Some(batch) = self.batches.next().transpose()? else {
            return Ok(None);
        };
        let cursor = match (self.cursor_column, batch.num_rows()) {
            (Some(col), n) if n > 0 => batch.value(n - 1, col),
            _ => None,
        };
        Ok(Some(Chunk { batch, cursor }))
    }
}
