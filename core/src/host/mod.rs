//! The plugin host: finds, loads and calls connector plugins (shared libraries).
//!
//! Start at [`PluginRegistry`]: built from a [`SearchPath`] (the pipeline's `plugin_dir`,
//! then `CAUDAL_PLUGIN_PATH`, then the directory of the running executable), it loads each
//! connector once by name (`libcaudal_NAME.so`) and hands out [`Plugin`]s. A plugin opens
//! [`Connection`]s; a connection reads through a [`Reader`] and writes journaled batches.
//!
//! Invariants:
//! - A library is kept loaded only after its ABI version and table size were checked; a
//!   refused library is closed again before the error is returned, and nothing is cached.
//! - Loaded libraries are never unloaded (the `Library` is leaked), so the `'static` function
//!   table and strings a plugin hands out stay valid for the life of the process.
//! - Every buffer a plugin returns is freed by that plugin's `free_buffer`, exactly once
//!   ([`PluginBytes`] does it on drop).
//!
//! Threads: every call into a plugin may block for as long as the database takes (network,
//! transactions, fsync). Call them from blocking threads — `tokio::task::spawn_blocking` or a
//! dedicated thread — never from an async task. A [`Connection`] or [`Reader`] is `Send` but
//! not `Sync`: one thread uses it at a time, which is the plugin ABI's rule.

mod connection;
mod discovery;
mod error;
mod plugin;

pub use connection::{Connection, PluginBytes, RawChunk, Reader};
pub use discovery::{PLUGIN_PATH_ENV, PluginFile, SearchPath, plugin_file_name};
pub use error::{HostError, Result};
pub use plugin::{Plugin, PluginRegistry};
