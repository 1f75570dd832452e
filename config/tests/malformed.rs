//! Every file under `tests/malformed/` must be refused with an error that names the file, the
//! line and the column, and says what is wrong. The first line of each file states what is
//! expected: `# expect: LINE:COLUMN: fragment of the message`.

use std::path::{Path, PathBuf};

use caudal_config::Pipeline;

struct Expectation {
    line: usize,
    column: usize,
    fragment: String,
}

fn expectation(path: &Path, text: &str) -> Expectation {
    let first = text.lines().next().unwrap_or_default();
    let spec = first.strip_prefix("# expect: ").unwrap_or_else(|| {
        panic!(
            "{}: first line must be `# expect: L:C: message`",
            path.display()
        )
    });
    let mut parts = spec.splitn(3, ':');
    let mut number = |what: &str| -> usize {
        parts
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: bad {what} in {first:?}", path.display()))
    };
    let line = number("line");
    let column = number("column");
    let fragment = parts.next().unwrap_or_default().trim().to_owned();
    Expectation {
        line,
        column,
        fragment,
    }
}

fn malformed_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/malformed exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn each_malformed_file_is_refused_at_its_line_and_column() {
    let files = malformed_files();
    assert!(files.len() >= 20, "only {} malformed files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let expected = expectation(path, &text);
        let err = match Pipeline::from_path(path) {
            Ok(_) => {
                failures.push(format!("{}: was accepted", path.display()));
                continue;
            }
            Err(err) => err,
        };
        let shown = err.to_string();
        let first = shown.lines().next().unwrap_or_default();
        let prefix = format!("{}:{}:{}: ", path.display(), expected.line, expected.column);
        let positioned = err.file() == path
            && err.line() == Some(expected.line)
            && err.column() == Some(expected.column)
            && first.starts_with(&prefix);
        if !positioned || !first.contains(&expected.fragment) {
            failures.push(format!(
                "{}:\n  expected {prefix}...{}...\n  got      {shown}",
                path.display(),
                expected.fragment
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn malformed_files_each_break_a_different_rule() {
    // Two files with the same expected message would test one rule twice and hide a gap.
    let mut fragments: Vec<String> = malformed_files()
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("readable");
            expectation(p, &text).fragment
        })
        .collect();
    let total = fragments.len();
    fragments.sort();
    fragments.dedup();
    assert_eq!(
        fragments.len(),
        total,
        "duplicate expectations among the malformed files"
    );
}
