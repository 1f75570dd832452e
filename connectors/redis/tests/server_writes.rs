//! Writes against a real Redis: upserts and deletes, replays, the digest key kept current
//! (property test), snapshot swaps, digests over key ranges, and the errors a user sees.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, Connector, Error, Field, KeyRange, LogicalType, Schema, Sink, Source,
    TableDigest, Value, WriteOp, WriteOutcome,
};
use caudal_redis::{Format, Redis, RedisConfig};
use common::{TestPrefix, context, prepare, read_rows, request, scanned_digest, write};
use proptest::prelude::*;

fn people_schema() -> Arc<Schema> {
    Arc::new(
        Schema::new(
            vec![
                Field::new("id", LogicalType::Int64, false),
                Field::new(
                    "name",
                    LogicalType::Varchar {
                        max_length: Some(40),
                    },
                    true,
                ),
                Field::new("score", LogicalType::Float64, true),
            ],
            &["id"],
        )
        .unwrap(),
    )
}

/// Rows `(id, name, score)`; `None` is NULL.
fn people(rows: &[(i64, Option<&str>, Option<f64>)]) -> Batch {
    let mut b = BatchBuilder::new(people_schema());
    for (id, name, score) in rows {
        b.push(0, *id).unwrap();
        b.push_opt(1, *name).unwrap();
        b.push_opt(2, *score).unwrap();
    }
    b.finish().unwrap()
}

fn keys_only(ids: &[i64]) -> Batch {
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", LogicalType::Int64, false)], &["id"]).unwrap());
    let mut b = BatchBuilder::new(schema);
    b.extend(0, ids.iter().copied()).unwrap();
    b.finish().unwrap()
}

fn digest_of(rows: &[(i64, Option<&str>, Option<f64>)], table: &str) -> TableDigest {
    TableDigest::of_batch(table, &people(rows))
}

#[test]
fn server_upserts_replace_rows_and_deletes_remove_them() {
    for format in [Format::Hash, Format::Json] {
        let mut prefix = TestPrefix::new(&format!("upsert_{format:?}"));
        let mut config = prefix.config();
        config.format = format;
        let mut conn = prefix.open_with(config);
        let schema = people_schema();
        prepare(&mut conn, "people", &schema, false);
        write(
            &mut conn,
            "people",
            1,
            WriteOp::Insert,
            &people(&[
                (1, Some("ana"), Some(1.5)),
                (2, Some("bo"), None),
                (3, None, Some(3.0)),
            ]),
        );
        // Row 1 loses its name (the hash field must go), row 4 is new, row 2 appears twice: the
        // last one wins.
        write(
            &mut conn,
            "people",
            2,
            WriteOp::Upsert,
            &people(&[
                (1, None, Some(2.5)),
                (2, Some("first"), None),
                (4, Some("dee"), None),
                (2, Some("second"), Some(-0.0)),
            ]),
        );
        let deleted = write(
            &mut conn,
            "people",
            3,
            WriteOp::Delete,
            &keys_only(&[3, 99]),
        );
        assert_eq!(deleted, 1, "only row 3 existed");

        let expected = [
            (1, None, Some(2.5)),
            (2, Some("second"), Some(-0.0)),
            (4, Some("dee"), None),
        ];
        let (_, rows) = read_rows(&mut conn, "people", 100);
        assert_eq!(rows, common::batch_rows(&people(&expected)));
        let want = digest_of(&expected, "people");
        assert_eq!(
            scanned_digest(&mut conn, "people", &schema, KeyRange::all()),
            want
        );
        assert_eq!(conn.stored_digest("people").unwrap(), Some(want));
        if format == Format::Hash {
            let key = format!("{}:people:1", prefix.name);
            let names: Vec<String> = prefix.cmd(&[b"HKEYS", key.as_bytes()]);
            assert!(!names.contains(&"name".to_owned()), "{names:?}");
        }
        let gone = format!("{}:people:3", prefix.name);
        let exists: i64 = prefix.cmd(&[b"EXISTS", gone.as_bytes()]);
        assert_eq!(exists, 0);
    }
}

#[test]
fn server_replayed_seqs_change_nothing() {
    let mut prefix = TestPrefix::new("replay");
    let mut conn = prefix.open();
    let schema = people_schema();
    prepare(&mut conn, "people", &schema, false);
    write(
        &mut conn,
        "people",
        5,
        WriteOp::Insert,
        &people(&[(1, Some("a"), None)]),
    );
    let before = prefix.keys();
    for seq in [5, 3] {
        let outcome = conn
            .write(
                &request("people", seq, WriteOp::Upsert),
                &people(&[(1, Some("changed"), None), (2, Some("new"), None)]),
            )
            .unwrap();
        assert_eq!(outcome, WriteOutcome::AlreadyApplied { last_seq: 5 });
    }
    let outcome = conn
        .write(&request("people", 4, WriteOp::Delete), &keys_only(&[1]))
        .unwrap();
    assert_eq!(outcome, WriteOutcome::AlreadyApplied { last_seq: 5 });
    assert_eq!(prefix.keys(), before);
    let (_, rows) = read_rows(&mut conn, "people", 10);
    assert_eq!(rows, common::batch_rows(&people(&[(1, Some("a"), None)])));
    assert_eq!(conn.last_applied_seq("p", "s").unwrap(), Some(5));
    // Another stream of the same pipeline has its own offset.
    let mut other = request("people", 1, WriteOp::Upsert);
    other.stream = "s2".into();
    let outcome = conn
        .write(&other, &people(&[(2, Some("b"), None)]))
        .unwrap();
    assert_eq!(outcome, WriteOutcome::Applied { rows: 1 });
    assert_eq!(conn.last_applied_seq("p", "s2").unwrap(), Some(1));
    assert_eq!(conn.last_applied_seq("p", "s").unwrap(), Some(5));
}

#[test]
fn server_snapshot_staging_is_swapped_in_whole() {
    let mut prefix = TestPrefix::new("swap");
    let mut conn = prefix.open();
    let schema = people_schema();
    prepare(&mut conn, "people", &schema, false);
    write(
        &mut conn,
        "people",
        1,
        WriteOp::Insert,
        &people(&[
            (1, Some("old"), None),
            (2, Some("old"), None),
            (3, Some("old"), None),
        ]),
    );
    // A leftover staging table from an earlier attempt is dropped by `replace`.
    prepare(&mut conn, "people__caudal_staging", &schema, true);
    write(
        &mut conn,
        "people__caudal_staging",
        2,
        WriteOp::Insert,
        &people(&[(9, None, None)]),
    );
    prepare(&mut conn, "people__caudal_staging", &schema, true);
    let fresh = [(2, Some("new"), Some(1.0)), (4, Some("new"), None)];
    write(
        &mut conn,
        "people__caudal_staging",
        3,
        WriteOp::Insert,
        &people(&fresh),
    );
    // Until the swap readers see the old rows.
    let (_, rows) = read_rows(&mut conn, "people", 10);
    assert_eq!(rows.len(), 3);

    conn.replace_table("people__caudal_staging", "people")
        .unwrap();
    let (_, rows) = read_rows(&mut conn, "people", 10);
    assert_eq!(rows, common::batch_rows(&people(&fresh)));
    let want = digest_of(&fresh, "people");
    assert_eq!(
        scanned_digest(&mut conn, "people", &schema, KeyRange::all()),
        want
    );
    assert_eq!(conn.stored_digest("people").unwrap(), Some(want));
    let p = prefix.name.clone();
    let mut expected_keys: Vec<String> = ["people:2", "people:4", "people:schema", "people:digest"]
        .iter()
        .chain(&["people:rowdigests", "_caudal_offsets"])
        .map(|k| format!("{p}:{k}"))
        .collect();
    expected_keys.sort();
    assert_eq!(prefix.keys(), expected_keys);
    // Writes after the swap keep the digest key current.
    write(&mut conn, "people", 4, WriteOp::Delete, &keys_only(&[2]));
    let want = digest_of(&[(4, Some("new"), None)], "people");
    assert_eq!(conn.stored_digest("people").unwrap(), Some(want.clone()));
    assert_eq!(
        scanned_digest(&mut conn, "people", &schema, KeyRange::all()),
        want
    );

    let err = conn.replace_table("nothing", "people").unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("`nothing`"), "{err}");
}

#[test]
fn server_digests_cover_key_ranges() {
    let prefix = TestPrefix::new("ranges");
    let mut conn = prefix.open();
    let schema = people_schema();
    prepare(&mut conn, "people", &schema, false);
    let rows: Vec<(i64, Option<&str>, Option<f64>)> =
        (0..50).map(|i| (i, Some("x"), Some(i as f64))).collect();
    write(&mut conn, "people", 1, WriteOp::Insert, &people(&rows));
    let range = KeyRange {
        lower: Bound::Included(vec![Value::Int(10)]),
        upper: Bound::Excluded(vec![Value::Int(20)]),
    };
    assert_eq!(
        scanned_digest(&mut conn, "people", &schema, range),
        digest_of(&rows[10..20], "people")
    );
    let range = KeyRange {
        lower: Bound::Excluded(vec![Value::Int(45)]),
        upper: Bound::Unbounded,
    };
    assert_eq!(
        scanned_digest(&mut conn, "people", &schema, range),
        digest_of(&rows[46..], "people")
    );
    // One whole key: read directly; a key that is not there digests as nothing.
    let point = |id: i64| KeyRange {
        lower: Bound::Included(vec![Value::Int(id)]),
        upper: Bound::Included(vec![Value::Int(id)]),
    };
    assert_eq!(
        scanned_digest(&mut conn, "people", &schema, point(7)),
        digest_of(&rows[7..8], "people")
    );
    assert_eq!(
        scanned_digest(&mut conn, "people", &schema, point(70)),
        TableDigest::new()
    );
}

#[test]
fn server_reads_by_cursor_are_sorted_and_bounded() {
    let prefix = TestPrefix::new("cursor");
    let mut conn = prefix.open();
    let schema = people_schema();
    prepare(&mut conn, "people", &schema, false);
    // Scores repeat (i / 3) so that chunks must end between different cursor values.
    let rows: Vec<(i64, Option<&str>, Option<f64>)> = (0..40)
        .map(|i| ((i * 17) % 40, Some("x"), Some(((i * 17) % 40 / 3) as f64)))
        .collect();
    write(&mut conn, "people", 1, WriteOp::Insert, &people(&rows));
    let request = caudal_connector::ReadRequest {
        target: caudal_connector::ReadTarget::Table("people".into()),
        cursor_column: Some("score".into()),
        from: Bound::Excluded(Value::Float(2.0)),
        to: Bound::Included(Value::Float(9.0)),
        limits: caudal_connector::ChunkLimits {
            max_rows: 4,
            max_bytes: 1 << 20,
        },
    };
    let mut reader = conn.read(&request).unwrap();
    let mut scores = Vec::new();
    let mut previous_cursor = None;
    while let Some(chunk) = reader.next_chunk().unwrap() {
        let batch = chunk.batch;
        let last = batch.value(batch.num_rows() - 1, 2);
        assert_eq!(chunk.cursor, last);
        // A chunk never splits one cursor value.
        if let (Some(Value::Float(p)), Some(Value::Float(first))) =
            (previous_cursor.as_ref(), batch.value(0, 2))
        {
            assert!(first > *p, "{first} after {p}");
        }
        previous_cursor = chunk.cursor;
        scores.extend((0..batch.num_rows()).map(|r| match batch.value(r, 2) {
            Some(Value::Float(f)) => f,
            other => panic!("{other:?}"),
        }));
    }
    let mut want: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.2)
        .filter(|s| *s > 2.0 && *s <= 9.0)
        .collect();
    want.sort_by(f64::total_cmp);
    assert_eq!(scores, want);
}

#[test]
fn server_bad_writes_are_refused_with_nothing_written() {
    let mut prefix = TestPrefix::new("refused");
    let mut conn = prefix.open();
    let schema = people_schema();
    // Not prepared.
    let err = conn
        .write(
            &request("people", 1, WriteOp::Insert),
            &people(&[(1, None, None)]),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("prepare the table first"), "{err}");
    prepare(&mut conn, "people", &schema, false);
    // Another key.
    let other = Arc::new(
        Schema::new(
            vec![Field::new("name", LogicalType::Int64, false)],
            &["name"],
        )
        .unwrap(),
    );
    let mut b = BatchBuilder::new(other);
    b.push(0, 1i64).unwrap();
    let err = conn
        .write(&request("people", 1, WriteOp::Upsert), &b.finish().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("keyed by (id)"), "{err}");
    // A table name with the separator.
    let err = conn
        .write(
            &request("a:b", 1, WriteOp::Upsert),
            &people(&[(1, None, None)]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("\"a:b\""), "{err}");
    // No primary key.
    let keyless = Schema::new(vec![Field::new("id", LogicalType::Int64, false)], &[]).unwrap();
    let err = conn
        .prepare_table(&caudal_connector::PrepareTable {
            table: "keyless".into(),
            schema: keyless,
            replace: false,
        })
        .unwrap_err();
    assert!(err.to_string().contains("primary key"), "{err}");
    // The table stays as it was: no rows, no offset.
    assert_eq!(conn.last_applied_seq("p", "s").unwrap(), None);
    let p = prefix.name.clone();
    assert_eq!(
        prefix.keys(),
        vec![format!("{p}:people:digest"), format!("{p}:people:schema")]
    );
    // An existing table whose format differs from the connection's is named.
    let mut config = prefix.config();
    config.format = Format::Json;
    let mut json = prefix.open_with(config);
    let err = json
        .prepare_table(&caudal_connector::PrepareTable {
            table: "people".into(),
            schema: (*schema).clone(),
            replace: false,
        })
        .unwrap_err();
    assert!(err.to_string().contains("format Hash"), "{err}");
    // Reading a table that does not exist.
    let err = conn
        .read(&caudal_connector::ReadRequest::table("missing"))
        .err()
        .expect("missing table");
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[test]
fn server_unreachable_servers_and_bad_configs_are_named_without_the_password() {
    let mut config = RedisConfig::new("redis://:hunter2@127.0.0.1:1/0");
    config.prefix = "x".into();
    let err = Redis::open(config, &context()).unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("`cache`") && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    let err = Redis::open(RedisConfig::new("postgres://127.0.0.1/0"), &context()).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let mut config = RedisConfig::new(common::server_url());
    config.key = "{table}:{pk}".into();
    let err = Redis::open(config, &context()).unwrap_err();
    assert!(err.to_string().contains("`{prefix}`"), "{err}");
    // A wrong password is refused by the server, not retried forever, and not printed.
    let url = common::server_url().replace("redis://", "redis://:wrong-secret@");
    match Redis::open(RedisConfig::new(url), &context()) {
        Ok(_) => {} // a server without a password accepts any (Redis 6+ default user: no)
        Err(e) => assert!(!e.to_string().contains("wrong-secret"), "{e}"),
    }
}

/// One operation of the property test: upsert rows (id, name) or delete ids.
#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<(i64, Option<String>)>),
    Delete(Vec<i64>),
}

fn op() -> impl Strategy<Value = Op> {
    let row = (0i64..12, proptest::option::of("[a-z:%]{0,4}"));
    prop_oneof![
        3 => proptest::collection::vec(row, 0..8).prop_map(Op::Upsert),
        1 => proptest::collection::vec(0i64..12, 0..5).prop_map(Op::Delete),
    ]
}

fn model_digest(model: &BTreeMap<i64, Option<String>>) -> TableDigest {
    let rows: Vec<(i64, Option<&str>, Option<f64>)> = model
        .iter()
        .map(|(id, name)| (*id, name.as_deref(), None))
        .collect();
    digest_of(&rows, "t")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn server_digest_key_equals_the_scanned_digest_after_any_mix(
        ops in proptest::collection::vec(op(), 1..10),
        json in any::<bool>(),
    ) {
        let prefix = TestPrefix::new("prop");
        let mut config = prefix.config();
        config.format = if json { Format::Json } else { Format::Hash };
        let mut conn = prefix.open_with(config);
        let schema = people_schema();
        prepare(&mut conn, "t", &schema, false);
        let mut model = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let seq = i as u64 + 1;
            match op {
                Op::Upsert(rows) => {
                    let rows: Vec<(i64, Option<&str>, Option<f64>)> =
                        rows.iter().map(|(id, n)| (*id, n.as_deref(), None)).collect();
                    let op = if i % 2 == 0 { WriteOp::Upsert } else { WriteOp::Insert };
                    write(&mut conn, "t", seq, op, &people(&rows));
                    for (id, name, _) in rows {
                        model.insert(id, name.map(str::to_owned));
                    }
                }
                Op::Delete(ids) => {
                    write(&mut conn, "t", seq, WriteOp::Delete, &keys_only(ids));
                    for id in ids {
                        model.remove(id);
                    }
                }
            }
        }
        let want = model_digest(&model);
        let stored = conn.stored_digest("t").unwrap();
        let scanned = scanned_digest(&mut conn, "t", &schema, KeyRange::all());
        prop_assert_eq!(stored, Some(want.clone()));
        prop_assert_eq!(scanned, want);
        prop_assert_eq!(read_rows(&mut conn, "t", 5).1.len(), model.len());
    }
}

#[test]
fn server_large_batches_with_repeated_keys_keep_the_digest_key_exact() {
    // Batches above the SDK's parallel threshold: digests are computed on several threads.
    let prefix = TestPrefix::new("large");
    let mut conn = prefix.open();
    let schema = people_schema();
    prepare(&mut conn, "t", &schema, false);
    let mut model = BTreeMap::new();
    for (seq, (start, len)) in [(0i64, 9000i64), (4000, 9000), (0, 5000)]
        .iter()
        .enumerate()
    {
        let names: Vec<String> = (0..*len).map(|i| format!("n{seq}-{i}")).collect();
        // Ids repeat inside each batch (i % 6000): the last row of an id wins.
        let rows: Vec<(i64, Option<&str>, Option<f64>)> = (0..*len)
            .map(|i| {
                (
                    (start + i) % 6000 + start,
                    Some(names[i as usize].as_str()),
                    None,
                )
            })
            .collect();
        write(
            &mut conn,
            "t",
            seq as u64 + 1,
            WriteOp::Upsert,
            &people(&rows),
        );
        for (id, name, _) in &rows {
            model.insert(*id, name.map(str::to_owned));
        }
    }
    let deleted: Vec<i64> = (0..12_000).step_by(3).collect();
    write(&mut conn, "t", 4, WriteOp::Delete, &keys_only(&deleted));
    for id in &deleted {
        model.remove(id);
    }
    let want = {
        let rows: Vec<(i64, Option<&str>, Option<f64>)> = model
            .iter()
            .map(|(id, n)| (*id, n.as_deref(), None))
            .collect();
        digest_of(&rows, "t")
    };
    assert_eq!(want.rows(), model.len() as i64);
    assert_eq!(conn.stored_digest("t").unwrap(), Some(want.clone()));
    assert_eq!(
        scanned_digest(&mut conn, "t", &schema, KeyRange::all()),
        want
    );
}

#[test]
fn server_concurrent_writers_keep_the_digest_key_exact() {
    // Two connections upsert overlapping keys of one table at the same time (two streams):
    // WATCH makes the loser of each race start over, so no update of the digest key is lost.
    let prefix = TestPrefix::new("concurrent");
    let schema = people_schema();
    prepare(&mut prefix.open(), "t", &schema, false);
    std::thread::scope(|scope| {
        for writer in 0..2i64 {
            let mut conn = prefix.open();
            scope.spawn(move || {
                for seq in 1..=40u64 {
                    let name = format!("w{writer}-{seq}");
                    let rows: Vec<(i64, Option<&str>, Option<f64>)> = (0..30)
                        .map(|i| ((i * 7 + seq as i64) % 50, Some(name.as_str()), None))
                        .collect();
                    let mut req = request("t", seq, WriteOp::Upsert);
                    req.stream = format!("s{writer}");
                    let outcome = conn.write(&req, &people(&rows)).unwrap();
                    assert_eq!(outcome, WriteOutcome::Applied { rows: 30 });
                }
            });
        }
    });
    let mut conn = prefix.open();
    let scanned = scanned_digest(&mut conn, "t", &schema, KeyRange::all());
    assert_eq!(scanned.rows(), 50);
    assert_eq!(conn.stored_digest("t").unwrap(), Some(scanned));
}

#[test]
fn server_keys_of_another_type_under_a_table_are_not_rows() {
    let mut prefix = TestPrefix::new("othertype");
    let mut conn = prefix.open();
    let schema = people_schema();
    prepare(&mut conn, "t", &schema, false);
    let rows = [(1, Some("a"), None), (2, None, Some(1.0))];
    write(&mut conn, "t", 1, WriteOp::Insert, &people(&rows));
    let stray = format!("{}:t:3", prefix.name);
    let _: () = prefix.cmd(&[b"SET", stray.as_bytes(), b"not a row"]);
    let (_, read) = read_rows(&mut conn, "t", 10);
    assert_eq!(read, common::batch_rows(&people(&rows)));
    assert_eq!(
        scanned_digest(&mut conn, "t", &schema, KeyRange::all()),
        digest_of(&rows, "t")
    );
    // A hash that is not a row of the table (a field of the wrong type) is named.
    let bad = format!("{}:t:4", prefix.name);
    let _: i64 = prefix.cmd(&[b"HSET", bad.as_bytes(), b"id", b"four"]);
    let err = conn
        .table_digest(&caudal_connector::DigestRequest {
            table: "t".into(),
            schema: (*schema).clone(),
            range: KeyRange::all(),
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&bad) && text.contains("`id`"), "{text}");
}
