//! The journal's error type.
//!
//! Every message is meant for the person running caudal: it says what failed, on what (journal
//! directory, segment file, byte offset, seq) and, where there is something to do, what to do.

use std::path::PathBuf;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed.
    #[error("journal I/O failed while {op} {path}: {source}")]
    Io {
        /// What the journal was doing, e.g. "writing segment".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// Another writer holds the directory's lock.
    #[error(
        "journal {} is in use by another writer ({}); stop that process first, or read the journal without writing", dir.display(), match pid { Some(p) => format!("pid {p}"), None => "pid unknown".to_string() }
    )]
    Locked {
        /// The journal directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it in the `LOCK` file.
        pid: Option<u32>,
    },

    /// A record or segment header is corrupt somewhere other than a torn tail.
    #[error("journal damaged at seq {seq} (segment {segment}, byte {offset}): {reason}")]
    Damaged {
        /// Segment file name.
        segment: String,
        /// Byte offset of the damaged record or header inside the segment.
        offset: u64,
        /// The seq the damaged record holds, or would hold (seqs are dense).
        seq: u64,
        /// What is wrong, e.g. "crc mismatch".
        reason: String,
    },

    /// An earlier write or fsync failed; the writer accepts nothing more.
    #[error(
        "journal writer stopped after an I/O failure ({cause}); nothing more is accepted: reopen the journal to recover from what is on disk"
    )]
    Poisoned {
        /// The failure that stopped the writer.
        cause: String,
    },

    /// The directory holds no journal.
    #[error("{} is not a caudal journal (no LOCK file and no segment files)", dir.display())]
    NotAJournal {
        /// The directory that was opened.
        dir: PathBuf,
    },

    /// A segment was written by a build with another on-disk format.
    #[error(
        "segment {segment} uses journal format version {found}, but this build reads version {expected}; use a caudal release that matches"
    )]
    UnsupportedFormat {
        /// Segment file name.
        segment: String,
        /// Version found in the segment header.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },

    /// An entry could not be encoded.
    #[error("cannot encode journal entry: {0}")]
    Encode(String),

    /// An entry is larger than one record can hold.
    #[error(
        "journal entry of {bytes} bytes is larger than the {max} bytes one record can hold; split the payload"
    )]
    EntryTooLarge {
        /// Encoded size of the entry.
        bytes: u64,
        /// Largest encoded size a record accepts.
        max: u64,
    },

    /// The journal was closed (or its writer thread ended) before the append completed.
    #[error("journal is closed")]
    Closed,

    /// A durability policy name did not parse.
    #[error(
        "unknown durability policy `{value}`: expected always, batch, interval, interval:<duration> (e.g. interval:250ms) or never"
    )]
    BadDurability {
        /// The text that was given.
        value: String,
    },

    /// A run id did not parse.
    #[error("invalid run id `{value}`: expected 16 hexadecimal digits")]
    BadRunId {
        /// The text that was given.
        value: String,
    },
}

/// Result with the journal's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds an [`Error::Io`] from an operation name and a path.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
