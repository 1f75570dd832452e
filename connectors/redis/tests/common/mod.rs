//! Helpers of the tests against a real Redis server.
//!
//! The server is `CAUDAL_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`, the Redis of the
//! test machines). A test that cannot reach it fails with a message saying so: these tests
//! never skip. Each test writes under its own key prefix, unique to the test and the process,
//! and every key under it is deleted when the [`TestPrefix`] is dropped.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use caudal_connector::{
    Batch, Connector, DigestRequest, KeyRange, OpenContext, PrepareTable, ReadRequest, Schema,
    Sink, Source, TableDigest, Value, WriteOp, WriteOutcome, WriteRequest,
};
use caudal_redis::{Redis, RedisConfig};

/// The server all tests use.
pub fn server_url() -> String {
    std::env::var("CAUDAL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A key prefix of its own for one test, plus a plain connection to inspect the keys.
pub struct TestPrefix {
    /// The prefix.
    pub name: String,
    admin: redis::Connection,
}

impl TestPrefix {
    /// A fresh prefix; panics (fails the test) if the server is unreachable.
    pub fn new(tag: &str) -> TestPrefix {
        let url = server_url();
        let admin = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need a Redis server at {url} (override with \
                     CAUDAL_TEST_REDIS_URL): cannot connect: {e}"
                )
            });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "caudal_t:{tag}_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        TestPrefix { name, admin }
    }

    /// A connection config writing under this prefix.
    pub fn config(&self) -> RedisConfig {
        let mut c = RedisConfig::new(server_url());
        c.prefix = self.name.clone();
        c
    }

    /// Opens the connector with `config`.
    pub fn open_with(&self, config: RedisConfig) -> Redis {
        Redis::open(config, &context()).unwrap_or_else(|e| panic!("opening redis: {e}"))
    }

    /// Opens the connector under this prefix, hash format.
    pub fn open(&self) -> Redis {
        self.open_with(self.config())
    }

    /// Every key under the prefix, sorted.
    pub fn keys(&mut self) -> Vec<String> {
        let pattern = format!("{}:*", self.name);
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut self.admin)
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// Runs one command on the inspection connection.
    pub fn cmd<T: redis::FromRedisValue>(&mut self, args: &[&[u8]]) -> T {
        let mut c = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut self.admin)
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])))
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        let keys = self.keys();
        for chunk in keys.chunks(500) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut self.admin);
        }
    }
}

/// The open context of the test connections.
pub fn context() -> OpenContext {
    OpenContext {
        connection: "cache".into(),
        base_dir: None,
    }
}

/// A write request of pipeline `p`, stream `s`.
pub fn request(table: &str, seq: u64, op: WriteOp) -> WriteRequest {
    WriteRequest {
        pipeline: "p".into(),
        stream: "s".into(),
        table: table.into(),
        seq,
        op,
    }
}

/// Prepares `table` with `schema`.
pub fn prepare(conn: &mut Redis, table: &str, schema: &Schema, replace: bool) {
    conn.prepare_table(&PrepareTable {
        table: table.into(),
        schema: schema.clone(),
        replace,
    })
    .unwrap_or_else(|e| panic!("preparing {table}: {e}"));
}

/// Writes a batch that must be applied.
pub fn write(conn: &mut Redis, table: &str, seq: u64, op: WriteOp, batch: &Batch) -> u64 {
    match conn.write(&request(table, seq, op), batch) {
        Ok(WriteOutcome::Applied { rows }) => rows,
        other => panic!("writing seq {seq} to {table}: {other:?}"),
    }
}

/// The digest of `table` scanned from the rows there.
pub fn scanned_digest(
    conn: &mut Redis,
    table: &str,
    schema: &Schema,
    range: KeyRange,
) -> TableDigest {
    conn.table_digest(&DigestRequest {
        table: table.into(),
        schema: schema.clone(),
        range,
    })
    .unwrap_or_else(|e| panic!("digest of {table}: {e}"))
}

/// Every row of `table` read through the source, as values, sorted by the first column.
pub fn read_rows(conn: &mut Redis, table: &str, max_rows: usize) -> (Arc<Schema>, Vec<Vec<Value>>) {
    let mut request = ReadRequest::table(table);
    request.limits.max_rows = max_rows;
    let mut reader = conn
        .read(&request)
        .unwrap_or_else(|e| panic!("reading {table}: {e}"));
    let schema = Arc::clone(reader.schema());
    let mut rows = Vec::new();
    while let Some(chunk) = reader.next_chunk().expect("next chunk") {
        assert!(chunk.batch.num_rows() <= max_rows);
        assert!(chunk.batch.num_rows() > 0, "empty chunk");
        rows.extend(batch_rows(&chunk.batch));
    }
    rows.sort_by(|a, b| format!("{:?}", a[0]).cmp(&format!("{:?}", b[0])));
    (schema, rows)
}

/// The rows of a batch as values.
pub fn batch_rows(batch: &Batch) -> Vec<Vec<Value>> {
    (0..batch.num_rows())
        .map(|r| {
            (0..batch.num_columns())
                .map(|c| batch.value(r, c).expect("cell"))
                .collect()
        })
        .collect()
}
