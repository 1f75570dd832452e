//! Read and write throughput of the connector against a real server, next to a bare sqlx read
//! of the same table (the driver's own limit).
//!
//! ```text
//! cargo run --release -p caudal-mysql --example throughput -- [ROWS]
//! ```
//!
//! Creates the database `caudal_throughput` on `CAUDAL_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`) with a table of ROWS rows (default 1 000 000) in the
//! 12-column shape of `caudal bench mysql` (integers of several widths, date, datetime(6),
//! varchar, a nullable varchar(200), two decimals, a nullable double, a boolean), measures, and
//! drops the database.

use std::time::Instant;

use caudal_connector::{
    Connector, OpenContext, PrepareTable, ReadRequest, Sink, Source, WriteOp, WriteRequest,
};
use caudal_mysql::MySqlConnector;
use futures::TryStreamExt as _;
use sqlx::Connection as _;

const DB: &str = "caudal_throughput";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let url = std::env::var("CAUDAL_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut admin = rt.block_on(sqlx::mysql::MySqlConnection::connect(&url))?;
    let exec = |admin: &mut sqlx::mysql::MySqlConnection, sql: String| {
        rt.block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(admin))
    };
    exec(&mut admin, format!("DROP DATABASE IF EXISTS {DB}"))?;
    exec(&mut admin, format!("CREATE DATABASE {DB}"))?;
    exec(
        &mut admin,
        format!(
            "CREATE TABLE {DB}.t (id BIGINT NOT NULL PRIMARY KEY, small SMALLINT NOT NULL, \
             medium INT NOT NULL, tiny TINYINT UNSIGNED NOT NULL, day DATE NOT NULL, \
             at DATETIME(6) NOT NULL, name VARCHAR(40) NOT NULL, note VARCHAR(200), \
             price DECIMAL(12,2) NOT NULL, rate DECIMAL(18,6) NOT NULL, score DOUBLE, \
             active BOOL NOT NULL)"
        ),
    )?;
    let started = Instant::now();
    let digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL \
                  SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL \
                  SELECT 8 UNION ALL SELECT 9)";
    let mut done = 0u64;
    while done < rows {
        let step = (rows - done).min(100_000);
        exec(
            &mut admin,
            format!(
                "INSERT INTO {DB}.t SELECT {done} + n, n % 32000, n * 7, n % 256, \
                 DATE_ADD('2000-01-01', INTERVAL n % 9000 DAY), \
                 TIMESTAMPADD(MICROSECOND, n * 1234567, '2020-01-01'), CONCAT('name ', n), \
                 IF(n % 3 = 0, NULL, REPEAT('n', n % 200)), (n % 100000) / 100, n / 1000000, \
                 IF(n % 5 = 0, NULL, n / 7), n % 2 \
                 FROM (SELECT a.d + b.d * 10 + c.d * 100 + e.d * 1000 + f.d * 10000 AS n \
                 FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f) AS x \
                 WHERE n < {step}"
            ),
        )?;
        done += step;
    }
    println!("filled {rows} rows in {:.1?}", started.elapsed());

    // The driver's limit: every row fetched, nothing decoded.
    let started = Instant::now();
    let fetched = rt.block_on(async {
        let mut stream =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {DB}.t"))).fetch(&mut admin);
        let mut n = 0u64;
        while stream.try_next().await?.is_some() {
            n += 1;
        }
        Ok::<_, sqlx::Error>(n)
    })?;
    let bare = started.elapsed();
    println!(
        "bare sqlx read:   {fetched} rows in {bare:.2?} = {:.0} rows/s",
        fetched as f64 / bare.as_secs_f64()
    );

    let config = serde_json::from_str(&format!(r#"{{"url": "{url}/{DB}"}}"#))?;
    let mut conn = MySqlConnector::open(
        config,
        &OpenContext {
            connection: "throughput".into(),
            base_dir: None,
        },
    )?;
    let started = Instant::now();
    let mut reader = conn.read(&ReadRequest::table("t"))?;
    let mut chunks = Vec::new();
    let mut read = 0usize;
    while let Some(c) = reader.next_chunk()? {
        read += c.batch.num_rows();
        // Keep a bounded sample for the write test.
        if chunks.len() < 25 {
            chunks.push(c.batch);
        }
    }
    drop(reader);
    let elapsed = started.elapsed();
    println!(
        "connector read:   {read} rows in {elapsed:.2?} = {:.0} rows/s ({:.0}% of bare)",
        read as f64 / elapsed.as_secs_f64(),
        100.0 * bare.as_secs_f64() / elapsed.as_secs_f64()
    );

    let schema = chunks[0].schema().as_ref().clone();
    conn.prepare_table(&PrepareTable {
        table: "copy".into(),
        schema,
        replace: true,
    })?;
    let started = Instant::now();
    let mut written = 0usize;
    for (i, batch) in chunks.iter().enumerate() {
        conn.write(
            &WriteRequest {
                pipeline: "throughput".into(),
                stream: "t".into(),
                table: "copy".into(),
                seq: i as u64 + 1,
                op: WriteOp::Insert,
            },
            batch,
        )?;
        written += batch.num_rows();
    }
    let elapsed = started.elapsed();
    let stats = conn.write_stats();
    println!(
        "connector insert: {written} rows in {elapsed:.2?} = {:.0} rows/s ({} statements, largest {} bytes)",
        written as f64 / elapsed.as_secs_f64(),
        stats.statements,
        stats.largest
    );
    conn.close()?;
    exec(&mut admin, format!("DROP DATABASE {DB}"))?;
    Ok(())
}
