//! The `mssql` connector plugin: a source and a sink for SQL Server, on tiberius (TDS 7.3+,
//! rustls).
//!
//! One [`MsSqlConnector`] is one open connection of a pipeline: a tiberius client plus the
//! plugin's own tokio runtime (one worker thread), created in [`Connector::open`]. No tokio
//! type crosses the plugin boundary: the host calls the blocking trait methods, which
//! `block_on` the runtime. A read opens a connection of its own and runs as a task that hands
//! finished chunks over a channel, so the next chunk is fetched while the host journals this
//! one.
//!
//! Where to start reading:
//! - [`config`]: the connection's keys (`url`, `encrypt`, `trust_server_certificate`,
//!   `schema`) and their checks; the password never appears in `Debug` or in errors;
//! - [`sql`]: every T-SQL statement the connector sends (the TDS test server in
//!   `tests/tds-server` supports exactly these shapes);
//! - [`types`]: the type mapping both ways, with its table;
//! - `source.rs`: discovery and chunked keyset reads; `decode.rs`: TDS values -> batch;
//! - `sink.rs`: table creation, bulk loads, MERGE upserts, deletes, the offset row, digests
//!   and the snapshot swap; `encode.rs`: batch values -> TDS values.
//!
//! Invariants: a write and its `_caudal_offsets` row commit together or not at all; digests
//! are the SDK's [`caudal_connector::TableDigest`] over rows read back in the request's logical
//! types; tables named `_caudal_*` are the connector's own and never offered as sources.

pub mod config;
pub mod sql;
pub mod types;

mod decode;
mod encode;
mod error;
mod sink;
mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use caudal_connector::{Capabilities, Connector, OpenContext, Sink, Source};
use tiberius::{Client, Query, Row};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt as _};

use config::ValidConfig;
pub use config::{Encrypt, MsSqlConfig};
use error::Secret;
pub use error::{Error, Result};
use sql::{SqlColumn, Statement};

/// A tiberius client over TCP.
pub(crate) type TdsClient = Client<Compat<TcpStream>>;

/// State shared by the connector and its running readers.
pub(crate) struct Shared {
    /// `[connections.NAME]`, for messages.
    pub connection: String,
    /// The checked configuration (readers open their own connections with it).
    pub config: ValidConfig,
    /// The columns of destination tables, by (schema, table).
    columns: Mutex<HashMap<(String, String), Vec<SqlColumn>>>,
}

impl Shared {
    /// Converts an internal error for the host.
    pub fn sdk(&self, e: Error) -> caudal_connector::Error {
        e.for_connection(error::CONNECTOR, &self.connection, &self.config.secret)
    }

    /// The schema of unqualified table names.
    pub fn schema(&self) -> &str {
        &self.config.schema
    }

    /// The cache of destination columns (a poisoned lock only means a panic elsewhere; the
    /// map itself is always whole).
    pub(crate) fn columns_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<SqlColumn>>> {
        self.columns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the cached columns of `table` (it is being created, replaced or renamed).
    pub(crate) fn forget(&self, table: &sql::TableName) {
        self.columns_cache()
            .remove(&(table.schema.clone(), table.table.clone()));
    }
}

/// Opens and logs in a new connection. Errors name the login and the server, never the
/// password.
pub(crate) async fn connect(config: &ValidConfig) -> Result<TdsClient> {
    let target = format!("logging in to {} as `{}`", config.addr, config.user);
    let tcp = TcpStream::connect(&config.addr)
        .await
        .map_err(|e| Error::Connection(format!("{target}: cannot connect: {e}")))?;
    // Small packets (parameters, offset rows) must not wait for Nagle's algorithm.
    let _ = tcp.set_nodelay(true);
    Client::connect(config.tiberius.clone(), tcp.compat_write())
        .await
        .map_err(|e| error::tds(&target, e))
}

/// A tiberius query of a statement, every parameter bound with its column's type.
pub(crate) fn query(statement: &Statement) -> Result<Query<'static>> {
    let mut q = Query::new(statement.sql.clone());
    for p in &statement.params {
        let data = encode::param(&p.value, &p.sql_type)
            .map_err(|why| Error::Encode(format!("a parameter of type {}: {why}", p.sql_type)))?;
        q.bind(data);
    }
    Ok(q)
}

/// Runs `statement` and returns the rows of its first result.
pub(crate) async fn fetch(
    client: &mut TdsClient,
    statement: &Statement,
    what: &str,
) -> Result<Vec<Row>> {
    let stream = query(statement)?
        .query(client)
        .await
        .map_err(|e| error::tds(what, e))?;
    stream
        .into_first_result()
        .await
        .map_err(|e| error::tds(what, e))
}

/// Runs statements without parameters as a plain SQL batch (transaction control, DDL, the
/// session's `#caudal_stage` table): not through `sp_executesql`, whose scope would drop a
/// temporary table at its end and refuses to leave a transaction open.
pub(crate) async fn execute(client: &mut TdsClient, sql: &str, what: &str) -> Result<()> {
    client
        .simple_query(sql)
        .await
        .map_err(|e| error::tds(what, e))?
        .into_results()
        .await
        .map_err(|e| error::tds(what, e))?;
    Ok(())
}

/// Runs a data statement without parameters and returns the rows it affected.
pub(crate) async fn execute_count(client: &mut TdsClient, sql: &str, what: &str) -> Result<u64> {
    let done = client
        .execute(sql, &[])
        .await
        .map_err(|e| error::tds(what, e))?;
    Ok(done.total())
}

/// An open `mssql` connection.
pub struct MsSqlConnector {
    runtime: Arc<tokio::runtime::Runtime>,
    /// The connection of discovery and the sink; `None` after it broke (reopened on use).
    client: Option<TdsClient>,
    shared: Arc<Shared>,
    /// Whether `_caudal_offsets` is known to exist.
    offsets_ready: bool,
}

impl MsSqlConnector {
    fn open_inner(config: MsSqlConfig, context: &OpenContext) -> Result<MsSqlConnector> {
        let valid = config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("caudal-mssql")
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the plugin's runtime: {e}")))?;
        let client = runtime.block_on(connect(&valid))?;
        Ok(MsSqlConnector {
            runtime: Arc::new(runtime),
            client: Some(client),
            shared: Arc::new(Shared {
                connection: context.connection.clone(),
                config: valid,
                columns: Mutex::new(HashMap::new()),
            }),
            offsets_ready: false,
        })
    }

    /// Runs `work` on the connection (reopened if it broke before). A connection error drops
    /// the connection, so that the next call starts from a fresh one.
    pub(crate) fn with_client<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut TdsClient, &Shared) -> Result<T>,
    ) -> Result<T> {
        let shared = Arc::clone(&self.shared);
        let slot = &mut self.client;
        self.runtime.block_on(async {
            if slot.is_none() {
                *slot = Some(connect(&shared.config).await?);
            }
            let Some(client) = slot.as_mut() else {
                return Err(Error::Other("no connection".into()));
            };
            let result = work(client, &shared).await;
            if matches!(result, Err(Error::Connection(_))) {
                *slot = None;
            }
            result
        })
    }
}

impl Connector for MsSqlConnector {
    type Config = MsSqlConfig;
    const NAME: &'static str = "mssql";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const CAPABILITIES: Capabilities = Capabilities::SOURCE.union(Capabilities::SINK);

    fn open(config: MsSqlConfig, context: &OpenContext) -> caudal_connector::Result<Self> {
        let secret: Secret = config::secret_of(&config.url);
        MsSqlConnector::open_inner(config, context)
            .map_err(|e| e.for_connection(error::CONNECTOR, &context.connection, &secret))
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }

    fn close(&mut self) -> caudal_connector::Result<()> {
        if let Some(client) = self.client.take() {
            // Closing politely may fail on a dying server; nothing is left to do then.
            let _ = self.runtime.block_on(client.close());
        }
        Ok(())
    }
}

caudal_connector::export_connector!(MsSqlConnector);
