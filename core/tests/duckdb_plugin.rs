//! The DuckDB plugin loaded with dlopen from the build output (not linked in): a DuckDB source
//! -> DuckDB sink round trip of every logical type, NULLs included, with equal table digests on
//! both sides, plus offsets, replays and errors as the host sees them.
//!
//! Needs the plugin built first, in the same profile and target directory:
//! `cargo build --release --workspace` (see `plugin_support`).

mod plugin_support;

use std::sync::Arc;

use caudal::host::{Connection, HostError, Plugin};
use caudal_connector::sample::{all_types_batch, all_types_schema};
use caudal_connector::{
    Batch, Capabilities, ChunkLimits, DigestRequest, Error, KeyRange, OpenContext, PrepareTable,
    ReadRequest, Schema, TableDigest, WriteOp, WriteOutcome, WriteRequest,
};
use plugin_support::load;

fn duckdb() -> Plugin {
    load("duckdb")
}

fn open(plugin: &Plugin, name: &str, dir: &std::path::Path, file: &str) -> Connection {
    let ctx = OpenContext {
        connection: name.into(),
        base_dir: Some(dir.to_string_lossy().into_owned()),
    };
    plugin
        .open(&ctx, &format!(r#"{{"path": "{file}"}}"#))
        .unwrap_or_else(|e| panic!("opening {file}: {e}"))
}

fn write_req(table: &str, stream: &str, seq: u64) -> WriteRequest {
    WriteRequest {
        pipeline: "roundtrip".into(),
        stream: stream.into(),
        table: table.into(),
        seq,
        op: WriteOp::Insert,
    }
}

fn digest(conn: &mut Connection, table: &str, schema: &Schema) -> TableDigest {
    conn.table_digest(&DigestRequest {
        table: table.into(),
        schema: schema.clone(),
        range: KeyRange::all(),
    })
    .unwrap()
}

#[test]
fn the_plugin_reports_itself() {
    let plugin = duckdb();
    assert_eq!(plugin.name(), "duckdb");
    assert!(
        plugin
            .capabilities()
            .contains(Capabilities::SOURCE.union(Capabilities::SINK))
    );
}

#[test]
fn duckdb_to_duckdb_round_trip_of_every_logical_type_gives_equal_digests() {
    let plugin = duckdb();
    let dir = tempfile::tempdir().unwrap();

    // Seed the source database through the plugin's sink side, from the SDK's sample rows.
    let schema = Arc::new(all_types_schema());
    let mut seed = open(&plugin, "origen", dir.path(), "origen.duckdb");
    seed.prepare_table(&PrepareTable {
        table: "all_types".into(),
        schema: (*schema).clone(),
        replace: false,
    })
    .unwrap();
    let mut original = TableDigest::new();
    for (seq, start) in (0..4000u64).step_by(1000).enumerate() {
        let batch = all_types_batch(&schema, start, 1000).unwrap();
        original.add_batch("all_types", &batch);
        seed.write(&write_req("all_types", "seed", seq as u64 + 1), &batch)
            .unwrap();
    }
    seed.close().unwrap();

    // Source -> sink across the boundary, journal-style: the encoded bytes pass through.
    let mut source = open(&plugin, "origen", dir.path(), "origen.duckdb");
    let mut sink = open(&plugin, "destino", dir.path(), "destino.duckdb");
    let table = source
        .discover()
        .unwrap()
        .into_iter()
        .find(|t| t.name == "all_types")
        .expect("the source offers the seeded table");
    sink.prepare_table(&PrepareTable {
        table: "all_types".into(),
        schema: table.schema.clone(),
        replace: false,
    })
    .unwrap();
    let mut request = ReadRequest::table("all_types");
    request.limits = ChunkLimits {
        max_rows: 700,
        max_bytes: 8 << 20,
    };
    let mut reader = source.read(&request).unwrap();
    let (mut read_side, mut seq, mut nulls) = (TableDigest::new(), 0, 0);
    while let Some(chunk) = reader.next_raw().unwrap() {
        let batch = Batch::decode(&chunk.batch).unwrap();
        assert!(batch.num_rows() <= 700);
        nulls += batch
            .columns()
            .iter()
            .map(|c| c.null_count())
            .sum::<usize>();
        read_side.add_batch("all_types", &batch);
        seq += 1;
        let outcome = sink
            .write_encoded(&write_req("all_types", "copy", seq), &chunk.batch)
            .unwrap();
        assert_eq!(
            outcome,
            WriteOutcome::Applied {
                rows: batch.num_rows() as u64
            }
        );
    }
    drop(reader);
    assert_eq!(seq, 6, "4000 rows in chunks of 700");
    assert!(
        nulls > 4000,
        "the sample has NULLs in every column: {nulls}"
    );

    let source_digest = digest(&mut source, "all_types", &table.schema);
    let sink_digest = digest(&mut sink, "all_types", &table.schema);
    assert_eq!(read_side.rows(), 4000);
    assert_eq!(source_digest, read_side, "source table vs rows read");
    assert_eq!(sink_digest, read_side, "sink table vs rows read");
    // The values survived exactly: the digest of the SDK's own sample rows agrees as well.
    assert_eq!(sink_digest, original);
    assert_eq!(
        digest(&mut sink, "all_types", &schema),
        original,
        "digested in the original logical types"
    );
    assert_eq!(sink.last_applied_seq("roundtrip", "copy").unwrap(), Some(6));

    // A replay of a journaled batch changes nothing.
    let again = all_types_batch(&schema, 0, 10).unwrap();
    assert_eq!(
        sink.write(&write_req("all_types", "copy", 6), &again)
            .unwrap(),
        WriteOutcome::AlreadyApplied { last_seq: 6 }
    );
    assert_eq!(digest(&mut sink, "all_types", &table.schema), original);
    source.close().unwrap();
    sink.close().unwrap();
}

#[test]
fn errors_cross_the_boundary_with_plugin_function_and_cause() {
    let plugin = duckdb();
    let dir = tempfile::tempdir().unwrap();
    let ctx = OpenContext {
        connection: "mala".into(),
        base_dir: None,
    };
    let err = plugin
        .open(&ctx, r#"{"path": "x.duckdb", "colour": 1}"#)
        .unwrap_err();
    match &err {
        HostError::Call {
            plugin,
            function,
            source: Error::Config(m),
        } => {
            assert_eq!((plugin.as_str(), *function), ("duckdb", "open"));
            assert!(m.contains("colour") && m.contains("mala"), "{m}");
        }
        other => panic!("expected a config error from open, got {other:?}"),
    }

    let mut conn = open(&plugin, "vacia", dir.path(), "vacia.duckdb");
    let err = conn.read(&ReadRequest::table("missing")).err().unwrap();
    assert!(
        matches!(
            &err,
            HostError::Call {
                function: "read",
                source: Error::NotFound(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("`missing`"), "{err}");
    // The handle is still good after an error.
    assert!(conn.discover().unwrap().is_empty());
    conn.close().unwrap();
}
