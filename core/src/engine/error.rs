//! The engine's error type.
//!
//! Every message names what failed and on what (stream, partition, connection, journal seq).
//! Text that came from a database or a plugin has passed through [`caudal_config::Pipeline::scrub`]
//! before it is stored in a variant, so no variant ever holds a secret.

use std::path::PathBuf;

/// `Result` with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What can stop the engine (as opposed to a failed write, which is journaled and retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The run's options do not fit the pipeline: an unknown stream or partition, a manual
    /// range on a stream without a cursor, a range bound that does not parse.
    #[error("{0}")]
    Usage(String),
    /// The journal refused an append or a read (locked by another writer, damaged, poisoned).
    #[error(transparent)]
    Journal(#[from] caudal_journal::Error),
    /// A connection could not be opened or a call on it failed outside of a batch write
    /// (opening, discovering, reading). The message is scrubbed of secrets.
    #[error("connection `{connection}`: {message}")]
    Connection {
        /// The connection's name in the pipeline file.
        connection: String,
        /// What the plugin or the database said.
        message: String,
    },
    /// A batch stored in the journal cannot be used (its payload was compacted away, or it
    /// does not decode).
    #[error("journal seq {seq}: {message}")]
    Batch {
        /// The seq of the `BatchRead` entry.
        seq: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A batch read from a source cannot be turned into what the stream writes (a missing
    /// cursor or key column, a schema that cannot be extended).
    #[error("stream `{stream}`: {message}")]
    Stream {
        /// The stream (with its partition, `stream/partition`).
        stream: String,
        /// What is wrong.
        message: String,
    },
    /// The projection checkpoint could not be written.
    #[error("projection checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}
