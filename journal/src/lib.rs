//! The append-only, hash-chained event journal.
