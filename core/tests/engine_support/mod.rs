//! Shared helpers of the engine's end-to-end tests: the `caudal` binary, DuckDB databases
//! filled and digested through the DuckDB plugin (loaded with dlopen from the build output,
//! as the engine loads it), sales data, and what the journal says.
//!
//! Needs the workspace built first, same profile and target directory as the tests
//! (`cargo build --release --workspace`): the plugin is found next to the `caudal` binary.
//! A DuckDB file is opened by one process at a time, so every helper closes its connection
//! before returning: the tests never hold a database while `caudal` runs.

#![allow(dead_code)]

pub mod crash;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use caudal::host::{Connection, Plugin, plugin_file_name};
use caudal_connector::{
    Batch, BatchBuilder, ChunkLimits, DigestRequest, Field, KeyRange, LogicalType, OpenContext,
    PrepareTable, ReadRequest, ReadTarget, Schema, TableDigest, Value, WriteOp, WriteOutcome,
    WriteRequest,
};
use caudal_journal::{EntryKind, Payload, Reader};

/// `target/<profile>`, where the `caudal` binary and the plugins are built.
pub fn build_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_caudal"))
        .parent()
        .map(PathBuf::from)
        .expect("the binary lives in target/<profile>")
}

/// The `caudal` binary, with plugins found next to it only.
pub fn caudal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caudal"));
    c.env_remove("CAUDAL_PLUGIN_PATH");
    c.env_remove("CAUDAL_JOURNAL");
    c.env_remove("RUST_LOG");
    c
}

/// Runs `caudal` with `args`; returns the output (the test decides what status it expects).
pub fn run(args: &[&str]) -> Output {
    caudal().args(args).output().expect("caudal runs")
}

/// Runs `caudal` and fails the test unless it exits 0.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "caudal {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DuckDB plugin, as the engine loads it.
pub fn duckdb() -> Plugin {
    let path = build_dir().join(plugin_file_name("duckdb"));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace, same \
         CARGO_TARGET_DIR as the tests)",
        path.display()
    );
    Plugin::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// A connection to the DuckDB file `path` (absolute).
pub fn open(path: &Path) -> Connection {
    let ctx = OpenContext {
        connection: "test".into(),
        base_dir: None,
    };
    let config = serde_json::json!({ "path": path.display().to_string() }).to_string();
    duckdb()
        .open(&ctx, &config)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// The schema of the sales tables: a store's invoice lines.
pub fn sales_schema(key: &[&str]) -> Schema {
    Schema::new(
        vec![
            Field::new(
                "tienda",
                LogicalType::Varchar {
                    max_length: Some(20),
                },
                false,
            ),
            Field::new("factura", LogicalType::Int64, false),
            Field::new("linea", LogicalType::Int32, false),
            Field::new("fecha", LogicalType::Date, false),
            Field::new(
                "producto",
                LogicalType::Varchar {
                    max_length: Some(20),
                },
                true,
            ),
            Field::new("cantidad", LogicalType::Int32, false),
            Field::new(
                "precio",
                LogicalType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
        ],
        key,
    )
    .expect("valid schema")
}

/// Day 0 of the sales: 2025-01-01.
pub const DAY0: i32 = 20_089;

/// Invoice lines `n` (each invoice has 3 lines), `per_day` lines a day from `DAY0`, of store
/// `store`. Some products and prices are NULL.
pub fn sales(store: &str, lines: std::ops::Range<i64>, per_day: i64, key: &[&str]) -> Batch {
    let mut b = BatchBuilder::new(Arc::new(sales_schema(key)));
    for n in lines {
        b.push(0, store).unwrap();
        b.push(1, n / 3).unwrap();
        b.push(2, (n % 3) as i32 + 1).unwrap();
        b.push(3, DAY0 + (n / per_day) as i32).unwrap();
        if n % 11 == 0 {
            b.push_null(4).unwrap();
        } else {
            b.push(4, format!("P{:04}", n % 500).as_str()).unwrap();
        }
        b.push(5, (n % 5) as i32 + 1).unwrap();
        if n % 13 == 0 {
            b.push_null(6).unwrap();
        } else {
            b.push(6, i128::from(n % 9000) * 25 + 150).unwrap();
        }
    }
    b.finish().unwrap()
}

/// Creates (or replaces, with `replace`) `table` in the DuckDB file `db` holding `batches`.
/// Written under the offset key of pipeline `fixture`, so it never collides with a run's.
pub fn fill(db: &Path, table: &str, batches: &[Batch], replace: bool) {
    let mut conn = open(db);
    if let Some(first) = batches.first() {
        conn.prepare_table(&PrepareTable {
            table: table.into(),
            schema: (**first.schema()).clone(),
            replace,
        })
        .unwrap();
    }
    let start = conn
        .last_applied_seq("fixture", table)
        .unwrap()
        .unwrap_or(0);
    for (i, b) in batches.iter().enumerate() {
        let op = if b.schema().primary_key().is_empty() {
            WriteOp::Insert
        } else {
            WriteOp::Upsert
        };
        fixture_write(&mut conn, table, start + 1 + i as u64, op, b);
    }
    conn.close().unwrap();
}

/// One write under the `fixture` offsets.
pub fn fixture_write(conn: &mut Connection, table: &str, seq: u64, op: WriteOp, b: &Batch) {
    let request = WriteRequest {
        pipeline: "fixture".into(),
        stream: table.into(),
        table: table.into(),
        seq,
        op,
    };
    match conn.write(&request, b).unwrap() {
        WriteOutcome::Applied { .. } => {}
        other => panic!("fixture write not applied: {other:?}"),
    }
}

/// Deletes the rows of `table` whose keys `keys` (a batch of the key columns) holds.
pub fn delete(db: &Path, table: &str, keys: &Batch) {
    let mut conn = open(db);
    let seq = conn
        .last_applied_seq("fixture", table)
        .unwrap()
        .unwrap_or(0)
        + 1;
    fixture_write(&mut conn, table, seq, WriteOp::Delete, keys);
    conn.close().unwrap();
}

/// Every row of a read, as one digest of rows of `as_table`; `shape` may rebuild each batch
/// first (consolidate's source column).
pub fn read_digest(
    db: &Path,
    target: ReadTarget,
    cursor: Option<(&str, Bound<Value>, Bound<Value>)>,
    as_table: &str,
    shape: &dyn Fn(Batch) -> Batch,
) -> (TableDigest, u64) {
    let mut conn = open(db);
    let mut request = ReadRequest {
        target,
        cursor_column: None,
        from: Bound::Unbounded,
        to: Bound::Unbounded,
        limits: ChunkLimits::default(),
    };
    if let Some((column, from, to)) = cursor {
        request.cursor_column = Some(column.into());
        request.from = from;
        request.to = to;
    }
    let mut digest = TableDigest::new();
    let mut rows = 0;
    {
        let mut reader = conn.read(&request).unwrap();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            let batch = shape(chunk.batch);
            rows += batch.num_rows() as u64;
            digest.add_batch(as_table, &batch);
        }
    }
    conn.close().unwrap();
    (digest, rows)
}

/// The digest of a whole table as the destination computes it, in `schema`.
pub fn table_digest(db: &Path, table: &str, schema: &Schema) -> TableDigest {
    let mut conn = open(db);
    let d = conn
        .table_digest(&DigestRequest {
            table: table.into(),
            schema: schema.clone(),
            range: KeyRange::all(),
        })
        .unwrap_or_else(|e| panic!("digest of {table} in {}: {e}", db.display()));
    conn.close().unwrap();
    d
}

/// Every entry of the journal in `dir`.
pub fn entries(dir: &Path) -> Vec<caudal_journal::Entry> {
    Reader::open(dir)
        .unwrap()
        .entries_from(1)
        .unwrap()
        .map(|e| e.unwrap().entry)
        .collect()
}

/// The schema the destinations of `stream` were written in: that of its first journaled
/// batch.
pub fn stream_schema(journal: &Path, stream: &str) -> Schema {
    for e in entries(journal) {
        if let EntryKind::BatchRead { stream: s, .. } = &e.kind
            && s == stream
            && let Payload::Inline(bytes) = &e.payload
        {
            let b = Batch::decode(bytes).unwrap();
            if !b.schema().primary_key().is_empty() || b.num_rows() > 0 {
                return (**b.schema()).clone();
            }
        }
    }
    panic!("no batch of stream `{stream}` in the journal");
}

/// Rows read by runs, from `RunCompleted` entries, in order.
pub fn rows_per_run(journal: &Path) -> Vec<u64> {
    entries(journal)
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::RunCompleted { rows, .. } => Some(rows),
            _ => None,
        })
        .collect()
}

/// Writes a pipeline file into `dir`; `[pipeline]` and `[journal]` come first.
pub fn pipeline(dir: &Path, body: &str) -> PathBuf {
    let file = dir.join("pipeline.toml");
    let text = format!("[pipeline]\nname = \"e2e\"\n\n[journal]\ndir = \"journal\"\n\n{body}");
    std::fs::write(&file, text).unwrap();
    file
}

/// `caudal journal verify` passes on the journal.
pub fn verify(journal: &Path) {
    let report = caudal_journal::verify(journal).unwrap_or_else(|e| panic!("journal damaged: {e}"));
    assert!(report.entries > 0);
}

/// The path as a `&str` for command lines.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `batch` with `key` declared as its primary key and, for consolidate, a first column
/// `source_column` holding `source` in every row: the shape a stream writes.
pub fn reshape(batch: Batch, key: &[&str], source: Option<(&str, &str)>) -> Batch {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    let mut key: Vec<&str> = key.to_vec();
    if let Some((column, value)) = source {
        let field = Field::new(
            column,
            LogicalType::Varchar {
                max_length: Some(128),
            },
            false,
        );
        let one = Schema::new(vec![field.clone()], &[]).unwrap();
        let mut b = BatchBuilder::new(Arc::new(one));
        for _ in 0..batch.num_rows() {
            b.push(0, value).unwrap();
        }
        columns.push(b.finish().unwrap().columns()[0].clone());
        fields.push(field);
        if !key.is_empty() {
            key.insert(0, column);
        }
    }
    fields.extend(batch.schema().fields().iter().cloned());
    columns.extend(batch.columns().iter().cloned());
    Batch::try_new(Arc::new(Schema::new(fields, &key).unwrap()), columns).unwrap()
}

/// Asserts that `dest_table` in `dest` holds exactly the rows `expected` describes (digest
/// and count), digested in the schema the journal's batches of `stream` have.
pub fn assert_holds(
    dest: &Path,
    dest_table: &str,
    journal: &Path,
    stream: &str,
    expected: &(TableDigest, u64),
) {
    let schema = stream_schema(journal, stream);
    let actual = table_digest(dest, dest_table, &schema);
    assert_eq!(
        actual.rows(),
        expected.1 as i64,
        "{dest_table} in {} has {} rows, the source {}",
        dest.display(),
        actual.rows(),
        expected.1
    );
    assert_eq!(
        actual,
        expected.0,
        "{dest_table} in {} differs from its source",
        dest.display()
    );
}
