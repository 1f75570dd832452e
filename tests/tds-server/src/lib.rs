//! A TDS test server: a wire-level double of SQL Server for the connector tests, backed by an embedded DuckDB engine.
