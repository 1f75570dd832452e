//! `caudal bench mysql`: rows/s of MySQL -> DuckDB and DuckDB -> MySQL through the real
//! engine, each set against the limit it is bounded by, measured in the same run.
//!
//! The table has the 12 columns of a typical fact table (integers of several widths, a date, a
//! `datetime(6)`, a varchar, a nullable varchar(200), two decimals, a nullable double, a
//! boolean). Its rows are generated here as a tab-separated file and loaded into a scratch
//! database with `LOAD DATA LOCAL INFILE` (the `mariadb` or `mysql` client). Then, in order:
//!
//! 1. the read limit: the whole table read through sqlx, the driver the connector uses,
//!    every row fetched and dropped;
//! 2. `caudal run` of a generated pipeline, MySQL -> DuckDB (snapshot, journal policy
//!    `batch`), as a child process: wall time and peak RSS (`wait4`);
//! 3. `caudal run` DuckDB -> MySQL, from the file step 2 wrote into another scratch database;
//! 4. the write limit: `LOAD DATA LOCAL INFILE` of the same rows into a table of the DDL the
//!    sink created in step 3;
//! 5. DuckDB's write limit: the rows step 2 wrote, read back first into a file of encoded
//!    chunks, then written through the DuckDB plugin in this process into a new database
//!    file, in the same chunks (20,000 rows, each an insert with its offset row in one
//!    transaction, the table with its primary key), the database closed at the end: no
//!    MySQL, no journal, no engine.
//!
//! Each figure has its CPU time (user + system) beside its wall time: of the `caudal run`
//! child, of the client, or of this process; and the server's, read from `/proc` when the
//! server runs on this machine (its pid from `@@pid_file`). From them, a floor for MySQL ->
//! DuckDB on this machine's cores: the CPU of the read through the driver (server and client)
//! plus DuckDB's for the write, spread over the cores, before any work of caudal's own.
//!
//! The url's password never reaches the generated pipeline files (they name it as
//! `${CAUDAL_BENCH_*_URL}`, so the journal masks it) nor the client's command line
//! (`MYSQL_PWD`). The scratch databases are dropped at the end, also after an error.

use std::fs::File;
use std::io::{BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use caudal_connector::{PrepareTable, ReadRequest, WriteOp, WriteRequest};
use clap::Args;
use serde_json::json;
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection as _, Executor as _};

use crate::engine::PluginEndpoints;
use crate::host::{PluginRegistry, SearchPath};

/// Options of `caudal bench mysql`.
#[derive(Debug, Args)]
pub struct MySqlBenchArgs {
    /// Server to measure, without a database: the bench creates and drops its own
    /// (`caudal_bench_<pid>_src`, `_dst`), so the user needs CREATE and DROP.
    #[arg(
        long,
        env = "CAUDAL_BENCH_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306",
        hide_env_values = true
    )]
    url: String,
    /// Rows of the generated table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Directory for the scratch files (the data file, the DuckDB file, two journals), created
    /// if missing: about 700 bytes a row.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The MySQL / MariaDB command-line client that runs `LOAD DATA LOCAL INFILE`.
    #[arg(long, default_value = "mariadb")]
    client: String,
    /// One JSON object per figure instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep the scratch databases and directory (pipeline files, journals, logs) to look
    /// into afterwards; they are named at the end.
    #[arg(long)]
    keep: bool,
}

/// The source table. `CREATE TABLE ... LIKE` copies it for nothing else: the write limit
/// loads into the DDL the sink created.
const TABLE_DDL: &str = "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, \
    small SMALLINT NOT NULL, medium INT NOT NULL, tiny TINYINT UNSIGNED NOT NULL, \
    day DATE NOT NULL, at DATETIME(6) NOT NULL, name VARCHAR(40) NOT NULL, \
    note VARCHAR(200) NULL, price DECIMAL(12,2) NOT NULL, rate DECIMAL(18,6) NOT NULL, \
    score DOUBLE NULL, active BOOL NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// What one measured step did.
struct Figure {
    name: &'static str,
    rows: u64,
    seconds: f64,
    /// Peak resident set of the process that did the work, in KiB.
    peak_rss_kib: Option<u64>,
    /// CPU seconds of the process that did the work (the child, or this process).
    cpu_s: Option<f64>,
    /// CPU seconds of the database server meanwhile, when it runs on this machine.
    server_cpu_s: Option<f64>,
}

impl Figure {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

pub fn run(args: MySqlBenchArgs) -> anyhow::Result<ExitCode> {
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    let server = Server::parse(&args.url)?;
    let scratch = super::scratch_dir(&args.dir, "caudal-bench-mysql-")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut admin = runtime
        .block_on(MySqlConnection::connect(&server.url))
        .map_err(said)
        .with_context(|| format!("cannot connect to {}", server.redacted()))?;
    let prefix = format!("caudal_bench_{}", std::process::id());
    let (src, dst) = (format!("{prefix}_src"), format!("{prefix}_dst"));
    let result = (|| {
        for db in [&src, &dst] {
            exec(
                &runtime,
                &mut admin,
                &format!("DROP DATABASE IF EXISTS `{db}`"),
            )?;
            exec(
                &runtime,
                &mut admin,
                &format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
            )?;
        }
        let version = scalar(&runtime, &mut admin, "SELECT VERSION()")?;
        let server_cpu = ServerCpu::find(&runtime, &mut admin, &server);
        let bench = Bench {
            args: &args,
            server: &server,
            server_cpu: server_cpu.as_ref(),
            dir: scratch.path(),
            src: &src,
            dst: &dst,
        };
        bench.measure(&runtime, &mut admin, &version)
    })();
    if args.keep {
        let kept = scratch.keep();
        eprintln!(
            "kept: databases {src} and {dst}, directory {}",
            kept.display()
        );
        runtime.block_on(admin.close()).ok();
        return result;
    }
    for db in [&src, &dst] {
        if let Err(e) = exec(
            &runtime,
            &mut admin,
            &format!("DROP DATABASE IF EXISTS `{db}`"),
        ) {
            eprintln!("could not drop the scratch database {db}: {e:#}");
        }
    }
    runtime.block_on(admin.close()).ok();
    result
}

/// The parts of the server url the bench needs.
struct Server {
    /// The url as given, without a trailing `/`.
    url: String,
    host: String,
    port: u16,
    user: String,
    /// Percent-decoded.
    password: Option<String>,
}

impl Server {
    fn parse(url: &str) -> anyhow::Result<Server> {
        let url = url.trim_end_matches('/').to_owned();
        let bad = || {
            anyhow::anyhow!(
                "--url: expected mysql://user[:password]@host[:port] without a database"
            )
        };
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .ok_or_else(bad)?;
        if rest.contains('/') || rest.contains('?') {
            return Err(bad());
        }
        let (userinfo, hostport) = rest.rsplit_once('@').ok_or_else(bad)?;
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(percent_decode(p))),
            None => (userinfo, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (hostport, 3306),
        };
        if user.is_empty() || host.is_empty() {
            return Err(bad());
        }
        let (host, user) = (host.to_owned(), percent_decode(user));
        // sqlx knows the `mysql` scheme only.
        let url = format!("mysql://{rest}");
        Ok(Server {
            url,
            host,
            port,
            user,
            password,
        })
    }

    /// The url without its password, for messages.
    fn redacted(&self) -> String {
        let pass = if self.password.is_some() { ":***" } else { "" };
        format!("mysql://{}{pass}@{}:{}", self.user, self.host, self.port)
    }

    /// The url of database `db` (holds the password: only ever passed through the
    /// environment).
    fn database_url(&self, db: &str) -> String {
        format!("{}/{db}", self.url)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The CPU time of a database server on this machine, from `/proc/<pid>/stat`.
struct ServerCpu {
    stat: PathBuf,
}

impl ServerCpu {
    /// The server's process, when `server` is on a loopback address and `@@pid_file` names a
    /// running `mariadbd` or `mysqld` here; `None` otherwise (its CPU is then not shown).
    fn find(
        runtime: &tokio::runtime::Runtime,
        admin: &mut MySqlConnection,
        server: &Server,
    ) -> Option<ServerCpu> {
        let loopback = ["127.0.0.1", "localhost", "::1", "[::1]"];
        if !loopback.contains(&server.host.as_str()) {
            return None;
        }
        let pid_file = scalar(runtime, admin, "SELECT @@pid_file").ok()?;
        let pid: u32 = std::fs::read_to_string(pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        matches!(comm.trim(), "mariadbd" | "mysqld").then(|| ServerCpu {
            stat: PathBuf::from(format!("/proc/{pid}/stat")),
        })
    }

    /// User + system seconds the server has used so far.
    fn seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(&self.stat).ok()?;
        // Fields 14 and 15 (utime, stime), counted after the command name's closing paren,
        // which is field 2 and may hold spaces.
        let mut rest = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .skip(11);
        let utime: f64 = rest.next()?.parse().ok()?;
        let stime: f64 = rest.next()?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (ticks > 0).then(|| (utime + stime) / ticks as f64)
    }
}

/// The server's CPU seconds from `before` to now.
fn server_since(cpu: Option<&ServerCpu>, before: Option<f64>) -> Option<f64> {
    Some(cpu?.seconds()? - before?)
}

/// CPU seconds (user + system) of this process (`RUSAGE_SELF`) or of its children waited for
/// (`RUSAGE_CHILDREN`).
fn rusage_cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local.
    unsafe { libc::getrusage(who, &mut usage) };
    usage_cpu_s(&usage)
}

fn usage_cpu_s(usage: &libc::rusage) -> f64 {
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

struct Bench<'a> {
    args: &'a MySqlBenchArgs,
    server: &'a Server,
    server_cpu: Option<&'a ServerCpu>,
    dir: &'a Path,
    src: &'a str,
    dst: &'a str,
}

impl Bench<'_> {
    fn measure(
        &self,
        runtime: &tokio::runtime::Runtime,
        admin: &mut MySqlConnection,
        version: &str,
    ) -> anyhow::Result<ExitCode> {
        let rows = self.args.rows;
        let data = self.dir.join("rows.tsv");
        let started = Instant::now();
        write_rows(&data, rows)?;
        let generated = started.elapsed().as_secs_f64();
        exec(runtime, admin, &format!("USE `{}`", self.src))?;
        exec(runtime, admin, TABLE_DDL)?;
        ensure_local_infile(runtime, admin)?;
        let fill = self.load_data(&data, self.src, "t", rows)?;
        if !self.args.json {
            outln!(
                "caudal bench mysql: {rows} rows x 12 columns, server {version} at {}, journal durability batch, scratch in {}",
                self.server.redacted(),
                self.dir.display()
            );
            outln!(
                "  generated {:.0} MB of rows in {generated:.1} s; loaded into the source in {:.1} s",
                std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
                fill.seconds
            );
        }

        let bare = self.bare_read(runtime, admin, rows)?;
        let to_duckdb = self.engine_run(
            "MySQL -> DuckDB (caudal run)",
            "mysql_to_duckdb",
            "[connections.source]\nconnector = \"mysql\"\nurl = \"${CAUDAL_BENCH_SOURCE_URL}\"\n\n\
                 [connections.warehouse]\nconnector = \"duckdb\"\npath = \"bench.duckdb\"\n\n\
                 [[streams]]\nfrom = \"source\"\ntable = \"t\"\nto = \"warehouse\"\n",
            rows,
        )?;
        let to_mysql = self.engine_run(
            "DuckDB -> MySQL (caudal run)",
            "duckdb_to_mysql",
            "[connections.warehouse]\nconnector = \"duckdb\"\npath = \"bench.duckdb\"\n\n\
                 [connections.destination]\nconnector = \"mysql\"\nurl = \"${CAUDAL_BENCH_DEST_URL}\"\n\n\
                 [[streams]]\nfrom = \"warehouse\"\ntable = \"t\"\nto = \"destination\"\n",
            rows,
        )?;
        // The write limit loads into the table the sink made, emptied: same DDL, same server
        // state, no engine.
        exec(
            runtime,
            admin,
            &format!(
                "CREATE TABLE `{}`.`load_limit` LIKE `{}`.`t`",
                self.dst, self.dst
            ),
        )?;
        exec(runtime, admin, &format!("DROP TABLE `{}`.`t`", self.dst))?;
        let load = self.load_data(&data, self.dst, "load_limit", rows)?;
        let load = Figure {
            name: "LOAD DATA LOCAL INFILE (write limit)",
            ..load
        };
        let duckdb_write = self.duckdb_write_limit(rows)?;

        let figures = [&bare, &to_duckdb, &duckdb_write, &to_mysql, &load];
        let read_ratio = to_duckdb.rows_per_s() / bare.rows_per_s();
        let write_ratio = to_mysql.rows_per_s() / load.rows_per_s();
        let duckdb_ratio = to_duckdb.rows_per_s() / duckdb_write.rows_per_s();
        // The CPU of the read through the driver (the server's and the client's) and of
        // DuckDB's write, spread over every core: no MySQL -> DuckDB run on this machine can
        // take less.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // (server, driver, DuckDB) CPU seconds, and the floor they set.
        let floor = match (bare.server_cpu_s, bare.cpu_s, duckdb_write.cpu_s) {
            (Some(server), Some(driver), Some(write)) => Some((
                server,
                driver,
                write,
                (server + driver + write) / cores as f64,
            )),
            _ => None,
        };
        let floor_s = floor.map(|f| f.3);
        if self.args.json {
            for f in figures {
                outln!(
                    "{}",
                    json!({"figure": f.name, "rows": f.rows, "seconds": f.seconds, "rows_per_s": f.rows_per_s(),
                           "peak_rss_kib": f.peak_rss_kib, "cpu_s": f.cpu_s, "server_cpu_s": f.server_cpu_s})
                );
            }
            outln!(
                "{}",
                json!({"figure": "ratios", "mysql_to_duckdb_vs_bare_read": read_ratio,
                       "mysql_to_duckdb_vs_duckdb_write": duckdb_ratio,
                       "duckdb_to_mysql_vs_load_data": write_ratio,
                       "cores": cores, "mysql_to_duckdb_floor_s": floor_s,
                       "mysql_to_duckdb_ceiling_rows_per_s": floor_s.map(|s| rows as f64 / s),
                       "bench_peak_rss_kib": own_peak_rss_kib()})
            );
        } else {
            outln!(
                "  {:<38}  {:>12}  {:>9}  {:>7}  {:>10}  {:>10}",
                "",
                "rows/s",
                "seconds",
                "CPU s",
                "server CPU",
                "peak RSS"
            );
            let or_dash = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
            for f in figures {
                outln!(
                    "  {:<38}  {:>12.0}  {:>9.2}  {:>7}  {:>10}  {:>10}",
                    f.name,
                    f.rows_per_s(),
                    f.seconds,
                    or_dash(f.cpu_s),
                    or_dash(f.server_cpu_s),
                    f.peak_rss_kib
                        .map_or("-".to_owned(), |k| format!("{:.1} MB", k as f64 / 1024.0))
                );
            }
            outln!(
                "  MySQL -> DuckDB / bare read = {read_ratio:.2}; MySQL -> DuckDB / DuckDB write = \
                 {duckdb_ratio:.2}; DuckDB -> MySQL / LOAD DATA = {write_ratio:.2}; bench process \
                 peak RSS {:.1} MB",
                own_peak_rss_kib().unwrap_or(0) as f64 / 1024.0
            );
            if let Some((server, driver, write, floor_s)) = floor {
                outln!(
                    "  floor of MySQL -> DuckDB on {cores} cores: the CPU of the read (server \
                     {server:.2} s, driver {driver:.2} s) and of DuckDB's write ({write:.2} s) \
                     takes {floor_s:.2} s of them: at most {:.0} rows/s before any work of \
                     caudal's own",
                    rows as f64 / floor_s
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The table read through sqlx (binary protocol, as the connector reads), rows fetched
    /// and dropped.
    fn bare_read(
        &self,
        runtime: &tokio::runtime::Runtime,
        admin: &mut MySqlConnection,
        rows: u64,
    ) -> anyhow::Result<Figure> {
        let sql = format!("SELECT * FROM `{}`.`t`", self.src);
        let (cpu, server) = (
            rusage_cpu_s(libc::RUSAGE_SELF),
            self.server_cpu.and_then(ServerCpu::seconds),
        );
        let started = Instant::now();
        // `execute` fetches every row of the result and drops it.
        runtime
            .block_on(sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *admin))
            .map_err(said)
            .context("bare read")?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Figure {
            name: "bare sqlx read (read limit)",
            rows,
            seconds,
            peak_rss_kib: None,
            cpu_s: Some(rusage_cpu_s(libc::RUSAGE_SELF) - cpu),
            server_cpu_s: server_since(self.server_cpu, server),
        })
    }

    /// DuckDB's write limit (step 5 of the module doc): the rows of `bench.duckdb` written
    /// by the MySQL -> DuckDB run, written again through the plugin into a new file.
    fn duckdb_write_limit(&self, rows: u64) -> anyhow::Result<Figure> {
        // Plugins from `CAUDAL_PLUGIN_PATH`, then next to the binary, as for the bench's
        // pipelines (which set no `plugin_dir`).
        let endpoints = PluginEndpoints::new(PluginRegistry::new(SearchPath::new(None)));
        // The encoded chunks go to a file first, each behind its length, and are read back one
        // at a time while the writes are timed: the bench's memory does not grow with the rows.
        let chunks_path = self.dir.join("write_limit.chunks");
        let mut from = super::open_duckdb(&endpoints, &self.dir.join("bench.duckdb"))?;
        let (schema, count) = {
            let mut out = BufWriter::with_capacity(1 << 20, File::create(&chunks_path)?);
            let mut reader = from.read(&ReadRequest::table("t"))?;
            let mut count = 0usize;
            while let Some(chunk) = reader.next_raw()? {
                let bytes = chunk.batch.as_slice();
                out.write_all(&(bytes.len() as u64).to_le_bytes())?;
                out.write_all(bytes)?;
                count += 1;
            }
            out.flush()?;
            ((**reader.schema()).clone(), count)
        };
        from.close()?;
        if schema.primary_key().is_empty() {
            bail!("DuckDB write limit: the table the run wrote has no primary key");
        }
        let path = self.dir.join("write_limit.duckdb");
        let cpu = rusage_cpu_s(libc::RUSAGE_SELF);
        let started = Instant::now();
        let mut to = super::open_duckdb(&endpoints, &path)?;
        to.prepare_table(&PrepareTable {
            table: "t".into(),
            schema,
            replace: true,
        })?;
        let mut chunks = std::io::BufReader::with_capacity(1 << 20, File::open(&chunks_path)?);
        let (mut written, mut chunk) = (0, Vec::new());
        for seq in 1..=count as u64 {
            let mut len = [0u8; 8];
            chunks.read_exact(&mut len)?;
            chunk.resize(usize::try_from(u64::from_le_bytes(len))?, 0);
            chunks.read_exact(&mut chunk)?;
            let request = WriteRequest {
                pipeline: "bench".into(),
                stream: "t".into(),
                table: "t".into(),
                seq,
                op: WriteOp::Insert,
            };
            match to.write_encoded(&request, &chunk)? {
                caudal_connector::WriteOutcome::Applied { rows } => written += rows,
                other => bail!("DuckDB write limit: seq {seq} was not applied: {other:?}"),
            }
        }
        to.close()?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_s = rusage_cpu_s(libc::RUSAGE_SELF) - cpu;
        if written != rows {
            bail!("DuckDB write limit: {rows} rows expected, {written} written");
        }
        Ok(Figure {
            name: "DuckDB write, in process (write limit)",
            rows,
            seconds,
            peak_rss_kib: None,
            cpu_s: Some(cpu_s),
            server_cpu_s: None,
        })
    }

    /// `LOAD DATA LOCAL INFILE` of `data` into `db.table` through the command-line client.
    fn load_data(&self, data: &Path, db: &str, table: &str, rows: u64) -> anyhow::Result<Figure> {
        let path = data
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('\'', "\\'");
        let sql = format!(
            "LOAD DATA LOCAL INFILE '{path}' INTO TABLE `{db}`.`{table}` CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n'"
        );
        let mut client = Command::new(&self.args.client);
        client
            .args(["--local-infile=1", "--batch", "--protocol=TCP"])
            .arg(format!("--host={}", self.server.host))
            .arg(format!("--port={}", self.server.port))
            .arg(format!("--user={}", self.server.user))
            .args(["-e", &sql]);
        match &self.server.password {
            Some(p) => client.env("MYSQL_PWD", p),
            None => client.env_remove("MYSQL_PWD"),
        };
        let (cpu, server) = (
            rusage_cpu_s(libc::RUSAGE_CHILDREN),
            self.server_cpu.and_then(ServerCpu::seconds),
        );
        let started = Instant::now();
        let out = client.stdin(Stdio::null()).output().with_context(|| {
            format!(
                "cannot run `{}` (choose the client with --client)",
                self.args.client
            )
        })?;
        let seconds = started.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "`{}` could not load {}: {}",
                self.args.client,
                data.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Figure {
            name: "LOAD DATA LOCAL INFILE",
            rows,
            seconds,
            peak_rss_kib: None,
            cpu_s: Some(rusage_cpu_s(libc::RUSAGE_CHILDREN) - cpu),
            server_cpu_s: server_since(self.server_cpu, server),
        })
    }

    /// `caudal run` of a pipeline of `streams` in its own directory, as a child process.
    fn engine_run(
        &self,
        name: &'static str,
        pipeline: &str,
        streams: &str,
        rows: u64,
    ) -> anyhow::Result<Figure> {
        let file = self.dir.join(format!("{pipeline}.toml"));
        std::fs::write(
            &file,
            format!(
                "[pipeline]\nname = \"{pipeline}\"\n\n[journal]\ndir = \"journal-{pipeline}\"\ndurability = \"batch\"\n\n{streams}"
            ),
        )?;
        let exe = std::env::current_exe().context("cannot find the caudal binary")?;
        let stderr_path = self.dir.join(format!("{pipeline}.log"));
        let stdout_path = self.dir.join(format!("{pipeline}.json"));
        let server = self.server_cpu.and_then(ServerCpu::seconds);
        let started = Instant::now();
        let child = Command::new(exe)
            .args(["run", "--progress", "none", "--json"])
            .arg(&file)
            .env(
                "CAUDAL_BENCH_SOURCE_URL",
                self.server.database_url(self.src),
            )
            .env("CAUDAL_BENCH_DEST_URL", self.server.database_url(self.dst))
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .context("cannot start caudal run")?;
        let (status, usage) = wait_with_rusage(child.id())?;
        let seconds = started.elapsed().as_secs_f64();
        let server_cpu_s = server_since(self.server_cpu, server);
        let report = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if status != 0 {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            bail!("{name}: caudal run exited {status}\n{report}{log}");
        }
        let report: serde_json::Value = serde_json::from_str(report.trim())
            .with_context(|| format!("{name}: caudal run printed no report"))?;
        if report["rows"].as_u64() != Some(rows) {
            bail!(
                "{name}: {rows} rows expected, the run read {}",
                report["rows"]
            );
        }
        Ok(Figure {
            name,
            rows,
            seconds,
            peak_rss_kib: Some(u64::try_from(usage.ru_maxrss).unwrap_or(0)),
            cpu_s: Some(usage_cpu_s(&usage)),
            server_cpu_s,
        })
    }
}

/// Waits for child `pid`; returns its exit status (128 + signal when killed) and its resource
/// usage (peak RSS in KiB, CPU time).
fn wait_with_rusage(pid: u32) -> anyhow::Result<(i32, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; `pid` is our own child, not yet waited for.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for caudal run");
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage))
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn own_peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ensure_local_infile(
    runtime: &tokio::runtime::Runtime,
    admin: &mut MySqlConnection,
) -> anyhow::Result<()> {
    let on = scalar(runtime, admin, "SELECT @@GLOBAL.local_infile")?;
    if on != "1" {
        exec(runtime, admin, "SET GLOBAL local_infile = 1").context(
            "the server refuses LOAD DATA LOCAL INFILE (local_infile = 0) and cannot be changed",
        )?;
    }
    Ok(())
}

fn exec(
    runtime: &tokio::runtime::Runtime,
    conn: &mut MySqlConnection,
    sql: &str,
) -> anyhow::Result<()> {
    runtime
        .block_on(conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))))
        .map_err(said)
        .with_context(|| format!("`{sql}`"))?;
    Ok(())
}

/// A driver error as one message: sqlx's own text already holds its cause, which the error
/// chain would print a second time.
fn said(e: sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn scalar(
    runtime: &tokio::runtime::Runtime,
    conn: &mut MySqlConnection,
    sql: &str,
) -> anyhow::Result<String> {
    let row = runtime
        .block_on(conn.fetch_one(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))))
        .map_err(said)
        .with_context(|| format!("`{sql}`"))?;
    let value = sqlx::Row::try_get_raw(&row, 0)?;
    let bytes = <&[u8] as sqlx::Decode<sqlx::MySql>>::decode(value)
        .map_err(|e| anyhow::anyhow!("`{sql}`: {e}"))?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Writes `rows` rows as `LOAD DATA`'s default text format (tabs, `\N` for NULL).
fn write_rows(path: &Path, rows: u64) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let day0 = time::macros::date!(2000 - 01 - 01).to_julian_day();
    let days: Vec<String> = (0..9000)
        .map(|d| {
            let date = time::Date::from_julian_day(day0 + d).expect("in range");
            format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            )
        })
        .collect();
    let at0 = time::macros::date!(2020 - 01 - 01).to_julian_day();
    let note = "n".repeat(200);
    for n in 0..rows {
        let micros = n * 1_234_567;
        let (day, in_day) = (micros / 86_400_000_000, micros % 86_400_000_000);
        let at = time::Date::from_julian_day(at0 + i32::try_from(day)?)?;
        let secs = in_day / 1_000_000;
        write!(
            out,
            "{n}\t{}\t{}\t{}\t{}\t{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}\tname {n}\t",
            (n % 65_536) as i64 - 32_768,
            (n * 7) % 2_147_483_647,
            n % 256,
            days[(n % 9000) as usize],
            at.year(),
            u8::from(at.month()),
            at.day(),
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            in_day % 1_000_000,
        )?;
        if n % 3 == 0 {
            out.write_all(b"\\N")?;
        } else {
            out.write_all(&note.as_bytes()[..(n % 200) as usize])?;
        }
        write!(
            out,
            "\t{}.{:02}\t{}.{:06}\t",
            n % 100_000 / 100,
            n % 100,
            n / 1_000_000,
            n % 1_000_000
        )?;
        if n % 5 == 0 {
            out.write_all(b"\\N")?;
        } else {
            write!(out, "{}", n as f64 / 7.0)?;
        }
        writeln!(out, "\t{}", n % 2)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_gives_host_port_user_and_the_decoded_password() {
        let s = Server::parse("mariadb://etl:p%40ss%3Aw@db.local:3307/").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str()),
            ("db.local", 3307, "etl")
        );
        assert_eq!(s.password.as_deref(), Some("p@ss:w"));
        assert_eq!(s.url, "mysql://etl:p%40ss%3Aw@db.local:3307");
        assert_eq!(s.redacted(), "mysql://etl:***@db.local:3307");
        assert_eq!(
            s.database_url("x"),
            "mysql://etl:p%40ss%3Aw@db.local:3307/x"
        );
        let s = Server::parse("mysql://root@127.0.0.1").unwrap();
        assert_eq!((s.port, s.password), (3306, None));
        for bad in [
            "mysql://root@h/db",
            "postgres://root@h",
            "mysql://h:3306",
            "mysql://root@h:x",
        ] {
            assert!(Server::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_rows_are_load_data_text_with_nulls_as_backslash_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.tsv");
        write_rows(&path, 4).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.len() == 12), "{text}");
        assert_eq!(
            lines[0],
            [
                "0",
                "-32768",
                "0",
                "0",
                "2000-01-01",
                "2020-01-01 00:00:00.000000",
                "name 0",
                "\\N",
                "0.00",
                "0.000000",
                "\\N",
                "0"
            ]
        );
        assert_eq!(lines[3][5], "2020-01-01 00:00:03.703701");
        assert_eq!((lines[2][7], lines[3][7]), ("nn", "\\N"));
        assert_eq!(lines[3][10], (3.0f64 / 7.0).to_string());
    }
}
