//! Errors of the test server: those sent to clients as ERROR tokens carry a SQL Server error
//! number, the rest are protocol or I/O failures that end the connection.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A statement failed; sent to the client as an ERROR token with this number and message.
    #[error("SQL Server error {number}: {message}")]
    Sql {
        /// The SQL Server error number (102 syntax, 208 invalid object, 2627 PK violation, ...).
        number: u32,
        /// The message, phrased as SQL Server phrases it.
        message: String,
    },
    /// The client sent bytes that are not valid TDS for this server.
    #[error("TDS protocol error: {0}")]
    Protocol(String),
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded engine failed outside a statement (opening a database, setup).
    #[error("engine error: {0}")]
    Engine(#[from] duckdb::Error),
    /// The server was asked for a database it does not host.
    #[error("database {0:?} is not hosted by this server")]
    UnknownDatabase(String),
}

impl Error {
    pub(crate) fn sql(number: u32, message: impl Into<String>) -> Error {
        Error::Sql {
            number,
            message: message.into(),
        }
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
