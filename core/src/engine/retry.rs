//! `caudal retry`: writes that failed are tried again now, from the journal's copy.
//!
//! Every lane of the pipeline with an outstanding failure (or, with `--seq N`, the lanes that
//! still lack batch N) gets one attempt: its pending batches, in order, from the first that
//! failed. So does a lane whose batches wait with no failed write, because the command that
//! was writing them (a run or a retry) was killed first; a run would apply them too, before
//! it reads. A scheduled retry (`only_due`) takes only lanes whose retry is due. The attempt
//! is journaled as a run with trigger `retry`; a write that fails again is journaled with its
//! attempt number and stays in `caudal failures`. Nothing is read from a source.

use std::sync::Arc;

use caudal_journal::{EntryKind, RunId};

use super::error::{EngineError, Result};
use super::projection::LaneKey;
use super::run::{Engine, pipeline_file};
use super::session::{Lane, Session};

/// Which failures to retry.
#[derive(Debug, Clone, Default)]
pub struct RetryOptions {
    /// Only lanes that lack this batch.
    pub seq: Option<u64>,
    /// Only lanes whose scheduled retry is due, and schedule the next attempt as `[retry]`
    /// says when it fails again (what a retry loop such as `caudal serve`'s asks for).
    pub only_due: bool,
}

/// One lane's retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneRetry {
    /// `stream` or `stream/partition`.
    pub label: String,
    /// Destination connection.
    pub destination: String,
    /// The first pending batch before the retry.
    pub first_seq: u64,
    /// Pending batches before the retry.
    pub batches: usize,
    /// `None` when every pending batch is now applied; the error otherwise.
    pub error: Option<String>,
}

/// The result of `caudal retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryReport {
    /// The retry run, `None` when there was nothing to retry (nothing is journaled then).
    pub run: Option<RunId>,
    /// Per lane.
    pub lanes: Vec<LaneRetry>,
}

impl RetryReport {
    /// Whether every retried lane is now up to date.
    pub fn succeeded(&self) -> bool {
        self.lanes.iter().all(|l| l.error.is_none())
    }
}

impl Engine {
    /// Retries the pipeline's failed writes now. See the module documentation.
    pub fn retry(&self, options: &RetryOptions) -> Result<RetryReport> {
        let session = Session::open(Arc::clone(&self.pipeline), Arc::clone(&self.endpoints))?;
        let now = caudal_journal::now();
        // This command holds the journal as its only writer: no other is writing them now.
        let interrupted = if options.only_due {
            Vec::new()
        } else {
            session.projection.interrupted_lanes(self.pipeline.name())
        };
        let mut lanes: Vec<LaneKey> = session
            .projection
            .lanes()
            .into_iter()
            .filter(|(k, l)| {
                k.part.pipeline == self.pipeline.name()
                    && l.failure.is_some()
                    && (!options.only_due
                        || l.failure
                            .as_ref()
                            .and_then(|f| f.next_due)
                            .is_some_and(|due| due <= now))
            })
            .map(|(k, _)| k)
            .chain(interrupted)
            .filter(|k| {
                options
                    .seq
                    .is_none_or(|seq| session.projection.pending(k).iter().any(|b| b.seq == seq))
            })
            .collect();
        lanes.sort();
        if lanes.is_empty() {
            if let Some(seq) = options.seq {
                session.close()?;
                return Err(EngineError::Usage(format!(
                    "no failed write of pipeline `{}` is waiting for batch {seq}; \
                     `caudal failures` lists them",
                    self.pipeline.name()
                )));
            }
            session.close()?;
            return Ok(RetryReport {
                run: None,
                lanes: Vec::new(),
            });
        }
        let result = retry_lanes(&session, &self.pipeline, &lanes, options);
        let closed = session.close();
        let report = result?;
        closed?;
        Ok(report)
    }
}

fn retry_lanes(
    session: &Session,
    pipeline: &caudal_config::Pipeline,
    lanes: &[LaneKey],
    options: &RetryOptions,
) -> Result<RetryReport> {
    let labels: Vec<String> = lanes
        .iter()
        .map(|k| {
            format!(
                "{} -> {}",
                super::plan::part_label(&k.part.stream, k.part.partition.as_deref()),
                k.destination
            )
        })
        .collect();
    session.record(
        EntryKind::RunStarted {
            pipeline_file: pipeline_file(pipeline),
            trigger: "retry".into(),
            streams: labels,
            args: options
                .seq
                .map(|s| format!("--seq {s}"))
                .unwrap_or_default(),
        },
        Vec::new(),
    )?;
    let mut report = RetryReport {
        run: Some(session.run),
        lanes: Vec::new(),
    };
    for key in lanes {
        let pending = session.projection.pending(key);
        let label = super::plan::part_label(&key.part.stream, key.part.partition.as_deref());
        let mut entry = LaneRetry {
            label,
            destination: key.destination.clone(),
            first_seq: pending.first().map_or(0, |b| b.seq),
            batches: pending.len(),
            error: None,
        };
        let Some(stream) = pipeline.stream(&key.part.stream) else {
            entry.error = Some(format!(
                "stream `{}` is no longer in {}; its journaled batches can still be written \
                 with `caudal replay`",
                key.part.stream,
                pipeline.path().display()
            ));
            report.lanes.push(entry);
            continue;
        };
        let mut lane = Lane::new(
            session,
            stream,
            key.part.partition.as_deref(),
            &key.destination,
        );
        // An automatic retry (a due one) follows the policy, counting the attempts the journal
        // has for the batch; a manual one is one attempt and schedules nothing.
        let policy = if options.only_due {
            lane.attempts_this_run = session
                .projection
                .lane(key)
                .and_then(|l| l.failure)
                .map_or(0, |f| f.attempts);
            Some(stream.retry())
        } else {
            None
        };
        session.apply_pending(&mut lane, policy)?;
        entry.error = session
            .projection
            .lane(key)
            .and_then(|l| l.failure)
            .map(|f| f.error);
        if entry.error.is_none() {
            session.checkpoint_if_applied(&key.part)?;
        }
        report.lanes.push(entry);
    }
    let fixed = report.lanes.iter().filter(|l| l.error.is_none()).count();
    session.record(
        EntryKind::RunCompleted {
            rows: 0,
            batches: 0,
            streams_ok: u32::try_from(fixed).unwrap_or(u32::MAX),
            streams_failed: u32::try_from(report.lanes.len() - fixed).unwrap_or(u32::MAX),
            elapsed_us: session.elapsed_us(),
        },
        Vec::new(),
    )?;
    Ok(report)
}
