//! caudal: moves rows between databases and keeps a durable, hash-chained journal of
//! everything it does.
//!
//! This crate is the engine and the command line on top of three libraries: `caudal-journal`
//! (the event log, the source of truth), `caudal-config` (pipeline files) and
//! `caudal-connector` (the plugin ABI). Start reading at [`cli`], which maps every command to
//! the module that implements it.

pub mod cli;
pub mod engine;
pub mod host;
