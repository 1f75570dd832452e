//! The file-I/O seam: every byte the journal reads or writes goes through [`Io`].
//!
//! The trait is deliberately small and positional (`read_at`/`write_at`, no cursor state), so a
//! wrapper can inject faults (see [`crate::fault`]) or simulate a power loss without knowing the
//! journal's format. [`StdIo`] is the real file system. The writer's `LOCK` file is the one
//! exception: OS file locks are not something a fault wrapper could meaningfully fake.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// File-system operations the journal needs.
pub trait Io: Send + Sync + 'static {
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn IoFile>>;
    /// Opens a file for reading and writing, creating it empty if missing (never truncating).
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn IoFile>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (names that are not UTF-8 are left out).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (created or removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file.
// A file's length is a size, not a collection's: `is_empty` would have no caller.
#[allow(clippy::len_without_is_empty)]
pub trait IoFile: Send + Sync {
    /// Reads at `offset`; returns the bytes read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes at `offset`; may write fewer bytes than given.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// The file mapped into memory, read-only, when the implementation can (the standard one
    /// can; test doubles read instead). Only for a file nobody changes while the map lives.
    fn map(&self) -> io::Result<Option<memmap2::Mmap>> {
        Ok(None)
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdIo;

struct StdFile(File);

impl Io for StdIo {
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        Ok(Box::new(StdFile(File::open(path)?)))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in fs::read_dir(dir)? {
            if let Ok(name) = e?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl IoFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn map(&self) -> io::Result<Option<memmap2::Mmap>> {
        if self.len()? == 0 {
            // An empty map is an error on some systems; there is nothing to read anyway.
            return Ok(None);
        }
        // SAFETY: the map is only taken of the newest segment while this process holds the
        // journal's writer lock, so no caudal process writes or truncates the file while the
        // map lives (a truncation would fault the reads).
        unsafe { memmap2::Mmap::map(&self.0) }.map(Some)
    }
}

/// Writes all of `buf` at `offset`, continuing after short writes.
pub(crate) fn write_all_at(f: &dyn IoFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "file accepted no more bytes",
                ));
            }
            Ok(n) => {
                // An implementation claiming more than it was given is broken; say so.
                buf = buf.get(n..).ok_or_else(overclaim)?;
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
pub(crate) fn read_full_at(f: &dyn IoFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) if n <= buf.len() - done => done += n,
            Ok(_) => return Err(overclaim()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn overclaim() -> io::Error {
    io::Error::other("I/O implementation reported more bytes than the buffer holds")
}
