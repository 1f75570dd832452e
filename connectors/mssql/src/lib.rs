//! The `mssql` connector plugin: a source and a sink for SQL Server, on tiberius.
//!
//! Where to start reading:
//! - [`sql`]: every T-SQL statement the connector sends (the TDS test server supports exactly
//!   these shapes);
//! - [`types`]: the type mapping both ways, with its table.

pub mod sql;
pub mod types;

mod error;

pub use error::{Error, Result};
