//! The jobs users run today on MySQL, as `caudal run` end to end against the real server,
//! through the mysql and DuckDB plugins (dlopen, as in production): the restaurants'
//! consolidation ("apertura" then "cierre"), one source into MySQL and DuckDB at once, every
//! MySQL type there and back through DuckDB, a destination connection killed mid-run, and an
//! insert the destination refuses until it is fixed. Each test ends with the destination's
//! table digest (computed by the sink from the table) equal to the digest of the source's rows
//! (read through the plugin), row counts included.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests) and
//! the server of `mysql_support` (MariaDB at 127.0.0.1:3306 by default).

mod engine_support;
mod mysql_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use caudal_connector::{Batch, TableDigest};
use caudal_journal::EntryKind;
use engine_support::*;
use mysql_support::{Admin, Db, numbers};

fn same(b: Batch) -> Batch {
    b
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `WriteFailed` entries of a journal: (batch seq, destination, attempt, error).
fn write_failures(journal: &std::path::Path) -> Vec<(u64, String, u32, String)> {
    entries(journal)
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::WriteFailed {
                batch_seq,
                destination,
                attempt,
                error,
                ..
            } => Some((batch_seq, destination, attempt, error)),
            _ => None,
        })
        .collect()
}

const PEDIDOS: &str = "CREATE TABLE pedidos (id INT NOT NULL PRIMARY KEY, \
    mesa SMALLINT NOT NULL, plato VARCHAR(60) NOT NULL, cantidad INT NOT NULL, \
    precio DECIMAL(10,2) NOT NULL, nota VARCHAR(200) NULL, actualizado DATETIME(6) NOT NULL, \
    KEY (actualizado))";

/// `count` orders from id `first`, stamped from `at` on, one every second and a bit.
fn pedidos(db: &Db, first: u64, count: u64, at: &str, seed: u64) {
    db.exec(&format!(
        "INSERT INTO pedidos SELECT {first} + n, (n * 7) % 30 + 1, CONCAT('plato ', (n + {seed}) % 97), \
         n % 5 + 1, ((n * 37 + {seed}) % 5000) / 100 + 1, IF(n % 9 = 0, NULL, CONCAT('sin ', n % 13)), \
         TIMESTAMPADD(MICROSECOND, n * 1000003, '{at}') FROM {}",
        numbers(count)
    ));
}

#[test]
fn restaurants_consolidate_into_one_database_with_an_apertura_then_a_cierre() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let restaurants = [
        ("restaurante_a", Db::new("restaurante_a"), 1200),
        ("restaurante_b", Db::new("restaurante_b"), 900),
        ("restaurante_c", Db::new("restaurante_c"), 1500),
    ];
    let unificado = Db::new("restaurante_unificado");
    let mut body = String::new();
    for (i, (name, db, rows)) in restaurants.iter().enumerate() {
        db.exec(PEDIDOS);
        // The same order ids in every restaurant: `_source` keeps them apart.
        pedidos(db, 1, *rows, "2025-01-10 08:00:00", i as u64);
        body += &db.connection(name);
    }
    body += &unificado.connection("unificado");
    body += "[[streams]]\nfrom = \"restaurante_*\"\ntable = \"pedidos\"\nto = \"unificado\"\n\
             mode = \"consolidate\"\ncursor = \"actualizado\"\nchunk_rows = 500\n";
    let file = pipeline(dir.path(), &body);
    let expected = |restaurants: &[(&str, Db, u64)]| {
        let mut all = (TableDigest::new(), 0);
        for (name, db, _) in restaurants {
            let shape = |b: Batch| reshape(b, &["id"], Some(("_source", *name)));
            let (d, rows) = db.read_digest("pedidos", "pedidos", &shape);
            all.0.combine(&d);
            all.1 += rows;
        }
        all
    };

    // Apertura: everything.
    run_ok(&["run", s(&file), "--progress", "none"]);
    unificado.assert_holds("pedidos", &journal, "pedidos", &expected(&restaurants));
    let per_source =
        unificado.rows("SELECT _source, COUNT(*) FROM pedidos GROUP BY _source ORDER BY _source");
    let per_source: Vec<(String, String)> = per_source
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        per_source,
        [
            ("restaurante_a".to_owned(), "1200".to_owned()),
            ("restaurante_b".to_owned(), "900".to_owned()),
            ("restaurante_c".to_owned(), "1500".to_owned())
        ]
    );

    // The day goes on: orders change in a and c, new ones arrive in b and c.
    let (a, b, c) = (&restaurants[0].1, &restaurants[1].1, &restaurants[2].1);
    let later = "TIMESTAMPADD(MICROSECOND, id, '2025-01-10 23:00:00')";
    assert_eq!(
        a.exec(&format!(
            "UPDATE pedidos SET cantidad = cantidad + 1, nota = NULL, actualizado = {later} \
             WHERE id % 120 = 7"
        )),
        10
    );
    pedidos(b, 901, 25, "2025-01-10 22:00:00", 5);
    assert_eq!(
        c.exec(&format!(
            "UPDATE pedidos SET precio = precio * 2, actualizado = {later} WHERE id IN (3, 30, 300, 1000, 1500)"
        )),
        5
    );
    pedidos(c, 1501, 7, "2025-01-10 22:30:00", 9);

    // Cierre: only what changed since.
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_eq!(rows_per_run(&journal), [3600, 10 + 25 + 5 + 7]);
    unificado.assert_holds("pedidos", &journal, "pedidos", &expected(&restaurants));
    assert_eq!(unificado.count("pedidos"), 3600 + 25 + 7);
    // Nothing changed: nothing read.
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_eq!(rows_per_run(&journal).last(), Some(&0));
    let status = run_ok(&["status", "--file", s(&file)]);
    assert!(
        status.contains("restaurante_b") && status.contains("unificado: ok"),
        "{status}"
    );
    verify(&journal);
}

const VENTAS: &str = "CREATE TABLE ventas (id BIGINT NOT NULL PRIMARY KEY, tienda VARCHAR(20) NOT NULL, \
    fecha DATE NOT NULL, producto VARCHAR(40) NULL, cantidad INT NOT NULL, precio DECIMAL(12,2) NULL, \
    KEY (fecha))";

/// `count` sales lines from id `first`, 200 a day from 2025-01-01 + `first` / 200 days.
fn ventas(db: &Db, first: u64, count: u64) {
    db.exec(&format!(
        "INSERT INTO ventas SELECT {first} + n, CONCAT('t', n % 4), \
         DATE_ADD('2025-01-01', INTERVAL ({first} + n) DIV 200 DAY), \
         IF(n % 11 = 0, NULL, CONCAT('P', LPAD(n % 500, 4, '0'))), n % 5 + 1, \
         IF(n % 13 = 0, NULL, (n % 9000) * 0.25 + 1.5) FROM {}",
        numbers(count)
    ));
}

#[test]
fn one_mysql_source_fills_a_mysql_and_a_duckdb_destination_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let origen = Db::new("ventas_origen");
    let reportes = Db::new("ventas_reportes");
    origen.exec(VENTAS);
    ventas(&origen, 0, 4000);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}{}[connections.warehouse]\nconnector = \"duckdb\"\npath = \"warehouse.duckdb\"\n\n\
             [[streams]]\nfrom = \"origen\"\ntable = \"ventas\"\nto = [\"reportes\", \"warehouse\"]\n\
             mode = \"incremental\"\ncursor = \"fecha\"\nchunk_rows = 700\n",
            origen.connection("origen"),
            reportes.connection("reportes")
        ),
    );
    let warehouse = dir.path().join("warehouse.duckdb");
    run_ok(&["run", s(&file), "--progress", "none"]);
    let expected = origen.read_digest("ventas", "ventas", &same);
    assert_eq!(expected.1, 4000);
    reportes.assert_holds("ventas", &journal, "ventas", &expected);
    assert_holds(&warehouse, "ventas", &journal, "ventas", &expected);

    // Two more days: the next run brings them to both.
    ventas(&origen, 4000, 400);
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_eq!(rows_per_run(&journal), [4000, 400]);
    let expected = origen.read_digest("ventas", "ventas", &same);
    reportes.assert_holds("ventas", &journal, "ventas", &expected);
    assert_holds(&warehouse, "ventas", &journal, "ventas", &expected);
    let status = run_ok(&["status", "--file", s(&file)]);
    assert!(
        status.contains("reportes: ok") && status.contains("warehouse: ok"),
        "{status}"
    );
    verify(&journal);
}

/// Every MySQL type of the connector's mapping, each nullable.
const TIPOS: &str = "CREATE TABLE tipos (id INT NOT NULL PRIMARY KEY, \
    i8 TINYINT NULL, u8 TINYINT UNSIGNED NULL, i16 SMALLINT NULL, u16 SMALLINT UNSIGNED NULL, \
    i24 MEDIUMINT NULL, u24 MEDIUMINT UNSIGNED NULL, i32 INT NULL, u32 INT UNSIGNED NULL, \
    i64 BIGINT NULL, u64 BIGINT UNSIGNED NULL, \
    d5 DECIMAL(5,0) NULL, d12 DECIMAL(12,2) NULL, d38 DECIMAL(38,10) NULL, d50 DECIMAL(50,20) NULL, \
    f FLOAT NULL, g DOUBLE NULL, b1 BIT(1) NULL, b12 BIT(12) NULL, b64 BIT(64) NULL, flag BOOL NULL, \
    dia DATE NULL, hora TIME NULL, hora6 TIME(6) NULL, \
    dt0 DATETIME NULL, dt1 DATETIME(1) NULL, dt2 DATETIME(2) NULL, dt3 DATETIME(3) NULL, \
    dt4 DATETIME(4) NULL, dt5 DATETIME(5) NULL, dt6 DATETIME(6) NULL, \
    ts TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL, anio YEAR NULL, \
    ch CHAR(10) NULL, vc VARCHAR(100) NULL, \
    tt TINYTEXT NULL, tx TEXT NULL, mt MEDIUMTEXT NULL, lt LONGTEXT NULL, \
    bn BINARY(4) NULL, vb VARBINARY(20) NULL, \
    tb TINYBLOB NULL, bl BLOB NULL, mb MEDIUMBLOB NULL, lb LONGBLOB NULL, \
    js JSON NULL, en ENUM('rojo','verde','azul') NULL, st SET('a','b','c') NULL)";

const TIPOS_COLUMNS: usize = 49;

/// The smallest values, the largest, a row of NULLs, and 200 rows in between.
fn tipos(db: &Db) {
    db.exec(TIPOS);
    db.exec(
        "INSERT INTO tipos VALUES (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, \
         -9223372036854775808, 0, -99999, -9999999999.99, -9999999999999999999999999999.9999999999, \
         -123456789012345678901234567890.12345678901234567890, -1.5e38, -1.7976931348623157e308, \
         b'0', b'000000000000', 0, 0, '1000-01-01', '00:00:00', '00:00:00.000000', \
         '1000-01-01 00:00:00', '1000-01-01 00:00:00.0', '1000-01-01 00:00:00.00', \
         '1000-01-01 00:00:00.000', '1000-01-01 00:00:00.0000', '1000-01-01 00:00:00.00000', \
         '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01', '1970-01-01 00:00:01.000001', 1901, \
         '', '', '', '', '', '', x'00000000', '', '', '', '', '', '{}', 'rojo', '')",
    );
    db.exec(
        "INSERT INTO tipos VALUES (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, \
         4294967295, 9223372036854775807, 18446744073709551615, 99999, 9999999999.99, \
         9999999999999999999999999999.9999999999, \
         999999999999999999999999999999.99999999999999999999, 3.4e38, 1.7976931348623157e308, \
         b'1', b'111111111111', 18446744073709551615, 1, '9999-12-31', '23:59:59', \
         '23:59:59.999999', '9999-12-31 23:59:59', '9999-12-31 23:59:59.9', \
         '9999-12-31 23:59:59.99', '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.9999', \
         '9999-12-31 23:59:59.99999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07', \
         '2038-01-19 03:14:07.999999', 2155, 'abcdefghij', 'ñandú 漢字 😀 \\\\ \\' \"', \
         REPEAT('t', 255), REPEAT('texto ', 10000), REPEAT('medio ', 100000), REPEAT('largo ', 400000), \
         x'DEADBEEF', x'00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF', x'00', REPEAT(x'00FF', 30000), \
         REPEAT(x'0102', 200000), REPEAT(x'FE', 1000000), '{\"a\": [1, 2.5, \"x\"], \"b\": null}', \
         'azul', 'a,b,c')",
    );
    let nulls = vec!["NULL"; TIPOS_COLUMNS - 1].join(", ");
    db.exec(&format!("INSERT INTO tipos VALUES (3, {nulls})"));
    db.exec(&format!(
        "INSERT INTO tipos SELECT 10 + n, n - 100, n, n * 100 - 10000, n * 300, n * 40000 - 4000000, \
         n * 80000, n * 10000000 - 1000000000, n * 20000000, (n - 100) * 90000000000000000, \
         CAST(n AS UNSIGNED) * 90000000000000000, n * 499 - 49900, n * 12345.67 - 1234567.89, \
         (n - 100) * 123456789012345678.0123456789, CONCAT(n, '12345678901234567890.', LPAD(n, 20, '7')), \
         (n - 100) / 3, (n - 100) / 7 * 1e100, n % 2, n * 20, n * 91234567890123, n % 2 = 0, \
         DATE_ADD('1970-01-01', INTERVAL n * 97 DAY), SEC_TO_TIME(n * 431), \
         SEC_TO_TIME(n * 431 + n / 1000), \
         TIMESTAMPADD(SECOND, n * 86399, '2000-02-28'), TIMESTAMPADD(MICROSECOND, n * 100000, '2000-02-29'), \
         TIMESTAMPADD(MICROSECOND, n * 10000, '2000-03-01'), TIMESTAMPADD(MICROSECOND, n * 1000, '2000-03-02'), \
         TIMESTAMPADD(MICROSECOND, n * 100, '2000-03-03'), TIMESTAMPADD(MICROSECOND, n * 10, '2000-03-04'), \
         TIMESTAMPADD(MICROSECOND, n * 123457, '1969-12-31'), TIMESTAMPADD(SECOND, n * 9999999, '1971-01-01'), \
         TIMESTAMPADD(MICROSECOND, n * 9999999123, '1971-01-01'), 1901 + n, \
         IF(n % 3 = 0, CONCAT(' x', n), LEFT(CONCAT('c', n, 'zzzzzzzzzz'), 10)), \
         CONCAT('v', n, IF(n % 2 = 0, ' trailing  ', 'Á')), CONCAT('tt', n), REPEAT(CONCAT('tx', n), n), \
         REPEAT('m', n * 10), REPEAT('l', n * 100), UNHEX(LPAD(HEX(n), 8, '0')), UNHEX(LPAD(HEX(n * 7919), 8, '0')), \
         UNHEX(REPEAT(LPAD(HEX(n), 2, '0'), n % 50)), UNHEX(REPEAT('00FF', n)), UNHEX(REPEAT('AB', n * 3)), \
         UNHEX(REPEAT('CD', n * 5)), JSON_OBJECT('n', n, 'par', n % 2 = 0, 'txt', CONCAT('v', n)), \
         ELT(n % 3 + 1, 'rojo', 'verde', 'azul'), ELT(n % 4 + 1, '', 'a', 'b,c', 'a,c') FROM {}",
        numbers(200)
    ));
    assert_eq!(db.count("tipos"), 203);
}

#[test]
fn every_mysql_type_goes_to_duckdb_and_back_with_equal_digests() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let origen = Db::new("tipos_origen");
    let destino = Db::new("tipos_destino");
    tipos(&origen);
    // Two streams in one run: `vuelta` reads what `ida` writes, so it runs after it.
    let file = pipeline(
        dir.path(),
        &format!(
            "{}{}[connections.pato]\nconnector = \"duckdb\"\npath = \"pato.duckdb\"\n\n\
             [[streams]]\nname = \"ida\"\nfrom = \"origen\"\ntable = \"tipos\"\nto = \"pato\"\nchunk_rows = 50\n\n\
             [[streams]]\nname = \"vuelta\"\nfrom = \"pato\"\ntable = \"tipos\"\nto = \"destino\"\n\
             primary_key = [\"id\"]\nchunk_rows = 50\n",
            origen.connection("origen"),
            destino.connection("destino")
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    let expected = origen.read_digest("tipos", "tipos", &same);
    assert_eq!(expected.1, 203);
    let schema = stream_schema(&journal, "ida");
    assert_eq!(schema.len(), TIPOS_COLUMNS);
    let in_duckdb = table_digest(&dir.path().join("pato.duckdb"), "tipos", &schema);
    assert_eq!(in_duckdb.rows(), 203);
    assert_eq!(in_duckdb, expected.0, "DuckDB's copy differs from MySQL's");
    // The way back starts from DuckDB's types (bit(64) came back as an unsigned integer).
    assert_ne!(stream_schema(&journal, "vuelta"), schema);
    assert_eq!(
        destino.rows(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = 'tipos' AND COLUMN_NAME = 'b64'"
        ),
        [[Some("bigint".to_owned())]]
    );
    destino.assert_holds("tipos", &journal, "vuelta", &expected);
    // Read back as any reader would, in the types the table was created with.
    let back = destino.read_digest("tipos", "tipos", &same);
    assert_eq!(back, expected, "MySQL -> DuckDB -> MySQL changed a value");
    // A spot check in SQL of what digests cannot show: the values as MySQL prints them.
    for column in ["u64", "d38", "d50", "dt6", "ts6", "vc", "js", "en", "st"] {
        let sql = |db: &Db| {
            db.rows(&format!(
                "SELECT CAST(`{column}` AS CHAR) FROM tipos WHERE id IN (1, 2, 3, 57) ORDER BY id"
            ))
        };
        assert_eq!(sql(&origen), sql(&destino), "column {column}");
    }
    verify(&journal);
}

const MOVIMIENTOS: &str = "CREATE TABLE movimientos (id BIGINT NOT NULL, cuenta INT NOT NULL, \
    importe DECIMAL(14,2) NOT NULL, concepto VARCHAR(80) NOT NULL, fecha DATETIME(6) NOT NULL, \
    KEY (id))";

/// Polls the server for an `INSERT` (a prepared one shows as `Execute`) into `database` running after at least one batch was
/// applied there, and `KILL`s its connection. Returns its id, or `None` after `patience`.
fn kill_an_insert(database: &str, patience: Duration) -> Option<(u64, String)> {
    let mut admin = Admin::connect();
    let started = Instant::now();
    let offsets = format!(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}' \
         AND TABLE_NAME = '_caudal_offsets'"
    );
    let mut applied = false;
    while started.elapsed() < patience {
        if !applied {
            applied = admin.number(&offsets) == 1
                && admin.number(&format!(
                    "SELECT COALESCE(MAX(seq), 0) FROM `{database}`.`_caudal_offsets`"
                )) > 0;
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let running = admin.rows(&format!(
            "SELECT ID, LEFT(INFO, 60) FROM information_schema.PROCESSLIST WHERE DB = '{database}' \
             AND COMMAND IN ('Query', 'Execute') AND INFO LIKE 'INSERT INTO%movimientos%'"
        ));
        if let Some(row) = running.first() {
            let id: u64 = row[0].as_deref().unwrap().parse().unwrap();
            // The statement may end between the look and the kill; then look again.
            if admin.try_exec(&format!("KILL {id}")).is_ok() {
                return Some((id, row[1].clone().unwrap_or_default()));
            }
        }
    }
    None
}

#[test]
fn a_destination_connection_killed_mid_run_is_journaled_and_retried_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let origen = Db::new("movimientos_origen");
    let destino = Db::new("movimientos_destino");
    origen.exec(MOVIMIENTOS);
    let rows = 200_000;
    origen.exec(&format!(
        "INSERT INTO movimientos SELECT n, n % 977, (n % 100000) / 100 - 300, \
         CONCAT('movimiento ', n, ' de la cuenta ', n % 977), \
         TIMESTAMPADD(MICROSECOND, n * 1000, '2025-03-01') FROM {}",
        numbers(rows)
    ));
    // No primary key anywhere: the destination gets plain INSERTs, so a batch written twice
    // would show as duplicated rows.
    let file = pipeline(
        dir.path(),
        &format!(
            "{}{}[[streams]]\nfrom = \"origen\"\ntable = \"movimientos\"\nto = \"destino\"\n\
             mode = \"incremental\"\ncursor = \"id\"\nchunk_rows = 10000\n\n\
             [retry]\nmax_attempts = 5\nevery = \"300ms\"\n",
            origen.connection("origen"),
            destino.connection("destino")
        ),
    );
    let child = caudal()
        .args(["run", s(&file), "--progress", "none"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("caudal runs");
    let database = destino.name.clone();
    let killer = std::thread::spawn(move || kill_an_insert(&database, Duration::from_secs(120)));
    let out = child.wait_with_output().unwrap();
    let killed = killer.join().unwrap();
    assert!(
        killed.is_some(),
        "the run ended before an INSERT could be killed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the retry should finish the run; exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );

    let failures = write_failures(&journal);
    assert!(
        !failures.is_empty(),
        "the killed write is journaled (killed {killed:?})"
    );
    let (seq, destination, attempt, error) = &failures[0];
    eprintln!("killed {killed:?}; journaled: {error}");
    assert_eq!((destination.as_str(), *attempt), ("destino", 1), "{error}");
    let applied_later = entries(&journal).into_iter().any(|e| {
        matches!(e.kind, EntryKind::WriteApplied { batch_seq, ref destination, .. }
                 if batch_seq == *seq && destination == "destino")
    });
    assert!(
        applied_later,
        "batch {seq} applied by a retry after: {error}"
    );
    assert!(
        run_ok(&["failures", "--file", s(&file), "--json"])
            .trim()
            .is_empty()
    );

    assert_eq!(destino.count("movimientos"), rows as i64);
    assert_eq!(
        destino.number("SELECT COUNT(DISTINCT id) FROM movimientos"),
        rows as i64,
        "no row duplicated"
    );
    let expected = origen.read_digest("movimientos", "movimientos", &same);
    destino.assert_holds("movimientos", &journal, "movimientos", &expected);
    verify(&journal);
}

const CLIENTES: &str = "CREATE TABLE clientes (id INT NOT NULL PRIMARY KEY, \
    nombre VARCHAR({n}) NOT NULL, ciudad VARCHAR(40) NULL, alta DATE NOT NULL)";

#[test]
fn an_insert_refused_for_a_too_long_value_is_listed_then_retried_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let origen = Db::new("clientes_origen");
    let destino = Db::new("clientes_destino");
    origen.exec(&CLIENTES.replace("{n}", "80"));
    // The destination's table was made by hand, with a column too short for some names.
    destino.exec(&CLIENTES.replace("{n}", "20"));
    origen.exec(&format!(
        "INSERT INTO clientes SELECT n, IF(n BETWEEN 2500 AND 2510, \
         CONCAT('cliente de nombre muy largo ', n), CONCAT('cliente ', n)), \
         IF(n % 7 = 0, NULL, ELT(n % 3 + 1, 'Lima', 'Quito', 'La Paz')), \
         DATE_ADD('2020-01-01', INTERVAL n DAY) FROM {}",
        numbers(3000)
    ));
    let file = pipeline(
        dir.path(),
        &format!(
            "{}{}[[streams]]\nfrom = \"origen\"\ntable = \"clientes\"\nto = \"destino\"\n\
             mode = \"incremental\"\ncursor = \"id\"\nchunk_rows = 1000\n\n\
             [retry]\nmax_attempts = 2\nevery = \"100ms\"\n",
            origen.connection("origen"),
            destino.connection("destino")
        ),
    );
    let out = run(&["run", s(&file), "--progress", "none"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failures = write_failures(&journal);
    assert!(!failures.is_empty());
    assert!(
        failures[0].3.to_lowercase().contains("too long"),
        "the server's error: {}",
        failures[0].3
    );
    let listed = json_lines(&run_ok(&["failures", "--file", s(&file), "--json"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["destination"], "destino");
    assert_eq!(listed[0]["batches"], 1, "only the third batch fails");
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nombre"),
        "the column is named: {}",
        listed[0]["error"]
    );
    assert_eq!(destino.count("clientes"), 2000);

    // The fix, then the retry from the journal.
    destino.exec("ALTER TABLE clientes MODIFY nombre VARCHAR(80) NOT NULL");
    let retried: serde_json::Value =
        serde_json::from_str(&run_ok(&["retry", "--file", s(&file), "--json"])).unwrap();
    assert_eq!(retried["ok"], true, "{retried}");
    assert!(
        run_ok(&["failures", "--file", s(&file), "--json"])
            .trim()
            .is_empty(),
        "applied, so no longer listed"
    );
    let expected = origen.read_digest("clientes", "clientes", &same);
    destino.assert_holds("clientes", &journal, "clientes", &expected);
    verify(&journal);
}

/// `caudal bench mysql` on a small table: every figure has its rows and the CPU time of the
/// process that did the work; the server's CPU is read (it runs on this machine) for every
/// figure it took part in; and the floor of MySQL -> DuckDB is derived from them.
#[test]
fn bench_mysql_reports_each_figure_with_its_cpu_time_and_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let url = mysql_support::server_url();
    let out = run_ok(&[
        "bench",
        "mysql",
        "--rows",
        "3000",
        "--json",
        "--url",
        &url,
        "--dir",
        s(dir.path()),
    ]);
    let lines = json_lines(&out);
    let (ratios, figures): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l["figure"] == "ratios");
    let names: Vec<&str> = figures
        .iter()
        .map(|f| f["figure"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bare sqlx read (read limit)",
            "MySQL -> DuckDB (caudal run)",
            "DuckDB write, in process (write limit)",
            "DuckDB -> MySQL (caudal run)",
            "LOAD DATA LOCAL INFILE (write limit)",
        ],
        "{out}"
    );
    for f in &figures {
        assert_eq!(f["rows"], 3000, "{f}");
        assert!(f["cpu_s"].as_f64().is_some_and(|s| s > 0.0), "{f}");
        let server = f["server_cpu_s"].as_f64();
        if f["figure"] == "DuckDB write, in process (write limit)" {
            assert_eq!(server, None, "{f}");
        } else {
            assert!(server.is_some_and(|s| s >= 0.0), "{f}");
        }
    }
    let ratios = ratios[0];
    let floor = ratios["mysql_to_duckdb_floor_s"].as_f64().unwrap();
    let (server, driver, write) = (
        figures[0]["server_cpu_s"].as_f64().unwrap(),
        figures[0]["cpu_s"].as_f64().unwrap(),
        figures[2]["cpu_s"].as_f64().unwrap(),
    );
    let cores = ratios["cores"].as_f64().unwrap();
    assert!(
        (floor - (server + driver + write) / cores).abs() < 1e-9,
        "{ratios}"
    );
    assert!(
        ratios["mysql_to_duckdb_vs_duckdb_write"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{ratios}"
    );
    // The scratch directory is removed at the end.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `caudal bench mysql` against a server that is not there: one error naming the server
/// without its password, each cause said once.
#[test]
fn bench_mysql_names_a_server_it_cannot_reach_once_and_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mysql://root:Sup3rS3cret@127.0.0.1:{port}");
    let out = run(&["bench", "mysql", "--url", &url, "--rows", "10"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to mysql://root:***@127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("Sup3rS3cret"), "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}
