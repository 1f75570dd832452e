//! The cache job through an outage of its system of record: a stream writes into MySQL and a
//! cache; while MySQL is unreachable (its connection points at a closed port) the batches are
//! journaled and the cache is still written, MySQL's writes wait as pending; when the
//! pipeline file points at the live server again, the pending batches apply in journal order
//! and `caudal verify` finds journal, MySQL and cache equal.
//!
//! Needs the MariaDB server on 127.0.0.1:3306 (root, no password) and the `mysql` client,
//! and `cargo build --release --workspace` first.

mod engine_support;

mod verify_support;

#[test]
fn mysql_outage_with_a_duckdb_cache_loses_nothing_and_keeps_order() {
    verify_support::outage_scenario("outage_duckdb", |dir| {
        let _ = dir;
        "[connections.cache]\nconnector = \"duckdb\"\npath = \"cache.duckdb\"\n".to_owned()
    });
}
