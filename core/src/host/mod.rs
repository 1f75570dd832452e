//! The plugin host: finds, loads and calls connector plugins (shared libraries).
