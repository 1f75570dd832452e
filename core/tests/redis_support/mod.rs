//! Helpers of the Redis tests: a key prefix of their own on the server at 127.0.0.1:6379
//! (removed at the end), and `redis-cli`.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use crate::engine_support::{run, s};

/// Runs `redis-cli` with `args`; fails the test when the server is absent.
pub fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379"])
        .args(args)
        .output()
        .expect("redis-cli runs (the Redis tests need it and the server)");
    assert!(
        out.status.success(),
        "redis_server_required: redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every key under `prefix:`.
pub fn keys_under(prefix: &str) -> Vec<String> {
    redis_cli(&["--scan", "--pattern", &format!("{prefix}:*")])
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect()
}

/// Deletes every key under `prefix:`.
pub fn delete_under(prefix: &str) {
    for chunk in keys_under(prefix).chunks(500) {
        let mut args = vec!["DEL"];
        args.extend(chunk.iter().map(String::as_str));
        redis_cli(&args);
    }
}

/// A key prefix for one test, its keys deleted at the end.
pub struct Prefix(pub String);

impl Prefix {
    pub fn new(tag: &str) -> Prefix {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = Prefix(format!("caudal_{tag}_{}_{nanos}", std::process::id()));
        assert_eq!(redis_cli(&["PING"]).trim(), "PONG", "redis_server_required");
        p
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let listed = Command::new("redis-cli")
            .args(["--scan", "--pattern", &format!("{}:*", self.0)])
            .output();
        if let Ok(out) = listed {
            let text = String::from_utf8_lossy(&out.stdout);
            let keys: Vec<&str> = text.lines().filter(|k| !k.is_empty()).collect();
            // A few hundred keys a command: a test's cache may hold tens of thousands.
            for chunk in keys.chunks(500) {
                let _ = Command::new("redis-cli").arg("UNLINK").args(chunk).output();
            }
        }
    }
}

/// `caudal project redis --file FILE --rebuild --json`, which must succeed; its JSON report.
pub fn rebuild(file: &Path) -> serde_json::Value {
    let out = run(&[
        "project",
        "redis",
        "--file",
        s(file),
        "--rebuild",
        "--json",
        "--progress",
        "none",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "project redis --rebuild: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"))
}
