//! The DuckDB connector plugin: source and sink on duckdb-rs, loaded by the caudal host at run
//! time (`libcaudal_duckdb.so`) or linked in-process as a library (tests, benchmarks).
//!
//! # Where to start reading
//!
//! - [`DuckDb`] (below): one open connection; implements the SDK's
//!   [`Connector`](caudal_connector::Connector), [`Source`](caudal_connector::Source) and
//!   [`Sink`](caudal_connector::Sink).
//! - [`config`]: the `[connections.NAME]` keys (`path`, `read_only`, `threads`,
//!   `memory_limit`).
//! - [`types`]: the type mapping, as a table, both ways.
//! - `source.rs`: discovery and chunked reads through DuckDB's Arrow stream.
//! - `sink.rs`: table creation, writes with the offset row in one transaction (Arrow appender,
//!   staging table for upserts and deletes), snapshot swap, table digest.
//! - `arrow.rs`: SDK batches <-> Arrow record batches; `sql.rs`: identifiers and literals;
//!   `database.rs`: one DuckDB instance per file per process.
//!
//! # Invariants
//!
//! - A write and its `_caudal_offsets` row commit together or not at all.
//! - Digests are computed by the SDK's [`caudal_connector::TableDigest`] over batches read back
//!   in the request's logical types: there is no second digest implementation here.
//! - Tables named `_caudal_*` are the connector's own and are never offered as sources.

pub mod config;
pub mod types;

mod arrow;
mod database;
mod sink;
mod source;
mod sql;

use std::sync::Arc;

use caudal_connector::{
    BatchReader, Capabilities, Connector, OpenContext, ReadRequest, Result, Sink, Source, TableInfo,
};

pub use config::DuckDbConfig;
pub use sink::OFFSETS_TABLE;
pub use source::DuckDbReader;

use database::Database;

/// An open DuckDB connection, usable as a source and as a sink.
pub struct DuckDb {
    /// Declared before `db`: a connection must be dropped before the instance it uses.
    conn: duckdb::Connection,
    db: Arc<Database>,
    /// The connection's name in the pipeline, for messages.
    name: String,
    /// Whether `_caudal_offsets` is known to exist (created once per connection).
    offsets_ready: bool,
}

impl std::fmt::Debug for DuckDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDb")
            .field("name", &self.name)
            .field("database", &self.db)
            .finish()
    }
}

impl DuckDb {
    /// "duckdb connection `NAME` (PATH)", the prefix of this connection's error messages.
    fn describe(&self) -> String {
        format!("duckdb connection `{}` ({})", self.name, self.db.location())
    }
}

impl Connector for DuckDb {
    type Config = DuckDbConfig;
    const NAME: &'static str = "duckdb";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const CAPABILITIES: Capabilities = Capabilities::SOURCE.union(Capabilities::SINK);

    fn open(config: DuckDbConfig, context: &OpenContext) -> Result<DuckDb> {
        config
            .validate()
            .map_err(|e| e.context(format!("connection `{}`", context.connection)))?;
        let (db, conn) = Database::open(&config, context.base_dir.as_deref())
            .map_err(|e| e.context(format!("connection `{}`", context.connection)))?;
        Ok(DuckDb {
            conn,
            db,
            name: context.connection.clone(),
            offsets_ready: false,
        })
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }

    fn close(&mut self) -> Result<()> {
        // The last user of a writable file checkpoints here, where an error can still be
        // reported; DuckDB would otherwise checkpoint silently when the instance is dropped.
        let last_user = Arc::strong_count(&self.db) == 1;
        if last_user
            && !self.db.read_only()
            && matches!(self.db.location(), config::Location::File(_))
        {
            self.conn.execute_batch("CHECKPOINT").map_err(|e| {
                database::db_error(format!("{}: checkpoint on close", self.describe()), e)
            })?;
        }
        Ok(())
    }
}

impl Source for DuckDb {
    fn discover(&mut self) -> Result<Vec<TableInfo>> {
        source::tables(&self.conn, None).map_err(|e| e.context(self.describe()))
    }

    fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn BatchReader>> {
        let reader =
            source::read(&self.db, &self.conn, request).map_err(|e| e.context(self.describe()))?;
        Ok(Box::new(reader))
    }
}

caudal_connector::export_connector!(DuckDb);

/// The DuckDB library version this plugin is built against (e.g. `v2.0.0`).
pub fn duckdb_version() -> String {
    duckdb::Connection::open_in_memory()
        .and_then(|c| c.query_row("SELECT version()", [], |r| r.get::<_, String>(0)))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the unit tests of the source and the sink.

    use std::sync::Arc;

    use caudal_connector::sample::{all_types_batch, all_types_schema};
    use caudal_connector::{
        Batch, Chunk, Connector, OpenContext, PrepareTable, Schema, Sink, WriteOp, WriteRequest,
    };

    use super::{DuckDb, DuckDbConfig};

    pub fn open(config: DuckDbConfig) -> DuckDb {
        DuckDb::open(
            config,
            &OpenContext {
                connection: "test".into(),
                base_dir: None,
            },
        )
        .unwrap()
    }

    pub fn memory() -> DuckDb {
        open(DuckDbConfig::in_memory())
    }

    pub fn write_req(table: &str, seq: u64, op: WriteOp) -> WriteRequest {
        WriteRequest {
            pipeline: "p".into(),
            stream: "s".into(),
            table: table.into(),
            seq,
            op,
        }
    }

    /// Creates `table` with the all-types schema and inserts rows `0..rows` in batches of
    /// `per_batch`, seqs from 1. Returns the batches written.
    pub fn fill_all_types(db: &mut DuckDb, table: &str, rows: u64, per_batch: u64) -> Vec<Batch> {
        let schema = Arc::new(all_types_schema());
        db.prepare_table(&PrepareTable {
            table: table.into(),
            schema: (*schema).clone(),
            replace: false,
        })
        .unwrap();
        let mut out = Vec::new();
        let mut seq = 0;
        let mut start = 0;
        while start < rows {
            let n = per_batch.min(rows - start);
            let batch = all_types_batch(&schema, start, n as usize).unwrap();
            seq += 1;
            db.write(&write_req(table, seq, WriteOp::Insert), &batch)
                .unwrap();
            out.push(batch);
            start += n;
        }
        out
    }

    pub fn read_all(reader: &mut dyn caudal_connector::BatchReader) -> Vec<Chunk> {
        let mut out = Vec::new();
        while let Some(c) = reader.next_chunk().unwrap() {
            out.push(c);
        }
        out
    }

    pub fn schema_of(fields: Vec<caudal_connector::Field>, pk: &[&str]) -> Arc<Schema> {
        Arc::new(Schema::new(fields, pk).unwrap())
    }
}
