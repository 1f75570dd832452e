//! The mssql connector plugin: source and sink, loaded by the caudal host at run time.
//!
//! Its implementation arrives with its own issue; until then the crate only holds its place in
//! the workspace layout.
