//! Where a command finds its journal: `--journal DIR`, else the `[journal] dir` of the
//! pipeline file given with `--file`, else `./journal`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// The journal directory options shared by every command that reads a journal.
#[derive(Debug, Clone, Args)]
pub struct JournalLocation {
    /// Journal directory [default: the pipeline file's `[journal] dir`, else ./journal].
    #[arg(long, env = "CAUDAL_JOURNAL", value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Pipeline file whose `[journal] dir` to use.
    #[arg(long = "file", value_name = "PIPELINE_FILE")]
    pub file: Option<PathBuf>,
}

impl JournalLocation {
    /// The directory to open. Does not check that it exists: the journal reports that.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.journal {
            return Ok(dir.clone());
        }
        if let Some(file) = &self.file {
            let pipeline = caudal_config::Pipeline::from_path(file).with_context(|| {
                format!("cannot read the journal location from {}", file.display())
            })?;
            return Ok(pipeline.journal_dir());
        }
        Ok(PathBuf::from("journal"))
    }
}
