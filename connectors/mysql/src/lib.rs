//! The `mysql` connector plugin: a source and a sink for MySQL 8 and MariaDB, on sqlx.
//!
//! One [`MySqlConnector`] is one open connection of a pipeline: a sqlx pool plus the plugin's
//! own tokio runtime (one worker thread), created in [`Connector::open`]. No tokio type
//! crosses the plugin boundary: the host calls the blocking trait methods, which `block_on`
//! the runtime. A read runs as a task on the worker thread and hands finished chunks over a
//! channel, so decoding the next chunk overlaps with the host journaling the previous one; a
//! write builds its statements on the host's thread while the worker executes the previous
//! one in the batch's transaction.
//!
//! Where to start reading:
//! - [`config`]: the connection's keys and their checks (the password never appears in
//!   `Debug` or in errors: every error reaches the host through `Error::for_connection`,
//!   which removes it);
//! - [`types`]: the type mapping both ways, with its table;
//! - `source.rs`: discovery and chunked keyset reads; `decode.rs`: binary rows -> batch;
//! - `sink.rs`: table creation, sized multi-row INSERTs, upserts, deletes, the offset row,
//!   digests and the snapshot swap; `encode.rs`: batch values -> SQL literals.
//!
//! Invariants every session relies on (set on each new pooled connection): `time_zone` is
//! `+00:00` (TIMESTAMP values are UTC on both sides), `sql_mode` is strict and never has
//! `NO_BACKSLASH_ESCAPES` or `ANSI_QUOTES` (our literals use backslash escapes, our identifiers
//! backticks), and has `NO_AUTO_VALUE_ON_ZERO` (a copied 0 stays 0 in an auto-increment key).

pub mod config;
pub mod types;

mod bind;
mod calendar;
mod decode;
mod encode;
mod error;
mod sink;
mod source;
mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use caudal_connector::{Capabilities, Connector, OpenContext, Sink, Source};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

pub use config::MySqlConfig;
use error::Secret;
pub use error::{Error, Result};

/// The session settings of every pooled connection (see the crate documentation).
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,\
NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO', \
time_zone = '+00:00'";

/// How long to wait for a pooled connection before reporting the server unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `close` waits for connections still in use.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connector learned about the server at open.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `SELECT VERSION()`.
    pub version: String,
    /// Whether the server is MariaDB (else MySQL).
    pub mariadb: bool,
    /// The server's `max_allowed_packet`.
    pub max_allowed_packet: u64,
    /// The largest statement the sink sends: the configured or server packet size, less a
    /// margin for the protocol header. A row alone may use all of it.
    pub statement_limit: usize,
    /// Where multi-row statements are cut: `statement_limit`, or 2 MiB if smaller.
    pub statement_target: usize,
}

impl ServerInfo {
    /// The collation of created tables: binary and no-pad, so that keys differing in case or
    /// trailing spaces stay distinct.
    pub fn table_collation(&self) -> &'static str {
        if self.mariadb {
            "utf8mb4_nopad_bin"
        } else if self.version_at_least(8, 0, 17) {
            "utf8mb4_0900_bin"
        } else {
            // PAD SPACE, the best older MySQL has.
            "utf8mb4_bin"
        }
    }

    /// Whether the server's version number is at least `major.minor.patch`.
    pub fn version_at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        let mut parts = self
            .version
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        v >= (major, minor, patch)
    }
}

/// Counters of the statements the sink sent (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// INSERT and DELETE statements that carried rows.
    pub statements: u64,
    /// Bytes of those statements.
    pub bytes: u64,
    /// The largest of them, in bytes.
    pub largest: u64,
}

/// State shared by the connector and its running readers.
pub(crate) struct Shared {
    /// `[connections.NAME]`, for messages.
    pub connection: String,
    /// The url's password, removed from every message.
    pub secret: Secret,
    /// The default database (config or url), if any.
    pub database: Option<String>,
    /// The server.
    pub server: ServerInfo,
    statements: AtomicU64,
    bytes: AtomicU64,
    largest: AtomicU64,
}

impl Shared {
    /// Converts an internal error for the host.
    pub fn sdk(&self, e: Error) -> caudal_connector::Error {
        e.for_connection(error::CONNECTOR, &self.connection, &self.secret)
    }

    pub(crate) fn count_statement(&self, bytes: usize) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.largest.fetch_max(bytes as u64, Ordering::Relaxed);
    }
}

/// An open `mysql` connection.
pub struct MySqlConnector {
    runtime: Arc<tokio::runtime::Runtime>,
    pool: MySqlPool,
    shared: Arc<Shared>,
    /// Whether `_caudal_offsets` is known to exist in the default database.
    offsets_ready: bool,
}

impl MySqlConnector {
    /// What the connector learned about the server at open.
    pub fn server(&self) -> &ServerInfo {
        &self.shared.server
    }

    /// Statements written so far by this connection's sink.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            statements: self.shared.statements.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            largest: self.shared.largest.load(Ordering::Relaxed),
        }
    }

    fn open_inner(config: MySqlConfig, context: &OpenContext) -> Result<MySqlConnector> {
        let valid = config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("caudal-mysql")
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the plugin's runtime: {e}")))?;
        let host = format!("{}:{}", valid.options.get_host(), valid.options.get_port());
        let (pool, server) = runtime.block_on(async {
            // One direct connection first: the pool retries a refused connection until its
            // acquire timeout, which would hide the cause behind "timed out".
            let mut probe = valid
                .options
                .connect()
                .await
                .map_err(|e| error::sql(format!("connecting to {host}"), e))?;
            let row =
                sqlx::query("SELECT CAST(VERSION() AS CHAR), CAST(@@max_allowed_packet AS CHAR)")
                    .fetch_one(&mut probe)
                    .await
                    .map_err(|e| error::sql(format!("reading server variables of {host}"), e))?;
            let text = |i: usize| -> Result<Option<String>> {
                Ok(decode::raw_value(&row, i)?.map(|b| String::from_utf8_lossy(b).into_owned()))
            };
            let version = text(0)?.unwrap_or_default();
            let packet: u64 = text(1)?.and_then(|p| p.parse().ok()).unwrap_or(4 << 20);
            // Closing politely may fail on a dying server; the probe has done its work.
            let _ = probe.close().await;
            let pool = MySqlPoolOptions::new()
                .max_connections(valid.pool_size)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SESSION_SETUP).await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(valid.options.clone());
            Ok::<_, Error>((pool, (version, packet)))
        })?;
        let (version, server_packet) = server;
        let limit = match valid.max_allowed_packet {
            Some(p) if p > server_packet => {
                return Err(Error::Config(format!(
                    "`max_allowed_packet` is {p} but the server at {host} allows only \
                     {server_packet}; lower it or raise the server's max_allowed_packet"
                )));
            }
            Some(p) => p,
            None => server_packet,
        };
        // The protocol header and the command byte count against the packet limit.
        let statement_limit = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(64);
        let statement_target = statement_limit.min(config::STATEMENT_TARGET as usize);
        let server = ServerInfo {
            mariadb: version.to_ascii_lowercase().contains("mariadb"),
            version,
            max_allowed_packet: server_packet,
            statement_limit,
            statement_target,
        };
        Ok(MySqlConnector {
            runtime: Arc::new(runtime),
            pool,
            shared: Arc::new(Shared {
                connection: context.connection.clone(),
                secret: valid.secret,
                database: valid.database,
                server,
                statements: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                largest: AtomicU64::new(0),
            }),
            offsets_ready: false,
        })
    }

    /// The default database, or an error saying how to set one.
    fn default_database(&self, what: &str) -> Result<&str> {
        self.shared.database.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "{what} needs a database: set `database`, or put one in the url's path"
            ))
        })
    }
}

impl Connector for MySqlConnector {
    type Config = MySqlConfig;
    const NAME: &'static str = "mysql";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const CAPABILITIES: Capabilities = Capabilities::SOURCE.union(Capabilities::SINK);

    fn open(config: MySqlConfig, context: &OpenContext) -> caudal_connector::Result<Self> {
        let secret = config::secret_of(&config.url);
        MySqlConnector::open_inner(config, context)
            .map_err(|e| e.for_connection(error::CONNECTOR, &context.connection, &secret))
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }

    fn close(&mut self) -> caudal_connector::Result<()> {
        // `close` waits for borrowed connections; a reader the host still holds must not
        // block it forever (its connection closes when the reader is dropped).
        let pool = &self.pool;
        let _ = self
            .runtime
            .block_on(async { tokio::time::timeout(CLOSE_TIMEOUT, pool.close()).await });
        Ok(())
    }
}

caudal_connector::export_connector!(MySqlConnector);

#[cfg(test)]
mod tests {
    use super::*;

    fn server(version: &str) -> ServerInfo {
        ServerInfo {
            version: version.into(),
            mariadb: version.contains("MariaDB"),
            max_allowed_packet: 1 << 24,
            statement_limit: 1 << 24,
            statement_target: 1 << 21,
        }
    }

    #[test]
    fn collation_follows_the_server() {
        assert_eq!(
            server("10.11.19-MariaDB-0+deb12u1").table_collation(),
            "utf8mb4_nopad_bin"
        );
        assert_eq!(server("8.0.36").table_collation(), "utf8mb4_0900_bin");
        assert_eq!(server("8.0.16-log").table_collation(), "utf8mb4_bin");
        assert_eq!(server("5.7.44").table_collation(), "utf8mb4_bin");
        assert!(server("8.4.0").version_at_least(8, 0, 17));
        assert!(!server("garbage").version_at_least(1, 0, 0));
    }
}
