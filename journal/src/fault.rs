//! A fault-injecting [`Io`] for tests: fail the Nth write or sync, tear a write, and simulate a
//! power loss that drops everything not yet made durable.
//!
//! [`FaultyIo`] wraps the real file system and counts calls. A planned [`Fault`] fires on the
//! Nth call of its kind. It also tracks, per file, the length last made durable by
//! `sync_data`, and which files were created since their directory was last synced;
//! [`FaultyIo::power_loss`] then truncates and removes accordingly. That is stricter than a
//! real disk (which may keep more), which is what a test of "nothing acknowledged is lost"
//! wants.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::{Io, IoFile, StdIo};

/// Which calls a fault counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `write_at` on any file.
    Write,
    /// `sync_data` on any file, and `sync_dir`.
    Sync,
}

/// What happens when a fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The write stores nothing and fails with ENOSPC.
    NoSpace,
    /// The write stores the first half of its bytes and fails with ENOSPC.
    TornWrite,
    /// The write stores the first half of its bytes and reports that (a legal short write).
    ShortWrite,
    /// The sync fails with EIO; nothing becomes durable.
    SyncFails,
}

#[derive(Default)]
struct FileState {
    /// Length made durable by the last successful sync.
    durable_len: u64,
    /// Created since its directory was last synced: a power loss removes it.
    new_entry: bool,
}

#[derive(Default)]
struct State {
    writes: u64,
    syncs: u64,
    plan: Option<(Op, u64, Fault)>,
    fired: u64,
    files: HashMap<PathBuf, FileState>,
}

/// The fault-injecting I/O. Clones share state.
#[derive(Clone, Default)]
pub struct FaultyIo {
    state: Arc<Mutex<State>>,
}

impl FaultyIo {
    /// A wrapper of the real file system with no fault planned.
    pub fn new() -> FaultyIo {
        FaultyIo::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plans `fault` for the `n`th call (from 1, counted from now) of kind `op`, replacing any
    /// earlier plan.
    pub fn fail_at(&self, op: Op, n: u64, fault: Fault) {
        let mut s = self.state();
        let done = match op {
            Op::Write => s.writes,
            Op::Sync => s.syncs,
        };
        s.plan = Some((op, done + n.max(1), fault));
    }

    /// How many faults have fired.
    pub fn fired(&self) -> u64 {
        self.state().fired
    }

    /// Calls of kind `op` so far.
    pub fn calls(&self, op: Op) -> u64 {
        let s = self.state();
        match op {
            Op::Write => s.writes,
            Op::Sync => s.syncs,
        }
    }

    /// Simulates a power loss: every file this wrapper opened is cut to the length its last
    /// successful sync made durable, and files created since their directory's last sync are
    /// removed. Close every handle (drop the journal) first.
    pub fn power_loss(&self) -> io::Result<()> {
        let mut s = self.state();
        for (path, f) in s.files.drain() {
            if f.new_entry {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            } else if path.exists() {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(f.durable_len)?;
            }
        }
        Ok(())
    }

    /// Counts a call and returns the fault that fires on it, if any.
    fn tick(&self, op: Op) -> Option<Fault> {
        let mut s = self.state();
        let n = match op {
            Op::Write => {
                s.writes += 1;
                s.writes
            }
            Op::Sync => {
                s.syncs += 1;
                s.syncs
            }
        };
        match s.plan {
            Some((o, at, fault)) if o == op && at == n => {
                s.plan = None;
                s.fired += 1;
                Some(fault)
            }
            _ => None,
        }
    }
}

impl Io for FaultyIo {
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        StdIo.open_read(path)
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        let existed = path.exists();
        let inner = StdIo.open_write(path)?;
        let len = inner.len()?;
        // Files that predate this wrapper count as durable as they are.
        self.state()
            .files
            .entry(path.to_path_buf())
            .or_insert(FileState {
                durable_len: len,
                new_entry: !existed,
            });
        Ok(Box::new(FaultyFile {
            io: self.clone(),
            path: path.to_path_buf(),
            inner,
        }))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdIo.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdIo.list(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.state().files.remove(path);
        StdIo.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.tick(Op::Sync).is_some() {
            return Err(io::Error::other("injected fault: directory sync failed"));
        }
        StdIo.sync_dir(dir)?;
        for (path, f) in self.state().files.iter_mut() {
            if path.parent() == Some(dir) {
                f.new_entry = false;
            }
        }
        Ok(())
    }
}

struct FaultyFile {
    io: FaultyIo,
    path: PathBuf,
    inner: Box<dyn IoFile>,
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl IoFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        match self.io.tick(Op::Write) {
            None | Some(Fault::SyncFails) => self.inner.write_at(buf, offset),
            Some(Fault::NoSpace) => Err(no_space()),
            Some(Fault::TornWrite) => {
                let half = &buf[..buf.len() / 2];
                crate::io::write_all_at(&*self.inner, half, offset)?;
                Err(no_space())
            }
            Some(Fault::ShortWrite) => {
                let half = &buf[..buf.len() / 2];
                crate::io::write_all_at(&*self.inner, half, offset)?;
                Ok(half.len())
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.io.tick(Op::Sync).is_some() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        if let Some(f) = self.io.state().files.get_mut(&self.path) {
            f.durable_len = len;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        if let Some(f) = self.io.state().files.get_mut(&self.path) {
            f.durable_len = f.durable_len.min(len);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}
