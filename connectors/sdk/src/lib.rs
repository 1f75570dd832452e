//! `caudal-connector`: the SDK every caudal connector plugin is written against, and the ABI
//! the host loads plugins through.
//!
//! # Where to start reading
//!
//! - [`types`]: [`LogicalType`], [`Field`], [`Schema`] — what a column means.
//! - [`batch`]: the columnar [`Batch`] (typed vector + validity bitmap per column, plus the
//!   schema and its [`SchemaId`]); [`Batch::encode`] / [`Batch::decode`] give the bytes the
//!   journal stores.
//! - [`builder`]: [`BatchBuilder`] for sources, [`ChunkLimits`] (8 MiB or 20k rows).
//! - [`digest`]: [`RowDigest`] and the homomorphic [`TableDigest`] of DESIGN.md.
//! - [`rows`]: [`DigestRows`], rows the digest reads where a connector holds them.
//! - [`connector`]: the traits a plugin implements — [`Connector`], [`Source`],
//!   [`BatchReader`], [`Sink`].
//! - [`abi`]: the C ABI and [`export_connector!`], which turns a [`Connector`] into a plugin.
//!
//! # Writing a connector
//!
//! One type implements [`Connector`] (plus [`Source`] and/or [`Sink`]); one macro exports it.
//! A complete, if tiny, source:
//!
//! ```
//! use std::sync::Arc;
//! use caudal_connector::*;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct CountConfig {
//!     /// How many rows to produce (default 10).
//!     #[serde(default)]
//!     rows: Option<i64>,
//! }
//!
//! pub struct Count { rows: i64, schema: Arc<Schema> }
//!
//! impl Connector for Count {
//!     type Config = CountConfig;
//!     const NAME: &'static str = "count";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     const CAPABILITIES: Capabilities = Capabilities::SOURCE;
//!     fn open(config: CountConfig, _ctx: &OpenContext) -> Result<Count> {
//!         let schema = Schema::new(vec![Field::new("n", LogicalType::Int64, false)], &["n"])?;
//!         Ok(Count { rows: config.rows.unwrap_or(10), schema: Arc::new(schema) })
//!     }
//!     fn source(&mut self) -> Option<&mut dyn Source> { Some(self) }
//! }
//!
//! impl Source for Count {
//!     fn discover(&mut self) -> Result<Vec<TableInfo>> {
//!         let schema = (*self.schema).clone();
//!         Ok(vec![TableInfo { name: "numbers".into(), schema, estimated_rows: None }])
//!     }
//!     fn read(&mut self, request: &ReadRequest) -> Result<Box<dyn BatchReader>> {
//!         let (schema, rows, max) = (Arc::clone(&self.schema), self.rows, request.limits.max_rows);
//!         let chunks = (0..rows).step_by(max).map(move |start| {
//!             let mut b = BatchBuilder::with_capacity(Arc::clone(&schema), max);
//!             b.extend(0, start..(start + max as i64).min(rows))?;
//!             b.finish()
//!         });
//!         // Cursor = column 0 of each chunk's last row.
//!         Ok(Box::new(IterReader::new(Arc::clone(&self.schema), Some(0), chunks)))
//!     }
//! }
//!
//! caudal_connector::export_connector!(Count);
//! # fn main() {}
//! ```
//!
//! A sink implements [`Sink::write`] as one transaction that applies the batch and stores the
//! request's seq as the offset of `(pipeline, stream)`, and computes [`Sink::table_digest`] by
//! reading rows back into batches of the request's schema and calling
//! [`TableDigest::add_batch`] or [`Digester::push`] (never a digest of its own). A sink whose
//! database hands out columnar buffers may give them to [`Digester::push_rows`] as
//! [`DigestRows`] instead: the same digest without the copy into a batch.
//!
//! # Storage of each logical type in a batch
//!
//! | logical type | storage | unit |
//! |---|---|---|
//! | `Bool` | `Vec<bool>` | |
//! | `Int8..Int128`, `UInt8..UInt64` | `Vec<i8>` .. `Vec<u64>` of that width | |
//! | `Year` | `Vec<i16>` | the year |
//! | `Bit{width}` | `Vec<u64>` | bits, LSB = last bit |
//! | `Float32`, `Float64` | `Vec<f32>`, `Vec<f64>` | |
//! | `Decimal{p,s}`, `Money`, `SmallMoney` | `Vec<i128>` | unscaled, at the column's scale (money: 4) |
//! | `Date` | `Vec<i32>` | days since 1970-01-01 |
//! | `Time{p}` | `Vec<i64>` | microseconds (MySQL `TIME` may be negative or > 24 h) |
//! | `DateTime{p}` | `Vec<i64>` | microseconds since 1970-01-01T00:00, no zone |
//! | `Timestamp{p}` | `Vec<i64>` | microseconds since the epoch, UTC |
//! | `DateTimeOffset{p}` | `Vec<OffsetTimestamp>` | UTC microseconds + offset minutes |
//! | `Char`, `Varchar`, `Text`, `NChar`, `NVarchar`, `Json`, `Enum`, `Set` | [`Utf8Data`] | UTF-8; a set is comma-separated |
//! | `Binary`, `Varbinary`, `Blob` | [`VarData`] | bytes |
//! | `Uuid` | `Vec<[u8; 16]>` | RFC 4122 byte order |
//! | `Interval` | `Vec<Interval>` | months, days, microseconds |
//!
//! Sub-microsecond precision (SQL Server `datetime2(7)`, DuckDB `TIMESTAMP_NS`) is truncated
//! to microseconds: the precision the digest is defined over.

pub mod abi;
pub mod batch;
pub mod builder;
pub mod connector;
pub mod digest;
pub mod error;
pub mod expand;
pub mod rows;
pub mod sample;
mod sha256x16;
pub mod types;
pub mod value;
pub mod wire;

pub use batch::{Batch, Bitmap, Column, ColumnData, Interval, OffsetTimestamp, Utf8Data, VarData};
pub use builder::{BatchBuilder, ChunkLimits, NativeValue};
pub use connector::{
    BatchReader, Chunk, Connector, DigestRequest, IterReader, OpenContext, PluginInfo,
    PrepareTable, ReadRequest, ReadTarget, RewriteStep, Sink, Source, TableInfo, WriteOp,
    WriteOutcome, WriteRequest,
};
pub use digest::{Digester, RowDigest, TableDigest};
pub use error::{Error, ErrorCode, Result, Secret};
pub use rows::{ColumnRef, DigestRows, Values};
pub use types::{Capabilities, Field, LogicalType, Schema, SchemaId, Storage};
pub use value::{KeyRange, Value};
