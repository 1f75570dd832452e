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
//! - [`connector`]: the traits a plugin implements — [`Connector`], [`Source`],
//!   [`BatchReader`], [`Sink`].
//! - [`abi`]: the C ABI and [`export_connector!`], which turns a [`Connector`] into a plugin.
//!
//! # Writing a connector
//!
//! ```ignore
//! pub struct DuckDb { conn: duckdb::Connection }
//!
//! impl caudal_connector::Connector for DuckDb {
//!     type Config = config::DuckDbConfig;          // serde, deny_unknown_fields
//!     const NAME: &'static str = "duckdb";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     const CAPABILITIES: Capabilities = Capabilities::SOURCE.union(Capabilities::SINK);
//!     fn open(config: Self::Config, ctx: &OpenContext) -> Result<Self> { ... }
//!     fn source(&mut self) -> Option<&mut dyn Source> { Some(self) }
//!     fn sink(&mut self) -> Option<&mut dyn Sink> { Some(self) }
//! }
//! caudal_connector::export_connector!(DuckDb);
//! ```
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
pub mod sample;
pub mod types;
pub mod value;
pub mod wire;

pub use batch::{Batch, Bitmap, Column, ColumnData, Interval, OffsetTimestamp, Utf8Data, VarData};
pub use builder::{BatchBuilder, ChunkLimits, NativeValue};
pub use connector::{
    BatchReader, Chunk, Connector, DigestRequest, IterReader, OpenContext, PluginInfo,
    PrepareTable, ReadRequest, ReadTarget, Sink, Source, TableInfo, WriteOp, WriteOutcome,
    WriteRequest,
};
pub use digest::{RowDigest, TableDigest};
pub use error::{Error, ErrorCode, Result};
pub use types::{Capabilities, Field, LogicalType, Schema, SchemaId, Storage};
pub use value::{KeyRange, Value};
