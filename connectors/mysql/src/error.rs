//! Errors of the MySQL connector: the SDK's [`Error`], built from the driver's errors here.
//!
//! Internal functions return [`Result`]; the trait methods in `lib.rs`, `source.rs` and
//! `sink.rs` hand errors to the host through [`Error::for_connection`], which prefixes the
//! connection's name and removes the password from the text. Whether an error is worth
//! retrying is decided here, once, from the server's error number (see [`retryable_number`]).

pub use caudal_connector::{Error, Secret};

/// Result of the connector's internal operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The connector's name in the messages it hands to the host.
pub(crate) const CONNECTOR: &str = "mysql";

/// Server error numbers after which the same work may succeed later: the connection or the
/// query was killed, the server is shutting down or busy, a deadlock or lock wait timeout.
pub(crate) fn retryable_number(number: u16) -> bool {
    matches!(
        number,
        1040 // too many connections
            | 1053 // server shutdown in progress
            | 1205 // lock wait timeout
            | 1213 // deadlock
            | 1317 // query execution was interrupted
            | 1927 // connection was killed (MariaDB)
            | 2006 // server has gone away
            | 2013 // lost connection during query
            | 3024 // maximum statement execution time exceeded (MySQL)
            | 4031 // disconnected by the server for inactivity (MySQL 8)
    )
}

/// Numbers that mean the session itself is gone: reported as connection errors.
fn connection_number(number: u16) -> bool {
    matches!(number, 1053 | 1927 | 2006 | 2013 | 4031)
}

/// The server's error number of a sqlx error, if it is a server error.
pub(crate) fn number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

/// Converts a sqlx error, saying what was being done.
pub(crate) fn sql(what: impl std::fmt::Display, e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            let message = match number {
                Some(n) => format!("{what}: server error {n}: {}", db.message()),
                None => format!("{what}: {}", db.message()),
            };
            match number {
                Some(n) if connection_number(n) => Error::Connection(message),
                Some(n) => Error::Database {
                    message,
                    retryable: retryable_number(n),
                },
                None => Error::Database {
                    message,
                    retryable: false,
                },
            }
        }
        sqlx::Error::Io(io) => Error::Connection(format!("{what}: i/o error: {io}")),
        sqlx::Error::Tls(t) => Error::Connection(format!("{what}: TLS error: {t}")),
        sqlx::Error::PoolTimedOut => Error::Connection(format!(
            "{what}: no connection became available in time (server unreachable, or \
             `pool_size` too small for the work)"
        )),
        sqlx::Error::PoolClosed => Error::Connection(format!("{what}: the pool is closed")),
        sqlx::Error::Protocol(p) => Error::Connection(format!("{what}: protocol error: {p}")),
        sqlx::Error::Configuration(c) => Error::Config(format!("{what}: {c}")),
        other => Error::Other(format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_numbers() {
        assert!(retryable_number(1213));
        assert!(retryable_number(1927));
        assert!(!retryable_number(1062));
        assert!(!retryable_number(1406));
    }
}
