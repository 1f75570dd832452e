//! Rows per second through the `mssql` connector against the TDS test server, with the time the
//! server itself spent (its `stats()`), so that the connector's own cost is visible.
//!
//! Two directions, as the nightly store-sales job uses them:
//! - into SQL Server (what a DuckDB -> SQL Server stream does): `Sink::write` of 20k-row
//!   batches by bulk load, and the same rows again as a `MERGE` upsert;
//! - out of SQL Server (what a SQL Server -> DuckDB stream does): a keyset read in 20k-row
//!   chunks.
//!
//! The batches are built before the clock starts; DuckDB's side is not included (see the
//! DuckDB connector's own benchmark). The test server is a double backed by DuckDB, so its
//! share says nothing about a real SQL Server; the connector's share (wall time minus the
//! server's busy time) is what this measures.
//!
//! ```sh
//! cargo run --release --example mssql_throughput -- [ROWS]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use caudal_connector::{
    BatchBuilder, ChunkLimits, Connector, Field, LogicalType as L, OpenContext, PrepareTable,
    ReadRequest, Schema, WriteOp, WriteRequest,
};
use caudal_mssql::{MsSqlConfig, MsSqlConnector};
use caudal_tds_server::{Stats, TdsServer};

const CHUNK: usize = 20_000;

fn schema() -> Schema {
    let f = |n: &str, t: L, null: bool| Field::new(n, t, null);
    Schema::new(
        vec![
            f("tienda", L::Int16, false),
            f("factura", L::Int64, false),
            f("linea", L::Int32, false),
            f("fecha", L::Date, false),
            f(
                "producto",
                L::NVarchar {
                    max_length: Some(40),
                },
                true,
            ),
            f("cantidad", L::Int32, true),
            f(
                "importe",
                L::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
            f("registrado", L::DateTime { precision: 6 }, true),
        ],
        &["tienda", "factura", "linea"],
    )
    .expect("valid schema")
}

fn batches(schema: &Arc<Schema>, rows: usize) -> Vec<caudal_connector::Batch> {
    let mut out = Vec::new();
    let mut b = BatchBuilder::with_capacity(Arc::clone(schema), CHUNK);
    for i in 0..rows {
        let i64_ = i as i64;
        let pushed = (|| {
            b.push(0, (i % 16) as i16)?;
            b.push(1, i64_ / 4)?;
            b.push(2, (i % 4) as i32)?;
            b.push(3, 19_000 + (i / 1000) as i32)?;
            b.push(4, ["café", "pan", "leche", "azúcar de caña"][i % 4])?;
            b.push(5, (i % 7) as i32 + 1)?;
            b.push(6, (i64_ * 37 % 100_000) as i128)?;
            b.push(7, 1_640_995_200_000_000 + i64_ * 1_000_003)
        })();
        pushed.expect("row fits the schema");
        if b.num_rows() == CHUNK {
            out.push(b.take().expect("batch"));
        }
    }
    if b.num_rows() > 0 {
        out.push(b.take().expect("batch"));
    }
    out
}

fn report(what: &str, rows: usize, wall: Duration, before: Stats, after: Stats) {
    let busy = after.busy.saturating_sub(before.busy);
    let engine = after.engine.saturating_sub(before.engine);
    let own = wall.saturating_sub(busy);
    let rate = |d: Duration| rows as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "{what:<28} {rows:>8} rows  {:>9.0} rows/s  wall {:>7.3} s  server busy {:>7.3} s \
         (engine {:>7.3} s)  outside the server {:>7.3} s = {:>9.0} rows/s",
        rate(wall),
        wall.as_secs_f64(),
        busy.as_secs_f64(),
        engine.as_secs_f64(),
        own.as_secs_f64(),
        rate(own),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let server = TdsServer::builder()
        .credentials("bench", "Bench-pw-1")
        .database("tienda_bench")
        .start_blocking()?;
    let config: MsSqlConfig = toml::from_str(&format!(
        "url = \"mssql://bench:Bench-pw-1@{}/tienda_bench\"\nencrypt = \"off\"",
        server.addr()
    ))?;
    let context = OpenContext {
        connection: "bench".into(),
        base_dir: None,
    };
    let mut conn = MsSqlConnector::open(config, &context)?;
    let schema = Arc::new(schema());
    let data = batches(&schema, rows);
    let sink = conn.sink().ok_or("no sink")?;
    sink.prepare_table(&PrepareTable {
        table: "ventas".into(),
        schema: (*schema).clone(),
        replace: true,
    })?;

    for (label, op, first_seq) in [
        ("into SQL Server, bulk load", WriteOp::Insert, 1),
        ("into SQL Server, MERGE", WriteOp::Upsert, 1_000_000),
    ] {
        let before = server.stats();
        let start = Instant::now();
        for (i, batch) in data.iter().enumerate() {
            let request = WriteRequest {
                pipeline: "bench".into(),
                stream: "ventas".into(),
                table: "ventas".into(),
                seq: first_seq + i as u64,
                op,
            };
            conn.sink().ok_or("no sink")?.write(&request, batch)?;
        }
        report(label, rows, start.elapsed(), before, server.stats());
    }

    let mut request = ReadRequest::table("ventas");
    request.limits = ChunkLimits {
        max_rows: CHUNK,
        ..ChunkLimits::default()
    };
    let before = server.stats();
    let start = Instant::now();
    let mut reader = conn.source().ok_or("no source")?.read(&request)?;
    let mut read = 0;
    while let Some(chunk) = reader.next_chunk()? {
        read += chunk.batch.num_rows();
    }
    report(
        "out of SQL Server, keyset",
        read,
        start.elapsed(),
        before,
        server.stats(),
    );
    if read != rows {
        return Err(format!("read {read} rows, wrote {rows}").into());
    }
    Ok(())
}
