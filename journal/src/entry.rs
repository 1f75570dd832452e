//! What the journal stores: entries, their kinds and the small value types they use.
//!
//! An [`Entry`] is metadata ([`EntryKind`] plus seq, time, run and pipeline) and an opaque
//! payload. The metadata is encoded with bincode into the record's chained header; the payload
//! is hashed separately, so a payload can later be dropped ([`Payload::Compacted`]) while the
//! chain still verifies.
//!
//! Bincode encodes enum variants by index: new [`EntryKind`] variants go at the end only, and no
//! field of an existing variant ever changes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Microseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// The current time as a [`Timestamp`].
pub fn now() -> Timestamp {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Identifies one run of a pipeline. Shown as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct RunId(pub u64);

impl RunId {
    /// A fresh id, unpredictable enough to tell runs apart (not for security).
    pub fn random() -> RunId {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // RandomState is seeded from the OS once per process; mixing in time, pid and a counter
        // keeps ids distinct across processes and within one.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(now());
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        RunId(h.finish())
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for RunId {
    type Err = Error;
    fn from_str(s: &str) -> Result<RunId> {
        let bad = || Error::BadRunId {
            value: s.to_string(),
        };
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(s, 16).map(RunId).map_err(|_| bad())
    }
}

/// A SHA-256 value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Encoding 32 bytes into 64 always fits.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> std::result::Result<Digest, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            // As one byte string, not a 32-tuple: binary decoders then take it in one piece
            // instead of element by element.
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Digest, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            d.deserialize_bytes(DigestBytes)
        }
    }
}

struct DigestBytes;

impl serde::de::Visitor<'_> for DigestBytes {
    type Value = Digest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("32 bytes of SHA-256")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Digest, E> {
        <[u8; 32]>::try_from(v)
            .map(Digest)
            .map_err(|_| E::invalid_length(v.len(), &self))
    }
}

/// One journal entry as read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the journal: dense, from 1.
    pub seq: u64,
    /// When the entry was appended (or the time the appender gave).
    pub time: Timestamp,
    /// The run the entry belongs to, if any.
    pub run: Option<RunId>,
    /// The pipeline the entry belongs to; empty when it is not tied to one.
    pub pipeline: String,
    /// What happened. All metadata: part of the chained entry header.
    pub kind: EntryKind,
    /// Bulk bytes (e.g. an encoded batch), hashed separately from the header.
    pub payload: Payload,
}

/// An entry's bulk bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// The bytes are stored in the record.
    Inline(Vec<u8>),
    /// The bytes were dropped by compaction; their hash and length remain.
    Compacted {
        /// SHA-256 of the dropped bytes.
        sha256: Digest,
        /// Length of the dropped bytes.
        len: u64,
    },
}

impl Payload {
    /// The payload's length in bytes (also for a compacted payload).
    pub fn len(&self) -> u64 {
        match self {
            Payload::Inline(b) => b.len() as u64,
            Payload::Compacted { len, .. } => *len,
        }
    }

    /// Whether the payload has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An entry to append; the journal assigns its seq.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    /// Entry time; `None` means the time the writer takes it.
    pub time: Option<Timestamp>,
    /// The run the entry belongs to, if any.
    pub run: Option<RunId>,
    /// The pipeline the entry belongs to; empty when it is not tied to one.
    pub pipeline: String,
    /// What happened.
    pub kind: EntryKind,
    /// Bulk bytes; may be empty.
    pub payload: Vec<u8>,
}

impl NewEntry {
    /// An entry of `kind` for `pipeline`, with no run, no payload, stamped when written.
    pub fn new(pipeline: impl Into<String>, kind: EntryKind) -> Self {
        NewEntry {
            time: None,
            run: None,
            pipeline: pipeline.into(),
            kind,
            payload: Vec::new(),
        }
    }

    /// Ties the entry to a run.
    pub fn with_run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    /// Attaches bulk bytes.
    pub fn with_payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }

    /// Fixes the entry's time instead of using the time of writing.
    pub fn at(mut self, time: Timestamp) -> Self {
        self.time = Some(time);
        self
    }
}

/// What an entry records. Order matters (see the module doc): append new variants at the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A run of a pipeline began.
    RunStarted {
        /// The pipeline file, as given.
        pipeline_file: String,
        /// Why it ran: manual, schedule, retry or replay.
        trigger: String,
        /// Streams the run covers.
        streams: Vec<String>,
        /// The run's arguments (ranges, filters), as text.
        args: String,
    },
    /// A stream (or one partition of it) began.
    StreamStarted {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// Source connection.
        source: String,
        /// Destination connections.
        destinations: Vec<String>,
        /// snapshot, incremental, merge or consolidate.
        mode: String,
        /// Cursor the read resumes after, if any.
        resume_cursor: Option<String>,
    },
    /// A batch was read from a source; its rows are in the payload.
    BatchRead {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// Schema of the batch.
        schema_id: u64,
        /// Rows in the batch.
        rows: u64,
        /// Encoded size of the batch.
        bytes: u64,
        /// Lowest cursor value in the batch.
        cursor_low: Option<String>,
        /// Highest cursor value in the batch.
        cursor_high: Option<String>,
        /// Digest of the batch's rows.
        digest: Digest,
    },
    /// A batch was written to a destination.
    WriteApplied {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// Destination connection.
        destination: String,
        /// Seq of the batch's `BatchRead`.
        batch_seq: u64,
        /// Rows written.
        rows: u64,
        /// Attempt number, from 1.
        attempt: u32,
        /// Time the write took.
        elapsed_us: u64,
    },
    /// A write to a destination failed.
    WriteFailed {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// Destination connection.
        destination: String,
        /// Seq of the batch's `BatchRead`.
        batch_seq: u64,
        /// The destination's error text.
        error: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// A failed write will be tried again.
    RetryScheduled {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// Destination connection.
        destination: String,
        /// Seq of the batch's `BatchRead`.
        batch_seq: u64,
        /// The attempt that will be made.
        attempt: u32,
        /// When it is due.
        due: Timestamp,
    },
    /// A stream's progress is safe up to a seq.
    Checkpoint {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// Cursor value reached.
        cursor: Option<String>,
        /// Everything up to this seq is applied.
        through_seq: u64,
    },
    /// A stream (or partition) finished.
    StreamCompleted {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// Rows read.
        rows: u64,
        /// Batches read.
        batches: u64,
        /// Batches not applied everywhere.
        failed_batches: u64,
    },
    /// A run finished.
    RunCompleted {
        /// Rows read.
        rows: u64,
        /// Batches read.
        batches: u64,
        /// Streams that finished without failures.
        streams_ok: u32,
        /// Streams with failures.
        streams_failed: u32,
        /// Wall time of the run.
        elapsed_us: u64,
    },
    /// A run stopped on an error.
    RunFailed {
        /// The error text.
        error: String,
        /// Wall time until the failure.
        elapsed_us: u64,
    },
    /// A projection was rebuilt from the journal.
    ProjectionRebuilt {
        /// Projection name.
        projection: String,
        /// Last seq folded in.
        through_seq: u64,
    },
    /// A destination table was checked against the journal's digest.
    VerifyResult {
        /// Destination connection.
        connection: String,
        /// Table checked.
        table: String,
        /// Digest the journal expects.
        expected: Digest,
        /// Digest the destination has.
        actual: Digest,
        /// Whether they match.
        ok: bool,
        /// Rows missing from the destination.
        missing: u64,
        /// Rows the destination has in excess.
        extra: u64,
        /// Rows that differ.
        changed: u64,
        /// Keys of differing rows (possibly truncated).
        keys: Vec<String>,
    },
    /// Opening the journal cut a torn tail.
    JournalRecovered {
        /// Segment that was cut.
        segment: String,
        /// Offset of the cut.
        offset: u64,
        /// Bytes removed.
        bytes_dropped: u64,
    },
    /// Rows were written through the write API; they are in the payload.
    Ingested {
        /// Target table.
        table: String,
        /// Rows written.
        rows: u64,
        /// Digest of the rows.
        digest: Digest,
    },
    /// Reading a stream's source failed; the batches read before the failure stay journaled.
    ReadFailed {
        /// Stream name.
        stream: String,
        /// Source connection of a partitioned stream.
        partition: Option<String>,
        /// The source's error text.
        error: String,
        /// Read attempt in this run, from 1.
        attempt: u32,
        /// Whether the source was unavailable, so that a later read may succeed.
        retryable: bool,
        /// When this run reads the stream again; `None` when it does not (the error is not
        /// retryable or the retry policy's attempts are used up).
        retry_due: Option<Timestamp>,
    },
}

impl EntryKind {
    /// Every kind's name, in variant order.
    pub const NAMES: &'static [&'static str] = &[
        "RunStarted",
        "StreamStarted",
        "BatchRead",
        "WriteApplied",
        "WriteFailed",
        "RetryScheduled",
        "Checkpoint",
        "StreamCompleted",
        "RunCompleted",
        "RunFailed",
        "ProjectionRebuilt",
        "VerifyResult",
        "JournalRecovered",
        "Ingested",
        "ReadFailed",
    ];

    /// The kind's name, e.g. "BatchRead".
    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// Position of the variant in [`EntryKind::NAMES`] (and in the encoding).
    fn index(&self) -> usize {
        match self {
            EntryKind::RunStarted { .. } => 0,
            EntryKind::StreamStarted { .. } => 1,
            EntryKind::BatchRead { .. } => 2,
            EntryKind::WriteApplied { .. } => 3,
            EntryKind::WriteFailed { .. } => 4,
            EntryKind::RetryScheduled { .. } => 5,
            EntryKind::Checkpoint { .. } => 6,
            EntryKind::StreamCompleted { .. } => 7,
            EntryKind::RunCompleted { .. } => 8,
            EntryKind::RunFailed { .. } => 9,
            EntryKind::ProjectionRebuilt { .. } => 10,
            EntryKind::VerifyResult { .. } => 11,
            EntryKind::JournalRecovered { .. } => 12,
            EntryKind::Ingested { .. } => 13,
            EntryKind::ReadFailed { .. } => 14,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_text_round_trips_and_rejects_bad_input() {
        let id = RunId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<RunId>().unwrap(), id);
        for bad in [
            "",
            "abc",
            "00abcdef0123456g",
            "+0abcdef01234567",
            "00abcdef012345678",
        ] {
            let err = bad.parse::<RunId>().unwrap_err();
            assert!(err.to_string().contains("invalid run id"), "{bad}: {err}");
        }
        assert_ne!(RunId::random(), RunId::random());
    }

    #[test]
    fn digest_is_hex_in_json_and_raw_in_bincode() {
        let d = Digest::of(b"abc");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"abc\"").is_err());
        assert_eq!(
            json,
            "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""
        );
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(d, cfg).unwrap();
        assert_eq!(bytes, [&[32u8][..], &d.0[..]].concat());
        let short = bincode::serde::decode_from_slice::<Digest, _>(&[3, 1, 2, 3], cfg);
        assert!(short.is_err());
        let (back, _): (Digest, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn kind_names_follow_variant_order() {
        let k = EntryKind::Ingested {
            table: "t".into(),
            rows: 1,
            digest: Digest::default(),
        };
        assert_eq!(k.name(), "Ingested");
        let k = EntryKind::RunFailed {
            error: "x".into(),
            elapsed_us: 0,
        };
        assert_eq!(k.name(), "RunFailed");
        let k = EntryKind::ReadFailed {
            stream: "s".into(),
            partition: None,
            error: "x".into(),
            attempt: 1,
            retryable: true,
            retry_due: None,
        };
        assert_eq!(k.name(), "ReadFailed");
        assert_eq!(EntryKind::NAMES.len(), 15);
    }
}
