//! The C ABI between the caudal host and connector plugins, and [`export_connector!`].
//!
//! # Entry point
//!
//! A plugin is a shared library (`libcaudal_NAME.so`) exporting exactly one symbol,
//! [`ENTRY_SYMBOL`] = `caudal_connector_v1`, of type `extern "C" fn() -> *const
//! ConnectorVTable`. The ABI *major* version is in the symbol name, so a host never calls
//! into a table whose layout it does not know; a host that does not find its symbol probes
//! `caudal_connector_v0..v64` only to name the plugin's version in its error.
//!
//! # The table
//!
//! [`ConnectorVTable`] is `#[repr(C)]` and starts with `abi_version: u32` and
//! `struct_size: u32` (the plugin's `size_of::<ConnectorVTable>()`). The host reads those two
//! fields first and refuses the plugin unless `abi_version == ABI_VERSION` and
//! `struct_size >= ` the size it knows. Within a major version, new functions are only
//! appended (ADBC's rule): a newer plugin's larger table is usable by an older host, and a
//! host may only call a function that lies within `struct_size`.
//!
//! # Calls
//!
//! Every function returns a [`Status`]: [`STATUS_OK`], [`STATUS_END`] (end of a read) or
//! [`STATUS_ERROR`], in which case `*err` holds a bincode-encoded error triple
//! (code, message, retryable; see [`crate::Error::from_wire`]).
//!
//! - Inputs cross as [`ByteSlice`] (pointer + length), borrowed for the duration of the call,
//!   allocated and freed by the host. Requests are bincode 2 (serde, standard config) of the
//!   SDK's request types; batches are [`crate::Batch::encode`] bytes, so the host passes the
//!   journal's bytes through without re-encoding.
//! - Outputs cross as [`PluginBuffer`] (pointer, length, capacity of a plugin `Vec<u8>`),
//!   allocated by the plugin and handed back to the plugin's `free_buffer` by the host.
//!   Every out-buffer a call fills — results and errors — must be freed exactly once.
//! - Handles ([`ConnectionHandle`], [`ReaderHandle`]) are opaque pointers to plugin-owned
//!   state, created by `open` / `read_open`, released by `close` / `read_close` (which also
//!   free the handle when they report an error). A handle is used by one thread at a time.
//!
//! # Panics and poisoning
//!
//! Every exported function runs inside `catch_unwind`: a panic never crosses the boundary
//! (which would abort the host). A panic while a handle's code runs *poisons* the handle: the
//! call returns an error "panicked in FUNCTION: MESSAGE" and every later call on that handle
//! returns a "poisoned" error without running connector code; `close` still frees it.
//! Plugins must be built with `panic = "unwind"` (every caudal profile is).
//!
//! # Runtime and threads
//!
//! No tokio (or other runtime) type crosses: a plugin that needs async I/O creates its own
//! runtime in `open`. Calls may block; the host makes them from blocking threads.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::batch::Batch;
use crate::connector::{
    BatchReader, Connector, DigestRequest, OpenContext, PrepareTable, ReadRequest, RewriteStep,
    WriteRequest,
};
use crate::error::{Error, Result, WireError};
use crate::wire;

/// ABI major version of this SDK; part of the entry symbol's name.
pub const ABI_VERSION: u32 = 1;
/// Name of the entry symbol of ABI version 1.
pub const ENTRY_SYMBOL: &str = "caudal_connector_v1";

/// Result code of every ABI function.
pub type Status = i32;
/// Success.
pub const STATUS_OK: Status = 0;
/// `read_next` only: the read is complete, no batch was returned.
pub const STATUS_END: Status = 1;
/// Failure; the error buffer holds the encoded error.
pub const STATUS_ERROR: Status = -1;

/// Bytes borrowed from the caller for the duration of one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ByteSlice {
    /// Start of the bytes (may be dangling when `len` is 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl ByteSlice {
    /// Borrows a slice for a call.
    pub fn new(bytes: &[u8]) -> ByteSlice {
        ByteSlice {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive the returned slice.
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: guaranteed by the caller (the ABI contract of every function).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A static UTF-8 string inside the plugin (name, version).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StrRef {
    /// Start of the UTF-8 bytes.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl StrRef {
    /// A reference to a static string.
    pub const fn new(s: &'static str) -> StrRef {
        StrRef {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The string, or `None` if it is not UTF-8.
    ///
    /// # Safety
    /// `ptr` must point to `len` bytes that live as long as the plugin is loaded (forever).
    pub unsafe fn to_str(&self) -> Option<&'static str> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: guaranteed by the caller; plugins are never unloaded.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes).ok()
    }
}

/// A byte buffer allocated by the plugin (the parts of a `Vec<u8>`), to be released with the
/// plugin's `free_buffer`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginBuffer {
    /// Start of the bytes; null for an empty buffer that owns nothing.
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Capacity of the allocation.
    pub cap: usize,
}

impl PluginBuffer {
    /// A buffer that owns nothing (what the host passes in as an out-parameter).
    pub const fn empty() -> PluginBuffer {
        PluginBuffer {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    /// Gives up a vector to the other side.
    pub fn from_vec(v: Vec<u8>) -> PluginBuffer {
        let mut v = std::mem::ManuallyDrop::new(v);
        PluginBuffer {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// The buffer must come from [`PluginBuffer::from_vec`] and not be freed yet.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: a live Vec's pointer and length (caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Opaque connection state inside a plugin.
#[repr(C)]
pub struct ConnectionHandle {
    _private: [u8; 0],
}

/// Opaque read state inside a plugin.
#[repr(C)]
pub struct ReaderHandle {
    _private: [u8; 0],
}

/// Releases a buffer the plugin allocated.
pub type FreeBufferFn = unsafe extern "C" fn(buffer: PluginBuffer);
/// `open(request: bincode OpenRequest, *out handle, *err) -> Status`.
pub type OpenFn = unsafe extern "C" fn(
    request: ByteSlice,
    out: *mut *mut ConnectionHandle,
    err: *mut PluginBuffer,
) -> Status;
/// `close(handle, *err)`: closes and frees the handle (also on error).
pub type CloseFn =
    unsafe extern "C" fn(handle: *mut ConnectionHandle, err: *mut PluginBuffer) -> Status;
/// A call with a request and a result buffer (`discover` ignores its request).
pub type CallFn = unsafe extern "C" fn(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status;
/// `read_open(handle, bincode ReadRequest, *out reader, *out schema, *err)`.
pub type ReadOpenFn = unsafe extern "C" fn(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    out_reader: *mut *mut ReaderHandle,
    out_schema: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status;
/// `read_next(reader, *out batch bytes, *out bincode Option<Value> cursor, *err)`:
/// `STATUS_OK` with a batch, `STATUS_END` without one.
pub type ReadNextFn = unsafe extern "C" fn(
    reader: *mut ReaderHandle,
    out_batch: *mut PluginBuffer,
    out_cursor: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status;
/// `read_close(reader)`: frees the reader.
pub type ReadCloseFn = unsafe extern "C" fn(reader: *mut ReaderHandle);
/// `write(handle, bincode WriteRequest, batch bytes, *out bincode WriteOutcome, *err)`.
pub type WriteFn = unsafe extern "C" fn(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    batch: ByteSlice,
    out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status;

/// The function table a plugin's entry symbol returns. Layout: see the module documentation.
/// Fields after `struct_size` may only ever be appended to.
#[repr(C)]
pub struct ConnectorVTable {
    /// [`ABI_VERSION`] of the SDK the plugin was built with.
    pub abi_version: u32,
    /// `size_of::<ConnectorVTable>()` in the plugin.
    pub struct_size: u32,
    /// Plugin name (`Connector::NAME`).
    pub name: StrRef,
    /// Plugin version (`Connector::VERSION`).
    pub version: StrRef,
    /// Capability bits (`Connector::CAPABILITIES`).
    pub capabilities: u32,
    /// Frees a [`PluginBuffer`].
    pub free_buffer: FreeBufferFn,
    /// Opens a connection.
    pub open: OpenFn,
    /// Closes a connection and frees its handle.
    pub close: CloseFn,
    /// Lists tables: request ignored, out = bincode `Vec<TableInfo>`.
    pub discover: CallFn,
    /// Starts a read.
    pub read_open: ReadOpenFn,
    /// Reads the next chunk.
    pub read_next: ReadNextFn,
    /// Ends a read and frees the reader.
    pub read_close: ReadCloseFn,
    /// Creates a table: request = bincode `PrepareTable`, out unused.
    pub prepare_table: CallFn,
    /// Writes a batch.
    pub write: WriteFn,
    /// Request = bincode `(pipeline, stream)`, out = bincode `Option<u64>`.
    pub last_applied_seq: CallFn,
    /// Request = bincode `DigestRequest`, out = bincode `TableDigest`.
    pub table_digest: CallFn,
    /// Request = bincode `(staging, table)`, out unused.
    pub replace_table: CallFn,
    /// Request = bincode `RewriteStep`, out unused.
    pub rewrite_table: CallFn,
}

// SAFETY: the table is immutable after construction and its pointers are to static data and
// functions of the plugin, which is never unloaded.
unsafe impl Sync for ConnectorVTable {}
// SAFETY: as above.
unsafe impl Send for ConnectorVTable {}

/// What `open` receives.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OpenRequest {
    /// Connection name and base directory.
    pub context: OpenContext,
    /// The connection's keys as a JSON object, deserialized into `Connector::Config`.
    pub config_json: String,
}

impl ConnectorVTable {
    /// The table for connector type `C`; what [`export_connector!`] exports.
    pub const fn new<C: Connector>() -> ConnectorVTable {
        ConnectorVTable {
            abi_version: ABI_VERSION,
            struct_size: std::mem::size_of::<ConnectorVTable>() as u32,
            name: StrRef::new(C::NAME),
            version: StrRef::new(C::VERSION),
            capabilities: C::CAPABILITIES.0,
            free_buffer,
            open: open::<C>,
            close: close::<C>,
            discover: discover::<C>,
            read_open: read_open::<C>,
            read_next,
            read_close,
            prepare_table: prepare_table::<C>,
            write: write::<C>,
            last_applied_seq: last_applied_seq::<C>,
            table_digest: table_digest::<C>,
            replace_table: replace_table::<C>,
            rewrite_table: rewrite_table::<C>,
        }
    }
}

/// Exports a [`Connector`] implementation as a caudal plugin: emits the one entry symbol
/// `caudal_connector_v1` returning a static [`ConnectorVTable`]. Use once per plugin crate
/// (crate type `cdylib`, crate name `caudal-NAME`).
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        /// The plugin's entry point: the caudal connector ABI version 1 function table.
        #[unsafe(no_mangle)]
        pub extern "C" fn caudal_connector_v1() -> *const $crate::abi::ConnectorVTable {
            static VTABLE: $crate::abi::ConnectorVTable =
                $crate::abi::ConnectorVTable::new::<$connector>();
            &VTABLE
        }
    };
}

/// Decodes the error buffer of a failed call (what a host does with `*err`). Bytes that do
/// not decode become an [`Error::Abi`] saying so.
pub fn decode_error(bytes: &[u8]) -> Error {
    match wire::decode::<WireError>(bytes) {
        Ok(w) => Error::from(w),
        Err(e) => Error::Abi(format!(
            "the plugin returned an error that cannot be decoded ({e})"
        )),
    }
}

struct ConnState<C> {
    conn: C,
    /// Why the handle is poisoned: the function and panic message of the first panic.
    poisoned: Option<String>,
}

struct ReaderState {
    reader: Box<dyn BatchReader>,
    poisoned: Option<String>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Stores `e` in the caller's error buffer and returns [`STATUS_ERROR`].
///
/// # Safety
/// `err` must be null or point to a writable `PluginBuffer`.
unsafe fn fail(err: *mut PluginBuffer, e: &Error) -> Status {
    if !err.is_null() {
        // Encoding a struct of a u32, a String and a bool into a Vec cannot fail; if it ever
        // did, an empty buffer still makes the host report an undecodable error.
        let bytes = wire::encode(&WireError::from(e)).unwrap_or_default();
        // SAFETY: the caller passes a valid out-pointer (ABI contract).
        unsafe { err.write(PluginBuffer::from_vec(bytes)) };
    }
    STATUS_ERROR
}

/// Writes an encoded value to an out-buffer.
///
/// # Safety
/// `out` must be null or point to a writable `PluginBuffer`.
unsafe fn put<T: serde::Serialize>(out: *mut PluginBuffer, value: &T) -> Result<()> {
    let bytes = wire::encode(value)?;
    if !out.is_null() {
        // SAFETY: the caller passes a valid out-pointer (ABI contract).
        unsafe { out.write(PluginBuffer::from_vec(bytes)) };
    }
    Ok(())
}

/// Runs `f` on a connection handle with panic catching and poisoning.
///
/// # Safety
/// `handle` must be null or a live handle made by `open::<C>`; `err` as in [`fail`].
unsafe fn with_conn<C: Connector>(
    handle: *mut ConnectionHandle,
    function: &str,
    err: *mut PluginBuffer,
    f: impl FnOnce(&mut C) -> Result<Status>,
) -> Status {
    if handle.is_null() {
        // SAFETY: forwarded caller contract.
        return unsafe {
            fail(
                err,
                &Error::Abi(format!("{function}: null connection handle")),
            )
        };
    }
    // SAFETY: non-null handles are `Box<ConnState<C>>` pointers from `open::<C>`, used by one
    // thread at a time (ABI contract).
    let state = unsafe { &mut *handle.cast::<ConnState<C>>() };
    if let Some(why) = &state.poisoned {
        let e = Error::Poisoned(format!(
            "{function}: the connection is poisoned since {why}; close it and open a new one"
        ));
        // SAFETY: forwarded caller contract.
        return unsafe { fail(err, &e) };
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut state.conn)));
    let result = match outcome {
        Ok(r) => r,
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            state.poisoned = Some(format!("a panic in {function}: {msg}"));
            Err(Error::Panicked(format!("panicked in {function}: {msg}")))
        }
    };
    match result {
        Ok(status) => status,
        // SAFETY: forwarded caller contract.
        Err(e) => unsafe { fail(err, &e) },
    }
}

/// Runs a handle-less body inside `catch_unwind`.
///
/// # Safety
/// `err` as in [`fail`].
unsafe fn guarded(
    function: &str,
    err: *mut PluginBuffer,
    f: impl FnOnce() -> Result<Status>,
) -> Status {
    let result = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(Error::Panicked(format!(
            "panicked in {function}: {}",
            panic_message(payload.as_ref())
        ))),
    };
    match result {
        Ok(status) => status,
        // SAFETY: forwarded caller contract.
        Err(e) => unsafe { fail(err, &e) },
    }
}

fn not_a<C: Connector>(what: &str) -> Error {
    Error::Unsupported(format!("connector `{}` is not a {what}", C::NAME))
}

unsafe extern "C" fn free_buffer(buffer: PluginBuffer) {
    if buffer.ptr.is_null() {
        return;
    }
    // Freeing cannot unwind; the guard only keeps that promise explicit at the boundary.
    let _ = catch_unwind(|| {
        // SAFETY: non-null buffers come from `PluginBuffer::from_vec` in this plugin and are
        // freed once (ABI contract).
        drop(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.cap) });
    });
}

unsafe extern "C" fn open<C: Connector>(
    request: ByteSlice,
    out: *mut *mut ConnectionHandle,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract on `request`, `out` and `err`.
    unsafe {
        guarded("open", err, || {
            let req: OpenRequest = wire::decode(request.as_slice())?;
            let config: C::Config = serde_json::from_str(&req.config_json).map_err(|e| {
                Error::Config(format!(
                    "connection `{}` (connector `{}`): {e}",
                    req.context.connection,
                    C::NAME
                ))
            })?;
            let conn = C::open(config, &req.context)?;
            let state = Box::new(ConnState {
                conn,
                poisoned: None,
            });
            if out.is_null() {
                return Err(Error::Abi("open: null out-handle".into()));
            }
            out.write(Box::into_raw(state).cast());
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn close<C: Connector>(
    handle: *mut ConnectionHandle,
    err: *mut PluginBuffer,
) -> Status {
    if handle.is_null() {
        return STATUS_OK;
    }
    // SAFETY: `handle` came from `Box::into_raw` in `open::<C>` and is closed once (contract).
    let mut state = unsafe { Box::from_raw(handle.cast::<ConnState<C>>()) };
    let result = if state.poisoned.is_some() {
        // The connector's state may be half-updated; do not run its close logic.
        Ok(STATUS_OK)
    } else {
        catch_unwind(AssertUnwindSafe(|| state.conn.close().map(|()| STATUS_OK))).unwrap_or_else(
            |p| {
                Err(Error::Panicked(format!(
                    "panicked in close: {}",
                    panic_message(p.as_ref())
                )))
            },
        )
    };
    // Dropping runs connector code too (database handles, runtimes).
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(state)));
    let result = match (result, dropped) {
        (Ok(_), Err(p)) => Err(Error::Panicked(format!(
            "panicked in close (drop): {}",
            panic_message(p.as_ref())
        ))),
        (r, _) => r,
    };
    match result {
        Ok(s) => s,
        // SAFETY: ABI contract on `err`.
        Err(e) => unsafe { fail(err, &e) },
    }
}

unsafe extern "C" fn discover<C: Connector>(
    handle: *mut ConnectionHandle,
    _request: ByteSlice,
    out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "discover", err, |c| {
            let tables = c.source().ok_or_else(|| not_a::<C>("source"))?.discover()?;
            put(out, &tables)?;
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn read_open<C: Connector>(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    out_reader: *mut *mut ReaderHandle,
    out_schema: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "read", err, |c| {
            let req: ReadRequest = wire::decode(request.as_slice())?;
            let reader = c.source().ok_or_else(|| not_a::<C>("source"))?.read(&req)?;
            if out_reader.is_null() {
                return Err(Error::Abi("read_open: null out-reader".into()));
            }
            put(out_schema, reader.schema().as_ref())?;
            let state = Box::new(ReaderState {
                reader,
                poisoned: None,
            });
            out_reader.write(Box::into_raw(state).cast());
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn read_next(
    reader: *mut ReaderHandle,
    out_batch: *mut PluginBuffer,
    out_cursor: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    if reader.is_null() {
        // SAFETY: ABI contract on `err`.
        return unsafe { fail(err, &Error::Abi("read_next: null reader handle".into())) };
    }
    // SAFETY: non-null readers are `Box<ReaderState>` pointers from `read_open` (contract).
    let state = unsafe { &mut *reader.cast::<ReaderState>() };
    if let Some(why) = &state.poisoned {
        let e = Error::Poisoned(format!(
            "read_next: the reader is poisoned since {why}; close it"
        ));
        // SAFETY: ABI contract on `err`.
        return unsafe { fail(err, &e) };
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Status> {
        match state.reader.next_chunk()? {
            None => Ok(STATUS_END),
            Some(chunk) => {
                let bytes = chunk.batch.encode()?;
                // SAFETY: ABI contract on the out-pointers.
                unsafe {
                    put(out_cursor, &chunk.cursor)?;
                    if !out_batch.is_null() {
                        out_batch.write(PluginBuffer::from_vec(bytes));
                    }
                }
                Ok(STATUS_OK)
            }
        }
    }));
    let result = outcome.unwrap_or_else(|p| {
        let msg = panic_message(p.as_ref());
        state.poisoned = Some(format!("a panic in read_next: {msg}"));
        Err(Error::Panicked(format!("panicked in read_next: {msg}")))
    });
    match result {
        Ok(s) => s,
        // SAFETY: ABI contract on `err`.
        Err(e) => unsafe { fail(err, &e) },
    }
}

unsafe extern "C" fn read_close(reader: *mut ReaderHandle) {
    if reader.is_null() {
        return;
    }
    // SAFETY: from `Box::into_raw` in `read_open`, closed once (contract).
    let state = unsafe { Box::from_raw(reader.cast::<ReaderState>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(state)));
}

unsafe extern "C" fn prepare_table<C: Connector>(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    _out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "prepare_table", err, |c| {
            let req: PrepareTable = wire::decode(request.as_slice())?;
            c.sink()
                .ok_or_else(|| not_a::<C>("sink"))?
                .prepare_table(&req)?;
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn write<C: Connector>(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    batch: ByteSlice,
    out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "write", err, |c| {
            let req: WriteRequest = wire::decode(request.as_slice())?;
            let batch = Batch::decode(batch.as_slice())?;
            let outcome = c
                .sink()
                .ok_or_else(|| not_a::<C>("sink"))?
                .write(&req, &batch)?;
            put(out, &outcome)?;
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn last_applied_seq<C: Connector>(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "last_applied_seq", err, |c| {
            let (pipeline, stream): (String, String) = wire::decode(request.as_slice())?;
            let seq = c
                .sink()
                .ok_or_else(|| not_a::<C>("sink"))?
                .last_applied_seq(&pipeline, &stream)?;
            put(out, &seq)?;
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn table_digest<C: Connector>(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "table_digest", err, |c| {
            let req: DigestRequest = wire::decode(request.as_slice())?;
            let digest = c
                .sink()
                .ok_or_else(|| not_a::<C>("sink"))?
                .table_digest(&req)?;
            put(out, &digest)?;
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn replace_table<C: Connector>(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    _out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "replace_table", err, |c| {
            let (staging, table): (String, String) = wire::decode(request.as_slice())?;
            c.sink()
                .ok_or_else(|| not_a::<C>("sink"))?
                .replace_table(&staging, &table)?;
            Ok(STATUS_OK)
        })
    }
}

unsafe extern "C" fn rewrite_table<C: Connector>(
    handle: *mut ConnectionHandle,
    request: ByteSlice,
    _out: *mut PluginBuffer,
    err: *mut PluginBuffer,
) -> Status {
    // SAFETY: ABI contract.
    unsafe {
        with_conn::<C>(handle, "rewrite_table", err, |c| {
            let step: RewriteStep = wire::decode(request.as_slice())?;
            let sink = c.sink().ok_or_else(|| not_a::<C>("sink"))?;
            match &step {
                RewriteStep::Begin(request) => sink.begin_rewrite(request)?,
                RewriteStep::End(table) => sink.end_rewrite(table)?,
            }
            Ok(STATUS_OK)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::connector::{IterReader, Sink, Source, TableInfo, WriteOp, WriteOutcome};
    use crate::digest::TableDigest;
    use crate::sample::{all_types_batch, all_types_schema};
    use crate::types::Capabilities;
    use crate::value::Value;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ToyConfig {
        panic_on_write: bool,
    }

    struct Toy {
        panic_on_write: bool,
        last_seq: Option<u64>,
    }

    impl Connector for Toy {
        type Config = ToyConfig;
        const NAME: &'static str = "toy";
        const VERSION: &'static str = "0.0.1";
        const CAPABILITIES: Capabilities = Capabilities::SOURCE.union(Capabilities::SINK);
        fn open(config: ToyConfig, _: &OpenContext) -> Result<Toy> {
            Ok(Toy {
                panic_on_write: config.panic_on_write,
                last_seq: None,
            })
        }
        fn source(&mut self) -> Option<&mut dyn Source> {
            Some(self)
        }
        fn sink(&mut self) -> Option<&mut dyn Sink> {
            Some(self)
        }
    }

    impl Source for Toy {
        fn discover(&mut self) -> Result<Vec<TableInfo>> {
            Ok(vec![TableInfo {
                name: "t".into(),
                schema: all_types_schema(),
                estimated_rows: Some(7),
            }])
        }
        fn read(&mut self, _: &ReadRequest) -> Result<Box<dyn BatchReader>> {
            let schema = Arc::new(all_types_schema());
            let batches = vec![all_types_batch(&schema, 0, 7)];
            Ok(Box::new(IterReader::new(
                schema,
                Some(0),
                batches.into_iter(),
            )))
        }
    }

    impl Sink for Toy {
        fn prepare_table(&mut self, _: &PrepareTable) -> Result<()> {
            Ok(())
        }
        fn write(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
            if self.panic_on_write {
                panic!("boom at seq {}", request.seq);
            }
            self.last_seq = Some(request.seq);
            Ok(WriteOutcome::Applied {
                rows: batch.num_rows() as u64,
            })
        }
        fn last_applied_seq(&mut self, _: &str, _: &str) -> Result<Option<u64>> {
            Ok(self.last_seq)
        }
        fn table_digest(&mut self, _: &DigestRequest) -> Result<TableDigest> {
            Ok(TableDigest::new())
        }
        fn replace_table(&mut self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
    }

    static TOY: ConnectorVTable = ConnectorVTable::new::<Toy>();

    /// Takes an out-buffer's bytes and frees it through the table, as a host does.
    fn take(buf: PluginBuffer) -> Vec<u8> {
        // SAFETY: the buffer was filled by a call of `TOY`.
        let bytes = unsafe { buf.as_slice() }.to_vec();
        unsafe { (TOY.free_buffer)(buf) };
        bytes
    }

    fn error(buf: PluginBuffer) -> Error {
        Error::from(wire::decode::<WireError>(&take(buf)).unwrap())
    }

    fn open_toy(config: &str) -> std::result::Result<*mut ConnectionHandle, Error> {
        let req = wire::encode(&OpenRequest {
            context: OpenContext::default(),
            config_json: config.into(),
        })
        .unwrap();
        let mut handle = std::ptr::null_mut();
        let mut err = PluginBuffer::empty();
        let status = unsafe { (TOY.open)(ByteSlice::new(&req), &mut handle, &mut err) };
        if status == STATUS_OK {
            Ok(handle)
        } else {
            Err(error(err))
        }
    }

    fn write_one(
        handle: *mut ConnectionHandle,
        seq: u64,
    ) -> std::result::Result<WriteOutcome, Error> {
        let req = WriteRequest {
            pipeline: "p".into(),
            stream: "s".into(),
            table: "t".into(),
            seq,
            op: WriteOp::Insert,
        };
        let req = wire::encode(&req).unwrap();
        let batch = all_types_batch(&Arc::new(all_types_schema()), 0, 3)
            .unwrap()
            .encode()
            .unwrap();
        let (mut out, mut err) = (PluginBuffer::empty(), PluginBuffer::empty());
        let status = unsafe {
            (TOY.write)(
                handle,
                ByteSlice::new(&req),
                ByteSlice::new(&batch),
                &mut out,
                &mut err,
            )
        };
        if status == STATUS_OK {
            Ok(wire::decode(&take(out)).unwrap())
        } else {
            Err(error(err))
        }
    }

    fn last_seq(handle: *mut ConnectionHandle) -> std::result::Result<Option<u64>, Error> {
        let req = wire::encode(&("p", "s")).unwrap();
        let (mut out, mut err) = (PluginBuffer::empty(), PluginBuffer::empty());
        let status =
            unsafe { (TOY.last_applied_seq)(handle, ByteSlice::new(&req), &mut out, &mut err) };
        if status == STATUS_OK {
            Ok(wire::decode(&take(out)).unwrap())
        } else {
            Err(error(err))
        }
    }

    fn close(handle: *mut ConnectionHandle) -> Status {
        let mut err = PluginBuffer::empty();
        let status = unsafe { (TOY.close)(handle, &mut err) };
        take(err);
        status
    }

    #[test]
    fn entry_symbol_carries_the_abi_version() {
        assert_eq!(ENTRY_SYMBOL, format!("caudal_connector_v{ABI_VERSION}"));
    }

    #[test]
    fn header_fields_come_first() {
        assert_eq!(std::mem::offset_of!(ConnectorVTable, abi_version), 0);
        assert_eq!(std::mem::offset_of!(ConnectorVTable, struct_size), 4);
        assert_eq!(
            TOY.struct_size as usize,
            std::mem::size_of::<ConnectorVTable>()
        );
        assert_eq!(unsafe { TOY.name.to_str() }, Some("toy"));
    }

    #[test]
    fn bad_config_is_a_config_error_naming_the_key() {
        let err = open_toy(r#"{"panic_on_write": false, "colour": 1}"#).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn write_and_read_back_the_offset() {
        let h = open_toy(r#"{"panic_on_write": false}"#).unwrap();
        assert_eq!(last_seq(h).unwrap(), None);
        assert_eq!(write_one(h, 41).unwrap(), WriteOutcome::Applied { rows: 3 });
        assert_eq!(last_seq(h).unwrap(), Some(41));
        assert_eq!(close(h), STATUS_OK);
    }

    #[test]
    fn a_panic_poisons_the_handle_and_close_still_frees_it() {
        let h = open_toy(r#"{"panic_on_write": true}"#).unwrap();
        let err = write_one(h, 5).unwrap_err();
        assert!(matches!(err, Error::Panicked(_)), "{err:?}");
        assert!(
            err.to_string().contains("panicked in write: boom at seq 5"),
            "{err}"
        );
        let later = last_seq(h).unwrap_err();
        assert!(matches!(later, Error::Poisoned(_)), "{later:?}");
        assert!(later.to_string().contains("boom at seq 5"), "{later}");
        assert_eq!(close(h), STATUS_OK);
    }

    #[test]
    fn reads_cross_as_batch_bytes_and_a_cursor() {
        let h = open_toy(r#"{"panic_on_write": false}"#).unwrap();
        let req = wire::encode(&ReadRequest::table("t")).unwrap();
        let (mut reader, mut schema, mut err) = (
            std::ptr::null_mut(),
            PluginBuffer::empty(),
            PluginBuffer::empty(),
        );
        let status =
            unsafe { (TOY.read_open)(h, ByteSlice::new(&req), &mut reader, &mut schema, &mut err) };
        assert_eq!(status, STATUS_OK);
        let schema: crate::types::Schema = wire::decode(&take(schema)).unwrap();
        assert_eq!(schema, all_types_schema());
        let (mut batch, mut cursor) = (PluginBuffer::empty(), PluginBuffer::empty());
        let status = unsafe { (TOY.read_next)(reader, &mut batch, &mut cursor, &mut err) };
        assert_eq!(status, STATUS_OK);
        let decoded = Batch::decode(&take(batch)).unwrap();
        assert_eq!(
            decoded,
            all_types_batch(&Arc::new(all_types_schema()), 0, 7).unwrap()
        );
        let cursor: Option<Value> = wire::decode(&take(cursor)).unwrap();
        assert_eq!(cursor, Some(Value::Int(6)));
        let (mut batch, mut cursor) = (PluginBuffer::empty(), PluginBuffer::empty());
        let status = unsafe { (TOY.read_next)(reader, &mut batch, &mut cursor, &mut err) };
        assert_eq!(status, STATUS_END);
        assert!(batch.ptr.is_null() && cursor.ptr.is_null());
        unsafe { (TOY.read_close)(reader) };
        assert_eq!(close(h), STATUS_OK);
    }

    #[test]
    fn null_handles_are_errors_not_crashes() {
        let err = last_seq(std::ptr::null_mut()).unwrap_err();
        assert!(matches!(err, Error::Abi(_)), "{err:?}");
        assert_eq!(close(std::ptr::null_mut()), STATUS_OK);
    }
}
