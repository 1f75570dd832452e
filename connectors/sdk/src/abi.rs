//! The C ABI between the host and connector plugins, and `export_connector!`.
