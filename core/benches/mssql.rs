//! Rows/s of SQL Server -> DuckDB and DuckDB -> SQL Server through the engine (the `caudal`
//! binary and the mssql and duckdb plugins), against the TDS test server of `tests/tds-server`
//! (a wire-level double of SQL Server backed by DuckDB, not a SQL Server), with the time spent
//! inside the test server printed beside each figure, so the connector's and the engine's own
//! cost is visible.
//!
//! ```text
//! cargo build --release --workspace --all-targets
//! cargo bench --workspace --bench mssql [-- ROWS]        # default 200000 rows
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use caudal_tds_server::{Stats, TdsServer};

const USER: &str = "bench";
const PASSWORD: &str = "Bench-pw-1";

const CREATE: &str = "CREATE TABLE ventas (id bigint NOT NULL PRIMARY KEY, tienda int NOT NULL, \
    factura bigint NOT NULL, linea smallint NOT NULL, importe decimal(12, 2) NULL, \
    peso float NULL, fecha date NOT NULL, creado datetime2(6) NOT NULL, \
    cliente nvarchar(40) NOT NULL, pagado bit NOT NULL, nota nvarchar(200) NULL, \
    estado tinyint NOT NULL)";

fn caudal_binary() -> PathBuf {
    // target/release/deps/mssql-HASH -> target/release/caudal
    let exe = std::env::current_exe().expect("the bench binary's path");
    let release = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release/deps");
    let bin = release.join("caudal");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --release --workspace first",
        bin.display()
    );
    bin
}

fn run(caudal: &Path, file: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(caudal)
        .env("MSSQL_PASSWORD", PASSWORD)
        .env_remove("CAUDAL_PLUGIN_PATH")
        .args(["run", &file.display().to_string(), "--progress", "none"])
        .output()
        .expect("caudal runs");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "caudal run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn delta(after: &Stats, before: &Stats) -> (Duration, Duration) {
    (after.busy - before.busy, after.engine - before.engine)
}

fn report(what: &str, rows: u64, took: Duration, server: (Duration, Duration)) {
    let secs = took.as_secs_f64();
    let outside = (secs - server.0.as_secs_f64()).max(1e-9);
    println!(
        "{what}: {rows} rows in {secs:.2} s = {:.0} rows/s; inside the test server {:.2} s \
         (DuckDB {:.2} s); outside it {outside:.2} s = {:.0} rows/s",
        rows as f64 / secs,
        server.0.as_secs_f64(),
        server.1.as_secs_f64(),
        rows as f64 / outside,
    );
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let caudal = caudal_binary();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = TdsServer::builder()
        .credentials(USER, PASSWORD)
        .database_file("origen", dir.path().join("origen.duckdb"))
        .database_file("destino", dir.path().join("destino.duckdb"))
        .start_blocking()
        .expect("the TDS test server starts");
    server.execute("origen", CREATE).expect("create");
    let generate = format!(
        "INSERT INTO ventas SELECT i, i % 16, i * 7 % 100000, i % 50, \
         CAST((i * 37) % 1000000 / 100 AS decimal(12, 2)), i * 0.5, \
         CAST('2020-01-01' AS date) + CAST(i % 1500 AS int), \
         CAST('2020-01-01' AS datetime2) + to_microseconds(i * 1000003), \
         concat('cliente-', CAST(i % 5000 AS nvarchar(10))), i % 3 = 0, \
         CASE WHEN i % 10 = 0 THEN NULL ELSE concat('nota ', CAST(i AS nvarchar(20))) END, \
         i % 255 FROM range(0, {rows}) AS r(i)"
    );
    assert_eq!(server.execute("origen", &generate).expect("generate"), rows);

    let file = dir.path().join("bench.toml");
    std::fs::write(
        &file,
        format!(
            "[pipeline]\nname = \"bench\"\n\n[journal]\ndir = \"journal\"\n\n\
             [connections.origen]\nconnector = \"mssql\"\n\
             url = \"mssql://{USER}:${{MSSQL_PASSWORD}}@{addr}/origen\"\nencrypt = \"off\"\n\n\
             [connections.destino]\nconnector = \"mssql\"\n\
             url = \"mssql://{USER}:${{MSSQL_PASSWORD}}@{addr}/destino\"\nencrypt = \"off\"\n\n\
             [connections.pato]\nconnector = \"duckdb\"\npath = \"pato.duckdb\"\n\n\
             [[streams]]\nname = \"ida\"\nfrom = \"origen\"\ntable = \"ventas\"\nto = \"pato\"\n",
            addr = server.addr()
        ),
    )
    .expect("pipeline file");
    println!("SQL Server (TDS test server) <-> DuckDB through caudal, {rows} rows x 12 columns");
    let before = server.stats();
    let took = run(&caudal, &file);
    report(
        "SQL Server -> DuckDB",
        rows,
        took,
        delta(&server.stats(), &before),
    );

    // The way back: a second pipeline (its own journal) from DuckDB's copy.
    let back = dir.path().join("back.toml");
    let text = std::fs::read_to_string(&file).expect("pipeline file");
    let text = text
        .replace("name = \"bench\"", "name = \"bench_back\"")
        .replace("dir = \"journal\"", "dir = \"journal_back\"")
        .replace(
            "name = \"ida\"\nfrom = \"origen\"\ntable = \"ventas\"\nto = \"pato\"",
            "name = \"vuelta\"\nfrom = \"pato\"\ntable = \"ventas\"\nto = \"destino\"",
        );
    std::fs::write(&back, text).expect("pipeline file");
    let before = server.stats();
    let took = run(&caudal, &back);
    report(
        "DuckDB -> SQL Server",
        rows,
        took,
        delta(&server.stats(), &before),
    );
    // Every row made the way back (deleting them counts them; the scratch server goes next).
    assert_eq!(
        server
            .execute("destino", "DELETE FROM ventas WHERE id >= 0")
            .expect("the copy is there"),
        rows
    );
}
