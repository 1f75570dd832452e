//! The scenarios every server runs: the test double in `server_*.rs`, a real SQL Server in
//! `real_server.rs`. Each takes an [`Env`] and asserts; table names come from [`Env::table`].

use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    ChunkLimits, Connector, ErrorCode, Field, LogicalType as L, OffsetTimestamp, ReadRequest,
    ReadTarget, Schema, TableDigest, Value, WriteOp, WriteOutcome,
};
use caudal_mssql::sql::SqlColumn;
use caudal_mssql::types::SqlType as S;

use super::{Env, PASSWORD, USER, batch, digest, prepare, read_all, rows_of, table_request, write};

const DAY: i64 = 86_400_000_000;

/// Microseconds of a `datetime` at `ticks` 1/300 s after midnight of day `day` (since 1970),
/// as the connector reads it (truncated).
fn datetime_micros(day: i64, ticks: i64) -> i64 {
    day * DAY + ticks * 10_000 / 3
}

fn col(name: &str, t: S, nullable: bool) -> SqlColumn {
    SqlColumn::new(name, t, nullable)
}

fn ints_schema() -> Arc<Schema> {
    Arc::new(
        Schema::new(
            vec![
                Field::new("id", L::Int64, false),
                Field::new("v", L::Int32, true),
                Field::new(
                    "name",
                    L::NVarchar {
                        max_length: Some(50),
                    },
                    true,
                ),
            ],
            &["id"],
        )
        .unwrap(),
    )
}

fn int_rows(range: std::ops::Range<i64>, v: i32) -> Vec<Vec<Value>> {
    range
        .map(|i| {
            vec![
                Value::Int(i),
                if i % 5 == 0 {
                    Value::Null
                } else {
                    Value::Int(i64::from(v))
                },
                Value::Text(format!("fila {i}")),
            ]
        })
        .collect()
}

/// Discovery lists the tables with their types and primary keys, not the connector's own.
pub fn discover(env: &Env) {
    let (a, b) = (env.table("lineas"), env.table("sin_clave"));
    env.create_native(
        &a,
        &[
            col("tienda", S::SmallInt, false),
            col("factura", S::BigInt, false),
            col(
                "importe",
                S::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
            col("fecha", S::DateTime, true),
        ],
        &[0, 1],
    );
    env.create_native(&b, &[col("nota", S::NVarChar { length: None }, true)], &[]);
    let mut conn = env.open();
    // A sink creates `_caudal_offsets`; discovery must not offer it.
    prepare(
        conn.sink().unwrap(),
        &env.table("destino"),
        &ints_schema(),
        false,
    );
    let tables = conn.source().unwrap().discover().expect("discover");
    let find = |name: &str| tables.iter().find(|t| t.name == name);
    let lineas = find(&a).unwrap_or_else(|| panic!("{a} not in {tables:?}"));
    let fields = lineas.schema.fields();
    assert_eq!(fields[0].logical_type, L::Int16);
    assert!(!fields[0].nullable);
    assert_eq!(
        fields[2].logical_type,
        L::Decimal {
            precision: 12,
            scale: 2
        }
    );
    assert!(fields[2].nullable);
    assert_eq!(fields[3].logical_type, L::DateTime { precision: 6 });
    assert_eq!(lineas.schema.primary_key(), &[0, 1]);
    let sin_clave = find(&b).expect("table without key");
    assert!(sin_clave.schema.primary_key().is_empty());
    assert!(
        tables.iter().all(|t| !t.name.starts_with("_caudal")),
        "{tables:?}"
    );
    env.drop_tables(&[&a, &b, &env.table("destino")]);
}

/// Keyset chunks: every row once, in key order, chunk cursors at the last key; a read resumed
/// after a chunk's cursor gives exactly the rows after it.
pub fn keyset_chunks_and_resume(env: &Env) {
    let t = env.table("chunks");
    let schema = ints_schema();
    let mut conn = env.open();
    prepare(conn.sink().unwrap(), &t, &schema, false);
    let rows = int_rows(0..1000, 7);
    write(
        env,
        conn.sink().unwrap(),
        &t,
        1,
        WriteOp::Insert,
        &batch(&schema, &rows),
    )
    .expect("write");
    let chunks = read_all(conn.source().unwrap(), &table_request(&t, 128));
    assert_eq!(chunks.len(), 8, "1000 rows in chunks of 128");
    assert!(chunks[..7].iter().all(|c| c.batch.num_rows() == 128));
    assert_eq!(rows_of(&chunks), rows);
    assert_eq!(chunks[2].cursor, Some(Value::Int(383)));
    let mut resume = table_request(&t, 128);
    resume.from = Bound::Excluded(Value::Int(383));
    let rest = rows_of(&read_all(conn.source().unwrap(), &resume));
    assert_eq!(rest, rows[384..].to_vec());
    // An upper bound stops the read; a lower bound included starts at the key.
    resume.from = Bound::Included(Value::Int(10));
    resume.to = Bound::Excluded(Value::Int(20));
    assert_eq!(
        rows_of(&read_all(conn.source().unwrap(), &resume)),
        rows[10..20].to_vec()
    );
    env.drop_tables(&[&t]);
}

/// A table without a key is read in OFFSET/FETCH pages, every row once.
pub fn offset_pages_without_key(env: &Env) {
    let t = env.table("sin_clave");
    env.create_native(
        &t,
        &[
            col("n", S::Int, false),
            col("s", S::NVarChar { length: Some(10) }, true),
        ],
        &[],
    );
    let mut conn = env.open();
    let schema = Arc::new(
        Schema::new(
            vec![
                Field::new("n", L::Int32, false),
                Field::new(
                    "s",
                    L::NVarchar {
                        max_length: Some(10),
                    },
                    true,
                ),
            ],
            &[],
        )
        .unwrap(),
    );
    let rows: Vec<Vec<Value>> = (0..95)
        .map(|i| vec![Value::Int(i % 40), Value::Text(format!("x{i}"))])
        .collect();
    write(
        env,
        conn.sink().unwrap(),
        &t,
        1,
        WriteOp::Insert,
        &batch(&schema, &rows),
    )
    .expect("write");
    let chunks = read_all(conn.source().unwrap(), &table_request(&t, 10));
    let mut got = rows_of(&chunks);
    let mut want = rows.clone();
    let key = |r: &Vec<Value>| format!("{r:?}");
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);
    env.drop_tables(&[&t]);
}

/// An incremental read by a `datetime` cursor: resuming after the last cursor reads nothing
/// again (the cursor is bound as `datetime` with the column's own ticks), rows added later
/// are read, and chunks never split rows of one cursor value.
pub fn incremental_datetime_cursor(env: &Env) {
    let t = env.table("ventas");
    env.create_native(
        &t,
        &[
            col("id", S::Int, false),
            col("fecha", S::DateTime, false),
            col("total", S::Money, true),
        ],
        &[0],
    );
    let mut conn = env.open();
    let schema = Arc::new(
        conn.source()
            .unwrap()
            .discover()
            .unwrap()
            .into_iter()
            .find(|i| i.name == t)
            .unwrap()
            .schema,
    );
    // Ticks 1, 2, 299 of a second (.003333, .006666, .996666): none is a whole microsecond.
    let day = 20_000;
    let at = |i: i64| datetime_micros(day, 3_000 + (i / 3) * 299 + 1);
    let rows: Vec<Vec<Value>> = (0..30)
        .map(|i| {
            vec![
                Value::Int(i),
                Value::DateTime(at(i)),
                Value::Decimal {
                    unscaled: 9_223_372_036_854_775_807 - i128::from(i),
                    scale: 4,
                },
            ]
        })
        .collect();
    write(
        env,
        conn.sink().unwrap(),
        &t,
        1,
        WriteOp::Insert,
        &batch(&schema, &rows),
    )
    .expect("write");
    let mut request = table_request(&t, 4);
    request.cursor_column = Some("fecha".into());
    let chunks = read_all(conn.source().unwrap(), &request);
    assert_eq!(
        rows_of(&chunks),
        rows,
        "values, money included, come back exactly"
    );
    for pair in chunks.windows(2) {
        assert_ne!(
            pair[0].cursor,
            pair[1].batch.value(0, 1),
            "a cursor value split across chunks"
        );
    }
    let last = chunks.last().unwrap().cursor.clone().expect("cursor");
    assert_eq!(last, Value::DateTime(at(29)));
    request.from = Bound::Excluded(last.clone());
    assert!(
        read_all(conn.source().unwrap(), &request).is_empty(),
        "the last rows were read again"
    );
    let more: Vec<Vec<Value>> = (30..33)
        .map(|i| vec![Value::Int(i), Value::DateTime(at(i)), Value::Null])
        .collect();
    write(
        env,
        conn.sink().unwrap(),
        &t,
        2,
        WriteOp::Insert,
        &batch(&schema, &more),
    )
    .expect("write");
    assert_eq!(rows_of(&read_all(conn.source().unwrap(), &request)), more);
    env.drop_tables(&[&t]);
}

/// A stream's query sees its bounds as `@from` / `@to`, unbounded sides as the type's extremes.
pub fn query_with_bounds(env: &Env) {
    let t = env.table("ventas_q");
    env.create_native(
        &t,
        &[col("id", S::Int, false), col("fecha", S::Date, false)],
        &[0],
    );
    let mut conn = env.open();
    let schema = Arc::new(
        Schema::new(
            vec![
                Field::new("id", L::Int32, false),
                Field::new("fecha", L::Date, false),
            ],
            &["id"],
        )
        .unwrap(),
    );
    let rows: Vec<Vec<Value>> = (0..20)
        .map(|i| vec![Value::Int(i), Value::Date(19_000 + (i as i32) / 2)])
        .collect();
    write(
        env,
        conn.sink().unwrap(),
        &t,
        1,
        WriteOp::Insert,
        &batch(&schema, &rows),
    )
    .expect("write");
    let mut request = ReadRequest::table("");
    request.target = ReadTarget::Query(format!(
        "SELECT id, fecha FROM [dbo].[{t}] WHERE fecha >= @from AND fecha < @to"
    ));
    request.cursor_column = Some("fecha".into());
    request.limits = ChunkLimits {
        max_rows: 3,
        ..ChunkLimits::default()
    };
    let all = rows_of(&read_all(conn.source().unwrap(), &request));
    let mut sorted = all.clone();
    sorted.sort_by_key(|r| format!("{:?}", r[1]));
    assert_eq!(all.len(), 20);
    assert_eq!(all, sorted, "rows come in cursor order");
    request.from = Bound::Included(Value::Date(19_002));
    request.to = Bound::Excluded(Value::Date(19_004));
    let some = rows_of(&read_all(conn.source().unwrap(), &request));
    let ids: Vec<&Value> = some.iter().map(|r| &r[0]).collect();
    assert_eq!(
        ids,
        [
            &Value::Int(4),
            &Value::Int(5),
            &Value::Int(6),
            &Value::Int(7)
        ]
    );
    env.drop_tables(&[&t]);
}

/// The native columns of the every-type table.
fn every_type_columns() -> Vec<SqlColumn> {
    vec![
        col("id", S::Int, false),
        col("c_bit", S::Bit, true),
        col("c_tinyint", S::TinyInt, true),
        col("c_smallint", S::SmallInt, true),
        col("c_int", S::Int, true),
        col("c_bigint", S::BigInt, true),
        col(
            "c_decimal",
            S::Decimal {
                precision: 18,
                scale: 4,
            },
            true,
        ),
        col(
            "c_numeric",
            S::Decimal {
                precision: 38,
                scale: 10,
            },
            true,
        ),
        col("c_money", S::Money, true),
        col("c_smallmoney", S::SmallMoney, true),
        col("c_real", S::Real, true),
        col("c_float", S::Float, true),
        col("c_date", S::Date, true),
        col("c_time", S::Time { scale: 7 }, true),
        col("c_datetime", S::DateTime, true),
        col("c_datetime2", S::DateTime2 { scale: 6 }, true),
        col("c_smalldatetime", S::SmallDateTime, true),
        col("c_dto", S::DateTimeOffset { scale: 7 }, true),
        col("c_char", S::Char { length: 4 }, true),
        col("c_varchar", S::VarChar { length: Some(20) }, true),
        col("c_nchar", S::NChar { length: 3 }, true),
        col("c_nvarchar", S::NVarChar { length: None }, true),
        col("c_text", S::Text, true),
        col("c_ntext", S::NText, true),
        col("c_binary", S::Binary { length: 4 }, true),
        col("c_varbinary", S::VarBinary { length: None }, true),
        col("c_uuid", S::UniqueIdentifier, true),
    ]
}

fn every_type_rows() -> Vec<Vec<Value>> {
    let dto = |utc_micros, offset_minutes| {
        Value::DateTimeOffset(OffsetTimestamp {
            utc_micros,
            offset_minutes,
        })
    };
    let typical = vec![
        Value::Int(1),
        Value::Bool(true),
        Value::Int(200),
        Value::Int(-12_345),
        Value::Int(1_234_567),
        Value::Int(-9_000_000_000),
        Value::Decimal {
            unscaled: 123_456_789,
            scale: 4,
        },
        Value::Decimal {
            unscaled: -5,
            scale: 10,
        },
        Value::Decimal {
            unscaled: 19_999,
            scale: 4,
        },
        Value::Decimal {
            unscaled: -1,
            scale: 4,
        },
        Value::Float(1.5),
        Value::Float(-2.0 / 3.0),
        Value::Date(19_723),
        Value::Time(45_296_123_456),
        Value::DateTime(datetime_micros(19_723, 1)),
        Value::DateTime(19_723 * DAY + 1),
        Value::DateTime(19_723 * DAY + 754 * 60_000_000),
        dto(19_723 * DAY + 7, 330),
        Value::Text("abcd".into()),
        Value::Text("año".into()),
        Value::Text("東京都".into()),
        Value::Text("línea\nnueva, 'citada'".into()),
        Value::Text("texto largo".into()),
        Value::Text("ñandú".into()),
        Value::Bytes(vec![0, 1, 2, 255]),
        Value::Bytes(vec![]),
        Value::Uuid(*b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x01\x23\x45\x67\x89\xab\xcd\xef"),
    ];
    let extremes = vec![
        Value::Int(2),
        Value::Bool(false),
        Value::Int(0),
        Value::Int(i64::from(i16::MIN)),
        Value::Int(i64::from(i32::MAX)),
        Value::Int(i64::MIN),
        Value::Decimal {
            unscaled: 10i128.pow(18) - 1,
            scale: 4,
        },
        Value::Decimal {
            unscaled: -(10i128.pow(38) - 1),
            scale: 10,
        },
        Value::Decimal {
            unscaled: i128::from(i64::MAX),
            scale: 4,
        },
        Value::Decimal {
            unscaled: i128::from(i32::MIN),
            scale: 4,
        },
        Value::Float(f64::from(f32::MAX)),
        Value::Float(f64::MIN_POSITIVE),
        Value::Date(-719_162),
        Value::Time(DAY - 1),
        Value::DateTime(datetime_micros(2_932_896, 300 * 86_400 - 1)),
        Value::DateTime(-719_162 * DAY),
        Value::DateTime(-25_567 * DAY),
        dto(2_932_896 * DAY + DAY - 1, -840),
        Value::Text("    ".into()),
        Value::Text(String::new()),
        Value::Text("a  ".into()),
        Value::Text(String::new()),
        Value::Text(String::new()),
        Value::Text(String::new()),
        Value::Bytes(vec![0; 4]),
        Value::Bytes(vec![7; 9000]),
        Value::Uuid([0xff; 16]),
    ];
    let mut nulls = vec![Value::Null; extremes.len()];
    nulls[0] = Value::Int(3);
    vec![typical, extremes, nulls]
}

/// Every listed SQL Server type and NULL of each: written by the sink into the native
/// types, read back equal, copied into a table created from the read schema, and both
/// tables' digests equal the digest of the rows read.
pub fn every_type_round_trip(env: &Env) {
    let (src, dst) = (env.table("tipos"), env.table("tipos_copia"));
    env.create_native(&src, &every_type_columns(), &[0]);
    let mut conn = env.open();
    let info = conn
        .source()
        .unwrap()
        .discover()
        .unwrap()
        .into_iter()
        .find(|i| i.name == src)
        .unwrap();
    let schema = Arc::new(info.schema);
    let expected: Vec<(&str, L)> = vec![
        ("c_bit", L::Bool),
        ("c_tinyint", L::UInt8),
        ("c_smallint", L::Int16),
        ("c_int", L::Int32),
        ("c_bigint", L::Int64),
        (
            "c_decimal",
            L::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        (
            "c_numeric",
            L::Decimal {
                precision: 38,
                scale: 10,
            },
        ),
        ("c_money", L::Money),
        ("c_smallmoney", L::SmallMoney),
        ("c_real", L::Float32),
        ("c_float", L::Float64),
        ("c_date", L::Date),
        ("c_time", L::Time { precision: 6 }),
        ("c_datetime", L::DateTime { precision: 6 }),
        ("c_datetime2", L::DateTime { precision: 6 }),
        ("c_smalldatetime", L::DateTime { precision: 0 }),
        ("c_dto", L::DateTimeOffset { precision: 6 }),
        ("c_char", L::Char { length: 4 }),
        (
            "c_varchar",
            L::Varchar {
                max_length: Some(20),
            },
        ),
        ("c_nchar", L::NChar { length: 3 }),
        ("c_nvarchar", L::NVarchar { max_length: None }),
        ("c_text", L::Text { max_bytes: None }),
        ("c_ntext", L::Text { max_bytes: None }),
        ("c_binary", L::Binary { length: 4 }),
        ("c_varbinary", L::Varbinary { max_length: None }),
        ("c_uuid", L::Uuid),
    ];
    for (name, t) in &expected {
        let f = &schema.fields()[schema.index_of(name).unwrap()];
        assert_eq!(&f.logical_type, t, "{name}");
    }
    let rows = every_type_rows();
    let written = batch(&schema, &rows);
    write(
        env,
        conn.sink().unwrap(),
        &src,
        1,
        WriteOp::Insert,
        &written,
    )
    .expect("write every type");
    let chunks = read_all(conn.source().unwrap(), &table_request(&src, 1000));
    let read = rows_of(&chunks);
    for (want, got) in rows.iter().zip(&read) {
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            assert_eq!(w, g, "column {}", schema.fields()[i].name);
        }
    }
    assert_eq!(read.len(), rows.len());
    // Copy through the reverse mapping; the copy's digest is the digest of the rows read.
    prepare(conn.sink().unwrap(), &dst, &schema, false);
    let copied = write(
        env,
        conn.sink().unwrap(),
        &dst,
        2,
        WriteOp::Insert,
        &chunks[0].batch,
    );
    assert_eq!(copied.expect("copy"), WriteOutcome::Applied { rows: 3 });
    let mut expected_dst = TableDigest::new();
    let mut expected_src = TableDigest::new();
    for c in &chunks {
        expected_dst.add_batch(&dst, &c.batch);
        expected_src.add_batch(&src, &c.batch);
    }
    assert_eq!(digest(conn.sink().unwrap(), &dst, &schema), expected_dst);
    assert_eq!(digest(conn.sink().unwrap(), &src, &schema), expected_src);
    assert_eq!(expected_src.rows(), 3);
    env.drop_tables(&[&src, &dst]);
}

/// Rows from other sources (the SDK's sample of every logical type, except values SQL Server
/// cannot hold) round trip through tables created by the reverse mapping.
pub fn sample_of_every_logical_type(env: &Env) {
    let t = env.table("muestra");
    let schema = Arc::new(caudal_connector::sample::all_types_schema());
    let mut conn = env.open();
    prepare(conn.sink().unwrap(), &t, &schema, false);
    // Row ids whose values SQL Server cannot store (infinity at id % 97 == 3) are left out.
    let mut b = caudal_connector::BatchBuilder::new(Arc::clone(&schema));
    for id in (0..300u64).filter(|id| id % 97 != 3) {
        caudal_connector::sample::push_all_types_row(&mut b, id).unwrap();
    }
    let sample = b.finish().unwrap();
    write(env, conn.sink().unwrap(), &t, 1, WriteOp::Insert, &sample).expect("write sample");
    assert_eq!(
        digest(conn.sink().unwrap(), &t, &schema),
        TableDigest::of_batch(&t, &sample)
    );
    env.drop_tables(&[&t]);
}

/// Upserts replace by key (the last row of a key in a batch wins), deletes remove by key,
/// and the digest follows.
pub fn upsert_and_delete(env: &Env) {
    let t = env.table("upserts");
    let schema = ints_schema();
    let mut conn = env.open();
    prepare(conn.sink().unwrap(), &t, &schema, false);
    let first = int_rows(0..10, 1);
    write(
        env,
        conn.sink().unwrap(),
        &t,
        1,
        WriteOp::Insert,
        &batch(&schema, &first),
    )
    .expect("insert");
    let mut changes = int_rows(5..15, 2);
    changes.push(vec![
        Value::Int(6),
        Value::Int(99),
        Value::Text("última".into()),
    ]);
    let outcome = write(
        env,
        conn.sink().unwrap(),
        &t,
        2,
        WriteOp::Upsert,
        &batch(&schema, &changes),
    )
    .expect("upsert");
    assert_eq!(outcome, WriteOutcome::Applied { rows: 11 });
    let deletes = batch(&schema, &int_rows(0..3, 0));
    let outcome =
        write(env, conn.sink().unwrap(), &t, 3, WriteOp::Delete, &deletes).expect("delete");
    assert_eq!(outcome, WriteOutcome::Applied { rows: 3 });
    let mut want: Vec<Vec<Value>> = first[3..5].to_vec();
    want.extend(int_rows(5..15, 2));
    want[3] = vec![Value::Int(6), Value::Int(99), Value::Text("última".into())];
    let got = rows_of(&read_all(conn.source().unwrap(), &table_request(&t, 100)));
    assert_eq!(got, want);
    assert_eq!(
        digest(conn.sink().unwrap(), &t, &schema),
        TableDigest::of_batch(&t, &batch(&schema, &want))
    );
    env.drop_tables(&[&t]);
}

/// The offset moves with the rows, in one transaction: a replayed seq changes nothing, a
/// failed write changes neither rows nor offset.
pub fn offsets_and_already_applied(env: &Env) {
    let t = env.table("offsets");
    let schema = ints_schema();
    let mut conn = env.open();
    let sink = conn.sink().unwrap();
    assert_eq!(sink.last_applied_seq(&env.pipeline(), "s").unwrap(), None);
    prepare(sink, &t, &schema, false);
    let rows = batch(&schema, &int_rows(0..5, 1));
    assert_eq!(
        write(env, sink, &t, 5, WriteOp::Insert, &rows).unwrap(),
        WriteOutcome::Applied { rows: 5 }
    );
    assert_eq!(
        sink.last_applied_seq(&env.pipeline(), "s").unwrap(),
        Some(5)
    );
    for seq in [5, 3] {
        assert_eq!(
            write(env, sink, &t, seq, WriteOp::Insert, &rows).unwrap(),
            WriteOutcome::AlreadyApplied { last_seq: 5 }
        );
    }
    // Seq 6 repeats keys 0..5: the bulk load fails on the primary key and nothing moves.
    let err = write(env, sink, &t, 6, WriteOp::Insert, &rows).unwrap_err();
    assert!(!err.message().contains(PASSWORD), "{err}");
    assert_eq!(
        sink.last_applied_seq(&env.pipeline(), "s").unwrap(),
        Some(5)
    );
    assert_eq!(digest(sink, &t, &schema), TableDigest::of_batch(&t, &rows));
    // The connection still works after the failure.
    let more = batch(&schema, &int_rows(5..8, 1));
    assert_eq!(
        write(env, sink, &t, 7, WriteOp::Insert, &more).unwrap(),
        WriteOutcome::Applied { rows: 3 }
    );
    assert_eq!(
        sink.last_applied_seq(&env.pipeline(), "s").unwrap(),
        Some(7)
    );
    assert_eq!(
        sink.last_applied_seq(&env.pipeline(), "other").unwrap(),
        None
    );
    env.drop_tables(&[&t]);
}

/// A snapshot swap replaces the table by its staging table at once.
pub fn snapshot_swap(env: &Env) {
    let (t, staging) = (env.table("snap"), env.table("snap__caudal_staging"));
    let schema = ints_schema();
    let mut conn = env.open();
    let sink = conn.sink().unwrap();
    // First snapshot: no table yet, the staging table is renamed into place.
    prepare(sink, &staging, &schema, true);
    let old = batch(&schema, &int_rows(0..4, 1));
    write(env, sink, &staging, 1, WriteOp::Insert, &old).unwrap();
    sink.replace_table(&staging, &t).expect("first swap");
    assert_eq!(digest(sink, &t, &schema), TableDigest::of_batch(&t, &old));
    // Second snapshot: the table is replaced, and the staging name is free again.
    prepare(sink, &staging, &schema, true);
    let new = batch(&schema, &int_rows(10..13, 2));
    let request = caudal_connector::WriteRequest {
        pipeline: env.pipeline(),
        stream: "s2".into(),
        table: staging.clone(),
        seq: 2,
        op: WriteOp::Insert,
    };
    sink.write(&request, &new).unwrap();
    sink.replace_table(&staging, &t).expect("second swap");
    assert_eq!(digest(sink, &t, &schema), TableDigest::of_batch(&t, &new));
    let tables = conn.source().unwrap().discover().unwrap();
    assert!(
        tables.iter().all(|i| i.name != staging),
        "staging table left behind"
    );
    let err = conn
        .sink()
        .unwrap()
        .replace_table(&staging, &t)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    env.drop_tables(&[&t]);
}

/// Errors name what failed and where, never the password.
pub fn errors_name_user_and_host(env: &Env) {
    let mut config = env.config();
    config.url = config.url.replace(PASSWORD, "wrong-Pw-Zq81");
    let context = caudal_connector::OpenContext {
        connection: "tienda_07".into(),
        base_dir: None,
    };
    let err = match caudal_mssql::MsSqlConnector::open(config, &context) {
        Err(e) => e,
        Ok(_) => panic!("a wrong password was accepted"),
    };
    let text = err.to_string();
    assert!(text.contains("tienda_07"), "{text}");
    if env.server.is_some() {
        assert!(text.contains(USER), "{text}");
    }
    let host = env.config().validate().unwrap().addr;
    assert!(text.contains(&host), "{text}");
    assert!(
        !text.contains("wrong-Pw-Zq81") && !text.contains(PASSWORD),
        "{text}"
    );
    assert!(err.is_retryable(), "a refused login may pass later: {text}");
    let mut conn = env.open();
    let err = match conn
        .source()
        .unwrap()
        .read(&table_request(&env.table("no_existe"), 10))
    {
        Err(e) => e,
        Ok(_) => panic!("reading a missing table succeeded"),
    };
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    assert!(err.to_string().contains("no_existe"), "{err}");
}
