//! The connector's own error type, and how it becomes the SDK's [`caudal_connector::Error`].
//!
//! Internal functions return [`Result`]; the trait methods in `lib.rs`, `source.rs` and
//! `sink.rs` convert with [`Error::into_sdk`], which prefixes the connection's name and removes
//! the password from the text. Whether an error is worth retrying is decided here, once, from
//! the server's error number (see [`retryable_number`]).

use caudal_connector::Error as SdkError;

/// Result of the connector's internal operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong inside the SQL Server connector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection configuration is invalid (bad url, out-of-range option).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server could not be reached, refused the login, or the connection broke.
    #[error("{0}")]
    Connection(String),
    /// The server rejected a statement; `retryable` for deadlocks, lock timeouts and killed
    /// queries, not for constraint violations or syntax errors.
    #[error("{message}")]
    Statement {
        /// What was being done and the server's message.
        message: String,
        /// Whether the same statement may succeed later.
        retryable: bool,
    },
    /// A table, column or database named by a request does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A column type has no faithful mapping, or a request does not fit the table's schema.
    #[error("{0}")]
    Schema(String),
    /// A value read from the server could not be decoded into its logical type.
    #[error("{0}")]
    Decode(String),
    /// A value of a batch cannot be written to SQL Server (infinity, a value out of the column's range).
    #[error("{0}")]
    Encode(String),
    /// The request is valid but this connector cannot do it (a query cannot be resumed by key).
    #[error("{0}")]
    Unsupported(String),
    /// The plugin's own runtime failed (a reader task ended without a result).
    #[error("{0}")]
    Internal(String),
    /// An error raised by the SDK (batch building, schema checks), passed through.
    #[error(transparent)]
    Sdk(#[from] SdkError),
}

impl Error {
    /// Adds what was being done in front of the message, keeping the kind.
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        match self {
            Error::Config(m) => Error::Config(format!("{what}: {m}")),
            Error::Connection(m) => Error::Connection(format!("{what}: {m}")),
            Error::Statement { message, retryable } => Error::Statement {
                message: format!("{what}: {message}"),
                retryable,
            },
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::Schema(m) => Error::Schema(format!("{what}: {m}")),
            Error::Decode(m) => Error::Decode(format!("{what}: {m}")),
            Error::Encode(m) => Error::Encode(format!("{what}: {m}")),
            Error::Unsupported(m) => Error::Unsupported(format!("{what}: {m}")),
            Error::Internal(m) => Error::Internal(format!("{what}: {m}")),
            Error::Sdk(e) => Error::Sdk(e.context(what)),
        }
    }

    /// The SDK error for this error, naming the connection and with `secret` removed.
    pub(crate) fn into_sdk(self, connection: &str, secret: &Secret) -> SdkError {
        let prefix = format!("mssql connection `{connection}`");
        let e = match self.context(prefix) {
            Error::Config(m) => SdkError::Config(m),
            Error::Connection(m) => SdkError::Connection(m),
            Error::Statement { message, retryable } => SdkError::Database { message, retryable },
            Error::NotFound(m) => SdkError::NotFound(m),
            Error::Schema(m) => SdkError::Schema(m),
            Error::Decode(m) => SdkError::Decode(m),
            Error::Encode(m) => SdkError::Encode(m),
            Error::Unsupported(m) => SdkError::Unsupported(m),
            Error::Internal(m) => SdkError::Other(m),
            Error::Sdk(e) => e,
        };
        let code = e.code();
        let retryable = e.is_retryable();
        SdkError::from_wire(code, secret.redact(e.message()), retryable)
    }
}

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
            Error::Statement {
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
        other => Error::Internal(format!("{what}: {other}")),
    }
}

/// The server's error number of a tiberius error, if it is a server error.
pub(crate) fn number(e: &tiberius::error::Error) -> Option<u32> {
    e.code()
}

/// The password of the connection url, in the spellings it may appear in (as written, and
/// percent-decoded), so that it can be removed from any text shown to users.
#[derive(Clone, Default)]
pub(crate) struct Secret {
    spellings: Vec<String>,
}

impl Secret {
    /// A secret with the given spellings; empty strings are ignored.
    pub(crate) fn new(spellings: impl IntoIterator<Item = String>) -> Secret {
        let mut spellings: Vec<String> = spellings.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a spelling containing another is replaced whole.
        spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
        spellings.dedup();
        Secret { spellings }
    }

    /// `text` with every spelling of the secret replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.spellings {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_spelling() {
        let s = Secret::new(["p%40ss".to_owned(), "p@ss".to_owned(), String::new()]);
        assert_eq!(
            s.redact("url mssql://u:p%40ss@h, password p@ss"),
            "url mssql://u:***@h, password ***"
        );
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn sdk_conversion_keeps_kind_and_redacts() {
        let s = Secret::new(["hunter2".to_owned()]);
        let e = Error::Statement {
            message: "deadlock near hunter2".into(),
            retryable: true,
        }
        .into_sdk("tienda_01", &s);
        assert!(e.is_retryable());
        assert_eq!(e.code(), caudal_connector::ErrorCode::Database);
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(e.message().contains("`tienda_01`"), "{e}");
        let e = Error::Connection("gone".into()).into_sdk("c", &s);
        assert!(e.is_retryable());
        let e = Error::Encode("inf".into()).into_sdk("c", &s);
        assert!(!e.is_retryable());
    }

    #[test]
    fn retryable_numbers() {
        assert!(retryable_number(1205));
        assert!(retryable_number(1222));
        assert!(!retryable_number(2627));
        assert!(!retryable_number(208));
    }
}
