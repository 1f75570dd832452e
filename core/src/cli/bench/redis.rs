//! `caudal bench redis [--rows N] [--url URL]`: how fast `caudal project redis --rebuild`
//! builds a cache of N rows (default 1M) from the journal alone, in keys per second, against
//! `redis-benchmark -P 64 -t set -n N` on the same server in the same run. The goal is 70% or
//! more of the benchmark's rate.
//!
//! The cache's keys live under a prefix of this run (`caudal_bench_<pid>`), removed at the
//! end. Needs `redis-benchmark` and `redis-cli` on the PATH.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use caudal_config::Pipeline;
use caudal_connector::{
    BatchBuilder, Field, LogicalType, OpenContext, PrepareTable, Schema, WriteOp, WriteRequest,
};
use clap::Args;
use serde_json::json;

use crate::engine::PluginEndpoints;

/// `caudal bench redis`
#[derive(Debug, Args)]
pub struct RedisBenchArgs {
    /// Rows (keys) in the cache.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Host of the Redis server.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the Redis server.
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const CHUNK: i64 = 20_000;

pub fn run(args: RedisBenchArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let prefix = format!("caudal_bench_{}", std::process::id());
    let server = Server {
        host: args.host.clone(),
        port: args.port,
    };
    let result = measure(&args, dir.path(), &prefix, &server);
    server.delete_under(&prefix);
    let (baseline, rebuild_s, replay_s) = result?;
    let rate = args.rows as f64 / rebuild_s;
    let share = rate / baseline;
    if args.json {
        println!(
            "{}",
            json!({
                "rows": args.rows,
                "redis_benchmark_set_per_s": baseline,
                "rebuild_s": rebuild_s,
                "rebuild_keys_per_s": rate,
                "replay_s": replay_s,
                "replay_keys_per_s": args.rows as f64 / replay_s,
                "share": share,
                "goal": 0.7,
            })
        );
    } else {
        println!("Redis cache of {} rows built from the journal", args.rows);
        println!("  redis-benchmark -P 64 -t set: {baseline:.0} SET/s");
        println!(
            "  caudal project redis (replay into an empty cache): {replay_s:.2} s, {:.0} keys/s",
            args.rows as f64 / replay_s
        );
        println!(
            "  caudal project redis --rebuild (offsets and keys gone): {rebuild_s:.2} s, \
             {rate:.0} keys/s = {:.0}% of redis-benchmark (goal 70%){}",
            share * 100.0,
            if share >= 0.7 { "" } else { ": NOT MET" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct Server {
    host: String,
    port: u16,
}

impl Server {
    fn cli(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", &self.host, "-p", &self.port.to_string()]);
        c
    }

    /// Deletes every key under `prefix:` (a server-side loop over SCAN).
    fn delete_under(&self, prefix: &str) {
        let script = "local c = '0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], \
                      'COUNT', 10000) c = r[1] for _, k in ipairs(r[2]) do \
                      redis.call('UNLINK', k) end until c == '0' return 0";
        let _ = self
            .cli()
            .args(["EVAL", script, "0", &format!("{prefix}:*")])
            .stdout(Stdio::null())
            .status();
    }
}

/// The redis-benchmark rate, and the times of a rebuild and of a plain replay.
fn measure(
    args: &RedisBenchArgs,
    dir: &Path,
    prefix: &str,
    server: &Server,
) -> anyhow::Result<(f64, f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", &server.host, "-p", &server.port.to_string()])
        .args(["-P", "64", "-t", "set", "-q", "-n", &args.rows.to_string()])
        .output()
        .context("cannot run redis-benchmark")?;
    // redis-benchmark's SETs all go to this one key.
    let _ = server
        .cli()
        .args(["DEL", "key:__rand_int__"])
        .stdout(Stdio::null())
        .status();
    let text = String::from_utf8_lossy(&out.stdout);
    // "SET: 1234567.89 requests per second, p50=..." (the last report on the line).
    let baseline = text
        .rsplit("SET:")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("redis-benchmark printed no SET rate: {text}"))?;
    let file = dir.join("bench-redis.toml");
    std::fs::write(
        &file,
        format!(
            "[pipeline]\nname = \"bench_redis\"\n\n[journal]\ndir = \"journal\"\n\n\
             [connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
             [connections.cache]\nconnector = \"redis\"\nurl = \"redis://{}:{}/0\"\n\
             prefix = \"{prefix}\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"cache\"\n\
             mode = \"incremental\"\ncursor = \"id\"\nprimary_key = [\"id\"]\n",
            server.host, server.port
        ),
    )?;
    generate(&file, &dir.join("src.duckdb"), args.rows)?;
    let file_arg = file.display().to_string();
    caudal(&["run", "--progress", "none", &file_arg], "run")?;
    // The source goes: a rebuild needs only the journal.
    std::fs::remove_file(dir.join("src.duckdb"))?;

    server.delete_under(prefix);
    let started = Instant::now();
    caudal(
        &[
            "project",
            "redis",
            "--progress",
            "none",
            "--file",
            &file_arg,
        ],
        "project redis",
    )?;
    let replay_s = started.elapsed().as_secs_f64();

    server.delete_under(prefix);
    let started = Instant::now();
    caudal(
        &[
            "project",
            "redis",
            "--rebuild",
            "--progress",
            "none",
            "--file",
            &file_arg,
        ],
        "project redis --rebuild",
    )?;
    Ok((baseline, started.elapsed().as_secs_f64(), replay_s))
}

fn generate(file: &Path, db: &Path, rows: u64) -> anyhow::Result<()> {
    let pipeline = Pipeline::from_path(file).context("the bench's pipeline file")?;
    let endpoints = PluginEndpoints::for_pipeline(&pipeline);
    let plugin = endpoints.registry().get("duckdb")?;
    let config = json!({ "path": db.display().to_string() }).to_string();
    let mut conn = plugin.open(
        &OpenContext {
            connection: "bench".into(),
            base_dir: None,
        },
        &config,
    )?;
    let schema = Arc::new(Schema::new(
        vec![
            Field::new("id", LogicalType::Int64, false),
            Field::new(
                "name",
                LogicalType::Varchar {
                    max_length: Some(32),
                },
                true,
            ),
            Field::new("qty", LogicalType::Int32, false),
        ],
        &["id"],
    )?);
    conn.prepare_table(&PrepareTable {
        table: "items".into(),
        schema: (*schema).clone(),
        replace: true,
    })?;
    let total = i64::try_from(rows)?;
    let (mut id, mut seq) = (0i64, 0u64);
    while id < total {
        let n = (total - id).min(CHUNK);
        let mut b = BatchBuilder::with_capacity(Arc::clone(&schema), n as usize);
        for i in id..id + n {
            b.push(0, i)?;
            b.push(1, format!("item {}", i % 100_000).as_str())?;
            b.push(2, (i % 97) as i32)?;
        }
        seq += 1;
        conn.write(
            &WriteRequest {
                pipeline: "bench".into(),
                stream: "items".into(),
                table: "items".into(),
                seq,
                op: WriteOp::Insert,
            },
            &b.finish()?,
        )?;
        id += n;
    }
    conn.close()?;
    Ok(())
}

fn caudal(args: &[&str], what: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the caudal binary")?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start caudal {what}"))?;
    if !out.status.success() {
        bail!(
            "caudal {what} exited {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
