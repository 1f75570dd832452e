//! One load / write / read / digest / close cycle of the DuckDB plugin through the host, small
//! enough to run under valgrind:
//!
//! ```text
//! cargo build --release --workspace --examples
//! valgrind --leak-check=full target/release/examples/duckdb_cycle [PLUGIN_DIR]
//! ```
//!
//! `PLUGIN_DIR` defaults to the directory above the example binary (`target/release`), where
//! cargo puts `libcaudal_duckdb.so`. Exits non-zero if any step or the final digest check fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use caudal::host::{PluginRegistry, SearchPath};
use caudal_connector::sample::{all_types_batch, all_types_schema};
use caudal_connector::{
    Batch, ChunkLimits, DigestRequest, KeyRange, OpenContext, PrepareTable, ReadRequest,
    TableDigest, WriteOp, WriteRequest,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("duckdb cycle: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("duckdb cycle failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let plugin_dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("cannot tell the build directory; pass PLUGIN_DIR"))?,
    };
    let registry = PluginRegistry::new(SearchPath::new(Some(&plugin_dir)));
    let plugin = registry.get("duckdb")?;
    let dir = tempfile::tempdir()?;
    let ctx = OpenContext {
        connection: "cycle".into(),
        base_dir: Some(dir.path().to_string_lossy().into_owned()),
    };
    let write = |table: &str, seq: u64| WriteRequest {
        pipeline: "cycle".into(),
        stream: table.into(),
        table: table.into(),
        seq,
        op: WriteOp::Insert,
    };

    // Write: prepare and insert sample rows of every logical type.
    let schema = Arc::new(all_types_schema());
    let mut db = plugin.open(&ctx, r#"{"path": "cycle.duckdb"}"#)?;
    for table in ["origin", "copy"] {
        db.prepare_table(&PrepareTable {
            table: table.into(),
            schema: (*schema).clone(),
            replace: false,
        })?;
    }
    let mut expected = TableDigest::new();
    for seq in 1..=3u64 {
        let batch = all_types_batch(&schema, (seq - 1) * 400, 400)?;
        expected.add_batch("origin", &batch);
        db.write(&write("origin", seq), &batch)?;
    }

    // Read it back in chunks through a second connection and copy it.
    let mut source = plugin.open(&ctx, r#"{"path": "cycle.duckdb"}"#)?;
    let mut request = ReadRequest::table("origin");
    request.limits = ChunkLimits {
        max_rows: 250,
        max_bytes: 1 << 20,
    };
    let mut reader = source.read(&request)?;
    let (mut seq, mut expected_copy) = (0, TableDigest::new());
    while let Some(chunk) = reader.next_raw()? {
        seq += 1;
        expected_copy.add_batch("copy", &Batch::decode(&chunk.batch)?);
        db.write_encoded(&write("copy", seq), &chunk.batch)?;
    }
    drop(reader);

    // A read dropped half-way, and a failing call: their buffers are freed too.
    let mut partial = source.read(&request)?;
    partial.next_raw()?;
    drop(partial);
    if source.read(&ReadRequest::table("missing")).is_ok() {
        anyhow::bail!("reading a missing table succeeded");
    }

    let digest = |db: &mut caudal::host::Connection, table: &str| {
        db.table_digest(&DigestRequest {
            table: table.into(),
            schema: (*schema).clone(),
            range: KeyRange::all(),
        })
    };
    let origin = digest(&mut db, "origin")?;
    if origin != expected {
        anyhow::bail!("digest of origin {origin:?} differs from the rows written {expected:?}");
    }
    let copy = digest(&mut source, "copy")?;
    if copy != expected_copy || copy.rows() != 1200 {
        anyhow::bail!("digest of copy {copy:?} differs from the rows read {expected_copy:?}");
    }
    source.close()?;
    db.close()?;
    Ok(())
}
