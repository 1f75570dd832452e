//! Loaded days per partition: the projection behind `caudal gaps`.
//!
//! For one stream and one date column, [`LoadedDays`] folds the journal into the set of days
//! each partition (store) has in a destination: the days of every batch the destination
//! applied (`BatchRead` rows, counted once its `WriteApplied` for that destination arrives).
//! From that set, [`LoadedDays::gaps`] gives per partition its first and last loaded day, how
//! many days it is behind a given day, and the days missing inside its range.
//!
//! Why the journal's rows and not the cursor ranges: a batch's `cursor_low..cursor_high` may
//! span days with no rows, so ranges alone cannot tell a missing day. Why not the destination
//! table: it does not say which partition a row came from (the partition is the source
//! connection, not a column), and a projection must be rebuildable from the journal alone.
//!
//! Cost: a batch's rows are decoded only when its cursor range cannot tell its days (the date
//! column is the stream's cursor and the range spans at most two consecutive days: both are
//! then present, since reads come in cursor order, as incremental resumes already assume).
//! The folded state is checkpointed in `gaps.json` next to the journal's segments, keyed by
//! pipeline, stream and column, with the seq and chain hash it covers, so later calls fold
//! only new entries.
//!
//! With [`DaysQuery::by`], days are grouped by the value of a column instead of by partition:
//! for a stream that reads several stores from one table (`tienda` a column), as
//! `pipelines/quickstart.toml` does. Every batch is then decoded.
//!
//! Limits: deletes (merge mode) carry keys only, so a day whose rows were all deleted still
//! counts as loaded; snapshot streams, whose table is replaced by every run, are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use caudal_connector::{Batch, ColumnData, LogicalType, Value};
use caudal_journal::{Digest, EntryKind, Payload, Reader};
use serde::{Deserialize, Serialize};

use super::cursor::{self, CursorKind};
use super::error::{EngineError, Result};
use super::plan::part_label;
use super::shape::is_delete_batch;

/// The checkpoint file, inside the journal directory.
pub const CHECKPOINT_FILE: &str = "gaps.json";
/// Bumped whenever the checkpoint's shape changes; an older checkpoint is rebuilt.
const CHECKPOINT_VERSION: u32 = 2;
/// Checkpointed folds kept per journal (the most recently used).
const MAX_CHECKPOINTS: usize = 16;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Which days to fold: a stream of a pipeline, by one date column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaysQuery {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// The column holding the day (date, datetime, timestamp, datetimeoffset or ISO text).
    pub column: String,
    /// Whether `column` is the stream's cursor, so that a batch's cursor range can stand in
    /// for its rows when it spans at most two days.
    pub column_is_cursor: bool,
    /// Group days by this column's value instead of by partition.
    pub by: Option<String>,
}

/// Days as days since 1970-01-01 (as [`Value::Date`]).
pub type Day = i32;

/// A day of a group: of a partition (`None`: the batch's own), or of a value of the `by`
/// column.
type GroupDay = (Option<String>, Day);

/// A journaled batch whose days some destination has not applied yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct BatchDays {
    partition: Option<String>,
    /// The batch's days, by group (its partition, or a value of the `by` column).
    days: Vec<GroupDay>,
    applied_to: Vec<String>,
}

/// The fold: see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadedDays {
    through_seq: u64,
    /// Partitions seen (`None` for a stream that is not partitioned), with the destinations
    /// of their latest `StreamStarted`.
    parts: BTreeMap<Option<String>, Vec<String>>,
    /// Days applied, per (group, destination); a group is a partition, or a value of the
    /// `by` column.
    days: BTreeMap<Option<String>, BTreeMap<String, BTreeSet<Day>>>,
    /// Batches not yet applied to every destination of their partition, by seq.
    batches: BTreeMap<u64, BatchDays>,
    /// Whether the stream was seen in snapshot mode.
    snapshot: bool,
}

/// One partition's days (or one value's of the `by` column), as `caudal gaps` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartGaps {
    /// The partition (source connection), `None` for a stream that is not partitioned; or
    /// the value of the `by` column.
    pub partition: Option<String>,
    /// Days with rows in the destination.
    pub days_loaded: usize,
    /// The earliest of them.
    pub first_day: Option<Day>,
    /// The latest of them.
    pub last_day: Option<Day>,
    /// `today - last_day`, in days.
    pub days_behind: Option<i64>,
    /// Days between `first_day` and `last_day` with no rows, ascending.
    pub missing: Vec<Day>,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    folds: Vec<CheckpointedFold>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointedFold {
    query: DaysQuery,
    chain: Option<Digest>,
    state: LoadedDays,
}

impl LoadedDays {
    /// The last seq folded in.
    pub fn through_seq(&self) -> u64 {
        self.through_seq
    }

    /// Whether the stream was seen in snapshot mode.
    pub fn is_snapshot(&self) -> bool {
        self.snapshot
    }

    /// The partitions seen, with the destinations of their latest start.
    pub fn parts(&self) -> &BTreeMap<Option<String>, Vec<String>> {
        &self.parts
    }

    /// Folds every entry after [`LoadedDays::through_seq`].
    pub fn catch_up(&mut self, reader: &Reader, query: &DaysQuery) -> Result<()> {
        for stored in reader.entries_from(self.through_seq + 1)? {
            let e = stored?.entry;
            self.through_seq = self.through_seq.max(e.seq);
            if e.pipeline != query.pipeline {
                continue;
            }
            self.apply(e.seq, &e.kind, &e.payload, query)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        seq: u64,
        kind: &EntryKind,
        payload: &Payload,
        q: &DaysQuery,
    ) -> Result<()> {
        match kind {
            EntryKind::StreamStarted {
                stream,
                partition,
                destinations,
                mode,
                ..
            } if *stream == q.stream => {
                self.snapshot |= mode == "snapshot";
                self.parts.insert(partition.clone(), destinations.clone());
            }
            EntryKind::BatchRead {
                stream,
                partition,
                cursor_low,
                cursor_high,
                ..
            } if *stream == q.stream => {
                let label = part_label(stream, partition.as_deref());
                let from_range = (q.column_is_cursor && q.by.is_none())
                    .then(|| days_of_range(cursor_low.as_deref(), cursor_high.as_deref()))
                    .flatten()
                    .map(|days| days.into_iter().map(|d| (partition.clone(), d)).collect());
                let days = match from_range {
                    Some(days) => days,
                    None => match days_of_payload(payload, q, seq, &label)? {
                        Some(by_value) => by_value
                            .into_iter()
                            .map(|(group, d)| (group.or_else(|| partition.clone()), d))
                            .collect(),
                        None => return Ok(()),
                    },
                };
                self.batches.insert(
                    seq,
                    BatchDays {
                        partition: partition.clone(),
                        days,
                        applied_to: Vec::new(),
                    },
                );
            }
            EntryKind::WriteApplied {
                stream,
                partition,
                destination,
                batch_seq,
                ..
            } if *stream == q.stream => {
                let Some(batch) = self.batches.get_mut(batch_seq) else {
                    return Ok(());
                };
                if batch.partition != *partition || batch.applied_to.contains(destination) {
                    return Ok(());
                }
                batch.applied_to.push(destination.clone());
                for (group, day) in &batch.days {
                    self.days
                        .entry(group.clone())
                        .or_default()
                        .entry(destination.clone())
                        .or_default()
                        .insert(*day);
                }
                let every = self
                    .parts
                    .get(partition)
                    .is_none_or(|ds| ds.iter().all(|d| batch.applied_to.contains(d)));
                if every {
                    self.batches.remove(batch_seq);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Per partition (every partition seen, then each of `also` not seen yet), the days
    /// loaded into `destination`, measured against `today`. With `by_value`, per value of
    /// the `by` column instead.
    pub fn gaps(
        &self,
        destination: &str,
        today: Day,
        also: &[String],
        by_value: bool,
    ) -> Vec<PartGaps> {
        let mut names: Vec<Option<String>> = match by_value {
            false => self.parts.keys().cloned().collect(),
            true => self
                .days
                .iter()
                .filter(|(_, by_dest)| by_dest.contains_key(destination))
                .map(|(group, _)| group.clone())
                .collect(),
        };
        let also = if by_value { &[][..] } else { also };
        for p in also {
            if !names.iter().any(|n| n.as_deref() == Some(p)) {
                names.push(Some(p.clone()));
            }
        }
        names.sort();
        names
            .into_iter()
            .map(|partition| {
                let empty = BTreeSet::new();
                let days = self
                    .days
                    .get(&partition)
                    .and_then(|by| by.get(destination))
                    .unwrap_or(&empty);
                let (first, last) = (days.first().copied(), days.last().copied());
                let missing = match (first, last) {
                    (Some(a), Some(b)) => (a..=b).filter(|d| !days.contains(d)).collect(),
                    _ => Vec::new(),
                };
                PartGaps {
                    partition,
                    days_loaded: days.len(),
                    first_day: first,
                    last_day: last,
                    days_behind: last.map(|l| i64::from(today) - i64::from(l)),
                    missing,
                }
            })
            .collect()
    }

    /// The fold for `query` over the journal in `dir`: from its checkpoint when that still
    /// matches the journal, then every later entry. The checkpoint is refreshed (best effort:
    /// the journal may be read-only).
    pub fn load(dir: &Path, query: &DaysQuery) -> Result<LoadedDays> {
        let reader = Reader::open(dir)?;
        let mut checkpoint = read_checkpoint(dir);
        let mut state = checkpoint
            .folds
            .iter()
            .find(|f| f.query == *query)
            .filter(|f| still_matches(&reader, f.state.through_seq, f.chain))
            .map(|f| f.state.clone())
            .unwrap_or_default();
        state.catch_up(&reader, query)?;
        let chain = match state.through_seq {
            0 => None,
            seq => reader.get(seq)?.map(|e| e.chain),
        };
        checkpoint.folds.retain(|f| f.query != *query);
        checkpoint.folds.insert(
            0,
            CheckpointedFold {
                query: query.clone(),
                chain,
                state: state.clone(),
            },
        );
        checkpoint.folds.truncate(MAX_CHECKPOINTS);
        if let Err(e) = write_checkpoint(dir, &checkpoint) {
            tracing::debug!(error = %e, "gaps checkpoint not refreshed");
        }
        Ok(state)
    }
}

/// Whether the journal's entry `seq` still has the chain hash a checkpoint recorded.
fn still_matches(reader: &Reader, seq: u64, chain: Option<Digest>) -> bool {
    if seq == 0 {
        return true;
    }
    matches!(reader.get(seq), Ok(Some(e)) if Some(e.chain) == chain)
}

/// Where the checkpoint of the journal in `dir` lives.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

fn read_checkpoint(dir: &Path) -> Checkpoint {
    std::fs::read(checkpoint_path(dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Checkpoint>(&bytes).ok())
        .filter(|c| c.version == CHECKPOINT_VERSION)
        .unwrap_or(Checkpoint {
            version: CHECKPOINT_VERSION,
            folds: Vec::new(),
        })
}

fn write_checkpoint(dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let path = checkpoint_path(dir);
    let fail = |message: String| EngineError::Checkpoint {
        path: path.clone(),
        message,
    };
    let bytes = serde_json::to_vec(checkpoint).map_err(|e| fail(e.to_string()))?;
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(format!("renaming {} into place: {e}", tmp.display()))
    })
}

/// The days of a batch from its cursor range, when the range says them all: one day, or two
/// consecutive days (the first and last rows' days, both present).
fn days_of_range(low: Option<&str>, high: Option<&str>) -> Option<Vec<Day>> {
    let low = day_of_value(&cursor::from_text(low?).ok()?)?;
    let high = day_of_value(&cursor::from_text(high?).ok()?)?;
    match high.checked_sub(low)? {
        0 => Some(vec![low]),
        1 => Some(vec![low, high]),
        _ => None,
    }
}

/// The distinct days of the `column` values of a journaled batch, each with its `by` value
/// when the query groups by one; `None` for a batch of deleted keys.
fn days_of_payload(
    payload: &Payload,
    q: &DaysQuery,
    seq: u64,
    label: &str,
) -> Result<Option<Vec<GroupDay>>> {
    let Payload::Inline(bytes) = payload else {
        return Err(EngineError::Batch {
            seq,
            message: format!(
                "stream `{label}`: the batch's rows were compacted away and its cursor range \
                 does not tell its days; gaps cannot be computed from this journal"
            ),
        });
    };
    let batch = Batch::decode(bytes).map_err(|e| EngineError::Batch {
        seq,
        message: e.to_string(),
    })?;
    if is_delete_batch(&batch) {
        return Ok(None);
    }
    let days = match &q.by {
        None => days_of_batch(&batch, &q.column)
            .map(|days| days.into_iter().map(|d| (None, d)).collect()),
        Some(by) => days_by_value(&batch, &q.column, by)
            .map(|pairs| pairs.into_iter().map(|(v, d)| (Some(v), d)).collect()),
    };
    days.map(Some).map_err(|message| EngineError::Batch {
        seq,
        message: format!("stream `{label}`: {message}"),
    })
}

/// The distinct days of `column` in `batch`, ascending; NULLs are skipped.
pub fn days_of_batch(batch: &Batch, column: &str) -> Result<Vec<Day>, String> {
    let Some(i) = batch.schema().index_of(column) else {
        let names: Vec<&str> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        return Err(format!(
            "the batch has no column `{column}`; its columns: {}",
            names.join(", ")
        ));
    };
    let col = &batch.columns()[i];
    let logical = &batch.schema().fields()[i].logical_type;
    let mut days = BTreeSet::new();
    let valid = |row: usize| !col.is_null(row);
    match (col.data(), logical) {
        // The common case, without a `Value` per row.
        (ColumnData::I32(v), LogicalType::Date) => {
            let mut last = None;
            for (row, d) in v.iter().enumerate() {
                if valid(row) && last != Some(*d) {
                    days.insert(*d);
                    last = Some(*d);
                }
            }
        }
        (ColumnData::I64(v), LogicalType::DateTime { .. } | LogicalType::Timestamp { .. }) => {
            for (row, us) in v.iter().enumerate() {
                if valid(row) {
                    days.insert(day_of_micros(*us));
                }
            }
        }
        (
            _,
            LogicalType::DateTimeOffset { .. }
            | LogicalType::Char { .. }
            | LogicalType::Varchar { .. }
            | LogicalType::Text { .. }
            | LogicalType::NChar { .. }
            | LogicalType::NVarchar { .. },
        ) => {
            for row in (0..batch.num_rows()).filter(|&r| valid(r)) {
                let value = batch.value(row, i).unwrap_or(Value::Null);
                let day = day_of_value(&value).ok_or_else(|| {
                    format!("column `{column}`: {value:?} (row {row}) is not a day")
                })?;
                days.insert(day);
            }
        }
        (_, other) => {
            return Err(format!(
                "column `{column}` is {other:?}: a day column must be a date, datetime, \
                 timestamp, datetimeoffset or ISO text (YYYY-MM-DD...)"
            ));
        }
    }
    Ok(days.into_iter().collect())
}

/// The distinct (value of `by`, day of `column`) pairs of `batch`, ascending; rows with a
/// NULL in either are skipped.
pub fn days_by_value(batch: &Batch, column: &str, by: &str) -> Result<Vec<(String, Day)>, String> {
    let index = |name: &str| {
        batch.schema().index_of(name).ok_or_else(|| {
            let names: Vec<&str> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            format!(
                "the batch has no column `{name}`; its columns: {}",
                names.join(", ")
            )
        })
    };
    let (c, b) = (index(column)?, index(by)?);
    let mut pairs = BTreeSet::new();
    let mut last: Option<(Value, String)> = None;
    for row in 0..batch.num_rows() {
        let (Some(day_value), Some(group)) = (batch.value(row, c), batch.value(row, b)) else {
            continue;
        };
        if day_value == Value::Null || group == Value::Null {
            continue;
        }
        let day = day_of_value(&day_value)
            .ok_or_else(|| format!("column `{column}`: {day_value:?} (row {row}) is not a day"))?;
        // Rows come grouped more often than not: reuse the last value's text.
        let text = match &last {
            Some((v, t)) if *v == group => t.clone(),
            _ => {
                let t = value_text(&group);
                last = Some((group, t.clone()));
                t
            }
        };
        pairs.insert((text, day));
    }
    Ok(pairs.into_iter().collect())
}

/// A value as people read it: the cursor text without its type tag.
fn value_text(value: &Value) -> String {
    match value {
        Value::Text(s) => s.clone(),
        other => {
            let t = cursor::to_text(other);
            match cursor::tag_of(&t) {
                Some(tag) => t[tag.len() + 1..].to_owned(),
                None => t,
            }
        }
    }
}

fn day_of_micros(us: i64) -> Day {
    Day::try_from(us.div_euclid(MICROS_PER_DAY)).unwrap_or(Day::MAX)
}

/// The day of a date-like value: a date; a datetime or timestamp's date; a
/// datetimeoffset's local date; text starting with YYYY-MM-DD.
pub fn day_of_value(value: &Value) -> Option<Day> {
    match value {
        Value::Date(d) => Some(*d),
        Value::DateTime(us) | Value::Timestamp(us) => Some(day_of_micros(*us)),
        Value::DateTimeOffset(t) => Some(day_of_micros(
            t.utc_micros
                .saturating_add(i64::from(t.offset_minutes) * 60_000_000),
        )),
        Value::Text(s) => match cursor::parse_user(s.get(..10)?, Some(CursorKind::Date)) {
            Ok(Value::Date(d)) => Some(d),
            _ => None,
        },
        _ => None,
    }
}

/// `2025-01-10` for a [`Day`].
pub fn day_text(day: Day) -> String {
    cursor::to_text(&Value::Date(day))
        .trim_start_matches("date:")
        .to_owned()
}

/// The [`Day`] of `2025-01-10`.
pub fn parse_day(text: &str) -> Result<Day, String> {
    match cursor::parse_user(text, Some(CursorKind::Date))? {
        Value::Date(d) => Ok(d),
        other => Err(format!("`{text}` is not a date ({other:?})")),
    }
}

/// Consecutive days grouped as `(first, last)` ranges.
pub fn ranges(days: &[Day]) -> Vec<(Day, Day)> {
    let mut out: Vec<(Day, Day)> = Vec::new();
    for &d in days {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == d => *last = d,
            _ => out.push((d, d)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use caudal_connector::{BatchBuilder, Field, Schema};

    use super::*;

    fn dated(days: &[Option<i32>]) -> Batch {
        let schema = Schema::new(
            vec![
                Field::new("n", LogicalType::Int64, false),
                Field::new("fecha", LogicalType::Date, true),
            ],
            &[],
        )
        .unwrap();
        let mut b = BatchBuilder::new(Arc::new(schema));
        for (n, d) in days.iter().enumerate() {
            b.push(0, n as i64).unwrap();
            match d {
                Some(d) => b.push(1, *d).unwrap(),
                None => b.push_null(1).unwrap(),
            }
        }
        b.finish().unwrap()
    }

    #[test]
    fn a_batch_gives_its_distinct_days_without_nulls() {
        let b = dated(&[Some(5), Some(5), None, Some(3), Some(9), Some(5)]);
        assert_eq!(days_of_batch(&b, "fecha").unwrap(), [3, 5, 9]);
        let err = days_of_batch(&b, "dia").unwrap_err();
        assert!(
            err.contains("no column `dia`") && err.contains("n, fecha"),
            "{err}"
        );
        let err = days_of_batch(&b, "n").unwrap_err();
        assert!(err.contains("column `n` is Int64"), "{err}");
    }

    #[test]
    fn a_batch_gives_its_days_per_value_of_another_column() {
        let schema = Schema::new(
            vec![
                Field::new("tienda", LogicalType::Varchar { max_length: None }, true),
                Field::new("fecha", LogicalType::Date, true),
            ],
            &[],
        )
        .unwrap();
        let mut b = BatchBuilder::new(Arc::new(schema));
        for (t, d) in [
            (Some("b"), Some(3)),
            (Some("a"), Some(4)),
            (Some("b"), Some(3)),
            (None, Some(9)),
            (Some("a"), None),
            (Some("a"), Some(2)),
        ] {
            match t {
                Some(t) => b.push(0, t).unwrap(),
                None => b.push_null(0).unwrap(),
            }
            match d {
                Some(d) => b.push(1, d).unwrap(),
                None => b.push_null(1).unwrap(),
            }
        }
        let batch = b.finish().unwrap();
        let pairs = days_by_value(&batch, "fecha", "tienda").unwrap();
        assert_eq!(
            pairs,
            [
                ("a".to_owned(), 2),
                ("a".to_owned(), 4),
                ("b".to_owned(), 3)
            ]
        );
        let err = days_by_value(&batch, "fecha", "store").unwrap_err();
        assert!(
            err.contains("no column `store`") && err.contains("tienda, fecha"),
            "{err}"
        );
    }

    #[test]
    fn cursor_ranges_stand_in_only_for_one_or_two_days() {
        let (a, b, c) = ("date:2025-01-10", "date:2025-01-11", "date:2025-01-12");
        let ten = parse_day("2025-01-10").unwrap();
        assert_eq!(days_of_range(Some(a), Some(a)), Some(vec![ten]));
        assert_eq!(days_of_range(Some(a), Some(b)), Some(vec![ten, ten + 1]));
        assert_eq!(
            days_of_range(Some(a), Some(c)),
            None,
            "the middle day may be missing"
        );
        assert_eq!(days_of_range(Some("int:1"), Some("int:1")), None);
        assert_eq!(days_of_range(None, Some(a)), None);
        let ts = "timestamp:2025-01-10T23:59:59.000000Z";
        assert_eq!(days_of_range(Some(a), Some(ts)), Some(vec![ten]));
    }

    #[test]
    fn days_of_values_and_text_round_trip() {
        let d = parse_day("2025-03-01").unwrap();
        assert_eq!(day_text(d), "2025-03-01");
        assert_eq!(
            day_of_value(&Value::Text("2025-03-01T10:00".into())),
            Some(d)
        );
        assert_eq!(day_of_value(&Value::Text("marzo".into())), None);
        let local = caudal_connector::OffsetTimestamp {
            // 2025-03-01T02:00Z is still 2025-02-28 at UTC-4.
            utc_micros: i64::from(d) * MICROS_PER_DAY + 2 * 3_600_000_000,
            offset_minutes: -240,
        };
        assert_eq!(day_of_value(&Value::DateTimeOffset(local)), Some(d - 1));
        assert_eq!(day_of_value(&Value::Timestamp(-1)), Some(-1));
        assert!(parse_day("2025-13-01").is_err());
    }

    #[test]
    fn ranges_group_consecutive_days() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), [(1, 3), (7, 7), (9, 10)]);
        assert!(ranges(&[]).is_empty());
    }

    fn started(days: &mut LoadedDays, q: &DaysQuery, seq: u64, p: &str, dests: &[&str]) {
        let kind = EntryKind::StreamStarted {
            stream: q.stream.clone(),
            partition: Some(p.into()),
            source: p.into(),
            destinations: dests.iter().map(|d| d.to_string()).collect(),
            mode: "incremental".into(),
            resume_cursor: None,
        };
        days.apply(seq, &kind, &Payload::Inline(Vec::new()), q)
            .unwrap();
    }

    fn read(days: &mut LoadedDays, q: &DaysQuery, seq: u64, p: &str, batch: &Batch) {
        let kind = EntryKind::BatchRead {
            stream: q.stream.clone(),
            partition: Some(p.into()),
            schema_id: 0,
            rows: batch.num_rows() as u64,
            bytes: 0,
            cursor_low: None,
            cursor_high: None,
            digest: Digest::default(),
        };
        let payload = Payload::Inline(batch.encode().unwrap());
        days.apply(seq, &kind, &payload, q).unwrap();
    }

    fn applied(days: &mut LoadedDays, q: &DaysQuery, p: &str, dest: &str, batch_seq: u64) {
        let kind = EntryKind::WriteApplied {
            stream: q.stream.clone(),
            partition: Some(p.into()),
            destination: dest.into(),
            batch_seq,
            rows: 1,
            attempt: 1,
            elapsed_us: 1,
        };
        days.apply(batch_seq + 100, &kind, &Payload::Inline(Vec::new()), q)
            .unwrap();
    }

    #[test]
    fn days_count_once_the_destination_applied_them() {
        let q = DaysQuery {
            pipeline: "p".into(),
            stream: "ventas".into(),
            column: "fecha".into(),
            column_is_cursor: false,
            by: None,
        };
        let mut days = LoadedDays::default();
        started(&mut days, &q, 1, "t1", &["wh", "cache"]);
        started(&mut days, &q, 2, "t2", &["wh", "cache"]);
        read(
            &mut days,
            &q,
            3,
            "t1",
            &dated(&[Some(10), Some(11), Some(14)]),
        );
        read(&mut days, &q, 4, "t1", &dated(&[Some(16), Some(17)]));
        applied(&mut days, &q, "t1", "wh", 3);
        applied(&mut days, &q, "t1", "cache", 3);
        applied(&mut days, &q, "t1", "wh", 4);
        assert_eq!(days.batches.len(), 1, "batch 4 still lacks `cache`");
        let g = days.gaps("wh", 20, &["t3".into()], false);
        let names: Vec<_> = g.iter().map(|p| p.partition.clone().unwrap()).collect();
        assert_eq!(names, ["t1", "t2", "t3"]);
        assert_eq!(g[0].first_day, Some(10));
        assert_eq!(g[0].last_day, Some(17));
        assert_eq!(g[0].days_behind, Some(3));
        assert_eq!(g[0].missing, [12, 13, 15]);
        assert_eq!(g[0].days_loaded, 5);
        assert_eq!((g[1].last_day, g[1].days_loaded), (None, 0));
        let cache = days.gaps("cache", 20, &[], false);
        assert_eq!(cache[0].last_day, Some(14), "batch 4 never reached `cache`");
        assert_eq!(cache[0].missing, [12, 13]);
    }
}
