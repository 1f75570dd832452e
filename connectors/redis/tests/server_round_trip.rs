//! Every logical type, NULLs included, written to a real Redis and read back in both formats:
//! equal values, and the scanned digest, the digest key and an in-memory digest of the
//! original rows all agree.

mod common;

use std::sync::Arc;

use caudal_connector::sample::{all_types_batch, all_types_schema};
use caudal_connector::{
    Batch, BatchBuilder, Field, KeyRange, LogicalType, Schema, Sink, Source, TableDigest, WriteOp,
};
use caudal_redis::Format;
use common::{TestPrefix, prepare, read_rows, scanned_digest, write};

fn sorted_rows(batches: &[Batch]) -> Vec<Vec<caudal_connector::Value>> {
    let mut rows: Vec<_> = batches.iter().flat_map(common::batch_rows).collect();
    rows.sort_by(|a, b| format!("{:?}", a[0]).cmp(&format!("{:?}", b[0])));
    rows
}

fn round_trip(format: Format) {
    let mut prefix = TestPrefix::new(&format!("roundtrip_{format:?}"));
    let mut config = prefix.config();
    config.format = format;
    let mut conn = prefix.open_with(config);
    let schema = Arc::new(all_types_schema());
    prepare(&mut conn, "tipos", &schema, false);
    let batches = [
        all_types_batch(&schema, 0, 300).unwrap(),
        all_types_batch(&schema, 300, 211).unwrap(),
    ];
    let mut expected = TableDigest::new();
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(
            write(&mut conn, "tipos", i as u64 + 1, WriteOp::Insert, b),
            b.num_rows() as u64
        );
        expected.add_batch("tipos", b);
    }

    let (read_schema, rows) = read_rows(&mut conn, "tipos", 97);
    assert_eq!(*read_schema, *schema);
    assert_eq!(rows.len(), 511);
    assert_eq!(
        rows,
        sorted_rows(&batches),
        "values differ after the round trip"
    );

    assert_eq!(
        scanned_digest(&mut conn, "tipos", &schema, KeyRange::all()),
        expected
    );
    assert_eq!(conn.stored_digest("tipos").unwrap(), Some(expected));
    assert_eq!(conn.last_applied_seq("p", "s").unwrap(), Some(2));
    assert_eq!(conn.last_applied_seq("p", "other").unwrap(), None);

    // The metadata keys, the offsets key and one key per row: nothing else.
    let keys = prefix.keys();
    let p = &prefix.name;
    for meta in [
        "tipos:schema",
        "tipos:digest",
        "tipos:rowdigests",
        "_caudal_offsets",
    ] {
        assert!(keys.contains(&format!("{p}:{meta}")), "{meta} missing");
    }
    assert_eq!(keys.len(), 511 + 4);
    assert!(keys.contains(&format!("{p}:tipos:42")));
}

#[test]
fn server_every_logical_type_round_trips_as_hashes() {
    round_trip(Format::Hash);
}

#[test]
fn server_every_logical_type_round_trips_as_json() {
    round_trip(Format::Json);
}

fn small_schema() -> Arc<Schema> {
    Arc::new(
        Schema::new(
            vec![
                Field::new("id", LogicalType::Int32, false),
                Field::new("name", LogicalType::Text { max_bytes: None }, true),
                Field::new(
                    "price",
                    LogicalType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    true,
                ),
            ],
            &["id"],
        )
        .unwrap(),
    )
}

#[test]
fn server_nulls_are_absent_fields_in_hashes_and_null_in_json() {
    let mut prefix = TestPrefix::new("nulls");
    let schema = small_schema();
    let mut b = BatchBuilder::new(Arc::clone(&schema));
    b.push(0, 7i32).unwrap();
    b.push(1, "").unwrap();
    b.push_null(2).unwrap();
    let batch = b.finish().unwrap();

    let mut conn = prefix.open();
    prepare(&mut conn, "h", &schema, false);
    write(&mut conn, "h", 1, WriteOp::Upsert, &batch);
    let key = format!("{}:h:7", prefix.name);
    let fields: Vec<(String, String)> = prefix.cmd(&[b"HGETALL", key.as_bytes()]);
    let mut fields = fields;
    fields.sort();
    assert_eq!(
        fields,
        vec![("id".into(), "7".into()), ("name".into(), String::new())]
    );

    let mut config = prefix.config();
    config.format = Format::Json;
    let mut conn = prefix.open_with(config);
    prepare(&mut conn, "j", &schema, false);
    write(&mut conn, "j", 2, WriteOp::Upsert, &batch);
    let key = format!("{}:j:7", prefix.name);
    let text: String = prefix.cmd(&[b"GET", key.as_bytes()]);
    assert_eq!(text, r#"{"id":7,"name":"","price":null}"#);
    let (_, rows) = read_rows(&mut conn, "j", 10);
    assert_eq!(rows, common::batch_rows(&batch));
}

#[test]
fn server_key_values_with_separators_and_metadata_names_keep_their_own_keys() {
    let mut prefix = TestPrefix::new("keys");
    let schema = Arc::new(
        Schema::new(
            vec![
                Field::new("k", LogicalType::Text { max_bytes: None }, false),
                Field::new("t", LogicalType::Time { precision: 0 }, false),
                Field::new("v", LogicalType::Int64, true),
            ],
            &["k", "t"],
        )
        .unwrap(),
    );
    let mut b = BatchBuilder::new(Arc::clone(&schema));
    for (i, k) in ["a:b", "schema", "digest", "50%", ""].iter().enumerate() {
        b.push(0, *k).unwrap();
        b.push(1, 45_000_000_000i64).unwrap();
        b.push(2, i as i64).unwrap();
    }
    let batch = b.finish().unwrap();
    let mut conn = prefix.open();
    prepare(&mut conn, "t", &schema, false);
    write(&mut conn, "t", 1, WriteOp::Insert, &batch);
    let p = prefix.name.clone();
    let keys = prefix.keys();
    for expected in [
        "a%3Ab:12%3A30%3A00",
        "%73chema:12%3A30%3A00",
        "%64igest:12%3A30%3A00",
        "50%25:12%3A30%3A00",
        ":12%3A30%3A00",
    ] {
        assert!(
            keys.contains(&format!("{p}:t:{expected}")),
            "{expected}: {keys:?}"
        );
    }
    let (_, rows) = read_rows(&mut conn, "t", 2);
    assert_eq!(rows.len(), 5);
    let mut expected = TableDigest::new();
    expected.add_batch("t", &batch);
    assert_eq!(
        scanned_digest(&mut conn, "t", &schema, KeyRange::all()),
        expected
    );
}

#[test]
fn server_tables_are_discovered_by_their_schema_keys() {
    let prefix = TestPrefix::new("discover");
    let mut conn = prefix.open();
    let schema = small_schema();
    prepare(&mut conn, "uno", &schema, false);
    prepare(&mut conn, "dos", &schema, false);
    let mut b = BatchBuilder::new(Arc::clone(&schema));
    for id in 0..3 {
        b.push(0, id).unwrap();
        b.push(1, "x").unwrap();
        b.push_null(2).unwrap();
    }
    write(&mut conn, "uno", 1, WriteOp::Insert, &b.finish().unwrap());
    let tables = conn.discover().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["dos", "uno"]);
    assert_eq!(tables[1].schema, *schema);
    assert_eq!(tables[1].estimated_rows, Some(3));
    assert_eq!(tables[0].estimated_rows, Some(0));
}
