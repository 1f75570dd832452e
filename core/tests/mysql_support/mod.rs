//! Shared helpers of the MySQL scenario tests: databases of their own on the real server,
//! an admin session to fill, change and inspect them (and to `KILL` connections), and digests
//! computed through the mysql plugin, loaded as the engine loads it.
//!
//! The server is `CAUDAL_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`, the MariaDB of
//! the test machines); a test that cannot reach it fails saying so. Every [`Db`] has a name
//! unique to the test (base name, process id, a counter, the clock), so tests run in parallel,
//! and is dropped with the [`Db`].

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use caudal::host::{Connection, Plugin, plugin_file_name};
use caudal_connector::{
    Batch, ChunkLimits, DigestRequest, KeyRange, OpenContext, ReadRequest, ReadTarget, Schema,
    TableDigest,
};
use sqlx::mysql::{MySql, MySqlConnection};
use sqlx::{Connection as _, Decode, Row, ValueRef};

use crate::engine_support::{build_dir, stream_schema};

/// The server all tests use, without a database.
pub fn server_url() -> String {
    std::env::var("CAUDAL_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
        .trim_end_matches('/')
        .to_owned()
}

/// One session on the server, with its own runtime (usable from any thread).
pub struct Admin {
    runtime: tokio::runtime::Runtime,
    conn: Option<MySqlConnection>,
}

impl Admin {
    /// Connects; fails the test, naming the server, when it cannot.
    pub fn connect() -> Admin {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        let url = server_url();
        let conn = runtime
            .block_on(MySqlConnection::connect(&url))
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need a MySQL or MariaDB server at {url} (user root, no password; \
                     override with CAUDAL_TEST_MYSQL_URL): cannot connect: {e}"
                )
            });
        let mut admin = Admin {
            runtime,
            conn: Some(conn),
        };
        admin.exec("SET time_zone = '+00:00'");
        admin
    }

    /// Runs statements (text protocol), failing the test with the SQL on error.
    pub fn exec(&mut self, sql: &str) -> u64 {
        self.try_exec(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs statements, returning the server's error.
    pub fn try_exec(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        let conn = self.conn.as_mut().expect("admin connection");
        self.runtime
            .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(conn))
            .map(|r| r.rows_affected())
    }

    /// The rows of a query, every value as text (`None` for NULL).
    pub fn rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let conn = self.conn.as_mut().expect("admin connection");
        let rows = self
            .runtime
            .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(conn))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let v = row.try_get_raw(i).expect("column");
                        if v.is_null() {
                            None
                        } else {
                            let b = <&[u8] as Decode<MySql>>::decode(v).expect("bytes");
                            Some(String::from_utf8_lossy(b).into_owned())
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The one value of a one-row, one-column query.
    pub fn scalar(&mut self, sql: &str) -> Option<String> {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }

    /// A one-row, one-column query of a number.
    pub fn number(&mut self, sql: &str) -> i64 {
        let v = self.scalar(sql).unwrap_or_else(|| panic!("{sql}: NULL"));
        v.parse()
            .unwrap_or_else(|e| panic!("{sql}: `{v}` is not a number: {e}"))
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = self.runtime.block_on(conn.close());
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of one test, dropped with it.
pub struct Db {
    /// The database's name: the base name and a suffix unique to the test.
    pub name: String,
    admin: std::cell::RefCell<Admin>,
}

impl Db {
    /// Creates `<base>_<unique suffix>`, utf8mb4, and makes it the admin session's default.
    pub fn new(base: &str) -> Db {
        let mut admin = Admin::connect();
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_micros())
            .unwrap_or(0);
        let name = format!(
            "{base}_{}_{}_{micros}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= 64, "database name too long: {name}");
        admin.exec(&format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ));
        admin.exec(&format!("USE `{name}`"));
        Db {
            name,
            admin: std::cell::RefCell::new(admin),
        }
    }

    /// Runs statements in this database.
    pub fn exec(&self, sql: &str) -> u64 {
        self.admin.borrow_mut().exec(sql)
    }

    /// Runs statements, returning the server's error.
    pub fn try_exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        self.admin.borrow_mut().try_exec(sql)
    }

    /// The rows of a query, as text.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.admin.borrow_mut().rows(sql)
    }

    /// A one-row, one-column query of a number.
    pub fn number(&self, sql: &str) -> i64 {
        self.admin.borrow_mut().number(sql)
    }

    /// Rows of `table`.
    pub fn count(&self, table: &str) -> i64 {
        self.number(&format!("SELECT COUNT(*) FROM `{table}`"))
    }

    /// The url of this database.
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// `[connections.NAME]` of a pipeline file, a mysql connection to this database.
    pub fn connection(&self, name: &str) -> String {
        format!(
            "[connections.{name}]\nconnector = \"mysql\"\nurl = \"{}\"\n\n",
            self.url()
        )
    }

    /// A connection to this database through the mysql plugin.
    pub fn open(&self) -> Connection {
        let ctx = OpenContext {
            connection: "test".into(),
            base_dir: None,
        };
        let config = serde_json::json!({ "url": self.url() }).to_string();
        mysql()
            .open(&ctx, &config)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.name))
    }

    /// Every row of `table` as read through the plugin, as one digest of rows of `as_table`
    /// after `shape` (consolidate's source column), and their number.
    pub fn read_digest(
        &self,
        table: &str,
        as_table: &str,
        shape: &dyn Fn(Batch) -> Batch,
    ) -> (TableDigest, u64) {
        let mut conn = self.open();
        let request = ReadRequest {
            target: ReadTarget::Table(table.into()),
            cursor_column: None,
            from: std::ops::Bound::Unbounded,
            to: std::ops::Bound::Unbounded,
            limits: ChunkLimits::default(),
        };
        let mut digest = TableDigest::new();
        let mut rows = 0;
        {
            let mut reader = conn
                .read(&request)
                .unwrap_or_else(|e| panic!("reading {}.{table}: {e}", self.name));
            while let Some(chunk) = reader.next_chunk().unwrap() {
                let batch = shape(chunk.batch);
                rows += batch.num_rows() as u64;
                digest.add_batch(as_table, &batch);
            }
        }
        conn.close().unwrap();
        (digest, rows)
    }

    /// The schema discovery gives `table`.
    pub fn discovered_schema(&self, table: &str) -> Schema {
        let mut conn = self.open();
        let tables = conn.discover().unwrap();
        conn.close().unwrap();
        tables
            .into_iter()
            .find(|t| t.name == table)
            .unwrap_or_else(|| panic!("no table `{table}` in {}", self.name))
            .schema
    }

    /// The digest of `table` as the sink computes it (by scan), in `schema`.
    pub fn table_digest(&self, table: &str, schema: &Schema) -> TableDigest {
        let mut conn = self.open();
        let d = conn
            .table_digest(&DigestRequest {
                table: table.into(),
                schema: schema.clone(),
                range: KeyRange::all(),
            })
            .unwrap_or_else(|e| panic!("digest of {table} in {}: {e}", self.name));
        conn.close().unwrap();
        d
    }

    /// Asserts that `table` holds exactly the rows `expected` describes (count and digest),
    /// digested in the schema of the journal's batches of `stream`.
    pub fn assert_holds(
        &self,
        table: &str,
        journal: &std::path::Path,
        stream: &str,
        expected: &(TableDigest, u64),
    ) {
        let schema = stream_schema(journal, stream);
        let actual = self.table_digest(table, &schema);
        assert_eq!(
            actual.rows(),
            expected.1 as i64,
            "{table} in {} has {} rows, the source {}",
            self.name,
            actual.rows(),
            expected.1
        );
        assert_eq!(
            actual, expected.0,
            "{table} in {} differs from its source",
            self.name
        );
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        if let Err(e) = self.admin.borrow_mut().try_exec(&sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The mysql plugin, as the engine loads it.
pub fn mysql() -> Plugin {
    let path = build_dir().join(plugin_file_name("mysql"));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace, same \
         CARGO_TARGET_DIR as the tests)",
        path.display()
    );
    Plugin::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// `FROM` text of a derived table `x` of one column `n` holding 0 .. `count` - 1 (at most a
/// million), with its `WHERE`: `INSERT ... SELECT n, ... FROM {numbers(10)}` (add conditions
/// with `AND`). Portable across MySQL and MariaDB.
pub fn numbers(count: u64) -> String {
    assert!(count <= 1_000_000, "numbers() makes at most a million rows");
    let digit = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL \
                 SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL \
                 SELECT 8 UNION ALL SELECT 9)";
    let mut places = 1;
    while 10u64.pow(places) < count {
        places += 1;
    }
    let from: Vec<String> = (0..places).map(|i| format!("{digit} d{i}")).collect();
    let sum: Vec<String> = (0..places)
        .map(|i| format!("d{i}.d * {}", 10u64.pow(i)))
        .collect();
    format!(
        "(SELECT {} AS n FROM {}) AS x WHERE x.n < {count}",
        sum.join(" + "),
        from.join(", ")
    )
}
