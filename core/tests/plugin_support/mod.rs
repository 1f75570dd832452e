//! Shared helpers of the plugin tests: where the test plugins are built.
//!
//! The plugin tests load real cdylibs (`libcaudal_memory.so`, `libcaudal_panicky.so`,
//! `libcaudal_wrongabi.so`) with dlopen from the build output — they are not linked in. Cargo
//! does not build other packages' cdylibs for a test run, so the test command builds the whole
//! workspace first (`cargo build --workspace`, same profile and target directory as the tests).

#![allow(dead_code)]

use std::path::PathBuf;

use caudal::host::{Plugin, plugin_file_name};

/// `target/<profile>`: the test binary runs from `target/<profile>/deps/`.
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("the test binary lives in target/<profile>/deps")
}

/// The built test plugin `name`; fails with instructions when it was not built.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = build_dir().join(plugin_file_name(name));
    assert!(
        path.is_file(),
        "test plugin {} is missing. The plugin tests dlopen the plugins from the build output: run \
         `cargo build --workspace` with the same profile and CARGO_TARGET_DIR before running the tests.",
        path.display()
    );
    path
}

/// Loads test plugin `name`.
pub fn load(name: &str) -> Plugin {
    let path = plugin_path(name);
    Plugin::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Whether a file whose name contains `file_name` is mapped into this process.
pub fn is_mapped(file_name: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps is readable")
        .contains(file_name)
}
