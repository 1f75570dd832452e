//! Writes against the real server: statements sized under `max_allowed_packet`, upserts and
//! deletes by key, the offset row in the batch's transaction, replays, the snapshot swap,
//! digests over key ranges, a killed connection, and secrets kept out of error text.

mod common;

use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, Connector, DigestRequest, ErrorCode, Field, KeyRange, LogicalType,
    PrepareTable, ReadRequest, Schema, Sink, Source, TableDigest, Value, WriteOp, WriteOutcome,
    WriteRequest,
};
use caudal_mysql::{MySqlConfig, MySqlConnector};
use common::{TestDb, context, numbers, server_url};

fn people_schema() -> Arc<Schema> {
    Arc::new(
        Schema::new(
            vec![
                Field::new("id", LogicalType::Int64, false),
                Field::new(
                    "name",
                    LogicalType::Varchar {
                        max_length: Some(60),
                    },
                    true,
                ),
                Field::new(
                    "qty",
                    LogicalType::Decimal {
                        precision: 10,
                        scale: 3,
                    },
                    true,
                ),
            ],
            &["id"],
        )
        .expect("schema"),
    )
}

/// Rows `(id, name, qty)` for the ids, the name built by `name`.
fn people(ids: impl IntoIterator<Item = i64>, name: impl Fn(i64) -> String) -> Batch {
    let mut b = BatchBuilder::new(people_schema());
    for id in ids {
        b.push(0, id).expect("id");
        b.push(1, name(id).as_str()).expect("name");
        if id % 5 == 0 {
            b.push_null(2).expect("qty");
        } else {
            b.push(2, i128::from(id) * 1001).expect("qty");
        }
    }
    b.finish().expect("batch")
}

fn request(table: &str, seq: u64, op: WriteOp) -> WriteRequest {
    WriteRequest {
        pipeline: "ventas".into(),
        stream: "personas".into(),
        table: table.into(),
        seq,
        op,
    }
}

fn prepare(conn: &mut MySqlConnector, table: &str, schema: &Schema) {
    conn.prepare_table(&PrepareTable {
        table: table.into(),
        schema: schema.clone(),
        replace: true,
    })
    .expect("prepare");
}

fn digest(conn: &mut MySqlConnector, table: &str, schema: &Schema, range: KeyRange) -> TableDigest {
    conn.table_digest(&DigestRequest {
        table: table.into(),
        schema: schema.clone(),
        range,
    })
    .expect("digest")
}

fn count(db: &TestDb, table: &str) -> i64 {
    db.scalar(&format!("SELECT COUNT(*) FROM `{table}`"))
        .and_then(|c| c.parse().ok())
        .expect("count")
}

#[test]
fn server_inserts_are_split_under_a_small_max_allowed_packet() {
    let db = TestDb::new("packet");
    let mut conn = db.open_with(r#""max_allowed_packet": 4096"#);
    assert_eq!(conn.server().statement_limit, 4096 - 64);
    let schema = people_schema();
    prepare(&mut conn, "p", &schema);
    let batch = people(0..2000, |id| format!("persona número {id}"));
    let outcome = conn
        .write(&request("p", 1, WriteOp::Insert), &batch)
        .expect("write");
    assert_eq!(outcome, WriteOutcome::Applied { rows: 2000 });
    let stats = conn.write_stats();
    assert!(stats.statements >= 20, "{stats:?}");
    assert!(stats.largest <= 4096 - 64, "{stats:?}");
    // Row counts are powers of two (few statement shapes to prepare): at least half full.
    assert!(
        stats.largest > (4096 - 64) / 2,
        "statements are filled: {stats:?}"
    );
    assert_eq!(count(&db, "p"), 2000);
    assert_eq!(
        digest(&mut conn, "p", &schema, KeyRange::all()),
        TableDigest::of_batch("p", &batch)
    );

    // The default follows the server, and an override above it is refused at open.
    let server_packet: u64 = db
        .scalar("SELECT @@max_allowed_packet")
        .and_then(|p| p.parse().ok())
        .expect("max_allowed_packet");
    let plain = db.open();
    assert_eq!(plain.server().max_allowed_packet, server_packet);
    let too_big = server_packet * 2;
    let err = MySqlConnector::open(
        db.config(&format!(r#""max_allowed_packet": {too_big}"#)),
        &context(),
    )
    .err()
    .expect("refused");
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(err.message().contains(&too_big.to_string()), "{err}");
}

#[test]
fn server_upserts_and_deletes_by_primary_key() {
    let db = TestDb::new("upsert");
    let mut conn = db.open();
    let schema = people_schema();
    prepare(&mut conn, "p", &schema);
    conn.write(
        &request("p", 1, WriteOp::Insert),
        &people(1..=10, |id| format!("a{id}")),
    )
    .expect("insert");
    let outcome = conn
        .write(
            &request("p", 2, WriteOp::Upsert),
            &people(5..=15, |id| format!("b{id}")),
        )
        .expect("upsert");
    assert_eq!(outcome, WriteOutcome::Applied { rows: 11 });
    assert_eq!(count(&db, "p"), 15);
    let expected_rows = people(1..=15, |id| {
        if id < 5 {
            format!("a{id}")
        } else {
            format!("b{id}")
        }
    });
    assert_eq!(
        digest(&mut conn, "p", &schema, KeyRange::all()),
        TableDigest::of_batch("p", &expected_rows)
    );
    // Deletes read only the key; an absent key deletes nothing.
    let outcome = conn
        .write(
            &request("p", 3, WriteOp::Delete),
            &people([1, 2, 3, 100], |_| "ignored".into()),
        )
        .expect("delete");
    assert_eq!(outcome, WriteOutcome::Applied { rows: 3 });
    assert_eq!(count(&db, "p"), 12);
    assert_eq!(
        db.scalar("SELECT GROUP_CONCAT(id ORDER BY id) FROM p WHERE id < 6")
            .as_deref(),
        Some("4,5")
    );

    // Composite keys: upsert and delete by the whole tuple.
    let pair = Arc::new(
        Schema::new(
            vec![
                Field::new("a", LogicalType::Int32, false),
                Field::new(
                    "b",
                    LogicalType::Varchar {
                        max_length: Some(10),
                    },
                    false,
                ),
                Field::new("v", LogicalType::Int32, true),
            ],
            &["a", "b"],
        )
        .expect("schema"),
    );
    prepare(&mut conn, "pair", &pair);
    let rows = |items: &[(i32, &str, i32)]| {
        let mut b = BatchBuilder::new(Arc::clone(&pair));
        for (a, s, v) in items {
            b.push(0, *a).expect("a");
            b.push(1, *s).expect("b");
            b.push(2, *v).expect("v");
        }
        b.finish().expect("batch")
    };
    let mut write = |seq, op, batch: &Batch| {
        conn.write(
            &WriteRequest {
                pipeline: "ventas".into(),
                stream: "pair".into(),
                table: "pair".into(),
                seq,
                op,
            },
            batch,
        )
        .expect("write")
    };
    write(
        1,
        WriteOp::Insert,
        &rows(&[(1, "x", 1), (1, "y", 2), (2, "x", 3)]),
    );
    write(2, WriteOp::Upsert, &rows(&[(1, "y", 20), (3, "z", 4)]));
    write(3, WriteOp::Delete, &rows(&[(1, "x", 0), (2, "y", 0)]));
    assert_eq!(
        db.scalar("SELECT GROUP_CONCAT(CONCAT(a, b, v) ORDER BY a, b) FROM pair")
            .as_deref(),
        Some("1y20,2x3,3z4")
    );
}

#[test]
fn server_replayed_batches_are_already_applied() {
    let db = TestDb::new("replay");
    let mut conn = db.open();
    let schema = people_schema();
    prepare(&mut conn, "p", &schema);
    assert_eq!(
        conn.last_applied_seq("ventas", "personas").expect("offset"),
        None
    );
    let batch = people(1..=3, |id| format!("n{id}"));
    assert_eq!(
        conn.write(&request("p", 5, WriteOp::Insert), &batch)
            .expect("write"),
        WriteOutcome::Applied { rows: 3 }
    );
    for seq in [5, 4, 1] {
        assert_eq!(
            conn.write(&request("p", seq, WriteOp::Insert), &batch)
                .expect("replay"),
            WriteOutcome::AlreadyApplied { last_seq: 5 }
        );
    }
    assert_eq!(count(&db, "p"), 3);
    assert_eq!(
        conn.last_applied_seq("ventas", "personas").expect("offset"),
        Some(5)
    );
    assert_eq!(
        conn.last_applied_seq("ventas", "otro").expect("offset"),
        None
    );
    // An empty batch still advances the offset.
    let empty = Batch::empty(schema);
    conn.write(&request("p", 6, WriteOp::Insert), &empty)
        .expect("empty write");
    assert_eq!(
        conn.last_applied_seq("ventas", "personas").expect("offset"),
        Some(6)
    );
    // Another connection (a restarted run) sees the same offset.
    let mut again = db.open();
    assert_eq!(
        again
            .last_applied_seq("ventas", "personas")
            .expect("offset"),
        Some(6)
    );
}

#[test]
fn server_a_failing_batch_leaves_neither_rows_nor_offset() {
    let db = TestDb::new("atomic");
    // Small statements: the failing row comes several statements into the batch.
    let mut conn = db.open_with(r#""max_allowed_packet": 4096"#);
    let schema = people_schema();
    prepare(&mut conn, "p", &schema);
    db.exec("ALTER TABLE p MODIFY name VARCHAR(12)");
    conn.write(
        &request("p", 1, WriteOp::Insert),
        &people(0..10, |id| format!("ok{id}")),
    )
    .expect("first batch");
    let before = conn.write_stats().statements;

    let bad = people(10..1010, |id| {
        if id == 900 {
            "a name far too long for twelve".into()
        } else {
            format!("n{id}")
        }
    });
    let err = conn
        .write(&request("p", 2, WriteOp::Insert), &bad)
        .expect_err("too long");
    assert_eq!(err.code(), ErrorCode::Database);
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("`p`") && text.contains("seq 2") && text.contains("1406"),
        "{text}"
    );
    assert!(
        conn.write_stats().statements > before + 2,
        "earlier statements of the batch ran"
    );
    assert_eq!(count(&db, "p"), 10);
    assert_eq!(
        conn.last_applied_seq("ventas", "personas").expect("offset"),
        Some(1)
    );

    // A duplicate key in an append stream: the same, and the fix (retry) then applies.
    let dup = people([20, 21, 5], |id| format!("d{id}"));
    let err = conn
        .write(&request("p", 2, WriteOp::Insert), &dup)
        .expect_err("duplicate");
    assert!(err.to_string().contains("1062"), "{err}");
    assert_eq!(count(&db, "p"), 10);
    assert_eq!(
        conn.last_applied_seq("ventas", "personas").expect("offset"),
        Some(1)
    );
    let fixed = people([20, 21, 22], |id| format!("d{id}"));
    assert_eq!(
        conn.write(&request("p", 2, WriteOp::Insert), &fixed)
            .expect("retry"),
        WriteOutcome::Applied { rows: 3 }
    );
    assert_eq!(count(&db, "p"), 13);
    assert_eq!(
        conn.last_applied_seq("ventas", "personas").expect("offset"),
        Some(2)
    );
}

#[test]
fn server_snapshot_tables_are_swapped_in_one_rename() {
    let db = TestDb::new("swap");
    let mut conn = db.open();
    let schema = people_schema();
    prepare(&mut conn, "final_stage", &schema);
    conn.write(
        &request("final_stage", 1, WriteOp::Insert),
        &people(1..=4, |i| i.to_string()),
    )
    .expect("write");
    conn.replace_table("final_stage", "final")
        .expect("first swap");
    assert_eq!(count(&db, "final"), 4);
    prepare(&mut conn, "final_stage", &schema);
    conn.write(
        &request("final_stage", 2, WriteOp::Insert),
        &people(1..=2, |i| i.to_string()),
    )
    .expect("write");
    conn.replace_table("final_stage", "final")
        .expect("second swap");
    assert_eq!(count(&db, "final"), 2);
    let mut tables: Vec<String> = db
        .rows(&format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}'",
            db.name
        ))
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    tables.sort();
    assert_eq!(tables, vec!["_caudal_offsets", "final"]);
    let err = conn
        .replace_table("missing", "final")
        .expect_err("no staging");
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[test]
fn server_existing_tables_are_kept_and_checked() {
    let db = TestDb::new("keep");
    db.exec("CREATE TABLE p (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(60))");
    db.exec("INSERT INTO p VALUES (1, 'kept')");
    let mut conn = db.open();
    let err = conn
        .prepare_table(&PrepareTable {
            table: "p".into(),
            schema: (*people_schema()).clone(),
            replace: false,
        })
        .expect_err("qty is missing");
    assert_eq!(err.code(), ErrorCode::Schema);
    assert!(err.message().contains("`qty`"), "{err}");
    db.exec("ALTER TABLE p ADD qty DECIMAL(10,3)");
    conn.prepare_table(&PrepareTable {
        table: "p".into(),
        schema: (*people_schema()).clone(),
        replace: false,
    })
    .expect("now it fits");
    assert_eq!(count(&db, "p"), 1);
}

#[test]
fn server_digests_cover_key_ranges() {
    let db = TestDb::new("range");
    let mut conn = db.open();
    let schema = people_schema();
    prepare(&mut conn, "p", &schema);
    let all = people(0..100, |id| format!("n{id}"));
    conn.write(&request("p", 1, WriteOp::Insert), &all)
        .expect("write");
    let part = people(10..50, |id| format!("n{id}"));
    let range = KeyRange {
        lower: Bound::Included(vec![Value::Int(10)]),
        upper: Bound::Excluded(vec![Value::Int(50)]),
    };
    assert_eq!(
        digest(&mut conn, "p", &schema, range),
        TableDigest::of_batch("p", &part)
    );
    let mut halves = digest(
        &mut conn,
        "p",
        &schema,
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Included(vec![Value::Int(49)]),
        },
    );
    halves.combine(&digest(
        &mut conn,
        "p",
        &schema,
        KeyRange {
            lower: Bound::Excluded(vec![Value::Int(49)]),
            upper: Bound::Unbounded,
        },
    ));
    assert_eq!(halves, TableDigest::of_batch("p", &all));
    let bad = KeyRange {
        lower: Bound::Included(vec![Value::Int(1), Value::Int(2)]),
        upper: Bound::Unbounded,
    };
    let err = conn
        .table_digest(&DigestRequest {
            table: "p".into(),
            schema: (*schema).clone(),
            range: bad,
        })
        .expect_err("two values for a one-column key");
    assert_eq!(err.code(), ErrorCode::Schema);
}

#[test]
fn server_a_killed_read_connection_is_a_retryable_error() {
    let db = TestDb::new("kill");
    db.exec("CREATE TABLE big (id INT NOT NULL PRIMARY KEY, pad CHAR(50))");
    db.exec(&format!(
        "INSERT INTO big SELECT seq, 'x' FROM {}",
        numbers(20_000)
    ));
    let mut conn = db.open_with(r#""pool_size": 1"#);
    let mut r = ReadRequest::table("big");
    r.limits.max_rows = 100;
    let mut reader = conn.read(&r).expect("read");
    reader.next_chunk().expect("first chunk").expect("rows");
    // The pool has one connection: the reader's. Kill every session of the test database
    // but the admin one.
    let ids = db.rows(&format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID()",
        db.name
    ));
    assert!(!ids.is_empty());
    for id in ids {
        let _ = db.try_exec(&format!("KILL {}", id[0].as_deref().expect("id")));
    }
    let err = loop {
        match reader.next_chunk() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the read finished on a killed connection"),
            Err(e) => break e,
        }
    };
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.code(), ErrorCode::Connection, "{err}");
    // The same error again, not a silent end.
    assert_eq!(reader.next_chunk().expect_err("still failed"), err);
    drop(reader);
    // The pool replaces the dead connection: the retry reads everything.
    let mut reader = conn.read(&r).expect("read again");
    let mut rows = 0;
    while let Some(c) = reader.next_chunk().expect("chunk") {
        rows += c.batch.num_rows();
    }
    assert_eq!(rows, 20_000);
}

/// Drops a test user when the test ends, pass or fail.
struct UserGuard<'a>(&'a TestDb, String);

impl Drop for UserGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.try_exec(&format!("DROP USER IF EXISTS {}", self.1));
    }
}

#[test]
fn server_the_password_never_appears_in_errors() {
    let db = TestDb::new("secret");
    let user = format!("caudal_u{}", std::process::id());
    let password = "Zq9-s3cret";
    let account = format!("'{user}'@'%', '{user}'@'localhost'");
    let _guard = UserGuard(&db, account.clone());
    db.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}', \
         '{user}'@'localhost' IDENTIFIED BY '{password}'"
    ));
    db.exec(&format!(
        "GRANT ALL ON `{}`.* TO '{user}'@'%', '{user}'@'localhost'",
        db.name
    ));
    db.exec("CREATE TABLE t (id INT PRIMARY KEY)");
    let host = server_url()
        .rsplit('@')
        .next()
        .expect("host")
        .trim_end_matches('/')
        .to_owned();
    let config = |pw: &str, host: &str| -> MySqlConfig {
        serde_json::from_str(&format!(
            r#"{{"url": "mysql://{user}:{pw}@{host}/{}"}}"#,
            db.name
        ))
        .expect("config")
    };
    assert!(!format!("{:?}", config(password, &host)).contains(password));

    // Connected with the password, an error that would echo it (a table named like it).
    let mut conn = MySqlConnector::open(config(password, &host), &context()).expect("open");
    let err = conn
        .read(&ReadRequest::table(password))
        .err()
        .expect("no such table");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(!err.to_string().contains(password), "{err}");
    assert!(err.to_string().contains("***"), "{err}");

    // A wrong password, and an unreachable server.
    let wrong = "Wr0ng-s3cret";
    let err = MySqlConnector::open(config(wrong, &host), &context())
        .err()
        .expect("access denied");
    assert!(!err.to_string().contains(wrong), "{err}");
    assert!(err.to_string().contains("test_conn"), "{err}");
    let err = MySqlConnector::open(config(password, "127.0.0.1:1"), &context())
        .err()
        .expect("nothing listens on port 1");
    assert_eq!(err.code(), ErrorCode::Connection);
    assert!(err.is_retryable());
    assert!(!err.to_string().contains(password), "{err}");
}

#[test]
fn server_a_row_larger_than_the_statement_target_is_written_alone() {
    let db = TestDb::new("bigrow");
    let mut conn = db.open();
    let limit = conn.server().statement_limit;
    let target = conn.server().statement_target;
    assert!(
        target < limit,
        "the server allows more than the 2 MiB target"
    );
    let schema = Arc::new(
        Schema::new(
            vec![
                Field::new("id", LogicalType::Int64, false),
                Field::new("body", LogicalType::Blob { max_bytes: None }, true),
            ],
            &["id"],
        )
        .expect("schema"),
    );
    prepare(&mut conn, "blobs", &schema);
    // 3 MiB of bytes: more than the 2 MiB target, less than the server's packet limit.
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let mut b = BatchBuilder::new(Arc::clone(&schema));
    for (id, body) in [(1i64, &b"small"[..]), (2, &big[..]), (3, &b"small"[..])] {
        b.push(0, id).expect("id");
        b.push(1, body).expect("body");
    }
    let batch = b.finish().expect("batch");
    conn.write(&request("blobs", 1, WriteOp::Insert), &batch)
        .expect("write");
    let stats = conn.write_stats();
    assert_eq!(stats.statements, 3, "{stats:?}");
    assert!(stats.largest as usize > target, "{stats:?}");
    assert_eq!(
        db.scalar("SELECT LENGTH(body) FROM blobs WHERE id = 2")
            .as_deref(),
        Some("3145728")
    );
    assert_eq!(
        digest(&mut conn, "blobs", &schema, KeyRange::all()),
        TableDigest::of_batch("blobs", &batch)
    );
}
