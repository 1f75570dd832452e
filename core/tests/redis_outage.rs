//! The cache job of `pipelines/cache.toml` through an outage of MySQL: MySQL (the system of
//! record) unreachable for three runs while the Redis cache is still written from the
//! journal; then MySQL back, its pending batches applied in journal order, and `caudal
//! verify` finding journal, MySQL and Redis equal.
//!
//! Needs MariaDB on 127.0.0.1:3306 (root, no password) with the `mysql` client, Redis on
//! 127.0.0.1:6379 with `redis-cli`, and `cargo build --release --workspace` first.

mod engine_support;
mod redis_support;

mod verify_support;

#[test]
fn mysql_outage_with_a_redis_cache_loses_nothing_and_keeps_order() {
    let prefix = redis_support::Prefix::new("outage");
    verify_support::outage_scenario("outage_redis", |_| {
        format!(
            "[connections.cache]\nconnector = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n\
             prefix = \"{}\"\n",
            prefix.0
        )
    });
}
