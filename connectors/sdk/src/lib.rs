//! The plugin ABI shared by the caudal host and its connector plugins.
