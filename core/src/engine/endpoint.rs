//! The engine's view of a connection: [`Endpoint`], how endpoints are opened ([`Endpoints`]),
//! and the per-run [`ConnectionPool`] that opens each named connection once.
//!
//! In production every endpoint is a plugin [`crate::host::Connection`]
//! ([`PluginEndpoints`]); tests substitute in-process endpoints. The engine never calls a
//! plugin except through this trait, so everything it does can be exercised without one.
//!
//! Invariant: one handle per connection name per run, used by one thread at a time (the
//! plugin ABI's rule, and the only safe way to share an embedded database file such as
//! DuckDB's between the partitions that write into it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use caudal_config::Pipeline;
use caudal_connector::{
    Capabilities, DigestRequest, ErrorCode, OpenContext, PrepareTable, ReadRequest, RewriteStep,
    Schema, TableDigest, TableInfo, Value, WriteOutcome, WriteRequest,
};

use crate::host::{self, HostError, PluginRegistry, SearchPath};

/// One chunk of a running read: the encoded batch (the bytes the journal stores) and the
/// cursor reached.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedChunk {
    /// The batch, as [`caudal_connector::Batch::encode`] writes it.
    pub bytes: Vec<u8>,
    /// The greatest cursor value read so far.
    pub cursor: Option<Value>,
}

/// A running read of a source.
pub trait ChunkReader: Send {
    /// The schema of every chunk.
    fn schema(&self) -> &Arc<Schema>;
    /// The next chunk, `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<EncodedChunk>, HostError>;
}

/// An open connection: source and sink calls. Every call may block.
pub trait Endpoint: Send {
    /// The tables of a source, with row estimates where the database keeps them.
    fn discover(&mut self) -> Result<Vec<TableInfo>, HostError>;
    /// Starts a read.
    fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn ChunkReader>, HostError>;
    /// Creates a destination table.
    fn prepare_table(&mut self, request: &PrepareTable) -> Result<(), HostError>;
    /// Writes an encoded batch with its journal seq, in one transaction with the offset row.
    fn write(&mut self, request: &WriteRequest, batch: &[u8]) -> Result<WriteOutcome, HostError>;
    /// The last seq applied for `(pipeline, stream)`.
    fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>, HostError>;
    /// The digest of a destination table.
    fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest, HostError>;
    /// Whether the connector keeps rows in no key order, so that a key range costs a read of
    /// the whole table ([`Capabilities::UNORDERED`]).
    fn unordered(&self) -> bool {
        false
    }
    /// Atomically replaces `table` by `staging`.
    fn replace_table(&mut self, staging: &str, table: &str) -> Result<(), HostError>;
    /// A step of rewriting a table in place (a cache rebuild; see `Sink::begin_rewrite`). The
    /// default is the SDK's: the table is emptied at the start, nothing is left to remove.
    fn rewrite_table(&mut self, step: &RewriteStep) -> Result<(), HostError> {
        match step {
            RewriteStep::Begin(request) => self.prepare_table(&PrepareTable {
                replace: true,
                ..request.clone()
            }),
            RewriteStep::End(_) => Ok(()),
        }
    }
}

/// Opens endpoints for a pipeline's connections.
pub trait Endpoints: Send + Sync {
    /// Opens `connection` of `pipeline`. Blocking.
    fn open(
        &self,
        pipeline: &Pipeline,
        connection: &caudal_config::Connection,
    ) -> Result<Box<dyn Endpoint>, HostError>;
}

/// Endpoints backed by connector plugins found on the pipeline's search path.
#[derive(Debug)]
pub struct PluginEndpoints {
    registry: PluginRegistry,
}

impl PluginEndpoints {
    /// Plugins from the pipeline's `plugin_dir`, `CAUDAL_PLUGIN_PATH`, then next to the binary.
    pub fn for_pipeline(pipeline: &Pipeline) -> PluginEndpoints {
        PluginEndpoints::new(PluginRegistry::new(SearchPath::new(pipeline.plugin_dir())))
    }

    /// Endpoints from an existing registry.
    pub fn new(registry: PluginRegistry) -> PluginEndpoints {
        PluginEndpoints { registry }
    }

    /// The registry plugins are loaded from.
    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }
}

impl Endpoints for PluginEndpoints {
    fn open(
        &self,
        pipeline: &Pipeline,
        connection: &caudal_config::Connection,
    ) -> Result<Box<dyn Endpoint>, HostError> {
        let plugin = self.registry.get(connection.connector())?;
        let context = OpenContext {
            connection: connection.name().to_owned(),
            base_dir: Some(pipeline.dir().display().to_string()),
        };
        let config = plugin_config_json(connection).map_err(|e| HostError::Exchange {
            plugin: plugin.name().to_owned(),
            function: "open",
            source: caudal_connector::Error::Encode(format!(
                "the settings of connection `{}`: {e}",
                connection.name()
            )),
        })?;
        Ok(Box::new(plugin.open(&context, &config)?))
    }
}

/// The connection's settings as the JSON object a plugin deserializes its config from.
/// Holds secrets in clear: it goes to the plugin and nowhere else.
fn plugin_config_json(connection: &caudal_config::Connection) -> serde_json::Result<String> {
    serde_json::to_string(connection.plugin_config().expose())
}

impl Endpoint for host::Connection {
    fn discover(&mut self) -> Result<Vec<TableInfo>, HostError> {
        host::Connection::discover(self)
    }

    fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn ChunkReader>, HostError> {
        Ok(Box::new(host::Connection::read(self, request)?))
    }

    fn prepare_table(&mut self, request: &PrepareTable) -> Result<(), HostError> {
        host::Connection::prepare_table(self, request)
    }

    fn write(&mut self, request: &WriteRequest, batch: &[u8]) -> Result<WriteOutcome, HostError> {
        self.write_encoded(request, batch)
    }

    fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>, HostError> {
        host::Connection::last_applied_seq(self, pipeline, stream)
    }

    fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest, HostError> {
        host::Connection::table_digest(self, request)
    }

    fn unordered(&self) -> bool {
        self.plugin()
            .capabilities()
            .contains(Capabilities::UNORDERED)
    }

    fn replace_table(&mut self, staging: &str, table: &str) -> Result<(), HostError> {
        host::Connection::replace_table(self, staging, table)
    }

    fn rewrite_table(&mut self, step: &RewriteStep) -> Result<(), HostError> {
        host::Connection::rewrite_table(self, step)
    }
}

impl ChunkReader for host::Reader {
    fn schema(&self) -> &Arc<Schema> {
        host::Reader::schema(self)
    }

    fn next_chunk(&mut self) -> Result<Option<EncodedChunk>, HostError> {
        // One copy out of the plugin's buffer: the journal entry owns its payload.
        Ok(self.next_raw()?.map(|raw| EncodedChunk {
            bytes: raw.batch.to_vec(),
            cursor: raw.cursor,
        }))
    }
}

/// Whether a failed call leaves the handle unusable or stale, so that the next use should
/// open the connection again (a lost connection, a panic inside the plugin).
fn needs_reopen(error: &HostError) -> bool {
    error.connector_error().is_some_and(|e| {
        matches!(
            e.code(),
            ErrorCode::Connection | ErrorCode::Panicked | ErrorCode::Poisoned
        )
    })
}

type Slot = Arc<Mutex<Option<Box<dyn Endpoint>>>>;

/// The connections of one run: each opened on first use, once, and shared by every task.
pub struct ConnectionPool {
    pipeline: Arc<Pipeline>,
    endpoints: Arc<dyn Endpoints>,
    slots: Mutex<HashMap<String, Slot>>,
    /// Failed opens of [`ConnectionPool::warm`], each returned by the next call of its
    /// connection instead of opening it a second time.
    warm_failures: Mutex<HashMap<String, CallError>>,
}

impl ConnectionPool {
    /// A pool over `pipeline`'s connections.
    pub fn new(pipeline: Arc<Pipeline>, endpoints: Arc<dyn Endpoints>) -> ConnectionPool {
        ConnectionPool {
            pipeline,
            endpoints,
            slots: Mutex::new(HashMap::new()),
            warm_failures: Mutex::new(HashMap::new()),
        }
    }

    /// Opens connection `name` now, unless it is open, for calls that come soon. A failure
    /// is kept for the next call, which returns it rather than trying again.
    pub fn warm(&self, name: &str) {
        let slot = self.slot(name);
        let mut guard = lock(&slot);
        if guard.is_some() {
            return;
        }
        match self.open(name) {
            Ok(endpoint) => *guard = Some(endpoint),
            Err(e) => {
                self.warm_failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), e);
            }
        }
    }

    fn open(&self, name: &str) -> Result<Box<dyn Endpoint>, CallError> {
        let connection = self.pipeline.connection(name).ok_or_else(|| CallError {
            message: format!("no connection `{name}` in the pipeline file"),
            retryable: false,
            code: None,
        })?;
        self.endpoints
            .open(&self.pipeline, connection)
            .map_err(|e| self.call_error(&e))
    }

    /// Runs `f` on connection `name`, opening it first if needed. Holds the connection for the
    /// duration of `f`: other tasks using it wait. A failure that leaves the handle unusable
    /// closes it, so the next call opens a fresh one (a database that came back).
    ///
    /// Errors come back scrubbed of secrets: they are bound for the journal and the terminal.
    pub fn with<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut dyn Endpoint) -> Result<R, HostError>,
    ) -> Result<R, CallError> {
        let slot = self.slot(name);
        let mut guard = lock(&slot);
        if guard.is_none() {
            let failed = self
                .warm_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
            if let Some(failed) = failed {
                return Err(failed);
            }
            *guard = Some(self.open(name)?);
        }
        let Some(endpoint) = guard.as_mut() else {
            return Err(CallError {
                message: format!("connection `{name}` is not open"),
                retryable: true,
                code: None,
            });
        };
        let result = f(endpoint.as_mut());
        if let Err(e) = &result
            && needs_reopen(e)
        {
            *guard = None;
        }
        result.map_err(|e| self.call_error(&e))
    }

    /// Closes every open connection (dropping a handle closes it).
    pub fn close_all(&self) {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            lock(&slot).take();
        }
    }

    fn slot(&self, name: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(name.to_owned()).or_default().clone()
    }

    fn call_error(&self, error: &HostError) -> CallError {
        CallError {
            message: self.pipeline.scrub(&error.to_string()).into_owned(),
            retryable: error.is_retryable(),
            code: error.connector_error().map(caudal_connector::Error::code),
        }
    }
}

/// A failed call on a pooled connection, scrubbed of secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// What the plugin or the database said.
    pub message: String,
    /// Whether the connector said the same call may succeed later.
    pub retryable: bool,
    /// The connector's error code, when the plugin was reached.
    pub code: Option<ErrorCode>,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn lock(slot: &Slot) -> MutexGuard<'_, Option<Box<dyn Endpoint>>> {
    // A panic while a connection was in use leaves at worst a handle whose next call fails;
    // the slot itself is plain data.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}
