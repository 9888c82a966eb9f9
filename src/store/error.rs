//! What can go wrong with the database, with SQLite's own error kept as the
//! cause (nothing outside `store` sees a SQLite type).

use std::path::PathBuf;

/// A failure of the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be opened at all.
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed; `what` says which work.
    #[error("{what}")]
    Sql {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Another program held the write lock past the busy timeout: this
    /// connection writes no more (the message names the file and the wait).
    #[error("{0}")]
    LockedOut(String),
    /// The database is not one this engine can use (a newer schema, no WAL,
    /// a table without its key, a value it cannot hold).
    #[error("{0}")]
    Unusable(String),
    /// The run's writer thread is gone.
    #[error("the database writer stopped")]
    WriterGone,
}

impl Error {
    /// The file cannot be opened because of its directory or permissions:
    /// a problem of the install (exit 73), not of the database.
    pub fn is_layout(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            Error::Open { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly)
            ),
            _ => false,
        }
    }
}

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Names the work a failed statement was doing.
pub(super) trait Context<T> {
    /// `what` failed ("read account 3"), because of the SQLite error.
    fn context(self, what: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, rusqlite::Error> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Sql {
            what: what.into(),
            source,
        })
    }
}
