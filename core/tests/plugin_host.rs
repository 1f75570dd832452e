//! The plugin host against real plugins loaded with dlopen: ABI refusal, panic isolation and
//! poisoning, and a round trip of every logical type across the boundary with equal digests.
//!
//! Needs the test plugins built first: `cargo build --workspace` (see `plugin_support`).

mod plugin_support;

use std::sync::Arc;

use caudal::host::{HostError, Plugin, PluginRegistry, SearchPath, plugin_file_name};
use caudal_connector::sample::{all_types_batch, all_types_schema};
use caudal_connector::{
    Capabilities, ChunkLimits, DigestRequest, Error, KeyRange, OpenContext, PrepareTable,
    ReadRequest, TableDigest, Value, WriteOp, WriteOutcome, WriteRequest,
};
use plugin_support::{build_dir, is_mapped, load, plugin_path};

fn ctx(name: &str) -> OpenContext {
    OpenContext {
        connection: name.into(),
        base_dir: None,
    }
}

fn write_req(table: &str, seq: u64) -> WriteRequest {
    WriteRequest {
        pipeline: "p".into(),
        stream: "s".into(),
        table: table.into(),
        seq,
        op: WriteOp::Insert,
    }
}

#[test]
fn wrong_abi_version_is_refused_naming_both_versions_and_the_file() {
    let path = plugin_path("wrongabi");
    let err = Plugin::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::AbiMismatch {
                plugin_abi: 2,
                host_abi: 1,
                ..
            }
        ),
        "expected an ABI mismatch, got {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("ABI version 2") && msg.contains("ABI version 1"),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // Nothing kept: the refused library was closed again.
    assert!(
        !is_mapped(&plugin_file_name("wrongabi")),
        "the refused plugin is still mapped"
    );

    // Nor registered: every lookup refuses it again, and other plugins still load.
    let registry = PluginRegistry::new(SearchPath::from_dirs(vec![build_dir()]));
    for _ in 0..2 {
        assert!(matches!(
            registry.get("wrongabi"),
            Err(HostError::AbiMismatch { .. })
        ));
    }
    assert_eq!(registry.get("memory").unwrap().name(), "memory");
}

#[test]
fn a_file_that_is_not_a_plugin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join(plugin_file_name("fake"));
    std::fs::write(&fake, b"\x7fELF but not really").unwrap();
    let err = Plugin::load(&fake).unwrap_err();
    assert!(matches!(err, HostError::Load { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&fake.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_plugin_must_carry_the_name_of_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        plugin_path("memory"),
        dir.path().join(plugin_file_name("other")),
    )
    .unwrap();
    let registry = PluginRegistry::new(SearchPath::from_dirs(vec![dir.path().to_path_buf()]));
    let err = registry.get("other").unwrap_err();
    assert!(matches!(err, HostError::NameMismatch { .. }), "{err:?}");
    let err = registry.get("absent").unwrap_err().to_string();
    assert!(
        err.contains(&plugin_file_name("absent"))
            && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn plugin_reports_name_version_abi_and_capabilities() {
    let p = load("memory");
    assert!(
        is_mapped(&plugin_file_name("memory")),
        "a loaded plugin stays mapped"
    );
    assert_eq!(p.info().name, "memory");
    assert_eq!(p.info().version, env!("CARGO_PKG_VERSION"));
    assert_eq!(p.info().abi_version, caudal_connector::abi::ABI_VERSION);
    assert_eq!(p.capabilities(), Capabilities::SOURCE | Capabilities::SINK);
}

#[test]
fn a_panic_names_plugin_and_function_and_poisons_that_handle_only() {
    let plugin = load("panicky");
    let mut bad = plugin
        .open(&ctx("bad"), r#"{"panic_in": "write"}"#)
        .unwrap();
    let mut good = plugin.open(&ctx("good"), "{}").unwrap();
    let batch = {
        let mut r = good.read(&ReadRequest::table("numbers")).unwrap();
        r.next_chunk().unwrap().unwrap().batch
    };

    let err = bad.write(&write_req("t", 1), &batch).unwrap_err();
    match &err {
        HostError::Call {
            plugin,
            function,
            source: Error::Panicked(m),
        } => {
            assert_eq!((plugin.as_str(), *function), ("panicky", "write"));
            assert!(m.contains("panicky was told to panic in write"), "{m}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("plugin `panicky`, write: panicked in write"),
        "{err}"
    );
    assert!(!err.is_retryable());

    // Later calls on the poisoned handle fail cleanly, naming the first panic.
    for e in [
        bad.last_applied_seq("p", "s").unwrap_err(),
        bad.discover().unwrap_err(),
    ] {
        assert!(
            matches!(e.connector_error(), Some(Error::Poisoned(_))),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("poisoned since a panic in write"),
            "{e}"
        );
    }
    assert!(bad.write(&write_req("t", 2), &batch).is_err());
    bad.close().unwrap();

    // The other handle of the same plugin, and the host, go on.
    assert_eq!(
        good.write(&write_req("t", 7), &batch).unwrap(),
        WriteOutcome::Applied { rows: 3 }
    );
    assert_eq!(good.last_applied_seq("p", "s").unwrap(), Some(7));
    // A panic chosen by data (the table name) behaves the same.
    let e = good.write(&write_req("panic", 8), &batch).unwrap_err();
    assert!(
        matches!(e.connector_error(), Some(Error::Panicked(_))),
        "{e:?}"
    );
    assert!(good.last_applied_seq("p", "s").is_err());
    good.close().unwrap();
}

#[test]
fn panics_in_open_close_and_a_reader_are_errors() {
    let plugin = load("panicky");
    let err = plugin
        .open(&ctx("c"), r#"{"panic_in": "open"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("panicked in open"), "{err}");
    assert!(matches!(
        err,
        HostError::Call {
            function: "open",
            ..
        }
    ));

    let conn = plugin.open(&ctx("c"), r#"{"panic_in": "close"}"#).unwrap();
    let err = conn.close().unwrap_err();
    assert!(err.to_string().contains("panicked in close"), "{err}");

    let mut conn = plugin
        .open(&ctx("c"), r#"{"panic_in": "next_chunk"}"#)
        .unwrap();
    let mut reader = conn.read(&ReadRequest::table("numbers")).unwrap();
    let err = reader.next_raw().err().expect("next_chunk panics");
    assert!(
        err.to_string().contains("read_next: panicked in read_next"),
        "{err}"
    );
    let err = reader.next_raw().err().expect("the reader is poisoned");
    assert!(
        matches!(err.connector_error(), Some(Error::Poisoned(_))),
        "{err:?}"
    );
    drop(reader);
    // The connection the reader came from is not poisoned.
    assert_eq!(conn.discover().unwrap()[0].name, "numbers");
    conn.close().unwrap();
}

#[test]
fn bad_config_is_an_error_naming_connection_and_key() {
    let plugin = load("memory");
    let err = plugin
        .open(&ctx("warehouse"), r#"{"rows": 10, "colour": "red"}"#)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err.connector_error(), Some(Error::Config(_))),
        "{err:?}"
    );
    assert!(
        msg.contains("`warehouse`") && msg.contains("colour"),
        "{msg}"
    );
}

#[test]
fn every_logical_type_round_trips_across_the_boundary_with_equal_digests() {
    const ROWS: u64 = 5_000;
    let plugin = load("memory");
    let mut source = plugin
        .open(&ctx("src"), &format!(r#"{{"rows": {ROWS}}}"#))
        .unwrap();
    let mut sink = plugin.open(&ctx("dst"), "{}").unwrap();

    let tables = source.discover().unwrap();
    assert_eq!(tables.len(), 1);
    let schema = tables[0].schema.clone();
    assert_eq!(schema, all_types_schema());
    sink.prepare_table(&PrepareTable {
        table: "copy".into(),
        schema: schema.clone(),
        replace: true,
    })
    .unwrap();

    let mut request = ReadRequest::table("all_types");
    request.cursor_column = Some("id".into());
    request.limits = ChunkLimits {
        max_rows: 700,
        max_bytes: 8 << 20,
    };
    let mut reader = source.read(&request).unwrap();
    assert_eq!(**reader.schema(), schema);

    let mut host_digest = TableDigest::new();
    let (mut seq, mut rows, mut nulls) = (0u64, 0u64, 0usize);
    let mut last_cursor = None;
    while let Some(raw) = reader.next_raw().unwrap() {
        seq += 1;
        let batch = caudal_connector::Batch::decode(&raw.batch).unwrap();
        assert!(batch.num_rows() <= 700);
        // The bytes crossed as the plugin encoded them; the values are the sample's.
        let expected =
            all_types_batch(&Arc::new(all_types_schema()), rows, batch.num_rows()).unwrap();
        assert_eq!(
            batch, expected,
            "chunk {seq} differs from the generated rows"
        );
        rows += batch.num_rows() as u64;
        nulls += batch
            .columns()
            .iter()
            .map(|c| c.null_count())
            .sum::<usize>();
        host_digest.add_batch("copy", &batch);
        assert_eq!(
            sink.write_encoded(&write_req("copy", seq), &raw.batch)
                .unwrap(),
            WriteOutcome::Applied {
                rows: batch.num_rows() as u64
            }
        );
        last_cursor = raw.cursor;
    }
    assert_eq!(rows, ROWS);
    assert!(
        nulls > 1000,
        "the sample must carry NULLs in every column ({nulls})"
    );
    assert_eq!(last_cursor, Some(Value::Int(ROWS as i64 - 1)));

    let request = DigestRequest {
        table: "copy".into(),
        schema: schema.clone(),
        range: KeyRange::all(),
    };
    let sink_digest = sink.table_digest(&request).unwrap();
    assert_eq!(sink_digest, host_digest);
    assert_eq!(sink_digest.rows(), ROWS as i64);
    // And both equal the digest of the same rows generated in this process.
    let local = TableDigest::of_batch(
        "copy",
        &all_types_batch(&Arc::new(schema), 0, ROWS as usize).unwrap(),
    );
    assert_eq!(local.hex(), sink_digest.hex());

    // Offsets: the sink knows the last seq and skips what it already has.
    assert_eq!(sink.last_applied_seq("p", "s").unwrap(), Some(seq));
    let again = all_types_batch(&Arc::new(all_types_schema()), 0, 3).unwrap();
    assert_eq!(
        sink.write(&write_req("copy", seq), &again).unwrap(),
        WriteOutcome::AlreadyApplied { last_seq: seq }
    );
    assert_eq!(sink.table_digest(&request).unwrap(), host_digest);
    source.close().unwrap();
    sink.close().unwrap();
}

#[test]
fn a_resumed_read_starts_after_the_cursor() {
    let plugin = load("memory");
    let mut source = plugin.open(&ctx("src"), r#"{"rows": 100}"#).unwrap();
    let mut request = ReadRequest::table("all_types");
    request.cursor_column = Some("id".into());
    request.from = std::ops::Bound::Excluded(Value::Int(89));
    let mut reader = source.read(&request).unwrap();
    let chunk = reader.next_chunk().unwrap().unwrap();
    assert_eq!(chunk.batch.num_rows(), 10);
    assert_eq!(chunk.batch.value(0, 0), Some(Value::Int(90)));
    assert!(reader.next_chunk().unwrap().is_none());
    let err = source.read(&ReadRequest::table("nope")).err().unwrap();
    assert!(
        matches!(err.connector_error(), Some(Error::NotFound(_))),
        "{err:?}"
    );
}

#[test]
fn caudal_plugins_lists_name_version_abi_capabilities_and_path() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["memory", "panicky", "wrongabi"] {
        std::os::unix::fs::symlink(plugin_path(name), dir.path().join(plugin_file_name(name)))
            .unwrap();
    }
    let run = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_caudal"));
        cmd.arg("plugins")
            .arg("--plugin-dir")
            .arg(dir.path())
            .env_remove("CAUDAL_PLUGIN_PATH");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let json = run(true);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_name = |n: &str| {
        rows.iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed: {json}"))
    };
    let memory = by_name("memory");
    assert_eq!(memory["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(memory["abi_version"], 1);
    assert_eq!(
        memory["capabilities"],
        serde_json::json!(["source", "sink"])
    );
    assert_eq!(
        memory["path"],
        dir.path()
            .join(plugin_file_name("memory"))
            .display()
            .to_string()
    );
    assert!(memory["error"].is_null());
    let wrong = by_name("wrongabi");
    assert_eq!(wrong["abi_version"], 2);
    assert!(
        wrong["error"].as_str().unwrap().contains("ABI version 2"),
        "{wrong}"
    );

    let table = run(false);
    let header = table.lines().next().unwrap();
    for col in ["NAME", "VERSION", "ABI", "CAPABILITIES", "PATH"] {
        assert!(header.contains(col), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("memory") && l.contains("source,sink")),
        "{table}"
    );
    assert!(table.contains("error: plugin"), "{table}");
}
