//! `caudal journal inspect | tail | stats | verify` run as a user runs them: the built binary on
//! a journal directory written through the library.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use caudal_journal::{Digest, EntryKind, Journal, JournalOptions, NewEntry, RunId};
use serde_json::Value;

fn caudal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caudal"))
        .args(args)
        .output()
        .expect("run caudal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a small journal: two runs of two pipelines, with batches and one failure.
fn write_journal(dir: &Path) -> RunId {
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let run = RunId(0x00c0_ffee_0000_0001);
    let other = RunId(0x00c0_ffee_0000_0002);
    let at = |s: i64| 1_790_000_000_000_000 + s * 1_000_000;
    let entries = vec![
        NewEntry::new(
            "ventas",
            EntryKind::RunStarted {
                pipeline_file: "ventas.toml".into(),
                trigger: "manual".into(),
                streams: vec!["ventas_raw".into()],
                args: String::new(),
            },
        )
        .with_run(run)
        .at(at(0)),
        NewEntry::new(
            "ventas",
            EntryKind::BatchRead {
                stream: "ventas_raw".into(),
                partition: Some("tienda_01".into()),
                schema_id: 7,
                rows: 20_000,
                bytes: 1_000,
                cursor_low: Some("2026-11-01".into()),
                cursor_high: Some("2026-11-02".into()),
                digest: Digest([1; 32]),
            },
        )
        .with_run(run)
        .with_payload(vec![9; 1_000])
        .at(at(10)),
        NewEntry::new(
            "ventas",
            EntryKind::WriteFailed {
                stream: "ventas_raw".into(),
                partition: Some("tienda_01".into()),
                destination: "warehouse".into(),
                batch_seq: 2,
                error: "disk full".into(),
                attempt: 1,
                retryable: true,
            },
        )
        .with_run(run)
        .at(at(20)),
        NewEntry::new(
            "cache",
            EntryKind::RunStarted {
                pipeline_file: "cache.toml".into(),
                trigger: "schedule".into(),
                streams: vec!["productos".into()],
                args: String::new(),
            },
        )
        .with_run(other)
        .at(at(3_600)),
        NewEntry::new(
            "cache",
            EntryKind::RunCompleted {
                rows: 0,
                batches: 0,
                streams_ok: 1,
                streams_failed: 0,
                elapsed_us: 5,
            },
        )
        .with_run(other)
        .at(at(3_700)),
    ];
    for e in entries {
        journal.append_blocking(e).unwrap();
    }
    journal.close().unwrap();
    run
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn inspect_filters_by_kind_pipeline_run_seq_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let run = write_journal(&dir);
    let d = dir.to_str().unwrap();

    let all = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
    ])));
    assert_eq!(
        all.iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all[1]["kind"], "BatchRead");
    assert_eq!(all[1]["fields"]["partition"], "tienda_01");
    assert_eq!(all[1]["payload_bytes"], 1_000);
    assert_eq!(all[1]["fields"]["digest"], "01".repeat(32));

    let failed = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--kind",
        "writefailed",
    ])));
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["fields"]["error"], "disk full");

    let cache = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--pipeline",
        "cache",
    ])));
    assert_eq!(
        cache
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 5]
    );

    let by_run = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--run",
        &run.to_string(),
    ])));
    assert_eq!(by_run.len(), 3);

    let one = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--seq",
        "4",
    ])));
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["seq"], 4);

    let range = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--from-seq",
        "2",
        "--to-seq",
        "3",
    ])));
    assert_eq!(range.len(), 2);

    let since = all[3]["time"].as_str().unwrap();
    let late = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--since",
        since,
    ])));
    assert_eq!(late.len(), 2);
    let early = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--until",
        since,
    ])));
    assert_eq!(early.len(), 3);

    let table = caudal(&["journal", "inspect", "--journal", d]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.lines().next().unwrap().contains("SEQ"), "{text}");
    assert!(
        text.contains("WriteFailed") && text.contains("error=disk full"),
        "{text}"
    );
}

#[test]
fn bad_filters_are_usage_errors_that_name_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    write_journal(&dir);
    let d = dir.to_str().unwrap();
    let out = caudal(&["journal", "inspect", "--journal", d, "--kind", "BatchReed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("BatchReed"), "{}", stderr(&out));
    let out = caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--since",
        "last tuesday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("last tuesday"), "{}", stderr(&out));
    let out = caudal(&[
        "journal",
        "inspect",
        "--journal",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn stats_counts_entries_per_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    write_journal(&dir);
    let out = caudal(&[
        "journal",
        "stats",
        "--journal",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["entries"], 5);
    assert_eq!(v["segments"], 1);
    assert_eq!(v["first_seq"], 1);
    assert_eq!(v["last_seq"], 5);
    assert_eq!(v["kinds"]["RunStarted"], 2);
    assert_eq!(v["kinds"]["BatchRead"], 1);
    assert_eq!(v["kinds"]["VerifyResult"], 0);
    assert!(v["bytes"].as_u64().unwrap() > 1_000);
    let text = stdout(&caudal(&[
        "journal",
        "stats",
        "--journal",
        dir.to_str().unwrap(),
    ]));
    assert!(text.contains("entries        5"), "{text}");
}

#[test]
fn verify_passes_then_names_the_damaged_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    write_journal(&dir);
    let d = dir.to_str().unwrap();
    let ok = caudal(&["journal", "verify", "--journal", d]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("ok: 5 entries"), "{}", stdout(&ok));

    // Flip one byte inside the payload of seq 2 (the only 1000-byte run of 9s).
    let entries = json_lines(&stdout(&caudal(&[
        "journal",
        "inspect",
        "--journal",
        d,
        "--json",
        "--seq",
        "2",
    ])));
    let segment = dir.join(entries[0]["segment"].as_str().unwrap());
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w.iter().all(|b| *b == 9))
        .unwrap()
        + 10;
    bytes[at] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let bad = caudal(&["journal", "verify", "--journal", d]);
    assert_eq!(bad.status.code(), Some(1));
    let msg = stderr(&bad);
    assert!(msg.contains("seq 2"), "{msg}");
    assert!(
        msg.contains(entries[0]["segment"].as_str().unwrap()),
        "{msg}"
    );
    let bad = caudal(&["journal", "verify", "--journal", d, "--json"]);
    assert_eq!(bad.status.code(), Some(1));
    let v: Value = serde_json::from_str(stdout(&bad).trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["seq"], 2);
}

#[test]
fn tail_shows_the_last_entries_and_follows_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    write_journal(&dir);
    let d = dir.to_str().unwrap();
    let last2 = json_lines(&stdout(&caudal(&[
        "journal",
        "tail",
        "--journal",
        d,
        "-n",
        "2",
        "--json",
    ])));
    assert_eq!(
        last2
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 5]
    );
    let last_batch = json_lines(&stdout(&caudal(&[
        "journal",
        "tail",
        "--journal",
        d,
        "-n",
        "1",
        "--json",
        "--kind",
        "BatchRead",
    ])));
    assert_eq!(last_batch[0]["seq"], 2);

    // Whether tail starts before or after the appends below, the window (-n 10, filtered) plus
    // follow mode print each new WriteApplied exactly once.
    let mut child = Command::new(env!("CARGO_BIN_EXE_caudal"))
        .args([
            "journal",
            "tail",
            "--journal",
            d,
            "-n",
            "10",
            "-f",
            "--json",
            "--kind",
            "WriteApplied",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = Journal::open(&dir, JournalOptions::default()).unwrap();
    for i in 0..3u64 {
        journal
            .append_blocking(NewEntry::new(
                "ventas",
                EntryKind::WriteApplied {
                    stream: "ventas_raw".into(),
                    partition: None,
                    destination: "warehouse".into(),
                    batch_seq: 2,
                    rows: i,
                    attempt: 1,
                    elapsed_us: 1,
                },
            ))
            .unwrap();
    }
    // If tail -f never prints, end it after a while so the read below fails instead of hanging.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill").arg(&pid).status();
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = lines.next().expect("tail -f ended").unwrap();
        seen.push(
            serde_json::from_str::<Value>(&line).unwrap()["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen, [6, 7, 8]);
}

#[test]
fn a_reader_that_stops_early_ends_inspect_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    write_journal(&dir);
    // Enough entries that the listing is far more than a pipe holds (64 KiB).
    let journal = Journal::open(&dir, JournalOptions::default()).unwrap();
    for i in 0..5_000 {
        journal
            .append_blocking(NewEntry::new(
                "ventas",
                EntryKind::RunStarted {
                    pipeline_file: format!("ventas_{i}.toml"),
                    trigger: "manual".into(),
                    streams: vec!["ventas_raw".into()],
                    args: String::new(),
                },
            ))
            .unwrap();
    }
    journal.close().unwrap();
    let d = dir.to_str().unwrap();
    for args in [
        vec!["journal", "inspect", "--journal", d],
        vec!["journal", "inspect", "--journal", d, "--json"],
    ] {
        // As `caudal journal inspect | head -1`: read one line, then close the pipe.
        let mut child = Command::new(env!("CARGO_BIN_EXE_caudal"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{args:?}: nothing printed");
        let out = child.wait_with_output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}, stderr: {}",
            out.status,
            stderr(&out)
        );
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}
