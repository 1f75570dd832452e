//! One full load / read / write / digest / close cycle through the host, including a panic
//! and a poisoned handle. Small on purpose: it is the program run under valgrind
//! (`valgrind --leak-check=full <test binary> --exact cycle_through_the_memory_and_panicky_plugins`)
//! to show that buffers crossing the boundary are freed exactly once and nothing is read or
//! written out of bounds.
//!
//! Needs the test plugins built first: `cargo build --workspace` (see `plugin_support`).

mod plugin_support;

use caudal_connector::{
    ChunkLimits, DigestRequest, KeyRange, OpenContext, PrepareTable, ReadRequest, TableDigest,
    WriteOp, WriteOutcome, WriteRequest,
};
use plugin_support::load;

#[test]
fn cycle_through_the_memory_and_panicky_plugins() {
    let memory = load("memory");
    let ctx = OpenContext {
        connection: "cycle".into(),
        base_dir: None,
    };
    let mut source = memory.open(&ctx, r#"{"rows": 2000}"#).unwrap();
    let mut sink = memory.open(&ctx, "{}").unwrap();
    let table = source.discover().unwrap().remove(0);
    sink.prepare_table(&PrepareTable {
        table: "t".into(),
        schema: table.schema.clone(),
        replace: false,
    })
    .unwrap();

    let mut request = ReadRequest::table(&table.name);
    request.limits = ChunkLimits {
        max_rows: 300,
        max_bytes: 1 << 20,
    };
    let mut reader = source.read(&request).unwrap();
    let (mut seq, mut expected) = (0, TableDigest::new());
    while let Some(chunk) = reader.next_raw().unwrap() {
        seq += 1;
        expected.add_batch("t", &caudal_connector::Batch::decode(&chunk.batch).unwrap());
        let req = WriteRequest {
            pipeline: "p".into(),
            stream: "s".into(),
            table: "t".into(),
            seq,
            op: WriteOp::Insert,
        };
        assert!(matches!(
            sink.write_encoded(&req, &chunk.batch).unwrap(),
            WriteOutcome::Applied { .. }
        ));
    }
    drop(reader);
    let digest = sink
        .table_digest(&DigestRequest {
            table: "t".into(),
            schema: table.schema,
            range: KeyRange::all(),
        })
        .unwrap();
    assert_eq!(digest, expected);
    assert_eq!(digest.rows(), 2000);
    assert_eq!(sink.last_applied_seq("p", "s").unwrap(), Some(seq));
    source.close().unwrap();
    sink.close().unwrap();

    // A panic, a poisoned handle and its close: the error path frees its buffers too.
    let panicky = load("panicky");
    let mut conn = panicky.open(&ctx, r#"{"panic_in": "discover"}"#).unwrap();
    assert!(conn.discover().is_err());
    assert!(conn.discover().is_err());
    conn.close().unwrap();
}
