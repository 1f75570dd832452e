//! Writes into a table the connection created or emptied itself (the path of a cache
//! rebuild): the digest key stays exact across batches that revisit keys, NULL fields and
//! deletes; another writer sends the table back to the general path; a rewrite keeps the old
//! rows readable until its end removes those not written again; a connection that goes
//! away between batches leaves an offset that matches the rows.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, Field, KeyRange, LogicalType, PrepareTable, Schema, Sink, TableDigest,
    WriteOp, WriteOutcome,
};
use caudal_redis::Format;
use common::{TestPrefix, prepare, read_rows, request, scanned_digest, write};

fn schema() -> Arc<Schema> {
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

type Row = (i64, Option<String>, Option<f64>);

fn batch(rows: &[Row]) -> Batch {
    let mut b = BatchBuilder::new(schema());
    for (id, name, score) in rows {
        b.push(0, *id).unwrap();
        b.push_opt(1, name.as_deref()).unwrap();
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

/// The digest of the model's rows as rows of `table`.
fn model_digest(model: &BTreeMap<i64, (Option<String>, Option<f64>)>, table: &str) -> TableDigest {
    let rows: Vec<Row> = model
        .iter()
        .map(|(id, (n, s))| (*id, n.clone(), *s))
        .collect();
    TableDigest::of_batch(table, &batch(&rows))
}

/// Upserts `rows` into the model (the last row of a key wins).
fn apply(model: &mut BTreeMap<i64, (Option<String>, Option<f64>)>, rows: &[Row]) {
    for (id, n, s) in rows {
        model.insert(*id, (n.clone(), *s));
    }
}

/// The digest key, the scanned digest and the model agree, and so do the rows read back.
fn check(
    conn: &mut caudal_redis::Redis,
    table: &str,
    model: &BTreeMap<i64, (Option<String>, Option<f64>)>,
) {
    let want = model_digest(model, table);
    assert_eq!(want.rows(), model.len() as i64);
    assert_eq!(conn.stored_digest(table).unwrap(), Some(want.clone()));
    assert_eq!(
        scanned_digest(conn, table, &schema(), KeyRange::all()),
        want
    );
    let rows: Vec<Row> = model
        .iter()
        .map(|(id, (n, s))| (*id, n.clone(), *s))
        .collect();
    let (_, read) = read_rows(conn, table, 1000);
    let mut want_rows = common::batch_rows(&batch(&rows));
    want_rows.sort_by(|a, b| format!("{:?}", a[0]).cmp(&format!("{:?}", b[0])));
    assert_eq!(read, want_rows);
}

#[test]
fn server_fresh_tables_keep_the_digest_key_equal_to_the_scanned_digest() {
    for format in [Format::Hash, Format::Json] {
        for replace in [false, true] {
            let mut prefix = TestPrefix::new(&format!("fresh_{format:?}_{replace}"));
            let mut config = prefix.config();
            config.format = format;
            let mut conn = prefix.open_with(config);
            if replace {
                // Rows of an earlier load, gone once the table is prepared again.
                prepare(&mut conn, "t", &schema(), false);
                let old: Vec<Row> = (0..50)
                    .map(|i| (i, Some(format!("old{i}")), None))
                    .collect();
                write(&mut conn, "t", 1, WriteOp::Upsert, &batch(&old));
            }
            prepare(&mut conn, "t", &schema(), replace);
            let mut model = BTreeMap::new();
            check(&mut conn, "t", &model);
            let seq0 = if replace { 1 } else { 0 };
            // 1: new keys, one of them twice in the batch.
            let rows: Vec<Row> = (0..40)
                .map(|i| (i % 30, Some(format!("a{i}")), Some(i as f64)))
                .collect();
            write(&mut conn, "t", seq0 + 1, WriteOp::Insert, &batch(&rows));
            apply(&mut model, &rows);
            check(&mut conn, "t", &model);
            // 2: keys written before, now with NULL fields (the old fields must go), and new
            // keys.
            let rows: Vec<Row> = (20..45).map(|i| (i, None, None)).collect();
            write(&mut conn, "t", seq0 + 2, WriteOp::Upsert, &batch(&rows));
            apply(&mut model, &rows);
            check(&mut conn, "t", &model);
            // 3: deletes of written keys and of keys never written.
            let ids: Vec<i64> = (0..60).step_by(4).collect();
            let removed = write(&mut conn, "t", seq0 + 3, WriteOp::Delete, &keys_only(&ids));
            let before = model.len();
            for id in &ids {
                model.remove(id);
            }
            assert_eq!(removed, (before - model.len()) as u64);
            check(&mut conn, "t", &model);
            // 4: deleted keys come back.
            let rows: Vec<Row> = (0..10)
                .map(|i| (i * 4, Some(format!("b{i}")), None))
                .collect();
            write(&mut conn, "t", seq0 + 4, WriteOp::Upsert, &batch(&rows));
            apply(&mut model, &rows);
            check(&mut conn, "t", &model);
            if format == Format::Hash {
                // A row rewritten with NULLs holds only its non-NULL fields.
                let key = format!("{}:t:25", prefix.name);
                let fields: Vec<String> = prefix.cmd(&[b"HKEYS", key.as_bytes()]);
                assert_eq!(fields, vec!["id".to_owned()], "{key}");
            }
        }
    }
}

#[test]
fn server_another_writer_sends_a_fresh_table_back_to_the_general_path() {
    let mut prefix = TestPrefix::new("fresh_other");
    let mut mine = prefix.open();
    let mut other = prefix.open();
    prepare(&mut mine, "t", &schema(), true);
    let mut model = BTreeMap::new();
    let rows: Vec<Row> = (0..20).map(|i| (i, Some(format!("m{i}")), None)).collect();
    write(&mut mine, "t", 1, WriteOp::Upsert, &batch(&rows));
    apply(&mut model, &rows);
    // The other connection (another stream) writes keys `mine` never wrote, with every field
    // set, and deletes one `mine` wrote.
    let rows: Vec<Row> = (15..30)
        .map(|i| (i, Some(format!("o{i}")), Some(1.5)))
        .collect();
    let mut req = request("t", 1, WriteOp::Upsert);
    req.stream = "s2".into();
    assert_eq!(
        other.write(&req, &batch(&rows)).unwrap(),
        WriteOutcome::Applied { rows: 15 }
    );
    apply(&mut model, &rows);
    let mut req = request("t", 2, WriteOp::Delete);
    req.stream = "s2".into();
    other.write(&req, &keys_only(&[3])).unwrap();
    model.remove(&3);
    // `mine` now rewrites keys of both writers with NULLs: the rows the other wrote must
    // leave the digest and lose their fields.
    let rows: Vec<Row> = (0..30).step_by(2).map(|i| (i, None, None)).collect();
    write(&mut mine, "t", 2, WriteOp::Upsert, &batch(&rows));
    apply(&mut model, &rows);
    check(&mut mine, "t", &model);
    let key = format!("{}:t:26", prefix.name);
    let fields: Vec<String> = prefix.cmd(&[b"HKEYS", key.as_bytes()]);
    assert_eq!(fields, vec!["id".to_owned()]);
    // And writes go on exact.
    let rows: Vec<Row> = (25..35).map(|i| (i, Some("z".into()), None)).collect();
    write(&mut mine, "t", 3, WriteOp::Upsert, &batch(&rows));
    apply(&mut model, &rows);
    check(&mut other, "t", &model);
}

#[test]
fn server_a_connection_lost_between_batches_leaves_a_consistent_offset() {
    let prefix = TestPrefix::new("fresh_crash");
    let mut model = BTreeMap::new();
    let batches: Vec<Vec<Row>> = (0..4)
        .map(|b| {
            (0..30)
                .map(|i| ((b * 10 + i) % 50, Some(format!("{b}-{i}")), None))
                .collect()
        })
        .collect();
    {
        // A rebuild that stops after its second batch (the process ends, the connection
        // with it).
        let mut conn = prefix.open();
        prepare(&mut conn, "t", &schema(), true);
        for (seq, rows) in batches.iter().take(2).enumerate() {
            write(
                &mut conn,
                "t",
                seq as u64 + 1,
                WriteOp::Upsert,
                &batch(rows),
            );
            apply(&mut model, rows);
        }
    }
    // The next run starts from the offset: the batches it has are not written again, the
    // rest are, over keys the lost connection wrote.
    let mut conn = prefix.open();
    assert_eq!(conn.last_applied_seq("p", "s").unwrap(), Some(2));
    check(&mut conn, "t", &model);
    for (seq, rows) in batches.iter().enumerate() {
        let seq = seq as u64 + 1;
        let outcome = conn
            .write(&request("t", seq, WriteOp::Upsert), &batch(rows))
            .unwrap();
        if seq <= 2 {
            assert_eq!(outcome, WriteOutcome::AlreadyApplied { last_seq: 2 });
        } else {
            assert_eq!(outcome, WriteOutcome::Applied { rows: 30 });
            apply(&mut model, rows);
        }
    }
    assert_eq!(conn.last_applied_seq("p", "s").unwrap(), Some(4));
    check(&mut conn, "t", &model);
}

#[test]
fn server_replays_on_a_fresh_table_change_nothing() {
    // A fresh table written by this connection: a replayed seq is refused before any
    // command, and the table stays fresh and exact.
    let prefix = TestPrefix::new("fresh_replay");
    let mut conn = prefix.open();
    prepare(&mut conn, "t", &schema(), true);
    let mut model = BTreeMap::new();
    let rows: Vec<Row> = (0..10).map(|i| (i, Some(format!("a{i}")), None)).collect();
    write(&mut conn, "t", 7, WriteOp::Upsert, &batch(&rows));
    apply(&mut model, &rows);
    let changed: Vec<Row> = (0..10).map(|i| (i, None, Some(2.0))).collect();
    assert_eq!(
        conn.write(&request("t", 7, WriteOp::Upsert), &batch(&changed))
            .unwrap(),
        WriteOutcome::AlreadyApplied { last_seq: 7 }
    );
    check(&mut conn, "t", &model);
    write(&mut conn, "t", 8, WriteOp::Upsert, &batch(&changed));
    apply(&mut model, &changed);
    check(&mut conn, "t", &model);
}

#[test]
fn server_hash_rows_of_any_size_are_whole_hashes() {
    // Small rows go as RESTORE payloads, rows with a value over 64 bytes as HSET; both in one
    // batch, over keys holding rows of the other kind, and over a key of another type.
    let mut prefix = TestPrefix::new("fresh_sizes");
    let mut conn = prefix.open();
    prepare(&mut conn, "t", &schema(), false);
    let long = "x".repeat(65);
    let longer = "ñ".repeat(700);
    let mut model = BTreeMap::new();
    let first: Vec<Row> = vec![
        (1, Some("short".into()), Some(1.25)),
        (2, Some(long.clone()), None),
        (3, Some(String::new()), Some(0.5)),
        (4, Some(longer.clone()), Some(f64::MAX)),
        (5, Some("a:b%c\u{1}".into()), None),
    ];
    write(&mut conn, "t", 1, WriteOp::Upsert, &batch(&first));
    apply(&mut model, &first);
    check(&mut conn, "t", &model);
    let stray = format!("{}:t:6", prefix.name);
    let _: () = prefix.cmd(&[b"SET", stray.as_bytes(), b"not a row"]);
    let second: Vec<Row> = vec![
        (1, Some(long.clone()), None),
        (2, None, Some(2.0)),
        (4, None, None),
        (6, Some("six".into()), None),
    ];
    write(&mut conn, "t", 2, WriteOp::Upsert, &batch(&second));
    apply(&mut model, &second);
    check(&mut conn, "t", &model);
    for (id, want) in [
        (1, vec!["id", "name"]),
        (2, vec!["id", "score"]),
        (4, vec!["id"]),
        (6, vec!["id", "name"]),
    ] {
        let key = format!("{}:t:{id}", prefix.name);
        let mut fields: Vec<String> = prefix.cmd(&[b"HKEYS", key.as_bytes()]);
        fields.sort();
        assert_eq!(fields, want, "{key}");
    }
    let key = format!("{}:t:1", prefix.name);
    let name: String = prefix.cmd(&[b"HGET", key.as_bytes(), b"name"]);
    assert_eq!(name, long);
}

#[test]
fn server_bulk_inserts_into_a_fresh_table_keep_rows_and_digest_key_exact() {
    // Inserts of new keys into a table this connection emptied go in pipelines outside the
    // transaction (several per batch here), rows too long for a RESTORE payload among them;
    // a later insert over keys written before takes the general path.
    for format in [Format::Hash, Format::Json] {
        let mut prefix = TestPrefix::new(&format!("fresh_bulk_{format:?}"));
        let mut config = prefix.config();
        config.format = format;
        let mut conn = prefix.open_with(config);
        // Stale rows under the table's name with no schema key: emptying removes them too.
        let stale = format!("{}:t:99999", prefix.name);
        let _: () = prefix.cmd(&[b"SET", stale.as_bytes(), b"x"]);
        prepare(&mut conn, "t", &schema(), true);
        let stale_left: i64 = prefix.cmd(&[b"EXISTS", stale.as_bytes()]);
        assert_eq!(stale_left, 0, "{stale}");
        let mut model = BTreeMap::new();
        for (seq, ids) in [(1u64, 0..5000i64), (2, 5000..9000)] {
            let rows: Vec<Row> = ids
                .map(|i| {
                    let name = if i % 1000 == 7 {
                        "long ".repeat(20)
                    } else {
                        format!("n{i}")
                    };
                    (i, (i % 13 != 0).then_some(name), Some(i as f64 / 4.0))
                })
                .collect();
            assert_eq!(
                write(&mut conn, "t", seq, WriteOp::Insert, &batch(&rows)),
                rows.len() as u64
            );
            apply(&mut model, &rows);
        }
        check(&mut conn, "t", &model);
        // Keys written before: the general path replaces them whole.
        let rows: Vec<Row> = (8990..9010).map(|i| (i, None, Some(1.0))).collect();
        write(&mut conn, "t", 3, WriteOp::Insert, &batch(&rows));
        apply(&mut model, &rows);
        check(&mut conn, "t", &model);
        // A replayed seq changes nothing.
        assert_eq!(
            conn.write(&request("t", 2, WriteOp::Insert), &batch(&rows))
                .unwrap(),
            WriteOutcome::AlreadyApplied { last_seq: 3 }
        );
        check(&mut conn, "t", &model);
    }
}

#[test]
fn server_a_rewrite_keeps_old_rows_readable_until_its_end_removes_those_not_written() {
    // The end on the connection that began the rewrite (it removes the listed keys it did not
    // write), after another writer came by (only keys without a row digest go), or on another
    // connection (every row key is scanned and checked).
    for (format, end) in [
        (Format::Hash, "alone"),
        (Format::Json, "alone"),
        (Format::Json, "another writer"),
        (Format::Hash, "reopened"),
    ] {
        let mut prefix = TestPrefix::new(&format!("rewrite_{format:?}_{}", end.len()));
        let mut config = prefix.config();
        config.format = format;
        let mut conn = prefix.open_with(config.clone());
        prepare(&mut conn, "t", &schema(), false);
        let old: Vec<Row> = (0..100)
            .map(|i| (i, Some(format!("old{i}")), Some(i as f64)))
            .collect();
        write(&mut conn, "t", 1, WriteOp::Upsert, &batch(&old));
        // Keys the journal never held: one of another type where a final row goes, one where
        // none does.
        let name = prefix.name.clone();
        let row_key = |id: i64| format!("{name}:t:{id}");
        let (stray, stale) = (row_key(150), row_key(999));
        let _: () = prefix.cmd(&[b"SET", stray.as_bytes(), b"not a row"]);
        let _: () = prefix.cmd(&[b"SET", stale.as_bytes(), b"not a row"]);
        let value = |prefix: &mut TestPrefix, id: i64| -> Option<String> {
            let key = row_key(id);
            match format {
                Format::Hash => prefix.cmd(&[b"HGET", key.as_bytes(), b"name"]),
                Format::Json => prefix.cmd(&[b"GET", key.as_bytes()]),
            }
        };
        conn.begin_rewrite(&PrepareTable {
            table: "t".into(),
            schema: (*schema()).clone(),
            replace: true,
        })
        .unwrap();
        // Every old row is still readable; the digest key counts none of them.
        for id in [0, 50, 99] {
            let found = value(&mut prefix, id).unwrap_or_default();
            assert!(found.contains(&format!("old{id}")), "{id}: {found}");
        }
        assert_eq!(conn.stored_digest("t").unwrap(), Some(TableDigest::new()));
        // The final rows, as a rebuild writes them: inserts, two batches. Their scores are
        // NULL (the old field must go), and the row over the stray key is too long for a
        // RESTORE payload (an HSET, after a DEL of the string there).
        let mut model = BTreeMap::new();
        let first: Vec<Row> = (0..30)
            .map(|i| (i, Some(format!("new{i}")), None))
            .collect();
        write(&mut conn, "t", 2, WriteOp::Insert, &batch(&first));
        apply(&mut model, &first);
        // Halfway: the rows not written yet are the old ones.
        assert!(value(&mut prefix, 5).unwrap().contains("new5"));
        assert!(value(&mut prefix, 50).unwrap().contains("old50"));
        let mut second: Vec<Row> = (30..60)
            .map(|i| (i, Some(format!("new{i}")), None))
            .collect();
        second.push((150, Some("y".repeat(65)), None));
        write(&mut conn, "t", 3, WriteOp::Insert, &batch(&second));
        apply(&mut model, &second);
        assert!(value(&mut prefix, 60).unwrap().contains("old60"));
        if end == "another writer" {
            // It writes a key of the old rows that no final row overwrites: that row stays.
            let mut other = prefix.open_with(config.clone());
            let row: Vec<Row> = vec![(80, Some("other80".into()), None)];
            write(&mut other, "t", 4, WriteOp::Upsert, &batch(&row));
            apply(&mut model, &row);
        }
        if end == "reopened" {
            conn = prefix.open_with(config);
        }
        conn.end_rewrite("t").unwrap();
        // Exactly the final rows are left, with the digest key of them alone.
        check(&mut conn, "t", &model);
        let keys = prefix.keys();
        assert!(!keys.contains(&stale), "{keys:?}");
        assert!(!keys.contains(&row_key(60)), "{keys:?}");
        if format == Format::Hash {
            let mut fields: Vec<String> = prefix.cmd(&[b"HKEYS", row_key(7).as_bytes()]);
            fields.sort();
            assert_eq!(fields, vec!["id", "name"]);
        }
        // The table is fresh after its rewrite: later writes keep the digest key exact.
        let rows: Vec<Row> = (55..70).map(|i| (i, None, Some(1.5))).collect();
        let seq = if end == "another writer" { 5 } else { 4 };
        write(&mut conn, "t", seq, WriteOp::Upsert, &batch(&rows));
        apply(&mut model, &rows);
        check(&mut conn, "t", &model);
    }
}
