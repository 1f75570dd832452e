//! Every SQL Server type, NULL of each, SQL Server -> DuckDB -> SQL Server with the `caudal`
//! binary and the mssql and duckdb plugins: the digests of the origin table, of DuckDB's copy
//! and of the table created back in SQL Server are equal.
//!
//! Runs against the TDS test server of `tests/tds-server` (a wire-level double of SQL Server
//! backed by DuckDB, not a SQL Server). Needs `cargo build --release --workspace` first.

mod engine_support;

use caudal::host::{Connection, Plugin, plugin_file_name};
use caudal_connector::{
    ChunkLimits, DigestRequest, KeyRange, OpenContext, ReadRequest, Schema, TableDigest,
};
use caudal_tds_server::TdsServer;
use engine_support::*;

const USER: &str = "etl";
const PASSWORD: &str = "Round-trip-pw-5521";

const TIPOS: &str = "CREATE TABLE tipos (id int NOT NULL PRIMARY KEY, c_bit bit NULL, \
    c_tinyint tinyint NULL, c_smallint smallint NULL, c_int int NULL, c_bigint bigint NULL, \
    c_decimal decimal(18, 4) NULL, c_numeric numeric(38, 10) NULL, c_money money NULL, \
    c_smallmoney smallmoney NULL, c_real real NULL, c_float float NULL, c_date date NULL, \
    c_time time(7) NULL, c_datetime datetime NULL, c_datetime2 datetime2(6) NULL, c_dt2_7 datetime2(7) NULL, \
    c_smalldatetime smalldatetime NULL, c_dto datetimeoffset(7) NULL, c_char char(4) NULL, \
    c_varchar varchar(20) NULL, c_nchar nchar(3) NULL, c_nvarchar nvarchar(max) NULL, \
    c_text text NULL, c_ntext ntext NULL, c_binary binary(4) NULL, \
    c_varbinary varbinary(max) NULL, c_uuid uniqueidentifier NULL)";

/// Typical values, the extremes of each type, a row of NULLs, and 300 generated rows.
const ROWS: &[&str] = &[
    "INSERT INTO tipos VALUES (1, 1, 200, -12345, 1234567, -9000000000, 12345.6789, \
     -0.0000000005, 1.9999, -0.0001, 1.5, -0.6666666666666666, '2024-01-01', '12:34:56.1234567', \
     '2024-01-01 00:00:00.003', '2024-01-01 00:00:00.000001', '2024-01-01 00:00:00.0000001', '2024-01-01 12:34:00', \
     '2024-01-01 00:00:00.0000007 +05:30', 'abcd', 'ano', N'東京都', N'línea nueva, ''citada''', \
     'texto largo', N'ñandú', 0x000102FF, 0x, '12345678-9ABC-DEF0-0123-456789ABCDEF')",
    "INSERT INTO tipos VALUES (2, 0, 0, -32768, 2147483647, -9223372036854775808, \
     99999999999999.9999, -9999999999999999999999999999.9999999999, 922337203685477.5807, \
     -214748.3648, 3.4028235E38, 2.2250738585072014E-308, '0001-01-01', '23:59:59.9999999', \
     '9999-12-31 23:59:59.997', '0001-01-01 00:00:00', '1677-09-22 00:00:00', '1900-01-01 00:00:00', \
     '9999-12-31 09:59:59.9999999 -14:00', '    ', '', N'a  ', N'', '', N'', 0x00000000, \
     0x07070707070707070707, 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF')",
    "INSERT INTO tipos (id) VALUES (3)",
];

/// 300 more rows, as literals (one INSERT of many VALUES rows).
fn generated() -> String {
    let rows: Vec<String> = (0..300i64)
        .map(|n| {
            let day = 1 + n % 28;
            let month = 1 + n % 12;
            format!(
                "({id}, {bit}, {tiny}, {small}, {int}, {big}, {dec}.{decf:04}, -{num}.{numf:010}, \
                 {money}.{moneyf:04}, -{sm}.{smf:04}, {real}, {float:e}, '20{yy:02}-{month:02}-{day:02}', \
                 '{hh:02}:{mi:02}:{ss:02}.{frac:07}', '2010-{month:02}-{day:02} 10:20:30.{ms:03}', \
                 '2015-{month:02}-{day:02} 01:02:03.{micro:06}', '2215-{month:02}-{day:02} 01:02:03.{frac:07}', '2020-{month:02}-{day:02} {hh:02}:{mi:02}:00', \
                 '2021-{month:02}-{day:02} 05:06:07.{frac:07} {sign}{oh:02}:{om:02}', 'c{c}', 'v{n}', N'n{nc}', \
                 N'{ene}', 'texto {n}', N'{a}', 0x{bin:08X}, 0x{vb}, '{n:08X}-0000-4000-8000-{n:012X}')",
                id = 10 + n,
                bit = n % 2,
                tiny = n % 256,
                small = n * 100 - 15_000,
                int = n * 7_000_000 - 1_000_000_000,
                big = (n - 150) * 30_000_000_000_000,
                dec = n * 37,
                decf = (n * 123) % 10_000,
                num = n * 1_234_567,
                numf = n * 123_456_789 % 10_000_000_000,
                money = n * 1000,
                moneyf = (n * 5) % 10_000,
                sm = n * 3,
                smf = (n * 25) % 10_000,
                real = n as f64 / 8.0,
                float = (n - 150) as f64 / 7.0,
                yy = n % 30,
                hh = n % 24,
                mi = n % 60,
                ss = (n * 7) % 60,
                frac = (n * 1_234_567) % 10_000_000,
                micro = (n * 1_234_567) % 1_000_000,
                ms = [0, 3, 7][(n % 3) as usize] + 10 * (n % 99),
                sign = if n % 2 == 0 { "+" } else { "-" },
                oh = n % 14,
                om = [0, 30, 45][(n % 3) as usize],
                c = n % 100,
                nc = n % 10,
                ene = "ñ".repeat((n % 50) as usize),
                a = "á".repeat((n % 20) as usize),
                bin = n * 7919,
                vb = "AB".repeat((n % 40) as usize),
            )
        })
        .collect();
    format!("INSERT INTO tipos VALUES {}", rows.join(", "))
}

fn mssql() -> Plugin {
    let path = build_dir().join(plugin_file_name("mssql"));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first",
        path.display()
    );
    Plugin::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn url(server: &TdsServer, database: &str) -> String {
    format!("mssql://{USER}:{PASSWORD}@{}/{database}", server.addr())
}

fn open_mssql(server: &TdsServer, database: &str) -> Connection {
    let config = serde_json::json!({ "url": url(server, database), "encrypt": "off" }).to_string();
    let ctx = OpenContext {
        connection: database.into(),
        base_dir: None,
    };
    mssql()
        .open(&ctx, &config)
        .unwrap_or_else(|e| panic!("opening {database}: {e}"))
}

/// Every row of `table` as SQL Server returns it, digested as rows of `as_table`.
fn read_digest_mssql(
    server: &TdsServer,
    database: &str,
    table: &str,
) -> (TableDigest, u64, Schema) {
    let mut conn = open_mssql(server, database);
    let mut digest = TableDigest::new();
    let mut rows = 0;
    let schema;
    {
        let mut request = ReadRequest::table(table);
        request.limits = ChunkLimits {
            max_rows: 64,
            ..ChunkLimits::default()
        };
        let mut reader = conn.read(&request).unwrap();
        schema = (**reader.schema()).clone();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            rows += chunk.batch.num_rows() as u64;
            digest.add_batch("tipos", &chunk.batch);
        }
    }
    conn.close().unwrap();
    (digest, rows, schema)
}

#[test]
fn every_sql_server_type_goes_to_duckdb_and_back_with_equal_digests() {
    let server = TdsServer::builder()
        .credentials(USER, PASSWORD)
        .database("origen")
        .database("destino")
        .start_blocking()
        .unwrap_or_else(|e| panic!("starting the TDS test server: {e}"));
    server.execute("origen", TIPOS).unwrap();
    for sql in ROWS {
        assert_eq!(server.execute("origen", sql).unwrap(), 1, "{sql}");
    }
    assert_eq!(server.execute("origen", &generated()).unwrap(), 300);

    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let file = pipeline(
        dir.path(),
        &format!(
            "[connections.origen]\nconnector = \"mssql\"\nurl = \"mssql://{USER}:${{MSSQL_PASSWORD}}@{addr}/origen\"\n\
             encrypt = \"off\"\n\n\
             [connections.destino]\nconnector = \"mssql\"\nurl = \"mssql://{USER}:${{MSSQL_PASSWORD}}@{addr}/destino\"\n\
             encrypt = \"off\"\n\n\
             [connections.pato]\nconnector = \"duckdb\"\npath = \"pato.duckdb\"\n\n\
             [[streams]]\nname = \"ida\"\nfrom = \"origen\"\ntable = \"tipos\"\nto = \"pato\"\nchunk_rows = 50\n\n\
             [[streams]]\nname = \"vuelta\"\nfrom = \"pato\"\ntable = \"tipos\"\nto = \"destino\"\n\
             primary_key = [\"id\"]\nchunk_rows = 50\n\n[retry]\nmax_attempts = 1\n",
            addr = server.addr()
        ),
    );
    let out = caudal()
        .env("MSSQL_PASSWORD", PASSWORD)
        .args(["run", s(&file), "--progress", "none"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "caudal run exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (origin, rows, origin_schema) = read_digest_mssql(&server, "origen", "tipos");
    assert_eq!(rows, 303);
    assert_eq!(origin.rows(), 303);
    // DuckDB's copy, in the stream's schema.
    let schema = stream_schema(&journal, "ida");
    assert_eq!(schema.len(), 28);
    let in_duckdb = table_digest(&dir.path().join("pato.duckdb"), "tipos", &schema);
    assert_eq!(in_duckdb, origin, "DuckDB's copy differs from SQL Server's");
    // Back in SQL Server: read as any reader would, in the types the table was created with,
    // and as the sink digests it.
    let (back, back_rows, back_schema) = read_digest_mssql(&server, "destino", "tipos");
    assert_eq!(back_rows, 303);
    assert_eq!(
        back, origin,
        "SQL Server -> DuckDB -> SQL Server changed a value"
    );
    assert_eq!(back_schema.len(), origin_schema.len());
    let mut conn = open_mssql(&server, "destino");
    let sink_digest = conn
        .table_digest(&DigestRequest {
            table: "tipos".into(),
            schema: back_schema.clone(),
            range: KeyRange::all(),
        })
        .unwrap();
    conn.close().unwrap();
    assert_eq!(sink_digest, origin);
    verify(&journal);
}
