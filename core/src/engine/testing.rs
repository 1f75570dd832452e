//! In-process databases for the engine's tests: each connection name is a database of tables
//! (rows as [`Value`]s), with offsets kept in the same "transaction" as the rows, upserts and
//! deletes by primary key, and switches to make reads or writes fail.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use caudal_config::Pipeline;
use caudal_connector::{
    Batch, BatchBuilder, DigestRequest, Error, LogicalType, PrepareTable, ReadRequest, ReadTarget,
    Schema, TableDigest, TableInfo, Value, WriteOp, WriteOutcome, WriteRequest,
};

use super::cursor;
use super::endpoint::{ChunkReader, EncodedChunk, Endpoint, Endpoints};
use crate::host::HostError;

/// A table: schema and rows in column order.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: Schema,
    pub rows: Vec<Vec<Value>>,
}

/// One database.
#[derive(Debug, Default)]
pub struct Db {
    pub tables: BTreeMap<String, Table>,
    pub offsets: HashMap<(String, String), u64>,
    /// Writes fail with this (permanent) database error.
    pub reject_writes: Option<String>,
    /// Opening fails with this connection error.
    pub refuse_open: Option<String>,
    /// Reads fail after this many chunks.
    pub fail_read_after: Option<usize>,
    /// This many reads fail to start (the database is not up yet), then they work.
    pub refuse_reads: usize,
    /// Writes commit, then report an error (the process "dies" after the commit).
    pub commit_then_fail: bool,
    /// Calls to `write` that changed something.
    pub writes_applied: usize,
    /// Reads return this column as text (its values' debug form): a source side that reads a
    /// column in another logical class than the one the table's digest uses.
    pub read_as_text: Option<String>,
}

/// Every database, by connection name.
#[derive(Clone, Default)]
pub struct World {
    dbs: Arc<Mutex<HashMap<String, Db>>>,
}

impl World {
    pub fn db(&self, name: &str) -> DbGuard<'_> {
        DbGuard {
            guard: self.dbs.lock().unwrap(),
            name: name.to_owned(),
        }
    }

    /// Digest of `table` in `db` as rows of `as_table` in `schema` (columns by name).
    pub fn digest(&self, db: &str, table: &str, as_table: &str, schema: &Schema) -> TableDigest {
        let d = self.db(db);
        let t = d
            .tables
            .get(table)
            .unwrap_or_else(|| panic!("{db}.{table} missing"));
        let batch = rows_batch(schema, &t.schema, &t.rows).unwrap();
        TableDigest::of_batch(as_table, &batch)
    }
}

pub struct DbGuard<'a> {
    guard: MutexGuard<'a, HashMap<String, Db>>,
    name: String,
}

impl std::ops::Deref for DbGuard<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.guard.get(&self.name).expect("db exists")
    }
}

impl std::ops::DerefMut for DbGuard<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        self.guard.entry(self.name.clone()).or_default()
    }
}

impl Endpoints for World {
    fn open(
        &self,
        _pipeline: &Pipeline,
        connection: &caudal_config::Connection,
    ) -> Result<Box<dyn Endpoint>, HostError> {
        let name = connection.name().to_owned();
        let mut dbs = self.dbs.lock().unwrap();
        let db = dbs.entry(name.clone()).or_default();
        if let Some(why) = &db.refuse_open {
            return Err(call("open", Error::Connection(why.clone())));
        }
        Ok(Box::new(Conn {
            name,
            world: self.clone(),
        }))
    }
}

struct Conn {
    name: String,
    world: World,
}

fn call(function: &'static str, source: Error) -> HostError {
    HostError::Call {
        plugin: "fake".into(),
        function,
        source,
    }
}

/// A batch of `rows` (stored in `stored` order) in `schema` (columns matched by name).
fn rows_batch(
    schema: &Schema,
    stored: &Schema,
    rows: &[Vec<Value>],
) -> caudal_connector::Result<Batch> {
    let map: Vec<usize> = schema
        .fields()
        .iter()
        .map(|f| stored.index_of(&f.name).expect("column exists"))
        .collect();
    let mut b = BatchBuilder::new(Arc::new(schema.clone()));
    for row in rows {
        let values: Vec<Value> = map.iter().map(|&i| row[i].clone()).collect();
        b.push_row(&values)?;
    }
    b.finish()
}

/// Whether a value is between `lower` and `upper`; `order(b)` compares it with bound `b`.
fn within<B>(
    lower: &std::ops::Bound<B>,
    upper: &std::ops::Bound<B>,
    order: impl Fn(&B) -> std::cmp::Ordering,
) -> bool {
    use std::ops::Bound::*;
    (match lower {
        Unbounded => true,
        Included(b) => order(b).is_ge(),
        Excluded(b) => order(b).is_gt(),
    }) && (match upper {
        Unbounded => true,
        Included(b) => order(b).is_le(),
        Excluded(b) => order(b).is_lt(),
    })
}

fn key_of(schema: &Schema, row: &[Value]) -> Vec<String> {
    schema
        .primary_key()
        .iter()
        .map(|&i| format!("{:?}", row[i]))
        .collect()
}

impl Endpoint for Conn {
    fn discover(&mut self) -> Result<Vec<TableInfo>, HostError> {
        let db = self.world.db(&self.name);
        Ok(db
            .tables
            .iter()
            .map(|(name, t)| TableInfo {
                name: name.clone(),
                schema: t.schema.clone(),
                estimated_rows: Some(t.rows.len() as u64),
            })
            .collect())
    }

    fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn ChunkReader>, HostError> {
        let mut db = self.world.db(&self.name);
        if db.refuse_reads > 0 {
            db.refuse_reads -= 1;
            return Err(call("read", Error::Connection("connection refused".into())));
        }
        let ReadTarget::Table(name) = &request.target else {
            return Err(call("read", Error::Unsupported("queries".into())));
        };
        let t = db
            .tables
            .get(name)
            .ok_or_else(|| call("read", Error::NotFound(format!("table `{name}`"))))?;
        let cursor = request
            .cursor_column
            .as_ref()
            .map(|c| t.schema.index_of(c).expect("cursor column"));
        let cmp = |a: &Value, b: &Value| {
            cursor::compare(&cursor::to_text(a), &cursor::to_text(b)).expect("comparable")
        };
        let mut rows: Vec<Vec<Value>> = t
            .rows
            .iter()
            .filter(|r| {
                let Some(c) = cursor else { return true };
                within(&request.from, &request.to, |b| cmp(&r[c], b))
            })
            .cloned()
            .collect();
        if let Some(c) = cursor {
            rows.sort_by(|a, b| cmp(&a[c], &b[c]));
        }
        let mut schema = t.schema.clone();
        if let Some(column) = &db.read_as_text
            && let Some(i) = schema.index_of(column)
        {
            let mut fields = schema.fields().to_vec();
            fields[i].logical_type = LogicalType::Varchar { max_length: None };
            let key: Vec<&str> = schema
                .primary_key()
                .iter()
                .map(|&k| schema.fields()[k].name.as_str())
                .collect();
            schema = Schema::new(fields, &key).expect("same columns");
            for row in &mut rows {
                if row[i] != Value::Null {
                    row[i] = Value::Text(format!("{:?}", row[i]));
                }
            }
        }
        let schema = Arc::new(schema);
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let mut end = (start + request.limits.max_rows).min(rows.len());
            // End chunks only between different cursor values.
            if let Some(c) = cursor {
                while end < rows.len() && cmp(&rows[end][c], &rows[end - 1][c]).is_eq() {
                    end += 1;
                }
            }
            let batch = rows_batch(&schema, &schema, &rows[start..end]).unwrap();
            chunks.push(EncodedChunk {
                bytes: batch.encode().unwrap(),
                cursor: cursor.map(|c| rows[end - 1][c].clone()),
            });
            start = end;
        }
        chunks.reverse();
        Ok(Box::new(FakeReader {
            schema,
            chunks,
            fail_after: db.fail_read_after,
            served: 0,
        }))
    }

    fn prepare_table(&mut self, request: &PrepareTable) -> Result<(), HostError> {
        let mut db = self.world.db(&self.name);
        if let Some(why) = &db.reject_writes {
            return Err(call(
                "prepare_table",
                Error::permanent_database(why.clone()),
            ));
        }
        if request.replace || !db.tables.contains_key(&request.table) {
            db.tables.insert(
                request.table.clone(),
                Table {
                    schema: request.schema.clone(),
                    rows: Vec::new(),
                },
            );
        }
        Ok(())
    }

    fn write(&mut self, request: &WriteRequest, bytes: &[u8]) -> Result<WriteOutcome, HostError> {
        let mut db = self.world.db(&self.name);
        let key = (request.pipeline.clone(), request.stream.clone());
        if let Some(&last_seq) = db.offsets.get(&key).filter(|&&s| s >= request.seq) {
            return Ok(WriteOutcome::AlreadyApplied { last_seq });
        }
        if let Some(why) = &db.reject_writes {
            return Err(call("write", Error::permanent_database(why.clone())));
        }
        let batch = Batch::decode(bytes).map_err(|e| call("write", e))?;
        let table = db.tables.get_mut(&request.table).ok_or_else(|| {
            call(
                "write",
                Error::NotFound(format!("table `{}`", request.table)),
            )
        })?;
        let tschema = table.schema.clone();
        for row in 0..batch.num_rows() {
            let values: Vec<Value> = tschema
                .fields()
                .iter()
                .map(|f| {
                    batch
                        .schema()
                        .index_of(&f.name)
                        .and_then(|c| batch.value(row, c))
                        .unwrap_or(Value::Null)
                })
                .collect();
            match request.op {
                WriteOp::Insert => table.rows.push(values),
                WriteOp::Upsert => {
                    let k = key_of(&tschema, &values);
                    table.rows.retain(|r| key_of(&tschema, r) != k);
                    table.rows.push(values);
                }
                WriteOp::Delete => {
                    let k = key_of(&tschema, &values);
                    table.rows.retain(|r| key_of(&tschema, r) != k);
                }
            }
        }
        db.offsets.insert(key, request.seq);
        db.writes_applied += 1;
        if db.commit_then_fail {
            return Err(call(
                "write",
                Error::Connection("connection lost after commit".into()),
            ));
        }
        Ok(WriteOutcome::Applied {
            rows: batch.num_rows() as u64,
        })
    }

    fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>, HostError> {
        let db = self.world.db(&self.name);
        Ok(db
            .offsets
            .get(&(pipeline.to_owned(), stream.to_owned()))
            .copied())
    }

    fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest, HostError> {
        let db = self.world.db(&self.name);
        let t = db
            .tables
            .get(&request.table)
            .ok_or_else(|| call("table_digest", Error::NotFound(request.table.clone())))?;
        // The rows whose key tuple is in the request's range (compared as the cursor code
        // compares values).
        let key: Vec<usize> = request
            .schema
            .primary_key()
            .iter()
            .map(|&k| {
                t.schema
                    .index_of(&request.schema.fields()[k].name)
                    .expect("key column")
            })
            .collect();
        let order = |row: &[Value], bound: &[Value]| {
            key.iter()
                .zip(bound)
                .map(|(&i, b)| {
                    cursor::compare(&cursor::to_text(&row[i]), &cursor::to_text(b))
                        .expect("comparable")
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        let rows: Vec<Vec<Value>> = t
            .rows
            .iter()
            .filter(|r| within(&request.range.lower, &request.range.upper, |b| order(r, b)))
            .cloned()
            .collect();
        let batch =
            rows_batch(&request.schema, &t.schema, &rows).map_err(|e| call("table_digest", e))?;
        Ok(TableDigest::of_batch(&request.table, &batch))
    }

    fn replace_table(&mut self, staging: &str, table: &str) -> Result<(), HostError> {
        let mut db = self.world.db(&self.name);
        let t = db.tables.remove(staging).ok_or_else(|| {
            call(
                "replace_table",
                Error::NotFound(format!("table `{staging}`")),
            )
        })?;
        db.tables.insert(table.to_owned(), t);
        Ok(())
    }
}

struct FakeReader {
    schema: Arc<Schema>,
    /// Reversed: the next chunk is last.
    chunks: Vec<EncodedChunk>,
    fail_after: Option<usize>,
    served: usize,
}

impl ChunkReader for FakeReader {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn next_chunk(&mut self) -> Result<Option<EncodedChunk>, HostError> {
        if self.fail_after.is_some_and(|n| self.served >= n) {
            return Err(call(
                "read_next",
                Error::Connection("the store went away".into()),
            ));
        }
        self.served += 1;
        Ok(self.chunks.pop())
    }
}
