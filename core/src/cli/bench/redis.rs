//! `caudal bench redis [--rows N] [--url URL]`: how fast `caudal project redis --rebuild`
//! builds a cache of N rows (default 1M) from the journal alone, in keys per second, against
//! `redis-benchmark -P 64 -t set -n N` on the same server in the same run. The goal is 70% or
//! more of the benchmark's rate.
//!
//! Where the limit is, as extra figures (the goal's baseline stays the one above): the same
//! redis-benchmark with a key per request (`-r`, SETs creating keys as a rebuild does), with
//! values the size of a row's `RESTORE` payload, and with the rows as `HSET`s; and the
//! server's CPU time (`INFO cpu`) during each caudal command, against its wall time; and a
//! second rebuild over the full cache the first one wrote (the case of a cache that drifted:
//! every key is listed by a SCAN, overwritten in place, and those not written are removed).
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
    /// Keep the bench's pipeline, journal and source in this directory (to run or profile
    /// `caudal project redis` on them again) instead of a temporary one; an empty directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

const CHUNK: i64 = 20_000;

pub fn run(args: RedisBenchArgs) -> anyhow::Result<ExitCode> {
    let temporary = tempfile::tempdir()?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.as_path()
        }
        None => temporary.path(),
    };
    let prefix = format!("caudal_bench_{}", std::process::id());
    let server = Server {
        host: args.host.clone(),
        port: args.port,
    };
    // redis-benchmark retries a server that does not answer for ever: ask first.
    server.ping()?;
    let result = measure(&args, dir, &prefix, &server);
    server.delete_under(&prefix);
    let m = result?;
    let baseline = m.baseline;
    let rows = args.rows as f64;
    let rate = rows / m.rebuild.wall_s;
    let share = rate / baseline;
    if args.json {
        outln!(
            "{}",
            json!({
                "rows": args.rows,
                "redis_benchmark_set_per_s": baseline,
                "rebuild_s": m.rebuild.wall_s,
                "rebuild_keys_per_s": rate,
                "rebuild_server_cpu_s": m.rebuild.server_cpu_s,
                "rebuild_full_s": m.rebuild_full.wall_s,
                "rebuild_full_keys_per_s": rows / m.rebuild_full.wall_s,
                "rebuild_full_server_cpu_s": m.rebuild_full.server_cpu_s,
                "replay_s": m.replay.wall_s,
                "replay_keys_per_s": rows / m.replay.wall_s,
                "replay_server_cpu_s": m.replay.server_cpu_s,
                "share": share,
                "goal": 0.7,
                "ceiling": {
                    "set_distinct_keys_per_s": m.distinct,
                    "set_distinct_keys_row_sized_per_s": m.row_sized,
                    "hset_rows_distinct_keys_per_s": m.hset_rows,
                },
            })
        );
    } else {
        outln!("Redis cache of {} rows built from the journal", args.rows);
        outln!("  redis-benchmark -P 64 -t set: {baseline:.0} SET/s (the goal's baseline)");
        outln!(
            "  caudal project redis (replay into an empty cache): {:.2} s, {:.0} keys/s; server \
             busy {:.2} s",
            m.replay.wall_s,
            rows / m.replay.wall_s,
            m.replay.server_cpu_s
        );
        outln!(
            "  caudal project redis --rebuild (offsets and keys gone): {:.2} s, {rate:.0} keys/s \
             = {:.0}% of redis-benchmark (goal 70%){}; server busy {:.2} s",
            m.rebuild.wall_s,
            share * 100.0,
            if share >= 0.7 { "" } else { ": NOT MET" },
            m.rebuild.server_cpu_s
        );
        outln!(
            "  caudal project redis --rebuild over the full cache (every key there, as when a \
             cache drifted): {:.2} s, {:.0} keys/s; server busy {:.2} s",
            m.rebuild_full.wall_s,
            rows / m.rebuild_full.wall_s,
            m.rebuild_full.server_cpu_s
        );
        outln!("  where the server's limit is (extra figures, not the goal's baseline):");
        outln!(
            "    redis-benchmark -P 64 -r {0} SET, a new key per request: {1:.0} SET/s = {2:.0}% \
             of the baseline; rebuild = {3:.0}% of it",
            args.rows,
            m.distinct,
            m.distinct / baseline * 100.0,
            rate / m.distinct * 100.0
        );
        outln!(
            "    the same with {ROW_VALUE_BYTES}-byte values (a row's RESTORE payload): {:.0} \
             SET/s; rebuild = {:.0}% of it",
            m.row_sized,
            rate / m.row_sized * 100.0
        );
        outln!(
            "    redis-benchmark -P 64 -r {} HSET of a 3-field row per key: {:.0} rows/s",
            args.rows,
            m.hset_rows
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes of a value the size of a bench row's `RESTORE` payload (listpack of 3 fields with
/// header, RDB type, version and CRC).
const ROW_VALUE_BYTES: usize = 58;

/// One timed caudal command.
struct Timed {
    wall_s: f64,
    /// CPU seconds the Redis server used meanwhile (user + system, `INFO cpu`).
    server_cpu_s: f64,
}

/// The figures of a bench run.
struct Measured {
    baseline: f64,
    distinct: f64,
    row_sized: f64,
    hset_rows: f64,
    replay: Timed,
    rebuild: Timed,
    /// A rebuild over the cache the one before wrote: every key is there, to overwrite.
    rebuild_full: Timed,
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

    /// Fails, naming the server and what `redis-cli` said, unless it answers `PING`.
    fn ping(&self) -> anyhow::Result<()> {
        let out = self
            .cli()
            .arg("PING")
            .output()
            .context("cannot run redis-cli")?;
        let said = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && said.trim() == "PONG" {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "cannot reach Redis at {}:{}: {}",
            self.host,
            self.port,
            format!("{} {}", said.trim(), err.trim()).trim()
        )
    }

    /// CPU seconds the server has used (user + system).
    fn cpu_s(&self) -> anyhow::Result<f64> {
        let out = self.cli().args(["INFO", "cpu"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        match (field("used_cpu_user:"), field("used_cpu_sys:")) {
            (Some(u), Some(s)) => Ok(u + s),
            _ => bail!("redis-cli INFO cpu printed no used_cpu_user/used_cpu_sys: {text}"),
        }
    }

    /// The requests per second redis-benchmark reports for `args`: its final report,
    /// "COMMAND: 1234567.89 requests per second, p50=...".
    fn benchmark(&self, args: &[&str]) -> anyhow::Result<f64> {
        let out = Command::new("redis-benchmark")
            .args(["-h", &self.host, "-p", &self.port.to_string(), "-q"])
            .args(args)
            .output()
            .context("cannot run redis-benchmark")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.rsplit_once(" requests per second")
            .and_then(|(before, _)| before.split_whitespace().last())
            .and_then(|n| n.parse::<f64>().ok())
            .with_context(|| {
                format!(
                    "redis-benchmark {} printed no rate: {text}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    /// Runs `caudal args`, timing it and the server's CPU meanwhile.
    fn timed(&self, args: &[&str], what: &str) -> anyhow::Result<Timed> {
        let cpu = self.cpu_s()?;
        let started = Instant::now();
        caudal(args, what)?;
        let wall_s = started.elapsed().as_secs_f64();
        Ok(Timed {
            wall_s,
            server_cpu_s: self.cpu_s()? - cpu,
        })
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

/// The redis-benchmark rates, and the times of a rebuild and of a plain replay.
fn measure(
    args: &RedisBenchArgs,
    dir: &Path,
    prefix: &str,
    server: &Server,
) -> anyhow::Result<Measured> {
    let n = args.rows.to_string();
    let baseline = server.benchmark(&["-P", "64", "-t", "set", "-n", &n])?;
    // redis-benchmark's SETs all go to this one key.
    let _ = server
        .cli()
        .args(["DEL", "key:__rand_int__"])
        .stdout(Stdio::null())
        .status();
    // The extra figures write their keys under the bench's prefix (removed at the end).
    let set_key = format!("{prefix}:set:__rand_int__");
    let distinct = server.benchmark(&["-P", "64", "-r", &n, "-n", &n, "SET", &set_key, "xxx"])?;
    server.delete_under(prefix);
    let value = "v".repeat(ROW_VALUE_BYTES);
    let row_sized = server.benchmark(&["-P", "64", "-r", &n, "-n", &n, "SET", &set_key, &value])?;
    server.delete_under(prefix);
    let hset_key = format!("{prefix}:hset:__rand_int__");
    let hset_rows = server.benchmark(&[
        "-P",
        "64",
        "-r",
        &n,
        "-n",
        &n,
        "HSET",
        &hset_key,
        "id",
        "123456",
        "name",
        "item 12345",
        "qty",
        "42",
    ])?;
    server.delete_under(prefix);
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
    let replay = server.timed(
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

    let rebuild_args = [
        "project",
        "redis",
        "--rebuild",
        "--progress",
        "none",
        "--file",
        &file_arg,
    ];
    server.delete_under(prefix);
    let rebuild = server.timed(&rebuild_args, "project redis --rebuild")?;
    let rebuild_full = server.timed(&rebuild_args, "project redis --rebuild (full cache)")?;
    Ok(Measured {
        baseline,
        distinct,
        row_sized,
        hset_rows,
        replay,
        rebuild,
        rebuild_full,
    })
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
