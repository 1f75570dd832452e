//! The engine: runs pipelines exactly once, journaling every step, and answers what the
//! journal says (status, history, failures) as projections.
//!
//! Where to start reading:
//! - [`run`]: one run of a pipeline (`caudal run`), the data flow of DESIGN.md;
//! - [`session`]: the journal writer, the projection, and the write path into destinations
//!   (lanes, failures, retries) that `run`, `retry` and `replay` share;
//! - [`projection`]: the fold over the journal and its checkpoint;
//! - [`endpoint`]: how connections are opened (plugins in production, fakes in tests).
//!
//! Invariants the engine keeps:
//! - A batch is journaled (`BatchRead`, durable) before any destination sees it, and written
//!   into each destination together with its seq as that destination's offset, so a crash at
//!   any instant neither loses nor duplicates a row: on the next run, each destination gets
//!   the journaled batches its offset says it lacks, from the journal.
//! - Batches reach a destination in seq order; one that fails holds back the later ones for
//!   that destination only (its *lane*).
//! - Retries and replays read batches from the journal, never from the source.
//! - Text that came from a database passes through [`caudal_config::Pipeline::scrub`] before
//!   it is journaled, logged or shown.

pub mod cursor;
pub mod endpoint;
mod error;
pub mod gaps;
mod instances;
pub mod plan;
pub mod progress;
pub mod projection;
pub mod rebuild;
pub mod replay;
pub mod retry;
pub mod run;
pub mod session;
pub mod shape;
pub mod verify;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use endpoint::{ChunkReader, EncodedChunk, Endpoint, Endpoints, PluginEndpoints};
pub use error::{EngineError, Result};
pub use progress::{Bars, Lines, Progress, Silent};
pub use projection::{LaneKey, PartKey, Projection};
pub use rebuild::{RebuildOptions, RebuildReport, TableRebuild};
pub use replay::{ReplayOptions, ReplayPart, ReplayReport};
pub use retry::{LaneRetry, RetryOptions, RetryReport};
pub use run::{Engine, PartOutcome, PartReport, RepairedRebuild, RunOptions, RunReport};
pub use verify::{DigestSummary, TableCheck, VerifyOptions, VerifyReport};
