//! Opening DuckDB databases, one instance per file per process, and DuckDB errors as SDK
//! errors.
//!
//! DuckDB allows one database instance per file: a second instance on the same file in the
//! same process would not see the first one's writes and could corrupt the file. A pipeline
//! may open the same file twice (a source and a sink, or two streams), so every open of a file
//! goes through [`Database::open`], which hands out new connections to the one live instance.
//! The instance closes (and checkpoints) when the last [`Database`] handle is dropped.
//!
//! Invariant: a `duckdb::Connection` made from a [`Database`] is dropped before that
//! `Database` handle (struct field order in its owners), so the instance outlives its
//! connections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use caudal_connector::{Error, Result};
use duckdb::{AccessMode, Config, Connection};

use crate::config::{DuckDbConfig, Location};

/// A shared, open DuckDB database instance.
pub struct Database {
    /// The first connection, from which every other is cloned; kept for the instance's life.
    root: Mutex<Connection>,
    /// The memory limit in bytes when it is caudal's default, which a write that runs out of
    /// memory raises ([`Database::raise_memory_limit`]); `None` when the connection set one
    /// (the user's choice stands) or the database is in memory (DuckDB's default).
    adaptive_limit: Mutex<Option<u64>>,
    location: Location,
    read_only: bool,
    /// The registry key of a file database.
    key: Option<PathBuf>,
}

impl Drop for Database {
    fn drop(&mut self) {
        // Forget the dead entry now rather than at the next open, so that nothing of a closed
        // database stays allocated. `try_lock`: this may run inside `open`, which holds the
        // lock; the next `open` purges the entry then.
        if let Some(key) = &self.key
            && let Ok(mut open) = registry().try_lock()
            && open.get(key).is_some_and(|w| w.strong_count() == 0)
        {
            open.remove(key);
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("location", &self.location)
            .field("read_only", &self.read_only)
            .finish()
    }
}

type Registry = Mutex<BTreeMap<PathBuf, Weak<Database>>>;

fn registry() -> &'static Registry {
    static OPEN: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(BTreeMap::new()))
}

impl Database {
    /// The database of `config` (resolved against `base_dir`) and a new connection to it.
    pub fn open(
        config: &DuckDbConfig,
        base_dir: Option<&str>,
    ) -> Result<(Arc<Database>, Connection)> {
        let location = config.location(base_dir);
        let path = match &location {
            Location::Memory => return Database::create(config, location, None),
            Location::File(p) => p.clone(),
        };
        let key = canonical(&path, config.read_only)?;
        // Held across the open so that two threads opening one file make one instance.
        let mut open = registry().lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, weak| weak.strong_count() > 0);
        if let Some(db) = open.get(&key).and_then(Weak::upgrade) {
            if db.read_only && !config.read_only {
                return Err(Error::Config(format!(
                    "{} is already open read-only in this process; open every connection to it \
                     read-only, or none",
                    path.display()
                )));
            }
            let conn = db.connect()?;
            return Ok((db, conn));
        }
        let (db, conn) = Database::create(config, location, Some(&key))?;
        open.insert(key, Arc::downgrade(&db));
        Ok((db, conn))
    }

    fn create(
        config: &DuckDbConfig,
        location: Location,
        file: Option<&Path>,
    ) -> Result<(Arc<Database>, Connection)> {
        let cfg = duckdb_config(config, file.is_some())?;
        if let Some(path) = file
            && !config.read_only
        {
            remove_empty_database_file(path)?;
        }
        let root = match file {
            None => Connection::open_in_memory_with_flags(cfg),
            Some(path) => Connection::open_with_flags(path, cfg),
        }
        .map_err(|e| open_error(&location, &e))?;
        let adaptive = (file.is_some() && config.memory_limit.is_none())
            .then_some(DEFAULT_FILE_MEMORY_LIMIT_BYTES);
        let db = Arc::new(Database {
            root: Mutex::new(root),
            adaptive_limit: Mutex::new(adaptive),
            location,
            read_only: config.read_only,
            key: file.map(Path::to_path_buf),
        });
        let conn = db.connect()?;
        Ok((db, conn))
    }

    /// A new connection to this instance.
    pub fn connect(&self) -> Result<Connection> {
        let root = self.root.lock().unwrap_or_else(|p| p.into_inner());
        root.try_clone()
            .map_err(|e| Error::Connection(format!("{}: cannot connect: {e}", self.location)))
    }

    /// Doubles the memory limit when it is caudal's default and below the ceiling (80% of
    /// the machine's memory, DuckDB's own default), so that a write that ran out of memory
    /// can be tried again: what grows with a table and cannot be evicted (a primary key's
    /// index) gets the room it needs, while streaming stays small. `false` when the limit was
    /// configured or is at the ceiling: the error stands.
    pub fn raise_memory_limit(&self, conn: &Connection) -> Result<bool> {
        self.raise_limit_to(conn, |current| current.saturating_mul(2))
    }

    /// Before a write of `batch_bytes`: doubles the memory limit, when it is caudal's default,
    /// until it holds the default plus [`COMMIT_ROOM_PER_BATCH_BYTE`] times the batch.
    ///
    /// A statement that runs out of memory is undone cleanly and retried after
    /// [`Database::raise_memory_limit`], but a COMMIT that does is not: DuckDB 1.2 leaves the
    /// batch's keys in the table's primary key index, so every later write of those rows fails
    /// on a duplicate key, even after a restart. A commit appends the rows that did not fill a
    /// whole row group to the table and its index, so its room is set from the batch size
    /// before the transaction starts.
    pub fn make_room_for_commit(&self, conn: &Connection, batch_bytes: usize) -> Result<()> {
        let need = (batch_bytes as u64)
            .saturating_mul(COMMIT_ROOM_PER_BATCH_BYTE)
            .saturating_add(DEFAULT_FILE_MEMORY_LIMIT_BYTES);
        self.raise_limit_to(conn, |current| {
            let mut next = current;
            while next < need {
                next = next.saturating_mul(2);
            }
            next
        })
        .map(drop)
    }

    /// Sets the adaptive limit to `next(current)`, capped at the ceiling, when that raises it.
    fn raise_limit_to(&self, conn: &Connection, next: impl FnOnce(u64) -> u64) -> Result<bool> {
        let mut limit = self
            .adaptive_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(current) = *limit else {
            return Ok(false);
        };
        let next = next(current).min(memory_ceiling());
        if next <= current {
            return Ok(false);
        }
        conn.execute_batch(&format!("SET memory_limit = '{}KiB'", next / 1024))
            .map_err(|e| db_error(format!("{}: raising the memory limit", self.location), e))?;
        *limit = Some(next);
        Ok(true)
    }

    /// Where the database lives (for messages).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Whether it was opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

/// The registry key of a file: its canonical path, which needs the file's directory to exist
/// (created here for writable databases; DuckDB creates the file itself).
fn canonical(path: &Path, read_only: bool) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !read_only && !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Config(format!(
                "cannot create the directory {} for the database: {e}",
                dir.display()
            ))
        })?;
    }
    let dir = dir.canonicalize().map_err(|e| {
        Error::Config(format!(
            "the directory of the database {} is not usable: {e}",
            path.display()
        ))
    })?;
    let file = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("`path` {} does not name a file", path.display())))?;
    Ok(dir.join(file))
}

/// The memory limit a file database whose connection sets none starts with. Scans, appends
/// and the joins of merges run within it (operators spill to disk beyond it); measured on
/// `caudal bench mysql`, throughput is the same as with DuckDB's default. A primary key's
/// index must stay in memory while rows are upserted: a write that runs out doubles the
/// limit and runs again ([`Database::raise_memory_limit`]).
pub const DEFAULT_FILE_MEMORY_LIMIT_BYTES: u64 = 16 << 20;

/// Room a commit gets per byte of its batch, beyond [`DEFAULT_FILE_MEMORY_LIMIT_BYTES`]
/// ([`Database::make_room_for_commit`]). Measured: the last chunk of a million-row snapshot in
/// chunks of 131,072 rows (82,496 rows, 12.8 MB as a batch) failed to commit at 16 MiB and
/// committed at 48 MiB.
pub const COMMIT_ROOM_PER_BATCH_BYTE: u64 = 3;

/// DuckDB's own default limit: 80% of the machine's memory (8 GiB when it cannot be read).
fn memory_ceiling() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(10 << 20);
    total_kib * 1024 / 10 * 8
}

/// DuckDB's worker threads when the connection sets none: half the cores, at least one.
///
/// A pipeline keeps cores busy besides DuckDB's: the engine reads, journals and delivers on
/// threads of its own and digests on one worker per core. DuckDB's default of one thread per
/// core makes its scheduler contend with them; measured on 2 cores (MySQL -> DuckDB, 1M rows,
/// three runs each) one DuckDB thread ran 2.8-3.1 s against 3.6-3.8 s with two, with a quarter
/// less CPU, and `caudal verify` of a 1M-row table took 0.29-0.30 s against 0.32-0.35 s.
pub fn default_threads() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores / 2).unwrap_or(u32::MAX).max(1)
}

/// Whether a DuckDB error is its out-of-memory error (the memory limit was reached).
pub fn is_out_of_memory(e: &Error) -> bool {
    e.to_string().contains("Out of Memory Error")
}

fn duckdb_config(config: &DuckDbConfig, file: bool) -> Result<Config> {
    let bad = |e: duckdb::Error| Error::Config(format!("DuckDB setting: {e}"));
    let mut c = Config::default()
        // No network access and no surprise downloads from inside a pipeline run.
        .with("autoinstall_known_extensions", "false")
        .map_err(bad)?
        .with("autoload_known_extensions", "false")
        .map_err(bad)?;
    if config.read_only {
        c = c.access_mode(AccessMode::ReadOnly).map_err(bad)?;
    }
    let threads = config.threads.unwrap_or_else(default_threads);
    c = c.threads(i64::from(threads)).map_err(bad)?;
    // A file database's blocks are on disk: the buffer pool only caches them, and a command
    // that streams a table through would otherwise keep every block it read or wrote (up to
    // DuckDB's default of 80% of the machine's memory), so its memory grew with the table.
    // An in-memory database lives in the buffer pool: DuckDB's default stays.
    let limit = match (&config.memory_limit, file) {
        (Some(limit), _) => Some(limit.clone()),
        (None, true) => Some(format!("{}KiB", DEFAULT_FILE_MEMORY_LIMIT_BYTES / 1024)),
        (None, false) => None,
    };
    if let Some(limit) = limit {
        c = c
            .max_memory(&limit)
            .map_err(|e| Error::Config(format!("`memory_limit` = {limit:?}: {e}")))?;
    }
    Ok(c)
}

/// Removes `path` when it is an empty file (and its WAL, when that is empty or absent).
///
/// DuckDB creates a new database's file first and writes its header after, so a process killed
/// in between (a crash during the first run into a new file) leaves a file of 0 bytes, which
/// DuckDB refuses on every later open as "not a valid DuckDB database file": the destination
/// could never be written again. An empty file holds nothing, so it goes and the open creates
/// the database anew. A file with any byte in it is never touched, nor one another process
/// holds DuckDB's lock on (it is creating the database this very moment).
fn remove_empty_database_file(path: &Path) -> Result<()> {
    // An empty regular file: `Some(true)`; absent: `None`; anything else: `Some(false)`.
    let empty = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => Some(m.is_file() && m.len() == 0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some(false),
    };
    let wal = PathBuf::from(format!("{}.wal", path.display()));
    if empty(path) != Some(true) || empty(&wal) == Some(false) {
        return Ok(());
    }
    match std::fs::File::open(path) {
        Ok(file) if !locked_by_another_process(&file) => {}
        // Gone already, unreadable or in use: DuckDB's open says what it finds.
        _ => return Ok(()),
    }
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Config(format!(
            "cannot remove the empty database file {} (left by a process stopped while it \
             created the database) to create it anew: {e}",
            p.display()
        ))),
        _ => Ok(()),
    };
    remove(&wal)?;
    remove(path)
}

/// Whether another process holds a lock that would keep DuckDB from opening `file` for
/// writing: DuckDB locks a database file it opens with `fcntl`. Asked with `F_GETLK`, which
/// places no lock.
#[cfg(unix)]
fn locked_by_another_process(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed `flock` is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a valid open descriptor and a pointer to a live `flock` for the call.
    let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    asked != 0 || lock.l_type != libc::F_UNLCK as libc::c_short
}

#[cfg(not(unix))]
fn locked_by_another_process(_file: &std::fs::File) -> bool {
    // No way to ask here: assume it is, and leave the file alone.
    true
}

fn open_error(location: &Location, e: &duckdb::Error) -> Error {
    let text = e.to_string();
    if text.contains("not a valid DuckDB database file") {
        // Trying again cannot help: the file has to be moved away or `path` changed.
        return Error::Config(format!(
            "cannot open {location}: {text} (point `path` at another file, or move this one \
             away)"
        ));
    }
    if text.contains("lock") {
        Error::Connection(format!(
            "cannot open {location}: {text} (another process holds the file; DuckDB allows one \
             writer process per file)"
        ))
    } else {
        Error::Connection(format!("cannot open {location}: {text}"))
    }
}

/// A DuckDB error as an SDK error, with `context` (what was being done, on what) in front.
/// Write-write conflicts and I/O errors may succeed when tried again; the rest will not.
pub fn db_error(context: impl std::fmt::Display, e: duckdb::Error) -> Error {
    let text = e.to_string();
    let retryable = text.contains("onflict") || text.contains("IO Error") || text.contains("I/O");
    let message = format!("{context}: {text}");
    if retryable {
        Error::retryable_database(message)
    } else {
        Error::permanent_database(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DuckDbConfig::file(dir.path().join("a.duckdb").to_string_lossy());
        let (db1, c1) = Database::open(&cfg, None).unwrap();
        let (db2, c2) = Database::open(&cfg, None).unwrap();
        assert!(Arc::ptr_eq(&db1, &db2));
        c1.execute_batch("CREATE TABLE t AS SELECT 42 AS x")
            .unwrap();
        let x: i32 = c2.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 42);
        drop((c1, c2, db1, db2));
        assert!(
            !registry()
                .lock()
                .unwrap()
                .contains_key(&canonical(Path::new(&cfg.path), false).unwrap()),
            "a closed database leaves no registry entry"
        );
        // Reopened after the last handle went away: a new instance that sees the data.
        let (_db, c) = Database::open(&cfg, None).unwrap();
        let x: i32 = c.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 42);
    }

    #[test]
    fn an_empty_file_left_by_a_killed_first_open_is_created_anew_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.duckdb");
        // What a process killed between creating the file and writing its header leaves.
        std::fs::File::create(&path).unwrap();
        let cfg = DuckDbConfig::file(path.to_string_lossy());
        {
            let (_db, c) = Database::open(&cfg, None).unwrap();
            c.execute_batch("CREATE TABLE t AS SELECT 7 AS x").unwrap();
        }
        let (_db, c) = Database::open(&cfg, None).unwrap();
        let x: i32 = c.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);

        // A file with bytes in it is never removed: it is refused, for good (not retryable),
        // saying what to do.
        let other = dir.path().join("notes.duckdb");
        std::fs::write(&other, b"not a database").unwrap();
        let err = Database::open(&DuckDbConfig::file(other.to_string_lossy()), None).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("move this one away"), "{err}");
        assert_eq!(std::fs::read(&other).unwrap(), b"not a database");

        // Nor is an empty file whose WAL holds something.
        let with_wal = dir.path().join("w.duckdb");
        std::fs::File::create(&with_wal).unwrap();
        std::fs::write(dir.path().join("w.duckdb.wal"), b"x").unwrap();
        assert!(Database::open(&DuckDbConfig::file(with_wal.to_string_lossy()), None).is_err());
        assert!(with_wal.exists());
        // And a read-only open changes nothing.
        let ro = dir.path().join("ro.duckdb");
        std::fs::File::create(&ro).unwrap();
        let cfg = DuckDbConfig {
            read_only: true,
            ..DuckDbConfig::file(ro.to_string_lossy())
        };
        assert!(Database::open(&cfg, None).is_err());
        assert!(ro.exists());
    }

    #[test]
    fn an_empty_file_another_process_holds_is_left_to_it() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("being-created.duckdb");
        std::fs::File::create(&path).unwrap();
        // Another process holding an fcntl lock on the file, as DuckDB does while it creates a
        // database.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import fcntl, sys, time\n\
                 f = open(sys.argv[1], 'r+')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX)\n\
                 print('locked', flush=True)\n\
                 time.sleep(30)",
            )
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        let file = std::fs::File::open(&path).unwrap();
        assert!(locked_by_another_process(&file));
        let opened = Database::open(&DuckDbConfig::file(path.to_string_lossy()), None);
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(
            opened.is_err(),
            "the open took a file another process holds"
        );
        assert!(path.exists(), "the file another process holds was removed");
        // Once it is let go, the empty file is created anew.
        assert!(!locked_by_another_process(&file));
        let (_db, c) = Database::open(&DuckDbConfig::file(path.to_string_lossy()), None).unwrap();
        c.execute_batch("CREATE TABLE t AS SELECT 1 AS x").unwrap();
    }

    fn threads_setting(conn: &Connection) -> i64 {
        conn.query_row("SELECT current_setting('threads')", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn threads_default_to_half_the_cores_unless_set() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DuckDbConfig::file(dir.path().join("t.duckdb").to_string_lossy());
        let (_db, conn) = Database::open(&cfg, None).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get() as i64;
        assert_eq!(threads_setting(&conn), (cores / 2).max(1));
        let mut cfg = DuckDbConfig::in_memory();
        cfg.threads = Some(3);
        let (_db, conn) = Database::open(&cfg, None).unwrap();
        assert_eq!(threads_setting(&conn), 3);
    }

    #[test]
    fn relative_path_and_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DuckDbConfig::file("sub/dir/b.duckdb");
        let base = dir.path().to_string_lossy().into_owned();
        let (db, _c) = Database::open(&cfg, Some(&base)).unwrap();
        assert!(dir.path().join("sub/dir").is_dir());
        assert_eq!(
            db.location(),
            &Location::File(dir.path().join("sub/dir/b.duckdb"))
        );
    }

    #[test]
    fn read_only_missing_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = DuckDbConfig::file(dir.path().join("none.duckdb").to_string_lossy());
        cfg.read_only = true;
        let err = Database::open(&cfg, None).unwrap_err();
        assert!(matches!(err, Error::Connection(_)), "{err:?}");
        assert!(err.to_string().contains("none.duckdb"), "{err}");
    }

    #[test]
    fn in_memory_databases_are_private() {
        let (a, ca) = Database::open(&DuckDbConfig::in_memory(), None).unwrap();
        let (b, cb) = Database::open(&DuckDbConfig::in_memory(), None).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        ca.execute_batch("CREATE TABLE t(x INT)").unwrap();
        assert!(cb.execute_batch("SELECT * FROM t").is_err());
    }
}
