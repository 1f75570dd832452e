//! The append-only, hash-chained event journal of caudal.
//!
//! Everything caudal does is an [`Entry`]: metadata ([`EntryKind`], seq, time, run, pipeline)
//! plus an opaque payload (e.g. an encoded batch of rows). Entries live in a directory of
//! segment files; each record is framed by length and CRC32C against accidental damage, and
//! each entry carries `chain = SHA-256(previous chain ‖ header ‖ SHA-256(payload))` against
//! edits, deletions and reordering. The exact bytes are documented in `format.rs`.
//!
//! - [`Journal`] is the single writer of a directory (a file lock enforces it): group commit
//!   under a [`Durability`] policy, async and blocking appends, recovery of a torn tail on open.
//! - [`Reader`] reads without a lock, alongside a writer: by seq through a sparse index, from a
//!   seq on, or following new entries.
//! - [`verify`] checks everything: headers, CRCs, seq density, the chain and payload hashes.
//! - [`Io`] is the seam all file I/O goes through; [`fault::FaultyIo`] injects failures in
//!   tests.
//!
//! Guarantees: seqs are dense from 1; an append is acknowledged only once durable under the
//! policy; after a failed write or fsync the writer refuses everything until reopened; damage
//! is never skipped: reading stops with [`Error::Damaged`] naming segment, byte offset and seq;
//! no input from disk makes the crate panic.
//!
//! Start reading at `writer.rs` (the write path), then `recovery.rs` and `reader.rs`.

mod entry;
mod error;
pub mod fault;
mod format;
mod io;
mod lock;
mod options;
mod reader;
mod recovery;
mod segment;
mod verify;
mod writer;

pub use entry::{Digest, Entry, EntryKind, NewEntry, Payload, RunId, Timestamp, now};
pub use error::{Error, Result};
pub use format::FORMAT_VERSION;
pub use io::{Io, IoFile, StdIo};
pub use options::{DEFAULT_INTERVAL, Durability, JournalOptions};
pub use reader::{Entries, Follow, Reader, SegmentInfo, StoredEntry};
pub use recovery::Recovery;
pub use verify::{VerifyReport, verify, verify_with};
pub use writer::{Appended, Journal, WriterStats};

/// Decoding entry points, exposed so property tests can feed them arbitrary bytes.
#[doc(hidden)]
pub mod decode {
    /// Decodes a segment header; `Err` describes why it is not one.
    pub fn segment_header(bytes: &[u8]) -> Result<(u64, [u8; 32]), String> {
        crate::format::decode_segment_header(bytes)
            .map(|h| (h.first_seq, h.chain_in))
            .map_err(|p| format!("{p:?}"))
    }

    /// Checks and decodes one record (frame and body); `Err` says why it is not one.
    pub fn record(bytes: &[u8]) -> Result<crate::Entry, String> {
        if bytes.len() < crate::format::FRAME_LEN {
            return Err("shorter than a frame".into());
        }
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if !crate::format::plausible_body_len(len)
            || len as usize != bytes.len() - crate::format::FRAME_LEN
        {
            return Err("length field disagrees with the record".into());
        }
        if !crate::format::record_crc_ok(bytes) {
            return Err("crc mismatch".into());
        }
        let v = crate::format::parse_body(&bytes[crate::format::FRAME_LEN..])
            .map_err(str::to_string)?;
        let h = crate::format::decode_header(v.header)?;
        let payload = match v.payload {
            Some(p) => crate::Payload::Inline(p.to_vec()),
            None => crate::Payload::Compacted {
                sha256: crate::Digest(v.payload_sha),
                len: v.payload_len,
            },
        };
        Ok(crate::Entry {
            seq: h.seq,
            time: h.time,
            run: h.run,
            pipeline: h.pipeline,
            kind: h.kind,
            payload,
        })
    }

    /// Splits a record body into its parts without checking a CRC.
    pub fn body(bytes: &[u8]) -> Result<usize, String> {
        let v = crate::format::parse_body(bytes).map_err(str::to_string)?;
        crate::format::decode_header(v.header).map(|_| v.header.len())
    }

    /// Decodes an index file's hints.
    pub fn index(bytes: &[u8]) -> Vec<(u64, u64)> {
        crate::format::decode_index(bytes)
    }
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_cross_threads() {
        send_sync::<crate::Journal>();
        send_sync::<crate::Reader>();
        send_sync::<crate::Error>();
        send::<crate::Entries>();
        send::<crate::Follow>();
    }
}
