//! Helpers of the connector's tests: where the server is, and a few shortcuts.
//!
//! [`Env::double`] starts the TDS test server of `tests/tds-server` (a wire-level double of
//! SQL Server backed by DuckDB) in the test process, with a database of its own;
//! [`Env::real`] uses the SQL Server of `CAUDAL_TEST_MSSQL_URL`, with table names made unique
//! by a prefix. The scenarios in `scenarios.rs` run unchanged against both.

#![allow(dead_code)]

pub mod scenarios;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use caudal_connector::{
    Batch, BatchBuilder, BatchReader, Chunk, ChunkLimits, Connector, DigestRequest, KeyRange,
    OpenContext, PrepareTable, ReadRequest, Schema, Sink, Source, TableDigest, Value, WriteOp,
    WriteOutcome, WriteRequest,
};
use caudal_mssql::sql::{SqlColumn, TableName};
use caudal_mssql::{MsSqlConfig, MsSqlConnector};
use caudal_tds_server::TdsServer;
use tokio_util::compat::TokioAsyncWriteCompatExt as _;

/// Login of the test double.
pub const USER: &str = "caudal_etl";
/// Password of the test double (tests check that it never appears in errors).
pub const PASSWORD: &str = "Pw-9f3kq-never-shown";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A server to run scenarios against.
pub struct Env {
    /// The test double, when it is the server (stopped when dropped).
    pub server: Option<TdsServer>,
    /// The connection url.
    pub url: String,
    /// `encrypt` of the connection config.
    pub encrypt: &'static str,
    /// `trust_server_certificate` of the connection config.
    pub trust: bool,
    /// Prefix of every table name this test uses.
    pub prefix: String,
    /// The database of the test double.
    pub database: String,
    runtime: tokio::runtime::Runtime,
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
}

impl Env {
    /// The test double with a fresh database `db_<tag>...`.
    pub fn double(tag: &str) -> Env {
        let database = format!("db_{}", unique(tag));
        let server = TdsServer::builder()
            .credentials(USER, PASSWORD)
            .database(&database)
            .start_blocking()
            .unwrap_or_else(|e| panic!("starting the TDS test server: {e}"));
        let url = format!("mssql://{USER}:{PASSWORD}@{}/{database}", server.addr());
        Env {
            server: Some(server),
            url,
            encrypt: "off",
            trust: false,
            prefix: "t_".into(),
            database,
            runtime: runtime(),
        }
    }

    /// The real server of `CAUDAL_TEST_MSSQL_URL`, or `None` when the variable is unset.
    pub fn real(tag: &str) -> Option<Env> {
        let url = std::env::var("CAUDAL_TEST_MSSQL_URL").ok()?;
        Some(Env {
            server: None,
            url,
            encrypt: "on",
            trust: true,
            database: String::new(),
            prefix: format!("caudal_{}_", unique(tag)),
            runtime: runtime(),
        })
    }

    /// The connection config of this server.
    pub fn config(&self) -> MsSqlConfig {
        toml::from_str(&format!(
            "url = {:?}\nencrypt = {:?}\ntrust_server_certificate = {}",
            self.url, self.encrypt, self.trust
        ))
        .expect("test config")
    }

    /// Opens the connector.
    pub fn open(&self) -> MsSqlConnector {
        let context = OpenContext {
            connection: "tienda_test".into(),
            base_dir: None,
        };
        MsSqlConnector::open(self.config(), &context)
            .unwrap_or_else(|e| panic!("opening the connector on {}: {e}", self.redacted()))
    }

    fn redacted(&self) -> String {
        self.url.replace(PASSWORD, "***")
    }

    /// The pipeline name of this test's offsets (unique: a real server's `_caudal_offsets` is
    /// shared by every test).
    pub fn pipeline(&self) -> String {
        format!("{}pipeline", self.prefix)
    }

    /// A table name unique to this test.
    pub fn table(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs T-SQL statements on a connection of their own (setup the connector does not do:
    /// tables of SQL Server's own types).
    pub fn exec(&self, statements: &[String]) {
        let valid = self.config().validate().expect("valid config");
        self.runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(&valid.addr)
                .await
                .expect("connecting");
            let mut client = tiberius::Client::connect(valid.tiberius.clone(), tcp.compat_write())
                .await
                .expect("logging in");
            for s in statements {
                client
                    .simple_query(s.as_str())
                    .await
                    .unwrap_or_else(|e| panic!("{s}: {e}"))
                    .into_results()
                    .await
                    .unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        });
    }

    /// Creates a table of the given SQL Server columns (the connector's own CREATE shape).
    pub fn create_native(&self, table: &str, columns: &[SqlColumn], key: &[usize]) {
        let name = TableName::parse(table, "dbo").expect("table name");
        self.exec(&[caudal_mssql::sql::create_table(&name, columns, key)]);
    }

    /// Drops the tables of this test (a real server is shared; its `_caudal_offsets` stays,
    /// holding rows of pipelines named after the test).
    pub fn drop_tables(&self, tables: &[&str]) {
        let statements: Vec<String> = tables
            .iter()
            .filter(|t| !t.starts_with("_caudal"))
            .map(|t| {
                let name = TableName::parse(t, "dbo").expect("table name");
                caudal_mssql::sql::drop_table_if_exists(&name.sql())
            })
            .collect();
        self.exec(&statements);
    }
}

/// Every chunk of a read.
pub fn read_all(source: &mut dyn Source, request: &ReadRequest) -> Vec<Chunk> {
    let mut reader: Box<dyn BatchReader> = source.read(request).expect("read");
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk().expect("next chunk") {
        out.push(chunk);
    }
    out
}

/// A read request of a table with `max_rows` rows per chunk.
pub fn table_request(table: &str, max_rows: usize) -> ReadRequest {
    let mut r = ReadRequest::table(table);
    r.limits = ChunkLimits {
        max_rows,
        ..ChunkLimits::default()
    };
    r
}

/// The rows of `chunks` as values, row by row.
pub fn rows_of(chunks: &[Chunk]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for c in chunks {
        for r in 0..c.batch.num_rows() {
            out.push(
                (0..c.batch.num_columns())
                    .map(|col| c.batch.value(r, col).unwrap_or(Value::Null))
                    .collect(),
            );
        }
    }
    out
}

/// A batch of `schema` holding `rows`.
pub fn batch(schema: &Arc<Schema>, rows: &[Vec<Value>]) -> Batch {
    let mut b = BatchBuilder::new(Arc::clone(schema));
    for r in rows {
        b.push_row(r).expect("row fits the schema");
    }
    b.finish().expect("batch")
}

/// Writes `batch` to `table` as seq `seq` of the test's pipeline, stream `s`.
pub fn write(
    env: &Env,
    sink: &mut dyn Sink,
    table: &str,
    seq: u64,
    op: WriteOp,
    batch: &Batch,
) -> caudal_connector::Result<WriteOutcome> {
    let request = WriteRequest {
        pipeline: env.pipeline(),
        stream: "s".into(),
        table: table.into(),
        seq,
        op,
    };
    sink.write(&request, batch)
}

/// Creates `table` from `schema` (the connector's reverse mapping).
pub fn prepare(sink: &mut dyn Sink, table: &str, schema: &Schema, replace: bool) {
    sink.prepare_table(&PrepareTable {
        table: table.into(),
        schema: schema.clone(),
        replace,
    })
    .unwrap_or_else(|e| panic!("prepare {table}: {e}"));
}

/// The digest of the whole table, read in `schema`.
pub fn digest(sink: &mut dyn Sink, table: &str, schema: &Schema) -> TableDigest {
    sink.table_digest(&DigestRequest {
        table: table.into(),
        schema: schema.clone(),
        range: KeyRange::all(),
    })
    .unwrap_or_else(|e| panic!("digest of {table}: {e}"))
}
