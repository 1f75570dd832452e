//! Helpers of the tests against a real MySQL / MariaDB server.
//!
//! The server is `CAUDAL_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`, the MariaDB
//! of the test machines). A test that cannot reach it fails with a message saying so: these
//! tests never skip. Each test works in its own database, created with a unique name and
//! dropped when the [`TestDb`] is dropped.

#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use caudal_connector::{
    Batch, BatchReader, Chunk, ChunkLimits, Connector, OpenContext, ReadRequest, Schema, Value,
};
use caudal_mysql::{MySqlConfig, MySqlConnector};
use sqlx::mysql::{MySql, MySqlConnection};
use sqlx::{Connection, Decode, Row, ValueRef};

/// The server all tests use.
pub fn server_url() -> String {
    std::env::var("CAUDAL_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, plus an admin connection to set it up and inspect it.
pub struct TestDb {
    /// The database's name.
    pub name: String,
    runtime: tokio::runtime::Runtime,
    admin: RefCell<Option<MySqlConnection>>,
}

impl TestDb {
    /// Creates a fresh database; panics (fails the test) if the server is unreachable.
    pub fn new(tag: &str) -> TestDb {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        let url = server_url();
        let admin = runtime
            .block_on(MySqlConnection::connect(&url))
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need a MySQL or MariaDB server at {url} (user root, no \
                     password; override with CAUDAL_TEST_MYSQL_URL): cannot connect: {e}"
                )
            });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "caudal_t_{tag}_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= 64, "database name too long: {name}");
        let db = TestDb {
            name,
            runtime,
            admin: RefCell::new(Some(admin)),
        };
        db.exec(&format!(
            "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
            db.name
        ));
        db.exec(&format!("USE `{}`", db.name));
        db.exec("SET time_zone = '+00:00'");
        db
    }

    /// Runs statements (text protocol), panicking with the SQL on failure.
    pub fn exec(&self, sql: &str) {
        if let Err(e) = self.try_exec(sql) {
            panic!("{sql}: {e}");
        }
    }

    /// Runs statements, returning the server's error.
    pub fn try_exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let mut guard = self.admin.borrow_mut();
        let conn = guard.as_mut().expect("admin connection");
        self.runtime
            .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(conn))
            .map(|r| r.rows_affected())
    }

    /// The rows of a query, every value as text (`None` for NULL).
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut guard = self.admin.borrow_mut();
        let conn = guard.as_mut().expect("admin connection");
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
    pub fn scalar(&self, sql: &str) -> Option<String> {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }

    /// A connection configuration for this database, with extra JSON keys.
    pub fn config(&self, extra: &str) -> MySqlConfig {
        let url = format!("{}/{}", server_url().trim_end_matches('/'), self.name);
        let json = if extra.is_empty() {
            format!(r#"{{"url": "{url}"}}"#)
        } else {
            format!(r#"{{"url": "{url}", {extra}}}"#)
        };
        serde_json::from_str(&json).expect("test config")
    }

    /// Opens the connector on this database.
    pub fn open(&self) -> MySqlConnector {
        self.open_with("")
    }

    /// Opens the connector on this database with extra configuration keys.
    pub fn open_with(&self, extra: &str) -> MySqlConnector {
        MySqlConnector::open(self.config(extra), &context()).expect("open the connector")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        if let Err(e) = self.try_exec(&sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
        if let Some(conn) = self.admin.borrow_mut().take() {
            let _ = self.runtime.block_on(conn.close());
        }
    }
}

/// The open context of every test connection.
pub fn context() -> OpenContext {
    OpenContext {
        connection: "test_conn".into(),
        base_dir: None,
    }
}

/// Every chunk of a read.
pub fn read_all(reader: &mut dyn BatchReader) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    while let Some(c) = reader.next_chunk().expect("next chunk") {
        chunks.push(c);
    }
    chunks
}

/// A read request of a table with the given limits.
pub fn table_request(table: &str, max_rows: usize, max_bytes: usize) -> ReadRequest {
    let mut r = ReadRequest::table(table);
    r.limits = ChunkLimits {
        max_rows,
        max_bytes,
    };
    r
}

/// Column `col` of every row of the chunks, as values.
pub fn column_values(chunks: &[Chunk], col: usize) -> Vec<Value> {
    chunks
        .iter()
        .flat_map(|c| (0..c.batch.num_rows()).map(move |r| c.batch.value(r, col).expect("cell")))
        .collect()
}

/// The integers of a column of `Int`/`UInt` values.
pub fn ints(values: &[Value]) -> Vec<i64> {
    values
        .iter()
        .map(|v| match v {
            Value::Int(i) => *i,
            Value::UInt(u) => i64::try_from(*u).expect("small unsigned"),
            other => panic!("not an integer: {other:?}"),
        })
        .collect()
}

/// The schema of the first chunk's batches.
pub fn schema_of(chunks: &[Chunk]) -> Arc<Schema> {
    Arc::clone(chunks.first().expect("a chunk").batch.schema())
}

/// Every batch of the chunks.
pub fn batches(chunks: &[Chunk]) -> Vec<&Batch> {
    chunks.iter().map(|c| &c.batch).collect()
}

/// A derived table `numbers(seq)` of the integers `0..count`, for filling tables in SQL (no
/// sequence engine or recursion limits needed, so it works on MySQL and MariaDB alike).
pub fn numbers(count: u64) -> String {
    let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                  UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
                  UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let mut places = 1;
    while 10u64.pow(places) < count {
        places += 1;
    }
    let terms: Vec<String> = (0..places)
        .map(|p| format!("d{p}.d * {}", 10u64.pow(p)))
        .collect();
    let tables: Vec<String> = (0..places).map(|p| format!("{digits} AS d{p}")).collect();
    format!(
        "(SELECT {} AS seq FROM {} HAVING seq < {count}) AS numbers",
        terms.join(" + "),
        tables.join(", ")
    )
}
