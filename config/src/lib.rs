//! Typed caudal pipeline files: parsing, validation with `file:line:column`, and secrets.
//!
//! A pipeline file (TOML) declares connections, the streams that move rows between them, the
//! journal, retries and a schedule. [`Pipeline::from_path`] reads one and returns a [`Pipeline`]
//! in which every rule holds, or a [`ConfigError`] that names the file, line and column of each
//! problem. Nothing else in caudal reads pipeline files.
//!
//! ```toml
//! [pipeline]
//! name = "ventas"
//! plugin_dir = "plugins"            # optional; relative to this file
//!
//! [journal]
//! dir = "journal"                   # default "journal", relative to this file
//! durability = "batch"              # always | batch (default) | interval | never
//!
//! [connections.tienda_01]
//! connector = "mssql"
//! url = "mssql://etl:${TIENDA_01_PASSWORD}@tienda01.local:1433/ventas"
//!
//! [connections.warehouse]
//! connector = "duckdb"
//! path = "data/ventas.duckdb"
//!
//! [[streams]]
//! from = "tienda_*"                 # a connection, a list, or a pattern (one partition each)
//! table = "ventas_raw"
//! to = "warehouse"                  # one destination or a list
//! mode = "incremental"              # snapshot (default) | incremental | merge | consolidate
//! cursor = "fecha"
//!
//! [retry]
//! max_attempts = 4
//! every = "20m"
//!
//! [schedule]
//! cron = "0 5 * * *"
//! ```
//!
//! Secrets: any string in a connection's settings may contain `${ENV_VAR}`, and a whole value
//! `file:PATH` is read from a file. Resolved values live in [`Secret`]s; [`Connection::redacted`]
//! and [`Pipeline::scrub`] keep them out of logs, errors and the journal.
//!
//! Where to start reading: `pipeline.rs` (the public surface), then `load.rs` (parsing and every
//! validation rule), `connection.rs` and `secret.rs` (settings and secrets).

mod connection;
mod error;
mod glob;
mod journal;
mod load;
mod pipeline;
mod position;
mod retry;
mod schedule;
mod secret;
mod stream;
mod values;

pub use connection::{BUILTIN_CONNECTORS, Connection, Setting};
pub use error::{ConfigError, Location, Result};
pub use journal::{DEFAULT_SEGMENT_SIZE, DEFAULT_SYNC_INTERVAL, Durability, JournalSettings};
pub use pipeline::Pipeline;
pub use retry::{Backoff, RetryPolicy};
pub use schedule::{CronSchedule, Schedule, ScheduleTime};
pub use secret::Secret;
pub use stream::{DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS, DEFAULT_SOURCE_COLUMN, Mode, Stream};

#[cfg(test)]
mod tests;
