//! A TDS test server: a wire-level double of SQL Server for the connector tests, backed by an
//! embedded DuckDB engine.
//!
//! **This is a test double, not a SQL Server.** It speaks enough TDS 7.4 for tiberius (and so
//! for caudal's SQL Server connector) to connect without TLS, log in, run SQL batches and
//! `sp_executesql` with parameters, bulk load, and use transactions; the T-SQL it receives is
//! translated to DuckDB SQL (see `sql.rs`). Behaviour that differs from SQL Server, by design:
//!
//! - No TLS: PRELOGIN answers ENCRYPT_NOT_SUP; clients must use `EncryptionLevel::NotSupported`.
//! - Errors act as under `SET XACT_ABORT ON`: a failed statement ends its batch and rolls back
//!   an open transaction (the client receives the ROLLBACK ENVCHANGE).
//! - Each database is its own DuckDB database; there is one schema (`dbo`), and cross-database
//!   names drop their database and schema parts.
//! - Column types are remembered in a side catalog (`tds_catalog` inside each database), which
//!   also answers INFORMATION_SCHEMA.TABLES / COLUMNS / TABLE_CONSTRAINTS / KEY_COLUMN_USAGE.
//!   Result columns that are not plain table columns get a type derived from DuckDB's.
//! - `varchar`/`char`/`text` use collation Latin1_General_CI_AS (code page 1252); text that code
//!   page cannot hold is rejected rather than replaced by `?`. Comparisons are case-sensitive
//!   (DuckDB's), unlike a CI collation.
//! - `datetime2(7)` is kept to the 100 ns in DuckDB `TIMESTAMP_NS`, so it covers years
//!   1677..2262 here; `time(7)` keeps microseconds only. `datetimeoffset` is stored as text.
//! - `GETDATE()` and `SYSUTCDATETIME()` both give UTC.
//!
//! ```no_run
//! # async fn demo() -> Result<(), caudal_tds_server::Error> {
//! use caudal_tds_server::TdsServer;
//! let server = TdsServer::builder()
//!     .credentials("sa", "Secret#123")
//!     .database("tienda_01")
//!     .start()
//!     .await?;
//! let addr = server.addr(); // 127.0.0.1, ephemeral port
//! server.refuse_logins("tienda_01", 2); // the next 2 logins get ERROR 4060
//! server.execute("tienda_01", "CREATE TABLE t (id int PRIMARY KEY)")?;
//! println!("{:?}", server.stats());
//! # let _ = addr; Ok(()) }
//! ```
//!
//! Start reading at [`TdsServer`]; a connection's life is in `server.rs`, statement execution
//! in `engine.rs`, the wire types in `types.rs`.

mod catalog;
mod engine;
mod error;
mod server;
mod sql;
mod tokens;
mod types;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use error::{Error, Result};

use engine::{Database, Session};

/// Counters shared by all sessions.
#[derive(Default)]
pub(crate) struct Counters {
    engine_ns: AtomicU64,
    busy_ns: AtomicU64,
    statements: AtomicU64,
    rows_sent: AtomicU64,
    rows_received: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    logins: AtomicU64,
}

/// What the server has done so far, to separate its own cost from a client's in benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Time inside DuckDB: executing statements, reading and encoding their rows.
    pub engine: Duration,
    /// Time handling requests: decoding, translating, engine, encoding (not socket waits).
    pub busy: Duration,
    /// Statements run.
    pub statements: u64,
    /// Rows sent in result sets.
    pub rows_sent: u64,
    /// Rows received by bulk load.
    pub rows_received: u64,
    /// Request bytes received after login (packet payloads).
    pub bytes_received: u64,
    /// Response bytes sent after login.
    pub bytes_sent: u64,
    /// Successful logins.
    pub logins: u64,
}

pub(crate) struct Shared {
    user: String,
    password: String,
    databases: Mutex<Vec<Arc<Database>>>,
    counters: Arc<Counters>,
}

impl Shared {
    fn database(&self, name: &str) -> Option<Arc<Database>> {
        let dbs = self.databases.lock().ok()?;
        dbs.iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    fn default_database(&self) -> String {
        self.databases
            .lock()
            .ok()
            .and_then(|d| d.first().map(|d| d.name.clone()))
            .unwrap_or_default()
    }
}

/// Configures a [`TdsServer`].
#[derive(Debug, Clone)]
pub struct TdsServerBuilder {
    user: String,
    password: String,
    databases: Vec<(String, Option<PathBuf>)>,
    addr: SocketAddr,
}

impl TdsServerBuilder {
    /// The only login accepted (SQL authentication). Default `sa` / empty password.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.user = user.to_string();
        self.password = password.to_string();
        self
    }

    /// Hosts a database kept in memory.
    pub fn database(mut self, name: &str) -> Self {
        self.databases.push((name.to_string(), None));
        self
    }

    /// Hosts a database kept in a DuckDB file (created if absent).
    pub fn database_file(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.databases.push((name.to_string(), Some(path.into())));
        self
    }

    /// Where to listen. Default 127.0.0.1 on an ephemeral port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Starts the server on its own thread and runtime.
    pub async fn start(self) -> Result<TdsServer> {
        self.start_blocking()
    }

    /// Starts the server on its own thread and runtime, from synchronous code.
    pub fn start_blocking(self) -> Result<TdsServer> {
        let mut dbs = Vec::new();
        for (name, path) in &self.databases {
            dbs.push(Arc::new(Database::open(name, path.as_deref())?));
        }
        let shared = Arc::new(Shared {
            user: self.user,
            password: self.password,
            databases: Mutex::new(dbs),
            counters: Arc::new(Counters::default()),
        });
        let listener = std::net::TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("tds-server")
            .enable_all()
            .build()?;
        let accept_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tds-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "tds server cannot listen");
                        return;
                    }
                };
                let accept = async {
                    loop {
                        match listener.accept().await {
                            Ok((stream, peer)) => {
                                let shared = accept_shared.clone();
                                tokio::spawn(async move {
                                    if let Err(e) = server::serve(stream, shared).await {
                                        tracing::debug!(%peer, error = %e, "tds connection ended");
                                    }
                                });
                            }
                            Err(e) => tracing::warn!(error = %e, "tds accept failed"),
                        }
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
                runtime.shutdown_timeout(Duration::from_secs(2));
            })?;
        Ok(TdsServer {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A running TDS test server. Stops when dropped.
pub struct TdsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TdsServer {
    /// A builder: credentials `sa` / empty, no databases, 127.0.0.1 on an ephemeral port.
    pub fn builder() -> TdsServerBuilder {
        TdsServerBuilder {
            user: "sa".into(),
            password: String::new(),
            databases: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an in-memory database while running.
    pub fn add_database(&self, name: &str) -> Result<()> {
        let db = Arc::new(Database::open(name, None)?);
        let mut dbs = self
            .shared
            .databases
            .lock()
            .map_err(|_| Error::Protocol("lock poisoned".into()))?;
        if !dbs.iter().any(|d| d.name.eq_ignore_ascii_case(name)) {
            dbs.push(db);
        }
        Ok(())
    }

    fn db(&self, name: &str) -> Result<Arc<Database>> {
        self.shared
            .database(name)
            .ok_or_else(|| Error::UnknownDatabase(name.to_string()))
    }

    /// The next `n` logins to `database` fail with ERROR 4060 and the connection is closed.
    pub fn refuse_logins(&self, database: &str, n: u32) {
        if let Ok(db) = self.db(database) {
            db.refuse.store(n, Ordering::SeqCst);
        }
    }

    /// Every login to `database` fails with ERROR 4060 from now on.
    pub fn fail_always(&self, database: &str) {
        if let Ok(db) = self.db(database) {
            db.fail_always.store(true, Ordering::SeqCst);
        }
    }

    /// Runs a T-SQL batch as an administrator would (test setup, tampering); returns the rows
    /// affected, summed. Errors carry the SQL Server error number a client would get.
    pub fn execute(&self, database: &str, tsql: &str) -> Result<u64> {
        let db = self.db(database)?;
        let mut session = Session::new(db, self.shared.counters.clone())?;
        let result = session.run_batch(tsql, HashMap::new());
        if let Some((number, message)) = result.error {
            return Err(Error::Sql { number, message });
        }
        Ok(result
            .outcomes
            .iter()
            .map(|o| match o {
                engine::Outcome::Count(n) => *n,
                engine::Outcome::Rows { count, .. } => *count,
                _ => 0,
            })
            .sum())
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            engine: Duration::from_nanos(get(&c.engine_ns)),
            busy: Duration::from_nanos(get(&c.busy_ns)),
            statements: get(&c.statements),
            rows_sent: get(&c.rows_sent),
            rows_received: get(&c.rows_received),
            bytes_received: get(&c.bytes_received),
            bytes_sent: get(&c.bytes_sent),
            logins: get(&c.logins),
        }
    }
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
