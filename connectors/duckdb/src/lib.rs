//! The DuckDB connector plugin: source and sink on duckdb-rs, loaded by the caudal host at run time.

/// The DuckDB library version this plugin is built against.
pub fn duckdb_version() -> String {
    duckdb::Connection::open_in_memory()
        .and_then(|c| c.query_row("SELECT version()", [], |r| r.get::<_, String>(0)))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
