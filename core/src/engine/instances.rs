//! Which journaled batches a destination of a part holds: the fold of the journal's stream
//! entries into stream instances (one per read of a part), shared by replay, verify and
//! rebuild.
//!
//! A `StreamStarted` opens an instance, each `BatchRead` adds its `(seq, rows)`, a
//! `StreamCompleted` closes it. A destination holds every batch of an incremental, merge or
//! consolidate stream, and only the batches of the last finished snapshot of a snapshot
//! stream.

use std::collections::BTreeMap;

use caudal_journal::{Entry, EntryKind};

/// A part of a pipeline: `(stream, partition)`.
pub(crate) type Part = (String, Option<String>);

/// One read of a part: its batches as `(seq, rows)`, and whether it finished.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Instance {
    pub batches: Vec<(u64, u64)>,
    pub complete: bool,
}

/// The part an entry belongs to, for the entries that make instances.
pub(crate) fn part_of(kind: &EntryKind) -> Option<(&String, &Option<String>)> {
    match kind {
        EntryKind::StreamStarted {
            stream, partition, ..
        }
        | EntryKind::BatchRead {
            stream, partition, ..
        }
        | EntryKind::StreamCompleted {
            stream, partition, ..
        } => Some((stream, partition)),
        _ => None,
    }
}

/// Folds one entry into `parts` (other kinds of entry change nothing).
pub(crate) fn fold(parts: &mut BTreeMap<Part, Vec<Instance>>, e: &Entry) {
    let Some((stream, partition)) = part_of(&e.kind) else {
        return;
    };
    let instances = parts
        .entry((stream.clone(), partition.clone()))
        .or_default();
    match &e.kind {
        EntryKind::StreamStarted { .. } => instances.push(Instance::default()),
        EntryKind::BatchRead { rows, .. } => {
            if instances.is_empty() {
                instances.push(Instance::default());
            }
            if let Some(i) = instances.last_mut() {
                i.batches.push((e.seq, *rows));
            }
        }
        EntryKind::StreamCompleted { .. } => {
            if let Some(i) = instances.last_mut() {
                i.complete = true;
            }
        }
        _ => {}
    }
}

/// The batches a destination of the part holds: every batch, or for a snapshot stream those
/// of its last finished snapshot.
pub(crate) fn held(instances: Vec<Instance>, snapshot: bool) -> Vec<(u64, u64)> {
    if snapshot {
        instances
            .into_iter()
            .rev()
            .find(|i| i.complete && !i.batches.is_empty())
            .map(|i| i.batches)
            .unwrap_or_default()
    } else {
        instances.into_iter().flat_map(|i| i.batches).collect()
    }
}
