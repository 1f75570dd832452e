//! `caudal run` and `caudal validate` on pipeline files that are wrong: each gives an error
//! naming the file, line and column, exit status 2, and nothing in the journal (the journal
//! directory is not even created). Uses the config crate's malformed files (each states its
//! expected position on its first line), plus mistakes only the engine and the plugin search
//! can see. Needs no plugin and no server.

use std::path::{Path, PathBuf};
use std::process::Command;

fn caudal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caudal"));
    // No plugin may be found by accident next to the binary or on the path.
    c.env("CAUDAL_PLUGIN_PATH", "/nonexistent-caudal-plugins");
    c.env_remove("CAUDAL_JOURNAL");
    c
}

fn malformed() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tests/malformed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/tests/malformed exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// `(line, column)` from the file's `# expect: L:C: ...` first line.
fn expected_position(text: &str) -> (usize, usize) {
    let spec = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .expect("first line states the expectation");
    let mut parts = spec.splitn(3, ':');
    let line = parts.next().unwrap().trim().parse().unwrap();
    let column = parts.next().unwrap().trim().parse().unwrap();
    (line, column)
}

/// No journal: neither the directory the file names nor the default one exists.
fn assert_no_journal(dir: &Path) {
    let leftovers: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg") || p.ends_with("LOCK"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "journal files were written: {leftovers:?}"
    );
    assert!(!dir.join("journal").exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn every_malformed_file_exits_2_at_its_line_and_column_and_journals_nothing() {
    let files = malformed();
    assert!(files.len() >= 20, "only {} malformed files", files.len());
    for src in files {
        let text = std::fs::read_to_string(&src).unwrap();
        let (line, column) = expected_position(&text);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(src.file_name().unwrap());
        std::fs::write(&file, &text).unwrap();
        for command in ["run", "validate"] {
            let out = caudal()
                .arg(command)
                .arg(&file)
                .env_remove("TIENDA_01_PASSWORD")
                .current_dir(dir.path())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} {}: {stderr}",
                src.display()
            );
            let position = format!("{}:{line}:{column}: ", file.display());
            assert!(
                stderr.contains(&position),
                "{command} {}: expected `{position}` in:\n{stderr}",
                src.display()
            );
            assert!(
                out.stdout.is_empty(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        assert_no_journal(dir.path());
    }
}

const VALID: &str = r#"[pipeline]
name = "p"

[connections.src]
connector = "nosuchsource"
path = "src.duckdb"

[connections.wh]
connector = "nosuchconnector"
path = "wh.duckdb"

[[streams]]
from = "src"
table = "ventas"
to = "wh"
"#;

#[test]
fn a_connector_without_a_plugin_is_named_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    // The built plugins sit next to the binary, on the search path: name connectors that
    // exist nowhere.
    std::fs::write(&file, VALID.replace("\"duckdb\"", "\"nosuchsource\"")).unwrap();
    let out = caudal().arg("validate").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Neither connector exists as a plugin; each is reported where its `connector = ...` is
    // written.
    assert!(
        stderr.contains(&format!("{}:5:13: connection `src`", file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:9:13: connection `wh`", file.display()))
            && stderr.contains("no plugin for connector `nosuchconnector`"),
        "{stderr}"
    );
    assert_no_journal(dir.path());
}

#[test]
fn run_options_that_do_not_fit_the_pipeline_exit_2_before_journaling() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, VALID).unwrap();
    for (args, message) in [
        (vec!["--stream", "nope"], "no stream `nope`"),
        (
            vec!["--partition", "tienda_09"],
            "no selected stream reads from `tienda_09`",
        ),
        (vec!["--from", "2025-01-01"], "need a cursor column"),
        (vec!["--jobs", "0"], "--jobs must be at least 1"),
    ] {
        let out = caudal().arg("run").arg(&file).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_no_journal(dir.path());
    }
    let out = caudal()
        .arg("run")
        .arg("--bogus")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage errors exit 2 too");
}
