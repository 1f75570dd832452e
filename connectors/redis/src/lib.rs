//! The Redis connector plugin: a cache sink (and a source to read the cache back) on redis-rs,
//! loaded by the caudal host at run time (`libcaudal_redis.so`) or linked in-process as a
//! library (tests).
//!
//! # Where to start reading
//!
//! - [`Redis`] (below): one open connection with its own tokio runtime; implements the SDK's
//!   [`Connector`], [`Source`] and [`Sink`](caudal_connector::Sink).
//! - [`config`]: the `[connections.NAME]` keys (`url`, `prefix`, `key`, `format`).
//! - [`types`]: how each logical type is written as text and read back.
//! - `keys.rs`: row keys, metadata keys, escaping of key values.
//! - `sink.rs`: prepare, transactional writes with the offset and the digest key, snapshot swap.
//! - `dump.rs`: hash rows as `RESTORE` payloads.
//! - `source.rs`: discovery by schema keys, chunked SCAN reads, table digests over key ranges.
//!
//! # Keys
//!
//! With prefix `P`, for a table `T`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:T:{pk}` (the `key` template) | hash or string | one row: a field per non-NULL column, or a JSON object |
//! | `P:T:schema` | string | JSON `{"format", "key", "schema"}`: how rows are stored and typed |
//! | `P:T:digest` | string | the table digest: row count (i64 LE) then the 2 KiB LtHash state |
//! | `P:T:rowdigests` | hash | encoded `{pk}` -> the row's 32-byte digest |
//! | `P:_caudal_offsets` | hash | `pipeline \x1f stream` -> last journal seq applied |
//!
//! # Invariants
//!
//! - A write's table digest key, row digests and stream offset change in one MULTI/EXEC, under
//!   WATCH of the offset and digest keys: a replayed seq changes nothing. Its rows change in
//!   the same MULTI/EXEC, except those of an insert of new keys into a fresh table (below),
//!   which go just before it: a write that dies in between leaves rows that neither the
//!   digest key nor the row digests count, which the batch's replay writes again whole.
//! - A table this connection created or emptied (`prepare_table`) is written without reading
//!   row digests back while its digest key still holds what this connection last wrote there
//!   (no other writer came by): rows never written by this connection cannot be there.
//! - A cache rebuild rewrites a table in place (`Sink::begin_rewrite`, its final rows,
//!   `Sink::end_rewrite`): the old rows stay readable until a final row overwrites each key,
//!   and the end unlinks the keys no final row was written to. Readers never find the table
//!   empty.
//! - `P:T:digest` is the digest of what caudal wrote ([`Redis::stored_digest`] reads it); the
//!   digest [`Sink::table_digest`](caudal_connector::Sink::table_digest) returns is computed
//!   from the rows actually there, with the SDK's canonical encoding. They differ only when
//!   something else changed the cache.
//! - No tokio type leaves this crate: the runtime lives in [`Redis`].

pub mod config;
pub mod types;

mod dump;
mod keys;
mod sink;
mod source;

use std::sync::Arc;

use caudal_connector::{
    BatchReader, Capabilities, Connector, Error, OpenContext, ReadRequest, Result, Sink, Source,
    TableDigest, TableInfo,
};
use redis::aio::MultiplexedConnection;

pub use config::{Format, KeyTemplate, RedisConfig};
pub use keys::{digest_key, offsets_key, row_digests_key, schema_key};
pub use source::RedisReader;

/// How long to wait for a TCP connection to the server.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long one command or transaction may take (a whole batch is one transaction).
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// An open Redis connection, usable as a sink (a cache) and as a source (to read it back).
pub struct Redis {
    runtime: Arc<tokio::runtime::Runtime>,
    conn: MultiplexedConnection,
    config: RedisConfig,
    template: KeyTemplate,
    /// The connection's name in the pipeline, for messages.
    name: String,
    /// Tables this connection created or emptied itself, by name (see [`sink::Fresh`]).
    fresh: std::collections::HashMap<String, sink::Fresh>,
    /// Tables whose rewrite this connection began, by name: the row keys they held then
    /// (suffixes after the row prefix) that no write of this connection has written since,
    /// which the rewrite's end removes or checks (see `Sink::end_rewrite`).
    rewrites: std::collections::HashMap<String, sink::PendingKeys>,
    /// Whether the server takes hash rows as `RESTORE` payloads; probed by the first write of
    /// hash rows.
    restore: Option<bool>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

/// A redis-rs error as an SDK error: lost or refused connections and timeouts are
/// [`Error::Connection`] (retryable), everything else a permanent database error.
pub(crate) fn redis_error(context: impl std::fmt::Display, e: redis::RedisError) -> Error {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        Error::Connection(format!("{context}: {e}"))
    } else {
        Error::permanent_database(format!("{context}: {e}"))
    }
}

impl Redis {
    /// "redis connection `NAME` (URL without password)", the prefix of error messages.
    fn describe(&self) -> String {
        format!(
            "redis connection `{}` ({})",
            self.name,
            self.config.redacted_url()
        )
    }

    /// The prefix every key of this connection starts with.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// The digest kept in `{prefix}:{table}:digest` by the writes, without reading any row:
    /// what caudal wrote, to compare with the digest the journal implies (`caudal verify`).
    /// `None` when the key does not exist (the table was never written).
    pub fn stored_digest(&mut self, table: &str) -> Result<Option<TableDigest>> {
        keys::check_table_name(table)?;
        let key = keys::digest_key(&self.config.prefix, table);
        let ctx = format!("{}: reading digest key `{key}`", self.describe());
        let bytes: Option<Vec<u8>> = self
            .runtime
            .block_on(redis::cmd("GET").arg(&key).query_async(&mut self.conn))
            .map_err(|e| redis_error(&ctx, e))?;
        bytes
            .map(|b| sink::decode_digest(&b).map_err(|e| e.context(&ctx)))
            .transpose()
    }
}

impl Connector for Redis {
    type Config = RedisConfig;
    const NAME: &'static str = "redis";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const CAPABILITIES: Capabilities = Capabilities::SOURCE
        .union(Capabilities::SINK)
        .union(Capabilities::CACHE)
        .union(Capabilities::UNORDERED);

    fn open(config: RedisConfig, context: &OpenContext) -> Result<Redis> {
        let ctx = format!(
            "redis connection `{}` ({})",
            context.connection,
            config.redacted_url()
        );
        config.validate().map_err(|e| e.context(&ctx))?;
        let template = KeyTemplate::parse(&config.key).map_err(|e| e.context(&ctx))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("{ctx}: starting the I/O runtime: {e}")))?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::Config(format!("{ctx}: {e}")))?;
        let settings = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut conn = runtime
            .block_on(client.get_multiplexed_async_connection_with_config(&settings))
            .map_err(|e| redis_error(format!("{ctx}: connecting"), e))?;
        let _: String = runtime
            .block_on(redis::cmd("PING").query_async(&mut conn))
            .map_err(|e| redis_error(format!("{ctx}: PING"), e))?;
        Ok(Redis {
            runtime: Arc::new(runtime),
            conn,
            config,
            template,
            name: context.connection.clone(),
            fresh: std::collections::HashMap::new(),
            rewrites: std::collections::HashMap::new(),
            restore: None,
        })
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }
}

impl Source for Redis {
    fn discover(&mut self) -> Result<Vec<TableInfo>> {
        let ctx = self.describe();
        source::discover(self).map_err(|e| e.context(ctx))
    }

    fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn BatchReader>> {
        let ctx = self.describe();
        let reader = source::read(self, request).map_err(|e| e.context(ctx))?;
        Ok(Box::new(reader))
    }
}

caudal_connector::export_connector!(Redis);
