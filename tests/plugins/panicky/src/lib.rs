//! Test plugin `panicky`: a small source and sink that panics on demand, so the host's tests
//! can check that a panic inside a plugin becomes an error naming plugin and function, that the
//! host survives, and that later calls on the poisoned handle fail cleanly.
//!
//! Config: `{"panic_in": "FUNCTION"}` with FUNCTION one of `open`, `discover`, `read`,
//! `next_chunk`, `write`, `last_applied_seq`, `close`; without it the plugin behaves. Writing to
//! a table named `panic` panics too, whatever the config.

use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, BatchReader, Capabilities, Chunk, Connector, DigestRequest, Error, Field,
    LogicalType, OpenContext, PrepareTable, ReadRequest, Result, Schema, Sink, Source, TableDigest,
    TableInfo, WriteOutcome, WriteRequest,
};
use serde::Deserialize;

/// Configuration of a `panicky` connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanickyConfig {
    /// The function that panics (default: none).
    #[serde(default)]
    pub panic_in: Option<String>,
}

/// A `panicky` connection.
pub struct Panicky {
    panic_in: Option<String>,
    last_seq: Option<u64>,
}

impl Panicky {
    fn maybe_panic(&self, function: &str) {
        if self.panic_in.as_deref() == Some(function) {
            panic!("panicky was told to panic in {function}");
        }
    }
}

fn schema() -> Result<Schema> {
    Schema::new(vec![Field::new("id", LogicalType::Int64, false)], &["id"])
}

impl Connector for Panicky {
    type Config = PanickyConfig;
    const NAME: &'static str = "panicky";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const CAPABILITIES: Capabilities = Capabilities::SOURCE.union(Capabilities::SINK);

    fn open(config: PanickyConfig, _context: &OpenContext) -> Result<Panicky> {
        let conn = Panicky {
            panic_in: config.panic_in,
            last_seq: None,
        };
        conn.maybe_panic("open");
        Ok(conn)
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }

    fn close(&mut self) -> Result<()> {
        self.maybe_panic("close");
        Ok(())
    }
}

impl Source for Panicky {
    fn discover(&mut self) -> Result<Vec<TableInfo>> {
        self.maybe_panic("discover");
        Ok(vec![TableInfo {
            name: "numbers".into(),
            schema: schema()?,
            estimated_rows: Some(3),
        }])
    }

    fn read(&mut self, _request: &ReadRequest) -> Result<Box<dyn BatchReader>> {
        self.maybe_panic("read");
        Ok(Box::new(Numbers {
            schema: Arc::new(schema()?),
            done: false,
            panic_in_next: self.panic_in.as_deref() == Some("next_chunk"),
        }))
    }
}

struct Numbers {
    schema: Arc<Schema>,
    done: bool,
    panic_in_next: bool,
}

impl BatchReader for Numbers {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if self.panic_in_next {
            panic!("panicky was told to panic in next_chunk");
        }
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let mut b = BatchBuilder::new(Arc::clone(&self.schema));
        b.extend(0, [1i64, 2, 3])?;
        Ok(Some(Chunk {
            batch: b.finish()?,
            cursor: None,
        }))
    }
}

impl Sink for Panicky {
    fn prepare_table(&mut self, _request: &PrepareTable) -> Result<()> {
        Ok(())
    }

    fn write(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
        self.maybe_panic("write");
        if request.table == "panic" {
            panic!("panicky was asked to write to table `panic`");
        }
        self.last_seq = Some(request.seq);
        Ok(WriteOutcome::Applied {
            rows: batch.num_rows() as u64,
        })
    }

    fn last_applied_seq(&mut self, _pipeline: &str, _stream: &str) -> Result<Option<u64>> {
        self.maybe_panic("last_applied_seq");
        Ok(self.last_seq)
    }

    fn table_digest(&mut self, _request: &DigestRequest) -> Result<TableDigest> {
        Err(Error::Unsupported("panicky keeps no rows to digest".into()))
    }

    fn replace_table(&mut self, _staging: &str, _table: &str) -> Result<()> {
        Ok(())
    }
}

caudal_connector::export_connector!(Panicky);
