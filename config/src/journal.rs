//! The `[journal]` section: where the journal lives and how hard appends wait for the disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// One fdatasync per entry.
    Always,
    /// Group commit: one fdatasync per group of concurrent appends. The default.
    Batch,
    /// An fdatasync at most this often; a crash may lose the last interval's entries.
    Interval(Duration),
    /// No fdatasync: the operating system writes when it likes.
    Never,
}

/// The default `interval` for `durability = "interval"`: 100 ms.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// The default `segment_size`: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// The validated `[journal]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    pub(crate) dir: PathBuf,
    pub(crate) durability: Durability,
    pub(crate) segment_size: u64,
}

impl JournalSettings {
    /// The journal directory, resolved against the pipeline file's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durability policy. Default [`Durability::Batch`].
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The size at which a segment file is closed and a new one started. Default 64 MiB.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }
}
