//! The one error type of the SDK, shared by plugins and the host.
//!
//! An [`Error`] crosses the plugin boundary as a triple (code, message, retryable): see
//! [`Error::code`], [`Error::is_retryable`] and [`Error::from_wire`]. Every variant therefore
//! carries its detail as text, so that the error a host rebuilds is the error the plugin raised.
//! The retry policy of the engine only looks at [`Error::is_retryable`].

use serde::{Deserialize, Serialize};

/// Result of every fallible SDK and connector operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a connector, the SDK or at the plugin boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection's configuration is invalid (unknown key, wrong type, bad value).
    #[error("invalid connection config: {0}")]
    Config(String),
    /// The database could not be reached or the connection was lost. Retryable.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The database rejected a statement; `retryable` says whether trying again may succeed
    /// (deadlock, lock timeout) or not (constraint violation, read-only file).
    #[error("database error: {message}")]
    Database {
        /// The database's own error text, with the statement context the connector adds.
        message: String,
        /// Whether the same write may succeed when tried again later.
        retryable: bool,
    },
    /// A table, column or stream the request names does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A schema is invalid, or a batch or value does not match the schema it claims.
    #[error("schema mismatch: {0}")]
    Schema(String),
    /// Bytes could not be decoded (a batch, a request, a config document).
    #[error("cannot decode {0}")]
    Decode(String),
    /// A value could not be encoded.
    #[error("cannot encode {0}")]
    Encode(String),
    /// The connector does not support this operation (e.g. `write` on a source-only plugin).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Code inside the plugin panicked; the handle it ran on is poisoned.
    #[error("{0}")]
    Panicked(String),
    /// A call on a handle that panicked earlier; the handle must be closed and reopened.
    #[error("{0}")]
    Poisoned(String),
    /// The plugin library could not be used: missing symbol, ABI version or size mismatch.
    #[error("{0}")]
    Abi(String),
    /// Any other failure inside a connector.
    #[error("{0}")]
    Other(String),
}

/// Numeric error code used on the wire (stable across ABI minor versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum ErrorCode {
    /// [`Error::Config`].
    Config = 1,
    /// [`Error::Connection`].
    Connection = 2,
    /// [`Error::Database`].
    Database = 3,
    /// [`Error::NotFound`].
    NotFound = 4,
    /// [`Error::Schema`].
    Schema = 5,
    /// [`Error::Decode`].
    Decode = 6,
    /// [`Error::Encode`].
    Encode = 7,
    /// [`Error::Unsupported`].
    Unsupported = 8,
    /// [`Error::Panicked`].
    Panicked = 9,
    /// [`Error::Poisoned`].
    Poisoned = 10,
    /// [`Error::Abi`].
    Abi = 11,
    /// [`Error::Other`], and any code this version does not know.
    Other = 12,
}

impl ErrorCode {
    /// The code for a number read from the wire; unknown numbers (a newer plugin) map to `Other`.
    pub fn from_u32(code: u32) -> ErrorCode {
        use ErrorCode::*;
        [
            Config,
            Connection,
            Database,
            NotFound,
            Schema,
            Decode,
            Encode,
            Unsupported,
            Panicked,
            Poisoned,
            Abi,
        ]
        .into_iter()
        .find(|c| *c as u32 == code)
        .unwrap_or(Other)
    }
}

impl Error {
    /// The wire code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Config(_) => ErrorCode::Config,
            Error::Connection(_) => ErrorCode::Connection,
            Error::Database { .. } => ErrorCode::Database,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Schema(_) => ErrorCode::Schema,
            Error::Decode(_) => ErrorCode::Decode,
            Error::Encode(_) => ErrorCode::Encode,
            Error::Unsupported(_) => ErrorCode::Unsupported,
            Error::Panicked(_) => ErrorCode::Panicked,
            Error::Poisoned(_) => ErrorCode::Poisoned,
            Error::Abi(_) => ErrorCode::Abi,
            Error::Other(_) => ErrorCode::Other,
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connection(_) => true,
            Error::Database { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The detail text of this error, without the variant's prefix (what crosses the wire).
    pub fn message(&self) -> &str {
        match self {
            Error::Config(m)
            | Error::Connection(m)
            | Error::NotFound(m)
            | Error::Schema(m)
            | Error::Decode(m)
            | Error::Encode(m)
            | Error::Unsupported(m)
            | Error::Panicked(m)
            | Error::Poisoned(m)
            | Error::Abi(m)
            | Error::Other(m) => m,
            Error::Database { message, .. } => message,
        }
    }

    /// Rebuilds an error from its wire triple. `from_wire(e.code(), e.message(), e.is_retryable())`
    /// equals `e` for every error.
    pub fn from_wire(code: ErrorCode, message: String, retryable: bool) -> Error {
        match code {
            ErrorCode::Config => Error::Config(message),
            ErrorCode::Connection => Error::Connection(message),
            ErrorCode::Database => Error::Database { message, retryable },
            ErrorCode::NotFound => Error::NotFound(message),
            ErrorCode::Schema => Error::Schema(message),
            ErrorCode::Decode => Error::Decode(message),
            ErrorCode::Encode => Error::Encode(message),
            ErrorCode::Unsupported => Error::Unsupported(message),
            ErrorCode::Panicked => Error::Panicked(message),
            ErrorCode::Poisoned => Error::Poisoned(message),
            ErrorCode::Abi => Error::Abi(message),
            ErrorCode::Other => Error::Other(message),
        }
    }

    /// A database error that may succeed when retried (deadlock, lock wait timeout).
    pub fn retryable_database(message: impl Into<String>) -> Error {
        Error::Database {
            message: message.into(),
            retryable: true,
        }
    }

    /// A database error that will fail again until something is fixed (constraint, permissions).
    pub fn permanent_database(message: impl Into<String>) -> Error {
        Error::Database {
            message: message.into(),
            retryable: false,
        }
    }

    /// Prefixes the detail text with context (e.g. the plugin and function), keeping code and flag.
    pub fn context(self, context: impl std::fmt::Display) -> Error {
        let code = self.code();
        let retryable = self.is_retryable();
        let message = format!("{context}: {}", self.message());
        Error::from_wire(code, message, retryable)
    }

    /// The error as a connector hands it to the host: prefixed with the connection it happened
    /// on (`mysql connection `tienda_01`: ...`), with every spelling of `secret` removed (a
    /// server or driver may echo parts of a connection string). Code and flag are kept.
    pub fn for_connection(self, connector: &str, connection: &str, secret: &Secret) -> Error {
        let e = self.context(format!("{connector} connection `{connection}`"));
        let code = e.code();
        let retryable = e.is_retryable();
        Error::from_wire(code, secret.redact(e.message()), retryable)
    }
}

/// A secret of a connection (its password), in the spellings it may appear in (as written,
/// percent-decoded), so that it can be removed from any text shown to users. Its `Debug`
/// shows nothing of it.
#[derive(Clone, Default)]
pub struct Secret {
    spellings: Vec<String>,
}

impl Secret {
    /// A secret with the given spellings; empty strings are ignored.
    pub fn new(spellings: impl IntoIterator<Item = String>) -> Secret {
        let mut spellings: Vec<String> = spellings.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a spelling containing another is replaced whole.
        spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
        spellings.dedup();
        Secret { spellings }
    }

    /// `text` with every spelling of the secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
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

/// The error triple as it is encoded (bincode) across the plugin boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub code: u32,
    pub message: String,
    pub retryable: bool,
}

impl From<&Error> for WireError {
    fn from(err: &Error) -> Self {
        WireError {
            code: err.code() as u32,
            message: err.message().to_owned(),
            retryable: err.is_retryable(),
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        Error::from_wire(ErrorCode::from_u32(w.code), w.message, w.retryable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_spelling() {
        let s = Secret::new(["p%40ss".to_owned(), "p@ss".to_owned(), String::new()]);
        assert_eq!(
            s.redact("url mysql://u:p%40ss@h, password p@ss"),
            "url mysql://u:***@h, password ***"
        );
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn for_connection_names_the_connection_keeps_kind_and_redacts() {
        let s = Secret::new(["hunter2".to_owned()]);
        let e = Error::retryable_database("deadlock near hunter2").for_connection(
            "mysql",
            "tienda_01",
            &s,
        );
        assert!(e.is_retryable());
        assert_eq!(e.code(), ErrorCode::Database);
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(
            e.message().starts_with("mysql connection `tienda_01`: "),
            "{e}"
        );
        let e = Error::Connection("gone".into()).for_connection("mssql", "c", &s);
        assert!(e.is_retryable());
        assert_eq!(e.code(), ErrorCode::Connection);
        let e = Error::Encode("inf".into()).for_connection("mssql", "c", &s);
        assert!(!e.is_retryable());
        assert_eq!(e.code(), ErrorCode::Encode);
    }

    #[test]
    fn every_error_survives_the_wire() {
        let all = [
            Error::Config("a".into()),
            Error::Connection("b".into()),
            Error::retryable_database("c"),
            Error::permanent_database("d"),
            Error::NotFound("e".into()),
            Error::Schema("f".into()),
            Error::Decode("g".into()),
            Error::Encode("h".into()),
            Error::Unsupported("i".into()),
            Error::Panicked("j".into()),
            Error::Poisoned("k".into()),
            Error::Abi("l".into()),
            Error::Other("m".into()),
        ];
        for e in all {
            let wire = WireError::from(&e);
            assert_eq!(Error::from(wire), e);
        }
    }

    #[test]
    fn unknown_code_from_a_newer_plugin_is_other() {
        assert_eq!(ErrorCode::from_u32(999), ErrorCode::Other);
        assert_eq!(ErrorCode::from_u32(3), ErrorCode::Database);
    }

    #[test]
    fn context_keeps_code_and_retryable() {
        let e = Error::retryable_database("deadlock").context("plugin `mysql`, write");
        assert!(e.is_retryable());
        assert_eq!(e.message(), "plugin `mysql`, write: deadlock");
    }
}
