//! Safe wrappers over plugin handles: [`Connection`] (source and sink calls) and [`Reader`].
//!
//! Each method is one ABI call: encode the request (bincode), pass borrowed bytes, take the
//! plugin's out-buffers as [`PluginBytes`] (freed by the plugin on drop), decode the result or
//! the error. A failed call becomes [`HostError::Call`] naming plugin and function; a panic in
//! the plugin arrives the same way (its message says "panicked in FUNCTION"), and every later
//! call on that handle returns the plugin's "poisoned" error. All calls block.

use std::sync::Arc;

use caudal_connector::abi::{
    ByteSlice, CallFn, ConnectionHandle, OpenRequest, PluginBuffer, ReaderHandle, STATUS_END,
    STATUS_ERROR, STATUS_OK, Status, decode_error,
};
use caudal_connector::{
    Batch, Chunk, DigestRequest, Error, OpenContext, PrepareTable, ReadRequest, RewriteStep,
    Schema, TableDigest, TableInfo, Value, WriteOutcome, WriteRequest, wire,
};

use super::error::{HostError, Result};
use super::plugin::Plugin;

/// Bytes allocated by a plugin, freed by that plugin's `free_buffer` when dropped.
pub struct PluginBytes {
    buffer: PluginBuffer,
    plugin: Plugin,
}

impl PluginBytes {
    fn new(plugin: &Plugin, buffer: PluginBuffer) -> PluginBytes {
        PluginBytes {
            buffer,
            plugin: plugin.clone(),
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the buffer was filled by a call of this plugin and is freed only in `drop`.
        unsafe { self.buffer.as_slice() }
    }
}

impl std::ops::Deref for PluginBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for PluginBytes {
    fn drop(&mut self) {
        if !self.buffer.ptr.is_null() {
            let buffer = std::mem::replace(&mut self.buffer, PluginBuffer::empty());
            // SAFETY: a buffer of this plugin, freed once (it was just replaced by an empty one).
            unsafe { (self.plugin.vtable().free_buffer)(buffer) };
        }
    }
}

// SAFETY: the buffer is plain heap memory of the plugin, owned by this value alone.
unsafe impl Send for PluginBytes {}

/// Turns a call's status and error buffer into a result.
fn status(
    plugin: &Plugin,
    function: &'static str,
    status: Status,
    err: PluginBuffer,
) -> Result<Status> {
    let err = PluginBytes::new(plugin, err);
    match status {
        STATUS_OK | STATUS_END => Ok(status),
        STATUS_ERROR => Err(HostError::Call {
            plugin: plugin.name().to_owned(),
            function,
            source: decode_error(&err),
        }),
        other => Err(HostError::Call {
            plugin: plugin.name().to_owned(),
            function,
            source: Error::Abi(format!("unknown status {other}")),
        }),
    }
}

fn exchange<'a>(plugin: &'a Plugin, function: &'static str) -> impl Fn(Error) -> HostError + 'a {
    move |source| HostError::Exchange {
        plugin: plugin.name().to_owned(),
        function,
        source,
    }
}

/// An open connection of a plugin. Closed by [`Connection::close`] (which reports errors) or
/// on drop (which cannot).
pub struct Connection {
    plugin: Plugin,
    handle: *mut ConnectionHandle,
}

// SAFETY: the handle is plugin state of a `Connector: Send`; `&mut self` on every call keeps
// it to one thread at a time, as the ABI requires.
unsafe impl Send for Connection {}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("plugin", &self.plugin.name())
            .finish()
    }
}

impl Connection {
    pub(super) fn open(
        plugin: Plugin,
        context: &OpenContext,
        config_json: &str,
    ) -> Result<Connection> {
        let request = OpenRequest {
            context: context.clone(),
            config_json: config_json.to_owned(),
        };
        let request = wire::encode(&request).map_err(exchange(&plugin, "open"))?;
        let mut handle = std::ptr::null_mut();
        let mut err = PluginBuffer::empty();
        // SAFETY: valid request bytes and out-pointers for the duration of the call.
        let s = unsafe { (plugin.vtable().open)(ByteSlice::new(&request), &mut handle, &mut err) };
        status(&plugin, "open", s, err)?;
        if handle.is_null() {
            return Err(HostError::Call {
                plugin: plugin.name().to_owned(),
                function: "open",
                source: Error::Abi("open succeeded without a handle".into()),
            });
        }
        Ok(Connection { plugin, handle })
    }

    /// The plugin this connection belongs to.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// One request/response call through a [`CallFn`] of the table.
    fn call(&mut self, function: &'static str, f: CallFn, request: &[u8]) -> Result<PluginBytes> {
        let (mut out, mut err) = (PluginBuffer::empty(), PluginBuffer::empty());
        // SAFETY: live handle (only `close` nulls it, consuming self); valid pointers.
        let s = unsafe { f(self.handle, ByteSlice::new(request), &mut out, &mut err) };
        let out = PluginBytes::new(&self.plugin, out);
        status(&self.plugin, function, s, err)?;
        Ok(out)
    }

    fn call_encoded<T: serde::Serialize>(
        &mut self,
        function: &'static str,
        f: CallFn,
        request: &T,
    ) -> Result<PluginBytes> {
        let request = wire::encode(request).map_err(exchange(&self.plugin, function))?;
        self.call(function, f, &request)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        function: &'static str,
        bytes: &[u8],
    ) -> Result<T> {
        wire::decode(bytes).map_err(exchange(&self.plugin, function))
    }

    /// The tables of a source, with columns and primary keys.
    pub fn discover(&mut self) -> Result<Vec<TableInfo>> {
        let out = self.call("discover", self.plugin.vtable().discover, &[])?;
        self.decode("discover", &out)
    }

    /// Starts reading a table or query in chunks.
    pub fn read(&mut self, request: &ReadRequest) -> Result<Reader> {
        let bytes = wire::encode(request).map_err(exchange(&self.plugin, "read"))?;
        let (mut reader, mut schema, mut err) = (
            std::ptr::null_mut(),
            PluginBuffer::empty(),
            PluginBuffer::empty(),
        );
        // SAFETY: live handle; valid pointers for the call.
        let s = unsafe {
            (self.plugin.vtable().read_open)(
                self.handle,
                ByteSlice::new(&bytes),
                &mut reader,
                &mut schema,
                &mut err,
            )
        };
        let schema = PluginBytes::new(&self.plugin, schema);
        status(&self.plugin, "read", s, err)?;
        match self.decode::<Schema>("read", &schema) {
            Ok(schema) => Ok(Reader {
                plugin: self.plugin.clone(),
                handle: reader,
                schema: Arc::new(schema),
            }),
            Err(e) => {
                if !reader.is_null() {
                    // SAFETY: the reader the call just created, freed once.
                    unsafe { (self.plugin.vtable().read_close)(reader) };
                }
                Err(e)
            }
        }
    }

    /// Creates the destination table (see [`PrepareTable`]).
    pub fn prepare_table(&mut self, request: &PrepareTable) -> Result<()> {
        self.call_encoded("prepare_table", self.plugin.vtable().prepare_table, request)
            .map(drop)
    }

    /// Writes a batch given as its encoded bytes (as the journal stores them: no re-encoding)
    /// together with its journal seq, in one transaction in the sink.
    pub fn write_encoded(&mut self, request: &WriteRequest, batch: &[u8]) -> Result<WriteOutcome> {
        let req = wire::encode(request).map_err(exchange(&self.plugin, "write"))?;
        let (mut out, mut err) = (PluginBuffer::empty(), PluginBuffer::empty());
        // SAFETY: live handle; valid pointers for the call.
        let s = unsafe {
            (self.plugin.vtable().write)(
                self.handle,
                ByteSlice::new(&req),
                ByteSlice::new(batch),
                &mut out,
                &mut err,
            )
        };
        let out = PluginBytes::new(&self.plugin, out);
        status(&self.plugin, "write", s, err)?;
        self.decode("write", &out)
    }

    /// Writes a batch (encodes it first; prefer [`Connection::write_encoded`] with journal bytes).
    pub fn write(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
        let bytes = batch.encode().map_err(exchange(&self.plugin, "write"))?;
        self.write_encoded(request, &bytes)
    }

    /// The last journal seq the sink applied for `(pipeline, stream)`.
    pub fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>> {
        let out = self.call_encoded(
            "last_applied_seq",
            self.plugin.vtable().last_applied_seq,
            &(pipeline, stream),
        )?;
        self.decode("last_applied_seq", &out)
    }

    /// The sink's table digest over a key range.
    pub fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest> {
        let out = self.call_encoded("table_digest", self.plugin.vtable().table_digest, request)?;
        self.decode("table_digest", &out)
    }

    /// Atomically replaces `table` by `staging`.
    pub fn replace_table(&mut self, staging: &str, table: &str) -> Result<()> {
        self.call_encoded(
            "replace_table",
            self.plugin.vtable().replace_table,
            &(staging, table),
        )
        .map(drop)
    }

    /// A step of rewriting a table in place (see `Sink::begin_rewrite`).
    pub fn rewrite_table(&mut self, step: &RewriteStep) -> Result<()> {
        self.call_encoded("rewrite_table", self.plugin.vtable().rewrite_table, step)
            .map(drop)
    }

    /// Closes the connection, reporting the plugin's error if closing fails. The handle is
    /// released either way.
    pub fn close(mut self) -> Result<()> {
        self.close_handle()
    }

    fn close_handle(&mut self) -> Result<()> {
        let handle = std::mem::replace(&mut self.handle, std::ptr::null_mut());
        if handle.is_null() {
            return Ok(());
        }
        let mut err = PluginBuffer::empty();
        // SAFETY: the live handle, closed exactly once (it was just replaced by null).
        let s = unsafe { (self.plugin.vtable().close)(handle, &mut err) };
        status(&self.plugin, "close", s, err).map(drop)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `close` is the way to see them.
        let _ = self.close_handle();
    }
}

/// One chunk as the plugin encoded it: the batch bytes (what the journal stores) and the cursor.
pub struct RawChunk {
    /// The encoded batch ([`Batch::decode`] reads it).
    pub batch: PluginBytes,
    /// The cursor reached.
    pub cursor: Option<Value>,
}

/// A running read. Freed on drop.
pub struct Reader {
    plugin: Plugin,
    handle: *mut ReaderHandle,
    schema: Arc<Schema>,
}

// SAFETY: the handle is a plugin `BatchReader: Send`; `&mut self` keeps calls to one thread.
unsafe impl Send for Reader {}

impl Reader {
    /// The schema of every chunk.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The next chunk as encoded bytes, or `None` at the end.
    pub fn next_raw(&mut self) -> Result<Option<RawChunk>> {
        let (mut batch, mut cursor, mut err) = (
            PluginBuffer::empty(),
            PluginBuffer::empty(),
            PluginBuffer::empty(),
        );
        // SAFETY: live reader handle (freed only in drop); valid pointers for the call.
        let s = unsafe {
            (self.plugin.vtable().read_next)(self.handle, &mut batch, &mut cursor, &mut err)
        };
        let batch = PluginBytes::new(&self.plugin, batch);
        let cursor = PluginBytes::new(&self.plugin, cursor);
        if status(&self.plugin, "read_next", s, err)? == STATUS_END {
            return Ok(None);
        }
        let cursor = wire::decode(&cursor).map_err(exchange(&self.plugin, "read_next"))?;
        Ok(Some(RawChunk { batch, cursor }))
    }

    /// The next chunk, decoded and checked against the reader's schema, or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let Some(raw) = self.next_raw()? else {
            return Ok(None);
        };
        let batch = Batch::decode(&raw.batch).map_err(exchange(&self.plugin, "read_next"))?;
        if **batch.schema() != *self.schema {
            return Err(exchange(&self.plugin, "read_next")(Error::Schema(
                "a chunk's schema differs from the schema the read started with".into(),
            )));
        }
        Ok(Some(Chunk {
            batch,
            cursor: raw.cursor,
        }))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let handle = std::mem::replace(&mut self.handle, std::ptr::null_mut());
        if !handle.is_null() {
            // SAFETY: the live reader handle, freed exactly once.
            unsafe { (self.plugin.vtable().read_close)(handle) };
        }
    }
}
