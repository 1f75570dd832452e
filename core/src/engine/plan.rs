//! What one run does: the pipeline's streams, expanded into one [`Task`] per stream and source
//! connection, filtered by `--stream` and `--partition`.
//!
//! A stream whose `from` can name several connections (a pattern such as `tienda_*`, a list,
//! or consolidate mode) is partitioned: each source is its own task with its own journal
//! partition and its own offset row in every destination, so partitions run in parallel and
//! one failing does not stop the others.

use caudal_config::{Mode, Pipeline, Stream};
use caudal_connector::WriteOp;

use super::error::{EngineError, Result};

/// One stream (or one partition of it) to run.
#[derive(Debug, Clone)]
pub struct Task<'p> {
    /// The stream's configuration.
    pub stream: &'p Stream,
    /// The source connection.
    pub source: String,
    /// The source connection again when the stream is partitioned, `None` otherwise: the
    /// `partition` of the stream's journal entries.
    pub partition: Option<String>,
}

impl Task<'_> {
    /// The name shown to users: `stream` or `stream/partition`.
    pub fn label(&self) -> String {
        part_label(self.stream.name(), self.partition.as_deref())
    }

    /// The second half of the offset row's key in every destination.
    pub fn offset_key(&self) -> String {
        self.label()
    }
}

/// `stream` or `stream/partition`: how a part is named in messages and in sinks' offset rows.
pub fn part_label(stream: &str, partition: Option<&str>) -> String {
    match partition {
        Some(p) => format!("{stream}/{p}"),
        None => stream.to_owned(),
    }
}

/// The table a stream's batches are written to before they are visible: snapshot mode loads
/// into this table and swaps it in at the end. Next to the table, in its schema. (Not with
/// the `_caudal_` prefix: connectors treat such tables as their own and hide them, also
/// from the swap.)
pub fn staging_table(table: &str) -> String {
    format!("{table}__caudal_staging")
}

/// How a batch of a stream in `mode` is applied. `keyed` says whether the batch's schema has
/// a primary key, `deletes` whether it carries deleted keys (see `shape.rs`).
pub fn write_op(mode: Mode, keyed: bool, deletes: bool) -> WriteOp {
    match (mode, keyed) {
        _ if deletes => WriteOp::Delete,
        (Mode::Snapshot, _) => WriteOp::Insert,
        // With a primary key, re-reading a range (a manual run, a replay over an existing
        // table) must not duplicate rows.
        (_, true) => WriteOp::Upsert,
        (_, false) => WriteOp::Insert,
    }
}

/// The tasks of a run, in file order, then by source. Unknown names in `streams` or
/// `partitions` are usage errors that list what exists.
pub fn tasks<'p>(
    pipeline: &'p Pipeline,
    streams: &[String],
    partitions: &[String],
) -> Result<Vec<Task<'p>>> {
    for name in streams {
        if pipeline.stream(name).is_none() {
            let known: Vec<&str> = pipeline.streams().iter().map(Stream::name).collect();
            return Err(EngineError::Usage(format!(
                "no stream `{name}` in {}; streams: {}",
                pipeline.path().display(),
                known.join(", ")
            )));
        }
    }
    let selected: Vec<&Stream> = pipeline
        .streams()
        .iter()
        .filter(|s| streams.is_empty() || streams.iter().any(|n| n == s.name()))
        .collect();
    for p in partitions {
        if !selected
            .iter()
            .any(|s| s.sources().iter().any(|src| src == p))
        {
            return Err(EngineError::Usage(format!(
                "no selected stream reads from `{p}`; sources: {}",
                selected
                    .iter()
                    .flat_map(|s| s.sources())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut out = Vec::new();
    for stream in selected {
        for source in stream.sources() {
            if !partitions.is_empty() && !partitions.contains(source) {
                continue;
            }
            let partition = stream.is_partitioned().then(|| source.clone());
            out.push(Task {
                stream,
                source: source.clone(),
                partition,
            });
        }
    }
    Ok(out)
}

/// Groups tasks into waves run one after the other: a stream that reads a connection another
/// selected stream writes runs in a later wave than that stream (a chain such as
/// generate -> stage -> warehouse runs in order within one run). Streams that feed each other
/// in a cycle are a usage error.
pub fn waves<'p>(tasks: Vec<Task<'p>>) -> Result<Vec<Vec<Task<'p>>>> {
    let mut streams: Vec<&'p Stream> = Vec::new();
    for t in &tasks {
        if !streams.iter().any(|s| std::ptr::eq(*s, t.stream)) {
            streams.push(t.stream);
        }
    }
    let feeds = |a: &Stream, b: &Stream| {
        !std::ptr::eq(a, b)
            && a.destinations()
                .iter()
                .any(|d| b.sources().iter().any(|s| s == d))
    };
    let mut wave_of: Vec<Option<usize>> = vec![None; streams.len()];
    let mut wave = 0;
    while wave_of.iter().any(Option::is_none) {
        let ready: Vec<usize> = (0..streams.len())
            .filter(|&i| wave_of[i].is_none())
            .filter(|&i| {
                (0..streams.len())
                    .all(|j| wave_of[j].is_some_and(|w| w < wave) || !feeds(streams[j], streams[i]))
            })
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = (0..streams.len())
                .filter(|&i| wave_of[i].is_none())
                .map(|i| streams[i].name())
                .collect();
            return Err(EngineError::Usage(format!(
                "streams {} feed each other in a cycle (each reads a connection another writes); \
                 run them separately with --stream",
                stuck.join(", ")
            )));
        }
        for i in ready {
            wave_of[i] = Some(wave);
        }
        wave += 1;
    }
    let mut out: Vec<Vec<Task<'p>>> = (0..wave).map(|_| Vec::new()).collect();
    for t in tasks {
        let i = streams
            .iter()
            .position(|s| std::ptr::eq(*s, t.stream))
            .unwrap_or(0);
        out[wave_of[i].unwrap_or(0)].push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const FILE: &str = r#"
[pipeline]
name = "p"

[connections.tienda_01]
connector = "duckdb"
path = "a.db"

[connections.tienda_02]
connector = "duckdb"
path = "b.db"

[connections.wh]
connector = "duckdb"
path = "w.db"

[[streams]]
from = "tienda_*"
table = "ventas"
to = "wh"
mode = "incremental"
cursor = "fecha"

[[streams]]
name = "items"
from = "wh"
table = "items"
to = "tienda_01"
"#;

    fn pipeline() -> Pipeline {
        Pipeline::from_str(FILE, Path::new("/tmp/p.toml")).unwrap()
    }

    #[test]
    fn patterns_become_one_task_per_source() {
        let p = pipeline();
        let t = tasks(&p, &[], &[]).unwrap();
        let labels: Vec<String> = t.iter().map(Task::label).collect();
        assert_eq!(labels, ["ventas/tienda_01", "ventas/tienda_02", "items"]);
        assert_eq!(t[2].partition, None);
        assert_eq!(t[1].partition.as_deref(), Some("tienda_02"));
    }

    #[test]
    fn filters_select_streams_and_partitions() {
        let p = pipeline();
        let t = tasks(&p, &["ventas".into()], &["tienda_02".into()]).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].source, "tienda_02");
        let err = tasks(&p, &["nope".into()], &[]).unwrap_err().to_string();
        assert!(
            err.contains("no stream `nope`") && err.contains("ventas, items"),
            "{err}"
        );
        let err = tasks(&p, &["items".into()], &["tienda_02".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`tienda_02`") && err.contains("sources: wh"),
            "{err}"
        );
    }

    #[test]
    fn a_stream_that_reads_what_another_writes_runs_after_it() {
        let text = r#"
[pipeline]
name = "p"
[connections.gen]
connector = "duckdb"
[connections.stage]
connector = "duckdb"
[connections.wh]
connector = "duckdb"
[connections.other]
connector = "duckdb"
[[streams]]
name = "load"
from = "stage"
table = "t"
to = "wh"
[[streams]]
name = "make"
from = "gen"
table = "t"
to = "stage"
[[streams]]
name = "side"
from = "other"
table = "u"
to = "wh"
"#;
        let p = Pipeline::from_str(text, Path::new("/tmp/w.toml")).unwrap();
        let w = waves(tasks(&p, &[], &[]).unwrap()).unwrap();
        let names: Vec<Vec<String>> = w
            .iter()
            .map(|wave| wave.iter().map(Task::label).collect())
            .collect();
        assert_eq!(names, [vec!["make", "side"], vec!["load"]]);

        let cyclic = text.replace("from = \"gen\"", "from = \"wh\"");
        let p = Pipeline::from_str(&cyclic, Path::new("/tmp/w.toml")).unwrap();
        let err = waves(tasks(&p, &[], &[]).unwrap()).unwrap_err().to_string();
        assert!(err.contains("load, make") && err.contains("cycle"), "{err}");
    }

    #[test]
    fn staging_tables_stay_in_their_schema() {
        assert_eq!(staging_table("ventas"), "ventas__caudal_staging");
        assert_eq!(staging_table("dbo.ventas"), "dbo.ventas__caudal_staging");
    }

    #[test]
    fn write_ops_follow_mode_and_key() {
        assert_eq!(write_op(Mode::Snapshot, true, false), WriteOp::Insert);
        assert_eq!(write_op(Mode::Incremental, false, false), WriteOp::Insert);
        assert_eq!(write_op(Mode::Incremental, true, false), WriteOp::Upsert);
        assert_eq!(write_op(Mode::Merge, true, false), WriteOp::Upsert);
        assert_eq!(write_op(Mode::Merge, true, true), WriteOp::Delete);
        assert_eq!(write_op(Mode::Consolidate, true, false), WriteOp::Upsert);
    }
}
