//! 1M generated rows (12 columns) from a DuckDB source into a DuckDB sink, once through the
//! plugin boundary (`libcaudal_duckdb.so` loaded by the caudal host with dlopen, batches
//! crossing as encoded bytes the way the journal passes them) and once with the same
//! connector code linked in-process (this crate's rlib, batches passed as values).
//!
//! ```text
//! cargo build --release -p caudal-duckdb        # the cdylib the host loads
//! cargo bench -p caudal-duckdb --bench plugin_boundary
//! ```
//!
//! Two shapes: *sequential* (one thread alternates read and write) and *pipelined* (the source
//! on its own thread, two chunks ahead, as the engine drives a stream). Criterion reports each
//! variant's throughput; then both variants run alternately (7 pairs per shape) and the medians
//! and their ratio are printed, which is the figure to read on a shared machine.
//!
//! Both variants open the same files with the same settings, read in chunks of 20 000 rows and
//! write each chunk in its own transaction with its offset row; the difference is the boundary:
//! encoding each chunk in the source plugin, decoding it in the sink plugin, and the calls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use caudal::host::{Plugin, plugin_file_name};
use caudal_connector::{
    ChunkLimits, Connector, OpenContext, PrepareTable, ReadRequest, Sink, Source, WriteOp,
    WriteOutcome, WriteRequest,
};
use caudal_duckdb::{DuckDb, DuckDbConfig};
use criterion::{Criterion, Throughput};

const ROWS: u64 = 1_000_000;

/// The generated source: 12 columns of the kinds a sales table has.
const GENERATE: &str = "
CREATE TABLE ventas (
    id BIGINT PRIMARY KEY, tienda INTEGER, factura BIGINT, linea SMALLINT,
    importe DECIMAL(12,2), peso DOUBLE, fecha DATE, creado TIMESTAMP,
    cliente VARCHAR, pagado BOOLEAN, nota VARCHAR, estado UTINYINT);
INSERT INTO ventas SELECT
    i, (i % 1000)::INTEGER, (i * 7) % 100000, (i % 50)::SMALLINT,
    ((i * 37) % 1000000 / 100)::DECIMAL(12,2), i * 0.5, DATE '2020-01-01' + (i % 1500)::INTEGER,
    TIMESTAMP '2020-01-01' + to_microseconds(i * 1000003), 'cliente-' || (i % 5000),
    i % 3 = 0, CASE WHEN i % 10 = 0 THEN NULL ELSE 'nota ' || i END, (i % 255)::UTINYINT
FROM range(1000000) r(i);
CHECKPOINT;";

struct Setup {
    _dir: tempfile::TempDir,
    base: String,
    plugin: Plugin,
    seq: AtomicU64,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = dir.path().to_string_lossy().into_owned();
    {
        let conn = duckdb_connection(&dir.path().join("source.duckdb"));
        conn.execute_batch(GENERATE)
            .expect("generating the source table");
    }
    let plugin = Plugin::load(&plugin_path()).unwrap_or_else(|e| {
        panic!("{e}\nbuild the plugin first: cargo build --release -p caudal-duckdb")
    });
    Setup {
        _dir: dir,
        base,
        plugin,
        seq: AtomicU64::new(0),
    }
}

/// A plain duckdb-rs connection for generating data (not part of what is measured).
fn duckdb_connection(path: &Path) -> duckdb::Connection {
    duckdb::Connection::open(path).expect("open the source file")
}

/// `target/release/libcaudal_duckdb.so`: the bench binary runs from `target/release/deps/`.
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench knows its path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(plugin_file_name("duckdb"))
}

fn ctx(name: &str, base: &str) -> OpenContext {
    OpenContext {
        connection: name.into(),
        base_dir: Some(base.into()),
    }
}

fn open_in_process(name: &str, base: &str, file: &str) -> DuckDb {
    DuckDb::open(DuckDbConfig::file(file), &ctx(name, base)).expect("open")
}

fn read_request() -> ReadRequest {
    let mut r = ReadRequest::table("ventas");
    r.limits = ChunkLimits::default();
    r
}

fn write_request(seq: u64) -> WriteRequest {
    WriteRequest {
        pipeline: "bench".into(),
        stream: "ventas".into(),
        table: "ventas".into(),
        seq,
        op: WriteOp::Insert,
    }
}

fn prepare(schema: &caudal_connector::Schema) -> PrepareTable {
    PrepareTable {
        table: "ventas".into(),
        schema: schema.clone(),
        replace: true,
    }
}

/// How source and sink calls are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One thread alternates: read a chunk, write it.
    Sequential,
    /// The source runs on its own thread, two chunks ahead of the sink, as the engine runs a
    /// stream (reading the next chunk overlaps writing this one).
    Pipelined,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Sequential => "sequential",
            Shape::Pipelined => "pipelined",
        }
    }
}

/// Feeds every chunk `next` yields to `write`, in the given shape; returns the rows written.
fn drive<C: Send>(
    shape: Shape,
    mut next: impl FnMut() -> Option<C> + Send,
    mut write: impl FnMut(C) -> u64,
) -> u64 {
    match shape {
        Shape::Sequential => {
            let mut rows = 0;
            while let Some(chunk) = next() {
                rows += write(chunk);
            }
            rows
        }
        Shape::Pipelined => std::thread::scope(|scope| {
            let (tx, rx) = sync_channel(2);
            scope.spawn(move || {
                while let Some(chunk) = next() {
                    if tx.send(chunk).is_err() {
                        break;
                    }
                }
            });
            rx.into_iter().map(&mut write).sum()
        }),
    }
}

fn applied(outcome: WriteOutcome) -> u64 {
    match outcome {
        WriteOutcome::Applied { rows } => rows,
        other => panic!("unexpected {other:?}"),
    }
}

/// The connector linked in: source reader -> sink write, batches passed by reference.
fn copy_in_process(s: &Setup, shape: Shape) -> u64 {
    let mut source = open_in_process("source", &s.base, "source.duckdb");
    let mut sink = open_in_process("sink", &s.base, "sink_in_process.duckdb");
    let mut reader = source.read(&read_request()).expect("read");
    sink.prepare_table(&prepare(reader.schema()))
        .expect("prepare");
    let rows = drive(
        shape,
        || reader.next_chunk().expect("next chunk").map(|c| c.batch),
        |batch| {
            let seq = s.seq.fetch_add(1, Ordering::Relaxed) + 1;
            applied(sink.write(&write_request(seq), &batch).expect("write"))
        },
    );
    drop(reader);
    source.close().expect("close");
    sink.close().expect("close");
    rows
}

/// The same connector as a plugin: encoded bytes cross from the source to the sink.
fn copy_through_plugin(s: &Setup, shape: Shape) -> u64 {
    let open = |name: &str, file: &str| {
        s.plugin
            .open(&ctx(name, &s.base), &format!(r#"{{"path": "{file}"}}"#))
            .expect("open")
    };
    let mut source = open("source", "source.duckdb");
    let mut sink = open("sink", "sink_plugin.duckdb");
    let mut reader = source.read(&read_request()).expect("read");
    sink.prepare_table(&prepare(reader.schema()))
        .expect("prepare");
    let rows = drive(
        shape,
        || reader.next_raw().expect("next chunk"),
        |chunk| {
            let seq = s.seq.fetch_add(1, Ordering::Relaxed) + 1;
            applied(
                sink.write_encoded(&write_request(seq), &chunk.batch)
                    .expect("write"),
            )
        },
    );
    drop(reader);
    source.close().expect("close");
    sink.close().expect("close");
    rows
}

fn copy(s: &Setup, through_plugin: bool, shape: Shape) -> u64 {
    if through_plugin {
        copy_through_plugin(s, shape)
    } else {
        copy_in_process(s, shape)
    }
}

fn bench(c: &mut Criterion, s: &Setup) {
    let mut group = c.benchmark_group("duckdb 1M rows x 12 columns, source -> sink");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(40));
    for shape in [Shape::Sequential, Shape::Pipelined] {
        for (through_plugin, what) in [(false, "in-process (rlib)"), (true, "plugin (dlopen)")] {
            assert_eq!(copy(s, through_plugin, shape), ROWS);
            group.bench_function(format!("{what}, {}", shape.name()), |b| {
                b.iter(|| copy(s, through_plugin, shape))
            });
        }
    }
    group.finish();
}

/// The two variants run alternately, so that load from other processes on a shared machine
/// falls on both alike; prints each run and the medians.
fn interleaved(s: &Setup, shape: Shape, pairs: usize) {
    let (mut local, mut plugin) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which goes first, so neither always runs on a warmer cache.
        let order: [bool; 2] = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for through_plugin in order {
            let start = Instant::now();
            let rows = copy(s, through_plugin, shape);
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(rows, ROWS);
            let what = if through_plugin {
                "plugin    "
            } else {
                "in-process"
            };
            println!(
                "{} run {i}: {what} {secs:.3} s, {:.0} rows/s",
                shape.name(),
                ROWS as f64 / secs
            );
            if through_plugin {
                plugin.push(secs)
            } else {
                local.push(secs)
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (l, p) = (median(&mut local), median(&mut plugin));
    println!(
        "{} medians over {pairs} interleaved pairs: in-process {:.0} rows/s, plugin {:.0} rows/s, \
         plugin/in-process time {:.3} (overhead {:+.1}%)",
        shape.name(),
        ROWS as f64 / l,
        ROWS as f64 / p,
        p / l,
        (p / l - 1.0) * 100.0
    );
}

fn main() {
    let s = setup();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &s);
    c.final_summary();
    // `cargo bench` passes `--bench`; a test run of the benches (`--test`) skips this part.
    if std::env::args().any(|a| a == "--bench") && !std::env::args().any(|a| a == "--test") {
        for shape in [Shape::Sequential, Shape::Pipelined] {
            interleaved(&s, shape, 7);
        }
    }
}
