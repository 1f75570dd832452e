//! The engine commands as a user runs them, through the `memory` test plugin (loaded with
//! dlopen; its sink lives as long as one process): `run` with its table and JSON summaries,
//! `status`, `history`, `failures`, `retry`, `replay` and their exit statuses, on a run that
//! succeeds, one whose writes fail, and one whose source fails.
//!
//! Needs the test plugins built first, same profile and target directory
//! (`cargo build --workspace`, see `plugin_support`).

mod plugin_support;

use std::path::{Path, PathBuf};
use std::process::Output;

/// `caudal ARGS`, with none of the caller's settings in its environment.
fn command(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_caudal"));
    command
        .args(args)
        .env_remove("CAUDAL_PLUGIN_PATH")
        .env_remove("CAUDAL_JOURNAL")
        .env_remove("RUST_LOG");
    command
}

fn caudal(args: &[&str]) -> Output {
    command(args).output().expect("caudal runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(args: &[&str]) -> String {
    let out = caudal(args);
    assert!(
        out.status.success(),
        "caudal {args:?}: {:?}\n{}\n{}",
        out.status.code(),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn pipeline(dir: &Path, body: &str) -> PathBuf {
    // The memory plugin is only in the build directory: name it as the pipeline's plugin_dir.
    plugin_support::plugin_path("memory");
    let file = dir.join("p.toml");
    std::fs::write(
        &file,
        format!(
            "[pipeline]\nname = \"mem\"\nplugin_dir = \"{}\"\n\n[journal]\ndir = \"journal\"\n\n\
             [connections.gen]\nconnector = \"memory\"\nrows = 5000\n\n\
             [connections.sink]\nconnector = \"memory\"\n\n\
             [connections.other]\nconnector = \"memory\"\n\n{body}",
            plugin_support::build_dir().display()
        ),
    )
    .unwrap();
    file
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_good_run_shows_in_status_and_history_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(
        dir.path(),
        "[[streams]]\nfrom = \"gen\"\ntable = \"all_types\"\nto = \"sink\"\nchunk_rows = 1500\n",
    );
    let f = file.to_str().unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["run", f, "--json", "--progress", "none"])).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["rows"], 5000);
    assert_eq!(report["batches"], 4);
    assert_eq!(report["streams"][0]["status"], "ok");

    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--file", f, "--json"])).unwrap();
    let stream = &status["pipelines"][0]["streams"][0];
    assert_eq!(stream["stream"], "all_types");
    assert_eq!(stream["state"], "completed");
    assert_eq!(stream["rows"], 5000);
    assert_eq!(stream["destinations"][0]["destination"], "sink");
    assert_eq!(stream["destinations"][0]["pending_batches"], 0);
    let text = ok(&["status", "--file", f]);
    assert!(
        text.contains("all_types") && text.contains("sink: ok"),
        "{text}"
    );

    let history = json_lines(&ok(&["history", "--file", f, "--json"]));
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["trigger"], "manual");
    assert_eq!(history[0]["state"], "completed");
    assert_eq!(history[0]["writes_applied"], 4);

    assert!(ok(&["failures", "--file", f]).contains("no failed writes pending"));
    assert!(ok(&["retry", "--file", f]).contains("nothing to retry"));

    // Replay into another (empty) sink: every batch, from the journal.
    let dry = ok(&["replay", "--file", f, "--to", "other", "--dry-run"]);
    assert!(dry.contains("would write 4"), "{dry}");
    let replay: serde_json::Value =
        serde_json::from_str(&ok(&["replay", "--file", f, "--to", "other", "--json"])).unwrap();
    assert_eq!(replay["ok"], true, "{replay}");
    assert_eq!(replay["streams"][0]["applied"], 4);
    let history = json_lines(&ok(&["history", "--file", f, "--json", "--last", "1"]));
    assert_eq!(history[0]["trigger"], "replay");

    // The journal location may also be given directly; the pipeline file is found in it.
    let journal = dir.path().join("journal");
    let by_dir = ok(&["status", "--journal", journal.to_str().unwrap()]);
    assert!(by_dir.contains("pipeline mem"), "{by_dir}");
    ok(&["journal", "verify", "--journal", journal.to_str().unwrap()]);
}

#[test]
fn failed_writes_are_retried_listed_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    // The memory sink only inserts: with a primary key the engine upserts, and every write
    // fails (a permanent error, retried all the same as [retry] says).
    let file = pipeline(
        dir.path(),
        "[[streams]]\nfrom = \"gen\"\ntable = \"all_types\"\nto = \"sink\"\nmode = \"incremental\"\n\
         cursor = \"id\"\nprimary_key = [\"id\"]\nchunk_rows = 2500\n\n\
         [retry]\nmax_attempts = 3\nevery = \"30ms\"\n",
    );
    let f = file.to_str().unwrap();
    let out = caudal(&["run", f, "--progress", "none"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("PENDING -> sink"), "{text}");
    assert!(text.contains("`caudal retry` writes it again"), "{text}");
    let failures = json_lines(&ok(&["failures", "--file", f, "--json"]));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["attempts"], 3);
    assert_eq!(failures[0]["batches"], 2);
    assert_eq!(failures[0]["retryable"], false);
    assert!(
        failures[0]["error"]
            .as_str()
            .unwrap()
            .contains("only inserts"),
        "{}",
        failures[0]
    );
    let history = ok(&["history", "--file", f]);
    for needle in ["attempt 2", "attempt 3", "scheduled for", "only inserts"] {
        assert!(history.contains(needle), "`{needle}` in\n{history}");
    }
    // Still failing: `retry` says so and exits 1; the attempt is counted.
    let out = caudal(&["retry", "--file", f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("still failing"), "{}", stdout(&out));
    let failures = json_lines(&ok(&["failures", "--file", f, "--json"]));
    assert_eq!(failures[0]["attempts"], 4);
    let seq = failures[0]["first_seq"].as_u64().unwrap();
    let out = caudal(&["retry", "--file", f, "--seq", &(seq + 1000).to_string()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown seq is a usage error"
    );
}

#[test]
fn a_source_that_cannot_be_read_fails_the_run_and_shows_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(
        dir.path(),
        "[[streams]]\nfrom = \"gen\"\ntable = \"no_such_table\"\nto = \"sink\"\n\n\
         [retry]\nmax_attempts = 2\nevery = \"10ms\"\n",
    );
    let f = file.to_str().unwrap();
    let out = caudal(&["run", f, "--json", "--progress", "none"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["streams"][0]["status"], "read_failed");
    assert!(
        report["streams"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no_such_table"),
        "{report}"
    );
    let history = json_lines(&ok(&["history", "--file", f, "--json"]));
    assert_eq!(history[0]["state"], "failed");
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap()
            .contains("no_such_table")
    );
    let status = ok(&["status", "--file", f]);
    assert!(status.contains("read failed"), "{status}");
    // A missing table is not an outage: it is not read again, whatever [retry] allows.
    let journal = dir.path().join("journal");
    let inspect = ok(&[
        "journal",
        "inspect",
        "--journal",
        journal.to_str().unwrap(),
        "--kind",
        "StreamStarted",
        "--json",
    ]);
    assert_eq!(inspect.lines().count(), 1, "{inspect}");
    // The text report sends the user to the next run, not to `caudal retry` (it has no write
    // to retry).
    let out = caudal(&["run", f, "--progress", "none"]);
    let text = stdout(&out);
    assert!(text.contains("FAILED reading"), "{text}");
    assert!(
        text.contains("read again by the next `caudal run`"),
        "{text}"
    );
    assert!(!text.contains("caudal retry"), "{text}");
}

#[test]
fn a_run_whose_reader_is_gone_still_finishes_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(
        dir.path(),
        "[[streams]]\nfrom = \"gen\"\ntable = \"all_types\"\nto = \"sink\"\nchunk_rows = 1500\n",
    );
    let f = file.to_str().unwrap();
    // As `caudal run p.toml | true`: standard output is a pipe nobody reads.
    for args in [
        vec!["run", f, "--progress", "none"],
        vec!["retry", "--file", f],
    ] {
        let mut child = command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("standard output"), "{args:?}: {stderr}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--file", f, "--json"])).unwrap();
    let stream = &status["pipelines"][0]["streams"][0];
    assert_eq!(stream["state"], "completed", "{status}");
    assert_eq!(stream["rows"], 5000, "{status}");
}
