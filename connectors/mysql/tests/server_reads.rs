//! Reads against the real server: discovery, keyset pages, chunk limits, resuming mid-table
//! from a chunk's cursor, cursor columns with repeated and NULL values, queries with `@from`
//! and `@to`, and the errors of bad requests.

mod common;

use std::collections::BTreeSet;
use std::ops::Bound;

use caudal_connector::{
    ChunkLimits, ErrorCode, LogicalType, PrepareTable, ReadRequest, ReadTarget, Sink, Source, Value,
};
use common::{TestDb, column_values, ints, numbers, read_all, table_request};

#[test]
fn server_discovery_lists_tables_columns_and_keys() {
    let db = TestDb::new("discover");
    db.exec(
        "CREATE TABLE lineas (tienda SMALLINT UNSIGNED NOT NULL, factura BIGINT NOT NULL, \
         linea INT NOT NULL, precio DECIMAL(12,2), nota VARCHAR(40), doc JSON, \
         PRIMARY KEY (tienda, factura, linea))",
    );
    db.exec("CREATE TABLE log (at DATETIME(6), msg TEXT)");
    db.exec("CREATE VIEW caras AS SELECT tienda, precio FROM lineas WHERE precio > 100");
    db.exec(&format!(
        "INSERT INTO lineas (tienda, factura, linea, precio) \
         SELECT seq % 3, seq, 1, seq FROM {}",
        numbers(50)
    ));
    db.exec("ANALYZE TABLE lineas");
    let mut conn = db.open();
    // A sink's bookkeeping table exists now, and is not offered as a source table.
    conn.prepare_table(&PrepareTable {
        table: "copia".into(),
        schema: caudal_connector::Schema::new(
            vec![caudal_connector::Field::new(
                "id",
                LogicalType::Int32,
                false,
            )],
            &["id"],
        )
        .expect("schema"),
        replace: false,
    })
    .expect("prepare");

    let tables = conn.discover().expect("discover");
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["caras", "copia", "lineas", "log"]);
    let lineas = &tables[2];
    let s = &lineas.schema;
    let key: Vec<&str> = s
        .primary_key()
        .iter()
        .map(|&k| s.fields()[k].name.as_str())
        .collect();
    assert_eq!(key, vec!["tienda", "factura", "linea"]);
    assert_eq!(s.fields()[0].logical_type, LogicalType::UInt16);
    assert!(!s.fields()[0].nullable);
    assert_eq!(
        s.fields()[3].logical_type,
        LogicalType::Decimal {
            precision: 12,
            scale: 2
        }
    );
    assert!(s.fields()[3].nullable);
    assert_eq!(
        s.fields()[4].logical_type,
        LogicalType::Varchar {
            max_length: Some(40)
        }
    );
    assert_eq!(s.fields()[5].logical_type, LogicalType::Json);
    assert!(lineas.estimated_rows.is_some());
    let log = &tables[3];
    assert!(log.schema.primary_key().is_empty());
    assert_eq!(
        log.schema.fields()[0].logical_type,
        LogicalType::DateTime { precision: 6 }
    );
    let view = &tables[0];
    assert_eq!(view.schema.len(), 2);
}

fn fill_numbers(db: &TestDb, rows: u64) {
    db.exec("CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v VARCHAR(20))");
    db.exec(&format!(
        "INSERT INTO t SELECT seq * 3, CONCAT('v', seq) FROM {}",
        numbers(rows)
    ));
}

#[test]
fn server_keyset_reads_resume_mid_table_with_no_row_skipped_or_repeated() {
    let db = TestDb::new("resume");
    fill_numbers(&db, 1000);
    let expected: Vec<i64> = (0..1000).map(|i| i * 3).collect();
    let mut conn = db.open();

    let mut reader = conn.read(&table_request("t", 7, 1 << 20)).expect("read");
    let chunks = read_all(reader.as_mut());
    assert!(chunks.iter().all(|c| c.batch.num_rows() <= 7));
    assert_eq!(chunks.len(), 1000usize.div_ceil(7));
    assert_eq!(ints(&column_values(&chunks, 0)), expected);

    // Stop after ten chunks, as a run that crashed would; resume after the tenth's cursor.
    let mut reader = conn.read(&table_request("t", 7, 1 << 20)).expect("read");
    let mut first: Vec<i64> = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let c = reader.next_chunk().expect("chunk").expect("not the end");
        first.extend(ints(&column_values(std::slice::from_ref(&c), 0)));
        cursor = c.cursor;
    }
    drop(reader);
    let cursor = cursor.expect("a table read by its key reports the key as cursor");
    assert_eq!(cursor, Value::Int(*first.last().expect("rows")));
    let mut resumed = table_request("t", 50, 1 << 20);
    resumed.from = Bound::Excluded(cursor);
    let mut reader = conn.read(&resumed).expect("resumed read");
    let rest = ints(&column_values(&read_all(reader.as_mut()), 0));
    let mut all = first;
    all.extend(rest);
    assert_eq!(all, expected);

    // Both bounds: ids in [300, 600).
    let mut r = table_request("t", 100, 1 << 20);
    r.from = Bound::Included(Value::Int(300));
    r.to = Bound::Excluded(Value::Int(600));
    let mut reader = conn.read(&r).expect("read");
    let got = ints(&column_values(&read_all(reader.as_mut()), 0));
    assert_eq!(got, (100..200).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn server_composite_keys_are_paged_without_gaps() {
    let db = TestDb::new("composite");
    db.exec("CREATE TABLE c (a INT NOT NULL, b VARCHAR(8) NOT NULL, n INT, PRIMARY KEY (a, b))");
    db.exec(&format!(
        "INSERT INTO c SELECT seq % 10, LPAD(seq DIV 10, 3, '0'), seq FROM {}",
        numbers(1000)
    ));
    let mut conn = db.open();
    let mut reader = conn.read(&table_request("c", 13, 1 << 20)).expect("read");
    let chunks = read_all(reader.as_mut());
    assert!(chunks.len() > 70);
    assert!(chunks.iter().all(|c| c.cursor.is_none()));
    let n = ints(&column_values(&chunks, 2));
    let unique: BTreeSet<i64> = n.iter().copied().collect();
    assert_eq!(n.len(), 1000);
    assert_eq!(unique.len(), 1000);
    // In key order: a, then b.
    let a = ints(&column_values(&chunks, 0));
    assert!(a.windows(2).all(|w| w[0] <= w[1]));
    // A bound needs a cursor column when the key has two columns.
    let mut r = table_request("c", 13, 1 << 20);
    r.from = Bound::Excluded(Value::Int(3));
    let err = conn.read(&r).err().expect("refused");
    assert_eq!(err.code(), ErrorCode::Unsupported);
}

/// `events`: 600 rows, 40 distinct `fecha` values (15 rows each) plus 30 rows whose `fecha` is
/// NULL, ids shuffled against `fecha`.
fn fill_events(db: &TestDb) {
    db.exec(
        "CREATE TABLE events (id INT NOT NULL PRIMARY KEY, fecha DATETIME NULL, \
         importe DECIMAL(10,2) NOT NULL, INDEX (fecha))",
    );
    db.exec(&format!(
        "INSERT INTO events SELECT (seq * 7919) % 1000, \
         IF(seq < 30, NULL, TIMESTAMPADD(DAY, seq % 40, '2024-01-01')), seq / 4 FROM {}",
        numbers(630)
    ));
}

#[test]
fn server_cursor_reads_never_split_a_cursor_value_and_resume_exactly() {
    let db = TestDb::new("cursor");
    fill_events(&db);
    let mut conn = db.open();
    let request = |from: Bound<Value>| {
        let mut r = table_request("events", 7, 1 << 20);
        r.cursor_column = Some("fecha".into());
        r.from = from;
        r
    };
    let mut reader = conn.read(&request(Bound::Unbounded)).expect("read");
    let chunks = read_all(reader.as_mut());
    let fechas = column_values(&chunks, 1);
    assert_eq!(fechas.len(), 630);
    // NULLs first, then ascending.
    assert!(fechas[..30].iter().all(Value::is_null));
    let mut prev = None;
    for v in &fechas[30..] {
        let Value::DateTime(m) = v else {
            panic!("{v:?}")
        };
        assert!(prev.is_none_or(|p| p <= *m));
        prev = Some(*m);
    }
    // A chunk holds all rows of its last cursor value: the next chunk starts with another.
    for pair in chunks.windows(2) {
        let (a, b) = (&pair[0].batch, &pair[1].batch);
        assert_ne!(a.value(a.num_rows() - 1, 1), b.value(0, 1));
        assert_eq!(pair[0].cursor, a.value(a.num_rows() - 1, 1));
    }
    assert!(
        chunks.iter().any(|c| c.batch.num_rows() > 7),
        "15 equal values exceed 7 rows"
    );

    // Resuming after any chunk's cursor gives exactly the rows of the later chunks.
    for k in [0, 1, 5, chunks.len() / 2, chunks.len() - 1] {
        let cursor = chunks[k].cursor.clone().expect("cursor");
        let mut reader = conn
            .read(&request(Bound::Excluded(cursor)))
            .expect("resume");
        let got: BTreeSet<i64> = ints(&column_values(&read_all(reader.as_mut()), 0))
            .into_iter()
            .collect();
        let want: BTreeSet<i64> = ints(&column_values(&chunks[k + 1..], 0))
            .into_iter()
            .collect();
        assert_eq!(got, want, "resuming after chunk {k}");
    }

    // An upper bound keeps the NULLs (they sort first) and stops before the value.
    let mut r = request(Bound::Unbounded);
    r.to = Bound::Excluded(fechas[30 + 15 * 3].clone());
    let mut reader = conn.read(&r).expect("read");
    assert_eq!(
        column_values(&read_all(reader.as_mut()), 1).len(),
        30 + 15 * 3
    );
}

#[test]
fn server_chunks_respect_the_byte_limit() {
    let db = TestDb::new("bytes");
    db.exec("CREATE TABLE wide (id INT NOT NULL PRIMARY KEY, body TEXT)");
    db.exec(&format!(
        "INSERT INTO wide SELECT seq, REPEAT('x', 1000) FROM {}",
        numbers(200)
    ));
    let mut conn = db.open();
    let mut reader = conn
        .read(&table_request("wide", 10_000, 10_000))
        .expect("read");
    let chunks = read_all(reader.as_mut());
    assert!(chunks.len() >= 18, "{} chunks", chunks.len());
    for c in &chunks {
        // A chunk ends at the first row that reaches the limit.
        assert!(
            c.batch.byte_size() <= 10_000 + 1_100,
            "{}",
            c.batch.byte_size()
        );
    }
    assert_eq!(column_values(&chunks, 0).len(), 200);
}

#[test]
fn server_queries_see_from_and_to_and_keep_exact_types() {
    let db = TestDb::new("query");
    fill_events(&db);
    let mut conn = db.open();
    let text = "SELECT id, fecha, importe * 2 AS doble, CONCAT('n', id) AS nombre \
                FROM events WHERE fecha >= @from AND fecha < @to";
    let mut r = ReadRequest::table("unused");
    r.target = ReadTarget::Query(text.into());
    r.cursor_column = Some("fecha".into());
    r.limits = ChunkLimits {
        max_rows: 50,
        max_bytes: 1 << 20,
    };
    // Unbounded: every dated row (the query itself leaves out NULL dates).
    let mut reader = conn.read(&r).expect("query");
    let schema = reader.schema().clone();
    assert!(
        matches!(
            schema.fields()[2].logical_type,
            LogicalType::Decimal { scale: 2, .. }
        ),
        "{:?}",
        schema.fields()[2]
    );
    let chunks = read_all(reader.as_mut());
    assert_eq!(column_values(&chunks, 0).len(), 600);
    assert_eq!(
        chunks.last().and_then(|c| c.cursor.clone()),
        column_values(&chunks, 1).last().cloned()
    );
    // Bounded: the second to fourth day.
    let micros = |d: i64| (19_723 + d) * 86_400_000_000;
    let day = |d: i64| Value::DateTime(micros(d));
    r.from = Bound::Included(day(1));
    r.to = Bound::Excluded(day(4));
    let mut reader = conn.read(&r).expect("query");
    let chunks = read_all(reader.as_mut());
    let fechas = column_values(&chunks, 1);
    assert_eq!(fechas.len(), 45);
    assert!(
        fechas
            .iter()
            .all(|f| matches!(f, Value::DateTime(m) if *m >= micros(1) && *m < micros(4))),
        "{fechas:?}"
    );
    let importe = db.scalar(
        "SELECT CAST(SUM(importe * 2) AS CHAR) FROM events \
         WHERE fecha >= '2024-01-02' AND fecha < '2024-01-05'",
    );
    let sum: i128 = column_values(&chunks, 2)
        .iter()
        .map(|v| match v {
            Value::Decimal { unscaled, scale: 2 } => *unscaled,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(importe, Some(format!("{}.{:02}", sum / 100, sum % 100)));
}

#[test]
fn server_bad_requests_are_clear_errors() {
    let db = TestDb::new("badreq");
    fill_numbers(&db, 10);
    db.exec("CREATE TABLE nokey (v INT)");
    db.exec("INSERT INTO nokey VALUES (1), (2), (NULL)");
    let mut conn = db.open();
    let err = conn
        .read(&ReadRequest::table("nope"))
        .err()
        .expect("missing table");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(
        err.message().contains("`nope`") && err.message().contains("test_conn"),
        "{err}"
    );
    let mut r = ReadRequest::table("t");
    r.cursor_column = Some("fecha".into());
    let err = conn.read(&r).err().expect("missing cursor column");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(
        err.message().contains("`fecha`") && err.message().contains("id, v"),
        "{err}"
    );
    let mut r = ReadRequest::table("x");
    r.target = ReadTarget::Query("SELEC broken".into());
    let err = conn.read(&r).err().expect("bad query");
    assert_eq!(err.code(), ErrorCode::Database);
    assert!(!err.is_retryable());
    // A table without a key is read in one statement; bounds need a cursor column.
    let mut reader = conn.read(&ReadRequest::table("nokey")).expect("read");
    assert_eq!(column_values(&read_all(reader.as_mut()), 0).len(), 3);
    let mut r = ReadRequest::table("nokey");
    r.from = Bound::Included(Value::Int(1));
    assert_eq!(
        conn.read(&r).err().expect("refused").code(),
        ErrorCode::Unsupported
    );
    // Qualified names work across databases of the same server.
    let other = format!("{}.t", db.name);
    let mut reader = conn.read(&ReadRequest::table(other)).expect("qualified");
    assert_eq!(column_values(&read_all(reader.as_mut()), 0).len(), 10);
}

#[test]
fn server_a_reader_outlives_its_connection() {
    let db = TestDb::new("outlive");
    fill_numbers(&db, 500);
    let mut conn = db.open();
    let mut reader = conn.read(&table_request("t", 10, 1 << 20)).expect("read");
    let first = reader.next_chunk().expect("chunk").expect("rows");
    // Closing waits a bounded time for the reader's connection, then returns.
    let started = std::time::Instant::now();
    caudal_connector::Connector::close(&mut conn).expect("close");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(conn);
    let rest = read_all(reader.as_mut());
    let mut ids = ints(&column_values(std::slice::from_ref(&first), 0));
    ids.extend(ints(&column_values(&rest, 0)));
    assert_eq!(ids, (0..500).map(|i| i * 3).collect::<Vec<_>>());
}
