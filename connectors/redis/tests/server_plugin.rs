//! The Redis plugin loaded with dlopen from the build output (not linked in), driven through
//! the host's ABI as the engine drives it: every logical type written and read back with equal
//! digests, replays, and errors as the host sees them.
//!
//! Needs the plugin built first, in the same profile and target directory
//! (`cargo build --release --workspace`): cargo does not build a cdylib for a test run.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use caudal::host::{Connection, HostError, Plugin, plugin_file_name};
use caudal_connector::sample::{all_types_batch, all_types_schema};
use caudal_connector::{
    Batch, Capabilities, ChunkLimits, DigestRequest, Error, KeyRange, OpenContext, PrepareTable,
    ReadRequest, TableDigest, WriteOp, WriteOutcome,
};
use common::{TestPrefix, request, server_url};

/// `libcaudal_redis.so` next to the test binary's `deps/` directory.
fn plugin() -> Plugin {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let dir: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("the test binary lives in target/<profile>/deps");
    let path = dir.join(plugin_file_name("redis"));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace (`cargo build --release --workspace`) with the same \
         profile and CARGO_TARGET_DIR before running this test",
        path.display()
    );
    Plugin::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn open(plugin: &Plugin, prefix: &TestPrefix, format: &str) -> Connection {
    let ctx = OpenContext {
        connection: "cache".into(),
        base_dir: None,
    };
    let config = serde_json::json!({
        "url": server_url(),
        "prefix": prefix.name,
        "format": format,
    });
    plugin
        .open(&ctx, &config.to_string())
        .unwrap_or_else(|e| panic!("opening the redis plugin: {e}"))
}

#[test]
fn server_plugin_round_trips_every_logical_type_through_the_abi() {
    let plugin = plugin();
    assert_eq!(plugin.name(), "redis");
    assert!(
        plugin.capabilities().contains(
            Capabilities::SOURCE
                .union(Capabilities::SINK)
                .union(Capabilities::CACHE)
                .union(Capabilities::UNORDERED)
        ),
        "verify reads a Redis table whole rather than by key ranges"
    );
    for format in ["hash", "json"] {
        let prefix = TestPrefix::new(&format!("plugin_{format}"));
        let mut conn = open(&plugin, &prefix, format);
        let schema = Arc::new(all_types_schema());
        conn.prepare_table(&PrepareTable {
            table: "tipos".into(),
            schema: (*schema).clone(),
            replace: false,
        })
        .unwrap();
        let mut original = TableDigest::new();
        for (i, start) in (0..1500u64).step_by(500).enumerate() {
            let batch = all_types_batch(&schema, start, 500).unwrap();
            original.add_batch("tipos", &batch);
            let outcome = conn
                .write(&request("tipos", i as u64 + 1, WriteOp::Insert), &batch)
                .unwrap();
            assert_eq!(outcome, WriteOutcome::Applied { rows: 500 });
        }
        let mut read = ReadRequest::table("tipos");
        read.limits = ChunkLimits {
            max_rows: 400,
            max_bytes: 8 << 20,
        };
        let mut reader = conn.read(&read).unwrap();
        let (mut read_side, mut chunks) = (TableDigest::new(), 0);
        while let Some(chunk) = reader.next_raw().unwrap() {
            let batch = Batch::decode(&chunk.batch).unwrap();
            assert!(batch.num_rows() <= 400);
            read_side.add_batch("tipos", &batch);
            chunks += 1;
        }
        drop(reader);
        assert!(chunks >= 4, "1500 rows in chunks of at most 400: {chunks}");
        assert_eq!(read_side, original, "{format}: rows read back");
        let scanned = conn
            .table_digest(&DigestRequest {
                table: "tipos".into(),
                schema: (*schema).clone(),
                range: KeyRange::all(),
            })
            .unwrap();
        assert_eq!(scanned, original, "{format}: table digest");
        assert_eq!(conn.last_applied_seq("p", "s").unwrap(), Some(3));
        let again = conn
            .write(
                &request("tipos", 3, WriteOp::Upsert),
                &all_types_batch(&schema, 0, 5).unwrap(),
            )
            .unwrap();
        assert_eq!(again, WriteOutcome::AlreadyApplied { last_seq: 3 });
        let tables = conn.discover().unwrap();
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].estimated_rows, Some(1500));
        conn.close().unwrap();
    }
}

#[test]
fn server_plugin_errors_cross_the_boundary_with_their_kind() {
    let plugin = plugin();
    let ctx = OpenContext {
        connection: "mala".into(),
        base_dir: None,
    };
    let err = plugin
        .open(&ctx, r#"{"url": "redis://127.0.0.1:6379", "colour": 1}"#)
        .unwrap_err();
    match &err {
        HostError::Call {
            function,
            source: Error::Config(m),
            ..
        } => {
            assert_eq!(*function, "open");
            assert!(m.contains("colour"), "{m}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    let err = plugin
        .open(&ctx, r#"{"url": "redis://:pw-secret@127.0.0.1:1"}"#)
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(!err.to_string().contains("pw-secret"), "{err}");

    let prefix = TestPrefix::new("plugin_errors");
    let mut conn = open(&plugin, &prefix, "hash");
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
    // The handle is still good after an error.
    assert!(conn.discover().unwrap().is_empty());
}
