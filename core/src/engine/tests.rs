//! The engine end to end against in-process databases (`testing.rs`): every mode, fan-out,
//! partitions, resume after a crash, failures and retries, replay, and the projection's
//! checkpoint. The same flows run through real plugins in `core/tests/engine_*.rs`.

use std::sync::Arc;

use caudal_config::Pipeline;
use caudal_connector::{Field, LogicalType, Schema, TableDigest, Value};
use caudal_journal::{Entry, EntryKind, Reader};

use super::projection::{LaneKey, PartKey, Projection, RunState};
use super::replay::ReplayOptions;
use super::retry::RetryOptions;
use super::run::{Engine, PartOutcome, RunOptions};
use super::testing::{Table, World};
use super::{Silent, shape};

fn sales_schema() -> Schema {
    Schema::new(
        vec![
            Field::new("id", LogicalType::Int64, false),
            Field::new(
                "tienda",
                LogicalType::Varchar {
                    max_length: Some(20),
                },
                false,
            ),
            Field::new("fecha", LogicalType::Date, false),
            Field::new(
                "monto",
                LogicalType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
        ],
        &[],
    )
    .unwrap()
}

/// Sales `ids`, ten per day from 2025-01-01 (day 20089), amount id * 1.25.
fn sales(store: &str, ids: std::ops::Range<i64>) -> Vec<Vec<Value>> {
    ids.map(|id| {
        vec![
            Value::Int(id),
            Value::Text(store.into()),
            Value::Date(20_089 + (id / 10) as i32),
            if id % 7 == 0 {
                Value::Null
            } else {
                Value::Decimal {
                    unscaled: i128::from(id) * 125,
                    scale: 2,
                }
            },
        ]
    })
    .collect()
}

/// The lane of stream `stream` (no partition) of pipeline `p` into `destination`.
fn lane_of(stream: &str, destination: &str) -> LaneKey {
    LaneKey {
        part: PartKey {
            pipeline: "p".into(),
            stream: stream.into(),
            partition: None,
        },
        destination: destination.into(),
    }
}

fn put(world: &World, db: &str, table: &str, rows: Vec<Vec<Value>>) {
    world.db(db).tables.insert(
        table.into(),
        Table {
            schema: sales_schema(),
            rows,
        },
    );
}

struct Fixture {
    dir: tempfile::TempDir,
    world: World,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            world: World::default(),
        }
    }

    fn pipeline(&self, body: &str) -> Arc<Pipeline> {
        let text = format!(
            "[pipeline]\nname = \"p\"\n[journal]\ndir = \"journal\"\ndurability = \"never\"\n{body}"
        );
        Arc::new(Pipeline::from_str(&text, &self.dir.path().join("p.toml")).unwrap())
    }

    fn engine(&self, p: &Arc<Pipeline>) -> Engine {
        Engine::new(
            Arc::clone(p),
            Arc::new(self.world.clone()),
            Arc::new(Silent),
        )
    }

    fn journal(&self) -> std::path::PathBuf {
        self.dir.path().join("journal")
    }

    fn entries(&self) -> Vec<Entry> {
        Reader::open(&self.journal())
            .unwrap()
            .entries_from(1)
            .unwrap()
            .map(|e| e.unwrap().entry)
            .collect()
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.entries().iter().map(|e| e.kind.name()).collect()
    }

    /// Digest of a source table as the destination table `as_table` in `schema`.
    fn digest(&self, db: &str, table: &str, as_table: &str, schema: &Schema) -> TableDigest {
        self.world.digest(db, table, as_table, schema)
    }

    fn rows(&self, db: &str, table: &str) -> usize {
        self.world
            .db(db)
            .tables
            .get(table)
            .map_or(0, |t| t.rows.len())
    }
}

fn keyed(schema: &Schema, key: &[&str]) -> Schema {
    Schema::new(schema.fields().to_vec(), key).unwrap()
}

const TWO_DBS: &str = r#"
[connections.src]
connector = "fake"
[connections.wh]
connector = "fake"
"#;

fn opts() -> RunOptions {
    RunOptions {
        jobs: 2,
        ..RunOptions::default()
    }
}

#[test]
fn snapshot_journals_every_batch_before_writing_it_and_swaps_the_table_in() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..1000));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\nchunk_rows = 300\n"
    ));
    let report = f.engine(&p).run(&opts()).unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!((report.rows, report.batches), (1000, 4));
    let schema = sales_schema();
    assert_eq!(
        f.digest("wh", "ventas", "ventas", &schema),
        f.digest("src", "ventas", "ventas", &schema)
    );
    assert!(
        !f.world
            .db("wh")
            .tables
            .contains_key("ventas__caudal_staging")
    );

    let entries = f.entries();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds.first(), Some(&"RunStarted"));
    assert_eq!(kinds[1], "StreamStarted");
    assert_eq!(kinds.last(), Some(&"RunCompleted"));
    assert_eq!(kinds.iter().filter(|k| **k == "BatchRead").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "WriteApplied").count(), 4);
    // Every batch is applied: the stream's progress is checkpointed at its last batch.
    let Some(EntryKind::Checkpoint { through_seq, .. }) = entries
        .iter()
        .rev()
        .map(|e| &e.kind)
        .find(|k| k.name() == "Checkpoint")
    else {
        panic!("no Checkpoint in {kinds:?}");
    };
    let last_batch = entries
        .iter()
        .rev()
        .find(|e| e.kind.name() == "BatchRead")
        .unwrap()
        .seq;
    assert_eq!(*through_seq, last_batch);
    // Every write comes after the BatchRead it names.
    for e in &entries {
        if let EntryKind::WriteApplied { batch_seq, .. } = e.kind {
            assert!(batch_seq < e.seq);
            assert_eq!(entries[batch_seq as usize - 1].kind.name(), "BatchRead");
        }
        if let EntryKind::BatchRead { digest, .. } = &e.kind {
            assert_ne!(*digest, caudal_journal::Digest::default());
        }
    }

    // The source shrinks: the next snapshot replaces the table.
    put(&f.world, "src", "ventas", sales("a", 0..10));
    assert!(f.engine(&p).run(&opts()).unwrap().succeeded());
    assert_eq!(f.rows("wh", "ventas"), 10);
    // An empty source gives an empty table.
    put(&f.world, "src", "ventas", Vec::new());
    assert!(f.engine(&p).run(&opts()).unwrap().succeeded());
    assert_eq!(f.rows("wh", "ventas"), 0);
}

#[test]
fn incremental_resumes_after_the_last_cursor_journaled() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..500));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\nchunk_rows = 95\n"
    ));
    let first = f.engine(&p).run(&opts()).unwrap();
    assert_eq!(first.rows, 500);
    // Chunks end between days: 95 rows grow to whole days of 10.
    let sizes: Vec<u64> = f
        .entries()
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::BatchRead { rows, .. } => Some(rows),
            _ => None,
        })
        .collect();
    assert!(sizes.iter().all(|r| r % 10 == 0), "{sizes:?}");

    f.world
        .db("src")
        .tables
        .get_mut("ventas")
        .unwrap()
        .rows
        .extend(sales("a", 500..730));
    let second = f.engine(&p).run(&opts()).unwrap();
    assert_eq!(second.rows, 230, "only the new days are read");
    let started = f
        .entries()
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::StreamStarted { resume_cursor, .. } => Some(resume_cursor),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(started, [None, Some("date:2025-02-19".into())]);
    let schema = sales_schema();
    assert_eq!(
        f.digest("wh", "ventas", "ventas", &schema),
        f.digest("src", "ventas", "ventas", &schema)
    );
    // Nothing new: nothing read.
    assert_eq!(f.engine(&p).run(&opts()).unwrap().rows, 0);
}

#[test]
fn manual_ranges_read_only_their_range_and_leave_the_high_water_mark() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..300));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\nprimary_key = [\"id\"]\n"
    ));
    assert_eq!(f.engine(&p).run(&opts()).unwrap().rows, 300);
    // Re-read two days: upserts by key, no duplicates.
    let manual = RunOptions {
        from: Some("2025-01-05".into()),
        to: Some("2025-01-07".into()),
        ..opts()
    };
    assert_eq!(f.engine(&p).run(&manual).unwrap().rows, 20);
    assert_eq!(f.rows("wh", "ventas"), 300);
    let key = PartKey {
        pipeline: "p".into(),
        stream: "ventas".into(),
        partition: None,
    };
    let projection = Projection::load(&f.journal()).unwrap();
    assert_eq!(
        projection.part(&key).unwrap().last_cursor.as_deref(),
        Some("date:2025-01-30")
    );
    let bad = RunOptions {
        from: Some("next tuesday".into()),
        ..opts()
    };
    let err = f.engine(&p).run(&bad).unwrap_err().to_string();
    assert!(
        err.contains("`next tuesday`") && err.contains("YYYY-MM-DD"),
        "{err}"
    );
}

#[test]
fn merge_upserts_changed_rows_and_deletes_missing_ones() {
    let f = Fixture::new();
    put(&f.world, "src", "items", sales("a", 0..200));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\n\
         mode = \"merge\"\nprimary_key = [\"id\"]\nchunk_rows = 64\n"
    ));
    assert!(f.engine(&p).run(&opts()).unwrap().succeeded());
    {
        let mut src = f.world.db("src");
        let rows = &mut src.tables.get_mut("items").unwrap().rows;
        rows.retain(|r| !matches!(r[0], Value::Int(i) if i % 5 == 0));
        for r in rows.iter_mut().take(10) {
            r[1] = Value::Text("changed".into());
        }
        rows.extend(sales("b", 200..230));
    }
    assert!(f.engine(&p).run(&opts()).unwrap().succeeded());
    let schema = keyed(&sales_schema(), &["id"]);
    assert_eq!(
        f.digest("wh", "items", "items", &schema),
        f.digest("src", "items", "items", &schema)
    );
    assert_eq!(f.rows("wh", "items"), f.rows("src", "items"));
    // Deleting again finds nothing more to delete; deleting everything works too.
    f.world
        .db("src")
        .tables
        .get_mut("items")
        .unwrap()
        .rows
        .clear();
    assert!(f.engine(&p).run(&opts()).unwrap().succeeded());
    assert_eq!(f.rows("wh", "items"), 0);
}

#[test]
fn consolidate_tags_rows_with_their_source() {
    let f = Fixture::new();
    put(&f.world, "rest_1", "pedidos", sales("x", 0..120));
    put(&f.world, "rest_2", "pedidos", sales("y", 0..80));
    let p = f.pipeline(
        r#"
[connections.rest_1]
connector = "fake"
[connections.rest_2]
connector = "fake"
[connections.rep]
connector = "fake"
[[streams]]
from = "rest_*"
table = "pedidos"
to = "rep"
mode = "consolidate"
primary_key = ["id"]
"#,
    );
    let report = f.engine(&p).run(&opts()).unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        f.rows("rep", "pedidos"),
        200,
        "the same ids from two sources stay apart"
    );
    let stream = &p.streams()[0];
    let mut expected = TableDigest::new();
    for src in ["rest_1", "rest_2"] {
        let shape = shape::Shape::new(stream, src, Arc::new(sales_schema())).unwrap();
        let d = f.world.db(src);
        let t = &d.tables["pedidos"];
        let mut b = caudal_connector::BatchBuilder::new(Arc::new(sales_schema()));
        for r in &t.rows {
            b.push_row(r).unwrap();
        }
        let (shaped, _) = shape.shape(b.finish().unwrap().encode().unwrap()).unwrap();
        expected.add_batch("pedidos", &shaped);
    }
    let dest_schema = {
        let d = f.world.db("rep");
        d.tables["pedidos"].schema.clone()
    };
    assert_eq!(dest_schema.fields()[0].name, "_source");
    assert_eq!(
        f.digest("rep", "pedidos", "pedidos", &dest_schema),
        expected
    );
}

#[test]
fn fan_out_writes_every_destination_and_a_failing_one_holds_only_itself_back() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..400));
    let p = f.pipeline(
        r#"
[connections.src]
connector = "fake"
[connections.wh]
connector = "fake"
[connections.copy]
connector = "fake"
[[streams]]
from = "src"
table = "ventas"
to = ["wh", "copy"]
mode = "incremental"
cursor = "fecha"
chunk_rows = 100
[retry]
max_attempts = 2
every = "10ms"
"#,
    );
    f.world.db("copy").reject_writes = Some("attempt to write a readonly database".into());
    let report = f.engine(&p).run(&opts()).unwrap();
    assert!(!report.succeeded());
    match &report.parts[0].outcome {
        PartOutcome::WritesPending { lanes } => {
            assert_eq!(lanes.len(), 1);
            assert_eq!(lanes[0].0, "copy");
            assert!(lanes[0].2.contains("readonly database"), "{lanes:?}");
        }
        other => panic!("{other:?}"),
    }
    let schema = sales_schema();
    assert_eq!(
        f.digest("wh", "ventas", "ventas", &schema),
        f.digest("src", "ventas", "ventas", &schema)
    );
    let kinds = f.kinds();
    // Two attempts in all, one retry scheduled between them, as [retry] says.
    assert_eq!(kinds.iter().filter(|k| **k == "WriteFailed").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "RetryScheduled").count(), 1);

    let projection = Projection::load(&f.journal()).unwrap();
    let lane = lane_of("ventas", "copy");
    let failure = projection.lane(&lane).unwrap().failure.unwrap();
    assert_eq!(failure.attempts, 2);
    assert!(!failure.retryable);
    assert_eq!(projection.pending(&lane).len(), 4);

    // A due retry follows the policy: two attempts are journaled already, so with
    // `max_attempts = 2` the last failure scheduled nothing and nothing is due.
    let due = f
        .engine(&p)
        .retry(&RetryOptions {
            only_due: true,
            ..RetryOptions::default()
        })
        .unwrap();
    assert!(due.run.is_none(), "{due:?}");
    let projection = Projection::load(&f.journal()).unwrap();
    assert_eq!(
        projection.lane(&lane).unwrap().failure.unwrap().next_due,
        None
    );

    // Fixed: `retry` writes the four batches, in order, from the journal.
    f.world.db("copy").reject_writes = None;
    f.world.db("src").tables.clear();
    let retried = f.engine(&p).retry(&RetryOptions::default()).unwrap();
    assert!(retried.succeeded(), "{retried:?}");
    assert_eq!(retried.lanes.len(), 1);
    assert_eq!(retried.lanes[0].batches, 4);
    assert_eq!(f.rows("copy", "ventas"), 400);
    let projection = Projection::load(&f.journal()).unwrap();
    assert!(projection.lane(&lane).unwrap().failure.is_none());
    assert!(projection.pending(&lane).is_empty());
    let runs = projection.runs();
    assert_eq!(runs.last().unwrap().trigger, "retry");
    assert_eq!(runs[0].writes_failed, 2);
    assert!(runs[0].attempts.iter().any(|a| a.outcome == "scheduled"));
    // Nothing left: retry does nothing and journals nothing.
    let before = f.entries().len();
    assert!(
        f.engine(&p)
            .retry(&RetryOptions::default())
            .unwrap()
            .run
            .is_none()
    );
    assert_eq!(f.entries().len(), before);
}

#[test]
fn a_retry_stopped_after_its_first_write_is_finished_by_the_next_retry() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..400));
    let p = f.pipeline(
        "[connections.src]\nconnector = \"fake\"\n[connections.copy]\nconnector = \"fake\"\n\
         [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"copy\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\nchunk_rows = 100\n[retry]\nmax_attempts = 1\n",
    );
    f.world.db("copy").reject_writes = Some("attempt to write a readonly database".into());
    assert!(!f.engine(&p).run(&opts()).unwrap().succeeded());
    f.world.db("copy").reject_writes = None;
    let lane = lane_of("ventas", "copy");
    // A retry applies the first of the four batches and is killed: the journal holds its
    // `WriteApplied` and nothing after it (each entry is durable once recorded).
    {
        let session =
            super::session::Session::open(Arc::clone(&p), Arc::new(f.world.clone())).unwrap();
        let stream = p.stream("ventas").unwrap();
        let mut l = super::session::Lane::new(&session, stream, None, "copy");
        let first = session.projection.pending(&lane)[0];
        let bytes = session.batch_bytes(first.seq).unwrap();
        let batch = caudal_connector::Batch::decode(&bytes).unwrap();
        let delivery = super::session::Delivery {
            seq: first.seq,
            bytes: &bytes,
            schema: batch.schema(),
            rows: first.rows,
            first_of_instance: false,
            swap: false,
            attempt: 2,
        };
        session.deliver(&mut l, &delivery, None).unwrap();
    }
    assert_eq!(f.rows("copy", "ventas"), 100);
    let projection = Projection::load(&f.journal()).unwrap();
    assert!(projection.lane(&lane).unwrap().failure.is_none());
    assert_eq!(projection.pending(&lane).len(), 3);
    assert_eq!(
        projection.interrupted_lanes("p"),
        std::slice::from_ref(&lane)
    );

    // A scheduled retry (`only_due`, for the scheduler to come) takes only failures that are due.
    let due = RetryOptions {
        only_due: true,
        ..RetryOptions::default()
    };
    assert!(f.engine(&p).retry(&due).unwrap().run.is_none());
    assert_eq!(f.rows("copy", "ventas"), 100);

    // No write failed, yet three batches wait: the next retry writes them.
    let retried = f.engine(&p).retry(&RetryOptions::default()).unwrap();
    assert!(retried.succeeded(), "{retried:?}");
    assert_eq!(retried.lanes.len(), 1);
    assert_eq!(retried.lanes[0].batches, 3);
    assert_eq!(f.rows("copy", "ventas"), 400);
    let schema = sales_schema();
    assert_eq!(
        f.digest("copy", "ventas", "ventas", &schema),
        f.digest("src", "ventas", "ventas", &schema)
    );
    let projection = Projection::load(&f.journal()).unwrap();
    assert!(projection.pending(&lane).is_empty());
    assert!(projection.interrupted_lanes("p").is_empty());
}

/// A destination whose source side reads `monto` as text: every row read back digests other
/// than the journal's, and the sink's digest of what was read does not add up, so verify asks
/// the sink about each such key and names only the rows that really differ; both when the
/// ranges are bisected to their leaves (a few rows differ) and when one read of the table
/// settles them (many do). Read back as the sink digests them, the same rows are named.
#[test]
fn verify_asks_the_sink_when_the_rows_read_back_do_not_add_up() {
    for (every, as_text) in [(97i64, true), (2, true), (97, false), (2, false)] {
        let f = Fixture::new();
        put(&f.world, "src", "ventas", sales("a", 0..2000));
        let p = f.pipeline(
            "[connections.src]\nconnector = \"fake\"\n[connections.wh]\nconnector = \"fake\"\n\
             [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
             mode = \"merge\"\nprimary_key = [\"id\"]\n",
        );
        assert!(f.engine(&p).run(&opts()).unwrap().succeeded());
        // Behind caudal's back: `monto` changed in every `every`-th row (NULLs left alone),
        // two rows deleted, one added.
        let mut changed = Vec::new();
        {
            let mut db = f.world.db("wh");
            let t = db.tables.get_mut("ventas").unwrap();
            let monto = t.schema.index_of("monto").unwrap();
            let id = t.schema.index_of("id").unwrap();
            for row in &mut t.rows {
                let Value::Int(k) = row[id] else { panic!() };
                if k % every == 1 && row[monto] != Value::Null {
                    row[monto] = Value::Decimal {
                        unscaled: 1,
                        scale: 2,
                    };
                    changed.push(k.to_string());
                }
            }
            t.rows
                .retain(|r| r[id] != Value::Int(500) && r[id] != Value::Int(1500));
            let mut extra = t.rows[0].clone();
            extra[id] = Value::Int(5000);
            t.rows.push(extra);
            db.read_as_text = as_text.then(|| "monto".into());
        }
        let report = f
            .engine(&p)
            .verify(&super::VerifyOptions {
                connection: None,
                table: None,
                repair: false,
            })
            .unwrap();
        let check = &report.tables[0];
        assert!(!check.ok);
        assert_eq!(check.error, None, "every {every}, as text {as_text}");
        let mut got = check.changed.clone();
        got.sort();
        changed.sort();
        assert_eq!(got, changed, "every {every}, as text {as_text}");
        assert_eq!(
            check.missing,
            ["500", "1500"],
            "every {every}, as text {as_text}"
        );
        assert_eq!(check.extra, ["5000"], "every {every}, as text {as_text}");
    }
}

#[test]
fn partitions_run_apart_and_one_failing_source_does_not_stop_the_others() {
    let f = Fixture::new();
    let mut body = String::new();
    for i in 1..=4 {
        put(
            &f.world,
            &format!("tienda_{i:02}"),
            "ventas",
            sales(&format!("t{i}"), 0..150),
        );
        body.push_str(&format!(
            "[connections.tienda_{i:02}]\nconnector = \"fake\"\n"
        ));
    }
    body.push_str(
        "[connections.wh]\nconnector = \"fake\"\n[[streams]]\nfrom = \"tienda_*\"\n\
         table = \"ventas\"\nto = \"wh\"\nmode = \"incremental\"\ncursor = \"fecha\"\n\
         primary_key = [\"tienda\", \"id\"]\nchunk_rows = 40\n[retry]\nmax_attempts = 1\n",
    );
    let p = f.pipeline(&body);
    f.world.db("tienda_03").fail_read_after = Some(1);
    let report = f.engine(&p).run(&opts()).unwrap();
    let outcomes: Vec<(&str, bool)> = report
        .parts
        .iter()
        .map(|r| (r.label.as_str(), r.outcome == PartOutcome::Ok))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("ventas/tienda_01", true),
            ("ventas/tienda_02", true),
            ("ventas/tienda_03", false),
            ("ventas/tienda_04", true)
        ]
    );
    let entries = f.entries();
    let Some(EntryKind::RunFailed { error, .. }) = entries.last().map(|e| &e.kind) else {
        panic!("the run should end with RunFailed");
    };
    assert!(
        error.contains("ventas/tienda_03") && error.contains("the store went away"),
        "{error}"
    );
    // 3 * 150 + the one chunk tienda_03 delivered before failing.
    assert_eq!(f.rows("wh", "ventas"), 450 + 40);

    // The store is back: only it runs (--partition), resuming after its journaled cursor.
    f.world.db("tienda_03").fail_read_after = None;
    let only = RunOptions {
        partitions: vec!["tienda_03".into()],
        ..opts()
    };
    let report = f.engine(&p).run(&only).unwrap();
    assert!(report.succeeded());
    assert_eq!(report.rows, 110);
    let schema = keyed(&sales_schema(), &["tienda", "id"]);
    let mut expected = TableDigest::new();
    for i in 1..=4 {
        expected.combine(&f.digest(&format!("tienda_{i:02}"), "ventas", "ventas", &schema));
    }
    assert_eq!(f.digest("wh", "ventas", "ventas", &schema), expected);
    let projection = Projection::load(&f.journal()).unwrap();
    let runs = projection.runs();
    assert_eq!(runs[0].state, RunState::Failed);
    assert_eq!(runs[1].state, RunState::Completed);
}

#[test]
fn a_batch_journaled_but_not_written_reaches_the_destination_on_the_next_run() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..300));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\nchunk_rows = 100\n[retry]\nmax_attempts = 1\n"
    ));
    // The destination is down for the whole first run: every batch is journaled, none written.
    f.world.db("wh").refuse_open = Some("connection refused".into());
    let report = f.engine(&p).run(&opts()).unwrap();
    assert!(!report.succeeded());
    assert_eq!(f.rows("wh", "ventas"), 0);
    // Back up; the source has nothing new, yet the journaled batches arrive, once each.
    f.world.db("wh").refuse_open = None;
    let report = f.engine(&p).run(&opts()).unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.rows, 0, "nothing is read from the source again");
    assert_eq!(f.rows("wh", "ventas"), 300);
    let schema = sales_schema();
    assert_eq!(
        f.digest("wh", "ventas", "ventas", &schema),
        f.digest("src", "ventas", "ventas", &schema)
    );
}

#[test]
fn a_write_committed_before_a_crash_is_not_written_twice() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..200));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\nchunk_rows = 100\n[retry]\nmax_attempts = 1\n"
    ));
    // The sink commits, then the call fails: as if the process died before `WriteApplied`.
    f.world.db("wh").commit_then_fail = true;
    f.engine(&p).run(&opts()).unwrap();
    assert_eq!(
        f.rows("wh", "ventas"),
        100,
        "the first batch committed; the lane then blocked"
    );
    f.world.db("wh").commit_then_fail = false;
    let writes_before = f.world.db("wh").writes_applied;
    let report = f.engine(&p).run(&opts()).unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(f.rows("wh", "ventas"), 200, "no duplicates");
    assert_eq!(f.world.db("wh").writes_applied, writes_before + 1);
}

#[test]
fn replay_rebuilds_a_destination_from_the_journal_alone_and_is_idempotent() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..350));
    put(&f.world, "src", "items", sales("i", 0..50));
    let p = f.pipeline(
        r#"
[connections.src]
connector = "fake"
[connections.wh]
connector = "fake"
[connections.fresh]
connector = "fake"
[[streams]]
from = "src"
table = "ventas"
to = "wh"
mode = "incremental"
cursor = "fecha"
chunk_rows = 100
[[streams]]
from = "src"
table = "items"
to = "wh"
"#,
    );
    f.engine(&p).run(&opts()).unwrap();
    put(&f.world, "src", "items", sales("i", 0..20));
    f.engine(&p).run(&opts()).unwrap();
    f.world.db("src").tables.clear();

    let options = ReplayOptions {
        to: "fresh".into(),
        ..ReplayOptions::default()
    };
    let dry = f
        .engine(&p)
        .replay(&ReplayOptions {
            dry_run: true,
            ..options.clone()
        })
        .unwrap();
    assert_eq!(dry.parts.len(), 2);
    let entries_before = f.entries().len();
    assert_eq!(
        f.entries().len(),
        entries_before,
        "a dry run journals nothing"
    );
    assert!(!f.world.db("fresh").tables.contains_key("ventas"));

    let report = f.engine(&p).replay(&options).unwrap();
    assert!(report.succeeded(), "{report:?}");
    let schema = sales_schema();
    for table in ["ventas", "items"] {
        assert_eq!(
            f.digest("fresh", table, table, &schema),
            f.digest("wh", table, table, &schema),
            "{table}"
        );
    }
    assert_eq!(f.rows("fresh", "items"), 20, "only the last snapshot");
    // Again: everything is there already, nothing changes.
    let again = f.engine(&p).replay(&options).unwrap();
    assert!(again.parts.iter().all(|p| p.applied == 0), "{again:?}");
    assert_eq!(f.rows("fresh", "items"), 20);
    assert_eq!(f.rows("fresh", "ventas"), 350);
}

#[test]
fn secrets_never_reach_the_journal_even_in_database_errors() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..10));
    let secret = "s3cr3t-Pa55-9f1";
    let text = "[pipeline]\nname = \"p\"\n[journal]\ndir = \"journal\"\n\
         [connections.src]\nconnector = \"fake\"\n\
         [connections.wh]\nconnector = \"fake\"\nurl = \"mysql://etl:${WH_PASSWORD}@db/x\"\n\
         [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n[retry]\nmax_attempts = 1\n";
    let p = Arc::new(
        Pipeline::from_str_with_env(text, &f.dir.path().join("p.toml"), |v| {
            (v == "WH_PASSWORD").then(|| secret.into())
        })
        .unwrap(),
    );
    f.world.db("wh").reject_writes = Some(format!("access denied for etl:{secret}@db"));
    let report = f.engine(&p).run(&opts()).unwrap();
    let PartOutcome::WritesPending { lanes } = &report.parts[0].outcome else {
        panic!("{report:?}");
    };
    assert!(
        lanes[0].2.contains("access denied for etl:***@db"),
        "{lanes:?}"
    );
    for entry in std::fs::read_dir(f.journal()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in the journal directory"
        );
    }
}

#[test]
fn usage_errors_journal_nothing() {
    let f = Fixture::new();
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n"
    ));
    let err = f
        .engine(&p)
        .run(&RunOptions {
            streams: vec!["nope".into()],
            ..opts()
        })
        .unwrap_err();
    assert!(matches!(err, super::EngineError::Usage(_)), "{err}");
    let err = f
        .engine(&p)
        .run(&RunOptions {
            from: Some("2025-01-01".into()),
            ..opts()
        })
        .unwrap_err();
    assert!(err.to_string().contains("need a cursor column"), "{err}");
    assert!(!f.journal().exists());
}

#[test]
fn the_checkpoint_is_reused_and_rebuilt_when_the_journal_changes() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..100));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n"
    ));
    f.engine(&p).run(&opts()).unwrap();
    let checkpoint = super::projection::checkpoint_path(&f.journal());
    assert!(checkpoint.exists());
    let rebuilt = {
        let projection = Projection::new();
        projection
            .catch_up(&Reader::open(&f.journal()).unwrap())
            .unwrap();
        projection.runs()
    };
    let loaded = Projection::load(&f.journal()).unwrap();
    assert_eq!(loaded.runs(), rebuilt);
    assert_eq!(loaded.through_seq(), f.entries().len() as u64);

    // The checkpoint is what `load` starts from: an edit to it shows (nothing is rescanned)...
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    json["runs"][0]["trigger"] = "from-checkpoint".into();
    std::fs::write(&checkpoint, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(
        Projection::load(&f.journal()).unwrap().runs()[0].trigger,
        "from-checkpoint"
    );
    // ...unless the entry it ends at is not the one it names: then it is rebuilt.
    json["chain"] = "00".repeat(32).into();
    std::fs::write(&checkpoint, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(Projection::load(&f.journal()).unwrap().runs(), rebuilt);
    std::fs::write(&checkpoint, "not json").unwrap();
    assert_eq!(Projection::load(&f.journal()).unwrap().runs(), rebuilt);
    // The next writer that has to fold everything again says so in the journal.
    f.engine(&p).run(&opts()).unwrap();
    assert!(f.kinds().contains(&"ProjectionRebuilt"));
}

#[test]
fn due_retries_follow_the_policy_across_commands() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..50));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\n[retry]\nmax_attempts = 3\nevery = \"10ms\"\n"
    ));
    f.world.db("wh").reject_writes = Some("disk full".into());
    let no_wait = RunOptions {
        wait_for_retries: false,
        ..opts()
    };
    f.engine(&p).run(&no_wait).unwrap();
    let lane = lane_of("ventas", "wh");
    let failure = |f: &Fixture| {
        Projection::load(&f.journal())
            .unwrap()
            .lane(&lane)
            .unwrap()
            .failure
    };
    let first = failure(&f).unwrap();
    assert_eq!(first.attempts, 1);
    assert!(first.next_due.is_some(), "the run scheduled attempt 2");
    let due = || RetryOptions {
        only_due: true,
        ..RetryOptions::default()
    };
    // Once due, attempt 2 fails and attempt 3 is scheduled; attempt 3 fails and nothing
    // more is.
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert!(f.engine(&p).retry(&due()).unwrap().run.is_some());
    let second = failure(&f).unwrap();
    assert_eq!(second.attempts, 2);
    assert!(second.next_due.is_some());
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert!(f.engine(&p).retry(&due()).unwrap().run.is_some());
    let third = failure(&f).unwrap();
    assert_eq!(third.attempts, 3);
    assert_eq!(third.next_due, None);
    assert!(f.engine(&p).retry(&due()).unwrap().run.is_none());
    // A manual retry still may, and succeeds once the disk has room.
    f.world.db("wh").reject_writes = None;
    assert!(
        f.engine(&p)
            .retry(&RetryOptions::default())
            .unwrap()
            .succeeded()
    );
    assert!(failure(&f).is_none());
    assert_eq!(f.rows("wh", "ventas"), 50);
}

#[test]
fn a_source_that_is_down_is_read_again_and_one_that_is_wrong_is_not() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..100));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\n\
         [[streams]]\nname = \"missing\"\nfrom = \"src\"\ntable = \"nope\"\nto = \"wh\"\n\
         [retry]\nmax_attempts = 3\nevery = \"10ms\"\n"
    ));
    // Down for the first two reads (both streams' first attempts), then up.
    f.world.db("src").refuse_reads = 2;
    let report = f.engine(&p).run(&opts()).unwrap();
    assert_eq!(report.parts[0].outcome, PartOutcome::Ok, "{report:?}");
    assert_eq!(f.rows("wh", "ventas"), 100);
    // The missing table is not found on its second attempt; not found is not retried again.
    let PartOutcome::ReadFailed(e) = &report.parts[1].outcome else {
        panic!("{report:?}");
    };
    assert!(e.contains("`nope`"), "{e}");
    let started = |stream: &str| {
        f.entries()
            .iter()
            .filter(
                |e| matches!(&e.kind, EntryKind::StreamStarted { stream: s, .. } if s == stream),
            )
            .count()
    };
    assert_eq!(started("ventas"), 2);
    assert_eq!(started("missing"), 2);
    // Each failed read is journaled: the outages as retryable with the time of the next read,
    // the missing table as final.
    let mut failures: Vec<(String, u32, bool, bool)> = read_failures(&f)
        .into_iter()
        .map(|(time, stream, attempt, retryable, due)| {
            (stream, attempt, retryable, due.is_some_and(|d| d > time))
        })
        .collect();
    // The two streams' first reads may run side by side.
    failures.sort();
    assert_eq!(
        failures,
        [
            ("missing".to_owned(), 1, true, true),
            ("missing".to_owned(), 2, false, false),
            ("ventas".to_owned(), 1, true, true),
        ]
    );
}

#[test]
fn without_waiting_for_retries_a_failed_read_is_journaled_with_nothing_due() {
    let f = Fixture::new();
    put(&f.world, "src", "ventas", sales("a", 0..10));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n\
         [retry]\nmax_attempts = 3\nevery = \"10ms\"\n"
    ));
    f.world.db("src").refuse_reads = 1;
    let no_wait = RunOptions {
        wait_for_retries: false,
        ..opts()
    };
    let report = f.engine(&p).run(&no_wait).unwrap();
    assert!(
        matches!(report.parts[0].outcome, PartOutcome::ReadFailed(_)),
        "{report:?}"
    );
    let failures: Vec<(u32, bool, Option<i64>)> = read_failures(&f)
        .into_iter()
        .map(|(_, _, attempt, retryable, due)| (attempt, retryable, due))
        .collect();
    assert_eq!(failures, [(1, true, None)]);
}

/// The journal's `ReadFailed` entries: time, stream, attempt, retryable, retry due.
fn read_failures(f: &Fixture) -> Vec<(i64, String, u32, bool, Option<i64>)> {
    f.entries()
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::ReadFailed {
                stream,
                attempt,
                retryable,
                retry_due,
                ..
            } => Some((e.time, stream, attempt, retryable, retry_due)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_snapshot_supersedes_one_that_could_not_be_written() {
    let f = Fixture::new();
    put(&f.world, "src", "items", sales("a", 0..300));
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nchunk_rows = 100\n\
         [retry]\nmax_attempts = 1\n"
    ));
    f.world.db("wh").reject_writes = Some("no space left".into());
    assert!(!f.engine(&p).run(&opts()).unwrap().succeeded());
    let lane = lane_of("items", "wh");
    assert_eq!(
        Projection::load(&f.journal()).unwrap().pending(&lane).len(),
        3
    );
    // The next run reads a new snapshot; the old one's batches are not written any more.
    f.world.db("wh").reject_writes = None;
    put(&f.world, "src", "items", sales("a", 0..150));
    assert!(f.engine(&p).run(&opts()).unwrap().succeeded());
    assert_eq!(f.rows("wh", "items"), 150);
    let projection = Projection::load(&f.journal()).unwrap();
    assert!(projection.pending(&lane).is_empty());
    assert!(projection.lane(&lane).unwrap().failure.is_none());
}

#[test]
fn a_connection_warmed_at_session_open_is_opened_once_and_its_failure_comes_back_once() {
    use super::session::Session;
    let f = Fixture::new();
    let p = f.pipeline(&format!(
        "{TWO_DBS}[[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n"
    ));
    let world: Arc<dyn super::endpoint::Endpoints> = Arc::new(f.world.clone());
    // Opening fails while the session opens; the server is back before the first call. The
    // call gets the failure of the open made for it, without opening a second time.
    f.world.db("wh").refuse_open = Some("connection refused".into());
    let session = Session::open_warming(Arc::clone(&p), Arc::clone(&world), &["wh"]).unwrap();
    f.world.db("wh").refuse_open = None;
    let first = session.pool.with("wh", |_| Ok(())).unwrap_err();
    assert!(first.message.contains("connection refused"), "{first:?}");
    assert!(first.retryable);
    // The next call opens it.
    session.pool.with("wh", |_| Ok(())).unwrap();
    session.close().unwrap();

    // Opened at session open: a call made after opening fails uses that connection.
    let session = Session::open_warming(Arc::clone(&p), world, &["wh", "src"]).unwrap();
    f.world.db("wh").refuse_open = Some("connection refused".into());
    f.world.db("src").refuse_open = Some("connection refused".into());
    session.pool.with("wh", |_| Ok(())).unwrap();
    session.pool.with("src", |_| Ok(())).unwrap();
    session.close().unwrap();
}
