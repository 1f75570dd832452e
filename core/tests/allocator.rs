//! The `caudal` executable's allocator is the whole process's: libc, and the plugins loaded at
//! run time (DuckDB's C++ among them), bind `malloc` and `free` to the executable's jemalloc
//! (`src/main.rs`). Read off glibc's own report of its symbol bindings.
//!
//! Needs the plugins built next to the executable: `cargo build --workspace`.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::process::Command;

#[test]
fn libc_and_plugins_allocate_with_the_executables_malloc() {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_caudal")).unwrap();
    let out = Command::new(&exe)
        .arg("plugins")
        .env("LD_DEBUG", "bindings")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("libcaudal_duckdb.so"), "{listed}");
    let exe = exe.display().to_string();
    for library in ["/libc.so.6", "/libstdc++.so.6", "/libcaudal_duckdb.so"] {
        for symbol in ["malloc", "free"] {
            let bound = report.lines().any(|line| {
                line.contains("binding file ")
                    && line.contains(&format!(
                        "{library} [0] to {exe} [0]: normal symbol `{symbol}'"
                    ))
            });
            assert!(bound, "{library} does not bind `{symbol}` to {exe}");
        }
    }
}
