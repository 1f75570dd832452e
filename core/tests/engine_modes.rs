//! `caudal run` end to end through the DuckDB plugin (dlopen, as in production): every mode,
//! fan-out, partitions, incremental resume and manual ranges. Each test ends with the
//! destination's table digest (computed by the plugin from the destination) equal to the
//! digest of the source's rows (read through the plugin), row counts included.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;

use std::ops::Bound;
use std::path::Path;

use caudal_connector::{Batch, ReadTarget, Value};
use engine_support::*;

const KEY: [&str; 3] = ["tienda", "factura", "linea"];

fn no_shape(b: Batch) -> Batch {
    b
}

fn keyed(b: Batch) -> Batch {
    reshape(b, &KEY, None)
}

/// The rows of `table` in `db`, as rows of `as_table` in the stream's shape.
fn source(
    db: &Path,
    table: &str,
    as_table: &str,
    shape: &dyn Fn(Batch) -> Batch,
) -> (caudal_connector::TableDigest, u64) {
    read_digest(db, ReadTarget::Table(table.into()), None, as_table, shape)
}

fn connections(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[connections.{n}]\nconnector = \"duckdb\"\npath = \"{n}.duckdb\"\n\n"))
        .collect()
}

#[test]
fn snapshot_replaces_the_destination_table_with_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "ventas", &[sales("t1", 0..5000, 90, &[])], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\nchunk_rows = 700\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_holds(
        &wh,
        "ventas",
        &journal,
        "ventas",
        &source(&src, "ventas", "ventas", &no_shape),
    );

    // The source loses and changes rows: the next snapshot is exactly the new source.
    fill(&src, "ventas", &[sales("t2", 1000..1600, 90, &[])], true);
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_holds(
        &wh,
        "ventas",
        &journal,
        "ventas",
        &source(&src, "ventas", "ventas", &no_shape),
    );
    verify(&journal);
}

#[test]
fn incremental_resumes_after_the_last_cursor_and_reads_only_new_days() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "ventas", &[sales("t1", 0..6000, 150, &[])], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\nmode = \"incremental\"\n\
             cursor = \"fecha\"\nprimary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 1000\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    // Two more days arrive, and nothing else changes.
    fill(&src, "ventas", &[sales("t1", 6000..6300, 150, &[])], false);
    run_ok(&["run", s(&file), "--progress", "none"]);
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_eq!(rows_per_run(&journal), [6000, 300, 0]);
    assert_holds(
        &wh,
        "ventas",
        &journal,
        "ventas",
        &source(&src, "ventas", "ventas", &keyed),
    );
    let status = run_ok(&["status", "--file", s(&file)]);
    assert!(
        status.contains("2025-02-11"),
        "the last cursor is shown:\n{status}"
    );
    verify(&journal);
}

#[test]
fn manual_ranges_read_only_their_days_and_upsert_them() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "ventas", &[sales("t1", 0..3000, 100, &[])], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\nmode = \"incremental\"\n\
             cursor = \"fecha\"\nprimary_key = [\"tienda\", \"factura\", \"linea\"]\n",
            connections(&["src", "wh"])
        ),
    );
    // Only 2025-01-05 .. 2025-01-09 (exclusive): 4 days of 100 lines.
    run_ok(&[
        "run",
        s(&file),
        "--from",
        "2025-01-05",
        "--to",
        "2025-01-09",
        "--progress",
        "none",
    ]);
    let range = read_digest(
        &src,
        ReadTarget::Table("ventas".into()),
        Some((
            "fecha",
            Bound::Included(Value::Date(DAY0 + 4)),
            Bound::Excluded(Value::Date(DAY0 + 8)),
        )),
        "ventas",
        &keyed,
    );
    assert_eq!(range.1, 400);
    assert_holds(&wh, "ventas", &journal, "ventas", &range);
    // The range's last day is now the high-water mark: the regular run resumes after
    // 2025-01-08, and a manual run of the first days completes the table, without duplicates.
    run_ok(&["run", s(&file), "--progress", "none"]);
    run_ok(&["run", s(&file), "--to", "2025-01-05", "--progress", "none"]);
    assert_holds(
        &wh,
        "ventas",
        &journal,
        "ventas",
        &source(&src, "ventas", "ventas", &keyed),
    );
}

#[test]
fn merge_applies_updates_inserts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "items", &[sales("t1", 0..2000, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nmode = \"merge\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 500\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    // Changed rows (same keys, other values), new rows, and deleted rows.
    let changed = sales("t1", 100..300, 7, &KEY);
    fill(
        &src,
        "items",
        &[changed, sales("t1", 2000..2100, 100, &KEY)],
        false,
    );
    let gone = sales("t1", 1500..1700, 100, &KEY);
    let keys = key_columns(&gone);
    delete(&src, "items", &keys);
    run_ok(&["run", s(&file), "--progress", "none"]);
    let expected = source(&src, "items", "items", &keyed);
    assert_eq!(expected.1, 2000 - 200 + 100);
    assert_holds(&wh, "items", &journal, "items", &expected);
}

/// The key columns of a sales batch, with no key declared (what a delete carries).
fn key_columns(b: &Batch) -> Batch {
    let schema = b.schema();
    let idx: Vec<usize> = KEY.iter().map(|k| schema.index_of(k).unwrap()).collect();
    let fields = idx.iter().map(|&i| schema.fields()[i].clone()).collect();
    let columns = idx.iter().map(|&i| b.columns()[i].clone()).collect();
    Batch::try_new(
        std::sync::Arc::new(caudal_connector::Schema::new(fields, &KEY).unwrap()),
        columns,
    )
    .unwrap()
}

#[test]
fn consolidate_writes_every_source_into_one_table_with_a_source_column() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let names = ["rest_norte", "rest_sur", "rest_centro"];
    for (i, n) in names.iter().enumerate() {
        // The same invoice numbers in every restaurant: `_source` keeps them apart.
        fill(
            &dir.path().join(format!("{n}.duckdb")),
            "pedidos",
            &[sales("r", 0..(800 + 100 * i as i64), 50, &[])],
            true,
        );
    }
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"rest_*\"\ntable = \"pedidos\"\nto = \"reportes\"\nmode = \"consolidate\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 300\n",
            connections(&["rest_norte", "rest_sur", "rest_centro", "reportes"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    let mut expected = (caudal_connector::TableDigest::new(), 0);
    for n in names {
        let shape = move |b: Batch| reshape(b, &KEY, Some(("_source", n)));
        let (d, rows) = source(
            &dir.path().join(format!("{n}.duckdb")),
            "pedidos",
            "pedidos",
            &shape,
        );
        expected.0.combine(&d);
        expected.1 += rows;
    }
    assert_eq!(expected.1, 800 + 900 + 1000);
    assert_holds(
        &dir.path().join("reportes.duckdb"),
        "pedidos",
        &journal,
        "pedidos",
        &expected,
    );
}

#[test]
fn fan_out_and_partitions_fill_every_destination_with_every_store() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let stores = ["tienda_01", "tienda_02", "tienda_03", "tienda_04"];
    for (i, t) in stores.iter().enumerate() {
        fill(
            &dir.path().join(format!("{t}.duckdb")),
            "ventas",
            &[sales(t, 0..(1000 + 250 * i as i64), 120, &[])],
            true,
        );
    }
    let mut names = stores.to_vec();
    names.extend(["warehouse", "backup"]);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"tienda_*\"\ntable = \"ventas\"\nto = [\"warehouse\", \"backup\"]\n\
             mode = \"incremental\"\ncursor = \"fecha\"\nprimary_key = [\"tienda\", \"factura\", \"linea\"]\n\
             chunk_rows = 400\n",
            connections(&names)
        ),
    );
    let out = run_ok(&["run", s(&file), "--json", "--progress", "none"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["streams"].as_array().unwrap().len(), 4, "{report}");
    let mut expected = (caudal_connector::TableDigest::new(), 0);
    for t in stores {
        let (d, rows) = source(
            &dir.path().join(format!("{t}.duckdb")),
            "ventas",
            "ventas",
            &keyed,
        );
        expected.0.combine(&d);
        expected.1 += rows;
    }
    for dest in ["warehouse", "backup"] {
        assert_holds(
            &dir.path().join(format!("{dest}.duckdb")),
            "ventas",
            &journal,
            "ventas",
            &expected,
        );
    }
    // Each partition has its own offset in each destination: a second run reads nothing and
    // writes nothing.
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_eq!(rows_per_run(&journal), [1000 + 1250 + 1500 + 1750, 0]);
    verify(&journal);
}

#[test]
fn the_quickstart_syncs_sixteen_stores_and_replays_into_a_fresh_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/quickstart.toml"),
    )
    .unwrap();
    let file = dir.path().join("quickstart.toml");
    std::fs::write(&file, format!("{text}\n[connections.rebuilt]\nconnector = \"duckdb\"\npath = \"data/rebuilt.duckdb\"\n")).unwrap();
    run_ok(&["run", s(&file), "--progress", "none"]);
    let journal = dir.path().join("journal/quickstart");
    let data = dir.path().join("data");
    let expected = source(&data.join("tiendas.duckdb"), "ventas", "ventas", &keyed);
    // 16 stores x 60 days x 60 lines, less the missing store-days.
    assert!(
        expected.1 > 50_000 && expected.1 < 16 * 60 * 60,
        "{}",
        expected.1
    );
    assert_eq!(expected.1 % 60, 0, "whole store-days only");
    assert_holds(
        &data.join("warehouse.duckdb"),
        "ventas",
        &journal,
        "ventas",
        &expected,
    );
    let stats = run_ok(&["journal", "stats", "--file", s(&file)]);
    assert!(stats.contains("BatchRead"), "{stats}");
    let status = run_ok(&["status", "--file", s(&file)]);
    assert!(
        status.contains("ventas") && status.contains("warehouse: ok"),
        "{status}"
    );
    // A second run finds nothing new to sync.
    run_ok(&["run", s(&file), "--progress", "none"]);
    // Replaying into the warehouse means the streams that write it, not `tiendas` (whose
    // snapshot also lands in a table `ventas`, in another database).
    let dry = run_ok(&[
        "replay",
        "--file",
        s(&file),
        "--to",
        "warehouse",
        "--dry-run",
    ]);
    assert!(
        dry.contains("ventas -> warehouse.ventas") && !dry.contains("tiendas ->"),
        "{dry}"
    );
    assert!(dry.contains("would write 0"), "{dry}");
    // The warehouse can be rebuilt from the journal alone.
    let out = run_ok(&[
        "replay",
        "--file",
        s(&file),
        "--to",
        "rebuilt",
        "--stream",
        "ventas",
    ]);
    assert!(out.contains("ventas -> rebuilt.ventas"), "{out}");
    assert_holds(
        &data.join("rebuilt.duckdb"),
        "ventas",
        &journal,
        "ventas",
        &expected,
    );
    verify(&journal);
}
