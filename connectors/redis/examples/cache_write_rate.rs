//! Rows per second of the Redis sink on this machine, for comparison with
//! `redis-benchmark -P 64 -t set -n 1000000 -q` against the same server.
//!
//! `cargo run --release -p caudal-redis --example cache_write_rate -- [ROWS] [hash|json] [URL]`
//!
//! Runs `redis-benchmark -P 64 -t set -n 1000000 -q` (when on the PATH) for the baseline of
//! this run, writes ROWS (default 200000) rows of a four-column table in batches of 20000 (the
//! engine's default chunk) into a table just prepared (as a cache rebuild does) and prints the
//! rate as a share of the baseline, then writes them again over the existing rows (the general
//! path), computes the table digest by scanning the keys, times a plain scan (SCAN and
//! HGETALL / GET, nothing decoded) for comparison, and deletes its keys.

use std::sync::Arc;
use std::time::Instant;

use caudal_connector::{
    BatchBuilder, Connector, DigestRequest, Field, KeyRange, LogicalType, OpenContext,
    PrepareTable, Schema, Sink, WriteOp, WriteRequest,
};
use caudal_redis::{Format, Redis, RedisConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).map_or(Ok(200_000), |a| a.parse())?;
    let format = match args.get(2).map(String::as_str) {
        Some("json") => Format::Json,
        _ => Format::Hash,
    };
    let url = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let mut config = RedisConfig::new(url.clone());
    config.prefix = format!("caudal_rate_{}", std::process::id());
    config.format = format;
    let prefix = config.prefix.clone();
    let context = OpenContext {
        connection: "cache".into(),
        base_dir: None,
    };
    let baseline = redis_benchmark(&url);
    let mut redis = Redis::open(config, &context)?;
    let schema = Arc::new(Schema::new(
        vec![
            Field::new("id", LogicalType::Int64, false),
            Field::new(
                "name",
                LogicalType::Varchar {
                    max_length: Some(40),
                },
                true,
            ),
            Field::new(
                "amount",
                LogicalType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
            Field::new("at", LogicalType::Timestamp { precision: 6 }, true),
        ],
        &["id"],
    )?);
    redis.prepare_table(&PrepareTable {
        table: "ventas".into(),
        schema: (*schema).clone(),
        replace: false,
    })?;
    let chunk = 20_000;
    let mut batches = Vec::new();
    for start in (0..rows).step_by(chunk) {
        let mut b = BatchBuilder::with_capacity(Arc::clone(&schema), chunk);
        for id in start..(start + chunk).min(rows) {
            b.push(0, id as i64)?;
            b.push(1, format!("cliente {}", id % 977).as_str())?;
            b.push(2, (id as i128 * 37) % 1_000_000)?;
            b.push(3, 1_700_000_000_000_000i64 + id as i64 * 1_000)?;
        }
        batches.push(b.finish()?);
    }
    let mut seq = 0;
    let mut write_all = |redis: &mut Redis| -> Result<f64, Box<dyn std::error::Error>> {
        let started = Instant::now();
        for batch in &batches {
            seq += 1;
            redis.write(
                &WriteRequest {
                    pipeline: "rate".into(),
                    stream: "ventas".into(),
                    table: "ventas".into(),
                    seq,
                    op: WriteOp::Upsert,
                },
                batch,
            )?;
        }
        Ok(started.elapsed().as_secs_f64())
    };
    let fresh = write_all(&mut redis)?;
    let share = |secs: f64| match baseline {
        Some(b) => format!(
            " = {:.0}% of redis-benchmark",
            rows as f64 / secs / b * 100.0
        ),
        None => String::new(),
    };
    match baseline {
        Some(b) => println!("redis-benchmark -P 64 -t set: {b:.0} SET/s"),
        None => println!("redis-benchmark: not run (not on the PATH, or no rate printed)"),
    }
    println!(
        "{format:?}: wrote {rows} rows into a new table in {fresh:.2} s = {:.0} rows/s{}",
        rows as f64 / fresh,
        share(fresh)
    );
    let again = write_all(&mut redis)?;
    println!(
        "{format:?}: wrote them again over the rows there in {again:.2} s = {:.0} rows/s{}",
        rows as f64 / again,
        share(again)
    );
    let started = Instant::now();
    let digest = redis.table_digest(&DigestRequest {
        table: "ventas".into(),
        schema: (*schema).clone(),
        range: KeyRange::all(),
    })?;
    let scan = started.elapsed();
    println!(
        "{format:?}: digest scan {:.2} s = {:.0} rows/s ({} rows)",
        scan.as_secs_f64(),
        rows as f64 / scan.as_secs_f64(),
        digest.rows()
    );
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_connection()?;
    // A plain full scan for comparison: SCAN plus pipelined HGETALL / GET, nothing decoded.
    let started = Instant::now();
    let (mut cursor, mut read) = (0u64, 0usize);
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:ventas:*"))
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg(if format == Format::Json {
                "string"
            } else {
                "hash"
            })
            .query(&mut conn)?;
        let mut pipe = redis::pipe();
        for k in keys.iter().filter(|k| {
            ![&b":schema"[..], b":digest", b":rowdigests"]
                .iter()
                .any(|m| k.ends_with(m))
        }) {
            pipe.cmd(if format == Format::Json {
                "GET"
            } else {
                "HGETALL"
            })
            .arg(k);
        }
        let rows: Vec<redis::Value> = pipe.query(&mut conn)?;
        read += rows.len();
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let plain = started.elapsed();
    println!(
        "plain scan of {read} keys {:.2} s: the digest scan takes {:.2}x as long",
        plain.as_secs_f64(),
        scan.as_secs_f64() / plain.as_secs_f64()
    );
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)?;
    for part in keys.chunks(1000) {
        let _: i64 = redis::cmd("UNLINK").arg(part).query(&mut conn)?;
    }
    Ok(())
}

/// SET/s of `redis-benchmark -P 64 -t set -n 1000000 -q` against `url`; `None` when it cannot
/// run or prints no rate.
fn redis_benchmark(url: &str) -> Option<f64> {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-u", url, "-P", "64", "-t", "set", "-n", "1000000", "-q"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "SET: 1234567.89 requests per second, ..." (the last report on the line).
    text.rsplit("SET:")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
