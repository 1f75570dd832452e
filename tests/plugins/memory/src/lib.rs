//! Test plugin `memory`: a source that generates the SDK's sample rows (every logical type,
//! NULLs included) and a sink that keeps what it is given in memory.
//!
//! It lets the host's tests and benchmarks move real batches across the plugin boundary
//! without a database: read a million generated rows, write them to the sink, and compare the
//! table digest the sink computes (inside the plugin) with the one the host computes.
//!
//! Source: one table, `all_types` ([`caudal_connector::sample::all_types_schema`]), rows with
//! ids `0..rows`; the cursor column may be `id` (an `Int64`). Sink: tables live as long as the
//! connection; `insert` only (upserts and deletes need a real database); offsets per
//! `(pipeline, stream)` are updated together with the rows, as a database sink must.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::sample::{all_types_schema, push_all_types_row};
use caudal_connector::{
    Batch, BatchBuilder, BatchReader, Capabilities, Chunk, ChunkLimits, Connector, DigestRequest,
    Error, OpenContext, PrepareTable, ReadRequest, ReadTarget, Result, Schema, Sink, Source,
    TableDigest, TableInfo, Value, WriteOp, WriteOutcome, WriteRequest,
};
use serde::Deserialize;

/// The one table the source offers.
pub const TABLE: &str = "all_types";

/// Configuration of a `memory` connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Rows the source generates for `all_types` (default 1000).
    #[serde(default = "default_rows")]
    pub rows: u64,
}

fn default_rows() -> u64 {
    1000
}

struct MemTable {
    schema: Schema,
    batches: Vec<Batch>,
}

/// A `memory` connection.
pub struct Memory {
    rows: u64,
    schema: Arc<Schema>,
    tables: HashMap<String, MemTable>,
    offsets: HashMap<(String, String), u64>,
}

impl Connector for Memory {
    type Config = MemoryConfig;
    const NAME: &'static str = "memory";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const CAPABILITIES: Capabilities = Capabilities::SOURCE.union(Capabilities::SINK);

    fn open(config: MemoryConfig, _context: &OpenContext) -> Result<Memory> {
        Ok(Memory {
            rows: config.rows,
            schema: Arc::new(all_types_schema()),
            tables: HashMap::new(),
            offsets: HashMap::new(),
        })
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }
}

impl Source for Memory {
    fn discover(&mut self) -> Result<Vec<TableInfo>> {
        Ok(vec![TableInfo {
            name: TABLE.into(),
            schema: (*self.schema).clone(),
            estimated_rows: Some(self.rows),
        }])
    }

    fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn BatchReader>> {
        match &request.target {
            ReadTarget::Table(t) if t == TABLE => {}
            ReadTarget::Table(t) => {
                return Err(Error::NotFound(format!(
                    "table `{t}`: the memory source has only `{TABLE}`"
                )));
            }
            ReadTarget::Query(_) => {
                return Err(Error::Unsupported(
                    "the memory source reads tables, not queries".into(),
                ));
            }
        }
        if let Some(c) = request.cursor_column.as_deref().filter(|c| *c != "id") {
            return Err(Error::NotFound(format!(
                "cursor column `{c}`: the memory source's cursor is `id`"
            )));
        }
        let from = match &request.from {
            Bound::Unbounded => 0,
            Bound::Included(v) => id_bound(v)?,
            Bound::Excluded(v) => id_bound(v)?.saturating_add(1),
        };
        let to = match &request.to {
            Bound::Unbounded => self.rows,
            Bound::Included(v) => id_bound(v)?.saturating_add(1).min(self.rows),
            Bound::Excluded(v) => id_bound(v)?.min(self.rows),
        };
        Ok(Box::new(Generator {
            builder: BatchBuilder::with_capacity(
                Arc::clone(&self.schema),
                request.limits.max_rows.min(65_536),
            ),
            next: from,
            end: to.max(from),
            limits: request.limits,
        }))
    }
}

fn id_bound(v: &Value) -> Result<u64> {
    match v {
        Value::Int(i) => Ok((*i).max(0) as u64),
        other => Err(Error::Schema(format!(
            "cursor bound {other:?} is not an integer id"
        ))),
    }
}

struct Generator {
    builder: BatchBuilder,
    next: u64,
    end: u64,
    limits: ChunkLimits,
}

impl BatchReader for Generator {
    fn schema(&self) -> &Arc<Schema> {
        self.builder.schema()
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if self.next >= self.end {
            return Ok(None);
        }
        // The byte size is a sum over columns: check it every 64 rows, not every row.
        while self.next < self.end {
            push_all_types_row(&mut self.builder, self.next)?;
            self.next += 1;
            let rows = self.builder.num_rows();
            if rows >= self.limits.max_rows
                || (rows.is_multiple_of(64) && self.builder.is_full(&self.limits))
            {
                break;
            }
        }
        let batch = self.builder.take()?;
        Ok(Some(Chunk {
            batch,
            cursor: Some(Value::Int(self.next as i64 - 1)),
        }))
    }
}

impl Memory {
    fn table(&mut self, name: &str) -> Result<&mut MemTable> {
        self.tables.get_mut(name).ok_or_else(|| {
            Error::NotFound(format!(
                "table `{name}` was not prepared on this memory connection"
            ))
        })
    }
}

impl Sink for Memory {
    fn prepare_table(&mut self, request: &PrepareTable) -> Result<()> {
        if request.replace || !self.tables.contains_key(&request.table) {
            self.tables.insert(
                request.table.clone(),
                MemTable {
                    schema: request.schema.clone(),
                    batches: Vec::new(),
                },
            );
        }
        Ok(())
    }

    fn write(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
        let key = (request.pipeline.clone(), request.stream.clone());
        if let Some(&last_seq) = self.offsets.get(&key).filter(|&&s| s >= request.seq) {
            return Ok(WriteOutcome::AlreadyApplied { last_seq });
        }
        if request.op != WriteOp::Insert {
            return Err(Error::Unsupported(format!(
                "{:?}: the memory sink only inserts",
                request.op
            )));
        }
        let table = self.table(&request.table)?;
        if **batch.schema() != table.schema {
            return Err(Error::Schema(format!(
                "batch schema does not match table `{}`",
                request.table
            )));
        }
        table.batches.push(batch.clone());
        self.offsets.insert(key, request.seq);
        Ok(WriteOutcome::Applied {
            rows: batch.num_rows() as u64,
        })
    }

    fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>> {
        Ok(self
            .offsets
            .get(&(pipeline.to_owned(), stream.to_owned()))
            .copied())
    }

    fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest> {
        if !request.range.is_all() {
            return Err(Error::Unsupported(
                "the memory sink digests whole tables only".into(),
            ));
        }
        let name = request.table.clone();
        let table = self.table(&name)?;
        if request.schema != table.schema {
            return Err(Error::Schema(format!(
                "digest schema does not match table `{name}`"
            )));
        }
        let mut digest = TableDigest::new();
        for batch in &table.batches {
            digest.add_batch(&name, batch);
        }
        Ok(digest)
    }

    fn replace_table(&mut self, staging: &str, table: &str) -> Result<()> {
        let staged = self
            .tables
            .remove(staging)
            .ok_or_else(|| Error::NotFound(format!("staging table `{staging}`")))?;
        self.tables.insert(table.to_owned(), staged);
        Ok(())
    }
}

caudal_connector::export_connector!(Memory);
