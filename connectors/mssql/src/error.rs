//! Errors of the SQL Server connector: the SDK's [`Error`], built from the driver's errors here.
//!
//! Internal functions return [`Result`]; the trait methods in `lib.rs`, `source.rs` and
//! `sink.rs` hand errors to the host through [`Error::for_connection`], which prefixes the
//! connection's name and removes the password from the text. Whether an error is worth
//! retrying is decided here, once, from the server's error number (see [`retryable_number`]).

pub use caudal_connector::{Error, Secret};

/// Result of the connector's internal operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The connector's name in the messages it hands to the host.
pub(crate) const CONNECTOR: &str = "mssql";

/// Server error numbers after which the same work may succeed later: deadlock victim, lock
/// timeout, the database or server not available yet, resource shortages.
pub(crate) fn retryable_number(number: u32) -> bool {
    matches!(
        number,
        1205 // chosen as deadlock victim
            | 1222 // lock request time out
            | 701 // insufficient memory
            | 8645 // timeout waiting for memory
            | 4060 // cannot open database requested by the login
            | 40197 | 40501 | 40613 | 49918 | 49919 | 49920 // Azure: service busy / unavailable
            | 10928 | 10929 // Azure: resource limits
            | 233 | 10053 | 10054 | 10060 // transport-level errors
    )
}

/// Converts a tiberius error, saying what was being done.
pub(crate) fn tds(what: impl std::fmt::Display, e: tiberius::error::Error) -> Error {
    use tiberius::error::Error as T;
    match e {
        T::Server(token) => {
            let number = token.code();
            let message = format!("{what}: server error {number}: {}", token.message());
            // A refused login (18456) or a database the login cannot open yet (4060) is a
            // connection failure: the server may accept it later (it is starting, the
            // database is being restored), and the retry policy bounds the attempts.
            if number == 18456 || number == 4060 {
                return Error::Connection(message);
            }
            Error::Database {
                message,
                retryable: retryable_number(number),
            }
        }
        T::Io { message, .. } => Error::Connection(format!("{what}: i/o error: {message}")),
        T::Tls(t) => Error::Connection(format!("{what}: TLS error: {t}")),
        T::Protocol(p) => Error::Connection(format!("{what}: protocol error: {p}")),
        T::Routing { host, port } => Error::Connection(format!(
            "{what}: the server redirects to {host}:{port}; connect there directly"
        )),
        T::Encoding(m) | T::Conversion(m) | T::BulkInput(m) => {
            Error::Encode(format!("{what}: {m}"))
        }
        other => Error::Other(format!("{what}: {other}")),
    }
}

/// The server's error number of a tiberius error, if it is a server error.
pub(crate) fn number(e: &tiberius::error::Error) -> Option<u32> {
    e.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_numbers() {
        assert!(retryable_number(1205));
        assert!(retryable_number(1222));
        assert!(!retryable_number(2627));
        assert!(!retryable_number(208));
    }
}
