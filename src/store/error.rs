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
    /// The connection to PostgreSQL was lost mid-run (the server
    /// restarted, or was stopped): the run ends, the next one goes on
    /// (exit 75).
    #[error("{0}")]
    Lost(String),
    /// The database is not one this engine can use (a newer schema, no WAL,
    /// a table without its key, a value it cannot hold).
    #[error("{0}")]
    Unusable(String),
    /// The run's writer thread is gone.
    #[error("the database writer stopped")]
    WriterGone,
    /// `BG_DATABASE_URL` (or `BACKPROC_DATABASE_URL`) is not a URL the
    /// engine can use (exit 78). Never holds the password.
    #[error("BG_DATABASE_URL: {0}")]
    BadUrl(String),
    /// PostgreSQL cannot be reached or refused the connection (exit 73):
    /// `target` is host, port, user and database (never the password).
    #[error("cannot connect to PostgreSQL ({target})")]
    Connect {
        target: String,
        #[source]
        source: postgres::Error,
    },
    /// A PostgreSQL statement failed; `what` says which work.
    #[error("{what}")]
    Pg {
        what: String,
        #[source]
        source: postgres::Error,
    },
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
            // The server unreachable, the login or the database refused,
            // no rights on the schema: the install's problem (exit 73).
            Error::Connect { .. } => true,
            Error::Pg { source, .. } => source.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("28") || c.starts_with("3D") || c == "42501" || c.starts_with("3F")
            }),
            _ => false,
        }
    }

    /// The database went away mid-run (exit 75): the next run goes on.
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::Lost(_))
    }

    /// A bad `BG_DATABASE_URL` (exit 78).
    pub fn is_config(&self) -> bool {
        matches!(self, Error::BadUrl(_))
    }
}

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Names the work a failed statement was doing.
pub(super) trait Context<T> {
    /// `what` failed ("read account 3"), because of the SQLite error.
    fn context(self, what: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, postgres::Error> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Pg {
            what: what.into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, rusqlite::Error> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Sql {
            what: what.into(),
            source,
        })
    }
}
