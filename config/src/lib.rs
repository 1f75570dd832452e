//! Typed pipeline files.
