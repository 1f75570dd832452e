//! The one-writer-per-directory lock: an OS file lock on `LOCK`, holding the writer's pid.
//!
//! The lock is taken before anything else is written, and a writer that does not get it writes
//! nothing at all (the file is opened without truncation and only rewritten once locked). The
//! OS releases the lock when the holder exits, even when it is killed, so no stale lock needs
//! breaking by hand.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Name of the lock file in a journal directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A held writer lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir`, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("opening lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("locking", &path)(e)),
        }
        let write_pid = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            write!(f, "{}", std::process::id())
        };
        write_pid(&mut file).map_err(Error::io("writing lock file", &path))?;
        Ok(DirLock { _file: file })
    }
}
