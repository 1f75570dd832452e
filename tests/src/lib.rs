//! Shared helpers of caudal's end-to-end tests.
